//! `systemd/vxtap.service` is valid (`systemd-analyze verify`) and hardened (`systemd-analyze security`
//! rates it 2.0 or lower), and `systemd/vxtap.toml` is a valid config.
//!
//! verify needs the ExecStart binary to exist, so it runs on a copy of the unit pointing at the binary
//! cargo just built. Without systemd-analyze the checks are skipped with a notice, except under CI=true,
//! where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = include_str!("../systemd/vxtap.service");

fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("systemd-analyze is required in CI (Debian package `systemd`): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: systemd-analyze not runnable ({e})");
            None
        }
    }
}

/// The unit pointing at the built binary, in a directory removed when the returned handle drops.
fn unit_copy(tag: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = common::temp_dir(&format!("vxtap-unit-{tag}-"));
    let unit = UNIT.replace("/usr/local/bin/vxtap", env!("CARGO_BIN_EXE_vxtap"));
    assert_ne!(
        unit, UNIT,
        "the unit's ExecStart names /usr/local/bin/vxtap"
    );
    let path = dir.path().join("vxtap.service");
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn unit_verifies_cleanly() {
    let (_dir, path) = unit_copy("verify");
    let Some(out) = systemd_analyze(&["verify", path.to_str().unwrap()]) else {
        return;
    };
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    assert_eq!(text(&out).trim(), "", "verify must print nothing");
}

/// The opt-in TAP drop-in verifies on top of the unit. `verify` reads one file, so the drop-in's
/// `[Service]` section is appended to a copy of the unit: systemd merges repeated sections exactly as
/// it merges a drop-in.
#[test]
fn tap_drop_in_verifies_and_adds_only_what_tap_needs() {
    let drop_in = include_str!("../systemd/vxtap-tap.conf");
    for must in [
        "CapabilityBoundingSet=CAP_NET_ADMIN\n",
        "AmbientCapabilities=CAP_NET_ADMIN\n",
        "DeviceAllow=/dev/net/tun rw\n",
        "PrivateDevices=no\n",
        "PrivateUsers=no\n",
    ] {
        assert!(drop_in.contains(must), "drop-in lacks {must:?}");
    }
    assert!(
        !UNIT.contains("CAP_NET_ADMIN"),
        "the default unit stays without capabilities"
    );
    let (_dir, path) = unit_copy("tap");
    let mut unit = std::fs::read_to_string(&path).unwrap();
    unit.push('\n');
    unit.push_str(drop_in);
    std::fs::write(&path, unit).unwrap();
    let Some(out) = systemd_analyze(&["verify", path.to_str().unwrap()]) else {
        return;
    };
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    assert_eq!(text(&out).trim(), "", "verify must print nothing");
}

#[test]
fn unit_is_hardened_to_an_exposure_of_two_or_less() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/vxtap.service");
    let Some(out) = systemd_analyze(&["security", "--offline=yes", unit.to_str().unwrap()]) else {
        return;
    };
    let report = text(&out);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for vxtap.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");
    for must in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "Type=notify",
        "WatchdogSec=",
    ] {
        assert!(UNIT.contains(must), "unit lacks {must:?}");
    }
}

#[test]
fn example_config_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/vxtap.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Every key of every table is present (so every key is documented there).
    let example = std::fs::read_to_string(&file).unwrap();
    for key in [
        "vxlan",
        "geneve",
        "workers",
        "receive_buffer_bytes",
        "batch_size",
        "shards",
        "queue_batches",
        "tick_ms",
        "allow",
        "learn",
        "max_learned",
        "idle_timeout_secs",
        "snaplen",
        "drain_seconds",
        "stale_after_seconds",
        "when_unhealthy",
        "max_learned_session_series",
    ] {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{key} ="))),
            "systemd/vxtap.toml lacks {key}"
        );
    }
}
