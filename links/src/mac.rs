//! More of [`MacAddr`] (the type itself is in `types.rs`): the tests the wire codecs of
//! podnet-encap, which use this same type, need.

use crate::MacAddr;

impl MacAddr {
    /// `true` for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// `true` when the group bit is set (multicast and broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_and_multicast() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        let group = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(group.is_multicast() && !group.is_broadcast());
        let unicast = MacAddr([0x02, 0, 0, 0, 0, 1]);
        assert!(!unicast.is_multicast() && !unicast.is_broadcast());
        assert!(!MacAddr::ZERO.is_multicast());
    }
}
