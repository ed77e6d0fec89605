//! The TLS module's per-connection state machine, driven with arbitrary chunks and gaps in both
//! directions: what a hostile or broken connection can send through reassembly. It must never
//! panic, must keep its buffers within the memory budget, give them all back when the connection
//! ends, and go quiet once it has decided.
//!
//! Input: a sequence of steps, each a control byte (bit 0: direction, bit 1: a gap instead of
//! data, bit 2: the gap is a truncation) and a length byte, then that many data bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap::flow::{Chunk, Dir, GapReason};
use vxtap::modules::tls::state::{Conn, Memory, Tally, Verdict};

/// Small enough that the budget is reached by a few large handshakes.
const BUDGET: usize = 48 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut conn = Conn::new();
    let mut mem = Memory::new(BUDGET);
    let mut tally = Tally::default();
    let mut offsets = [0u64; 2];
    let mut decided = false;
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let dir = if control & 1 == 0 { Dir::ToServer } else { Dir::ToClient };
        let len = usize::from(*len) * if control & 8 != 0 { 64 } else { 1 };
        let offset = offsets[dir.index()];
        let verdict = if control & 2 != 0 {
            let why = if control & 4 != 0 { GapReason::Truncated } else { GapReason::Lost };
            offsets[dir.index()] += len as u64;
            rest = tail;
            conn.on_chunk(dir, &Chunk::Gap { offset, len: len as u64, why }, &mut mem, &mut tally)
        } else {
            let n = len.min(tail.len());
            let (bytes, after) = tail.split_at(n);
            offsets[dir.index()] += n as u64;
            rest = after;
            conn.on_chunk(dir, &Chunk::Data { offset, bytes }, &mut mem, &mut tally)
        };
        assert!(mem.held <= mem.limit, "over the memory budget");
        if decided {
            assert_eq!(verdict, Verdict::Pending, "a decided connection goes quiet");
        }
        match verdict {
            Verdict::Pending => {}
            Verdict::NotTls => {
                decided = true;
                assert_eq!(mem.held, 0, "nothing kept for a flow that is not TLS");
            }
            Verdict::Complete => {
                decided = true;
                assert!(conn.handshake().is_some());
                conn.finish(&mut mem);
            }
        }
    }
    let _ = conn.end(&mut mem);
    assert_eq!(mem.held, 0, "every buffer given back at the end");
});
