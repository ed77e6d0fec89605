//! TAP output: the inner frames written to Linux TAP devices, so that sniffers on the appliance
//! (Suricata af-packet, Zeek, tcpdump, Arkime) read each mirror session as if it were a local link.
//!
//! Every shard opens its own queue of each device (IFF_MULTI_QUEUE): the kernel keeps one device with
//! one queue per shard, so shards never share a descriptor and the packet path takes no lock. The
//! device exists while any queue is open and goes away with the last one (devices are not made
//! persistent), so vxtap's exit, a crash or a reload removes them without cleanup code.
//!
//! Names: one device per session is named `vx` and the 8 hex digits of the 32-bit FNV-1a hash of the
//! session's ENI id (or, without one, its name): `eni-0a1b2c3d4e5f60718` → `vx` + 8 hex digits, 10
//! characters, inside the 15 of IFNAMSIZ whatever the input. FNV-1a because it is fixed by its
//! definition and so stable across vxtap versions, which scripts that name the device rely on. Two keys
//! whose hashes collide are told apart by hashing the later one again with `#1`, `#2`, … appended,
//! in the order sessions first reach the output (logged, so the mapping is visible).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use super::Drops;

/// Linux's IFNAMSIZ, with the terminating NUL.
const IFNAMSIZ: usize = 16;

/// Device names handed out by one output, shared by its shards: name → the key it was made for.
/// Touched only when a shard meets a session for the first time.
pub(crate) type Names = Arc<Mutex<BTreeMap<String, String>>>;

/// 32-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The device name for `key` at collision round `round` (0 first).
pub(crate) fn device_name(key: &str, round: u32) -> String {
    let h = if round == 0 {
        fnv1a(key.as_bytes())
    } else {
        fnv1a(format!("{key}#{round}").as_bytes())
    };
    format!("vx{h:08x}")
}

/// The name for `key`, reserving it in `names`; the same key always gets the same name.
pub(crate) fn reserve(names: &Names, key: &str) -> String {
    // A poisoned lock only means another shard panicked while holding it; the map is still whole.
    let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
    for round in 0..64 {
        let name = device_name(key, round);
        match names.get(&name) {
            Some(owner) if owner == key => return name,
            Some(owner) => {
                tracing::warn!(message = "TAP device name collision; trying the next", %name, key, %owner);
            }
            None => {
                names.insert(name.clone(), key.to_owned());
                return name;
            }
        }
    }
    // 64 collisions of a 32-bit hash cannot happen with a bounded number of sessions; share a name.
    device_name(key, 0)
}

/// One shard's queue of one TAP device.
#[derive(Debug)]
pub(crate) struct TapQueue {
    fd: OwnedFd,
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} must be 1 to 15 bytes"),
        ));
    }
    // SAFETY: ifreq is a plain C struct (name array and a union of integers) for which all-zero is
    // valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

impl TapQueue {
    /// Opens a queue of device `name`, creating the device if it does not exist, and brings it up
    /// with `mtu`. Needs CAP_NET_ADMIN.
    pub(crate) fn open(name: &str, mtu: u32) -> io::Result<TapQueue> {
        let path = CString::new("/dev/net/tun").expect("a literal without NUL");
        // SAFETY: a valid NUL-terminated path; the returned descriptor is checked and then owned.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq_named(name)?;
        req.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives on this stack frame.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // Without IPv6 the device sends no router or neighbour solicitations of its own; best effort
        // (a read-only /proc/sys only costs those few frames on the device's transmit side).
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        configure(name, mtu)?;
        Ok(TapQueue { fd })
    }

    /// Writes one frame; a full queue or any error is a counted drop, never a wait.
    #[inline]
    pub(crate) fn write(&self, frame: &[u8], drops: &mut Drops) -> bool {
        // SAFETY: writes `frame.len()` bytes from a live slice to a descriptor this queue owns.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
            )
        };
        if n >= 0 {
            return true;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS) => drops.tap_full += 1,
            _ => drops.send_errors += 1,
        }
        false
    }
}

/// Sets the MTU and brings the device up, without ARP (it has no address to answer for).
fn configure(name: &str, mtu: u32) -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the descriptor is checked and then owned.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned by nothing else.
    let ctl = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq_named(name)?;
    req.ifr_ifru.ifru_mtu = mtu.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: SIOCSIFMTU reads one ifreq on this stack frame.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFMTU, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = ifreq_named(name)?;
    // SAFETY: SIOCGIFFLAGS writes the flags into one ifreq on this stack frame.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_NOARP) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq on this stack frame.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_and_collisions_are_resolved() {
        // FNV-1a's published test vector: "a" → 0xe40c292c.
        assert_eq!(device_name("a", 0), "vxe40c292c");
        let n = device_name("eni-0a1b2c3d4e5f60718", 0);
        assert_eq!(n.len(), 10);
        assert!(n.len() < IFNAMSIZ);
        let names: Names = Arc::default();
        names
            .lock()
            .unwrap()
            .insert(device_name("b", 0), "someone-else".into());
        let first = reserve(&names, "b");
        assert_eq!(first, device_name("b", 1));
        assert_eq!(reserve(&names, "b"), first);
        assert_eq!(reserve(&names, "a"), "vxe40c292c");
        assert!(ifreq_named("sixteen-chars-xx").is_err());
    }
}
