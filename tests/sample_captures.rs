//! The sample captures hold what pcaps/README.md says they hold, as tshark (a user's tool, not ours)
//! decodes them. Skipped without tshark, except under CI=true, where it fails.

use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `tshark -r FILE -T fields -e FIELD...`: one Vec of fields per frame.
fn fields(file: &str, names: &[&str]) -> Option<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.current_dir(ROOT)
        .args(["-r", file, "-T", "fields", "-E", "separator=|"]);
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but tshark cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: tshark not available ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "tshark -r {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect(),
    )
}

fn column(rows: &[Vec<String>], i: usize) -> Vec<&str> {
    rows.iter()
        .map(|r| r[i].as_str())
        .filter(|v| !v.is_empty())
        .collect()
}

#[test]
fn tshark_sees_the_documented_traffic() {
    let names = [
        "tls.handshake.extensions_server_name",
        "dns.qry.name",
        "http.request.uri",
        "http.response.code",
        "vlan.id",
        "icmpv6.type",
    ];
    for file in [
        "pcaps/aws-mirror.pcap",
        "pcaps/gwlb-geneve.pcapng",
        "pcaps/plain.pcapng",
    ] {
        let Some(rows) = fields(file, &names) else {
            return;
        };
        let expected_frames = if file.contains("plain") { 48 } else { 53 };
        assert_eq!(rows.len(), expected_frames, "{file}");
        assert_eq!(column(&rows, 0), ["www.example.org"], "{file}: SNI");
        assert!(
            column(&rows, 1).starts_with(&["example.com", "example.com"]),
            "{file}: DNS"
        );
        assert_eq!(column(&rows, 2), ["/index.html"], "{file}: HTTP request");
        assert_eq!(column(&rows, 3), ["200"], "{file}: HTTP response");
        assert_eq!(column(&rows, 4), ["42"], "{file}: VLAN");
        assert_eq!(column(&rows, 5), ["128"], "{file}: ICMPv6 echo request");
    }

    let Some(geneve) = fields(
        "pcaps/gwlb-geneve.pcapng",
        &["geneve.proto_type", "vxlan.vni"],
    ) else {
        return;
    };
    assert_eq!(
        column(&geneve, 0)
            .iter()
            .filter(|p| **p == "0x0800")
            .count(),
        40
    );
    assert_eq!(
        column(&geneve, 0)
            .iter()
            .filter(|p| **p == "0x86dd")
            .count(),
        12
    );

    let Some(plain) = fields("pcaps/plain.pcapng", &["frame.interface_name", "sll.ltype"]) else {
        return;
    };
    assert_eq!(
        column(&plain, 0).iter().filter(|n| **n == "any").count(),
        13
    );
    assert_eq!(
        column(&plain, 0).iter().filter(|n| **n == "eth0").count(),
        35
    );

    let Some(sll) = fields("pcaps/plain-sll.pcap", &["sll.pkttype", "icmp.type"]) else {
        return;
    };
    assert_eq!(sll.len(), 12);
    assert_eq!(
        column(&sll, 1),
        ["8", "0", "8", "0"],
        "two echo requests and replies"
    );
}
