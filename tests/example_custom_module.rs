//! The custom-module example is a real program: run it, send it mirrored SYNs over loopback, stop it
//! with SIGINT, and read what its module printed.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tcp4, vxlan};

fn example_binary() -> std::path::PathBuf {
    // Integration tests live in target/<profile>/deps; cargo builds examples into target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = profile_dir.join("examples").join("custom_module");
    // Always ask cargo: `cargo test --all-targets` builds examples as test harnesses, not this binary,
    // so a binary left by an earlier build could be stale. Up to date, this is a no-op.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--example", "custom_module"])
        .status()
        .unwrap();
    assert!(status.success(), "building the example failed");
    path
}

#[test]
fn syn_counter_example_counts_syns_per_port() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = common::temp_dir("vxtap-example-");
    let config = tmp.path().join("example.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:{port}\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [pipeline]\nshards = 1\n\
             [[module]]\nkind = \"syn_counter\"\nports = [443]\n\
             [health]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let mut child = common::Reaped::new(
        Command::new(example_binary())
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo test builds the examples"),
    );

    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = format!("127.0.0.1:{port}");
    let mut stderr = child.stderr.take().unwrap();
    common::wait_until_running(&mut stderr);
    let syn = |sport: u16, dport: u16| {
        let mut f = tcp4([10, 0, 0, 1], sport, [10, 0, 0, 2], dport, &[]);
        f[14 + 20 + 13] = 0x02; // SYN only
        vxlan(3, &f)
    };
    for i in 0..3 {
        tx.send_to(&syn(30000 + i, 443), &to).unwrap();
    }
    tx.send_to(&syn(31000, 22), &to).unwrap(); // not a reported port
    tx.send_to(
        &vxlan(3, &tcp4([10, 0, 0, 1], 30000, [10, 0, 0, 2], 443, b"x")),
        &to,
    )
    .unwrap(); // ACK, not SYN
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.into_inner().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "syn_counter session=127.0.0.1/3 port=443 syns=3"
    );
}
