//! pcapng and classic pcap framing: pure functions that append whole blocks to a buffer.
//!
//! pcapng (draft-tuexen-opsawg-pcapng §4): Section Header Block, Interface Description Block with
//! `if_name` (2), `if_description` (3) and `if_tsresol` (9) = 9 for nanoseconds, Enhanced Packet Block
//! with captured and original length. Classic pcap: the nanosecond magic `0xa1b23c4d`. Everything is
//! written little-endian, which readers detect from the byte-order magic.

/// LINKTYPE_ETHERNET: every mirrored frame is Ethernet.
pub(crate) const LINKTYPE_ETHERNET: u16 = 1;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const PCAP_NANO_MAGIC: u32 = 0xA1B2_3C4D;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    // An option value is at most 65,535 bytes; longer descriptions are cut.
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    u16le(out, code);
    u16le(out, value.len() as u16);
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

/// Writes a block: type, total length, `body`, total length again.
fn block(out: &mut Vec<u8>, ty: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    u32le(out, ty);
    u32le(out, 0);
    body(out);
    let total = (out.len() - start + 4) as u32;
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
    u32le(out, total);
}

/// A Section Header Block of unknown section length, naming vxtap as the writer.
pub(crate) fn section_header(out: &mut Vec<u8>) {
    block(out, SHB, |out| {
        u32le(out, BYTE_ORDER_MAGIC);
        u16le(out, 1);
        u16le(out, 0);
        out.extend_from_slice(&u64::MAX.to_le_bytes());
        option(
            out,
            SHB_USERAPPL,
            concat!("vxtap ", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        option(out, OPT_END, &[]);
    });
}

/// An Interface Description Block for Ethernet with nanosecond timestamps.
pub(crate) fn interface(out: &mut Vec<u8>, snaplen: u32, name: &str, description: &str) {
    block(out, IDB, |out| {
        u16le(out, LINKTYPE_ETHERNET);
        u16le(out, 0);
        u32le(out, snaplen);
        option(out, IF_NAME, name.as_bytes());
        option(out, IF_DESCRIPTION, description.as_bytes());
        option(out, IF_TSRESOL, &[9]);
        option(out, OPT_END, &[]);
    });
}

/// The length of the Enhanced Packet Block [`packet`] writes for `captured` bytes.
pub(crate) fn packet_len(captured: usize) -> usize {
    32 + pad4(captured)
}

/// An Enhanced Packet Block: `data` as captured, `orig_len` as it was on the wire.
pub(crate) fn packet(out: &mut Vec<u8>, interface: u32, ts_nanos: u64, data: &[u8], orig_len: u32) {
    block(out, EPB, |out| {
        u32le(out, interface);
        u32le(out, (ts_nanos >> 32) as u32);
        u32le(out, ts_nanos as u32);
        u32le(out, data.len() as u32);
        u32le(out, orig_len);
        out.extend_from_slice(data);
        out.resize(out.len() + pad4(data.len()) - data.len(), 0);
    });
}

/// A classic pcap file header (nanosecond timestamps, Ethernet).
pub(crate) fn pcap_header(snaplen: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    u32le(&mut out, PCAP_NANO_MAGIC);
    u16le(&mut out, 2);
    u16le(&mut out, 4);
    u32le(&mut out, 0);
    u32le(&mut out, 0);
    u32le(&mut out, snaplen);
    u32le(&mut out, u32::from(LINKTYPE_ETHERNET));
    out
}

/// A classic pcap record.
pub(crate) fn pcap_record(out: &mut Vec<u8>, ts_nanos: u64, data: &[u8], orig_len: u32) {
    u32le(out, (ts_nanos / 1_000_000_000) as u32);
    u32le(out, (ts_nanos % 1_000_000_000) as u32);
    u32le(out, data.len() as u32);
    u32le(out, orig_len);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_packet_block_layout() {
        let mut b = Vec::new();
        packet(&mut b, 2, 0x0000_0001_0000_0005, &[0xaa, 0xbb, 0xcc], 60);
        assert_eq!(b.len(), packet_len(3));
        #[rustfmt::skip]
        assert_eq!(b, [
            6, 0, 0, 0,  36, 0, 0, 0,     // type, total length
            2, 0, 0, 0,                   // interface id
            1, 0, 0, 0,  5, 0, 0, 0,      // timestamp high, low
            3, 0, 0, 0,  60, 0, 0, 0,     // captured, original length
            0xaa, 0xbb, 0xcc, 0,          // data, padded
            36, 0, 0, 0,                  // total length
        ]);
    }

    #[test]
    fn interface_block_options() {
        let mut b = Vec::new();
        interface(&mut b, 0, "eni-1", "vni=7");
        #[rustfmt::skip]
        assert_eq!(b, [
            1, 0, 0, 0,  56, 0, 0, 0,
            1, 0,  0, 0,  0, 0, 0, 0,                  // Ethernet, reserved, snaplen
            2, 0, 5, 0,  b'e', b'n', b'i', b'-', b'1', 0, 0, 0,
            3, 0, 5, 0,  b'v', b'n', b'i', b'=', b'7', 0, 0, 0,
            9, 0, 1, 0,  9, 0, 0, 0,                   // if_tsresol = 10^-9
            0, 0, 0, 0,
            56, 0, 0, 0,
        ][..]);
    }
}
