//! The one error type of the codecs.
#![forbid(unsafe_code)]

use std::fmt;

/// The protocol layer an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// Ethernet II, with or without an 802.1Q tag.
    Ethernet,
    /// ARP for IPv4 over Ethernet.
    Arp,
    /// IPv4.
    Ipv4,
    /// IPv6 and its extension headers.
    Ipv6,
    /// UDP.
    Udp,
    /// ICMPv4.
    Icmpv4,
    /// VXLAN.
    Vxlan,
    /// flannel's UDP encapsulation.
    Flannel,
    /// A [`PacketBuf`](crate::PacketBuf) or an encapsulation parameter.
    Buffer,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Udp => "udp",
            Layer::Icmpv4 => "icmpv4",
            Layer::Vxlan => "vxlan",
            Layer::Flannel => "flannel-udp",
            Layer::Buffer => "buffer",
        })
    }
}

/// What went wrong while parsing or building a packet.
///
/// Every variant names the [`Layer`]; `Malformed` also names the offending field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header, or before the length a header field announces.
    #[error("{layer}: truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// The layer being parsed.
        layer: Layer,
        /// Bytes the layer needs.
        needed: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{layer}: malformed {field}")]
    Malformed {
        /// The layer being parsed.
        layer: Layer,
        /// The name of the offending field.
        field: &'static str,
    },
    /// A checksum does not verify.
    #[error("{layer}: bad checksum")]
    BadChecksum {
        /// The layer whose checksum failed.
        layer: Layer,
    },
    /// A valid packet that these codecs do not handle (another protocol, a fragment, ...).
    #[error("{layer}: unsupported {what}")]
    Unsupported {
        /// The layer being parsed or built.
        layer: Layer,
        /// What is not supported.
        what: &'static str,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[inline]
pub(crate) fn truncated(layer: Layer, needed: usize, have: usize) -> Error {
    Error::Truncated {
        layer,
        needed,
        have,
    }
}

#[inline]
pub(crate) fn malformed(layer: Layer, field: &'static str) -> Error {
    Error::Malformed { layer, field }
}

#[inline]
pub(crate) fn unsupported(layer: Layer, what: &'static str) -> Error {
    Error::Unsupported { layer, what }
}

/// `Ok` when `have` bytes hold the `needed` ones, else [`Error::Truncated`] for `layer`.
#[inline]
pub(crate) fn need(layer: Layer, needed: usize, have: usize) -> Result<()> {
    if have < needed {
        return Err(truncated(layer, needed, have));
    }
    Ok(())
}
