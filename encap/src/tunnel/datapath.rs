//! The tunnel's decisions, apart from any I/O: what to do with a packet read from the TUN
//! device (egress) and with a datagram received from a peer (ingress).
//!
//! Everything here works on byte slices and the [`PeerTable`]: no sockets, no file
//! descriptors, no clocks. The worker reads and writes; this module classifies, checks the
//! sender (anti-spoofing), decrements the TTL and builds the ICMP "net unreachable" answer.
//! (quinn-proto and quinn-udp split a QUIC endpoint the same way.)
#![forbid(unsafe_code)]

use super::DropReason;
use super::gso;
use super::sys::RecvMeta;
use super::table::{PeerTable, SenderCheck};
use super::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_UDP_L4, VnetHdr};
use crate::icmpv4::{self, UnreachableCode};
use crate::ip::IpProtocol;
use crate::ipv4;
use ipnet::Ipv4Net;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The most bytes [`net_unreachable`] writes: an IPv4 header, the ICMP header, and the
/// original packet's header (at most 60 bytes) with its first 8 data bytes.
pub(crate) const MAX_ICMP_LEN: usize = ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN + 60 + 8;

/// The TTL of the ICMP messages the tunnel sends.
const ICMP_TTL: u8 = 64;

/// How a packet bound for a peer is to be cut (the TUN device's offload request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segmentation {
    /// Send it as it is.
    None,
    /// TCP segmentation (TSO): cut into segments of `size` payload bytes.
    Tcp { size: usize },
    /// UDP segmentation (USO): cut into datagrams of `size` payload bytes.
    Udp { size: usize },
}

/// What to do with a packet read from the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Egress {
    /// Send the first `len` bytes (a whole IPv4 packet, its TTL already decremented and its
    /// checksum completed when the device asked for it) to `peer`.
    Forward {
        /// The peer's public address.
        peer: SocketAddrV4,
        /// The IPv4 packet's length (the device may hand over padding after it).
        len: usize,
        /// How to cut it.
        seg: Segmentation,
    },
    /// No peer's subnet holds the destination: count a [`DropReason::NoRoute`] drop and,
    /// when an ICMP source is set, answer with [`net_unreachable`] on the first `len` bytes.
    NoRoute {
        /// The IPv4 packet's length.
        len: usize,
    },
    /// Drop the packet for this reason.
    Drop(DropReason),
}

/// Classifies `pkt`, a packet read from the TUN device (after its virtio-net header, which
/// `hdr` holds; `VnetHdr::default()` without one). On [`Egress::Forward`], the packet's TTL
/// has been decremented, and a partial checksum the device left (NEEDS_CSUM) completed.
pub(crate) fn egress(pkt: &mut [u8], hdr: &VnetHdr, table: &PeerTable) -> Egress {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {}
        Some(6) => return Egress::Drop(DropReason::TunUnsupported),
        _ => return Egress::Drop(DropReason::TunMalformed),
    }
    let (len, dst) = match ipv4::Packet::new_checked(&*pkt) {
        Ok(p) => (usize::from(p.total_len()), p.dst()),
        Err(_) => return Egress::Drop(DropReason::TunMalformed),
    };
    let pkt = &mut pkt[..len];
    let Some(peer) = table.lookup(dst) else {
        return Egress::NoRoute { len };
    };
    if !decrement_ttl(pkt) {
        return Egress::Drop(DropReason::TtlExpired);
    }
    let seg = match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0
                && !gso::complete_checksum(
                    pkt,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )
            {
                return Egress::Drop(DropReason::TunMalformed);
            }
            Segmentation::None
        }
        GSO_TCPV4 => Segmentation::Tcp {
            size: usize::from(hdr.gso_size),
        },
        GSO_UDP_L4 => Segmentation::Udp {
            size: usize::from(hdr.gso_size),
        },
        _ => return Egress::Drop(DropReason::TunUnsupported),
    };
    Egress::Forward { peer, len, seg }
}

/// Decrements the TTL of the (checked) IPv4 packet `pkt`; `false` (and the packet left as
/// it was) when it would run out, that is when the packet must not be forwarded.
fn decrement_ttl(pkt: &mut [u8]) -> bool {
    let mut ip = ipv4::Packet::new_unchecked(pkt);
    ip.ttl() > 1 && ip.decrement_ttl().is_some()
}

/// Whether a router may answer `pkt` (a checked IPv4 packet) with an ICMP error (RFC 1812
/// 4.3.2.7): not a non-first fragment, not to or from a broadcast or multicast address,
/// not from 0.0.0.0, and not itself an ICMP error (only ICMP queries are answered).
pub(crate) fn may_answer_with_icmp(pkt: &[u8]) -> bool {
    let ip = ipv4::Packet::new_unchecked(pkt);
    if ip.check_len().is_err() {
        return false;
    }
    let (from, to) = (ip.src(), ip.dst());
    ip.frag_offset() == 0
        && !to.is_multicast()
        && !to.is_broadcast()
        && !from.is_unspecified()
        && !from.is_multicast()
        && !from.is_broadcast()
        && (ip.protocol() != IpProtocol::ICMP
            || pkt
                .get(ip.header_len())
                .is_some_and(|t| matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)))
}

/// Writes into `out` the ICMP "net unreachable" answer to `pkt` (a checked IPv4 packet no
/// peer takes), from `source` to the packet's source: an IPv4 packet holding the original
/// header and its first 8 data bytes. Returns its length, or `None` when the packet must
/// not be answered (see [`may_answer_with_icmp`]) or `out` is too short.
pub(crate) fn net_unreachable(pkt: &[u8], source: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    if !may_answer_with_icmp(pkt) {
        return None;
    }
    let ip = ipv4::Packet::new_unchecked(pkt);
    let original = &pkt[..(ip.header_len() + 8).min(pkt.len())];
    let icmp = icmpv4::Repr::DstUnreachable {
        code: UnreachableCode::NET,
        next_hop_mtu: 0,
        original,
    };
    let icmp_len = icmp.buffer_len();
    let total = ipv4::MIN_HEADER_LEN + icmp_len;
    let out = out.get_mut(..total)?;
    let (head, body) = out.split_at_mut(ipv4::MIN_HEADER_LEN);
    ipv4::Repr::new(source, ip.src(), IpProtocol::ICMP, ICMP_TTL, icmp_len)
        .emit(&mut ipv4::Packet::new_unchecked(head))
        .ok()?;
    icmp.emit(&mut icmpv4::Packet::new_unchecked(body));
    Some(total)
}

/// The inner packets a received datagram (or GRO batch of datagrams) holds: the count a
/// drop of the whole datagram is counted as.
pub(crate) fn packets_in(m: &RecvMeta) -> u64 {
    let stride = m.stride.max(1);
    m.len.div_ceil(stride).max(1) as u64
}

/// Checks a received datagram before its packets: it must be whole and non-empty, and come
/// from some peer's public address. Returns the sender, or why all of its
/// [`packets_in`] are dropped.
pub(crate) fn accept_datagram(m: &RecvMeta, table: &PeerTable) -> Result<Ipv4Addr, DropReason> {
    if m.truncated || m.len == 0 {
        return Err(DropReason::Malformed);
    }
    match m.src {
        Some(src) if table.is_known_sender(*src.ip()) => Ok(*src.ip()),
        _ => Err(DropReason::UnknownSender),
    }
}

/// Checks `pkt`, one inner packet of a datagram from `sender` (which may be followed by
/// padding): a valid IPv4 packet (length, version, header checksum) whose source lies in
/// the sender's subnets (anti-spoofing), whose destination lies in `local` (when set), and
/// whose TTL does not run out. Decrements its TTL and returns its length.
pub(crate) fn ingress(
    sender: Ipv4Addr,
    pkt: &mut [u8],
    table: &PeerTable,
    local: Option<Ipv4Net>,
) -> Result<usize, DropReason> {
    let (len, src, dst) = match ipv4::Packet::new_checked(&*pkt) {
        Ok(p) if p.validate().is_ok() => (usize::from(p.total_len()), p.src(), p.dst()),
        _ => return Err(DropReason::Malformed),
    };
    match table.check_sender(sender, src) {
        SenderCheck::Ok => {}
        SenderCheck::Spoofed => return Err(DropReason::Spoofed),
        SenderCheck::UnknownSender => return Err(DropReason::UnknownSender),
    }
    if local.is_some_and(|l| !l.contains(&dst)) {
        return Err(DropReason::NotLocal);
    }
    if !decrement_ttl(&mut pkt[..len]) {
        return Err(DropReason::TtlExpired);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use crate::tunnel::Peer;
    use crate::udp;

    const PEER2: &str = "198.18.0.2";
    const PEER3: &str = "198.18.0.3";

    fn table() -> PeerTable {
        PeerTable::new(
            &[
                Peer::new("10.244.2.0/24".parse().unwrap(), PEER2.parse().unwrap()),
                Peer::new("10.244.3.0/24".parse().unwrap(), PEER3.parse().unwrap()),
            ],
            1,
        )
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A UDP/IPv4 packet from `src` to `dst` with `ttl` and 8 payload bytes, checksums set.
    fn udp_packet(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
        let payload = *b"payload!";
        let mut v = vec![0u8; 20 + 8 + payload.len()];
        ipv4::Repr::new(ip(src), ip(dst), IpProtocol::UDP, ttl, 8 + payload.len())
            .emit(&mut ipv4::Packet::new_unchecked(&mut v[..20]))
            .unwrap();
        let repr = udp::Repr {
            src_port: 4000,
            dst_port: 5000,
            payload_len: payload.len(),
        };
        v[28..].copy_from_slice(&payload);
        let addrs = crate::IpPair::V4 {
            src: ip(src),
            dst: ip(dst),
        };
        repr.emit(&mut udp::Packet::new_unchecked(&mut v[20..]), &addrs, true)
            .unwrap();
        v
    }

    fn ttl_of(pkt: &[u8]) -> u8 {
        ipv4::Packet::new_checked(pkt).unwrap().ttl()
    }

    fn header_ok(pkt: &[u8]) -> bool {
        ipv4::Packet::new_checked(pkt).unwrap().verify_checksum()
    }

    #[test]
    fn egress_forwards_to_the_peer_of_the_destination_and_decrements_the_ttl() {
        let mut p = udp_packet("10.244.1.5", "10.244.3.9", 64);
        p.extend_from_slice(&[0xee; 6]); // padding after the packet
        let e = egress(&mut p, &VnetHdr::default(), &table());
        assert_eq!(
            e,
            Egress::Forward {
                peer: SocketAddrV4::new(ip(PEER3), 8285),
                len: 36,
                seg: Segmentation::None,
            }
        );
        assert_eq!(ttl_of(&p[..36]), 63);
        assert!(header_ok(&p[..36]));
    }

    #[test]
    fn egress_without_a_peer_is_no_route_and_leaves_the_packet_alone() {
        let mut p = udp_packet("10.244.1.5", "10.244.9.9", 64);
        let before = p.clone();
        assert_eq!(
            egress(&mut p, &VnetHdr::default(), &table()),
            Egress::NoRoute { len: 36 }
        );
        assert_eq!(p, before);
    }

    #[test]
    fn egress_drops_an_expiring_ttl_and_what_it_cannot_read() {
        let t = table();
        let none = VnetHdr::default();
        for ttl in [0, 1] {
            let mut p = udp_packet("10.244.1.5", "10.244.2.9", ttl);
            assert_eq!(
                egress(&mut p, &none, &t),
                Egress::Drop(DropReason::TtlExpired)
            );
        }
        let mut v6 = vec![0x60u8; 40];
        assert_eq!(
            egress(&mut v6, &none, &t),
            Egress::Drop(DropReason::TunUnsupported)
        );
        let full = udp_packet("10.244.1.5", "10.244.2.9", 64);
        for cut in [0, 1, 19, 20, 35] {
            let mut p = full[..cut].to_vec();
            assert_eq!(
                egress(&mut p, &none, &t),
                Egress::Drop(DropReason::TunMalformed),
                "{cut} bytes"
            );
        }
        let mut garbage = vec![0x12u8; 60];
        assert_eq!(
            egress(&mut garbage, &none, &t),
            Egress::Drop(DropReason::TunMalformed)
        );
    }

    #[test]
    fn egress_follows_the_offload_request() {
        let t = table();
        let mut tso = VnetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            gso_size: 1448,
            ..VnetHdr::default()
        };
        let mut p = udp_packet("10.244.1.5", "10.244.2.9", 64);
        let e = egress(&mut p, &tso, &t);
        assert!(matches!(
            e,
            Egress::Forward {
                seg: Segmentation::Tcp { size: 1448 },
                ..
            }
        ));
        tso.gso_type = GSO_UDP_L4;
        let mut p = udp_packet("10.244.1.5", "10.244.2.9", 64);
        assert!(matches!(
            egress(&mut p, &tso, &t),
            Egress::Forward {
                seg: Segmentation::Udp { size: 1448 },
                ..
            }
        ));
        tso.gso_type = 4; // TCPv6
        let mut p = udp_packet("10.244.1.5", "10.244.2.9", 64);
        assert_eq!(
            egress(&mut p, &tso, &t),
            Egress::Drop(DropReason::TunUnsupported)
        );
    }

    #[test]
    fn egress_completes_a_partial_checksum_and_refuses_a_bad_offset() {
        let t = table();
        let mut p = udp_packet("10.244.1.5", "10.244.2.9", 64);
        let want = p[26..28].to_vec();
        // What the kernel hands over: the pseudo-header sum, not inverted, in the field.
        let partial = checksum::pseudo_header_v4(ip("10.244.1.5"), ip("10.244.2.9"), 17, 16);
        p[26..28].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        assert!(matches!(
            egress(&mut p, &hdr, &t),
            Egress::Forward { len: 36, .. }
        ));
        assert_eq!(p[26..28], want[..]);
        let bad = VnetHdr {
            csum_start: 200,
            ..hdr
        };
        let mut p = udp_packet("10.244.1.5", "10.244.2.9", 64);
        assert_eq!(
            egress(&mut p, &bad, &t),
            Egress::Drop(DropReason::TunMalformed)
        );
    }

    #[test]
    fn net_unreachable_quotes_the_header_and_eight_bytes() {
        let p = udp_packet("10.244.1.5", "10.244.9.9", 64);
        let mut out = [0u8; MAX_ICMP_LEN];
        let n = net_unreachable(&p, ip("10.244.1.0"), &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 28);
        let outer = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.src(), ip("10.244.1.0"));
        assert_eq!(outer.dst(), ip("10.244.1.5"));
        assert_eq!(outer.protocol(), IpProtocol::ICMP);
        assert_eq!(outer.ttl(), ICMP_TTL);
        let icmp = icmpv4::Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(
            icmpv4::Repr::parse(&icmp).unwrap(),
            icmpv4::Repr::DstUnreachable {
                code: UnreachableCode::NET,
                next_hop_mtu: 0,
                original: &p[..28],
            }
        );
        assert_eq!(net_unreachable(&p, ip("10.244.1.0"), &mut out[..40]), None);
    }

    #[test]
    fn icmp_errors_are_not_answered_where_rfc_1812_forbids() {
        let answerable = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = udp_packet("10.244.1.5", "10.244.9.9", 64);
            f(&mut p);
            ipv4::Packet::new_unchecked(&mut p[..]).fill_checksum();
            may_answer_with_icmp(&p)
        };
        assert!(answerable(&|_| {}));
        let set_src = |a: &str| {
            let a = ip(a);
            move |p: &mut Vec<u8>| ipv4::Packet::new_unchecked(&mut p[..]).set_src(a)
        };
        let set_dst = |a: &str| {
            let a = ip(a);
            move |p: &mut Vec<u8>| ipv4::Packet::new_unchecked(&mut p[..]).set_dst(a)
        };
        assert!(!answerable(&set_src("0.0.0.0")));
        assert!(!answerable(&set_src("224.0.0.5")));
        assert!(!answerable(&set_src("255.255.255.255")));
        assert!(!answerable(&set_dst("239.1.2.3")));
        assert!(!answerable(&set_dst("255.255.255.255")));
        assert!(!answerable(&|p| {
            ipv4::Packet::new_unchecked(&mut p[..]).set_flags_and_frag_offset(false, false, 185)
        }));
        // ICMP: queries (echo request 8) are answered, errors (unreachable 3) are not.
        let icmp = |t: u8| {
            move |p: &mut Vec<u8>| {
                ipv4::Packet::new_unchecked(&mut p[..]).set_protocol(IpProtocol::ICMP);
                p[20] = t;
            }
        };
        assert!(answerable(&icmp(8)));
        assert!(!answerable(&icmp(3)));
        assert!(!answerable(&icmp(11)));
        assert!(!may_answer_with_icmp(&[0x45, 0]));
    }

    fn meta(src: Option<&str>, len: usize, stride: usize, truncated: bool) -> RecvMeta {
        RecvMeta {
            len,
            src: src.map(|s| SocketAddrV4::new(ip(s), 8285)),
            stride,
            truncated,
        }
    }

    #[test]
    fn datagrams_from_strangers_or_cut_short_are_refused_whole() {
        let t = table();
        assert_eq!(
            accept_datagram(&meta(Some(PEER2), 36, 36, false), &t),
            Ok(ip(PEER2))
        );
        assert_eq!(
            accept_datagram(&meta(Some("198.18.0.99"), 36, 36, false), &t),
            Err(DropReason::UnknownSender)
        );
        assert_eq!(
            accept_datagram(&meta(None, 36, 36, false), &t),
            Err(DropReason::UnknownSender)
        );
        assert_eq!(
            accept_datagram(&meta(Some(PEER2), 36, 36, true), &t),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            accept_datagram(&meta(Some(PEER2), 0, 0, false), &t),
            Err(DropReason::Malformed)
        );
        // A GRO batch of 3 x 1000 + 500 bytes is 4 packets; an empty one counts as one.
        assert_eq!(packets_in(&meta(Some(PEER2), 3500, 1000, false)), 4);
        assert_eq!(packets_in(&meta(Some(PEER2), 0, 0, false)), 1);
    }

    #[test]
    fn ingress_accepts_a_peer_packet_and_decrements_the_ttl() {
        let mut p = udp_packet("10.244.2.7", "10.244.1.5", 63);
        p.extend_from_slice(&[0; 4]);
        let local = Some("10.244.1.0/24".parse().unwrap());
        assert_eq!(ingress(ip(PEER2), &mut p, &table(), local), Ok(36));
        assert_eq!(ttl_of(&p[..36]), 62);
        assert!(header_ok(&p[..36]));
        let mut p = udp_packet("10.244.2.7", "10.244.1.5", 63);
        assert_eq!(ingress(ip(PEER2), &mut p, &table(), None), Ok(36));
    }

    #[test]
    fn ingress_drops_spoofed_stray_expired_and_malformed_packets() {
        let t = table();
        let local = Some("10.244.1.0/24".parse().unwrap());
        let check = |src: &str, dst: &str, ttl: u8, sender: &str| {
            let mut p = udp_packet(src, dst, ttl);
            let before = p.clone();
            let r = ingress(ip(sender), &mut p, &t, local);
            assert_eq!(p, before, "a dropped packet is left alone");
            r
        };
        // 10.244.3.0/24 belongs to PEER3, not PEER2.
        assert_eq!(
            check("10.244.3.7", "10.244.1.5", 64, PEER2),
            Err(DropReason::Spoofed)
        );
        assert_eq!(
            check("10.244.2.7", "10.244.1.5", 64, "198.18.0.77"),
            Err(DropReason::UnknownSender)
        );
        assert_eq!(
            check("10.244.2.7", "10.244.5.5", 64, PEER2),
            Err(DropReason::NotLocal)
        );
        assert_eq!(
            check("10.244.2.7", "10.244.1.5", 1, PEER2),
            Err(DropReason::TtlExpired)
        );
        let mut bad_sum = udp_packet("10.244.2.7", "10.244.1.5", 64);
        bad_sum[10] ^= 0xff;
        assert_eq!(
            ingress(ip(PEER2), &mut bad_sum, &t, local),
            Err(DropReason::Malformed)
        );
        let mut short = udp_packet("10.244.2.7", "10.244.1.5", 64);
        short.truncate(30);
        assert_eq!(
            ingress(ip(PEER2), &mut short, &t, local),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            ingress(ip(PEER2), &mut [], &t, local),
            Err(DropReason::Malformed)
        );
    }
}
