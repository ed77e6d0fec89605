//! tshark as the tests' oracle: what a user would open vxtap's captures with, and the dissector the
//! DNS, HTTP and reassembly tests hold vxtap's own against.

use std::path::Path;
use std::process::{Command, Stdio};

/// Whether tshark runs here. Under `CI=true` a missing tshark fails the test (`.ci/run` installs
/// it); elsewhere the test is skipped with a notice, so a laptop without it can still run the rest.
pub fn available() -> bool {
    let runs = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but tshark does not run (Debian package tshark)"
        );
        eprintln!("skipped: tshark is not installed (apt-get install tshark)");
    }
    runs
}

/// `tshark -n -r FILE [-Y FILTER] -T fields -e …`: one row of field values per frame shown, a
/// field's several occurrences joined by `^`. Fails the test if tshark fails; with `strict`, also if
/// it says anything on stderr (beyond its warning about running as root), which is how it reports a
/// capture it finds damaged.
pub fn fields(file: &Path, filter: &str, names: &[&str], strict: bool) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "aggregator=^"]);
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = cmd.output().expect("tshark runs");
    let complaints: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("Running as user") && !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && (!strict || complaints.is_empty()),
        "tshark -r {}: {:?} {complaints}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}
