//! deploy/cloudformation/vxtap.yaml: cfn-lint finds nothing, the config its launch template writes is
//! one vxtap accepts, and the drain settings it allows keep the deregistration delay above vxtap's
//! drain_seconds.
//!
//! Without cfn-lint (PyPI `cfn-lint`) the lint is skipped with a notice, except under CI=true, where
//! it fails.

mod common;

use std::path::Path;
use std::process::Command;

const TEMPLATE: &str = include_str!("../deploy/cloudformation/vxtap.yaml");
const TEMPLATE_PATH: &str = "deploy/cloudformation/vxtap.yaml";

#[test]
fn cfn_lint_is_clean() {
    let out = match Command::new("cfn-lint")
        .arg(TEMPLATE_PATH)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("cfn-lint is required in CI (pip install cfn-lint): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: cfn-lint not runnable ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "cfn-lint {TEMPLATE_PATH}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of `name`'s block under `Parameters:`, up to the next parameter.
fn parameter(name: &str) -> Vec<&'static str> {
    let mut lines = TEMPLATE
        .lines()
        .skip_while(|l| *l != "Parameters:")
        .skip_while(|l| *l != format!("  {name}:"));
    assert!(lines.next().is_some(), "no parameter {name}");
    lines
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect()
}

fn parameter_number(name: &str, field: &str) -> u32 {
    let prefix = format!("{field}: ");
    parameter(name)
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} has no {field}"))
        .parse()
        .unwrap()
}

#[test]
fn deregistration_delay_always_exceeds_drain_seconds() {
    let drain_max = parameter_number("DrainSeconds", "MaxValue");
    let delay_min = parameter_number("DeregistrationDelaySeconds", "MinValue");
    assert!(
        delay_min > drain_max,
        "DeregistrationDelaySeconds may be {delay_min}, DrainSeconds {drain_max}"
    );
    // The default drain is vxtap's own default, and the target group uses the parameter.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/vxtap.toml"))
            .unwrap();
    assert!(example.contains(&format!(
        "\ndrain_seconds = {}\n",
        parameter_number("DrainSeconds", "Default")
    )));
    assert!(TEMPLATE.contains(
        "{Key: deregistration_delay.timeout_seconds, Value: !Ref DeregistrationDelaySeconds}"
    ));
    // The unit must outlast the longest drain plus a flush.
    let unit = include_str!("../systemd/vxtap.service");
    let stop_timeout: u32 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop_timeout >= drain_max + 30,
        "TimeoutStopSec={stop_timeout}"
    );
}

#[test]
fn health_check_matches_the_config_the_appliances_get() {
    for must in [
        "HealthCheckProtocol: HTTP",
        "HealthCheckPort: \"8080\"",
        "HealthCheckPath: /healthz",
        "Protocol: UDP\n      Port: 4789",
    ] {
        assert!(TEMPLATE.contains(must), "template lacks {must:?}");
    }
    let config = launch_config();
    assert!(config.contains("\nlisten = \"0.0.0.0:8080\"\n"), "{config}");
}

/// The config file the launch template's UserData writes, with CloudFormation's ${...} filled in.
fn launch_config() -> String {
    let start = "cat > /etc/vxtap/vxtap.toml <<'VXTAP_CONFIG'";
    let mut lines = TEMPLATE.lines().skip_while(|l| l.trim() != start);
    let indent = lines
        .next()
        .expect("UserData writes the config")
        .find('c')
        .unwrap();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim() != "VXTAP_CONFIG")
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    assert!(body.len() > 5, "config body: {body:?}");
    let config = body
        .join("\n")
        .replace("${MirrorSourceCidr}", "10.20.0.0/16")
        .replace("${DrainSeconds}", "30")
        .replace("${AWS::StackName}", "test-stack");
    assert!(!config.contains("${"), "unsubstituted: {config}");
    config + "\n"
}

#[test]
fn launch_template_config_passes_check_config() {
    let config = launch_config();
    assert!(config.contains("allow = [\"10.20.0.0/16\"]"), "{config}");
    let tmp = common::temp_dir("vxtap-cfn-");
    let file = tmp.path().join("vxtap.toml");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config on the launch template's config:\n{config}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
