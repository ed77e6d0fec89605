//! Crafted segment sequences, one behaviour each, and a property test against a reference model.

use super::*;

/// What a direction delivered, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Data(u64, Vec<u8>),
    Gap(u64, u64, GapReason),
}

/// One direction and its pool, recording what it delivers and checking, on every chunk, that the
/// chunks tile the stream.
struct Rig {
    pool: SegmentPool,
    limits: Limits,
    dir: StreamDir,
    got: Vec<Got>,
    shown: usize,
}

fn record<'g>(got: &'g mut Vec<Got>) -> impl FnMut(Chunk<'_>) + 'g {
    move |c: Chunk<'_>| {
        let expected = got.last().map_or(0, |g| match g {
            Got::Data(o, b) => o + b.len() as u64,
            Got::Gap(o, l, _) => o + l,
        });
        assert_eq!(
            c.offset(),
            expected,
            "chunks must tile the stream: {c:?} after {got:?}"
        );
        assert!(!c.is_empty(), "no empty chunk");
        got.push(match c {
            Chunk::Data { offset, bytes } => Got::Data(offset, bytes.to_vec()),
            Chunk::Gap { offset, len, why } => Got::Gap(offset, len, why),
        });
    }
}

impl Rig {
    fn new(first: u32) -> Self {
        Self::with(first, Limits::DEFAULT, 1 << 20)
    }

    fn with(first: u32, limits: Limits, pool_bytes: usize) -> Self {
        let mut dir = StreamDir::idle();
        dir.start(first);
        Rig {
            pool: SegmentPool::new(pool_bytes),
            limits,
            dir,
            got: Vec::new(),
            shown: 0,
        }
    }

    fn seg(&mut self, seq: u32, bytes: &str) {
        self.raw(seq, bytes.as_bytes(), bytes.len() as u32, false);
    }

    fn cut(&mut self, seq: u32, bytes: &str, wire_len: u32) {
        self.raw(seq, bytes.as_bytes(), wire_len, false);
    }

    fn fin(&mut self, seq: u32, bytes: &str) {
        self.raw(seq, bytes.as_bytes(), bytes.len() as u32, true);
    }

    fn raw(&mut self, seq: u32, bytes: &[u8], wire_len: u32, fin: bool) {
        self.dir.segment(
            &mut self.pool,
            &self.limits,
            seq,
            bytes,
            wire_len,
            fin,
            &mut record(&mut self.got),
        );
        self.check();
    }

    fn ack(&mut self, ack: u32) {
        self.dir.acked(
            &mut self.pool,
            &self.limits,
            ack,
            &mut record(&mut self.got),
        );
        self.check();
    }

    fn finish(&mut self) {
        self.dir.finish(&mut self.pool, &mut record(&mut self.got));
        assert_eq!(self.pool.held_bytes(), 0, "finish gives every chunk back");
        self.check();
    }

    fn check(&self) {
        assert!(self.dir.held_bytes() <= self.limits.per_direction_bytes);
        assert_eq!(self.pool.held_bytes(), self.dir.held_bytes() as usize);
        assert_eq!(
            self.dir.delivered() + self.dir.gap_bytes(),
            self.dir.next_offset()
        );
    }

    /// What was delivered since the last call, one word per chunk: `off:text` for data,
    /// `off:<why len>` for gaps.
    fn take(&mut self) -> String {
        let words: Vec<String> = self.got[self.shown..]
            .iter()
            .map(|g| match g {
                Got::Data(o, b) => format!("{o}:{}", String::from_utf8_lossy(b)),
                Got::Gap(o, l, why) => format!("{o}:<{} {l}>", why.as_str()),
            })
            .collect();
        self.shown = self.got.len();
        words.join(" ")
    }
}

#[test]
fn stream_dir_is_48_bytes_and_a_chunk_1536() {
    assert_eq!(std::mem::size_of::<StreamDir>(), 48);
    assert_eq!(SegmentPool::CHUNK_BYTES, 1536);
    assert_eq!(std::mem::size_of::<ChunkMeta>(), 12);
}

#[test]
fn idle_direction_ignores_everything() {
    let mut pool = SegmentPool::new(1 << 16);
    let mut dir = StreamDir::idle();
    let mut out = |_: Chunk<'_>| panic!("an idle direction delivers nothing");
    dir.segment(&mut pool, &Limits::DEFAULT, 5, b"abc", 3, false, &mut out);
    dir.acked(&mut pool, &Limits::DEFAULT, 100, &mut out);
    dir.finish(&mut pool, &mut out);
    assert!(!dir.is_active());
    assert_eq!(pool.held_bytes(), 0);
}

#[test]
fn in_order_is_delivered_at_once() {
    let mut r = Rig::new(1000);
    r.seg(1000, "hello");
    r.seg(1005, " world");
    assert_eq!(r.take(), "0:hello 5: world");
    assert_eq!(r.dir.delivered(), 11);
    assert_eq!(
        (r.dir.out_of_order(), r.dir.retransmitted(), r.dir.gaps()),
        (0, 0, 0)
    );
    assert_eq!(r.dir.held_bytes(), 0);
}

#[test]
fn in_order_data_is_not_copied() {
    let mut pool = SegmentPool::new(1 << 16);
    let mut dir = StreamDir::idle();
    dir.start(7);
    let payload = *b"abcdef";
    let mut seen = None;
    dir.segment(
        &mut pool,
        &Limits::DEFAULT,
        7,
        &payload,
        6,
        false,
        &mut |c| {
            if let Chunk::Data { bytes, .. } = c {
                seen = Some(bytes.as_ptr());
            }
        },
    );
    assert_eq!(
        seen,
        Some(payload.as_ptr()),
        "in-order bytes come straight from the segment"
    );
}

#[test]
fn out_of_order_waits_for_the_hole() {
    let mut r = Rig::new(1000);
    r.seg(1011, "!");
    r.seg(1005, " world");
    assert_eq!(r.take(), "");
    assert_eq!(r.dir.out_of_order(), 2);
    assert_eq!(r.dir.held_bytes(), 2 * 1536);
    r.seg(1000, "hello");
    assert_eq!(r.take(), "0:hello 5: world 11:!");
    assert_eq!(r.dir.held_bytes(), 0);
    assert_eq!(r.pool.held_bytes(), 0);
}

#[test]
fn a_run_behind_a_hole_shares_chunks() {
    let mut r = Rig::new(0);
    for i in 0..100u32 {
        r.seg(10 + i * 10, "0123456789");
    }
    // 1000 contiguous bytes fill one chunk, not one chunk per segment.
    assert_eq!(r.dir.held_bytes(), 1536);
    r.seg(0, "abcdefghij");
    let words = r.take();
    assert!(words.starts_with("0:abcdefghij 10:0123456789"), "{words}");
    assert_eq!(r.dir.delivered(), 1010);
}

#[test]
fn overlap_with_different_bytes_keeps_the_first_copy() {
    // Buffered first, then an in-order segment that disagrees.
    let mut r = Rig::new(1000);
    r.seg(1003, "XY");
    r.seg(1000, "abcdefg");
    assert_eq!(r.take(), "0:abc 3:XY 5:fg");
    assert_eq!(r.dir.overlaps_differing(), 1);

    // Buffered against buffered.
    let mut r = Rig::new(0);
    r.seg(10, "aaaa");
    r.seg(12, "bbbbbb");
    assert_eq!(r.dir.overlaps_differing(), 1);
    r.seg(0, "0123456789");
    assert_eq!(r.take(), "0:0123456789 10:aaaabbbb");

    // Same bytes again: an overlap, but not a differing one.
    let mut r = Rig::new(0);
    r.seg(10, "abcd");
    r.seg(8, "xxabcdyy");
    assert_eq!(r.dir.overlaps_differing(), 0);
    r.seg(0, "01234567");
    // The tail went into the spare room of the chunk it continues: one chunk, one delivery.
    assert_eq!(r.take(), "0:01234567 8:xx 10:abcdyy");
}

#[test]
fn pure_retransmission_is_counted_and_dropped() {
    let mut r = Rig::new(1000);
    r.seg(1000, "abc");
    r.seg(1000, "abc");
    r.seg(1001, "Zc");
    assert_eq!(r.take(), "0:abc");
    assert_eq!(r.dir.retransmitted(), 2);

    // A copy of bytes only buffered is a retransmission too.
    r.seg(1010, "xyz");
    r.seg(1010, "xyz");
    assert_eq!((r.dir.out_of_order(), r.dir.retransmitted()), (1, 3));
}

#[test]
fn a_segment_straddling_the_delivered_point_delivers_its_new_part() {
    let mut r = Rig::new(1000);
    r.seg(1000, "abc");
    r.seg(1001, "bcdef");
    assert_eq!(r.take(), "0:abc 3:def");
    assert_eq!(r.dir.retransmitted(), 0);
}

#[test]
fn sequence_numbers_wrap_at_2_to_the_32() {
    let isn = 0xffff_fff0u32;
    let mut r = Rig::new(isn.wrapping_add(1)); // the SYN takes one sequence number
    r.seg(isn.wrapping_add(1), "0123456789"); // ..=0xffff_fffa
                                              // Out of order across the wrap: 0xffff_fffb + 10 ends at 5.
    r.seg(5, "klmno");
    r.seg(0xffff_fffb, "abcdefghij");
    assert_eq!(r.take(), "0:0123456789 10:abcdefghij 20:klmno");
    // A retransmission from before the wrap is still behind.
    r.seg(0xffff_fff5, "x");
    assert_eq!(r.dir.retransmitted(), 1);
    // ACKs across the wrap: a Lost gap from 10 to 13000 + ...
    r.ack(10 + 3000);
    assert_eq!(r.take(), "25:<lost 3000>");
    assert_eq!(r.dir.next_offset(), 3025);
}

#[test]
fn a_hole_filled_late_resyncs_without_a_gap() {
    let mut r = Rig::new(0);
    r.seg(0, "aaaa");
    r.seg(8, "cccc");
    r.seg(12, "dddd");
    r.ack(4); // nothing behind 4 is missing
    assert_eq!(r.take(), "0:aaaa");
    r.seg(4, "bbbb");
    assert_eq!(r.take(), "4:bbbb 8:ccccdddd");
    assert_eq!(r.dir.gaps(), 0);
}

#[test]
fn a_hole_given_up_on_is_a_gap_and_a_late_copy_a_retransmission() {
    let mut r = Rig::new(0);
    r.seg(0, "aaaa");
    r.seg(8, "cccc");
    r.ack(12); // the receiver had 4..8: the mirror lost it
    assert_eq!(r.take(), "0:aaaa 4:<lost 4> 8:cccc");
    r.seg(4, "bbbb");
    assert_eq!(r.take(), "");
    assert_eq!(r.dir.retransmitted(), 1);
    assert_eq!((r.dir.gaps(), r.dir.gap_bytes()), (1, 4));
}

#[test]
fn ack_without_data_after_the_hole_tolerates_reordering() {
    let mut r = Rig::new(0);
    r.seg(0, "aaaa");
    assert_eq!(r.take(), "0:aaaa");
    // The ACK overtook a data segment in the mirror: within two segments, wait.
    r.ack(4 + 1460);
    assert_eq!(r.take(), "");
    r.seg(4, "bbbb");
    assert_eq!(r.take(), "4:bbbb");
    // Far enough past the hole: lost.
    r.ack(8 + 2920);
    assert_eq!(r.take(), "8:<lost 2920>");
    // An old ACK changes nothing.
    r.ack(100);
    assert_eq!(r.take(), "");
}

#[test]
fn ack_with_data_after_the_hole_declares_it_lost_up_to_the_ack() {
    let mut r = Rig::new(0);
    r.seg(100, "xyz");
    r.ack(50);
    assert_eq!(r.take(), "0:<lost 50>");
    r.ack(100);
    assert_eq!(r.take(), "50:<lost 50> 100:xyz");
    // Acknowledged past the buffered bytes: up to the ACK, the rest waits.
    let mut r = Rig::new(0);
    r.seg(100, "xyz");
    r.seg(200, "uvw");
    r.ack(150);
    assert_eq!(r.take(), "0:<lost 100> 100:xyz 103:<lost 47>");
    r.ack(400);
    // The hole after 203 has nothing after it and is within the tolerance: it waits.
    assert_eq!(r.take(), "150:<lost 50> 200:uvw");
    r.ack(203 + 2920);
    assert_eq!(r.take(), "203:<lost 2920>");
}

#[test]
fn truncated_segment_delivers_what_was_captured_then_a_gap() {
    let mut r = Rig::new(1000);
    r.cut(1000, "abc", 10);
    assert_eq!(r.take(), "0:abc 3:<truncated 7>");
    r.seg(1010, "xyz");
    assert_eq!(r.take(), "10:xyz");
    // Nothing captured at all.
    r.cut(1013, "", 5);
    assert_eq!(r.take(), "13:<truncated 5>");
}

#[test]
fn truncated_out_of_order_segment_is_reported_as_truncated() {
    let mut r = Rig::new(0);
    r.cut(10, "abc", 10);
    r.seg(20, "zz");
    r.seg(0, "0123456789");
    assert_eq!(r.take(), "0:0123456789 10:abc 13:<truncated 7> 20:zz");

    // Bytes that arrive later for the cut range fill it.
    let mut r = Rig::new(0);
    r.cut(10, "abc", 10);
    r.seg(13, "defg");
    r.seg(0, "0123456789");
    assert_eq!(r.take(), "0:0123456789 10:abcdefg 17:<truncated 3>");

    // The in-order segment itself is cut, and buffered bytes sit in its cut range: they win.
    let mut r = Rig::new(0);
    r.seg(6, "ghi");
    r.cut(0, "abc", 12);
    assert_eq!(r.take(), "0:abc 3:<truncated 3> 6:ghi 9:<truncated 3>");
}

#[test]
fn mid_stream_pickup_starts_at_the_first_segment_seen() {
    let mut r = Rig::new(3_000_000_000);
    r.seg(3_000_000_000, "late");
    r.seg(2_999_999_990, "earlier!!!");
    assert_eq!(r.take(), "0:late");
    assert_eq!(r.dir.retransmitted(), 1);
}

#[test]
fn fin_ends_the_stream_and_data_past_it_is_ignored() {
    let mut r = Rig::new(1000);
    r.fin(1000, "abc");
    assert!(r.dir.is_complete());
    r.seg(1003, "zz");
    r.seg(1001, "bcde");
    assert_eq!(r.take(), "0:abc");
    // Both carried bytes past the FIN; the second's bytes before it were old.
    assert_eq!(r.dir.ignored(), 2);
    assert_eq!(r.dir.retransmitted(), 0);
    // The ACK of the FIN (one past the data) changes nothing.
    r.ack(1004);
    r.finish();
    assert_eq!(r.take(), "");
}

#[test]
fn a_fin_drops_buffered_bytes_past_it() {
    let mut r = Rig::new(0);
    r.seg(10, "xxxxx");
    r.seg(5, "abcdefg"); // covers 5..12, buffered
    r.fin(3, "de"); // the stream ends at 5: everything buffered before is past it
    assert_eq!(r.dir.held_bytes(), 1536, "only the FIN segment's own bytes");
    assert!(r.dir.ignored() >= 1);
    r.seg(0, "abc");
    assert_eq!(r.take(), "0:abc 3:de");
    assert!(r.dir.is_complete());

    // Buffered bytes straddling the FIN are cut at it.
    let mut r = Rig::new(0);
    r.seg(5, "fghij");
    r.fin(0, "abcdefg"); // in order; the FIN at 7 cuts the buffered 5..10
    assert_eq!(
        r.take(),
        "0:abcde 5:fg",
        "the buffered copy of 5..7 came first"
    );
    assert!(r.dir.is_complete());
    assert_eq!(r.pool.held_bytes(), 0);
}

#[test]
fn a_bare_fin_after_a_hole_closes_it_at_finish() {
    let mut r = Rig::new(0);
    r.seg(0, "abc");
    r.seg(10, "klm");
    r.raw(20, b"", 0, true);
    assert!(!r.dir.is_complete());
    r.finish();
    assert_eq!(r.take(), "0:abc 3:<closed 7> 10:klm 13:<closed 7>");
    assert!(!r.dir.is_active());
}

#[test]
fn finish_delivers_buffered_bytes_with_holes_as_closed_gaps() {
    let mut r = Rig::new(0);
    r.seg(10, "klmno");
    r.seg(30, "EFGHI");
    r.cut(40, "xy", 4);
    r.finish();
    assert_eq!(
        r.take(),
        "0:<closed 10> 10:klmno 15:<closed 15> 30:EFGHI 35:<closed 5> 40:xy 42:<truncated 2>"
    );
    // Nothing more after the end.
    r.seg(44, "more");
    assert_eq!(r.take(), "");
}

#[test]
fn buffer_full_gives_up_on_the_first_hole() {
    let limits = Limits {
        per_direction_bytes: 2 * 1536,
        ..Limits::DEFAULT
    };
    let mut r = Rig::with(0, limits, 1 << 20);
    let a = "a".repeat(1536);
    let b = "b".repeat(1536);
    let c = "c".repeat(100);
    r.seg(100, &a); // 100..1636, one chunk
    r.seg(2000, &b); // 2000..3536, one chunk
    assert_eq!(r.dir.held_bytes(), 2 * 1536);
    r.seg(4000, &c); // no room: give up on 0..100, deliver 100..1636
    let words = r.take();
    assert_eq!(words, format!("0:<buffer_full 100> 100:{a}"));
    assert_eq!(
        r.dir.held_bytes(),
        2 * 1536,
        "the new segment took the freed chunk"
    );
    r.finish();
    assert_eq!(
        r.take(),
        format!("1636:<closed 364> 2000:{b} 3536:<closed 464> 4000:{c}")
    );
}

#[test]
fn a_segment_larger_than_the_limit_is_delivered_past_a_buffer_full_gap() {
    let limits = Limits {
        per_direction_bytes: 0,
        ..Limits::DEFAULT
    };
    let mut r = Rig::with(0, limits, 1 << 20);
    r.seg(5, "fghij");
    assert_eq!(r.take(), "0:<buffer_full 5> 5:fghij");
    r.seg(0, "abcde");
    assert_eq!(r.take(), "");
    assert_eq!(r.dir.retransmitted(), 1);
}

#[test]
fn an_exhausted_pool_shared_by_two_directions_gives_up_holes_not_bytes() {
    let mut pool = SegmentPool::new(2 * 1536);
    let limits = Limits::DEFAULT;
    let mut a = StreamDir::idle();
    let mut b = StreamDir::idle();
    a.start(0);
    b.start(0);
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    a.segment(
        &mut pool,
        &limits,
        10,
        b"one",
        3,
        false,
        &mut record(&mut got_a),
    );
    a.segment(
        &mut pool,
        &limits,
        20,
        b"two",
        3,
        false,
        &mut record(&mut got_a),
    );
    assert_eq!(pool.held_bytes(), pool.capacity_bytes());
    b.segment(
        &mut pool,
        &limits,
        50,
        b"three",
        5,
        false,
        &mut record(&mut got_b),
    );
    assert_eq!(
        got_b,
        vec![
            Got::Gap(0, 50, GapReason::BufferFull),
            Got::Data(50, b"three".to_vec())
        ]
    );
    assert!(got_a.is_empty(), "the other direction keeps what it holds");
    assert_eq!(a.held_bytes(), 2 * 1536);
    // Now A itself needs a chunk: it gives up its own first hole.
    a.segment(
        &mut pool,
        &limits,
        30,
        b"four",
        4,
        false,
        &mut record(&mut got_a),
    );
    assert_eq!(
        got_a,
        vec![
            Got::Gap(0, 10, GapReason::BufferFull),
            Got::Data(10, b"one".to_vec())
        ]
    );
    assert_eq!(a.held_bytes(), 2 * 1536);
    a.release(&mut pool);
    b.release(&mut pool);
    assert_eq!(pool.held_bytes(), 0);
}

#[test]
fn release_gives_every_chunk_back_and_stops_delivery() {
    let mut pool = SegmentPool::new(64 * 1536);
    let limits = Limits::DEFAULT;
    let mut dirs = [StreamDir::idle(), StreamDir::idle()];
    for (i, d) in dirs.iter_mut().enumerate() {
        d.start(i as u32 * 1000);
        for k in 1..10u32 {
            let seq = i as u32 * 1000 + k * 3000;
            d.segment(
                &mut pool,
                &limits,
                seq,
                &[7u8; 2000],
                2000,
                false,
                &mut |_| panic!("all out of order"),
            );
        }
    }
    assert!(pool.held_bytes() > 0);
    for d in &mut dirs {
        d.release(&mut pool);
        assert!(!d.is_active());
        assert_eq!(d.held_bytes(), 0);
    }
    assert_eq!(pool.held_bytes(), 0);
    let mut out = |_: Chunk<'_>| panic!("a released direction delivers nothing");
    dirs[0].segment(&mut pool, &limits, 0, b"abc", 3, false, &mut out);
    dirs[0].finish(&mut pool, &mut out);
    // And it can be started again.
    dirs[0].start(42);
    assert!(dirs[0].is_active());
    assert_eq!(dirs[0].next_offset(), 0);
}

#[test]
fn segments_beyond_any_window_are_ignored() {
    let mut r = Rig::new(0);
    r.seg(1 << 30, "far");
    r.seg(0x9000_0000, "behind"); // more than 2^31 ahead: behind, a retransmission
    assert_eq!(r.dir.held_bytes(), 0);
    assert_eq!((r.dir.ignored(), r.dir.retransmitted()), (1, 1));
    r.ack(1 << 31); // implausible, ignored
    assert_eq!(r.take(), "");
}

#[test]
fn bytes_past_the_ip_length_are_not_stream_bytes() {
    // A short segment in a frame padded to Ethernet's 60 bytes: the payload slice runs on.
    let mut r = Rig::new(0);
    r.raw(0, b"ab\0\0\0\0", 2, false);
    r.raw(2, b"\0\0\0\0\0\0", 0, false); // a pure ACK, padded
    r.seg(2, "cd");
    assert_eq!(r.take(), "0:ab 2:cd");
}

#[test]
fn a_jumbo_segment_out_of_order_spans_several_chunks() {
    // 9001-byte MTU, IPv4 and TCP headers with timestamps: 8949 bytes of payload.
    let jumbo: Vec<u8> = (0..8949u32).map(|i| (i * 7) as u8).collect();
    let mut r = Rig::new(0);
    r.raw(100, &jumbo, 8949, false);
    assert_eq!(r.dir.held_bytes(), 6 * 1536);
    r.seg(0, &"h".repeat(100));
    let data: Vec<u8> = r
        .got
        .iter()
        .flat_map(|g| match g {
            Got::Data(_, b) => b.clone(),
            Got::Gap(..) => panic!("no gap"),
        })
        .collect();
    assert_eq!(&data[100..], &jumbo[..]);
    assert_eq!(r.dir.held_bytes(), 0);
}

#[test]
fn an_ack_of_the_fin_stops_at_the_data() {
    let mut r = Rig::new(0);
    r.seg(0, "abc");
    r.fin(10, "klm"); // buffered; the stream ends at 13
    r.ack(14); // the FIN acknowledged: 3..10 was lost
    assert_eq!(r.take(), "0:abc 3:<lost 7> 10:klm");
    assert!(r.dir.is_complete());
    assert_eq!(r.dir.next_offset(), 13);
}

#[test]
fn a_truncated_fin_segment_ends_the_stream_at_its_announced_length() {
    let mut r = Rig::new(0);
    r.raw(0, b"ab", 10, true);
    assert_eq!(r.take(), "0:ab 2:<truncated 8>");
    assert!(r.dir.is_complete());
}

#[test]
fn rst_mid_stream_is_a_finish() {
    // The flow table ends the flow on RST: what is buffered is delivered, holes closed.
    let mut r = Rig::new(0);
    r.seg(0, "GET / HTTP/1.1\r\n");
    r.seg(30, "Host: x\r\n");
    r.finish();
    assert_eq!(
        r.take(),
        "0:GET / HTTP/1.1\r\n 16:<closed 14> 30:Host: x\r\n"
    );
    assert!(!r.dir.is_active());
}

#[test]
fn pure_acks_do_nothing() {
    let mut r = Rig::new(0);
    r.raw(0, b"", 0, false);
    r.raw(5, b"", 0, false);
    assert_eq!(r.take(), "");
    assert_eq!((r.dir.retransmitted(), r.dir.out_of_order()), (0, 0));
}

#[test]
fn start_does_not_leak_held_chunks() {
    let mut r = Rig::new(0);
    r.seg(10, "x");
    r.dir.start(500);
    assert_eq!(r.dir.held_bytes(), 1536, "still the same stream");
    r.finish();
}

mod model {
    //! The property test: a random stream, cut into random segments, lost, truncated, duplicated
    //! (possibly with other bytes), overlapped and reordered, against a model that keeps the first
    //! byte that arrived at each offset.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Piece {
        len: usize,
        fate: u8,
        captured: usize,
        jitter: u32,
        dup_jitter: u32,
        mutate: bool,
    }

    #[derive(Debug, Clone)]
    struct Case {
        data: Vec<u8>,
        isn: u32,
        pieces: Vec<Piece>,
        /// Extra segments over random ranges with random bytes: (start, len, jitter, byte).
        overlaps: Vec<(usize, usize, u32, u8)>,
        /// ACKs: (after which event, acknowledged offset).
        acks: Vec<(usize, usize)>,
        fin: bool,
        per_direction: u32,
        pool_chunks: usize,
        ack_gap: u32,
        spread: u32,
        release_at: Option<usize>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let piece = (
            1usize..1800,
            0u8..20,
            0usize..1800,
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(len, fate, captured, jitter, dup_jitter, mutate)| Piece {
                len,
                fate,
                captured,
                jitter,
                dup_jitter,
                mutate,
            });
        (
            proptest::collection::vec(any::<u8>(), 0..6000),
            prop_oneof![
                any::<u32>(),
                (0u32..6000).prop_map(|d| 0u32.wrapping_sub(d))
            ],
            proptest::collection::vec(piece, 1..40),
            proptest::collection::vec((0usize..6000, 1usize..800, any::<u32>(), any::<u8>()), 0..4),
            proptest::collection::vec((0usize..60, 0usize..6100), 0..6),
            any::<bool>(),
            prop_oneof![
                Just(0u32),
                Just(1536),
                Just(3 * 1536),
                Just(8000),
                Just(64 * 1024)
            ],
            prop_oneof![Just(0usize), 1usize..6, Just(1000)],
            prop_oneof![Just(0u32), 1u32..100, Just(2920)],
            prop_oneof![Just(0u32), Just(3), Just(40), Just(u32::MAX)],
            proptest::option::weighted(0.1, 0usize..60),
        )
            .prop_map(
                |(
                    data,
                    isn,
                    pieces,
                    overlaps,
                    acks,
                    fin,
                    per_direction,
                    pool_chunks,
                    ack_gap,
                    spread,
                    release_at,
                )| Case {
                    data,
                    isn,
                    pieces,
                    overlaps,
                    acks,
                    fin,
                    per_direction,
                    pool_chunks,
                    ack_gap,
                    spread,
                    release_at,
                },
            )
    }

    /// A segment as the mirror delivers it: its stream offset, captured bytes, announced length.
    #[derive(Debug, Clone)]
    struct Seg {
        key: u64,
        offset: usize,
        bytes: Vec<u8>,
        wire: usize,
        fin: bool,
    }

    fn jitter(index: usize, noise: u32, spread: u32) -> u64 {
        let noise = if spread == 0 {
            0
        } else {
            u64::from(noise % spread.max(1))
        };
        if spread == u32::MAX {
            u64::from(noise as u32)
        } else {
            index as u64 * 16 + noise
        }
    }

    /// The segments in mirror order: the stream cut by the pieces' lengths; a piece with fate 0 or 1
    /// is lost, 2–4 truncated, 5–7 duplicated (with other bytes if `mutate`).
    fn segments(c: &Case) -> Vec<Seg> {
        let n = c.data.len();
        let mut segs = Vec::new();
        let mut at = 0usize;
        let mut i = 0usize;
        while at < n || (i == 0 && c.fin) {
            let p = &c.pieces[i % c.pieces.len()];
            let len = p.len.min(n - at);
            let end = at + len;
            let fin = c.fin && end == n;
            let whole = c.data[at..end].to_vec();
            let key = jitter(i, p.jitter, c.spread);
            match p.fate {
                0 | 1 => {}
                2..=4 => {
                    let captured = p.captured.min(len);
                    segs.push(Seg {
                        key,
                        offset: at,
                        bytes: whole[..captured].to_vec(),
                        wire: len,
                        fin,
                    });
                }
                5..=7 => {
                    segs.push(Seg {
                        key,
                        offset: at,
                        bytes: whole.clone(),
                        wire: len,
                        fin,
                    });
                    let mut other = whole;
                    if p.mutate {
                        for b in &mut other {
                            *b ^= 0x5a;
                        }
                    }
                    let key = jitter(i, p.dup_jitter, c.spread);
                    segs.push(Seg {
                        key,
                        offset: at,
                        bytes: other,
                        wire: len,
                        fin,
                    });
                }
                _ => segs.push(Seg {
                    key,
                    offset: at,
                    bytes: whole,
                    wire: len,
                    fin,
                }),
            }
            at = end;
            i += 1;
            if len == 0 {
                break;
            }
        }
        for &(start, len, noise, byte) in &c.overlaps {
            if start < n {
                let len = len.min(n - start);
                let key = jitter(start / 64, noise, c.spread.max(40));
                segs.push(Seg {
                    key,
                    offset: start,
                    bytes: vec![byte; len],
                    wire: len,
                    fin: false,
                });
            }
        }
        segs.sort_by_key(|s| s.key);
        segs
    }

    fn run(c: &Case) -> Result<(), TestCaseError> {
        let n = c.data.len();
        let limits = Limits {
            per_direction_bytes: c.per_direction,
            ack_gap_bytes: c.ack_gap,
        };
        let mut pool = SegmentPool::new(c.pool_chunks * SegmentPool::CHUNK_BYTES);
        let mut dir = StreamDir::idle();
        let first = c.isn.wrapping_add(1);
        dir.start(first);
        let segs = segments(c);

        // The model: the first byte captured at each offset, and the end of the highest one.
        let mut first_byte: Vec<Option<u8>> = vec![None; n];
        let mut highest = 0usize;
        let mut fin_arrived = false;
        let mut got: Vec<Got> = Vec::new();
        let mut released = false;

        for (k, s) in segs.iter().enumerate() {
            if c.release_at == Some(k) {
                dir.release(&mut pool);
                released = true;
                prop_assert_eq!(pool.held_bytes(), 0);
            }
            for (i, &b) in s.bytes.iter().enumerate() {
                first_byte[s.offset + i].get_or_insert(b);
            }
            if !s.bytes.is_empty() {
                highest = highest.max(s.offset + s.bytes.len());
            }
            fin_arrived |= s.fin;
            let before = got.len();
            let seq = first.wrapping_add(s.offset as u32);
            dir.segment(
                &mut pool,
                &limits,
                seq,
                &s.bytes,
                s.wire as u32,
                s.fin,
                &mut record(&mut got),
            );
            for &(after, acked) in &c.acks {
                if after == k {
                    let ack = first.wrapping_add(acked.min(n + usize::from(c.fin)) as u32);
                    dir.acked(&mut pool, &limits, ack, &mut record(&mut got));
                }
            }
            if released {
                prop_assert_eq!(got.len(), before, "nothing after release");
            }
            prop_assert!(dir.held_bytes() <= limits.per_direction_bytes);
            prop_assert_eq!(pool.held_bytes(), dir.held_bytes() as usize);
        }
        dir.finish(&mut pool, &mut record(&mut got));
        prop_assert_eq!(pool.held_bytes(), 0);
        prop_assert_eq!(dir.held_bytes(), 0);

        // Every delivered byte is the first copy that arrived at its offset.
        let mut end = 0u64;
        for g in &got {
            match g {
                Got::Data(o, b) => {
                    for (i, &byte) in b.iter().enumerate() {
                        let at = *o as usize + i;
                        prop_assert!(at < n, "data past the stream at {}", at);
                        prop_assert_eq!(Some(byte), first_byte[at], "byte at {}", at);
                    }
                    end = o + b.len() as u64;
                }
                Got::Gap(o, l, _) => end = o + l,
            }
        }
        prop_assert_eq!(end, dir.next_offset());
        prop_assert_eq!(dir.delivered() + dir.gap_bytes(), end);
        if !released {
            prop_assert!(
                end as usize >= highest,
                "{} short of the highest byte {}",
                end,
                highest
            );
            // An ACK of the FIN reaches one past the data; if it comes before the FIN (lost, or
            // overtaken), the engine cannot tell the FIN's sequence number from a byte.
            let slack = usize::from(c.fin && !c.acks.is_empty());
            prop_assert!(
                end as usize <= n + slack,
                "past the stream's end: {} > {}",
                end,
                n
            );
            if fin_arrived {
                prop_assert!(end as usize >= n, "a FIN fixes the end: {} < {}", end, n);
            }
            // Without loss, truncation, limits or early ACKs, every byte arrives as data.
            let whole = first_byte.iter().all(Option::is_some)
                && segs.iter().all(|s| s.bytes.len() == s.wire);
            let room = limits.per_direction_bytes >= 64 * 1024
                && c.pool_chunks >= 1000
                && segs.len() <= 40;
            if whole && room && c.acks.is_empty() {
                prop_assert_eq!(dir.gap_bytes(), 0);
                prop_assert_eq!(dir.delivered(), n as u64);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn delivers_the_first_copy_and_tiles_the_stream(c in case()) {
            run(&c)?;
        }
    }
}
