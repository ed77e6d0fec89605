//! The Debian package built by `cargo deb` (metadata in Cargo.toml, scripts and unit in deploy/debian/).
//!
//! Always: deploy/debian/vxtap.service is systemd/vxtap.service with ExecStart=/usr/bin/vxtap, and the
//! maintainer scripts carry the marker where cargo-deb inserts its systemd snippets.
//!
//! With a built package (`<target>/debian/vxtap_<version>-*.deb`), as root, with dpkg: installs it on
//! this machine with `dpkg -i`, checks what it put where (unit verified by `systemd-analyze verify`,
//! config accepted by `vxtap check-config`, the vxtap user, the unit enabled and never started),
//! reinstalls it over a locally edited conffile, removes it, purges it, and checks that nothing is left.
//! A guard purges the package if a check fails half-way. Under CI=true a missing package, dpkg or root
//! fails the test; elsewhere it is skipped with a notice. A vxtap package or user already on the machine
//! is never touched: the test fails under CI=true and is skipped elsewhere.
//!
//! Without systemd as PID 1 (this machine, CI) the maintainer scripts must succeed anyway: they only
//! call systemctl under /run/systemd/system, and deb-systemd-helper manages the enablement symlinks
//! itself.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SOURCE_UNIT: &str = include_str!("../systemd/vxtap.service");
const PACKAGED_UNIT: &str = include_str!("../deploy/debian/vxtap.service");
const SOURCE_EXEC: &str = "ExecStart=/usr/local/bin/vxtap ";
const PACKAGED_EXEC: &str = "ExecStart=/usr/bin/vxtap ";

const UNIT_PATH: &str = "/usr/lib/systemd/system/vxtap.service";
const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/vxtap.service";
const CONFIG: &str = "/etc/vxtap/vxtap.toml";

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skip with a notice, or fail under CI=true.
fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("required in CI: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        text(&out)
    );
    text(&out)
}

#[test]
fn packaged_unit_is_the_source_unit_with_usr_bin() {
    assert_eq!(
        SOURCE_UNIT.matches(SOURCE_EXEC).count(),
        1,
        "systemd/vxtap.service has one {SOURCE_EXEC:?} line"
    );
    let expected = SOURCE_UNIT.replace(SOURCE_EXEC, PACKAGED_EXEC);
    if expected != PACKAGED_UNIT {
        let first_difference = expected
            .lines()
            .zip(PACKAGED_UNIT.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: expected {a:?}, found {b:?}", i + 1))
            .unwrap_or_else(|| "one file is longer".to_string());
        panic!(
            "deploy/debian/vxtap.service must equal systemd/vxtap.service except for ExecStart \
             ({first_difference}); regenerate it with\n  sed 's#^{SOURCE_EXEC}#{PACKAGED_EXEC}#' \
             systemd/vxtap.service > deploy/debian/vxtap.service"
        );
    }
}

#[test]
fn maintainer_scripts_are_executable_and_take_the_systemd_snippets() {
    for script in ["postinst", "postrm"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/debian")
            .join(script);
        let body = fs::read_to_string(&path).unwrap();
        assert!(
            body.starts_with("#!/bin/sh\n"),
            "{script}: a /bin/sh script"
        );
        assert!(body.contains("\nset -e\n"), "{script}: set -e");
        assert_eq!(
            body.matches("#DEBHELPER#").count(),
            1,
            "{script}: exactly one #DEBHELPER# marker (cargo-deb replaces every occurrence, comments too)"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is executable ({mode:o})");
    }
}

/// `<target>/debian/vxtap_<version>-<revision>_<arch>.deb`, the newest if several.
fn built_package() -> Option<PathBuf> {
    // CARGO_BIN_EXE_vxtap is <target>/<profile>/vxtap, whatever CARGO_TARGET_DIR says.
    let target = Path::new(env!("CARGO_BIN_EXE_vxtap")).parent()?.parent()?;
    let prefix = format!("vxtap_{}-", env!("CARGO_PKG_VERSION"));
    fs::read_dir(target.join("debian"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn package_status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", "vxtap"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty() && !s.starts_with("un"))
}

fn passwd_entry(name: &str) -> Option<Vec<String>> {
    let out = run("getent", &["passwd", name]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(':')
            .map(str::to_string)
            .collect()
    })
}

fn group_exists(name: &str) -> bool {
    run("getent", &["group", name]).status.success()
}

fn exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Serialises this test between checkouts on one machine (dpkg allows one writer, and two runs would
/// purge each other's install).
struct MachineLock(#[allow(dead_code)] fs::File);

fn lock_machine() -> MachineLock {
    use std::os::fd::AsRawFd;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/lock/vxtap-deb-package-test.lock")
        .or_else(|_| {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(std::env::temp_dir().join("vxtap-deb-package-test.lock"))
        })
        .unwrap();
    // SAFETY: flock on a descriptor this function owns; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    MachineLock(file)
}

/// Purges the package when a check fails between install and purge, so a failed run leaves the
/// machine as it found it; also removes the directories the test itself made, and the vxtap user and
/// group, which did not exist before the test (a broken postrm could leave them).
struct Installed {
    made_dirs: Vec<&'static str>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = run("dpkg", &["--purge", "vxtap"]);
        }
        if passwd_entry("vxtap").is_some() {
            let _ = run("userdel", &["vxtap"]);
        }
        if group_exists("vxtap") {
            let _ = run("groupdel", &["vxtap"]);
        }
        for dir in self.made_dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// What systemd would make at the first start (StateDirectory= and LogsDirectory= with
/// DynamicUser=yes): private/vxtap with files in it, and the usual name as a link to it.
fn make_service_dirs(made: &mut Vec<&'static str>) {
    for (base, private) in [
        ("/var/lib", "/var/lib/private"),
        ("/var/log", "/var/log/private"),
    ] {
        if !exists(private) {
            fs::create_dir(private).unwrap();
            fs::set_permissions(private, fs::Permissions::from_mode(0o700)).unwrap();
            made.push(private);
        }
        let dir = format!("{private}/vxtap/out");
        fs::create_dir_all(&dir).unwrap();
        fs::write(format!("{dir}/written-by-a-module"), b"x").unwrap();
        std::os::unix::fs::symlink("private/vxtap", format!("{base}/vxtap")).unwrap();
    }
}

#[test]
fn package_installs_enabled_not_started_and_purges_cleanly() {
    let Some(deb) = built_package() else {
        return skip_or_fail(&format!(
            "no vxtap_{}-*.deb under <target>/debian: build it with `cargo deb`",
            env!("CARGO_PKG_VERSION")
        ));
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip_or_fail("installing the package needs root");
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return skip_or_fail("dpkg is not runnable");
    }
    let deb = deb.to_str().unwrap().to_string();
    let _lock = lock_machine();
    if let Some(status) = package_status() {
        return skip_or_fail(&format!(
            "a vxtap package is already on this machine ({status}); this test installs and purges \
             its own, so remove that one first (dpkg --purge vxtap)"
        ));
    }
    if passwd_entry("vxtap").is_some() || group_exists("vxtap") {
        return skip_or_fail(
            "a vxtap user or group already exists; the package's purge would remove it",
        );
    }
    for leftover in ["/var/lib/vxtap", "/var/log/vxtap", "/etc/vxtap", WANTS_LINK] {
        if exists(leftover) {
            return skip_or_fail(&format!("{leftover} exists without the package"));
        }
    }
    let mut guard = Installed {
        made_dirs: Vec::new(),
    };

    // Install.
    run_ok("dpkg", &["-i", &deb]);
    assert_eq!(
        package_status().as_deref(),
        Some("ii"),
        "installed and configured"
    );

    // What it put where: the packaged unit, config and drop-in are this checkout's (else the .deb is
    // stale), and the docs the unit's Documentation= names are there.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (installed, source) in [
        (UNIT_PATH, "deploy/debian/vxtap.service"),
        (CONFIG, "systemd/vxtap.toml"),
        ("/usr/lib/sysctl.d/99-vxtap.conf", "systemd/99-vxtap.conf"),
        ("/usr/share/doc/vxtap/operations.md", "docs/operations.md"),
    ] {
        assert_eq!(
            fs::read(installed).unwrap_or_else(|e| panic!("{installed}: {e}")),
            fs::read(manifest.join(source)).unwrap(),
            "{installed} differs from {source}: rebuild the package with `cargo deb`"
        );
    }
    let mode = fs::metadata("/usr/bin/vxtap").unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "/usr/bin/vxtap mode {mode:o}");
    assert!(exists("/usr/share/doc/vxtap/copyright"));
    let conffiles = run_ok("dpkg-query", &["-W", "-f=${Conffiles}", "vxtap"]);
    assert!(
        conffiles.contains(&format!(" {CONFIG} ")),
        "{CONFIG} is a conffile: {conffiles:?}"
    );

    // The unit as installed verifies (it needs /usr/bin/vxtap to exist, so this also checks the path),
    // and the installed binary accepts the installed config.
    let verify = run("systemd-analyze", &["verify", UNIT_PATH]);
    assert!(verify.status.success(), "verify: {}", text(&verify));
    assert_eq!(text(&verify).trim(), "", "verify must print nothing");
    run_ok("/usr/bin/vxtap", &["check-config", CONFIG]);

    // A system user and group, with no login and no home.
    let user = passwd_entry("vxtap").expect("postinst creates the vxtap user");
    let uid: u32 = user[2].parse().unwrap();
    assert!(
        (1..1000).contains(&uid),
        "vxtap is a system user: uid {uid}"
    );
    assert!(
        user[6].ends_with("/nologin") || user[6].ends_with("/false"),
        "no login shell: {user:?}"
    );
    assert!(group_exists("vxtap"));

    // Enabled: the [Install] WantedBy link points at the packaged unit. Never started: the configure
    // step can only try-restart on upgrade, never start.
    // (deb-systemd-helper writes /lib/systemd/system/..., the same file on a merged-/usr system.)
    assert!(
        fs::read_link(WANTS_LINK).is_ok(),
        "{WANTS_LINK} is a symlink"
    );
    assert_eq!(
        fs::canonicalize(WANTS_LINK).unwrap_or_else(|e| panic!("{WANTS_LINK}: {e}")),
        fs::canonicalize(UNIT_PATH).unwrap()
    );
    let postinst = fs::read_to_string("/var/lib/dpkg/info/vxtap.postinst").unwrap();
    assert!(postinst.contains("deb-systemd-helper enable vxtap.service"));
    assert!(postinst.contains("deb-systemd-invoke try-restart vxtap.service"));
    for starts in [
        "deb-systemd-invoke start",
        "_dh_action=start",
        "systemctl start",
        "--now",
    ] {
        assert!(!postinst.contains(starts), "postinst contains {starts:?}");
    }

    // Reinstalling over a locally edited conffile keeps the edit, without a prompt (stdin is closed)
    // and without a second user.
    let edited = format!(
        "{}\n# edited on this appliance\n",
        fs::read_to_string(CONFIG).unwrap()
    );
    fs::write(CONFIG, &edited).unwrap();
    let reinstall = Command::new("dpkg")
        .args(["-i", &deb])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        reinstall.status.success(),
        "reinstall: {}",
        text(&reinstall)
    );
    assert_eq!(
        fs::read_to_string(CONFIG).unwrap(),
        edited,
        "conffile edit kept"
    );
    assert_eq!(
        passwd_entry("vxtap").unwrap()[2],
        uid.to_string(),
        "same user"
    );

    // What the service would have written by now, for purge to delete.
    make_service_dirs(&mut guard.made_dirs);

    // Remove: the program goes, the config, user and data stay.
    run_ok("dpkg", &["--remove", "vxtap"]);
    assert_eq!(
        package_status().as_deref(),
        Some("rc"),
        "removed, config kept"
    );
    for gone in [
        "/usr/bin/vxtap",
        UNIT_PATH,
        "/usr/lib/sysctl.d/99-vxtap.conf",
    ] {
        assert!(!exists(gone), "{gone} left after remove");
    }
    assert_eq!(
        fs::read_to_string(CONFIG).unwrap(),
        edited,
        "remove keeps the config"
    );
    assert!(passwd_entry("vxtap").is_some(), "remove keeps the user");
    assert!(exists("/var/lib/private/vxtap/out/written-by-a-module"));

    // Purge: nothing of it is left.
    run_ok("dpkg", &["--purge", "vxtap"]);
    assert_eq!(package_status(), None, "purged");
    for gone in [
        "/usr/bin/vxtap",
        UNIT_PATH,
        WANTS_LINK,
        "/etc/systemd/system/vxtap.service",
        "/etc/vxtap",
        "/usr/lib/sysctl.d/99-vxtap.conf",
        "/usr/share/doc/vxtap",
        "/var/lib/vxtap",
        "/var/lib/private/vxtap",
        "/var/log/vxtap",
        "/var/log/private/vxtap",
        "/var/lib/systemd/deb-systemd-helper-enabled/vxtap.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/vxtap.service",
        "/var/lib/systemd/deb-systemd-helper-masked/vxtap.service",
    ] {
        assert!(!exists(gone), "{gone} left after purge");
    }
    assert!(passwd_entry("vxtap").is_none(), "purge removes the user");
    assert!(!group_exists("vxtap"), "purge removes the group");
}
