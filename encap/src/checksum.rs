//! The Internet checksum (RFC 1071), pseudo-headers, and incremental update (RFC 1624).
//!
//! Sums are ones' complement sums folded to 16 bits, not yet complemented: combine partial sums
//! with [`combine`] and complement the result to get the value that goes on the wire.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide accumulator into a 16-bit ones' complement sum.
#[inline(always)]
fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

#[inline(always)]
fn accumulate(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Adding the two 32-bit halves keeps the sum exact for any buffer under 2^32 words.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for c in &mut words {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The ones' complement sum of `data` as big-endian 16-bit words (an odd last byte is padded
/// with zero). When combining sums of several pieces, only the last piece may have odd length.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    fold(accumulate(data))
}

/// Combines partial sums into one.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header for a transport checksum.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(protocol)
            + u64::from(length),
    )
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1) for a transport checksum.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    fold(
        accumulate(&src.octets())
            + accumulate(&dst.octets())
            + u64::from(next_header)
            + u64::from(length >> 16)
            + u64::from(length & 0xffff),
    )
}

/// The checksum field value for a header whose sum (with the checksum field zeroed) is `sum`.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// RFC 1624 equation 3: the new checksum after one 16-bit word of the covered data changed
/// from `old_word` to `new_word`, without summing the data again.
///
/// Equals a full recompute (see the property tests) whenever some covered word other than the
/// changed one is nonzero, as in every IPv4 header (the version field). Only for data that is
/// all zero after the change could the two differ, in the representation of zero.
#[inline]
pub fn update(checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old_word) + u64::from(new_word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn matches_naive_sum_for_all_lengths() {
        let buf: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for n in 0..buf.len() {
            assert_eq!(data(&buf[..n]), naive(&buf[..n]), "length {n}");
        }
        let ff = vec![0xffu8; 1000];
        assert_eq!(data(&ff), naive(&ff));
    }

    proptest::proptest! {
        #[test]
        fn fast_sum_equals_naive(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            proptest::prop_assert_eq!(data(&bytes), naive(&bytes));
        }

        #[test]
        fn incremental_update_equals_recompute(
            first in 1..=u16::MAX,
            mut words in proptest::collection::vec(proptest::num::u16::ANY, 1..40),
            index in proptest::num::usize::ANY,
            new_word in proptest::num::u16::ANY,
        ) {
            let bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            words.insert(0, first);
            let before = finish(data(&bytes(&words)));
            let i = 1 + index % (words.len() - 1);
            let old = words[i];
            words[i] = new_word;
            let after = finish(data(&bytes(&words)));
            proptest::prop_assert_eq!(update(before, old, new_word), after);
        }
    }
}
