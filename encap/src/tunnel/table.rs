//! The peer table: which peer's subnet holds a destination (longest prefix match), and which
//! subnets a sender's public address may speak for (anti-spoofing).
//!
//! Built once per change of the peer set, then read-only: the workers share it through an
//! `Arc` and look up without locks or allocation.
#![forbid(unsafe_code)]

use super::Peer;
use std::net::{Ipv4Addr, SocketAddrV4};

/// One prefix length's subnets, sorted by network address.
#[derive(Debug, Clone)]
struct Level {
    mask: u32,
    /// (network address, index into `peers`), sorted, unique.
    nets: Vec<(u32, u32)>,
}

/// The verdict on a datagram's sender and its inner source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderCheck {
    /// The sender is a peer and the source lies in one of its subnets.
    Ok,
    /// No peer has this public address.
    UnknownSender,
    /// The sender is a peer, but the source lies outside its subnets.
    Spoofed,
}

/// The peers, indexed for the data path.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerTable {
    peers: Vec<Peer>,
    /// Longest prefix first.
    levels: Vec<Level>,
    /// (public address, index into `peers`), sorted by address.
    by_public: Vec<(u32, u32)>,
    /// Bumped on every change; workers compare it to refresh their copy.
    pub(crate) version: u64,
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

impl PeerTable {
    /// Indexes `peers`. A subnet listed twice keeps its last entry.
    pub(crate) fn new(peers: &[Peer], version: u64) -> PeerTable {
        let mut list: Vec<Peer> = Vec::with_capacity(peers.len());
        for p in peers {
            let p = Peer {
                subnet: p.subnet.trunc(),
                addr: p.addr,
            };
            match list.iter_mut().find(|q| q.subnet == p.subnet) {
                Some(q) => *q = p,
                None => list.push(p),
            }
        }
        let mut levels: Vec<Level> = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let m = mask(p.subnet.prefix_len());
            let net = u32::from(p.subnet.network());
            match levels.iter_mut().find(|l| l.mask == m) {
                Some(l) => l.nets.push((net, i as u32)),
                None => levels.push(Level {
                    mask: m,
                    nets: vec![(net, i as u32)],
                }),
            }
        }
        for l in &mut levels {
            l.nets.sort_unstable();
        }
        // Longest prefix (largest mask) first.
        levels.sort_unstable_by_key(|l| std::cmp::Reverse(l.mask));
        let mut by_public: Vec<(u32, u32)> = list
            .iter()
            .enumerate()
            .map(|(i, p)| (u32::from(*p.addr.ip()), i as u32))
            .collect();
        by_public.sort_unstable();
        PeerTable {
            peers: list,
            levels,
            by_public,
            version,
        }
    }

    /// The peers, one per subnet.
    pub(crate) fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer whose subnet holds `dst`, the longest prefix winning: a binary search per
    /// distinct prefix length (one, in a flannel network).
    #[inline]
    pub(crate) fn lookup(&self, dst: Ipv4Addr) -> Option<SocketAddrV4> {
        let d = u32::from(dst);
        for l in &self.levels {
            let key = d & l.mask;
            if let Ok(i) = l.nets.binary_search_by(|&(n, _)| n.cmp(&key)) {
                return Some(self.peers[l.nets[i].1 as usize].addr);
            }
        }
        None
    }

    /// Whether a datagram from `sender` may carry a packet from `src`: the sender must be a
    /// peer's public address and `src` must lie in one of that peer's subnets.
    #[inline]
    pub(crate) fn check_sender(&self, sender: Ipv4Addr, src: Ipv4Addr) -> SenderCheck {
        let s = u32::from(sender);
        let start = self.by_public.partition_point(|&(a, _)| a < s);
        let mut known = false;
        for &(a, i) in &self.by_public[start..] {
            if a != s {
                break;
            }
            known = true;
            if self.peers[i as usize].subnet.contains(&src) {
                return SenderCheck::Ok;
            }
        }
        if known {
            SenderCheck::Spoofed
        } else {
            SenderCheck::UnknownSender
        }
    }

    /// `true` when `sender` is some peer's public address.
    #[inline]
    pub(crate) fn is_known_sender(&self, sender: Ipv4Addr) -> bool {
        let s = u32::from(sender);
        self.by_public.binary_search_by(|&(a, _)| a.cmp(&s)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(net: &str, ip: &str) -> Peer {
        Peer::new(net.parse().unwrap(), ip.parse().unwrap())
    }

    #[test]
    fn longest_prefix_wins_and_misses_are_none() {
        let t = PeerTable::new(
            &[
                peer("10.244.0.0/16", "198.18.0.9"),
                peer("10.244.2.0/24", "198.18.0.2"),
                peer("10.244.2.128/25", "198.18.0.3"),
                peer("10.244.3.0/24", "198.18.0.4"),
            ],
            1,
        );
        let at = |d: &str| t.lookup(d.parse().unwrap()).map(|a| a.ip().to_string());
        assert_eq!(at("10.244.2.1").as_deref(), Some("198.18.0.2"));
        assert_eq!(at("10.244.2.200").as_deref(), Some("198.18.0.3"));
        assert_eq!(at("10.244.3.7").as_deref(), Some("198.18.0.4"));
        assert_eq!(at("10.244.9.9").as_deref(), Some("198.18.0.9"));
        assert_eq!(at("10.245.0.1"), None);
        assert_eq!(t.lookup(Ipv4Addr::UNSPECIFIED), None);
    }

    #[test]
    fn duplicate_subnet_keeps_the_last_and_host_bits_are_ignored() {
        let t = PeerTable::new(
            &[
                peer("10.244.2.0/24", "198.18.0.2"),
                peer("10.244.2.7/24", "198.18.0.5"),
            ],
            1,
        );
        assert_eq!(t.peers().len(), 1);
        assert_eq!(
            t.lookup("10.244.2.1".parse().unwrap()).unwrap().ip(),
            &"198.18.0.5".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn sender_checks() {
        let t = PeerTable::new(
            &[
                peer("10.244.2.0/24", "198.18.0.2"),
                peer("10.244.3.0/24", "198.18.0.3"),
                peer("10.244.4.0/24", "198.18.0.3"),
            ],
            1,
        );
        let c = |s: &str, src: &str| t.check_sender(s.parse().unwrap(), src.parse().unwrap());
        assert_eq!(c("198.18.0.2", "10.244.2.9"), SenderCheck::Ok);
        assert_eq!(c("198.18.0.2", "10.244.3.9"), SenderCheck::Spoofed);
        assert_eq!(c("198.18.0.3", "10.244.4.1"), SenderCheck::Ok);
        assert_eq!(c("198.18.0.3", "10.244.2.1"), SenderCheck::Spoofed);
        assert_eq!(c("198.18.0.7", "10.244.2.1"), SenderCheck::UnknownSender);
        assert!(t.is_known_sender("198.18.0.3".parse().unwrap()));
        assert!(!t.is_known_sender("198.18.0.4".parse().unwrap()));
    }

    #[test]
    fn many_peers_lookup_matches_a_linear_scan() {
        let peers: Vec<Peer> = (0..2000u32)
            .map(|i| {
                let plen = 20 + (i % 9) as u8;
                let net = Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) >> 8));
                Peer::new(
                    ipnet::Ipv4Net::new(net, plen).unwrap().trunc(),
                    Ipv4Addr::from(0xc612_0000 + i),
                )
            })
            .collect();
        let t = PeerTable::new(&peers, 1);
        for k in 0..5000u32 {
            let d = Ipv4Addr::from(0x0a00_0000 | (k.wrapping_mul(40503) << 4));
            let want = t
                .peers()
                .iter()
                .filter(|p| p.subnet.contains(&d))
                .max_by_key(|p| p.subnet.prefix_len())
                .map(|p| p.addr);
            assert_eq!(t.lookup(d), want, "{d}");
        }
    }
}
