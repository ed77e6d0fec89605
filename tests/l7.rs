//! The `dns` and `http` modules on real captures: their records are the checked-in goldens
//! (`VXTAP_BLESS=1 cargo test --test l7` accepts new output), and every transaction they log has
//! the fields tshark's own dissectors find in the same capture. The tshark part is skipped without
//! tshark, except under CI=true, where it fails.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const CAPTURES: [(&str, &str); 4] = [
    ("pcaps/l7.pcap", "l7.txt"),
    ("pcaps/aws-mirror.pcap", "l7-aws-mirror.txt"),
    (
        "pcaps/third-party/vxlan-encapsulated-http.pcap",
        "l7-third-party-vxlan-encapsulated-http.txt",
    ),
    (
        "pcaps/third-party/geneve-vxlan-dns-truncated.pcap",
        "l7-third-party-geneve-vxlan-dns-truncated.txt",
    ),
];

/// `vxtap replay` with dns and http on one shard (so record order is fixed): the records, parsed.
fn replay(file: &str) -> (String, Vec<Value>) {
    let config = common::temp_file("vxtap-l7-", ".toml");
    std::fs::write(
        config.path(),
        "[pipeline]\nshards = 1\n\n[[module]]\nkind = \"dns\"\n\n[[module]]\nkind = \"http\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .current_dir(ROOT)
        .args(["replay", "--log-level", "error", "--config"])
        .arg(config.path())
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (stdout, records)
}

/// Compares `actual` with tests/golden/`name`, or writes it there under VXTAP_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(ROOT).join("tests/golden").join(name);
    if std::env::var_os("VXTAP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with VXTAP_BLESS=1 to create it)",
            path.display()
        )
    });
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        assert_eq!(e, a, "{} line {}", path.display(), i + 1);
    }
    assert_eq!(
        expected.lines().count(),
        actual.lines().count(),
        "{}",
        path.display()
    );
}

#[test]
fn records_are_the_goldens() {
    for (file, name) in CAPTURES {
        let (stdout, _) = replay(file);
        golden(name, &stdout);
    }
}

/// What the records of l7.pcap must show, whatever the golden says.
#[test]
fn l7_capture_transactions() {
    let (_, records) = replay("pcaps/l7.pcap");
    let dns: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "dns")
        .map(|r| &r["dns"])
        .collect();
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "http")
        .map(|r| &r["http"])
        .collect();
    assert_eq!(dns.len(), 10, "{dns:#?}");
    assert_eq!(http.len(), 6, "{http:#?}");
    let by_name = |n: &str, t: &str| {
        dns.iter()
            .find(|d| d["rrname"] == n && d["rrtype"] == t)
            .unwrap_or_else(|| panic!("no record for {n} {t}"))
    };
    let slow = by_name("slow.example.com", "A");
    assert_eq!(slow["type"], "query");
    assert_eq!(slow["unanswered"], true);
    let www = by_name("www.example.com", "A");
    assert_eq!(www["answers"][0]["rdata"], "edge.example.net");
    assert_eq!(www["answers"][1]["rdata"], "93.184.215.14");
    assert_eq!(www["response_time_ms"], 1.5);
    let nx = by_name("nope.example.com", "A");
    assert_eq!(nx["rcode"], "NXDOMAIN");
    assert_eq!(nx["authorities"][0]["soa"]["mname"], "ns.icann.org");
    let bad = by_name("bad.example.com", "A");
    assert_eq!(bad["malformed"], true);
    let https = by_name("example.com", "HTTPS");
    assert_eq!(https["answers"][0]["svcb"]["alpn"][1], "h3");
    let srv = by_name("_sip._tcp.example.com", "SRV");
    assert_eq!(srv["answers"][0]["srv"]["port"], 5060);
    let tcp = by_name("big.example.com", "A");
    assert_eq!(tcp["answers"].as_array().unwrap().len(), 3);
    assert_eq!(tcp["aa"], true);

    let urls: Vec<&str> = http.iter().map(|h| h["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            "/a.html",
            "/logo.png",
            "/api/v1/items",
            "/big.bin",
            "/after",
            "/metrics"
        ]
    );
    assert_eq!(http[0]["http_refer"], "http://www.example.com/");
    assert_eq!(http[1]["status"], 304);
    assert_eq!(http[2]["request_body_len"], 17);
    assert_eq!(http[2]["length"], 9, "the chunked body's content");
    assert_eq!(http[2]["xff"], "203.0.113.7");
    // The lost segment fell inside a Content-Length body: counted, flagged, and the transaction
    // completes where the framing says.
    assert_eq!(http[3]["gap"], true);
    assert_eq!(http[3]["length"], 3000);
    assert!(http[3].get("interrupted").is_none());
    assert!(http[4].get("interrupted").is_none());
    assert_eq!(http[5]["protocol"], "HTTP/1.0");
    assert_eq!(http[5]["length"], 5, "read until the server's FIN");
    for h in &http {
        if h.get("interrupted").is_none() {
            assert!(h.get("malformed").is_none(), "{h}");
        }
    }
}

/// tshark's fields for the frames `filter` shows in `file` (relative to the crate), or `None` when
/// tshark is missing outside CI.
fn tshark(file: &str, filter: &str, names: &[&str]) -> Option<Vec<Vec<String>>> {
    common::tshark::available()
        .then(|| common::tshark::fields(&Path::new(ROOT).join(file), filter, names, false))
}

fn list(field: &str) -> Vec<String> {
    if field.is_empty() {
        Vec::new()
    } else {
        field.split('^').map(str::to_owned).collect()
    }
}

fn type_name(t: &str) -> String {
    match t {
        "1" => "A",
        "2" => "NS",
        "5" => "CNAME",
        "6" => "SOA",
        "12" => "PTR",
        "15" => "MX",
        "16" => "TXT",
        "28" => "AAAA",
        "33" => "SRV",
        "64" => "SVCB",
        "65" => "HTTPS",
        other => other,
    }
    .to_owned()
}

fn rcode_name(c: &str) -> &str {
    match c {
        "0" => "NOERROR",
        "1" => "FORMERR",
        "2" => "SERVFAIL",
        "3" => "NXDOMAIN",
        "5" => "REFUSED",
        other => other,
    }
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.get(key).and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Checks every DNS record against tshark's dissection of the same message; returns how many
/// transactions agreed.
fn dns_agrees(file: &str, records: &[Value]) -> Option<usize> {
    const F: [&str; 11] = [
        "dns.id",
        "dns.flags.response",
        "dns.qry.name",
        "dns.qry.type",
        "dns.flags.rcode",
        "dns.resp.type",
        "dns.a",
        "dns.aaaa",
        "dns.cname",
        "dns.mx.mail_exchange",
        "dns.srv.target",
    ];
    let rows = tshark(file, "dns", &F)?;
    let mut agreed = 0;
    for r in records.iter().filter(|r| r["event_type"] == "dns") {
        let d = &r["dns"];
        let Some(id) = d["id"].as_u64() else {
            continue;
        };
        let answer = d["type"] == "answer";
        let row = rows
            .iter()
            .find(|row| {
                u64::from_str_radix(row[0].trim_start_matches("0x"), 16).ok() == Some(id)
                    && (row[1] == "1") == answer
                    && row[2] == d["rrname"].as_str().unwrap_or("")
            })
            .unwrap_or_else(|| panic!("{file}: tshark has no DNS message for {d}"));
        assert_eq!(
            type_name(&row[3]),
            d["rrtype"].as_str().unwrap(),
            "{file}: {d}"
        );
        if answer {
            assert_eq!(rcode_name(&row[4]), d["rcode"], "{file}: {d}");
            let mut types = strs(&d["answers"], "rrtype");
            types.extend(strs(&d["authorities"], "rrtype"));
            let theirs: Vec<String> = list(&row[5]).iter().map(|t| type_name(t)).collect();
            if d.get("malformed").is_none() {
                assert_eq!(types, theirs, "{file}: {d}");
            } else {
                // Ours stop at the first fault; theirs go on past it where they can.
                assert!(theirs.starts_with(&types), "{file}: {d} vs {theirs:?}");
            }
            let by_type = |t: &str| -> Vec<String> {
                d["answers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["rrtype"] == t)
                    .filter_map(|a| a["rdata"].as_str().map(str::to_owned))
                    .collect()
            };
            assert_eq!(by_type("A"), list(&row[6]), "{file}: {d}");
            assert_eq!(by_type("AAAA"), list(&row[7]), "{file}: {d}");
            assert_eq!(by_type("CNAME"), list(&row[8]), "{file}: {d}");
            assert_eq!(by_type("MX"), list(&row[9]), "{file}: {d}");
            let srv: Vec<String> = d["answers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["srv"]["name"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(srv, list(&row[10]), "{file}: {d}");
        }
        agreed += 1;
    }
    Some(agreed)
}

/// Checks every HTTP record against tshark's requests and responses; returns how many
/// transactions agreed.
fn http_agrees(file: &str, records: &[Value]) -> Option<usize> {
    const F: [&str; 8] = [
        "http.request.method",
        "http.request.uri",
        "http.host",
        "http.user_agent",
        "http.referer",
        "http.x_forwarded_for",
        "http.response.code",
        "http.content_type",
    ];
    let rows = tshark(file, "http", &F)?;
    // Requests and responses as tshark lists them, pipelined ones split apart.
    let mut requests: Vec<[String; 4]> = Vec::new();
    let mut responses: Vec<(String, String)> = Vec::new();
    for row in &rows {
        let methods = list(&row[0]);
        let (uris, hosts, uas) = (list(&row[1]), list(&row[2]), list(&row[3]));
        for (i, m) in methods.iter().enumerate() {
            let at = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
            requests.push([m.clone(), at(&uris), at(&hosts), at(&uas)]);
        }
        if methods.is_empty() {
            for code in list(&row[6]) {
                responses.push((code, row[7].clone()));
            }
        }
    }
    let mut agreed = 0;
    let http: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_type"] == "http")
        .map(|r| &r["http"])
        .collect();
    let text = |h: &Value, k: &str| h[k].as_str().unwrap_or("").to_owned();
    for h in &http {
        let ours = [
            text(h, "http_method"),
            text(h, "url"),
            text(h, "hostname"),
            text(h, "http_user_agent"),
        ];
        let i = requests.iter().position(|r| *r == ours).unwrap_or_else(|| {
            panic!("{file}: tshark has no request {ours:?}; it has {requests:?}")
        });
        requests.remove(i);
        if let Some(status) = h["status"].as_u64() {
            // tshark dissects no response its reassembly could not complete (one a gap went through).
            if h.get("interrupted").is_none() && h.get("gap").is_none() {
                let theirs = (status.to_string(), text(h, "http_content_type"));
                let j = responses
                    .iter()
                    .position(|r| *r == theirs)
                    .unwrap_or_else(|| {
                        panic!("{file}: tshark has no response {theirs:?}; it has {responses:?}")
                    });
                responses.remove(j);
            }
        }
        agreed += 1;
    }
    assert!(
        requests.is_empty(),
        "{file}: requests tshark saw that vxtap did not log: {requests:?}"
    );
    assert!(
        responses.is_empty(),
        "{file}: responses tshark saw that vxtap did not log: {responses:?}"
    );
    Some(agreed)
}

#[test]
fn tshark_agrees_with_every_transaction() {
    let mut total: HashMap<&str, usize> = HashMap::new();
    for (file, _) in CAPTURES {
        let (_, records) = replay(file);
        let (Some(dns), Some(http)) = (dns_agrees(file, &records), http_agrees(file, &records))
        else {
            return;
        };
        eprintln!("{file}: tshark agrees on {dns} DNS and {http} HTTP transactions");
        *total.entry("dns").or_default() += dns;
        *total.entry("http").or_default() += http;
    }
    // aws-mirror.pcap: the web session's two DNS transactions, and the stranger's copy of one query
    // (a replay accepts every outer source).
    assert_eq!(total["dns"], 10 + 3 + 1, "{total:?}");
    assert_eq!(total["http"], 6 + 1 + 1, "{total:?}");
}

/// A DNS answer cut by the mirror's PacketLength (a real capture): one record, with the
/// answer that survived, flagged rather than dropped.
#[test]
fn truncated_dns_answer_is_flagged() {
    let (_, records) = replay("pcaps/third-party/geneve-vxlan-dns-truncated.pcap");
    assert_eq!(records.len(), 1, "{records:#?}");
    let d = &records[0]["dns"];
    assert_eq!(d["type"], "answer");
    assert_eq!(d["rrname"], "corelight.com");
    assert_eq!(d["malformed"], true);
    assert_eq!(d["truncated"], true);
    assert_eq!(d["answers"][0]["rdata"], "199.60.103.6");
}
