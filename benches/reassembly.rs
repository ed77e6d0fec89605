//! Cost of TCP reassembly per segment, with allocations counted (the engine promises none after its
//! pool is made; divan's allocation profiler shows it per benchmark).
//!
//! - `baseline_memcpy_1460`: copying one full segment, what buffering a segment costs at least.
//! - `in_order_1460`: one 1460-byte segment delivered in order, straight from its bytes.
//! - `out_of_order_pair_1460`: two segments swapped: the later one is copied into the pool, the
//!   earlier one delivers both (divide by 2 for a per-segment figure).
//! - `behind_a_hole_1460`: 40 segments buffered behind a hole, then the hole filled (divide by 41).
//!
//! Quote them as ratios against the baseline from the same run: absolute nanoseconds on a shared
//! two-core machine mean little.

use std::hint::black_box;

use divan::{AllocProfiler, Bencher};
use vxtap::flow::reassembly::{Chunk, Limits, SegmentPool, StreamDir};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

const MSS: u32 = 1460;

fn sink() -> impl FnMut(Chunk<'_>) {
    |c| {
        black_box(c.len());
    }
}

#[divan::bench(sample_count = 100, sample_size = 1000)]
fn baseline_memcpy_1460(bencher: Bencher) {
    let src = [7u8; MSS as usize];
    let mut dst = [0u8; MSS as usize];
    bencher.bench_local(|| {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
}

#[divan::bench(sample_count = 100, sample_size = 1000)]
fn in_order_1460(bencher: Bencher) {
    let mut pool = SegmentPool::new(1 << 20);
    let limits = Limits::DEFAULT;
    let mut dir = StreamDir::idle();
    dir.start(0xffff_0000);
    let payload = [7u8; MSS as usize];
    let mut seq = 0xffff_0000u32;
    let mut out = sink();
    bencher.bench_local(|| {
        dir.segment(
            &mut pool,
            &limits,
            seq,
            black_box(&payload),
            MSS,
            false,
            &mut out,
        );
        seq = seq.wrapping_add(MSS);
    });
}

#[divan::bench(sample_count = 100, sample_size = 1000)]
fn out_of_order_pair_1460(bencher: Bencher) {
    let mut pool = SegmentPool::new(1 << 20);
    let limits = Limits::DEFAULT;
    let mut dir = StreamDir::idle();
    dir.start(0);
    let payload = [7u8; MSS as usize];
    let mut seq = 0u32;
    let mut out = sink();
    bencher.bench_local(|| {
        dir.segment(
            &mut pool,
            &limits,
            seq.wrapping_add(MSS),
            &payload,
            MSS,
            false,
            &mut out,
        );
        dir.segment(&mut pool, &limits, seq, &payload, MSS, false, &mut out);
        seq = seq.wrapping_add(2 * MSS);
    });
}

#[divan::bench(sample_count = 100, sample_size = 10)]
fn behind_a_hole_1460(bencher: Bencher) {
    let mut pool = SegmentPool::new(1 << 20);
    let limits = Limits::DEFAULT;
    let mut dir = StreamDir::idle();
    dir.start(0);
    let payload = [7u8; MSS as usize];
    let mut seq = 0u32;
    let mut out = sink();
    bencher.bench_local(|| {
        for i in 1..=40 {
            dir.segment(
                &mut pool,
                &limits,
                seq.wrapping_add(i * MSS),
                &payload,
                MSS,
                false,
                &mut out,
            );
        }
        dir.segment(&mut pool, &limits, seq, &payload, MSS, false, &mut out);
        seq = seq.wrapping_add(41 * MSS);
    });
}
