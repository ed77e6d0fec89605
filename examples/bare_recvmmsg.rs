//! The drain benchmark's baseline: the least a receiver can do. N threads, each with its own
//! SO_REUSEPORT socket, receive with recvmmsg into the same buffers vxtap uses (64 × 9,216 bytes)
//! and only count. On SIGINT or SIGTERM each thread drains what its socket still holds, then the
//! process prints `received=N` on stdout.
//!
//! `cargo run --release --example bare_recvmmsg -- 127.0.0.1:4789 2 33554432 [meta]`
//! (address, threads, SO_RCVBUF bytes). With `meta` it also asks the kernel for what vxtap needs
//! besides the bytes: each datagram's source address and an SO_TIMESTAMPNS receive timestamp, to
//! tell how much of vxtap's gap to the bare loop is kernel work for those.

use std::io;
use std::mem::zeroed;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const BATCH: usize = 64;
const BUFFER: usize = 9216;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || io::Error::other("usage: bare_recvmmsg ADDR THREADS RCVBUF_BYTES");
    let addr: SocketAddr = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let threads: usize = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let rcvbuf: usize = args
        .next()
        .ok_or_else(usage)?
        .parse()
        .map_err(|_| usage())?;
    let meta = args.next().as_deref() == Some("meta");
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_port(true)?;
        s.set_recv_buffer_size(rcvbuf)?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        if meta {
            let on: libc::c_int = 1;
            // SAFETY: a valid socket fd and a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        s.bind(&addr.into())?;
        let total = total.clone();
        handles.push(std::thread::spawn(move || {
            let n = receive(&s, meta);
            total.fetch_add(n, Ordering::Relaxed);
        }));
    }
    eprintln!("bare_recvmmsg: listening on {addr} with {threads} socket(s)");
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("a receive thread panicked"))?;
    }
    println!("received={}", total.load(Ordering::Relaxed));
    Ok(())
}

fn receive(socket: &Socket, meta: bool) -> u64 {
    let mut bufs = vec![0u8; BATCH * BUFFER];
    // SAFETY: sockaddr_storage is a plain C struct for which all-zero is valid.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; BATCH];
    let mut cmsgs = vec![[0u64; 8]; BATCH];
    let mut iovecs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            iov_base: bufs[i * BUFFER..].as_mut_ptr().cast(),
            iov_len: BUFFER,
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|i| {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut iovecs[i];
            h.msg_hdr.msg_iovlen = 1;
            if meta {
                h.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
            }
            h
        })
        .collect();
    let mut count = 0u64;
    let mut draining = false;
    loop {
        let flags = if draining {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        if meta {
            for h in &mut hdrs {
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
                h.msg_hdr.msg_controllen = 64;
            }
        }
        // SAFETY: every header points at a live buffer of BUFFER bytes.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as _,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            count += n as u64;
        } else if draining {
            break;
        }
        if !draining && STOP.load(Ordering::Relaxed) {
            draining = true;
        }
    }
    drop((bufs, names, cmsgs));
    count
}
