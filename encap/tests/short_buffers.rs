//! Every codec's `Repr::parse` checks the length first: a buffer wrapped with `new_unchecked`
//! that is too short for what its header promises gives an error, never a panic. One test
//! per codec; each cuts a valid message at every shorter length.

use podnet_encap::{
    ArpPacket, ArpRepr, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpPair, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr, VxlanPacket, VxlanRepr,
};
use std::net::Ipv4Addr;

/// Asserts that `parse` accepts `whole` and refuses each of its proper prefixes.
fn refuses_every_prefix<E: std::fmt::Debug, R: std::fmt::Debug>(
    codec: &str,
    whole: &[u8],
    parse: impl Fn(&[u8]) -> Result<R, E>,
) {
    assert!(parse(whole).is_ok(), "{codec}: the whole message parses");
    for cut in 0..whole.len() {
        let r = parse(&whole[..cut]);
        assert!(
            r.is_err(),
            "{codec}: {cut} of {} bytes gave {r:?}",
            whole.len()
        );
    }
}

const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 3);

#[test]
fn ethernet_short_frames_are_errors() {
    let mut untagged = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    refuses_every_prefix("ethernet", &untagged, |b| {
        EthernetRepr::parse(&EthernetFrame::new_unchecked(b))
    });
    // An 802.1Q tag promises 4 more bytes: 14 to 17 bytes are short too.
    untagged.truncate(12);
    let tagged = [&untagged[..], &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]].concat();
    refuses_every_prefix("ethernet (tagged)", &tagged, |b| {
        EthernetRepr::parse(&EthernetFrame::new_unchecked(b))
    });
}

#[test]
fn arp_short_packets_are_errors() {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&SRC.octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&DST.octets());
    refuses_every_prefix("arp", &p, |b| ArpRepr::parse(&ArpPacket::new_unchecked(b)));
}

#[test]
fn ipv4_short_packets_are_errors() {
    let mut p = vec![0u8; 20 + 12];
    Ipv4Repr::new(SRC, DST, IpProtocol::UDP, 64, 12)
        .emit(&mut Ipv4Packet::new_unchecked(&mut p[..]))
        .unwrap();
    refuses_every_prefix("ipv4", &p, |b| {
        Ipv4Repr::parse(&Ipv4Packet::new_unchecked(b))
    });
    refuses_every_prefix("ipv4 validate", &p, |b| {
        Ipv4Packet::new_unchecked(b).validate()
    });
}

#[test]
fn ipv6_short_packets_are_errors() {
    let mut p = vec![0x60, 0, 0, 0, 0, 4, 17, 64];
    p.extend_from_slice(&[0xfd; 32]);
    p.extend_from_slice(&[1, 2, 3, 4]);
    refuses_every_prefix("ipv6", &p, |b| {
        Ipv6Repr::parse(&Ipv6Packet::new_unchecked(b))
    });
}

#[test]
fn udp_short_datagrams_are_errors() {
    let addrs = IpPair::V4 { src: SRC, dst: DST };
    let mut d = vec![0u8; 8 + 5];
    d[8..].copy_from_slice(b"hello");
    UdpRepr {
        src_port: 4000,
        dst_port: 8285,
        payload_len: 5,
    }
    .emit(&mut UdpPacket::new_unchecked(&mut d[..]), &addrs, true)
    .unwrap();
    refuses_every_prefix("udp", &d, |b| {
        UdpRepr::parse(&UdpPacket::new_unchecked(b), &addrs)
    });
    refuses_every_prefix("udp unverified", &d, |b| {
        UdpRepr::parse_unverified(&UdpPacket::new_unchecked(b))
    });
}

#[test]
fn icmpv4_short_messages_are_errors() {
    let data = b"ping";
    let repr = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq: 1,
        data,
    };
    let mut m = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut m[..]));
    // Cuts inside the header fail the length check; cuts in the data fail the checksum.
    refuses_every_prefix("icmpv4", &m, |b| {
        Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(b)).map(|_| ())
    });
}

#[test]
fn vxlan_short_headers_are_errors() {
    let h = [0x08, 0, 0, 0, 0, 0, 0x2a, 0];
    refuses_every_prefix("vxlan", &h, |b| {
        VxlanRepr::parse(&VxlanPacket::new_unchecked(b))
    });
}
