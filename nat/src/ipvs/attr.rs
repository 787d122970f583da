//! Netlink attributes of IPVS messages: typed readers of attribute values, over the shared
//! walker and writer of [`podnet_links::nlattr`], none of which panics.

use netlink_packet_core::DecodeError;

// The walker and writer are podnet-links' (one for every crate); the typed readers below are
// IPVS's.
pub(crate) use podnet_links::nlattr::{AttrWriter, attrs};

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
