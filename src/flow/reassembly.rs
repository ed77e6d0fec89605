//! TCP reassembly of one direction of a connection: segments in, an ordered run of
//! [`Chunk`]s out — bytes, and gaps where bytes are missing.
//!
//! The flow table embeds one [`StreamDir`] per direction a module asked for; every direction of a
//! shard shares that shard's [`SegmentPool`]. The engine is pure: no clock, no I/O, no logging,
//! and no allocation after the pool is made. Everything it delivers goes through a callback,
//! straight from the packet's bytes whenever they are in order.
//!
//! # Why gaps are data
//! A mirror is not the receiver. AWS drops mirrored packets under congestion and the sender never
//! retransmits what only the mirror lost; AWS truncates mirrored packets to the session's
//! `PacketLength` or the target's MTU (the IP length then announces more bytes than arrived); an NLB
//! target receives them out of order. So a stream here will have holes that never fill, and the
//! engine's job is to say exactly where they are — "gap of N bytes at offset X, because…" — and go
//! on, never to stall and never to join bytes across a hole as if they were adjacent.
//!
//! # Policy
//! - **Offsets.** Every [`Chunk`] carries a 64-bit stream offset: 0 is the first byte after the
//!   SYN (or the first byte the caller chose, for a connection picked up mid-stream). Data and gaps
//!   tile the stream: each chunk starts where the previous one ended.
//! - **Sequence numbers** are compared as serial numbers (RFC 1982): a sequence number up to 2^31
//!   ahead of the next expected byte is ahead, otherwise behind, so wraparound at 2^32 never shows.
//!   A segment ending more than 2^30 bytes ahead (beyond the largest window TCP can advertise,
//!   RFC 7323 §2.3) cannot be valid and is ignored and counted.
//! - **In order** bytes are delivered from the segment itself (zero copy).
//! - **Out of order** bytes are copied into the pool's fixed-size chunks, kept per direction as a
//!   linked list in sequence order (chunk indices, no `Vec` per flow). A segment spans as many chunks
//!   as it needs, and bytes that continue a buffered run fill that run's last chunk first, so a run of
//!   small segments behind a hole does not take a chunk each.
//! - **Overlaps: the first copy wins.** Bytes already delivered, or already buffered, are never
//!   replaced; a later copy of buffered or in-order bytes that differs is counted
//!   ([`StreamDir::overlaps_differing`]) for the caller to report. (Bytes already delivered are
//!   not kept, so a differing copy of those cannot be seen.) Why: a passive mirror cannot know
//!   which copy the receiver kept, since that depends on its operating system. Suricata names
//!   this policy `first`; its default, `bsd`, also keeps the original bytes except when the new
//!   segment begins before them, and Linux favours new data in a few more cases. For a mirror,
//!   the first copy seen is most often the one the receiver got first and acknowledged, keeping
//!   it means nothing delivered ever has to be taken back, and it needs no per-OS tables. The
//!   honest limit: under mirror reordering the first copy seen is not always the first one
//!   received, and a sender who sends two different copies can make any passive reader see the
//!   wrong one; the counter is the signal that this happened.
//! - **Retransmissions**: a segment entirely before the next expected byte (or entirely inside
//!   buffered bytes) is counted and dropped; one straddling the next expected byte delivers only its
//!   new part.
//! - **Truncation**: a segment whose captured bytes are fewer than its announced length delivers
//!   what was captured, then a [`GapReason::Truncated`] gap for the rest, and the stream moves on.
//!   Out of order, the chunk holding its captured tail remembers the cut (up to 65535 bytes, the
//!   most an IP length can announce) so the gap is reported as `Truncated` when it is reached;
//!   bytes that arrive later for the cut range fill it (the cut was not data). An out-of-order
//!   segment with nothing captured at all leaves an ordinary hole, unless a buffered run ends
//!   exactly where it starts.
//! - **The IP length is the authority** on a segment's length: captured bytes past it (Ethernet
//!   pads short frames to 60 bytes, and a frame's payload slice runs to the frame's end) are not
//!   stream bytes and are ignored.
//! - **Buffer limits**: if an out-of-order segment would make the direction hold more than
//!   [`Limits::per_direction_bytes`] of chunks, or the shared pool has no free chunk, the direction
//!   gives up on its first hole: a [`GapReason::BufferFull`] gap up to the first buffered byte (or
//!   up to the new segment, if that comes first), then everything now in order is delivered; repeat
//!   until the segment fits or is itself in order. Memory stays bounded, the stream never stalls,
//!   and nothing is joined across a hole.
//! - **ACKs** ([`StreamDir::acked`]): the peer acknowledging past a hole means the receiver had those
//!   bytes, so the mirror lost them and they will not come again. The hole becomes a
//!   [`GapReason::Lost`] gap up to the acknowledgement (or the first buffered byte, if sooner) —
//!   but mirrored packets are reordered (NLB targets; the ACK travels in the other direction's
//!   mirror), so an ACK can overtake the data it acknowledges. The engine therefore waits until
//!   either data after the hole has already arrived (so the hole is older than something
//!   already seen), or the ACK is at least [`Limits::ack_gap_bytes`] past the hole (about two
//!   full segments: more than reordering alone explains). A late copy of bytes declared lost is a
//!   retransmission, counted and dropped. An ACK of a FIN that the mirror has not (yet) carried
//!   cannot be told from an ACK of one more byte, so such a Lost gap may reach one past the data.
//! - **SYN and FIN** each take one sequence number (RFC 9293 §3.4). The caller starts a direction
//!   at ISN + 1. A FIN at sequence `s` on a segment of announced length `n` ends the stream at
//!   `s + n`; the first FIN wins, buffered data past it is dropped, and any later data past it is
//!   ignored and counted ([`StreamDir::ignored`]).
//! - **End**: [`StreamDir::finish`] delivers what is buffered with the holes before it as
//!   [`GapReason::Closed`] gaps (and a gap up to the FIN, if one was seen), then releases the
//!   chunks. [`StreamDir::release`] releases at once and delivers nothing more.
//!
//! # Memory
//! A [`StreamDir`] is 48 bytes, inline in the flow entry. A pool chunk is
//! [`SegmentPool::CHUNK_BYTES`] (1536) bytes of data plus 12 bytes of metadata; 1536 holds a
//! whole 1460-byte segment (the usual MSS) and a 9001-MTU jumbo segment fits six chunks with
//! little waste. Per-direction accounting ([`StreamDir::held_bytes`]) counts whole chunks, the
//! memory really held, so that many tiny out-of-order segments cannot hold more than the limit.
//! A flow costs its two inline directions; a shard's buffered bytes are capped by its pool, which
//! is the only allocation: in-order bytes are passed by reference and out-of-order bytes go into
//! chunks the pool already has, so nothing allocates per segment.

use std::fmt;

/// A chunk index meaning "none": the end of a list.
const NIL: u32 = u32::MAX;

/// The largest TCP window (RFC 7323 §2.3: a 16-bit window shifted by at most 14): no valid segment
/// ends further ahead of the next expected byte than this.
const WINDOW: i64 = 1 << 30;

/// A segment's captured and announced lengths are clamped to this. An IP length announces at most
/// 65535 bytes; this leaves room for offloaded (coalesced) captures and keeps offsets arithmetic
/// far from overflow.
const MAX_SEGMENT: u32 = 1 << 20;

/// The most chunks one direction may hold: its count is a `u16` to keep [`StreamDir`] small
/// (65535 × 1536 bytes ≈ 96 MiB, far above any sensible per-direction limit).
const MAX_CHUNKS_PER_DIRECTION: u32 = u16::MAX as u32;

const STATE_IDLE: u8 = 0;
const STATE_ACTIVE: u8 = 1;
const STATE_DONE: u8 = 2;

const FLAG_FIN: u8 = 1;

/// One piece of a direction's stream, in order. Each chunk starts where the previous one ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Bytes of the stream at `offset`, borrowed from the packet (in order) or from the pool.
    Data {
        /// Stream offset of `bytes[0]`.
        offset: u64,
        /// The bytes; valid only during the callback.
        bytes: &'a [u8],
    },
    /// `len` bytes at `offset` that will never be delivered, and why: a parser must resynchronise
    /// or give up, never read across.
    Gap {
        /// Stream offset of the first missing byte.
        offset: u64,
        /// How many bytes are missing.
        len: u64,
        /// Why they are missing.
        why: GapReason,
    },
}

impl Chunk<'_> {
    /// The stream offset this chunk starts at.
    pub fn offset(&self) -> u64 {
        match *self {
            Chunk::Data { offset, .. } | Chunk::Gap { offset, .. } => offset,
        }
    }

    /// How many stream bytes this chunk covers.
    pub fn len(&self) -> u64 {
        match *self {
            Chunk::Data { bytes, .. } => bytes.len() as u64,
            Chunk::Gap { len, .. } => len,
        }
    }

    /// Whether this chunk covers no bytes (the engine never delivers one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a [`Chunk::Gap`] is missing its bytes; a module may treat them differently (e.g. resync
/// after `Truncated`, where the packet boundaries are known, but drop the flow after `Lost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The peer acknowledged the bytes but the mirror never carried them (AWS drops mirror
    /// packets under congestion and nobody retransmits what only the mirror lost).
    Lost,
    /// The capture cut the segment: its IP length announced more bytes than were captured
    /// (the session's `PacketLength`, or the mirror target's MTU).
    Truncated,
    /// The direction gave up on a hole to stay within [`Limits::per_direction_bytes`] or because
    /// the shard's [`SegmentPool`] was exhausted.
    BufferFull,
    /// The flow ended (or was evicted) with the hole still open.
    Closed,
}

impl GapReason {
    /// A stable lower-case name for records and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Lost => "lost",
            GapReason::Truncated => "truncated",
            GapReason::BufferFull => "buffer_full",
            GapReason::Closed => "closed",
        }
    }
}

/// The bounds a direction works within; one value per shard (from configuration), passed on each
/// call so that [`StreamDir`] stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Pool memory one direction may hold for out-of-order bytes, counted in whole chunks and
    /// rounded down to them (default 64 KiB, a full unscaled TCP window: 42 chunks). Past it
    /// the direction gives up on its first hole ([`GapReason::BufferFull`]). Below
    /// [`SegmentPool::CHUNK_BYTES`] nothing is buffered: every hole is given up at once.
    pub per_direction_bytes: u32,
    /// How far an acknowledgement must reach past a hole, with no data buffered after the hole,
    /// before the hole is declared [`GapReason::Lost`] (default 2920: two 1460-byte segments, more
    /// than mirror reordering alone explains).
    pub ack_gap_bytes: u32,
}

impl Limits {
    /// The defaults: 64 KiB per direction, ACK tolerance of two full segments.
    pub const DEFAULT: Limits = Limits {
        per_direction_bytes: 64 * 1024,
        ack_gap_bytes: 2 * 1460,
    };

    fn chunk_limit(&self) -> u32 {
        (self.per_direction_bytes / SegmentPool::CHUNK_BYTES as u32).min(MAX_CHUNKS_PER_DIRECTION)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Metadata of one pool chunk: the bytes `[seq, seq + len)` of a direction, and the next chunk of
/// the same list (its direction's buffered bytes, or the free list).
#[derive(Debug, Clone, Copy)]
struct ChunkMeta {
    /// Sequence number of the first byte held.
    seq: u32,
    /// Next chunk in the list, or [`NIL`].
    next: u32,
    /// Bytes held, at most [`SegmentPool::CHUNK_BYTES`].
    len: u16,
    /// Bytes right after this chunk's data that a capture announced but cut: reported as a
    /// `Truncated` gap when reached, unless other bytes fill them first.
    cut: u16,
}

/// A shard's memory for out-of-order bytes: fixed-size chunks, allocated once, handed out and
/// taken back through a free list, so that reassembly never allocates on the packet path and a
/// shard's reassembly memory has one hard cap however many flows it holds.
///
/// Every [`StreamDir`] using a pool must give its chunks back to that same pool (through
/// [`StreamDir::finish`] or [`StreamDir::release`]) before it is dropped; a dropped direction's
/// chunks are otherwise lost to the pool.
pub struct SegmentPool {
    data: Box<[u8]>,
    meta: Box<[ChunkMeta]>,
    free: u32,
    free_count: u32,
}

impl SegmentPool {
    /// Bytes of data in one chunk: a whole 1460-byte segment fits in one, a 9001-MTU jumbo
    /// segment in six.
    pub const CHUNK_BYTES: usize = 1536;

    /// A pool of `cap_bytes / CHUNK_BYTES` chunks (12 bytes of metadata each on top). The
    /// memory is allocated here, zeroed, and never grows: the operating system commits pages only
    /// as chunks are first used.
    pub fn new(cap_bytes: usize) -> Self {
        let count = (cap_bytes / Self::CHUNK_BYTES).min(NIL as usize - 1);
        let meta: Box<[ChunkMeta]> = (0..count)
            .map(|i| ChunkMeta {
                seq: 0,
                next: if i + 1 < count { (i + 1) as u32 } else { NIL },
                len: 0,
                cut: 0,
            })
            .collect();
        SegmentPool {
            data: vec![0u8; count * Self::CHUNK_BYTES].into_boxed_slice(),
            meta,
            free: if count > 0 { 0 } else { NIL },
            free_count: count as u32,
        }
    }

    /// Bytes of chunks in use by some direction (whole chunks: the memory really held).
    pub fn held_bytes(&self) -> usize {
        (self.meta.len() - self.free_count as usize) * Self::CHUNK_BYTES
    }

    /// Bytes of chunks in the pool, used or not.
    pub fn capacity_bytes(&self) -> usize {
        self.meta.len() * Self::CHUNK_BYTES
    }

    fn alloc(&mut self) -> Option<u32> {
        let i = self.free;
        let meta = self.meta.get_mut(i as usize)?;
        self.free = meta.next;
        meta.next = NIL;
        meta.len = 0;
        meta.cut = 0;
        self.free_count -= 1;
        Some(i)
    }

    fn release_chunk(&mut self, i: u32) {
        if let Some(meta) = self.meta.get_mut(i as usize) {
            meta.next = self.free;
            self.free = i;
            self.free_count += 1;
        }
    }

    fn meta(&self, i: u32) -> ChunkMeta {
        self.meta[i as usize]
    }

    fn meta_mut(&mut self, i: u32) -> &mut ChunkMeta {
        &mut self.meta[i as usize]
    }

    /// The bytes chunk `i` holds.
    fn bytes(&self, i: u32) -> &[u8] {
        let start = i as usize * Self::CHUNK_BYTES;
        &self.data[start..start + usize::from(self.meta[i as usize].len)]
    }

    /// Appends `bytes` to chunk `i`; the caller made sure they fit.
    fn append(&mut self, i: u32, bytes: &[u8]) {
        let len = usize::from(self.meta[i as usize].len);
        let start = i as usize * Self::CHUNK_BYTES + len;
        self.data[start..start + bytes.len()].copy_from_slice(bytes);
        self.meta[i as usize].len = (len + bytes.len()) as u16;
    }
}

impl fmt::Debug for SegmentPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentPool")
            .field("chunks", &self.meta.len())
            .field("free", &self.free_count)
            .finish()
    }
}

/// One direction of a TCP connection being reassembled; inline in the flow entry (48 bytes,
/// asserted below), its buffered bytes in the shard's [`SegmentPool`].
///
/// Lifecycle: [`idle`](Self::idle) (nothing asked) → [`start`](Self::start) → segments and ACKs →
/// [`finish`](Self::finish) or [`release`](Self::release), after which it ignores everything until
/// started again. See the [module documentation](self) for the policies.
// Not Clone: two copies would own the same chunks.
#[derive(Debug)]
pub struct StreamDir {
    /// Stream offset of the next byte to deliver (data and gaps so far).
    next_offset: u64,
    /// Bytes declared as gaps so far.
    gap_bytes: u64,
    /// Sequence number of the next byte to deliver.
    next_seq: u32,
    /// Sequence number just past the last byte, when [`FLAG_FIN`] is set.
    fin_seq: u32,
    /// First buffered chunk (lowest sequence number), or [`NIL`].
    head: u32,
    gaps: u32,
    retransmitted: u32,
    out_of_order: u32,
    overlaps_differing: u16,
    ignored: u16,
    held_chunks: u16,
    state: u8,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<StreamDir>() == 48);

impl Default for StreamDir {
    fn default() -> Self {
        Self::idle()
    }
}

impl StreamDir {
    /// A direction nobody asked for: it holds nothing and ignores every call but
    /// [`start`](Self::start).
    pub const fn idle() -> Self {
        StreamDir {
            next_offset: 0,
            gap_bytes: 0,
            next_seq: 0,
            fin_seq: 0,
            head: NIL,
            gaps: 0,
            retransmitted: 0,
            out_of_order: 0,
            overlaps_differing: 0,
            ignored: 0,
            held_chunks: 0,
            state: STATE_IDLE,
            flags: 0,
        }
    }

    /// Starts reassembling at `seq_of_first_byte` (ISN + 1 after a SYN, since the SYN takes one
    /// sequence number; or a segment's sequence number for a connection picked up mid-stream,
    /// whose earlier bytes then count as retransmissions). Offsets restart at 0 and counters at
    /// zero. A direction that still holds chunks is left as it is: they must go back to the pool
    /// first ([`finish`](Self::finish) or [`release`](Self::release)), which `start` cannot reach.
    pub fn start(&mut self, seq_of_first_byte: u32) {
        if self.held_chunks != 0 || self.head != NIL {
            return;
        }
        *self = StreamDir {
            next_seq: seq_of_first_byte,
            state: STATE_ACTIVE,
            ..Self::idle()
        };
    }

    /// Whether the direction is reassembling (started, and neither finished nor released).
    pub fn is_active(&self) -> bool {
        self.state == STATE_ACTIVE
    }

    /// Whether a FIN was seen and every byte before it has been delivered or declared a gap.
    pub fn is_complete(&self) -> bool {
        self.flags & FLAG_FIN != 0 && self.next_seq == self.fin_seq
    }

    /// A segment of this direction: `seq` its sequence number, `payload` the bytes captured,
    /// `wire_len` the payload length its IP header announces (more than `payload.len()` means the
    /// capture cut it; fewer means the frame carried bytes past the IP packet, such as Ethernet
    /// padding, which are ignored), `fin` its FIN flag. Whatever becomes deliverable in order is
    /// passed to `out` before this returns.
    ///
    /// A SYN carrying data (TCP Fast Open) takes a sequence number before its data: pass its data
    /// at ISN + 1. Pure ACKs (no payload, no FIN) may be passed too and do nothing here; their
    /// acknowledgement goes to the other direction's [`acked`](Self::acked).
    #[allow(clippy::too_many_arguments)] // the interface the flow table calls, one value each
    pub fn segment(
        &mut self,
        pool: &mut SegmentPool,
        limits: &Limits,
        seq: u32,
        payload: &[u8],
        wire_len: u32,
        fin: bool,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        if self.state != STATE_ACTIVE {
            return;
        }
        // The IP length is the authority: bytes past it are not the segment's (Ethernet pads
        // frames to 60 bytes, and a frame's payload slice runs to the frame's end).
        let wire = wire_len.min(MAX_SEGMENT);
        let payload = &payload[..payload.len().min(wire as usize)];
        let captured = payload.len() as u32;
        let start = self.rel(seq);
        if start + i64::from(wire) > WINDOW {
            self.ignored = self.ignored.saturating_add(1);
            return;
        }
        if fin {
            self.note_fin(pool, seq.wrapping_add(wire));
        }
        if wire == 0 {
            // A pure ACK, or a bare FIN: the FIN may have been all that finish() lacked.
            return;
        }
        if start + i64::from(wire) <= 0 {
            self.retransmitted = self.retransmitted.saturating_add(1);
            return;
        }
        // Lengths from `seq`, after cutting off anything past a FIN.
        let mut len = i64::from(wire);
        let mut cap_len = i64::from(captured);
        if self.flags & FLAG_FIN != 0 {
            let fin_at = self.rel(self.fin_seq) - start;
            if len > fin_at {
                self.ignored = self.ignored.saturating_add(1);
                len = fin_at;
                cap_len = cap_len.min(fin_at);
                if len <= 0 {
                    return;
                }
            }
        }
        let payload = &payload[..cap_len.max(0) as usize];
        let mut counted = false;
        loop {
            let start = self.rel(seq);
            if start <= 0 {
                self.deliver_in_order(pool, start, payload, len, out);
                return;
            }
            if !counted {
                counted = true;
                self.out_of_order = self.out_of_order.saturating_add(1);
            }
            let need = self.chunks_needed(pool, start, start + payload.len() as i64);
            let room = limits
                .chunk_limit()
                .saturating_sub(u32::from(self.held_chunks))
                .min(pool.free_count);
            if need <= room {
                if !self.buffer(pool, seq, start, payload, len) {
                    // Nothing new: every byte was already buffered.
                    self.out_of_order = self.out_of_order.saturating_sub(1);
                    self.retransmitted = self.retransmitted.saturating_add(1);
                }
                return;
            }
            // No room: give up on the first hole and deliver what that makes contiguous.
            let target = match self.head_rel(pool) {
                Some(h) => h.min(start),
                None => start,
            };
            self.gap(target, GapReason::BufferFull, out);
            self.drain(pool, 0, out);
        }
    }

    /// The peer acknowledged everything before `ack`: bytes before it that never arrived will
    /// never come (the mirror lost them). Holes become [`GapReason::Lost`] gaps as the module
    /// documentation describes (after data beyond the hole has arrived, or once the ACK is
    /// [`Limits::ack_gap_bytes`] past it); an old or implausible ACK (behind, or more than a
    /// maximum window ahead) changes nothing.
    pub fn acked(
        &mut self,
        pool: &mut SegmentPool,
        limits: &Limits,
        ack: u32,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        if self.state != STATE_ACTIVE {
            return;
        }
        loop {
            let mut target = self.rel(ack);
            if target <= 0 || target > WINDOW {
                return;
            }
            if self.flags & FLAG_FIN != 0 {
                // The FIN takes a sequence number of its own: an ACK of it reaches one past the data.
                target = target.min(self.rel(self.fin_seq));
            }
            let upto = match self.head_rel(pool) {
                Some(h) => h.min(target),
                None if target >= i64::from(limits.ack_gap_bytes) => target,
                None => return,
            };
            if upto <= 0 {
                return;
            }
            self.gap(upto, GapReason::Lost, out);
            self.drain(pool, 0, out);
        }
    }

    /// Flow end: delivers what is buffered, with the holes before it (and before a FIN, if one
    /// was seen) as [`GapReason::Closed`] gaps, then gives every chunk back to the pool. The
    /// direction is inactive afterwards.
    pub fn finish(&mut self, pool: &mut SegmentPool, out: &mut dyn FnMut(Chunk<'_>)) {
        if self.state == STATE_ACTIVE {
            while let Some(h) = self.head_rel(pool) {
                self.gap(h, GapReason::Closed, out);
                self.drain(pool, 0, out);
            }
            if self.flags & FLAG_FIN != 0 {
                let fin_at = self.rel(self.fin_seq);
                self.gap(fin_at, GapReason::Closed, out);
            }
        }
        self.release(pool);
    }

    /// The consumer stopped asking (e.g. TLS after the handshake): every chunk goes back to the
    /// pool at once and nothing more is delivered. Counters stay readable.
    pub fn release(&mut self, pool: &mut SegmentPool) {
        let mut cur = self.head;
        while cur != NIL {
            let next = pool.meta(cur).next;
            pool.release_chunk(cur);
            cur = next;
        }
        self.head = NIL;
        self.held_chunks = 0;
        if self.state == STATE_ACTIVE {
            self.state = STATE_DONE;
        }
    }

    /// Pool memory this direction holds for out-of-order bytes, in whole chunks.
    pub fn held_bytes(&self) -> u32 {
        u32::from(self.held_chunks) * SegmentPool::CHUNK_BYTES as u32
    }

    /// Bytes delivered as [`Chunk::Data`].
    pub fn delivered(&self) -> u64 {
        self.next_offset - self.gap_bytes
    }

    /// Stream offset of the next byte to be delivered: everything before it was delivered as data
    /// or declared a gap.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Gaps declared (saturating).
    pub fn gaps(&self) -> u32 {
        self.gaps
    }

    /// Bytes declared as gaps.
    pub fn gap_bytes(&self) -> u64 {
        self.gap_bytes
    }

    /// Segments that brought no new byte: entirely before the next expected byte, or entirely
    /// inside bytes already buffered (saturating).
    pub fn retransmitted(&self) -> u32 {
        self.retransmitted
    }

    /// Segments that arrived ahead of a hole and were buffered (saturating).
    pub fn out_of_order(&self) -> u32 {
        self.out_of_order
    }

    /// Segments whose bytes overlapped buffered or in-order bytes with different content: the
    /// first copy was kept (see the module documentation). A rare event in honest traffic and a
    /// sign of evasion otherwise; saturates at 65535.
    pub fn overlaps_differing(&self) -> u16 {
        self.overlaps_differing
    }

    /// Segments (or parts of them) ignored: data past a FIN, a second FIN elsewhere, or a segment
    /// beyond any possible TCP window; saturates at 65535.
    pub fn ignored(&self) -> u16 {
        self.ignored
    }

    /// Position of `seq` relative to the next expected byte, as a serial number (RFC 1982).
    fn rel(&self, seq: u32) -> i64 {
        i64::from(seq.wrapping_sub(self.next_seq) as i32)
    }

    fn head_rel(&self, pool: &SegmentPool) -> Option<i64> {
        (self.head != NIL).then(|| self.rel(pool.meta(self.head).seq))
    }

    fn advance(&mut self, n: i64) {
        self.next_seq = self.next_seq.wrapping_add(n as u32);
        self.next_offset += n as u64;
    }

    /// Declares the next `n` bytes a gap (nothing for `n <= 0`).
    fn gap(&mut self, n: i64, why: GapReason, out: &mut dyn FnMut(Chunk<'_>)) {
        if n <= 0 {
            return;
        }
        out(Chunk::Gap {
            offset: self.next_offset,
            len: n as u64,
            why,
        });
        self.gaps = self.gaps.saturating_add(1);
        self.gap_bytes += n as u64;
        self.advance(n);
    }

    fn pop_head(&mut self, pool: &mut SegmentPool) {
        let head = self.head;
        if head != NIL {
            self.head = pool.meta(head).next;
            pool.release_chunk(head);
            self.held_chunks = self.held_chunks.saturating_sub(1);
        }
    }

    /// Records the first FIN and drops buffered bytes past it.
    fn note_fin(&mut self, pool: &mut SegmentPool, fin_seq: u32) {
        if self.flags & FLAG_FIN != 0 {
            if fin_seq != self.fin_seq {
                self.ignored = self.ignored.saturating_add(1);
            }
            return;
        }
        let fin_at = self.rel(fin_seq);
        if fin_at < 0 {
            // Bytes past this FIN were already delivered: the FIN contradicts them.
            self.ignored = self.ignored.saturating_add(1);
            return;
        }
        self.flags |= FLAG_FIN;
        self.fin_seq = fin_seq;
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let m = pool.meta(cur);
            let cs = self.rel(m.seq);
            let ce = cs + i64::from(m.len);
            if cs >= fin_at {
                // This chunk and every later one lie past the FIN.
                if prev == NIL {
                    self.head = NIL;
                } else {
                    pool.meta_mut(prev).next = NIL;
                }
                let mut drop = cur;
                while drop != NIL {
                    let next = pool.meta(drop).next;
                    pool.release_chunk(drop);
                    self.held_chunks = self.held_chunks.saturating_sub(1);
                    drop = next;
                }
                self.ignored = self.ignored.saturating_add(1);
                return;
            }
            let meta = pool.meta_mut(cur);
            if ce > fin_at {
                meta.len = (fin_at - cs) as u16;
                meta.cut = 0;
            } else {
                meta.cut = meta.cut.min((fin_at - ce).min(i64::from(u16::MAX)) as u16);
            }
            prev = cur;
            cur = m.next;
        }
    }

    /// Delivers a segment that starts at or before the next expected byte: its bytes where nothing
    /// was buffered, buffered bytes where they were (the first copy wins), a `Truncated` gap for
    /// announced bytes not captured; then whatever that makes contiguous.
    fn deliver_in_order(
        &mut self,
        pool: &mut SegmentPool,
        start: i64,
        payload: &[u8],
        len: i64,
        out: &mut dyn FnMut(Chunk<'_>),
    ) {
        // Positions relative to the next expected byte as it is now, `p` the next to deliver.
        let base = self.next_seq;
        let cap_end = start + payload.len() as i64;
        let end = start + len;
        let mut p = 0i64;
        let mut cut_end = 0i64;
        let mut differing = false;
        while p < end {
            let limit = if self.head == NIL {
                end
            } else {
                let m = pool.meta(self.head);
                let hs = i64::from(m.seq.wrapping_sub(base) as i32);
                let he = hs + i64::from(m.len);
                if hs > p {
                    hs.min(end)
                } else {
                    if he > p {
                        let bytes = &pool.bytes(self.head)[(p - hs) as usize..];
                        let overlap_end = he.min(cap_end);
                        if overlap_end > p {
                            let n = (overlap_end - p) as usize;
                            let ours =
                                &payload[(p - start) as usize..(overlap_end - start) as usize];
                            differing |= bytes[..n] != *ours;
                        }
                        out(Chunk::Data {
                            offset: self.next_offset,
                            bytes,
                        });
                        self.advance(he - p);
                        p = he;
                    }
                    cut_end = cut_end.max(he + i64::from(m.cut));
                    self.pop_head(pool);
                    continue;
                }
            };
            if p < cap_end {
                let e = limit.min(cap_end);
                let bytes = &payload[(p - start) as usize..(e - start) as usize];
                out(Chunk::Data {
                    offset: self.next_offset,
                    bytes,
                });
                self.advance(e - p);
                p = e;
            } else {
                self.gap(limit - p, GapReason::Truncated, out);
                p = limit;
            }
        }
        if differing {
            self.overlaps_differing = self.overlaps_differing.saturating_add(1);
        }
        self.drain(pool, cut_end - p, out);
    }

    /// Delivers buffered chunks that are now in order. `cut` is how many bytes from the next
    /// expected one a capture announced but cut: they become a `Truncated` gap unless buffered
    /// bytes come first.
    fn drain(&mut self, pool: &mut SegmentPool, cut: i64, out: &mut dyn FnMut(Chunk<'_>)) {
        let mut cut = cut;
        loop {
            if self.flags & FLAG_FIN != 0 {
                cut = cut.min(self.rel(self.fin_seq));
            }
            let Some(hs) = self.head_rel(pool) else {
                self.gap(cut, GapReason::Truncated, out);
                return;
            };
            if hs <= 0 {
                let m = pool.meta(self.head);
                let he = hs + i64::from(m.len);
                let advance = he.max(0);
                if he > 0 {
                    let bytes = &pool.bytes(self.head)[(-hs) as usize..];
                    out(Chunk::Data {
                        offset: self.next_offset,
                        bytes,
                    });
                    self.advance(he);
                }
                cut = (cut - advance).max(he + i64::from(m.cut) - advance);
                self.pop_head(pool);
            } else if cut > 0 {
                let n = cut.min(hs);
                self.gap(n, GapReason::Truncated, out);
                cut -= n;
            } else {
                return;
            }
        }
    }

    /// Chunks needed to buffer the bytes `[start, cap_end)` (relative to the next expected byte)
    /// that nothing buffered covers yet.
    fn chunks_needed(&self, pool: &SegmentPool, start: i64, cap_end: i64) -> u32 {
        let chunk = SegmentPool::CHUNK_BYTES as i64;
        let mut need = 0i64;
        let mut pos = start;
        // End and length of the chunk just before `pos`, whose spare room new bytes may fill.
        let mut prev: Option<(i64, i64)> = None;
        let mut cur = self.head;
        while pos < cap_end {
            let piece_end = if cur == NIL {
                cap_end
            } else {
                let m = pool.meta(cur);
                let cs = self.rel(m.seq);
                let ce = cs + i64::from(m.len);
                if ce <= pos || cs <= pos {
                    pos = pos.max(ce.min(cap_end));
                    prev = Some((ce, i64::from(m.len)));
                    cur = m.next;
                    continue;
                }
                cs.min(cap_end)
            };
            let mut n = piece_end - pos;
            if let Some((pe, plen)) = prev {
                if pe == pos {
                    n -= n.min(chunk - plen);
                }
            }
            need += (n + chunk - 1) / chunk;
            pos = piece_end;
        }
        need.min(i64::from(u32::MAX)) as u32
    }

    /// Copies the bytes of a segment starting `start > 0` bytes ahead into the pool where nothing
    /// buffered covers them (the first copy wins; differing copies are counted), and remembers a
    /// cut after its captured bytes. The caller made sure the chunks are free. Returns whether any
    /// byte was new.
    fn buffer(
        &mut self,
        pool: &mut SegmentPool,
        seq: u32,
        start: i64,
        payload: &[u8],
        len: i64,
    ) -> bool {
        let cap_end = start + payload.len() as i64;
        let mut pos = start;
        let mut prev = NIL;
        let mut cur = self.head;
        let mut new = false;
        let mut differing = false;
        while pos < cap_end {
            let piece_end = if cur == NIL {
                cap_end
            } else {
                let m = pool.meta(cur);
                let cs = self.rel(m.seq);
                let ce = cs + i64::from(m.len);
                if ce <= pos {
                    prev = cur;
                    cur = m.next;
                    continue;
                }
                if cs <= pos {
                    let e = ce.min(cap_end);
                    let theirs = &pool.bytes(cur)[(pos - cs) as usize..(e - cs) as usize];
                    differing |= theirs != &payload[(pos - start) as usize..(e - start) as usize];
                    pos = e;
                    prev = cur;
                    cur = m.next;
                    continue;
                }
                cs.min(cap_end)
            };
            prev = self.fill(
                pool,
                prev,
                pos,
                &payload[(pos - start) as usize..(piece_end - start) as usize],
            );
            new = true;
            pos = piece_end;
        }
        if differing {
            self.overlaps_differing = self.overlaps_differing.saturating_add(1);
        }
        let cut = len - payload.len() as i64;
        if cut > 0 {
            new |= self.mark_cut(pool, seq.wrapping_add(payload.len() as u32), cut);
        }
        new
    }

    /// Notes that `cut` bytes from `at` were announced but not captured, on the buffered chunk
    /// that ends exactly at `at` (if none does, the hole is an ordinary one). Returns whether the
    /// note is new.
    fn mark_cut(&mut self, pool: &mut SegmentPool, at: u32, cut: i64) -> bool {
        let at = self.rel(at);
        let cut = cut.min(i64::from(u16::MAX)) as u16;
        let mut cur = self.head;
        while cur != NIL {
            let m = pool.meta(cur);
            let ce = self.rel(m.seq) + i64::from(m.len);
            if ce == at && m.cut < cut {
                pool.meta_mut(cur).cut = cut;
                return true;
            }
            if ce >= at {
                return false;
            }
            cur = m.next;
        }
        false
    }

    /// Buffers `bytes` at `pos` right after chunk `prev` (or at the head): into `prev`'s spare room
    /// if the bytes continue it, then into new chunks linked after it. Returns the last chunk
    /// written.
    fn fill(&mut self, pool: &mut SegmentPool, prev: u32, pos: i64, bytes: &[u8]) -> u32 {
        let chunk = SegmentPool::CHUNK_BYTES;
        let mut done = 0usize;
        let mut last = prev;
        // A cut noted on `prev` lies after its bytes: it moves behind what we add.
        let mut cut_end = None;
        if prev != NIL {
            let m = pool.meta(prev);
            let pe = self.rel(m.seq) + i64::from(m.len);
            if pe == pos && usize::from(m.len) < chunk {
                let n = (chunk - usize::from(m.len)).min(bytes.len());
                pool.append(prev, &bytes[..n]);
                if m.cut > 0 {
                    cut_end = Some(pe + i64::from(m.cut));
                    pool.meta_mut(prev).cut = 0;
                }
                done = n;
            }
        }
        while done < bytes.len() {
            let Some(c) = pool.alloc() else { break };
            let n = chunk.min(bytes.len() - done);
            let next = if last == NIL {
                self.head
            } else {
                pool.meta(last).next
            };
            *pool.meta_mut(c) = ChunkMeta {
                seq: self.next_seq.wrapping_add((pos + done as i64) as u32),
                next,
                len: 0,
                cut: 0,
            };
            pool.append(c, &bytes[done..done + n]);
            if last == NIL {
                self.head = c;
            } else {
                pool.meta_mut(last).next = c;
            }
            self.held_chunks = self.held_chunks.saturating_add(1);
            last = c;
            done += n;
        }
        if let (Some(cut_end), true) = (cut_end, last != NIL) {
            let m = pool.meta(last);
            let le = self.rel(m.seq) + i64::from(m.len);
            if cut_end > le {
                pool.meta_mut(last).cut = m.cut.max((cut_end - le).min(i64::from(u16::MAX)) as u16);
            }
        }
        last
    }
}

#[cfg(test)]
mod tests;
