//! The baseline for the forward benchmark (bench/run.sh part (e)): what the kernel alone charges for
//! sending a mirror datagram with sendmmsg on loopback, so that the forward module's extra CPU per
//! datagram can be split into the kernel's send path and vxtap's own work.
//!
//! One thread sends the drain benchmark's VXLAN payloads (the same generator, so the same sizes) in
//! batches of 64, non-blocking, to a bound socket on loopback that is never read (the kernel drops
//! once its 4 KiB buffer is full, as for the forward benchmark's receiver), and reports the thread's
//! CPU time per datagram.
//!
//! ```text
//! bare_sendmmsg [DATAGRAMS (default 1000000)]
//! ```

use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

#[path = "../benches/common/traffic.rs"]
mod traffic;

fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes one timespec on this stack frame.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() -> io::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let discard = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    discard.set_recv_buffer_size(4096)?;
    discard.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())?;
    let discard: UdpSocket = discard.into();
    let to = socket2::SockAddr::from(discard.local_addr()?);
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let fd = sender.as_raw_fd();

    let mut t = traffic::Traffic::new(42, 20_000, 8);
    let payloads: Vec<Vec<u8>> = (0..4096).map(|_| t.next().vxlan.to_vec()).collect();
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(64);
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(64);

    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let (mut sent, mut next, mut refused) = (0u64, 0usize, 0u64);
    while sent + refused < total {
        iov.clear();
        hdrs.clear();
        for _ in 0..64 {
            let p = &payloads[next % payloads.len()];
            next += 1;
            iov.push(libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            });
        }
        for v in iov.iter_mut() {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = to.len();
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            hdrs.push(h);
        }
        // SAFETY: the headers point at iovecs into `payloads` and at `to`, all alive for the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent += n as u64;
        } else {
            refused += 64;
        }
    }
    let cpu = thread_cpu_ns() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    println!(
        "RESULT bare_send datagrams={sent} refused={refused} cpu_ns_per_datagram={:.0} mps={:.3}",
        cpu as f64 / sent.max(1) as f64,
        sent as f64 / wall / 1e6
    );
    Ok(())
}
