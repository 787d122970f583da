//! flannel's UDP backend: a raw IPv4 packet as the whole UDP payload, no header of its own,
//! on port 8285.
#![forbid(unsafe_code)]

use crate::buf::PacketBuf;
use crate::error::{Layer, Result, malformed, truncated};
use crate::frame::{Outer, Underlay, parse_outer};
use crate::ipv4;
use std::ops::Range;

/// flannel's default UDP port.
pub const PORT: u16 = 8285;

/// Parses a flannel-UDP payload (what a UDP socket receives): a whole, valid IPv4 packet.
///
/// Returns its header and the packet (without any bytes after its total length). Refuses
/// payloads that are not IPv4, or whose header checksum fails.
pub fn parse_payload(payload: &[u8]) -> Result<(ipv4::Repr, &[u8])> {
    let p = ipv4::Packet::new_checked(payload).map_err(|e| match e {
        crate::Error::Truncated { needed, have, .. } => truncated(Layer::Flannel, needed, have),
        crate::Error::Malformed { field, .. } => malformed(Layer::Flannel, field),
        other => other,
    })?;
    let repr = ipv4::Repr::parse(&p)?;
    let end = usize::from(p.total_len());
    Ok((repr, &payload[..end]))
}

/// flannel-UDP encapsulation parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlannelEncap {
    /// The outer addressing.
    pub underlay: Underlay,
    /// The source port (flanneld sends from the socket it listens on: [`PORT`]).
    pub src_port: u16,
    /// The destination port ([`PORT`]).
    pub dst_port: u16,
}

impl FlannelEncap {
    /// Headroom that lets [`FlannelEncap::encapsulate`] prepend every header without copying.
    pub const HEADROOM: usize = Underlay::MAX_HEADER_LEN;

    /// Encapsulation from and to port 8285.
    pub fn new(underlay: Underlay) -> FlannelEncap {
        FlannelEncap {
            underlay,
            src_port: PORT,
            dst_port: PORT,
        }
    }

    /// Prepends UDP, IP and Ethernet headers to the IPv4 packet in `buf`.
    ///
    /// Fails when `buf` does not hold a whole IPv4 packet.
    pub fn encapsulate(&self, buf: &mut PacketBuf) -> Result<()> {
        let p = ipv4::Packet::new_checked(buf.as_slice())?;
        let len = usize::from(p.total_len());
        buf.truncate(len);
        self.underlay.prepend(buf, self.src_port, self.dst_port)
    }
}

/// A decapsulated flannel-UDP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlannelDecap<'a> {
    /// The outer headers.
    pub outer: Outer,
    /// The inner IPv4 header.
    pub inner_ip: ipv4::Repr,
    /// The inner IPv4 packet.
    pub inner: &'a [u8],
    /// Where `inner` lies in the outer frame.
    pub inner_range: Range<usize>,
}

/// Validates a whole flannel-UDP frame sent to UDP `port` and returns its headers and the
/// inner IPv4 packet.
pub fn decapsulate(frame: &[u8], port: u16) -> Result<FlannelDecap<'_>> {
    let (outer, range) = parse_outer(frame, port)?;
    let payload = frame
        .get(range.clone())
        .ok_or_else(|| truncated(Layer::Flannel, range.end, frame.len()))?;
    let (inner_ip, inner) = parse_payload(payload)?;
    Ok(FlannelDecap {
        outer,
        inner_ip,
        inner,
        inner_range: range.start..range.start + inner.len(),
    })
}
