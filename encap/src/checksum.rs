//! The Internet checksum (RFC 1071), pseudo-headers, and incremental update (RFC 1624).
//!
//! Sums are ones' complement sums folded to 16 bits, not yet complemented: combine partial sums
//! with [`combine`] and complement the result to get the value that goes on the wire.
#![forbid(unsafe_code)]

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

/// Sums `data` as big-endian 16-bit words into a wide accumulator (not folded).
#[inline(always)]
fn accumulate(data: &[u8]) -> u64 {
    // The ones' complement sum commutes with byte swapping (RFC 1071, section 2(B)): sum
    // native-order 32-bit words, which the compiler vectorizes, and swap once at the end.
    fold_native(accumulate_native(data)).into()
}

#[inline(always)]
fn word64(c: &[u8]) -> u128 {
    u128::from(u64::from_ne_bytes([
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
    ]))
}

#[inline(always)]
fn accumulate_native(data: &[u8]) -> u64 {
    // 64-bit words into 128-bit accumulators: one add and one add-with-carry per 8 bytes, two
    // independent chains.
    let (mut a, mut b) = (0u128, 0u128);
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        a += word64(&c[..8]);
        b += word64(&c[8..]);
    }
    let mut acc = a + b;
    let mut rest = chunks.remainder();
    if rest.len() >= 8 {
        acc += word64(rest);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        acc += u128::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u128::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        // An odd last byte is the high byte of a big-endian word padded with zero.
        acc += u128::from(u16::from_ne_bytes([*last, 0]));
    }
    let acc = (acc & u128::from(u64::MAX)) + (acc >> 64);
    let acc = (acc & u128::from(u64::MAX)) + (acc >> 64);
    acc as u64
}

/// Folds a native-order accumulator and converts the 16-bit sum to big-endian word order.
#[inline(always)]
fn fold_native(acc: u64) -> u16 {
    u16::from_be(fold(acc))
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
