//! TCP reassembly: any sequence of segments, ACKs, finishes and releases on the two directions of
//! a connection sharing one small pool must never panic or loop, and must keep the engine's
//! promises: chunks tile each stream from offset 0, every delivered byte is the first copy that
//! arrived at its offset, held bytes stay within the limits, and the pool is empty at the end.
//!
//! Input: 3 bytes of setup (pool size, per-direction limit, ACK tolerance), 4 bytes of ISN, then
//! operations of 4 bytes each: `[op, offset_hi, offset_lo, len]`. `op & 7`: 0–2 segment, 3 ACK,
//! 4 finish, 5 release, 6–7 segment; bit 3 picks the direction, bit 4 pads the frame past the IP
//! length, bit 5 gives the segment other bytes than the stream's, bit 6 cuts its capture in half
//! (unless padded), bit 7 sets FIN. Offsets are relative
//! to ISN + 1 minus 256, so that segments and ACKs from before the start occur too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vxtap::flow::reassembly::{Chunk, Limits, SegmentPool, StreamDir};

/// Offsets a segment can reach: 256 before the start up to 65535 + 255 + 255 after it.
const SPAN: usize = 1 << 17;
const BACK: u32 = 256;

/// The stream's true byte at an offset (a segment with bit 5 carries other bytes).
fn byte_at(offset: u32, dir: usize, other: bool) -> u8 {
    let b = (offset.wrapping_mul(31) ^ (dir as u32 * 0x55)) as u8;
    if other {
        !b
    } else {
        b
    }
}

/// What one direction has delivered and what the mirror carried for it.
struct Model {
    /// The first byte that arrived at each offset.
    first: Vec<Option<u8>>,
    /// Where the next chunk must start.
    next: u64,
    /// Whether the direction may still deliver (started, neither finished nor released).
    open: bool,
}

impl Model {
    fn new() -> Self {
        Model {
            first: vec![None; SPAN],
            next: 0,
            open: true,
        }
    }

    fn check(&mut self, c: Chunk<'_>) {
        assert!(
            self.open,
            "a finished or released direction delivered {c:?}"
        );
        assert_eq!(c.offset(), self.next, "chunks tile the stream");
        assert!(!c.is_empty(), "no empty chunk");
        if let Chunk::Data { offset, bytes } = c {
            for (i, &b) in bytes.iter().enumerate() {
                let at = offset as usize + i;
                assert_eq!(
                    self.first.get(at).copied().flatten(),
                    Some(b),
                    "byte at {at}"
                );
            }
        }
        self.next += c.len();
    }
}

fuzz_target!(|data: &[u8]| {
    let [pool_chunks, limit_chunks, ack_gap, i0, i1, i2, i3, ops @ ..] = data else {
        return;
    };
    let mut pool = SegmentPool::new(usize::from(pool_chunks % 12) * SegmentPool::CHUNK_BYTES);
    let limits = Limits {
        per_direction_bytes: u32::from(limit_chunks % 8) * SegmentPool::CHUNK_BYTES as u32
            + u32::from(limit_chunks / 8),
        ack_gap_bytes: u32::from(*ack_gap) * 16,
    };
    let first = u32::from_be_bytes([*i0, *i1, *i2, *i3]).wrapping_add(1);
    let mut dirs = [StreamDir::idle(), StreamDir::idle()];
    let mut models = [Model::new(), Model::new()];
    for d in &mut dirs {
        d.start(first);
    }
    let mut payload = [0u8; 255];

    for op in ops.chunks_exact(4) {
        let [code, hi, lo, len] = [op[0], op[1], op[2], op[3]];
        let d = usize::from(code >> 3 & 1);
        let rel = u32::from(u16::from_be_bytes([hi, lo])).wrapping_sub(BACK);
        let seq = first.wrapping_add(rel);
        let (dir, model) = (&mut dirs[d], &mut models[d]);
        match code & 7 {
            3 => dir.acked(&mut pool, &limits, seq, &mut |c| model.check(c)),
            4 => {
                dir.finish(&mut pool, &mut |c| model.check(c));
                model.open = false;
            }
            5 => {
                dir.release(&mut pool);
                model.open = false;
            }
            _ => {
                let len = usize::from(len);
                let other = code & 0x20 != 0;
                for (i, b) in payload[..len].iter_mut().enumerate() {
                    *b = byte_at(rel.wrapping_add(i as u32), d, other);
                }
                // Bit 4: the frame runs on past the IP packet (Ethernet padding): never stream bytes.
                let pad = if code & 0x10 != 0 {
                    6.min(255 - len)
                } else {
                    0
                };
                let captured = if code & 0x40 != 0 && pad == 0 {
                    len / 2
                } else {
                    len
                };
                for b in &mut payload[len..len + pad] {
                    *b = 0xee;
                }
                for i in 0..captured {
                    let at = rel.wrapping_add(i as u32);
                    // Bytes from before the start are never delivered: not in the model.
                    if at < SPAN as u32 {
                        model.first[at as usize].get_or_insert(payload[i]);
                    }
                }
                let fin = code & 0x80 != 0;
                let frame = if pad > 0 {
                    &payload[..len + pad]
                } else {
                    &payload[..captured]
                };
                dir.segment(&mut pool, &limits, seq, frame, len as u32, fin, &mut |c| {
                    model.check(c)
                });
            }
        }
        for (dir, model) in dirs.iter().zip(&models) {
            assert!(dir.held_bytes() <= limits.per_direction_bytes);
            assert_eq!(dir.delivered() + dir.gap_bytes(), dir.next_offset());
            assert_eq!(dir.next_offset(), model.next);
        }
        assert_eq!(
            pool.held_bytes(),
            dirs.iter().map(|d| d.held_bytes() as usize).sum::<usize>()
        );
        assert!(pool.held_bytes() <= pool.capacity_bytes());
    }

    for (dir, model) in dirs.iter_mut().zip(&mut models) {
        dir.finish(&mut pool, &mut |c| model.check(c));
        model.open = false;
        assert_eq!(dir.held_bytes(), 0);
    }
    assert_eq!(pool.held_bytes(), 0, "every chunk back in the pool");
});
