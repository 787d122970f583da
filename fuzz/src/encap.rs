//! podnet-encap's wire codecs: each target parses arbitrary bytes, reads every field of what it
//! accepted, and checks that emitting the parsed header and parsing it again gives the same
//! header.
//!
//! Checksums stop random bytes early, so several targets use the first input byte as a mode:
//! when its low bit is set, the harness first repairs the checksums with podnet's own fill
//! functions, which lets the fuzzer reach the code behind them.

use podnet_encap::*;
use std::hint::black_box;

fn mode(data: &[u8]) -> (bool, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (m & 1 == 1, rest),
        None => (false, data),
    }
}

/// Ethernet II and 802.1Q.
pub fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        return;
    };
    black_box((
        f.dst(),
        f.src(),
        f.vlan(),
        f.ethertype(),
        f.header_len(),
        f.payload(),
    ));
    let Ok(r) = EthernetRepr::parse(&f) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    let again = EthernetRepr::parse(&EthernetFrame::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
}

/// ARP.
pub fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else {
        return;
    };
    black_box((
        p.hardware_type(),
        p.protocol_type(),
        p.operation(),
        p.sender_hardware_addr(),
        p.sender_protocol_addr(),
        p.target_hardware_addr(),
        p.target_protocol_addr(),
    ));
    let Ok(r) = ArpRepr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
    assert_eq!(out[..], data[..28]);
    let again = ArpRepr::parse(&ArpPacket::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
}

/// IPv4, including the TTL decrement.
pub fn ipv4(data: &[u8]) {
    let (fix, data) = mode(data);
    let mut buf = data.to_vec();
    let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) else {
        return;
    };
    if fix {
        p.fill_checksum();
    }
    let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
    black_box((
        p.version(),
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.is_fragment(),
        p.ttl(),
        p.protocol(),
        p.src(),
        p.dst(),
        p.options(),
        p.payload(),
    ));
    let Ok(r) = Ipv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len() + r.payload_len];
    r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]))
        .unwrap();
    let again = Ipv4Repr::parse(&Ipv4Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
    let mut q = Ipv4Packet::new_checked(&mut out[..]).unwrap();
    if q.decrement_ttl().is_some() {
        assert!(q.verify_checksum());
    }
}

/// IPv6 and its extension headers.
pub fn ipv6(data: &[u8]) {
    let Ok(p) = Ipv6Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.traffic_class(),
        p.flow_label(),
        p.hop_limit(),
        p.src(),
        p.dst(),
    ));
    if let Ok((_, range)) = p.upper_layer() {
        black_box(&data[range]);
    }
    let r = Ipv6Repr::parse(&p).unwrap();
    let mut out = vec![0u8; r.buffer_len() + r.payload_len];
    r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]))
        .unwrap();
    let again = Ipv6Repr::parse(&Ipv6Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
}

/// UDP over IPv4 and IPv6 (addresses taken from the input).
pub fn udp(data: &[u8]) {
    let (fix, data) = mode(data);
    if data.len() < 32 {
        return;
    }
    let (a, rest) = data.split_at(32);
    let mut b16 = [0u8; 16];
    b16.copy_from_slice(&a[..16]);
    let v6 = a[31] & 1 == 1;
    let addrs = if v6 {
        let mut d = [0u8; 16];
        d.copy_from_slice(&a[16..]);
        IpPair::V6 {
            src: b16.into(),
            dst: d.into(),
        }
    } else {
        IpPair::V4 {
            src: [a[0], a[1], a[2], a[3]].into(),
            dst: [a[4], a[5], a[6], a[7]].into(),
        }
    };
    let mut buf = rest.to_vec();
    let Ok(mut p) = UdpPacket::new_checked(&mut buf[..]) else {
        return;
    };
    if fix {
        p.fill_checksum(&addrs);
    }
    let p = UdpPacket::new_checked(&buf[..]).unwrap();
    black_box((
        p.src_port(),
        p.dst_port(),
        p.len(),
        p.checksum(),
        p.payload(),
    ));
    let Ok(r) = UdpRepr::parse(&p, &addrs) else {
        return;
    };
    let mut out = p.into_inner()[..8 + r.payload_len].to_vec();
    r.emit(&mut UdpPacket::new_unchecked(&mut out[..]), &addrs, true)
        .unwrap();
    let again = UdpRepr::parse(&UdpPacket::new_checked(&out[..]).unwrap(), &addrs).unwrap();
    assert_eq!(r, again);
}

/// ICMPv4.
pub fn icmpv4(data: &[u8]) {
    let (fix, data) = mode(data);
    let mut buf = data.to_vec();
    let Ok(mut p) = Icmpv4Packet::new_checked(&mut buf[..]) else {
        return;
    };
    if fix {
        p.fill_checksum();
    }
    let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
    black_box((
        p.msg_type(),
        p.code(),
        p.echo_ident(),
        p.echo_seq(),
        p.next_hop_mtu(),
    ));
    let Ok(r) = Icmpv4Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len()];
    r.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
    let again = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
}

/// VXLAN (the UDP payload a socket receives).
pub fn vxlan(data: &[u8]) {
    let Ok(p) = VxlanPacket::new_checked(data) else {
        return;
    };
    black_box((p.flags(), p.vni(), p.gbp(), p.payload()));
    let Ok((r, inner)) = podnet_encap::vxlan::parse_payload(data) else {
        return;
    };
    assert_eq!(inner.len() + 8, data.len());
    let mut out = [0u8; 8];
    r.emit(&mut VxlanPacket::new_unchecked(&mut out[..]));
    let again = VxlanRepr::parse(&VxlanPacket::new_checked(&out[..]).unwrap()).unwrap();
    assert_eq!(r, again);
}

/// flannel-UDP (the UDP payload a socket receives).
pub fn flannel(data: &[u8]) {
    let (fix, data) = mode(data);
    let mut buf = data.to_vec();
    if fix && let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) {
        p.fill_checksum();
    }
    let Ok((r, inner)) = podnet_encap::flannel::parse_payload(&buf) else {
        return;
    };
    assert_eq!(inner.len(), r.buffer_len() + r.payload_len);
}

/// Repairs the outer checksums of a would-be tunnel frame and returns it.
fn repair(frame: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return;
    };
    let l3 = eth.header_len();
    let ethertype = eth.ethertype();
    let l3buf = &mut frame[l3..];
    match ethertype {
        EtherType::IPV4 => {
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut l3buf[..]) else {
                return;
            };
            ip.fill_checksum();
            let addrs = ip.addrs();
            if let Ok(mut u) = UdpPacket::new_checked(ip.payload_mut()) {
                u.fill_checksum(&addrs);
            }
        }
        EtherType::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(&l3buf[..]) else {
                return;
            };
            let addrs = ip.addrs();
            let Ok((_, range)) = ip.upper_layer() else {
                return;
            };
            if let Ok(mut u) = UdpPacket::new_checked(&mut l3buf[range]) {
                u.fill_checksum(&addrs);
            }
        }
        _ => {}
    }
}

/// Whole-frame VXLAN and flannel-UDP decapsulation.
pub fn decap(data: &[u8]) {
    let (fix, data) = mode(data);
    let mut buf = data.to_vec();
    if fix {
        repair(&mut buf);
    }
    for port in [4789, 8472] {
        if let Ok(d) = decapsulate_vxlan(&buf, port) {
            assert_eq!(&buf[d.inner_range.clone()], d.inner);
            let (outer, range) = podnet_encap::frame::parse_outer(&buf, port).unwrap();
            assert_eq!(d.outer(), outer);
            assert_eq!(d.outer_addrs(), outer.ip.addrs());
            assert_eq!(d.outer_ports(), (outer.udp.src_port, outer.udp.dst_port));
            assert_eq!(range.start + 8, d.inner_range.start);
            assert!(d.inner.len() >= 14);
            black_box(flow_hash(d.inner, 7));
        }
    }
    if let Ok(d) = decapsulate_flannel(&buf, 8285) {
        assert_eq!(&buf[d.inner_range.clone()], d.inner);
    }
    black_box(flow_hash(&buf, 0));
}

/// Valid inputs for each target, built with podnet-encap, to start the corpora from.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mac_a = MacAddr([2, 0, 0, 0, 0, 1]);
    let mac_b = MacAddr([2, 0, 0, 0, 0, 2]);
    let pods = IpPair::V4 {
        src: [10, 244, 1, 2].into(),
        dst: [10, 244, 2, 3].into(),
    };
    let inner_ip = |buf: &mut PacketBuf| {
        UdpRepr {
            src_port: 40000,
            dst_port: 53,
            payload_len: 0,
        }
        .prepend(buf, &pods, true)
        .unwrap();
        let mut ip = Ipv4Repr::new(
            [10, 244, 1, 2].into(),
            [10, 244, 2, 3].into(),
            IpProtocol::UDP,
            64,
            0,
        );
        ip.options = podnet_encap::ipv4::Options::new(&[0x94, 4, 0, 0]).unwrap();
        ip.prepend(buf).unwrap();
    };
    let mut ipv4 = PacketBuf::from_payload(128, b"seed payload");
    inner_ip(&mut ipv4);
    let udp_seg = ipv4.as_slice()[24..].to_vec();
    let mut frame = ipv4.clone();
    EthernetRepr {
        dst: mac_b,
        src: mac_a,
        vlan: None,
        ethertype: EtherType::IPV4,
    }
    .prepend(&mut frame);
    let v4 = IpPair::V4 {
        src: [198, 18, 0, 1].into(),
        dst: [198, 18, 0, 2].into(),
    };
    let v6 = IpPair::V6 {
        src: "2001:db8::1".parse().unwrap(),
        dst: "2001:db8::2".parse().unwrap(),
    };
    let mut out = Vec::new();
    for (addrs, vlan) in [
        (v4, None),
        (
            v6,
            Some(VlanTag {
                pcp: 1,
                dei: false,
                vid: 7,
            }),
        ),
    ] {
        let mut underlay = Underlay::new(mac_a, mac_b, addrs);
        underlay.vlan = vlan;
        underlay.udp_checksum = true;
        let mut vx = frame.clone();
        let mut enc = VxlanEncap::new(underlay, Vni::new(42).unwrap());
        enc.gbp = vlan.map(|_| Gbp {
            policy_id: 9,
            dont_learn: true,
            policy_applied: false,
        });
        enc.encapsulate(&mut vx).unwrap();
        out.push(("decap", vx.as_slice().to_vec()));
        out.push(("ethernet", vx.as_slice().to_vec()));
        let mut fl = ipv4.clone();
        FlannelEncap::new(underlay).encapsulate(&mut fl).unwrap();
        out.push(("decap", fl.as_slice().to_vec()));
        let l3 = if vlan.is_some() { 18 } else { 14 };
        let ip = vx.as_slice()[l3..].to_vec();
        out.push((if vlan.is_some() { "ipv6" } else { "ipv4" }, ip));
    }
    let mut with_pair = vec![0u8; 32];
    with_pair[..4].copy_from_slice(&[10, 244, 1, 2]);
    with_pair[4..8].copy_from_slice(&[10, 244, 2, 3]);
    with_pair.extend_from_slice(&udp_seg);
    out.push(("udp", with_pair));
    out.push(("ipv4", ipv4.as_slice().to_vec()));
    out.push(("flannel", ipv4.as_slice().to_vec()));
    out.push(("vxlan", {
        let mut v = frame.clone();
        VxlanRepr {
            vni: Vni::new(1).unwrap(),
            gbp: None,
        }
        .prepend(&mut v);
        v.as_slice().to_vec()
    }));
    let arp = ArpRepr {
        operation: podnet_encap::arp::Operation::REQUEST,
        sender_mac: mac_a,
        sender_ip: [10, 244, 1, 1].into(),
        target_mac: MacAddr::ZERO,
        target_ip: [10, 244, 1, 2].into(),
    };
    let mut a = PacketBuf::with_headroom(0, 28);
    arp.prepend(&mut a);
    out.push(("arp", a.as_slice().to_vec()));
    for icmp in [
        Icmpv4Repr::EchoRequest {
            ident: 1,
            seq: 2,
            data: b"ping",
        },
        Icmpv4Repr::DstUnreachable {
            code: podnet_encap::icmpv4::UnreachableCode::FRAG_NEEDED,
            next_hop_mtu: 1450,
            original: &ipv4.as_slice()[..28],
        },
    ] {
        let mut b = PacketBuf::with_headroom(0, 64);
        icmp.append_to(&mut b);
        out.push(("icmpv4", b.as_slice().to_vec()));
    }
    // Targets that read a mode byte first: seed both modes.
    out.into_iter()
        .flat_map(|(t, v)| {
            if matches!(t, "ipv4" | "udp" | "icmpv4" | "flannel" | "decap") {
                let mut a = vec![0u8];
                a.extend_from_slice(&v);
                let mut b = vec![1u8];
                b.extend_from_slice(&v);
                vec![(t, a), (t, b)]
            } else {
                vec![(t, v)]
            }
        })
        .collect()
}
