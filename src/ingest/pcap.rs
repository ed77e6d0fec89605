//! A streaming reader for pcap and pcapng capture files.
//!
//! Written here rather than taken from a crate because replay needs all of these at once, and no
//! well-kept crate gave them together when checked: classic pcap in both byte orders with micro- or
//! nanosecond timestamps; pcapng with several sections and several interfaces per section, each with its
//! own link type, `if_tsresol` (any power of 10 or of 2) and `if_tsoffset`; Linux cooked captures v1 and
//! v2; records borrowed in place from the window the file is read into (no allocation and no copy
//! per packet, one large read per window); and a record that is not a usable frame reported as such
//! instead of ending the file.
//!
//! Formats: the tcpdump.org pcap(5) description and draft-tuexen-opsawg-pcapng; link-layer header
//! types from tcpdump.org's LINKTYPE list.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::base::Timestamp;
pub use crate::wire::link::{l3, LinkType, L3};

/// The window a file is read into. Big enough that system calls do not show (a few thousand a
/// gigabyte), small enough that the records the kernel just copied are still in the core's L2 cache
/// when the replay parses them: on the ENI-like benchmark capture, 256 KiB took 0.92 x the reader's
/// CPU time of a 1 MiB buffered read plus a copy per record; a 1 MiB window, where the parse takes the
/// cache misses the copy used to, saved about half as much.
pub const READ_BUFFER: usize = 256 << 10;
/// The window of a reader over any other input (a fuzzer's bytes, standard input behind its own
/// buffer): large enough for any usual record, small enough to make per input.
const SMALL_WINDOW: usize = 64 * 1024;
/// The largest record or block accepted. Jumbo frames are ~9 KiB; tcpdump's snap length caps at
/// 256 KiB; anything larger means the file is corrupt and cannot be resynchronised.
const MAX_BLOCK: usize = 1 << 20;

/// Why a capture could not be read. Each names the file and the byte offset.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file (magic {magic:08x})")]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// The first four bytes.
        magic: u32,
    },
    /// A header is malformed in a way that leaves no safe place to continue.
    #[error("{path}: offset {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad header.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// The link type of the interface it was captured on.
    pub link: LinkType,
    /// The captured bytes (possibly cut by the capture's snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// The pcapng interface id (0 for classic pcap).
    pub interface: u32,
}

/// What the reader found next.
#[derive(Debug)]
pub enum Item<'a> {
    /// A frame.
    Frame(Record<'a>),
    /// A record that is not a usable frame (unknown interface, lengths that contradict each other, a
    /// final record cut short by the end of the file); `why` says which.
    Bad {
        /// Why.
        why: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second, as a resolution code (if_tsresol).
    tsresol: u8,
    /// Seconds added to every timestamp (if_tsoffset).
    tsoffset: i64,
    snaplen: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pcap { nanos: bool, big_endian: bool },
    PcapNg { big_endian: bool },
}

/// Reads records one at a time from a pcap or pcapng stream.
pub struct CaptureReader<R: Read> {
    input: R,
    path: PathBuf,
    format: Format,
    /// Classic pcap: the one interface. pcapng: the current section's interfaces.
    interfaces: Vec<Interface>,
    /// What was read from `input`: `window[pos..end]` is not consumed yet. Records and blocks are
    /// handed out as slices of it, so a frame is copied once (by the kernel) before its shard gets it;
    /// the unconsumed tail moves to the front when a record does not fit behind it.
    window: Vec<u8>,
    pos: usize,
    end: usize,
    /// The current record's or block's bytes: `window[block.0..block.1]`.
    block: (usize, usize),
    offset: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish()
    }
}

fn open_file(path: &Path) -> Result<File, CaptureError> {
    File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_owned(),
        source,
    })
}

impl CaptureReader<File> {
    /// Opens a capture file.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        CaptureReader::with_window(open_file(path)?, path, READ_BUFFER)
    }
}

/// A capture as a command line names one: a file, or standard input for `-` (`tcpdump -w - ... |
/// vxtap replay -`). Boxed, so that a reader can be handed between threads whichever it is.
pub type InputReader = CaptureReader<Box<dyn Read + Send>>;

impl InputReader {
    /// Opens `path`, or standard input for `-`.
    pub fn open_input(path: &Path) -> Result<Self, CaptureError> {
        let input: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(io::stdin())
        } else {
            Box::new(open_file(path)?)
        };
        CaptureReader::with_window(input, path, READ_BUFFER)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header from `input`; `path` names it in errors.
    pub fn new(input: R, path: &Path) -> Result<Self, CaptureError> {
        CaptureReader::with_window(input, path, SMALL_WINDOW)
    }

    /// As [`CaptureReader::new`], reading `window` bytes at a time (at least): a large window for
    /// a file or a pipe, so that each read system call brings many records.
    pub fn with_window(input: R, path: &Path, window: usize) -> Result<Self, CaptureError> {
        let mut reader = CaptureReader {
            input,
            path: path.to_owned(),
            format: Format::Pcap {
                nanos: false,
                big_endian: false,
            },
            interfaces: Vec::new(),
            window: vec![0; window],
            pos: 0,
            end: 0,
            block: (0, 0),
            offset: 0,
            done: false,
        };
        let mut head = [0u8; 4];
        reader.read(&mut head)?;
        let magic = u32::from_le_bytes(head);
        let format = match magic {
            0xa1b2_c3d4 => Format::Pcap {
                nanos: false,
                big_endian: false,
            },
            0xa1b2_3c4d => Format::Pcap {
                nanos: true,
                big_endian: false,
            },
            0xd4c3_b2a1 => Format::Pcap {
                nanos: false,
                big_endian: true,
            },
            0x4d3c_b2a1 => Format::Pcap {
                nanos: true,
                big_endian: true,
            },
            0x0a0d_0d0a => Format::PcapNg { big_endian: false },
            _ => {
                return Err(CaptureError::NotACapture {
                    path: path.to_owned(),
                    magic: u32::from_be_bytes(head),
                })
            }
        };
        reader.format = format;
        match format {
            Format::Pcap { big_endian, .. } => {
                let mut rest = [0u8; 20];
                reader.read(&mut rest)?;
                let u32_at = |i: usize| {
                    let b = [rest[i], rest[i + 1], rest[i + 2], rest[i + 3]];
                    if big_endian {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                };
                reader.interfaces.push(Interface {
                    link: LinkType::from_code(u32_at(16)),
                    tsresol: 6,
                    tsoffset: 0,
                    snaplen: u32_at(12),
                });
            }
            Format::PcapNg { .. } => reader.section_header(0)?,
        }
        Ok(reader)
    }

    /// The name the reader was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&mut self, out: &mut [u8]) -> Result<(), CaptureError> {
        if self.read_some(out)? < out.len() {
            return Err(self.cut_header());
        }
        Ok(())
    }

    /// A file or section header cut by the end of the file: nothing after it can be read.
    fn cut_header(&self) -> CaptureError {
        CaptureError::Io {
            path: self.path.clone(),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "file ends inside its header"),
        }
    }

    /// Reads up to `out.len()` bytes; returns how many, fewer only at end of file.
    fn read_some(&mut self, out: &mut [u8]) -> Result<usize, CaptureError> {
        let (at, got) = self.take(out.len())?;
        out[..got].copy_from_slice(&self.window[at..at + got]);
        Ok(got)
    }

    /// Consumes the next `n` bytes (fewer only at end of file) and makes them the current block;
    /// returns how many.
    fn take_block(&mut self, n: usize) -> Result<usize, CaptureError> {
        let (at, got) = self.take(n)?;
        self.block = (at, at + got);
        Ok(got)
    }

    /// Consumes up to `n` bytes, contiguous in the window; returns where they start and how many
    /// there are (fewer than `n` only at end of file).
    fn take(&mut self, n: usize) -> Result<(usize, usize), CaptureError> {
        if self.end - self.pos < n {
            self.fill(n)?;
        }
        let at = self.pos;
        let got = n.min(self.end - self.pos);
        self.pos += got;
        self.offset += got as u64;
        Ok((at, got))
    }

    /// Makes `n` bytes available behind `pos`, unless the input ends first.
    #[cold]
    fn fill(&mut self, n: usize) -> Result<(), CaptureError> {
        self.window.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.window.len() < n {
            self.window.resize(n, 0);
        }
        while self.end < n {
            match self.input.read(&mut self.window[self.end..]) {
                Ok(0) => break,
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The current record's or block's bytes.
    fn block(&self) -> &[u8] {
        &self.window[self.block.0..self.block.1]
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset,
            what: what.into(),
        }
    }

    /// The next record, `Ok(None)` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        match self.format {
            Format::Pcap { nanos, big_endian } => self.next_pcap(nanos, big_endian),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        nanos: bool,
        big_endian: bool,
    ) -> Result<Option<Item<'_>>, CaptureError> {
        let start = self.offset;
        let mut h = [0u8; 16];
        let got = self.read_some(&mut h)?;
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        if got < h.len() {
            // tcpdump killed mid-write leaves a partial record header.
            self.done = true;
            return Ok(Some(Item::Bad {
                why: "record header cut by the end of the file",
            }));
        }
        let f = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (secs, frac, incl, orig) = (f(0), f(4), f(8) as usize, f(12));
        if incl > MAX_BLOCK {
            return Err(self.corrupt(
                start,
                format!("record of {incl} bytes: the file is corrupt"),
            ));
        }
        if self.take_block(incl)? < incl {
            self.done = true;
            return Ok(Some(Item::Bad {
                why: "record cut by the end of the file",
            }));
        }
        let sub = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        if sub >= 1_000_000_000 {
            return Ok(Some(Item::Bad {
                why: "timestamp fraction out of range",
            }));
        }
        let iface = self.interfaces[0];
        Ok(Some(Item::Frame(Record {
            ts: Timestamp::from_nanos(u64::from(secs) * 1_000_000_000 + sub),
            link: iface.link,
            data: self.block(),
            orig_len: orig.max(incl as u32),
            interface: 0,
        })))
    }

    fn big_endian(&self) -> bool {
        matches!(self.format, Format::PcapNg { big_endian: true })
    }

    fn u16_at(&self, i: usize) -> u16 {
        let buf = self.block();
        let b = [buf[i], buf[i + 1]];
        if self.big_endian() {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32_at(&self, i: usize) -> u32 {
        let buf = self.block();
        let b = [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        if self.big_endian() {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Reads a Section Header Block whose type (4 bytes at `start`) has been consumed: byte order,
    /// then the block. A new section forgets the previous section's interfaces.
    fn section_header(&mut self, start: u64) -> Result<(), CaptureError> {
        let mut lm = [0u8; 8];
        self.read(&mut lm)?;
        let big_endian = match u32::from_le_bytes([lm[4], lm[5], lm[6], lm[7]]) {
            0x1a2b_3c4d => false,
            0x4d3c_2b1a => true,
            m => {
                return Err(self.corrupt(start, format!("bad pcapng byte-order magic {m:08x}")));
            }
        };
        self.format = Format::PcapNg { big_endian };
        let len = if big_endian {
            u32::from_be_bytes([lm[0], lm[1], lm[2], lm[3]])
        } else {
            u32::from_le_bytes([lm[0], lm[1], lm[2], lm[3]])
        } as usize;
        if !(28..=MAX_BLOCK).contains(&len) || len % 4 != 0 {
            return Err(self.corrupt(start, format!("section header of {len} bytes")));
        }
        // The rest of the block (version, section length, options, trailing length) is not needed.
        if self.take_block(len - 12)? < len - 12 {
            return Err(self.cut_header());
        }
        self.interfaces.clear();
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Item<'_>>, CaptureError> {
        loop {
            let start = self.offset;
            let mut ty = [0u8; 4];
            let got = self.read_some(&mut ty)?;
            if got == 0 {
                self.done = true;
                return Ok(None);
            }
            if got < 4 {
                self.done = true;
                return Ok(Some(Item::Bad {
                    why: "block cut by the end of the file",
                }));
            }
            if ty == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.section_header(start)?;
                continue;
            }
            let mut lb = [0u8; 4];
            if self.read_some(&mut lb)? < 4 {
                self.done = true;
                return Ok(Some(Item::Bad {
                    why: "block cut by the end of the file",
                }));
            }
            let (block_type, len) = if self.big_endian() {
                (u32::from_be_bytes(ty), u32::from_be_bytes(lb) as usize)
            } else {
                (u32::from_le_bytes(ty), u32::from_le_bytes(lb) as usize)
            };
            if !(12..=MAX_BLOCK).contains(&len) || len % 4 != 0 {
                return Err(self.corrupt(start, format!("block of {len} bytes")));
            }
            // Body plus the trailing length copy.
            let body = len - 8;
            if self.take_block(body)? < body {
                self.done = true;
                return Ok(Some(Item::Bad {
                    why: "block cut by the end of the file",
                }));
            }
            let body = body - 4;
            match block_type {
                // Interface Description Block.
                1 => {
                    let iface = self.interface_description(body);
                    self.interfaces.push(iface);
                }
                // Enhanced Packet Block.
                6 => return Ok(Some(self.enhanced_packet(body))),
                // Simple Packet Block: interface 0, no timestamp.
                3 => return Ok(Some(self.simple_packet(body))),
                // Obsolete Packet Block, still written by old tools.
                2 => return Ok(Some(self.obsolete_packet(body))),
                // Name resolution, statistics, custom, decryption secrets...: nothing for us.
                _ => {}
            }
        }
    }

    fn interface_description(&self, body: usize) -> Interface {
        let mut iface = Interface {
            link: LinkType::Other(u16::MAX),
            tsresol: 6,
            tsoffset: 0,
            snaplen: 0,
        };
        if body < 8 {
            return iface;
        }
        iface.link = LinkType::from_code(u32::from(self.u16_at(0)));
        iface.snaplen = self.u32_at(4);
        let mut at = 8;
        while at + 4 <= body {
            let (code, len) = (self.u16_at(at), usize::from(self.u16_at(at + 2)));
            let value = at + 4;
            if code == 0 || value + len > body {
                break;
            }
            match (code, len) {
                (9, 1) => iface.tsresol = self.block()[value],
                (14, 8) => {
                    let b: [u8; 8] = self.block()[value..value + 8]
                        .try_into()
                        .unwrap_or_default();
                    iface.tsoffset = if self.big_endian() {
                        i64::from_be_bytes(b)
                    } else {
                        i64::from_le_bytes(b)
                    };
                }
                _ => {}
            }
            at = value + len.div_ceil(4) * 4;
        }
        iface
    }

    fn enhanced_packet(&self, body: usize) -> Item<'_> {
        if body < 20 {
            return Item::Bad {
                why: "enhanced packet block too short",
            };
        }
        let id = self.u32_at(0);
        let ts = (u64::from(self.u32_at(4)) << 32) | u64::from(self.u32_at(8));
        let (caplen, orig) = (self.u32_at(12) as usize, self.u32_at(16));
        self.packet(id, ts, 20, caplen, orig, body)
    }

    fn obsolete_packet(&self, body: usize) -> Item<'_> {
        if body < 20 {
            return Item::Bad {
                why: "packet block too short",
            };
        }
        let id = u32::from(self.u16_at(0));
        let ts = (u64::from(self.u32_at(4)) << 32) | u64::from(self.u32_at(8));
        let (caplen, orig) = (self.u32_at(12) as usize, self.u32_at(16));
        self.packet(id, ts, 20, caplen, orig, body)
    }

    fn simple_packet(&self, body: usize) -> Item<'_> {
        if body < 4 {
            return Item::Bad {
                why: "simple packet block too short",
            };
        }
        let orig = self.u32_at(0);
        let Some(iface) = self.interfaces.first() else {
            return Item::Bad {
                why: "packet before any interface description",
            };
        };
        let mut caplen = (orig as usize).min(body - 4);
        if iface.snaplen > 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        Item::Frame(Record {
            // Simple packets carry no time; the section's first interface offset is all there is.
            ts: Timestamp::from_secs(iface.tsoffset.max(0) as u64),
            link: iface.link,
            data: &self.block()[4..4 + caplen],
            orig_len: orig,
            interface: 0,
        })
    }

    fn packet(
        &self,
        id: u32,
        ts: u64,
        data_at: usize,
        caplen: usize,
        orig: u32,
        body: usize,
    ) -> Item<'_> {
        let Some(iface) = self.interfaces.get(id as usize) else {
            return Item::Bad {
                why: "packet for an interface that was never described",
            };
        };
        if data_at + caplen > body {
            return Item::Bad {
                why: "captured length larger than its block",
            };
        }
        let Some(nanos) = to_nanos(ts, iface.tsresol, iface.tsoffset) else {
            return Item::Bad {
                why: "timestamp out of range",
            };
        };
        Item::Frame(Record {
            ts: Timestamp::from_nanos(nanos),
            link: iface.link,
            data: &self.block()[data_at..data_at + caplen],
            orig_len: orig.max(caplen as u32),
            interface: id,
        })
    }
}

/// Converts a pcapng timestamp in units of `tsresol` (bit 7 clear: 10^-n s; set: 2^-n s) plus an
/// offset in seconds to nanoseconds since the epoch.
fn to_nanos(units: u64, tsresol: u8, offset: i64) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    let nanos: u128 = if tsresol & 0x80 == 0 {
        if n <= 9 {
            u128::from(units) * 10u128.pow(9 - n)
        } else {
            u128::from(units) / 10u128.checked_pow(n - 9)?
        }
    } else {
        (u128::from(units) * 1_000_000_000) >> n.min(127)
    };
    let nanos = i128::try_from(nanos).ok()? + i128::from(offset) * 1_000_000_000;
    u64::try_from(nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Frame = (u64, LinkType, Vec<u8>, u32, u32);

    fn read_all(bytes: &[u8]) -> Vec<Result<Frame, &'static str>> {
        frames(CaptureReader::new(bytes, Path::new("t")).unwrap())
    }

    fn frames<R: Read>(mut r: CaptureReader<R>) -> Vec<Result<Frame, &'static str>> {
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(match item {
                Item::Frame(f) => Ok((
                    f.ts.nanos(),
                    f.link,
                    f.data.to_vec(),
                    f.orig_len,
                    f.interface,
                )),
                Item::Bad { why } => Err(why),
            });
        }
        out
    }

    #[test]
    fn classic_pcap_both_orders_and_resolutions() {
        // Little-endian microseconds, Ethernet, one record of 3 bytes (orig 60).
        let mut le = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        le.extend_from_slice(&[0; 8]);
        le.extend_from_slice(&65535u32.to_le_bytes());
        le.extend_from_slice(&1u32.to_le_bytes());
        for v in [10u32, 500_000, 3, 60] {
            le.extend_from_slice(&v.to_le_bytes());
        }
        le.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            read_all(&le),
            vec![Ok((
                10_500_000_000,
                LinkType::Ethernet,
                vec![1, 2, 3],
                60,
                0
            ))]
        );

        // Big-endian nanoseconds, raw IP (101).
        let mut be = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        be.extend_from_slice(&[0; 8]);
        be.extend_from_slice(&65535u32.to_be_bytes());
        be.extend_from_slice(&101u32.to_be_bytes());
        for v in [10u32, 7, 2, 2] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.extend_from_slice(&[0x45, 0]);
        // A final record cut by the end of the file.
        for v in [11u32, 0, 100, 100] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        be.extend_from_slice(&[0; 10]);
        assert_eq!(
            read_all(&be),
            vec![
                Ok((10_000_000_007, LinkType::RawIp, vec![0x45, 0], 2, 0)),
                Err("record cut by the end of the file")
            ]
        );
    }

    /// Hands out at most a few bytes per read, as a pipe may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_across_window_ends_and_larger_than_the_window_are_read_whole() {
        // Records of every size from 0 to 700 bytes and one of 100,000 (larger than a 64 KiB
        // window), each filled with its own index, so a record spliced from two windows shows.
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&262_144u32.to_le_bytes());
        file.extend_from_slice(&1u32.to_le_bytes());
        let sizes: Vec<usize> = (0..700).chain([100_000]).chain(0..300).collect();
        for (i, &len) in sizes.iter().enumerate() {
            for v in [i as u32, 0, len as u32, len as u32] {
                file.extend_from_slice(&v.to_le_bytes());
            }
            file.extend(std::iter::repeat_n(i as u8, len));
        }
        let want: Vec<Result<Frame, &str>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let ts = i as u64 * 1_000_000_000;
                Ok((ts, LinkType::Ethernet, vec![i as u8; len], len as u32, 0))
            })
            .collect();
        let t = Path::new("t");
        assert_eq!(frames(CaptureReader::new(&file[..], t).unwrap()), want);
        let small = CaptureReader::with_window(&file[..], t, 4096).unwrap();
        assert_eq!(frames(small), want);
        let trickle = CaptureReader::new(Trickle(&file, 0), t).unwrap();
        assert_eq!(frames(trickle), want);
    }

    #[test]
    fn not_a_capture_is_a_clear_error() {
        let err = CaptureReader::new(&b"GIF89a..."[..], Path::new("x.gif")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.gif: not a pcap or pcapng file (magic 47494638)"
        );
        let err = CaptureReader::new(&[0xd4, 0xc3, 0xb2, 0xa1, 2][..], Path::new("y")).unwrap_err();
        assert!(
            err.to_string().contains("file ends inside its header"),
            "{err}"
        );
    }

    fn block(ty: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let mut b = ty.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn shb() -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(0x0a0d_0d0a, &body)
    }

    fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = link.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&0u32.to_le_bytes());
        if let Some(r) = tsresol {
            body.extend_from_slice(&9u16.to_le_bytes());
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(1, &body)
    }

    fn epb(iface: u32, ts: u64, data: &[u8], orig: u32) -> Vec<u8> {
        let mut body = iface.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&orig.to_le_bytes());
        body.extend_from_slice(data);
        block(6, &body)
    }

    #[test]
    fn pcapng_interfaces_resolutions_and_sections() {
        let mut f = shb();
        f.extend(idb(1, None)); // Ethernet, microseconds
        f.extend(idb(276, Some(9))); // SLL2, nanoseconds
        f.extend(block(5, &[0; 8])); // a statistics block, skipped
        f.extend(epb(0, 1_500_000, &[0xaa; 5], 5));
        f.extend(epb(1, 2_000_000_001, &[0xbb; 3], 9));
        f.extend(epb(7, 0, &[0xcc], 1)); // no such interface
                                         // A second section: interface ids start again, here with a 2^-10 s resolution.
        f.extend(shb());
        f.extend(idb(113, Some(0x80 | 10)));
        f.extend(epb(0, 1024 * 3 + 512, &[0xdd; 2], 2));
        assert_eq!(
            read_all(&f),
            vec![
                Ok((1_500_000_000, LinkType::Ethernet, vec![0xaa; 5], 5, 0)),
                Ok((2_000_000_001, LinkType::LinuxSll2, vec![0xbb; 3], 9, 1)),
                Err("packet for an interface that was never described"),
                Ok((3_500_000_000, LinkType::LinuxSll, vec![0xdd; 2], 2, 0)),
            ]
        );
    }

    #[test]
    fn pcapng_big_endian_with_an_offset_and_simple_packets() {
        let be_block = |ty: u32, body: &[u8]| {
            let len = (body.len() + 12) as u32;
            let mut b = ty.to_be_bytes().to_vec();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(body);
            b.extend_from_slice(&len.to_be_bytes());
            b
        };
        let mut shb = 0x1a2b_3c4du32.to_be_bytes().to_vec();
        shb.extend_from_slice(&[0, 1, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_be_bytes());
        let mut f = be_block(0x0a0d_0d0a, &shb);
        // Raw IP, snap length 2, if_tsoffset = 100 s.
        let mut idb = 101u16.to_be_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&2u32.to_be_bytes());
        idb.extend_from_slice(&14u16.to_be_bytes());
        idb.extend_from_slice(&8u16.to_be_bytes());
        idb.extend_from_slice(&100i64.to_be_bytes());
        idb.extend_from_slice(&[0, 0, 0, 0]);
        f.extend(be_block(1, &idb));
        let mut epb = 0u32.to_be_bytes().to_vec();
        epb.extend_from_slice(&0u32.to_be_bytes());
        epb.extend_from_slice(&7u32.to_be_bytes()); // 7 microseconds
        epb.extend_from_slice(&4u32.to_be_bytes());
        epb.extend_from_slice(&4u32.to_be_bytes());
        epb.extend_from_slice(&[0x45, 1, 2, 3]);
        f.extend(be_block(6, &epb));
        // A simple packet: original length 4, cut to the interface's snap length of 2.
        let mut spb = 4u32.to_be_bytes().to_vec();
        spb.extend_from_slice(&[0x60, 9, 9, 9]);
        f.extend(be_block(3, &spb));
        assert_eq!(
            read_all(&f),
            vec![
                Ok((100_000_007_000, LinkType::RawIp, vec![0x45, 1, 2, 3], 4, 0)),
                Ok((100_000_000_000, LinkType::RawIp, vec![0x60, 9], 4, 0)),
            ]
        );
    }

    #[test]
    fn pcapng_corrupt_block_length_is_an_error() {
        let mut f = shb();
        f.extend_from_slice(&6u32.to_le_bytes());
        f.extend_from_slice(&7u32.to_le_bytes());
        let mut r = CaptureReader::new(&f[..], Path::new("z.pcapng")).unwrap();
        let err = r.next_item().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("z.pcapng: offset {}: block of 7 bytes", shb().len())
        );
    }

    #[test]
    fn network_layer_of_each_link_type() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(l3(LinkType::Ethernet, &eth).unwrap().bytes, &ip);
        assert_eq!(l3(LinkType::RawIp, &ip).unwrap().ether_type, 0x0800);
        let mut sll = vec![0; 14];
        sll.extend_from_slice(&[0x86, 0xdd]);
        sll.extend_from_slice(&[0x60, 0]);
        assert_eq!(l3(LinkType::LinuxSll, &sll).unwrap().ether_type, 0x86dd);
        let mut sll2 = vec![0x08, 0x06];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&[1, 2]);
        let arp = l3(LinkType::LinuxSll2, &sll2).unwrap();
        assert_eq!((arp.ether_type, arp.bytes), (0x0806, &[1u8, 2][..]));
        assert_eq!(
            l3(LinkType::Null, &[2, 0, 0, 0, 0x45]).unwrap().bytes,
            &[0x45]
        );
        assert_eq!(l3(LinkType::Ethernet, &[0; 13]), None);
        assert_eq!(l3(LinkType::Other(147), &eth), None);
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(to_nanos(5, 6, 0), Some(5_000));
        assert_eq!(to_nanos(5, 9, 0), Some(5));
        assert_eq!(to_nanos(5_000, 12, 0), Some(5));
        assert_eq!(to_nanos(1, 0x80 | 1, 0), Some(500_000_000));
        assert_eq!(to_nanos(0, 6, 10), Some(10_000_000_000));
        assert_eq!(to_nanos(0, 6, -1), None);
        assert_eq!(to_nanos(1, 100, 0), None);
    }
}
