//! The virtio-net header (`struct virtio_net_hdr`) that a TUN device opened with
//! IFF_VNET_HDR puts in front of every packet: offload metadata for segmentation (GSO) and
//! checksums.
//!
//! The fields are in the host's byte order (a legacy virtio header on a little-endian host, or
//! any host without TUNSETVNETLE/BE).
#![forbid(unsafe_code)]

/// The checksum from `csum_start` to the end still has to be computed and stored at
/// `csum_start + csum_offset` (VIRTIO_NET_HDR_F_NEEDS_CSUM).
pub(crate) const F_NEEDS_CSUM: u8 = 1;

/// Not a GSO packet.
pub(crate) const GSO_NONE: u8 = 0;
/// TCP over IPv4, to be cut into `gso_size`-byte segments.
pub(crate) const GSO_TCPV4: u8 = 1;
/// UDP over IPv4 or IPv6, to be cut into `gso_size`-byte datagrams (USO).
pub(crate) const GSO_UDP_L4: u8 = 5;
/// The ECN bit of `gso_type`: the TCP stream uses ECN (CWR on the first segment only).
pub(crate) const GSO_ECN: u8 = 0x80;

/// The length of the header without the `num_buffers` field; TUN devices use 10 or (with
/// TUNSETVNETHDRSZ) more, where the extra bytes are zero.
pub(crate) const MIN_LEN: usize = 10;

/// A parsed virtio-net header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    pub(crate) hdr_len: u16,
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
}

impl VnetHdr {
    /// Reads the first [`MIN_LEN`] bytes; `None` when `b` is shorter.
    #[inline]
    pub(crate) fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..MIN_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Writes the header into `b` and zeroes the rest of it (`num_buffers`); `b` is the
    /// device's header size (at least [`MIN_LEN`] bytes, otherwise nothing is written).
    #[inline]
    pub(crate) fn emit(&self, b: &mut [u8]) {
        if b.len() < MIN_LEN {
            return;
        }
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b[MIN_LEN..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_short_input() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut b = [0xffu8; 12];
        h.emit(&mut b);
        assert_eq!(&b[10..], &[0, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(VnetHdr::parse(&b[..9]), None);
        let mut short = [7u8; 4];
        h.emit(&mut short);
        assert_eq!(short, [7; 4]);
    }
}
