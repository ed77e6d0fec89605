//! Per-session state for modules, found on every packet without hashing.

use rustc_hash::FxHashMap;

/// Sessions whose ids fit side by side in the front without evicting each other.
const FRONT: usize = 64;

/// State a module keeps per mirror session, keyed by [`Session::id`](crate::base::Session::id).
///
/// A module looks its session's state up on every packet. Remembering only the last session does
/// not help: an appliance receives the mirror traffic of many ENIs at once, so consecutive packets
/// are usually of different sessions. A hash lookup per packet costs more than the counting it
/// serves. Session ids are handed out in sequence, so a direct-mapped front indexed by the id's low
/// bits holds up to 64 sessions at once, and a lookup is one load and one compare. Ids that collide
/// in the front fall back to a hash map.
///
/// Entries are only added, and forgotten all at once by [`clear`](PerSession::clear), which suits
/// state that is emitted and reset at an interval.
#[derive(Debug)]
pub struct PerSession<T> {
    entries: Vec<(u32, T)>,
    index: FxHashMap<u32, u32>,
    /// Position in `entries` plus one, by `id % FRONT`; 0 when empty.
    front: [u32; FRONT],
}

impl<T> Default for PerSession<T> {
    fn default() -> Self {
        PerSession {
            entries: Vec::new(),
            index: FxHashMap::default(),
            front: [0; FRONT],
        }
    }
}

impl<T> PerSession<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of session `id`, made by `make` the first time.
    #[inline]
    pub fn get_or_insert_with(&mut self, id: u32, make: impl FnOnce() -> T) -> &mut T {
        match self.front_position(id) {
            Some(pos) => &mut self.entries[pos].1,
            None => self.insert_slow(id, make),
        }
    }

    /// The state of session `id`, if it has any.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&T> {
        let pos = match self.front_position(id) {
            Some(pos) => pos,
            None => *self.index.get(&id)? as usize,
        };
        Some(&self.entries[pos].1)
    }

    /// Every session's state, in the order the sessions were first seen.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries.iter().map(|(id, v)| (*id, v))
    }

    /// How many sessions have state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session has state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every session's state, keeping the memory for the next interval's.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.front = [0; FRONT];
    }

    #[inline]
    fn front_position(&self, id: u32) -> Option<usize> {
        let pos = (self.front[id as usize % FRONT] as usize).checked_sub(1)?;
        (self.entries[pos].0 == id).then_some(pos)
    }

    #[cold]
    fn insert_slow(&mut self, id: u32, make: impl FnOnce() -> T) -> &mut T {
        let pos = match self.index.get(&id) {
            Some(&pos) => pos as usize,
            None => {
                self.entries.push((id, make()));
                let pos = self.entries.len() - 1;
                self.index.insert(id, pos as u32);
                pos
            }
        };
        self.front[id as usize % FRONT] = pos as u32 + 1;
        &mut self.entries[pos].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_and_colliding_sessions_keep_their_own_state() {
        let mut m = PerSession::new();
        // 1, 65 and 129 share a front slot; 2 has its own.
        let ids = [1u32, 65, 2, 129, 1, 65, 129, 2, 1];
        for id in ids {
            *m.get_or_insert_with(id, || 0u64) += u64::from(id);
        }
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(1), Some(&3));
        assert_eq!(m.get(65), Some(&130));
        assert_eq!(m.get(129), Some(&258));
        assert_eq!(m.get(2), Some(&4));
        assert_eq!(m.get(3), None);
        let order: Vec<u32> = m.iter().map(|(id, _)| id).collect();
        assert_eq!(order, [1, 65, 2, 129], "first-seen order");
    }

    #[test]
    fn make_runs_once_per_session_and_clear_forgets() {
        let mut m = PerSession::new();
        let mut made = 0;
        for _ in 0..3 {
            m.get_or_insert_with(7, || {
                made += 1;
                "x"
            });
        }
        assert_eq!(made, 1);
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.get(7), None);
        m.get_or_insert_with(7, || {
            made += 1;
            "y"
        });
        assert_eq!((made, m.get(7)), (2, Some(&"y")));
    }
}
