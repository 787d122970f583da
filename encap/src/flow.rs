//! The outer UDP source port of a tunnel, from a hash of the inner flow, as Linux picks it.
//!
//! Linux's `udp_flow_src_port()` takes the inner packet's flow hash (addresses, protocol and
//! ports, ordered so both directions of a connection hash alike), or when there is none a jhash
//! of the inner Ethernet addresses, folds it with `hash ^= hash << 16`, and scales it into the
//! local port range. Equal flows get equal ports (so the underlay's ECMP keeps a flow's
//! packets in order) and different flows spread over the range. The kernel seeds its hash with
//! a boot-time secret, so the exact numbers differ from the kernel's; the seed here is
//! [`VxlanEncap::hash_seed`](crate::VxlanEncap::hash_seed).
#![forbid(unsafe_code)]

use crate::ethernet::{EtherType, Frame};
use crate::ip::IpProtocol;
use crate::{ipv4, ipv6};

/// A range of UDP source ports, `min..max` (the end is excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// The lowest port.
    pub min: u16,
    /// One past the highest port.
    pub max: u16,
}

impl PortRange {
    /// Linux's default local port range (`net.ipv4.ip_local_port_range` = 32768 60999), which
    /// VXLAN devices use when no `srcport` range is given.
    pub const LINUX_DEFAULT: PortRange = PortRange {
        min: 32768,
        max: 61000,
    };

    /// Maps a flow hash into the range as `udp_flow_src_port()` does. An empty range yields
    /// `min`.
    #[inline]
    pub fn pick(&self, hash: u32) -> u16 {
        let hash = hash ^ (hash << 16);
        let span = u64::from(self.max.saturating_sub(self.min));
        // (hash * span) >> 32 < span <= 65535, so the sum stays within u16.
        self.min + ((u64::from(hash) * span) >> 32) as u16
    }
}

impl Default for PortRange {
    fn default() -> PortRange {
        PortRange::LINUX_DEFAULT
    }
}

#[inline(always)]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

/// Bob Jenkins' lookup3 hash of 32-bit words, as the kernel's `jhash2()`.
pub fn jhash2(words: &[u32], initval: u32) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add((words.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = words;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        mix(&mut a, &mut b, &mut c);
        k = &k[3..];
    }
    match *k {
        [x, y, z] => {
            c = c.wrapping_add(z);
            b = b.wrapping_add(y);
            a = a.wrapping_add(x);
            final_mix(&mut a, &mut b, &mut c);
        }
        [x, y] => {
            b = b.wrapping_add(y);
            a = a.wrapping_add(x);
            final_mix(&mut a, &mut b, &mut c);
        }
        [x] => {
            a = a.wrapping_add(x);
            final_mix(&mut a, &mut b, &mut c);
        }
        _ => {}
    }
    c
}

fn ports(protocol: IpProtocol, l4: &[u8]) -> u32 {
    match protocol {
        IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP | IpProtocol::UDPLITE
            if l4.len() >= 4 =>
        {
            u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]])
        }
        _ => 0,
    }
}

/// Orders (src, dst) and their ports so that both directions of a flow give the same key.
fn consistent<A: Ord + Copy>(src: A, dst: A, ports: u32) -> (A, A, u32) {
    let (sp, dp) = ((ports >> 16) as u16, ports as u16);
    if dst < src || (dst == src && dp < sp) {
        (dst, src, (u32::from(dp) << 16) | u32::from(sp))
    } else {
        (src, dst, ports)
    }
}

/// The flow hash of an inner Ethernet frame: its IPv4 or IPv6 addresses, protocol and ports
/// (ports only for unfragmented TCP, UDP, SCTP and UDP-Lite), or its Ethernet addresses and
/// EtherType for anything else. Never fails: unreadable frames hash whatever bytes they have.
pub fn flow_hash(frame: &[u8], seed: u32) -> u32 {
    let Ok(eth) = Frame::new_checked(frame) else {
        let mut w = [0u32; 4];
        for (i, b) in frame.iter().take(16).enumerate() {
            w[i / 4] |= u32::from(*b) << (24 - 8 * (i % 4));
        }
        return jhash2(&w, seed);
    };
    let payload = eth.payload();
    match eth.ethertype() {
        EtherType::IPV4 => {
            if let Ok(ip) = ipv4::Packet::new_checked(payload) {
                let p = if ip.is_fragment() {
                    0
                } else {
                    ports(ip.protocol(), ip.payload())
                };
                let (s, d, p) = consistent(u32::from(ip.src()), u32::from(ip.dst()), p);
                return jhash2(&[s, d, p, u32::from(ip.protocol().0)], seed);
            }
        }
        EtherType::IPV6 => {
            if let Ok(ip) = ipv6::Packet::new_checked(payload) {
                let (proto, l4) = match ip.upper_layer() {
                    Ok((proto, range)) => (proto, payload.get(range).unwrap_or(&[])),
                    Err(_) => (ip.next_header(), &[][..]),
                };
                let (s, d, p) =
                    consistent(u128::from(ip.src()), u128::from(ip.dst()), ports(proto, l4));
                let mut w = [0u32; 10];
                for i in 0..4 {
                    w[i] = (s >> (96 - 32 * i)) as u32;
                    w[4 + i] = (d >> (96 - 32 * i)) as u32;
                }
                w[8] = p;
                w[9] = u32::from(proto.0);
                return jhash2(&w, seed);
            }
        }
        _ => {}
    }
    // No flow: the kernel's fallback, jhash of the two Ethernet addresses keyed by EtherType.
    let d = eth.dst().0;
    let s = eth.src().0;
    let w = [
        u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        u32::from_be_bytes([d[4], d[5], s[0], s[1]]),
        u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
    ];
    jhash2(&w, seed ^ u32::from(eth.ethertype().0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash2_matches_the_kernel() {
        // Computed with the kernel's jhash2() (include/linux/jhash.h) in a C harness.
        let k = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(jhash2(&k[..0], 0), 0xdeadbeef);
        assert_eq!(jhash2(&k[..1], 0), 0x72a82a9b);
        assert_eq!(jhash2(&k[..3], 0), 0xa46158f5);
        assert_eq!(jhash2(&k[..4], 7), 0xbcb62b19);
        assert_eq!(jhash2(&k, 0x1234), 0x15afa99a);
    }

    #[test]
    fn pick_stays_in_range() {
        let r = PortRange::LINUX_DEFAULT;
        for h in [0, 1, u32::MAX, 0x8000_0000, 0xffff, 0x1234_5678] {
            let p = r.pick(h);
            assert!((32768..61000).contains(&p), "{p}");
        }
        assert_eq!(PortRange { min: 5, max: 5 }.pick(77), 5);
        assert_eq!(PortRange { min: 9, max: 3 }.pick(77), 9);
    }
}
