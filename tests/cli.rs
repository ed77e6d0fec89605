//! The `vxtap` binary as a user meets it: version, check-config verdicts, and `run` on loopback until
//! Ctrl-C.

mod common;

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{tcp4, vxlan};

const VXTAP: &str = env!("CARGO_BIN_EXE_vxtap");

fn vxtap(args: &[&str]) -> Output {
    Command::new(VXTAP).args(args).output().unwrap()
}

/// `text` written to `name` in `dir` (the test's temporary directory): the name appears in the
/// messages checked.
fn temp_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn version() {
    let out = vxtap(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vxtap {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_accepts_the_default_and_rejects_mistakes_with_their_place() {
    let tmp = common::temp_dir("vxtap-cli-");
    let default = vxtap(&["default-config"]);
    let good = temp_file(
        &tmp,
        "good.toml",
        &String::from_utf8(default.stdout).unwrap(),
    );
    let out = vxtap(&["check-config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));

    let bad = temp_file(
        &tmp,
        "bad.toml",
        "[ingest]\nworkers = 1\n\n[[module]]\nkind = \"stats\"\ninterval_sec = 5\n",
    );
    let out = vxtap(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:1: module \"stats\": interval_sec: unknown field `interval_sec`"),
        "{err}"
    );

    let unknown = temp_file(&tmp, "unknown.toml", "[[module]]\nkind = \"nosuch\"\n");
    let err = String::from_utf8_lossy(&vxtap(&["check-config", unknown.to_str().unwrap()]).stderr)
        .to_string();
    assert!(
        err.contains(
            "unknown.toml:1:1: module \"nosuch\": kind: unknown module kind; known kinds: "
        ) && err.contains("stats"),
        "{err}"
    );

    let missing = vxtap(&["check-config", "/nonexistent/vxtap.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/vxtap.toml: cannot read")
    );
}

#[test]
fn run_reports_sessions_and_counts_and_exits_cleanly_on_ctrl_c() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = common::temp_dir("vxtap-cli-");
    let config = temp_file(
        &tmp,
        "run.toml",
        &format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 2\nreceive_buffer_bytes = 0\n\
             [[module]]\nkind = \"stats\"\ninterval_secs = 1\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        ),
    );
    let mut child = common::Reaped::new(
        Command::new(VXTAP)
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.stderr.take().unwrap();
    let mut log = common::wait_until_running(&mut stderr);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let frame = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, b"abc");
    for vni in [11, 12] {
        for _ in 0..5 {
            tx.send_to(&vxlan(vni, &frame), ("127.0.0.1", port))
                .unwrap();
        }
    }
    tx.send_to(&[1, 2, 3], ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    stderr.read_to_string(&mut log).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{log}");
    let summary = log
        .lines()
        .find(|l| l.contains("Final traffic summary"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        summary.contains("sessions=2") && summary.contains("packets=10"),
        "{summary}"
    );
    assert!(
        summary.contains("127.0.0.1/11=5") && summary.contains("127.0.0.1/12=5"),
        "{summary}"
    );
    let stopped = log.lines().find(|l| l.contains("Stopped.")).unwrap();
    assert!(
        stopped.contains("received=11")
            && stopped.contains("dispatched=10")
            && stopped.contains("too_short"),
        "{stopped}"
    );
    assert!(
        log.contains("Traffic summary."),
        "a periodic summary was logged while running: {log}"
    );
}
