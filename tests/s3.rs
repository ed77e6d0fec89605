//! S3 upload of rotated files, against a real S3-compatible server the test starts (`moto_server`,
//! PyPI `moto[server]`), read back with boto3: a flowlog replay's `aws_logs` files, a spool left by
//! an earlier run, an outage and its end, the spool cap, and `vxtap run` counting its uploads in
//! `/metrics`.
//!
//! Without `moto_server` (or boto3) each test is skipped with a notice, except under CI=true, where
//! it fails: `.ci/run` installs them.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::daemon::{wait_for, Daemon};

use vxtap::base::Timestamp;
use vxtap::sinks::{FileOutputConfig, FileSink, Layout, RotatingFile, S3Config, SeriesName, Sink};

/// Every wait in these tests gives up after this.
const LIMIT: Duration = Duration::from_secs(30);

/// A moto server on a port of its own, stopped when dropped (also when a test fails).
struct Moto {
    port: u16,
    child: Option<Child>,
}

impl Moto {
    /// Starts one, or returns `None` (after a notice) when moto is not installed outside CI.
    fn start() -> Option<Moto> {
        let runnable = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runnable {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("moto_server is required in CI (pip install \"moto[server]\")");
            }
            eprintln!("SKIPPED: moto_server not runnable (pip install \"moto[server]\")");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut moto = Moto { port, child: None };
        moto.up();
        Some(moto)
    }

    fn up(&mut self) {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for("moto_server to listen", LIMIT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 script with `s3` a client of this server and `bucket` set; returns its stdout.
    fn boto3(&self, bucket: &str, script: &str) -> String {
        let program = format!(
            "import boto3, sys\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1',\n\
             aws_access_key_id='test', aws_secret_access_key='test')\n\
             bucket = '{bucket}'\n{script}",
            self.endpoint()
        );
        let out = Command::new("python3")
            .args(["-c", &program])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 from the script")
    }

    fn create_bucket(&self, bucket: &str) {
        self.boto3(bucket, "s3.create_bucket(Bucket=bucket)\n");
    }

    /// Every object of the bucket: key and content.
    fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        let out = self.boto3(
            bucket,
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       body = s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read()\n\
             \x20       print(o['Key'], body.hex())\n",
        );
        let mut objects: Vec<_> = out
            .lines()
            .map(|l| {
                let (key, hex) = l.split_once(' ').expect("key and body");
                (key.to_owned(), unhex(hex))
            })
            .collect();
        objects.sort();
        objects
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.down();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    common::temp_dir(&format!("vxtap-s3-{name}-"))
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under dir");
                out.push(rel.to_str().expect("utf-8").to_owned());
            }
        }
    }
    out.sort();
    out
}

fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .expect("gzip");
    s
}

fn s3_config(moto: &Moto, bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.into(),
        prefix: "fleet/".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(moto.endpoint()),
        spool_max_bytes: 1 << 20,
        retry_initial_ms: 100,
        retry_max_secs: 1,
        timeout_secs: 5,
        multipart_threshold_bytes: 64 << 20,
        multipart_part_bytes: 16 << 20,
    }
}

fn series(out: &FileOutputConfig, stem: &str) -> RotatingFile {
    let cap = out.prepare_dir(&[".log", ".log.gz"]).expect("spool dir");
    let name = SeriesName {
        stem: stem.into(),
        ext: "log".into(),
        aws_prefix: None,
    };
    RotatingFile::new(out, name, Vec::new(), cap)
}

const SESSION: &str = r#"
[[sessions.static]]
source = "10.1.200.131"
vni = 1
eni = "eni-0123456789abcdef0"
account_id = "123456789012"
vpc_id = "vpc-0aa"
subnet_id = "subnet-0bb"
instance_id = "i-0cc"
region = "us-east-1"
az_id = "use1-az4"
addresses = ["172.16.11.201"]

[[module]]
kind = "flowlog"
account_id = "123456789012"
region = "us-east-1"
[module.output]
type = "file"
gzip = true
layout = "aws_logs"
"#;

fn replay(config: &str, dir: &Path) {
    let file = dir.join("vxtap.toml");
    std::fs::write(&file, config).expect("config written");
    let capture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pcaps/third-party/vxlan-encapsulated-http.pcap"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vxtap"))
        .arg("replay")
        .arg("--config")
        .arg(&file)
        .arg(capture)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("vxtap runs");
    assert!(
        out.status.success(),
        "vxtap replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_flowlog_replay_uploads_its_aws_logs_files() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("flows");
    let base_tmp = temp_dir("replay");
    let base = base_tmp.path();
    // The same replay into a plain file output: what the module writes.
    let local = base.join("local");
    replay(&format!("{SESSION}dir = \"{}\"\n", local.display()), base);
    let spool = base.join("spool");
    replay(
        &format!(
            "{SESSION}dir = \"{}\"\n[module.output.s3]\nbucket = \"flows\"\nprefix = \"vpc/\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\n",
            spool.display(),
            moto.endpoint()
        ),
        base,
    );
    let written = files_under(&local);
    assert_eq!(
        written,
        ["AWSLogs/123456789012/vpcflowlogs/us-east-1/2021/08/28/\
          123456789012_vpcflowlogs_us-east-1_fl-vxtap-0_20210828T1544Z_0001.log.gz"]
    );
    let objects = moto.objects("flows");
    let keys: Vec<_> = objects.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<_> = written.iter().map(|f| format!("vpc/{f}")).collect();
    assert_eq!(keys, expected, "Athena's partitions under the prefix");
    for ((_, body), file) in objects.iter().zip(&written) {
        let wrote = std::fs::read(local.join(file)).expect("the module's file");
        assert_eq!(gunzip(body), gunzip(&wrote));
        assert!(gunzip(body).lines().count() == 3, "header and two records");
    }
    assert!(files_under(&spool).is_empty(), "uploaded files are deleted");
}

#[test]
fn files_left_in_the_spool_are_uploaded_at_start() {
    let Some(moto) = Moto::start() else { return };
    credentials();
    moto.create_bucket("restart");
    let tmp = temp_dir("restart");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("2024/01/02")).expect("dirs");
    std::fs::write(dir.join("2024/01/02/old_0001.log"), "left by a crash\n").expect("file");
    std::fs::write(dir.join("flat_0002.log.gz"), b"gzip bytes").expect("file");
    // Open when the process died: never uploaded.
    std::fs::write(dir.join("open_0003.log.partial"), "half").expect("file");
    let mut out = FileOutputConfig::new(dir);
    out.s3 = Some(s3_config(&moto, "restart"));
    out.prepare_dir(&[".log", ".log.gz"]).expect("spool");
    let uploader = out.uploader().expect("an uploader");
    wait_for("the spool's files to go up", LIMIT, || {
        uploader.totals().uploaded == 2
    });
    let objects = moto.objects("restart");
    assert_eq!(
        objects,
        [
            (
                "fleet/2024/01/02/old_0001.log".to_owned(),
                b"left by a crash\n".to_vec()
            ),
            ("fleet/flat_0002.log.gz".to_owned(), b"gzip bytes".to_vec()),
        ]
    );
    assert_eq!(files_under(dir), ["open_0003.log.partial"]);
}

#[test]
fn an_outage_keeps_files_in_the_spool_until_s3_is_back() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    credentials();
    moto.create_bucket("outage");
    let tmp = temp_dir("outage");
    let dir = tmp.path();
    let mut out = FileOutputConfig::new(dir);
    out.rotate_secs = 60;
    out.layout = Layout::Dated;
    out.s3 = Some(s3_config(&moto, "outage"));
    let mut sink = FileSink::new(series(&out, "o"));
    let uploader = out.uploader().expect("an uploader");
    // moto keeps buckets in memory: a restart forgets them, so the bucket is made again after.
    moto.down();
    let t0 = Timestamp::from_secs(1_700_000_000);
    sink.write(t0, b"first minute\n").expect("write");
    sink.write(Timestamp::from_secs(1_700_000_060), b"second minute\n")
        .expect("write");
    sink.flush(Timestamp::from_secs(1_700_000_200))
        .expect("flush");
    wait_for("failed attempts", LIMIT, || uploader.totals().failed >= 2);
    assert_eq!(uploader.totals().uploaded, 0);
    assert_eq!(files_under(dir).len(), 2, "both stay spooled");
    let counted = sink.take_uploads();
    assert!(counted.failed >= 2 && counted.uploaded == 0, "{counted:?}");
    let spooled = || {
        vxtap::sinks::spools()
            .into_iter()
            .find(|s| s.dir == dir)
            .map(|s| s.bytes)
    };
    assert_eq!(spooled(), Some(27), "the gauge shows what waits");

    moto.up();
    moto.create_bucket("outage");
    wait_for("the spool to drain", LIMIT, || {
        uploader.totals().uploaded == 2
    });
    assert!(files_under(dir).is_empty(), "deleted once stored");
    let objects = moto.objects("outage");
    let texts: Vec<_> = objects
        .iter()
        .map(|(k, b)| (k.as_str(), String::from_utf8_lossy(b).into_owned()))
        .collect();
    assert_eq!(
        texts,
        [
            (
                "fleet/2023/11/14/o_20231114T221320Z_0001.log",
                "first minute\n".to_owned()
            ),
            (
                "fleet/2023/11/14/o_20231114T221420Z_0002.log",
                "second minute\n".to_owned()
            ),
        ]
    );
    assert_eq!(sink.take_uploads().uploaded, 2);
    assert_eq!(spooled(), Some(0));
}

#[test]
fn a_large_file_goes_up_in_parts() {
    let Some(moto) = Moto::start() else { return };
    credentials();
    moto.create_bucket("parts");
    let tmp = temp_dir("parts");
    let dir = tmp.path();
    // 12 MiB and a bit, in 5 MiB parts: three parts, the last one short.
    let body: Vec<u8> = (0..(12 << 20) + 1000)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("big_0001.log"), &body).expect("file");
    std::fs::write(dir.join("small_0002.log"), b"small\n").expect("file");
    let mut out = FileOutputConfig::new(dir);
    out.s3 = Some(S3Config {
        spool_max_bytes: 0,
        multipart_threshold_bytes: 5 << 20,
        multipart_part_bytes: 5 << 20,
        ..s3_config(&moto, "parts")
    });
    out.validate().expect("a valid output");
    out.prepare_dir(&[".log"]).expect("spool");
    let uploader = out.uploader().expect("an uploader");
    wait_for("both files to go up", LIMIT, || {
        uploader.totals().uploaded == 2
    });
    assert!(files_under(dir).is_empty());
    // A multipart object's ETag ends in -<parts>; a single PUT's does not.
    let etags = moto.boto3(
        "parts",
        "for k in ['fleet/big_0001.log', 'fleet/small_0002.log']:\n\
         \x20   print(s3.head_object(Bucket=bucket, Key=k)['ETag'].strip('\"'))\n",
    );
    let etags: Vec<&str> = etags.lines().collect();
    assert!(etags[0].ends_with("-3"), "three parts: {etags:?}");
    assert!(!etags[1].contains('-'), "one PUT: {etags:?}");
    let objects = moto.objects("parts");
    assert_eq!(objects[0], ("fleet/big_0001.log".to_owned(), body));
    assert_eq!(
        objects[1],
        ("fleet/small_0002.log".to_owned(), b"small\n".to_vec())
    );
}

#[test]
fn a_reload_uploads_each_spooled_file_once() {
    let Some(moto) = Moto::start() else { return };
    credentials();
    moto.create_bucket("reload");
    let tmp = temp_dir("reload");
    let dir = tmp.path();
    for i in 0..30 {
        std::fs::write(dir.join(format!("f_{i:04}.log")), format!("file {i}\n")).expect("file");
    }
    // A reload builds the output anew over the same spool while the old one still sends what it
    // holds: two uploaders rescanning one directory.
    let output = || {
        let mut out = FileOutputConfig::new(dir);
        out.s3 = Some(s3_config(&moto, "reload"));
        out
    };
    let (old, new) = (output(), output());
    old.prepare_dir(&[".log"]).expect("spool");
    new.prepare_dir(&[".log"]).expect("spool");
    let (a, b) = (
        old.uploader().expect("an uploader"),
        new.uploader().expect("an uploader"),
    );
    wait_for("the spool to drain", LIMIT, || files_under(dir).is_empty());
    wait_for("the counts to settle", LIMIT, || {
        a.totals().uploaded + b.totals().uploaded >= 30
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        a.totals().uploaded + b.totals().uploaded,
        30,
        "each file sent and counted once"
    );
    assert_eq!(moto.objects("reload").len(), 30);
}

#[test]
fn the_spool_cap_drops_the_oldest_file_and_counts_it() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    credentials();
    let tmp = temp_dir("cap");
    let dir = tmp.path();
    let mut out = FileOutputConfig::new(dir);
    out.rotate_bytes = 100;
    out.rotate_secs = 0;
    let mut config = s3_config(&moto, "cap");
    config.spool_max_bytes = 250;
    out.s3 = Some(config);
    moto.down();
    let mut file = series(&out, "c");
    let uploader = out.uploader().expect("an uploader");
    let t0 = Timestamp::from_secs(1_700_000_000);
    // Three files of 100 bytes while S3 is away: 300 > 250, so the oldest goes.
    for i in 0..3u8 {
        file.prepare(t0, 100);
        file.append(t0, &[b'a' + i; 100]).expect("append");
    }
    file.close();
    assert_eq!(uploader.totals().dropped, 1, "{:?}", files_under(dir));
    let left = files_under(dir);
    assert_eq!(
        left,
        ["c_20231114T221320Z_0002.log", "c_20231114T221320Z_0003.log"]
    );
    assert_eq!(file.take_uploads().dropped, 1, "reported once");
    assert_eq!(file.take_uploads().dropped, 0);
}

#[test]
fn vxtap_run_uploads_its_spool_at_start_and_counts_it_in_metrics() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("daemon");
    let tmp = temp_dir("daemon");
    let dir = tmp.path();
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).expect("spool");
    std::fs::write(spool.join("flowlog-shard0_old_0001.log"), "left over\n").expect("file");
    let config = dir.join("vxtap.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:0\"]\nworkers = 1\nreceive_buffer_bytes = 0\n\
             [pipeline]\nshards = 1\ntick_ms = 200\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [health]\nlisten = \"127.0.0.1:0\"\n\
             [[module]]\nkind = \"flowlog\"\n[module.output]\ntype = \"file\"\ndir = \"{}\"\n\
             [module.output.s3]\nbucket = \"daemon\"\nendpoint = \"{}\"\n",
            spool.display(),
            moto.endpoint()
        ),
    )
    .expect("config");
    let vxtap = Daemon::start(
        &config,
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        false,
        LIMIT,
    );
    wait_for("the upload counted in /metrics", LIMIT, || {
        vxtap.get("/metrics").is_some_and(|body| {
            body.lines().any(|l| {
                l.starts_with("vxtap_module_s3_uploads_total{")
                    && l.contains("result=\"ok\"")
                    && l.ends_with(" 1")
            })
        })
    });
    assert_eq!(
        moto.objects("daemon"),
        [(
            "flowlog-shard0_old_0001.log".to_owned(),
            b"left over\n".to_vec()
        )]
    );
    assert!(files_under(&spool).is_empty());
    let body = vxtap.get("/metrics").expect("metrics");
    let gauge = format!("vxtap_s3_spool_bytes{{dir=\"{}\"}} 0", spool.display());
    assert!(body.lines().any(|l| l == gauge), "{gauge} in\n{body}");
}
