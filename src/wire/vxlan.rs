//! VXLAN header (RFC 7348 §5), as AWS Traffic Mirroring sends it on UDP 4789.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The I flag must be set. Reserved bits are ignored on receipt (RFC 7348 §5): real mirror traffic has
//! been seen with them set, and a peer that rejected it dropped real packets (docs/aws-facts.md §1).

use super::{Field, Result, WireError};

mod field {
    use super::Field;
    pub(super) const FLAGS: usize = 0;
    pub(super) const VNI: Field = 4..7;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The "VNI present" flag.
pub const FLAG_I: u8 = 0x08;
/// The IANA port for VXLAN, which AWS Traffic Mirroring always uses as destination.
pub const PORT: u16 = 4789;

/// A read/write view of a VXLAN header followed by its inner Ethernet frame.
///
/// After [`Packet::new_checked`] no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks; accessors may panic on short input. Prefer [`Packet::new_checked`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]; this is the constructor for untrusted bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the fixed header is present, which is all the accessors read.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte, reserved bits included.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (a valid VNI) is set.
    #[inline]
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VXLAN Network Identifier: the mirror session's VirtualNetworkId.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI; only the low 24 bits are kept.
    pub fn set_vni(&mut self, vni: u32) {
        let b = vni.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..4]);
    }

    /// Zeroes the reserved fields, as a sender must (RFC 7348 §5).
    pub fn clear_reserved(&mut self) {
        let buf = self.buffer.as_mut();
        buf[1..4].fill(0);
        buf[7] = 0;
    }
}

/// The meaningful content of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The VXLAN Network Identifier.
    pub vni: u32,
}

impl Repr {
    /// Parses a checked header. A header without the I flag is malformed; reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        if !packet.vni_valid() {
            return Err(WireError::Malformed);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// The length of the emitted header.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.clear_reserved();
        packet.set_flags(FLAG_I);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 5569041 (0x54FA11), as in a real AWS mirror capture, followed by two bytes of inner frame.
    static BYTES: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x54, 0xfa, 0x11, 0x00, 0xaa, 0xbb];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(packet.flags(), 0x08);
        assert!(packet.vni_valid());
        assert_eq!(packet.vni(), 5_569_041);
        assert_eq!(packet.payload(), &[0xaa, 0xbb]);
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 5_569_041 }));
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 10];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        Repr { vni: 5_569_041 }.emit(&mut packet);
        packet.into_inner()[8..].copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0xff];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 1 }));
    }

    #[test]
    fn missing_i_flag_is_malformed() {
        let bytes = [0x00, 0, 0, 0, 0, 0, 1, 0];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&packet), Err(WireError::Malformed));
    }

    #[test]
    fn short_buffer_is_refused() {
        assert_eq!(
            Packet::new_checked(&BYTES[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Packet::new_checked(&BYTES[..8])
            .unwrap()
            .payload()
            .is_empty());
    }
}
