//! The raw pieces of netlink every podnet crate reads by hand: one walker over attributes
//! (type-length-value, 4-byte aligned), one over the messages of a datagram, the
//! extended-ack text of an `NLMSG_ERROR`, and the forced socket buffer sizes a netlink socket
//! needs for large dumps and batches. None of them panics on malformed bytes.
//!
//! Used by podnet-links and by podnet-nat (nftables, IPVS, conntrack); not a stable API.
//!
//! ```
//! use podnet_links::nlattr::{AttrWriter, attrs};
//!
//! let mut w = AttrWriter::new();
//! w.u32_ne(1, 7);
//! w.string(2, "eth0");
//! let buf = w.into_bytes();
//! let got: Vec<(u16, &[u8])> = attrs(&buf).map_while(Result::ok).collect();
//! assert_eq!(got, vec![(1, &7u32.to_ne_bytes()[..]), (2, &b"eth0\0"[..])]);
//! ```

use netlink_packet_core::{DecodeError, NetlinkHeader};

/// `NLA_F_NESTED`: the attribute holds attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`: the value is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// The attribute type without the nested and byte-order flags.
pub const NLA_TYPE_MASK: u16 = 0x3fff;
/// Bytes of an attribute header.
pub const NLA_HDRLEN: usize = 4;
/// Bytes of a netlink message header.
pub const NLMSG_HDRLEN: usize = 16;

const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: an acknowledgement or error carries extended-ack attributes.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// `n` rounded up to netlink's 4-byte alignment.
pub const fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `buf`: `(type without flags, value)` pairs. A malformed attribute (a
/// length below the header or past the end) ends the walk with an error; trailing bytes
/// shorter than a header are padding. For a walk that just stops at a malformed attribute:
/// `attrs(buf).map_while(Result::ok)`.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs {
        rest: buf,
        keep_flags: false,
    }
}

/// As [`attrs`], with the type's `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` flags kept, for
/// attributes that are written back as they were read.
pub fn attrs_with_flags(buf: &[u8]) -> Attrs<'_> {
    Attrs {
        rest: buf,
        keep_flags: true,
    }
}

/// The value of the first well-formed attribute of type `kind` (flags ignored) in `buf`.
pub fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf)
        .map_while(Result::ok)
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
}

/// The iterator of [`attrs`] and [`attrs_with_flags`].
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    keep_flags: bool,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let mut kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]);
        if !self.keep_flags {
            kind &= NLA_TYPE_MASK;
        }
        if len < NLA_HDRLEN || len > self.rest.len() {
            let err = DecodeError::from(format!(
                "attribute of type {} has length {len} with {} bytes left",
                kind & NLA_TYPE_MASK,
                self.rest.len()
            ));
            self.rest = &[];
            return Some(Err(err));
        }
        let value = &self.rest[NLA_HDRLEN..len];
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok((kind, value)))
    }
}

/// Writes attributes into a byte buffer (native byte order, padded).
#[derive(Debug, Default, Clone)]
pub struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    /// An empty buffer.
    pub fn new() -> AttrWriter {
        AttrWriter::default()
    }

    /// The attributes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn header(&mut self, kind: u16, value_len: usize) {
        // Attribute lengths are 16-bit: saturate rather than wrap if a caller passes more.
        let len = u16::try_from(NLA_HDRLEN + value_len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// An attribute with raw bytes as its value (`kind` as given, flags included).
    pub fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.header(kind, value.len());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    /// A native-order u16.
    pub fn u16_ne(&mut self, kind: u16, v: u16) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A native-order u32.
    pub fn u32_ne(&mut self, kind: u16, v: u32) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A native-order u64.
    pub fn u64_ne(&mut self, kind: u16, v: u64) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A NUL-terminated string.
    pub fn string(&mut self, kind: u16, s: &str) {
        self.header(kind, s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A nested attribute (`NLA_F_NESTED` set) whose content `f` writes.
    pub fn nested(&mut self, kind: u16, f: impl FnOnce(&mut AttrWriter)) {
        let mut inner = AttrWriter::new();
        f(&mut inner);
        self.header(kind | NLA_F_NESTED, inner.buf.len());
        self.buf.extend_from_slice(&inner.buf);
        self.pad();
    }
}

/// The netlink messages of a datagram: each header and its payload. A message whose length
/// is below the header or past the end ends the walk with an error.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, off: 0 }
}

/// The iterator of [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(NetlinkHeader, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.off..).unwrap_or(&[]);
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let u16_at = |i: usize| u16::from_ne_bytes([rest[i], rest[i + 1]]);
        let len = u32_at(0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.off = self.buf.len();
            return Some(Err(DecodeError::from(format!(
                "message length {len} with {} bytes left",
                rest.len()
            ))));
        }
        let mut hdr = NetlinkHeader::default();
        hdr.length = len as u32;
        hdr.message_type = u16_at(4);
        hdr.flags = u16_at(6);
        hdr.sequence_number = u32_at(8);
        hdr.port_number = u32_at(12);
        self.off += align(len);
        Some(Ok((hdr, &rest[NLMSG_HDRLEN..len])))
    }
}

/// The error code of an `NLMSG_ERROR` payload (0 for an acknowledgement, else a negated
/// errno), or `None` when the payload is too short to hold one.
pub fn error_code(body: &[u8]) -> Option<i32> {
    body.get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The extended-ack message (`NLMSGERR_ATTR_MSG`) of an `NLMSG_ERROR` payload with header
/// flags `flags`: after the code, the request's header (and its payload unless the ack is
/// capped), then attributes.
pub fn ext_ack_message(flags: u16, body: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = body
        .get(4..8)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(NLMSG_HDRLEN);
    let skip = 4 + if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align(echoed)
    };
    find(body.get(skip..)?, NLMSGERR_ATTR_MSG).map(cstr)
}

/// The extended-ack message of an `NLMSG_DONE` payload with header flags `flags`, which ends a
/// failed dump: after the code, attributes (no echoed request).
pub fn done_ext_ack_message(flags: u16, body: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    find(body.get(4..)?, NLMSGERR_ATTR_MSG).map(cstr)
}

/// A NUL-terminated string value (up to the first NUL, or all of it), invalid UTF-8 replaced.
pub fn cstr(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

pub use sockopt::{SocketBuffer, set_buffer_force};

mod sockopt {
    #![allow(unsafe_code)]

    use std::io;
    use std::os::fd::AsRawFd;

    /// Which buffer of a socket.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SocketBuffer {
        /// The receive buffer (`SO_RCVBUFFORCE`).
        Receive,
        /// The send buffer (`SO_SNDBUFFORCE`).
        Send,
    }

    /// Sets a socket's receive or send buffer with `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` (root
    /// only), which may exceed `net.core.rmem_max` / `wmem_max`: large dumps and nftables
    /// batches need it. Sizes above `c_int::MAX` are capped.
    pub fn set_buffer_force(
        sock: &impl AsRawFd,
        which: SocketBuffer,
        bytes: usize,
    ) -> io::Result<()> {
        let name = match which {
            SocketBuffer::Receive => libc::SO_RCVBUFFORCE,
            SocketBuffer::Send => libc::SO_SNDBUFFORCE,
        };
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the option value points at a c_int that lives across the call, and the
        // length passed is its size.
        let ret = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_attributes_end_the_walk_with_an_error() {
        // length 2 (below the header)
        let mut it = attrs(&[2, 0, 1, 0, 9, 9, 9, 9]);
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
        // length past the end
        assert!(attrs(&[8, 0, 1, 0, 1]).next().unwrap().is_err());
        // trailing padding is not an attribute
        assert!(attrs(&[0, 0, 0]).next().is_none());
        assert_eq!(find(&[8, 0, 1, 0], 1), None);
    }

    #[test]
    fn flags_are_cleared_or_kept() {
        let mut w = AttrWriter::new();
        w.nested(3, |w| w.u16_ne(1, 5));
        let b = w.into_bytes();
        assert_eq!(attrs(&b).next().unwrap().unwrap().0, 3);
        assert_eq!(
            attrs_with_flags(&b).next().unwrap().unwrap().0,
            3 | NLA_F_NESTED
        );
        let (_, inner) = attrs(&b).next().unwrap().unwrap();
        assert_eq!(find(inner, 1), Some(&5u16.to_ne_bytes()[..]));
    }

    #[test]
    fn messages_and_ext_ack() {
        // NLMSG_ERROR, flags ACK_TLVS | CAPPED, code -EEXIST, echoed header, MSG "exists".
        let mut body = (-17i32).to_ne_bytes().to_vec();
        body.extend_from_slice(&[0u8; 16]);
        let mut w = AttrWriter::new();
        w.string(NLMSGERR_ATTR_MSG, "exists");
        body.extend_from_slice(&w.into_bytes());
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&2u16.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_ACK_TLVS | NLM_F_CAPPED).to_ne_bytes());
        msg.extend_from_slice(&9u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        let two = [msg.clone(), msg].concat();
        let got: Vec<_> = messages(&two).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        let (hdr, body) = &got[0];
        assert_eq!((hdr.message_type, hdr.sequence_number), (2, 9));
        assert_eq!(error_code(body), Some(-17));
        assert_eq!(ext_ack_message(hdr.flags, body).as_deref(), Some("exists"));
        assert_eq!(ext_ack_message(0, body), None);
        // A length past the end is an error, then the walk ends.
        let mut it = messages(&two[..40]);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
