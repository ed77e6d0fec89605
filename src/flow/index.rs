//! The index both flow tables use (the flow layer's and flowlog's): slab positions by key hash, laid
//! out so that a lookup on a table larger than the caches costs two dependent memory accesses, plus
//! the prefetch and huge-page helpers that make those accesses cheaper.

use std::net::IpAddr;

use crate::base::FlowKey;

/// The hash the flow layer's table indexes a canonical flow key by (flowlog's table hashes its own
/// compact key the same way): the key folded into four words, each multiplied by its own odd constant, and
/// the sum put through a full-avalanche finalizer (MurmurHash3's `fmix64`).
///
/// It used to be `FxHasher` over three words. rustc-hash 2's `finish` rotates the product left by
/// 26 bits, so the index's home cell (the top 32 bits) came from bits 6–37 of a plain product: bits
/// that depend only on the low 38 bits of the last word, where the ports' high bits never reach.
/// Flows between one ENI address and one server that differ only in the client's ephemeral port
/// then all started their probe at the same cell: on the ENI-like capture, 46 % of a replay's time
/// went to walking those runs (`Index::find` and `Index::remove`).
#[inline]
pub(crate) fn key_hash(session: u32, k: &FlowKey) -> u64 {
    fn fold(a: &IpAddr) -> u64 {
        match a {
            IpAddr::V4(a) => u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let b = a.to_bits();
                // Never equal to a v4 fold: bit 32 set, and v4 values fit in 32 bits.
                ((b >> 64) as u64 ^ (b as u64).rotate_left(29)) | 1 << 32
            }
        }
    }
    let ports =
        u64::from(k.src_port) << 48 | u64::from(k.dst_port) << 32 | u64::from(k.protocol) << 24;
    let mut h = fold(&k.src).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ fold(&k.dst).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ ports.wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ u64::from(session).wrapping_mul(0x27d4_eb2f_1656_67c5);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A hint to the CPU to bring the cache line at `p` in; never faults, whatever `p` is.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above (PRFM is a hint on every ARMv8 core, Graviton included).
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// Asks for transparent huge pages on a large table, where the kernel gives them only on request
/// (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`, the default of many distributions).
/// Every lookup lands on a random entry of tens of megabytes; with 4 KiB pages most of those also
/// miss the TLB, and a page walk comes on top of the cache miss. Only the whole 2 MiB pages inside
/// the region are advised; failure (no THP support) changes nothing but speed.
pub(crate) fn advise_huge_pages(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: the range lies inside one live allocation of ours; MADV_HUGEPAGE changes only how
        // the kernel backs it, never its contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

/// The table's index: slab positions by key hash, with open addressing and linear probing.
///
/// Each cell is one `u64`: 32 bits of the key's hash and the slab position + 1 (0 = empty). A lookup
/// reads one cache line of cells (the hash bits rule out other keys without touching their entries)
/// and then the entry itself: two dependent memory accesses, where a hash map of slab positions
/// (hashbrown's control bytes, then its buckets, then the entry) takes three; on a table larger than
/// the caches, each is a miss. Cells are at least 1.5 × the cap, so probes stay short, and removal
/// shifts later cells back instead of leaving tombstones, so the index never needs rebuilding or
/// growing: its memory is fixed at start.
pub(crate) struct Index {
    pub(crate) cells: Box<[u64]>,
    bits: u32,
}

const EMPTY: u64 = 0;

impl Index {
    pub(crate) fn new(max: usize) -> Index {
        let n = (max + max / 2).next_power_of_two().max(8);
        let cells = vec![EMPTY; n].into_boxed_slice();
        advise_huge_pages(cells.as_ptr().cast(), n * 8);
        Index {
            cells,
            bits: n.trailing_zeros(),
        }
    }

    /// Forgets every cell at once (for a table that takes all its entries out together).
    pub(crate) fn clear(&mut self) {
        self.cells.fill(EMPTY);
    }

    pub(crate) fn cell(hash: u64, slot: u32) -> u64 {
        (hash & 0xffff_ffff_0000_0000) | u64::from(slot + 1)
    }

    /// Where a cell's probe starts; from the stored hash bits alone, so removal can move cells
    /// without looking at their entries.
    pub(crate) fn home(&self, cell: u64) -> usize {
        let h = (cell >> 32) as u32;
        (h.wrapping_mul(0x9e37_79b9) >> (32 - self.bits)) as usize
    }

    fn mask(&self) -> usize {
        self.cells.len() - 1
    }

    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let probe = Self::cell(hash, 0);
        let mut i = self.home(probe);
        loop {
            let c = self.cells[i];
            if c == EMPTY {
                return None;
            }
            if c >> 32 == probe >> 32 && eq(c as u32 - 1) {
                return Some(c as u32 - 1);
            }
            i = (i + 1) & self.mask();
        }
    }

    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        let cell = Self::cell(hash, slot);
        let mut i = self.home(cell);
        while self.cells[i] != EMPTY {
            i = (i + 1) & self.mask();
        }
        self.cells[i] = cell;
    }

    pub(crate) fn remove(&mut self, hash: u64, slot: u32) {
        let cell = Self::cell(hash, slot);
        let mut hole = self.home(cell);
        loop {
            match self.cells[hole] {
                EMPTY => return,
                c if c == cell => break,
                _ => hole = (hole + 1) & self.mask(),
            }
        }
        // Backward shift: move each later cell of the run into the hole if its probe would pass it.
        let mut j = (hole + 1) & self.mask();
        loop {
            let c = self.cells[j];
            if c == EMPTY {
                break;
            }
            let home = self.home(c);
            if j.wrapping_sub(home) & self.mask() >= j.wrapping_sub(hole) & self.mask() {
                self.cells[hole] = c;
                hole = j;
            }
            j = (j + 1) & self.mask();
        }
        self.cells[hole] = EMPTY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index against a plain map, with many keys sharing probe runs: after each insert or
    /// removal every present key is found at its slot and no removed one is.
    #[test]
    fn index_finds_what_it_holds_through_removals() {
        let max = 200;
        let mut index = Index::new(max);
        let mut held: Vec<Option<u64>> = vec![None; max]; // slot -> hash
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..50_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let slot = (rng % max as u64) as u32;
            // Few distinct hash bits, so runs are long and collide.
            let hash = (((rng >> 20) % 64) << 32) | (rng >> 58);
            match held[slot as usize] {
                Some(h) => {
                    index.remove(h, slot);
                    held[slot as usize] = None;
                }
                None => {
                    index.insert(hash, slot);
                    held[slot as usize] = Some(hash);
                }
            }
            if step % 97 == 0 {
                for (s, h) in held.iter().enumerate() {
                    let s = s as u32;
                    match h {
                        Some(h) => assert_eq!(index.find(*h, |i| i == s), Some(s), "step {step}"),
                        None => assert!(index.cells.iter().all(|&c| c == 0 || c as u32 - 1 != s)),
                    }
                }
            }
        }
    }
}
