//! The VXLAN network identifier, one type for the VXLAN device (here) and the VXLAN header
//! codec of podnet-encap.

use std::fmt;

/// A 24-bit VXLAN network identifier (VNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI.
    pub const MAX: u32 = 0x00ff_ffff;

    /// A VNI; `None` when `v` needs more than 24 bits.
    pub const fn new(v: u32) -> Option<Vni> {
        if v <= Self::MAX { Some(Vni(v)) } else { None }
    }

    /// The VNI made of the low 24 bits of `v` (what a 24-bit field on the wire holds).
    pub const fn from_low_bits(v: u32) -> Vni {
        Vni(v & Self::MAX)
    }

    /// The VNI's value.
    pub const fn get(&self) -> u32 {
        self.0
    }
}

impl From<Vni> for u32 {
    fn from(v: Vni) -> u32 {
        v.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_four_bits() {
        assert_eq!(Vni::new(1).map(|v| v.get()), Some(1));
        assert_eq!(Vni::new(Vni::MAX).map(u32::from), Some(0xff_ffff));
        assert_eq!(Vni::new(1 << 24), None);
        assert_eq!(Vni::from_low_bits(0x0100_002a).get(), 42);
        assert_eq!(Vni::new(4096).unwrap().to_string(), "4096");
    }
}
