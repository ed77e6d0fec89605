//! Interface capture (`[[ingest.interface]]`, AF_PACKET) in two network namespaces joined by a veth
//! pair that this test creates and removes: `vxtap send` in one namespace, `vxtap run` capturing on
//! the veth end in the other. Mirror datagrams are decapsulated into their sessions; other frames land
//! in the interface's plain session.
//!
//! Needs root (CAP_NET_ADMIN, CAP_NET_RAW) and ip(8). Without them it is skipped with a message,
//! except under CI=true, where it fails.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const VXTAP: &str = env!("CARGO_BIN_EXE_vxtap");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Two namespaces and a veth pair between them; removed on drop (deleting a namespace deletes the
/// veth end inside it, and with it the pair).
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create(tag: &str) -> Result<Namespaces, String> {
        let id = std::process::id() % 100_000;
        let ns = Namespaces {
            a: format!("vxtap-{tag}-a-{id}"),
            b: format!("vxtap-{tag}-b-{id}"),
        };
        let (va, vb) = (format!("vxa{id}"), format!("vxb{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &ns.a],
            vec!["netns", "add", &ns.b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", &ns.a],
            vec!["link", "set", &vb, "netns", &ns.b],
            vec!["-n", &ns.a, "addr", "add", "10.231.0.1/24", "dev", &va],
            vec!["-n", &ns.b, "addr", "add", "10.231.0.2/24", "dev", &vb],
            vec!["-n", &ns.a, "link", "set", &va, "up"],
            vec!["-n", &ns.b, "link", "set", &vb, "up"],
            vec!["-n", &ns.a, "link", "set", "lo", "up"],
            vec!["-n", &ns.b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("ip(8): {e}"))?;
            if !out.status.success() {
                let _ = Command::new("ip").args(["link", "del", &va]).output();
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(ns)
    }

    fn veth_b(&self) -> String {
        format!("vxb{}", std::process::id() % 100_000)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn namespaces_or_skip(tag: &str) -> Option<Namespaces> {
    match Namespaces::create(tag) {
        Ok(ns) => Some(ns),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the network namespaces for this test cannot be created: {e}")
        }
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces ({e}); run as root");
            None
        }
    }
}

fn send_from(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, VXTAP, "send"])
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn captures_mirror_and_plain_traffic_on_a_veth_in_a_namespace() {
    let Some(ns) = namespaces_or_skip("if") else {
        return;
    };
    let config_file = common::temp_file("vxtap-if-", ".toml");
    let config = config_file.path();
    std::fs::write(
        config,
        format!(
            "[ingest]\nvxlan = []\n[[ingest.interface]]\nname = \"{}\"\nsession = \"span\"\n\
             [[module]]\nkind = \"stats\"\ninterval_secs = 60\n",
            ns.veth_b()
        ),
    )
    .unwrap();
    let mut child = common::Reaped::new(
        Command::new("ip")
            .args(["netns", "exec", &ns.b, VXTAP, "run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.stderr.take().unwrap();
    let mut log = common::wait_until_running(&mut stderr);
    assert!(log.contains("Capturing."), "{log}");

    // Mirror traffic as AWS sends it, over the veth: 52 datagrams to 4789 (nothing listens there:
    // capture sees them anyway, as a SPAN port would).
    let sent = send_from(
        &ns.a,
        &[
            "pcaps/aws-mirror.pcap",
            "--to",
            "10.231.0.2:4789",
            "--pps",
            "5000",
        ],
    );
    assert!(sent.contains("sent 52 datagrams"), "{sent}");
    // Twelve datagrams to another port: not mirror traffic, so plain frames of the interface.
    let sent = send_from(
        &ns.a,
        &[
            "pcaps/plain-sll.pcap",
            "--to",
            "10.231.0.2:9999",
            "--top-speed",
        ],
    );
    assert!(sent.contains("sent 12 datagrams"), "{sent}");
    std::thread::sleep(Duration::from_millis(500));

    // SAFETY: kill(2) on our own child (ip netns exec runs vxtap in its place).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    stderr.read_to_string(&mut log).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{log}");

    let summary = log
        .lines()
        .find(|l| l.contains("Final traffic summary"))
        .unwrap_or_else(|| panic!("{log}"));
    // The same sessions and counts as `vxtap replay pcaps/aws-mirror.pcap` (tests/golden), with the
    // outer source now the sending namespace's address.
    for expect in [
        "10.231.0.1/1001=24",
        "10.231.0.1/1002=12",
        "10.231.0.1/1003=12",
        "10.231.0.1/666=1",
    ] {
        assert!(summary.contains(expect), "{expect}: {summary}");
    }
    // The plain session holds the 12 datagrams to port 9999, plus whatever ARP and ICMP the two
    // kernels exchanged.
    let span: u64 = summary
        .split("span=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no span session: {summary}"));
    assert!(span >= 12, "{summary}");
    let stopped = log.lines().find(|l| l.contains("Stopped.")).unwrap();
    for drop in [
        "(\"too_short\", 1)",
        "(\"bad_vxlan_flags\", 1)",
        "(\"empty_frame\", 1)",
    ] {
        assert!(stopped.contains(drop), "{drop}: {stopped}");
    }
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let config_file = common::temp_file("vxtap-if-missing-", ".toml");
    let config = config_file.path();
    std::fs::write(
        config,
        "[ingest]\nvxlan = []\n[[ingest.interface]]\nname = \"nosuch0\"\n",
    )
    .unwrap();
    let out = Command::new(VXTAP)
        .args(["run", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no network interface named \"nosuch0\" (have: "),
        "{stderr}"
    );
    assert!(stderr.contains("lo"), "{stderr}");
}
