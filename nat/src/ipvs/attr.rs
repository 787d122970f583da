//! Netlink attributes (type-length-value, 4-byte aligned), written and read without panics.

use netlink_packet_core::DecodeError;

/// `NLA_F_NESTED`: the attribute holds attributes.
const NLA_F_NESTED: u16 = 0x8000;
/// The attribute type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLA_HDRLEN: usize = 4;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes attributes into a byte buffer.
#[derive(Debug, Default, Clone)]
pub(crate) struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    pub(crate) fn new() -> AttrWriter {
        AttrWriter::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn header(&mut self, kind: u16, value_len: usize) {
        // Values are bounded by the types written here (at most a few hundred bytes), so the
        // length always fits; saturate rather than wrap if a caller ever passes more.
        let len = u16::try_from(NLA_HDRLEN + value_len).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }

    /// An attribute with raw bytes as its value.
    pub(crate) fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.header(kind, value.len());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    pub(crate) fn u16_ne(&mut self, kind: u16, v: u16) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    pub(crate) fn u32_ne(&mut self, kind: u16, v: u32) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    pub(crate) fn u64_ne(&mut self, kind: u16, v: u64) {
        self.bytes(kind, &v.to_ne_bytes());
    }

    /// A NUL-terminated string.
    pub(crate) fn string(&mut self, kind: u16, s: &str) {
        self.header(kind, s.len() + 1);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    /// A nested attribute whose content `f` writes.
    pub(crate) fn nested(&mut self, kind: u16, f: impl FnOnce(&mut AttrWriter)) {
        let mut inner = AttrWriter::new();
        f(&mut inner);
        self.header(kind | NLA_F_NESTED, inner.buf.len());
        self.buf.extend_from_slice(&inner.buf);
        self.pad();
    }
}

/// Iterates over the attributes in `buf`: `(type, value)` pairs, the type without its flags.
/// A malformed attribute ends the iteration with an error.
pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

/// The iterator of [`attrs`].
#[derive(Debug, Clone)]
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Trailing padding shorter than a header is not an attribute.
        if self.rest.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            let err = DecodeError::from(format!(
                "attribute of type {kind} has length {len} with {} bytes left",
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

fn exact<const N: usize>(what: &str, value: &[u8]) -> Result<[u8; N], DecodeError> {
    value
        .get(..N)
        .filter(|_| value.len() == N)
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| {
            DecodeError::from(format!("{what}: expected {N} bytes, got {}", value.len()))
        })
}

pub(crate) fn u16_ne(what: &str, value: &[u8]) -> Result<u16, DecodeError> {
    exact::<2>(what, value).map(u16::from_ne_bytes)
}

pub(crate) fn u16_be(what: &str, value: &[u8]) -> Result<u16, DecodeError> {
    exact::<2>(what, value).map(u16::from_be_bytes)
}

pub(crate) fn u32_ne(what: &str, value: &[u8]) -> Result<u32, DecodeError> {
    exact::<4>(what, value).map(u32::from_ne_bytes)
}

/// A counter the kernel sends as u32 or u64 depending on the attribute set.
pub(crate) fn counter(what: &str, value: &[u8]) -> Result<u64, DecodeError> {
    match value.len() {
        4 => u32_ne(what, value).map(u64::from),
        8 => exact::<8>(what, value).map(u64::from_ne_bytes),
        n => Err(DecodeError::from(format!(
            "{what}: expected 4 or 8 bytes, got {n}"
        ))),
    }
}

/// A NUL-terminated (or unterminated) string.
pub(crate) fn string(what: &str, value: &[u8]) -> Result<String, DecodeError> {
    let text = value.split(|b| *b == 0).next().unwrap_or(&[]);
    String::from_utf8(text.to_vec()).map_err(|_| DecodeError::from(format!("{what}: not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_aligned_attributes_and_reads_them_back() {
        let mut w = AttrWriter::new();
        w.u16_ne(1, 2);
        w.string(6, "wrr");
        w.nested(2, |n| {
            n.bytes(3, &[10, 96, 0, 10]);
            n.u32_ne(4, 7);
        });
        let bytes = w.into_bytes();
        assert_eq!(bytes.len() % 4, 0);
        // u16: header 4 + 2, padded to 8.
        assert_eq!(&bytes[..8], &[6, 0, 1, 0, 2, 0, 0, 0]);
        let got: Vec<_> = attrs(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (6, &b"wrr\0"[..]));
        assert_eq!(got[2].0, 2, "the nested flag is masked off");
        let inner: Vec<_> = attrs(got[2].1).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            inner,
            vec![(3, &[10, 96, 0, 10][..]), (4, &7u32.to_ne_bytes()[..])]
        );
    }

    #[test]
    fn malformed_attributes_are_errors() {
        // Length larger than the buffer.
        let bad = [200u8, 0, 1, 0, 0, 0];
        let mut it = attrs(&bad);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        // Length smaller than a header.
        assert!(attrs(&[2, 0, 1, 0]).next().unwrap().is_err());
        // Fewer bytes than a header: nothing.
        assert!(attrs(&[1, 2]).next().is_none());
        assert!(u32_ne("x", &[1, 2]).is_err());
        assert!(counter("x", &[1, 2, 3]).is_err());
        assert_eq!(counter("x", &5u64.to_ne_bytes()).unwrap(), 5);
        assert!(string("x", &[0xff, 0xfe]).is_err());
        assert_eq!(string("x", b"rr\0\0").unwrap(), "rr");
    }
}
