//! The flow-layer example is a real program: replay the sample and reference captures through it and
//! read the first line each TCP client sent, as one JSON record per connection.

use std::process::Command;

use serde_json::Value;

fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    // Always ask cargo: `cargo test --all-targets` builds examples as test harnesses, not this
    // binary, so one left by an earlier build could be stale. Up to date, this is a no-op.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--example", "first_line"])
        .status()
        .unwrap();
    assert!(status.success(), "building the example failed");
    profile_dir.join("examples").join("first_line")
}

#[test]
fn first_line_example_logs_each_clients_first_line() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(example_binary())
        .arg("replay")
        .arg(format!("{root}/pcaps/aws-mirror.pcap"))
        .arg(format!(
            "{root}/pcaps/third-party/vxlan-encapsulated-http.pcap"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    // Records come from two shards in either order: find each by its server port and session.
    let line_of = |port: u64, session: &str| {
        let r = records
            .iter()
            .find(|r| r["dest_port"] == port && r["session"] == session)
            .unwrap_or_else(|| panic!("no record for {session} port {port}: {records:#?}"));
        (
            r["line"].as_str().unwrap().to_owned(),
            r["incomplete"].clone(),
        )
    };
    // The real AWS mirror capture's HTTP request, and the sample web session's.
    assert_eq!(line_of(80, "10.1.200.131/1").0, "GET /image/svg HTTP/1.1");
    assert_eq!(line_of(80, "10.0.1.10/1001").0, "GET /index.html HTTP/1.1");
    // The db client's query has no newline before the connection ends.
    assert_eq!(
        line_of(5432, "fd00:3::30/1003"),
        ("SELECT * FROM flows;".to_owned(), Value::from("no_newline"))
    );
    // Every record names its flow the way other tools do, and its mirror session.
    for r in &records {
        assert!(r["community_id"].as_str().unwrap().starts_with("1:"), "{r}");
        assert!(r["flow_id"].as_u64().unwrap() < 1 << 53);
        assert!(!r["session"].as_str().unwrap().is_empty());
    }
    // One record per TCP connection with client data: 4 in the samples, 1 in the reference capture.
    assert_eq!(records.len(), 5, "{records:#?}");
}
