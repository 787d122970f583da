//! Property tests: every `Repr` survives `emit` then `parse`, every parser survives arbitrary
//! bytes, and the incremental checksum update equals a full recompute.

use podnet_encap::icmpv4::UnreachableCode;
use podnet_encap::ipv4::Options;
use podnet_encap::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn vlan() -> impl Strategy<Value = Option<VlanTag>> {
    proptest::option::of(
        (0u8..8, any::<bool>(), 0u16..0xfff).prop_map(|(pcp, dei, vid)| VlanTag { pcp, dei, vid }),
    )
}

fn ethernet_repr() -> impl Strategy<Value = EthernetRepr> {
    (mac(), mac(), vlan(), 0x0600u16..=0xffff)
        .prop_filter("not a VLAN EtherType", |t| t.3 != 0x8100)
        .prop_map(|(dst, src, vlan, t)| EthernetRepr {
            dst,
            src,
            vlan,
            ethertype: EtherType(t),
        })
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn ip_pair() -> impl Strategy<Value = IpPair> {
    prop_oneof![
        (v4(), v4()).prop_map(|(src, dst)| IpPair::V4 { src, dst }),
        (v6(), v6()).prop_map(|(src, dst)| IpPair::V6 { src, dst }),
    ]
}

/// Well-formed options: NOPs, router alerts and timestamps-like blobs, padded with EOL.
fn options() -> impl Strategy<Value = Options> {
    vec(
        prop_oneof![
            Just(vec![1u8]),
            Just(vec![0x94, 4, 0, 0]),
            (2u8..10, any::<u8>()).prop_map(|(len, fill)| {
                let mut v = vec![0x44, len];
                v.resize(usize::from(len), fill);
                v
            }),
        ],
        0..4,
    )
    .prop_map(|parts| {
        let mut bytes: Vec<u8> = parts.concat();
        bytes.truncate(40);
        // Cut at an option boundary: rebuild until the next option would not fit.
        let mut ok = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let n = if bytes[i] == 1 {
                1
            } else {
                usize::from(bytes[i + 1])
            };
            if i + n > bytes.len() || ok.len() + n > 40 {
                break;
            }
            ok.extend_from_slice(&bytes[i..i + n]);
            i += n;
        }
        while ok.len() % 4 != 0 {
            ok.push(0);
        }
        Options::new(&ok).expect("well-formed options")
    })
}

fn ipv4_repr() -> impl Strategy<Value = Ipv4Repr> {
    (
        (v4(), v4(), any::<u8>(), any::<u8>(), 0u8..64, 0u8..4),
        (any::<u16>(), any::<bool>(), any::<bool>(), 0u16..0x2000),
        options(),
        0usize..300,
    )
        .prop_map(
            |((src, dst, p, ttl, dscp, ecn), (ident, df, mf, off), options, payload_len)| {
                Ipv4Repr {
                    src,
                    dst,
                    protocol: IpProtocol(p),
                    ttl,
                    dscp,
                    ecn,
                    ident,
                    dont_frag: df,
                    more_frags: mf,
                    frag_offset: off,
                    options,
                    payload_len,
                }
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = Ipv6Repr> {
    (
        v6(),
        v6(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
        0usize..300,
    )
        .prop_map(|(src, dst, nh, hl, tc, fl, len)| Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol(nh),
            hop_limit: hl,
            traffic_class: tc,
            flow_label: fl,
            payload_len: len,
        })
}

fn arp_repr() -> impl Strategy<Value = ArpRepr> {
    (
        prop_oneof![Just(1u16), Just(2u16)],
        mac(),
        v4(),
        mac(),
        v4(),
    )
        .prop_map(
            |(op, sender_mac, sender_ip, target_mac, target_ip)| ArpRepr {
                operation: podnet_encap::arp::Operation(op),
                sender_mac,
                sender_ip,
                target_mac,
                target_ip,
            },
        )
}

fn vxlan_repr() -> impl Strategy<Value = VxlanRepr> {
    (
        0u32..=Vni::MAX,
        proptest::option::of((any::<u16>(), any::<bool>(), any::<bool>())),
    )
        .prop_map(|(vni, gbp)| VxlanRepr {
            vni: Vni::new(vni).unwrap(),
            gbp: gbp.map(|(policy_id, dont_learn, policy_applied)| Gbp {
                policy_id,
                dont_learn,
                policy_applied,
            }),
        })
}

/// Checks that no accessor of any view panics on `data` once `new_checked` accepted it, and
/// that no `parse` panics.
fn poke_everything(data: &[u8]) {
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.vlan(), f.ethertype(), f.payload());
        let _ = EthernetRepr::parse(&f);
    }
    if let Ok(p) = ArpPacket::new_checked(data) {
        let _ = (
            p.sender_hardware_addr(),
            p.target_protocol_addr(),
            p.operation(),
        );
        let _ = ArpRepr::parse(&p);
    }
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (
            p.options(),
            p.payload(),
            p.src(),
            p.is_fragment(),
            p.verify_checksum(),
        );
        let _ = Ipv4Repr::parse(&p);
    }
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (p.payload(), p.flow_label(), p.upper_layer());
        let _ = Ipv6Repr::parse(&p);
    }
    let pairs = [
        IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        },
        IpPair::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::UNSPECIFIED,
        },
    ];
    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = p.payload();
        for a in &pairs {
            let _ = UdpRepr::parse(&p, a);
        }
    }
    if let Ok(p) = Icmpv4Packet::new_checked(data) {
        let _ = (p.data(), p.echo_seq(), p.next_hop_mtu());
        let _ = Icmpv4Repr::parse(&p);
    }
    if let Ok(p) = VxlanPacket::new_checked(data) {
        let _ = (p.vni(), p.gbp(), p.payload());
        let _ = VxlanRepr::parse(&p);
    }
    let _ = podnet_encap::vxlan::parse_payload(data);
    let _ = podnet_encap::flannel::parse_payload(data);
    let _ = podnet_encap::ipv6::skip_extension_headers(IpProtocol::HOP_BY_HOP, data);
    for port in [4789, 8472, 8285] {
        if let Ok(d) = decapsulate_vxlan(data, port) {
            let _ = (d.outer(), d.outer_addrs(), d.outer_ports());
        }
        let _ = decapsulate_flannel(data, port);
    }
    let _ = flow_hash(data, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ethernet_roundtrip(r in ethernet_repr(), payload in vec(any::<u8>(), 0..64)) {
        let mut buf = PacketBuf::from_payload(18, &payload);
        r.prepend(&mut buf);
        let f = EthernetFrame::new_checked(buf.as_slice()).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&f).unwrap(), r);
        prop_assert_eq!(f.payload(), &payload[..]);
    }

    #[test]
    fn arp_roundtrip(r in arp_repr()) {
        let mut out = [0u8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn ipv4_roundtrip(r in ipv4_repr()) {
        let mut out = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])).unwrap();
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv6_roundtrip(r in ipv6_repr()) {
        let mut out = vec![0u8; 40 + r.payload_len];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..])).unwrap();
        let p = Ipv6Packet::new_checked(&out[..]).unwrap();
        prop_assert_eq!(Ipv6Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn udp_roundtrip(
        src_port in any::<u16>(),
        dst_port in 1u16..,
        payload in vec(any::<u8>(), 0..300),
        addrs in ip_pair(),
        checksum in any::<bool>(),
    ) {
        let r = UdpRepr { src_port, dst_port, payload_len: payload.len() };
        let mut buf = PacketBuf::from_payload(8, &payload);
        r.prepend(&mut buf, &addrs, checksum).unwrap();
        let p = UdpPacket::new_checked(buf.as_slice()).unwrap();
        prop_assert_eq!(UdpRepr::parse(&p, &addrs).unwrap(), r);
        prop_assert_eq!(p.payload(), &payload[..]);
        if checksum || matches!(addrs, IpPair::V6 { .. }) {
            prop_assert_ne!(p.checksum(), 0);
        }
    }

    #[test]
    fn icmpv4_roundtrip(
        kind in 0u8..3,
        a in any::<u16>(),
        b in any::<u16>(),
        code in 0u8..16,
        data in vec(any::<u8>(), 0..100),
    ) {
        let r = match kind {
            0 => Icmpv4Repr::EchoRequest { ident: a, seq: b, data: &data },
            1 => Icmpv4Repr::EchoReply { ident: a, seq: b, data: &data },
            _ => Icmpv4Repr::DstUnreachable {
                code: UnreachableCode(code),
                next_hop_mtu: b,
                original: &data,
            },
        };
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        let p = Icmpv4Packet::new_checked(&out[..]).unwrap();
        prop_assert_eq!(Icmpv4Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn vxlan_roundtrip(r in vxlan_repr()) {
        let mut out = [0u8; 8];
        r.emit(&mut VxlanPacket::new_unchecked(&mut out[..]));
        prop_assert_eq!(VxlanRepr::parse(&VxlanPacket::new_checked(&out[..]).unwrap()).unwrap(), r);
    }

    #[test]
    fn flannel_payload_roundtrip(r in ipv4_repr(), padding in 0usize..8) {
        let mut out = vec![0u8; r.buffer_len() + r.payload_len + padding];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..])).unwrap();
        let (parsed, packet) = podnet_encap::flannel::parse_payload(&out).unwrap();
        prop_assert_eq!(parsed, r);
        prop_assert_eq!(packet.len(), out.len() - padding);
    }

    #[test]
    fn vxlan_frame_roundtrip(
        inner_eth in ethernet_repr(),
        inner_payload in vec(any::<u8>(), 0..200),
        macs in (mac(), mac()),
        addrs in ip_pair(),
        vlan in vlan(),
        vx in vxlan_repr(),
        udp_checksum in any::<bool>(),
        port in prop_oneof![Just(4789u16), Just(8472u16)],
        seed in any::<u32>(),
    ) {
        let mut buf = PacketBuf::from_payload(VxlanEncap::HEADROOM + 18, &inner_payload);
        inner_eth.prepend(&mut buf);
        let inner = buf.as_slice().to_vec();
        let mut underlay = Underlay::new(macs.0, macs.1, addrs);
        underlay.vlan = vlan;
        underlay.udp_checksum = udp_checksum;
        let mut enc = VxlanEncap::new(underlay, vx.vni);
        enc.gbp = vx.gbp;
        enc.dst_port = port;
        enc.hash_seed = seed;
        let headroom = buf.headroom();
        enc.encapsulate(&mut buf).unwrap();
        // Everything fit in the headroom: the inner frame did not move.
        prop_assert_eq!(buf.headroom() + buf.len(), headroom + inner.len());
        let d = decapsulate_vxlan(buf.as_slice(), port).unwrap();
        prop_assert_eq!(d.inner, &inner[..]);
        prop_assert_eq!(d.vxlan, vx);
        prop_assert_eq!(d.outer().eth.src, macs.0);
        prop_assert_eq!(d.outer().eth.vlan, vlan);
        prop_assert_eq!(d.outer().ip.addrs(), addrs);
        prop_assert_eq!(d.outer_ports().0, enc.src_port(&inner));
        prop_assert_eq!(d.outer(), podnet_encap::frame::parse_outer(buf.as_slice(), port).unwrap().0);
        prop_assert_eq!(d.outer_addrs(), addrs);
        prop_assert!((32768..61000).contains(&d.outer_ports().0));
        prop_assert!(decapsulate_vxlan(buf.as_slice(), port ^ 1).is_err());
    }

    #[test]
    fn flannel_frame_roundtrip(
        inner in ipv4_repr(),
        macs in (mac(), mac()),
        addrs in ip_pair(),
        udp_checksum in any::<bool>(),
    ) {
        let mut bytes = vec![0x5a; inner.buffer_len() + inner.payload_len];
        inner.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..])).unwrap();
        let mut buf = PacketBuf::from_payload(FlannelEncap::HEADROOM, &bytes);
        let mut underlay = Underlay::new(macs.0, macs.1, addrs);
        underlay.udp_checksum = udp_checksum;
        FlannelEncap::new(underlay).encapsulate(&mut buf).unwrap();
        let d = decapsulate_flannel(buf.as_slice(), 8285).unwrap();
        prop_assert_eq!(d.inner, &bytes[..]);
        prop_assert_eq!(d.inner_ip, inner);
        prop_assert_eq!((d.outer.udp.src_port, d.outer.udp.dst_port), (8285, 8285));
    }

    #[test]
    fn ttl_decrement_equals_recompute(r in ipv4_repr(), ttl in 1u8..) {
        let r = Ipv4Repr { ttl, ..r };
        let mut a = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut a[..])).unwrap();
        let mut p = Ipv4Packet::new_checked(&mut a[..]).unwrap();
        prop_assert_eq!(p.decrement_ttl(), Some(ttl - 1));
        let incremental = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(incremental, p.checksum());
    }

    #[test]
    fn flow_hash_is_the_same_both_ways(
        a in v4(), b in v4(), pa in any::<u16>(), pb in any::<u16>(), seed in any::<u32>(),
    ) {
        let frame = |src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16| {
            let mut buf = PacketBuf::from_payload(64, b"x");
            let pair = IpPair::V4 { src, dst };
            UdpRepr { src_port: sp, dst_port: dp, payload_len: 0 }
                .prepend(&mut buf, &pair, false).unwrap();
            Ipv4Repr::new(src, dst, IpProtocol::UDP, 64, 0).prepend(&mut buf).unwrap();
            EthernetRepr {
                dst: MacAddr([2, 0, 0, 0, 0, 1]),
                src: MacAddr([2, 0, 0, 0, 0, 2]),
                vlan: None,
                ethertype: EtherType::IPV4,
            }
            .prepend(&mut buf);
            buf.as_slice().to_vec()
        };
        prop_assert_eq!(
            flow_hash(&frame(a, b, pa, pb), seed),
            flow_hash(&frame(b, a, pb, pa), seed)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn no_parser_panics_on_arbitrary_bytes(data in vec(any::<u8>(), 0..200)) {
        poke_everything(&data);
    }

    /// Arbitrary bytes behind plausible headers get further into the parsers.
    #[test]
    fn no_parser_panics_on_mutated_frames(
        flips in vec((0usize..200, any::<u8>()), 0..6),
        cut in 0usize..200,
        inner in vec(any::<u8>(), 14..100),
        v6 in any::<bool>(),
    ) {
        let addrs = if v6 {
            IpPair::V6 { src: Ipv6Addr::LOCALHOST, dst: Ipv6Addr::LOCALHOST }
        } else {
            IpPair::V4 { src: Ipv4Addr::LOCALHOST, dst: Ipv4Addr::LOCALHOST }
        };
        let mut buf = PacketBuf::from_payload(VxlanEncap::HEADROOM, &inner);
        let u = Underlay::new(MacAddr::ZERO, MacAddr::BROADCAST, addrs);
        VxlanEncap::new(u, Vni::new(7).unwrap()).encapsulate(&mut buf).unwrap();
        let mut bytes = buf.as_slice().to_vec();
        for (at, x) in flips {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        bytes.truncate(cut.max(1));
        poke_everything(&bytes);
        for start in [14usize, 18, 34, 42, 54, 62] {
            if let Some(rest) = bytes.get(start..) {
                poke_everything(rest);
            }
        }
    }
}
