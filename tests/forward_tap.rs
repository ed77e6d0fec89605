//! The forward module's TAP output in a network namespace this test creates and removes: `vxtap run`
//! in the namespace creates one TAP device per configured session (named `vx` + FNV-1a of the ENI id
//! or session name), tcpdump on each device captures exactly the inner frames `vxtap send` mirrored in
//! that session and nothing else, a second output's single device (`per_session = false`) has them
//! all, and the devices are gone after vxtap stops.
//!
//! Needs root (CAP_NET_ADMIN), ip(8), tcpdump and /dev/net/tun. Without them it is skipped with a
//! message, except under CI=true, where it fails.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VXTAP: &str = env!("CARGO_BIN_EXE_vxtap");

struct Namespace(String);

impl Namespace {
    fn create() -> Result<Namespace, String> {
        let name = format!("vxtap-tap-{}", std::process::id() % 100_000);
        let ns = Namespace(name.clone());
        for step in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip")
                .args(&step)
                .output()
                .map_err(|e| format!("ip(8): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip {}: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(ns)
    }

    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    fn link_exists(&self, dev: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.0, "link", "show", dev])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn prerequisites() -> Result<Namespace, String> {
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun is missing".into());
    }
    Command::new("tcpdump")
        .arg("--version")
        .output()
        .map_err(|e| format!("tcpdump: {e}"))?;
    Namespace::create()
}

/// The documented device name: `vx` and the 8 hex digits of the 32-bit FNV-1a hash of the key.
fn device(key: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("vx{h:08x}")
}

/// A classic pcap (little-endian, microseconds, Ethernet) of `frames`.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [
            1_700_000_000u32,
            i as u32 * 10,
            f.len() as u32,
            f.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// The frames of a classic pcap file, in order (either byte order of timestamps is fine: only the
/// bytes are compared).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(data) = bytes.get(at + 16..at + 16 + caplen) else {
            break;
        };
        out.push(data.to_vec());
        at += 16 + caplen;
    }
    out
}

/// Starts tcpdump on `dev` in the namespace (frames the device receives only) and waits until it
/// listens.
fn tcpdump(ns: &Namespace, dev: &str, file: &Path) -> common::Reaped {
    let mut child = common::Reaped::new(
        ns.exec("tcpdump")
            .args([
                "-n",
                "-U",
                "--immediate-mode",
                "-Q",
                "in",
                "-s",
                "0",
                "-i",
                dev,
                "-w",
            ])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.contains("listening on") && Instant::now() < deadline {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => log.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(log.contains("listening on"), "tcpdump on {dev}: {log}");
    // Keep reading: tcpdump reports its counts on stderr as it stops, and a closed pipe would kill
    // it before it has written its last packets.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

fn stop(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on a child this test started and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "pid {} did not stop on signal {signal} within 10 s; killed",
        child.id()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn each_session_has_its_own_tap_device_with_only_its_frames() {
    let ns = match prerequisites() {
        Ok(ns) => ns,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the TAP test cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}; run as root with tcpdump installed");
            return;
        }
    };
    let tmp = common::temp_dir("vxtap-fwd-tap-");
    let dir = tmp.path();
    let eni = "eni-0a1b2c3d4e5f60718";
    let (dev_a, dev_b) = (device(eni), device("second"));
    let config = dir.join("vxtap.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nvxlan = [\"127.0.0.1:4789\"]\n[pipeline]\nshards = 2\n\
             [[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 11\neni = \"{eni}\"\n\
             [[sessions.static]]\nsource = \"127.0.0.1\"\nvni = 12\nname = \"second\"\n\
             [[module]]\nkind = \"forward\"\n[[module.output]]\ntype = \"tap\"\n\
             [[module.output]]\ntype = \"tap\"\nper_session = false\nname = \"vxall0\"\n"
        ),
    )
    .unwrap();
    let mut vxtap = common::Reaped::new(
        ns.exec(VXTAP)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = vxtap.stderr.take().unwrap();
    let log = common::wait_until_running(&mut stderr);
    // Keep draining the log so that vxtap never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    for dev in [&dev_a, &dev_b, "vxall0"] {
        let link = ns
            .link_exists(dev)
            .unwrap_or_else(|| panic!("device {dev} exists while vxtap runs: {log}"));
        assert!(link.contains("mtu 9216") && link.contains(",UP"), "{link}");
    }

    let (cap_a, cap_b, cap_all) = (dir.join("a.pcap"), dir.join("b.pcap"), dir.join("all.pcap"));
    let mut dump_a = tcpdump(&ns, &dev_a, &cap_a);
    let mut dump_b = tcpdump(&ns, &dev_b, &cap_b);
    let mut dump_all = tcpdump(&ns, "vxall0", &cap_all);

    let frames = |base: u8, n: u16| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                common::tcp4(
                    [10, base, 0, 1],
                    40_000 + i % 3,
                    [10, 9, 0, 2],
                    443,
                    &vec![base; 60 + usize::from(i) * 37],
                )
            })
            .collect()
    };
    let (frames_a, frames_b) = (frames(1, 20), frames(2, 15));
    for (vni, frames, name) in [(11, &frames_a, "a-in.pcap"), (12, &frames_b, "b-in.pcap")] {
        let file = dir.join(name);
        write_pcap(&file, frames);
        let out = ns
            .exec(VXTAP)
            .args(["send", "--top-speed", "--to", "127.0.0.1:4789", "--vni"])
            .arg(vni.to_string())
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // tcpdump (immediate mode) writes each frame as it comes; give the last ones a moment.
    std::thread::sleep(Duration::from_millis(500));
    let stats = Command::new("ip")
        .args(["-n", &ns.0, "-s", "link", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    stop(&mut dump_a, libc::SIGINT);
    stop(&mut dump_b, libc::SIGINT);
    stop(&mut dump_all, libc::SIGINT);
    // SIGINT: stop at once (SIGTERM would drain for `drain_seconds` first).
    stop(&mut vxtap, libc::SIGINT);

    let sorted = |mut v: Vec<Vec<u8>>| {
        v.sort();
        v
    };
    // The two shards write to their own queues, so order across flows may differ; within one
    // device every frame is there, once, and nothing else.
    let (got_a, got_b) = (sorted(read_pcap(&cap_a)), sorted(read_pcap(&cap_b)));
    assert_eq!(
        (got_a.len(), got_b.len()),
        (frames_a.len(), frames_b.len()),
        "{stats}"
    );
    assert!(
        got_a == sorted(frames_a),
        "{dev_a} holds exactly the first session's frames"
    );
    assert!(
        got_b == sorted(frames_b),
        "{dev_b} holds exactly the second session's frames"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while (ns.link_exists(&dev_a).is_some() || ns.link_exists(&dev_b).is_some())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ns.link_exists(&dev_a).is_none(),
        "{dev_a} removed with vxtap"
    );
    assert!(
        ns.link_exists(&dev_b).is_none(),
        "{dev_b} removed with vxtap"
    );
}
