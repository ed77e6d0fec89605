//! The flow table's timing wheel: one slot per second, each slot a chain of one-cache-line blocks
//! of flow positions, from one pool allocated up front.
//!
//! It replaced doubly linked lists threaded through the flows' cold parts. Walking a due slot of a
//! list was a chain of misses (each flow's links had to land before the next flow could be
//! asked for), and every move touched the cold parts of two neighbours. Here a due slot is read a
//! block (14 flows) at a time, so the walk knows the flows it will judge ahead and can prefetch
//! them; adding a flow writes the slot's head block, which the flows scheduled in the same second
//! share; removing one moves the head block's last item into its place, touching that one flow's
//! position and nothing else.

use super::index::prefetch;

const NIL: u32 = u32::MAX;
/// Items per block: with the block's slot and link, one cache line.
const BLOCK: usize = 14;
/// Positions are `block << SHIFT | offset`.
const SHIFT: u32 = 4;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block {
    items: [u32; BLOCK],
    /// The slot the block belongs to: a removal finds the slot's head from the item's position.
    slot: u32,
    /// The next block of the slot (full), or NIL.
    next: u32,
}

/// A slot: its head block, which alone may be partly filled, and how many items that holds.
#[derive(Clone, Copy)]
struct Head {
    block: u32,
    len: u32,
}

const EMPTY: Head = Head { block: NIL, len: 0 };

/// Items (flow positions in the table) by slot. Each item's position is handed back to the caller,
/// which keeps it with the item and passes it to [`Wheel::remove`].
pub(super) struct Wheel {
    heads: Vec<Head>,
    blocks: Vec<Block>,
    free: Vec<u32>,
}

impl Wheel {
    /// A wheel of `slots` slots for at most `max_items` items at once. Its blocks are reserved now
    /// (every slot's head partly filled, every other block full) and touched as they are first
    /// used, so adding an item never allocates.
    pub(super) fn new(slots: usize, max_items: usize) -> Wheel {
        let most = max_items.div_ceil(BLOCK) + slots;
        Wheel {
            heads: vec![EMPTY; slots],
            blocks: Vec::with_capacity(most),
            free: Vec::with_capacity(most),
        }
    }

    /// Slots.
    pub(super) fn len(&self) -> usize {
        self.heads.len()
    }

    /// Adds `item` to slot `w`; returns its position.
    pub(super) fn push(&mut self, w: usize, item: u32) -> u32 {
        let head = self.heads[w];
        let head = if head.block == NIL || head.len as usize == BLOCK {
            let block = Block {
                items: [NIL; BLOCK],
                slot: w as u32,
                next: head.block,
            };
            let b = match self.free.pop() {
                Some(b) => {
                    self.blocks[b as usize] = block;
                    b
                }
                None => {
                    self.blocks.push(block);
                    (self.blocks.len() - 1) as u32
                }
            };
            Head { block: b, len: 0 }
        } else {
            head
        };
        self.blocks[head.block as usize].items[head.len as usize] = item;
        self.heads[w] = Head {
            block: head.block,
            len: head.len + 1,
        };
        head.block << SHIFT | head.len
    }

    /// Starts loading the block of the item at `pos`, which [`Wheel::remove`] reads first.
    pub(super) fn prefetch(&self, pos: u32) {
        prefetch(self.blocks.as_ptr().wrapping_add((pos >> SHIFT) as usize));
    }

    /// Removes the item at `pos`. The slot's last item takes its place: that item and its new
    /// position are returned (unless it was the one removed), for the caller to record.
    pub(super) fn remove(&mut self, pos: u32) -> Option<(u32, u32)> {
        let (b, o) = ((pos >> SHIFT) as usize, (pos & ((1 << SHIFT) - 1)) as usize);
        let w = self.blocks[b].slot as usize;
        let head = self.heads[w];
        let last_at = head.len as usize - 1;
        let last = self.blocks[head.block as usize].items[last_at];
        let moved = if head.block as usize == b && last_at == o {
            None
        } else {
            self.blocks[b].items[o] = last;
            Some((last, pos))
        };
        self.heads[w] = if last_at == 0 {
            let next = self.blocks[head.block as usize].next;
            self.free.push(head.block);
            Head {
                block: next,
                len: if next == NIL { 0 } else { BLOCK as u32 },
            }
        } else {
            Head {
                block: head.block,
                len: head.len - 1,
            }
        };
        moved
    }

    /// Empties slot `w` into `out` (its items' positions are void from now on).
    pub(super) fn take(&mut self, w: usize, out: &mut Vec<u32>) {
        let Head { block, len } = std::mem::replace(&mut self.heads[w], EMPTY);
        let (mut b, mut n) = (block, len as usize);
        while b != NIL {
            let block = self.blocks[b as usize];
            if block.next != NIL {
                prefetch(self.blocks.as_ptr().wrapping_add(block.next as usize));
            }
            out.extend_from_slice(&block.items[..n]);
            self.free.push(b);
            b = block.next;
            n = BLOCK;
        }
    }

    /// Slot `w`'s items, most recently added first (until a removal moves one), until `stop` says
    /// so: the one it stopped at, if any.
    pub(super) fn find(&self, w: usize, mut stop: impl FnMut(u32) -> bool) -> Option<u32> {
        let Head { block, len } = self.heads[w];
        let (mut b, mut n) = (block, len as usize);
        while b != NIL {
            let block = &self.blocks[b as usize];
            if let Some(&i) = block.items[..n].iter().rev().find(|&&i| stop(i)) {
                return Some(i);
            }
            b = block.next;
            n = BLOCK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wheel against a plain model (a set per slot), through pushes, removals and takes: every
    /// item is found in its slot at the position last handed back for it.
    #[test]
    fn the_wheel_holds_what_a_model_holds() {
        const SLOTS: usize = 7;
        const ITEMS: usize = 300;
        let mut wheel = Wheel::new(SLOTS, ITEMS);
        let mut pos: Vec<Option<(usize, u32)>> = vec![None; ITEMS];
        let mut rng = crate::base::xorshift(0x9e37_79b9);
        let mut out = Vec::new();
        for step in 0..40_000 {
            let r = rng();
            let item = (r % ITEMS as u64) as u32;
            match pos[item as usize] {
                _ if (r >> 40) & 1023 == 0 => {
                    let w = (r >> 20) as usize % SLOTS;
                    out.clear();
                    wheel.take(w, &mut out);
                    let mut model: Vec<u32> = (0..ITEMS as u32)
                        .filter(|&i| pos[i as usize].is_some_and(|(s, _)| s == w))
                        .collect();
                    out.sort_unstable();
                    model.sort_unstable();
                    assert_eq!(out, model, "step {step}");
                    for &i in &out {
                        pos[i as usize] = None;
                    }
                }
                Some((_, p)) => {
                    if let Some((moved, at)) = wheel.remove(p) {
                        let m = pos[moved as usize].as_mut().expect("a moved item is held");
                        m.1 = at;
                    }
                    pos[item as usize] = None;
                }
                None => {
                    let w = (r >> 20) as usize % SLOTS;
                    pos[item as usize] = Some((w, wheel.push(w, item)));
                }
            }
            for w in 0..SLOTS {
                let mut seen = 0;
                wheel.find(w, |i| {
                    assert_eq!(pos[i as usize].map(|(s, _)| s), Some(w), "step {step}");
                    seen += 1;
                    false
                });
                assert_eq!(
                    seen,
                    pos.iter()
                        .filter(|p| p.is_some_and(|(s, _)| s == w))
                        .count()
                );
            }
            assert!(wheel.blocks.len() <= wheel.blocks.capacity());
        }
        assert_eq!(wheel.blocks.capacity(), ITEMS.div_ceil(BLOCK) + SLOTS);
    }
}
