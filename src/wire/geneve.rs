//! GENEVE header (RFC 8926 §3), as a Gateway Load Balancer delivers mirrored traffic on UDP 6081.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! A GWLB endpoint as mirror target sends protocol type IPv4 (0x0800): the payload is the mirror's own
//! IPv4/UDP/VXLAN packet, not an Ethernet frame (docs/aws-facts.md §2; Zeek assumed Ethernet and failed).
//! Options (GWLB puts its flow cookie and endpoint id there) are skipped, critical or not: vxtap is a
//! passive observer and a dropped mirror packet helps no one.

use super::{Field, Result, WireError};

mod field {
    use super::Field;
    pub(super) const VER_OPTLEN: usize = 0;
    pub(super) const FLAGS: usize = 1;
    pub(super) const PROTOCOL: Field = 2..4;
    pub(super) const VNI: Field = 4..7;
}

/// Length of the fixed part of the header.
pub const HEADER_LEN: usize = 8;
/// The IANA port for GENEVE, which GWLB uses.
pub const PORT: u16 = 6081;
/// Protocol type of an IPv4 payload (GWLB).
pub const PROTO_IPV4: u16 = 0x0800;
/// Protocol type of an IPv6 payload.
pub const PROTO_IPV6: u16 = 0x86dd;
/// Protocol type of an Ethernet payload ("Transparent Ethernet Bridging").
pub const PROTO_ETHERNET: u16 = 0x6558;

/// A view of a GENEVE header, its options and payload. After [`Packet::new_checked`] no accessor panics.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]; this is the constructor for untrusted bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the fixed header and all the options it announces are present.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version; only 0 is defined.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }

    /// The length of the options in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }

    /// The header length, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// The O bit: a control packet rather than data.
    #[inline]
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & 0x80 != 0
    }

    /// The C bit: critical options are present.
    #[inline]
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & 0x40 != 0
    }

    /// The EtherType of the payload.
    #[inline]
    pub fn protocol(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The 24-bit virtual network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The raw options.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_fixed(&mut self, options_len: usize, protocol: u16, vni: u32) {
        let buf = self.buffer.as_mut();
        buf[field::VER_OPTLEN] = ((options_len / 4) as u8) & 0x3f;
        buf[field::FLAGS] = 0;
        buf[field::PROTOCOL].copy_from_slice(&protocol.to_be_bytes());
        buf[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..4]);
        buf[7] = 0;
    }
}

/// The meaningful content of a GENEVE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// EtherType of the payload.
    pub protocol: u16,
    /// Virtual network identifier (GWLB sets 0).
    pub vni: u32,
    /// Length of the options in bytes, a multiple of 4 up to 252.
    pub options_len: usize,
}

impl Repr {
    /// Parses a checked header; versions other than 0 are malformed (RFC 8926 §3.4).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        if packet.version() != 0 {
            return Err(WireError::Malformed);
        }
        Ok(Repr {
            protocol: packet.protocol(),
            vni: packet.vni(),
            options_len: packet.options_len(),
        })
    }

    /// The length of the emitted header, options included.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len
    }

    /// Writes the fixed header; the caller fills the `options_len` bytes of options after it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_fixed(self.options_len, self.protocol, self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // GWLB-style: one 8-byte option (class 0x0108, type 1, length 1 word), protocol IPv4, VNI 0.
    static BYTES: [u8; 18] = [
        0x02, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, // fixed header
        0x01, 0x08, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef, // option
        0x45, 0x00, // payload
    ];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.options_len(), 8);
        assert!(!packet.oam() && !packet.critical());
        assert_eq!(packet.protocol(), PROTO_IPV4);
        assert_eq!(packet.vni(), 0);
        assert_eq!(packet.options(), &BYTES[8..16]);
        assert_eq!(packet.payload(), &[0x45, 0x00]);
        assert_eq!(
            Repr::parse(&packet),
            Ok(Repr {
                protocol: PROTO_IPV4,
                vni: 0,
                options_len: 8
            })
        );
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 18];
        let repr = Repr {
            protocol: PROTO_IPV4,
            vni: 0,
            options_len: 8,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf[8..].copy_from_slice(&BYTES[8..]);
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn options_past_the_end_are_truncation() {
        assert_eq!(
            Packet::new_checked(&BYTES[..12]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn unknown_version_is_malformed() {
        let mut bytes = BYTES;
        bytes[0] |= 0x40;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(WireError::Malformed));
    }
}
