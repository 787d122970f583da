//! Interop with an independent dissector: frames built by podnet-encap are written to a pcap
//! and read back by `tshark -V`, which must find no malformed packet and no bad checksum, and
//! whose dissected fields must equal what was built. Skips (with a message) without tshark.

use podnet_encap::icmpv4::UnreachableCode;
use podnet_encap::ipv4::Options;
use podnet_encap::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

/// Writes frames as a classic pcap file (microsecond timestamps, LINKTYPE_ETHERNET).
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes()); // magic
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // this zone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

const MAC_A: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
const MAC_B: MacAddr = MacAddr([0x02, 0x00, 0x5e, 0x10, 0x00, 0x02]);
const POD_A: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);
const POD_B: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x03]);

fn pod_ip(a: u8, b: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, a, b)
}

fn eth(buf: &mut PacketBuf, src: MacAddr, dst: MacAddr, ethertype: EtherType) {
    EthernetRepr {
        dst,
        src,
        vlan: None,
        ethertype,
    }
    .prepend(buf);
}

/// Inner Ethernet/IPv4/ICMP echo request between two pods.
fn inner_ping() -> PacketBuf {
    let mut buf = PacketBuf::with_headroom(VxlanEncap::HEADROOM + 34, 64);
    Icmpv4Repr::EchoRequest {
        ident: 0x4242,
        seq: 7,
        data: b"podnet-encap interop",
    }
    .append_to(&mut buf);
    let mut ip = Ipv4Repr::new(pod_ip(1, 2), pod_ip(2, 3), IpProtocol::ICMP, 64, 0);
    ip.ident = 0x1234;
    ip.prepend(&mut buf).unwrap();
    eth(&mut buf, POD_A, POD_B, EtherType::IPV4);
    buf
}

/// Inner IPv4/UDP datagram (for flannel) with IPv4 options.
fn inner_udp() -> PacketBuf {
    let mut buf = PacketBuf::from_payload(FlannelEncap::HEADROOM + 60, b"hello over flannel");
    let pair = IpPair::V4 {
        src: pod_ip(1, 2),
        dst: pod_ip(2, 3),
    };
    UdpRepr {
        src_port: 40000,
        dst_port: 43210,
        payload_len: 0,
    }
    .prepend(&mut buf, &pair, true)
    .unwrap();
    let mut ip = Ipv4Repr::new(pod_ip(1, 2), pod_ip(2, 3), IpProtocol::UDP, 63, 0);
    ip.options = Options::new(&[0x94, 0x04, 0x00, 0x00]).unwrap(); // router alert
    ip.dscp = 10;
    ip.prepend(&mut buf).unwrap();
    buf
}

/// One frame and the tshark fields it must show (`field=value`, all occurrences joined by
/// commas).
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: Vec<(&'static str, String)>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // 1. VXLAN over IPv4 (UDP checksum computed), inner ICMP echo request.
    let v4 = IpPair::V4 {
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 0, 2),
    };
    let mut u = Underlay::new(MAC_A, MAC_B, v4);
    u.udp_checksum = true;
    let enc = VxlanEncap::new(u, Vni::new(42).unwrap());
    let mut buf = inner_ping();
    let sport = enc.src_port(buf.as_slice());
    enc.encapsulate(&mut buf).unwrap();
    cases.push(Case {
        name: "vxlan-ipv4",
        frame: buf.as_slice().to_vec(),
        expect: vec![
            ("eth.src", format!("{MAC_A},{POD_A}")),
            ("eth.dst", format!("{MAC_B},{POD_B}")),
            ("ip.src", "198.18.0.1,10.244.1.2".into()),
            ("ip.dst", "198.18.0.2,10.244.2.3".into()),
            ("ip.checksum.status", "1,1".into()),
            ("udp.srcport", sport.to_string()),
            ("udp.dstport", "4789".into()),
            ("udp.checksum.status", "1".into()),
            ("vxlan.vni", "42".into()),
            ("vxlan.flag_g", "0".into()),
            ("icmp.type", "8".into()),
            ("icmp.ident", "16962".into()),
            ("icmp.seq", "7".into()),
            ("icmp.checksum.status", "1".into()),
        ],
    });

    // 2. VXLAN with GBP over IPv6 on a VLAN, to the Linux port.
    let v6 = IpPair::V6 {
        src: "2001:db8:18::1".parse::<Ipv6Addr>().unwrap(),
        dst: "2001:db8:18::2".parse::<Ipv6Addr>().unwrap(),
    };
    let mut u = Underlay::new(MAC_A, MAC_B, v6);
    u.vlan = Some(VlanTag {
        pcp: 3,
        dei: false,
        vid: 100,
    });
    u.ttl = 5;
    let mut enc = VxlanEncap::new(u, Vni::new(0x00ab_cdef).unwrap());
    enc.dst_port = podnet_encap::vxlan::PORT_LINUX;
    enc.gbp = Some(Gbp {
        policy_id: 0x0123,
        dont_learn: true,
        policy_applied: false,
    });
    let mut buf = inner_ping();
    enc.encapsulate(&mut buf).unwrap();
    cases.push(Case {
        name: "vxlan-gbp-ipv6-vlan",
        frame: buf.as_slice().to_vec(),
        expect: vec![
            ("vlan.id", "100".into()),
            ("vlan.priority", "3".into()),
            ("ipv6.src", "2001:db8:18::1".into()),
            ("ipv6.dst", "2001:db8:18::2".into()),
            ("ipv6.hlim", "5".into()),
            ("udp.dstport", "8472".into()),
            ("udp.checksum.status", "1".into()),
            ("vxlan.vni", "11259375".into()),
            ("vxlan.flag_g", "1".into()),
            ("vxlan.flag_d", "1".into()),
            ("vxlan.flag_a", "0".into()),
            ("vxlan.gbp", "291".into()),
            ("ip.src", "10.244.1.2".into()),
            ("icmp.checksum.status", "1".into()),
        ],
    });

    // 3. flannel-UDP (zero outer UDP checksum, as flannel's kernel socket over IPv4 may send).
    let enc = FlannelEncap::new(Underlay::new(MAC_A, MAC_B, v4));
    let mut buf = inner_udp();
    enc.encapsulate(&mut buf).unwrap();
    cases.push(Case {
        name: "flannel-udp",
        frame: buf.as_slice().to_vec(),
        expect: vec![
            ("ip.src", "198.18.0.1,10.244.1.2".into()),
            ("ip.checksum.status", "1,1".into()),
            ("ip.opt.type", "148".into()),
            ("ip.dsfield.dscp", "0,10".into()),
            ("ip.ttl", "64,63".into()),
            ("udp.srcport", "8285,40000".into()),
            ("udp.dstport", "8285,43210".into()),
            ("udp.checksum.status", "3,1".into()),
        ],
    });

    // 4. ARP request, broadcast.
    let mut buf = PacketBuf::with_headroom(14, 28);
    ArpRepr {
        operation: podnet_encap::arp::Operation::REQUEST,
        sender_mac: POD_A,
        sender_ip: pod_ip(1, 2),
        target_mac: MacAddr::ZERO,
        target_ip: pod_ip(1, 1),
    }
    .prepend(&mut buf);
    eth(&mut buf, POD_A, MacAddr::BROADCAST, EtherType::ARP);
    cases.push(Case {
        name: "arp",
        frame: buf.as_slice().to_vec(),
        expect: vec![
            ("arp.opcode", "1".into()),
            ("arp.src.hw_mac", POD_A.to_string()),
            ("arp.src.proto_ipv4", "10.244.1.2".into()),
            ("arp.dst.proto_ipv4", "10.244.1.1".into()),
        ],
    });

    // 5. ICMP "fragmentation needed" quoting the start of the inner datagram.
    let quoted = inner_udp();
    let original = &quoted.as_slice()[..24 + 8];
    let mut buf = PacketBuf::with_headroom(34, 64);
    Icmpv4Repr::DstUnreachable {
        code: UnreachableCode::FRAG_NEEDED,
        next_hop_mtu: 1450,
        original,
    }
    .append_to(&mut buf);
    Ipv4Repr::new(pod_ip(1, 1), pod_ip(1, 2), IpProtocol::ICMP, 64, 0)
        .prepend(&mut buf)
        .unwrap();
    eth(&mut buf, POD_B, POD_A, EtherType::IPV4);
    cases.push(Case {
        name: "icmp-frag-needed",
        frame: buf.as_slice().to_vec(),
        expect: vec![
            ("icmp.type", "3".into()),
            ("icmp.code", "4".into()),
            ("icmp.mtu", "1450".into()),
            ("icmp.checksum.status", "1".into()),
            ("ip.src", "10.244.1.1,10.244.1.2".into()),
        ],
    });
    cases
}

fn tshark(pcap: &Path, extra: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-d",
            "udp.port==8285,ip",
            // 8472 (Linux's and flannel's VXLAN port) is not VXLAN to tshark by default.
            "-d",
            "udp.port==8472,vxlan",
        ])
        .args(extra)
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tshark_dissects_what_podnet_builds() {
    if Command::new("tshark").arg("-v").output().is_err() {
        return podnet_testsupport::skip(
            "tshark_dissects_what_podnet_builds",
            podnet_testsupport::SkipCause::Avoidable,
            "tshark is not installed (Debian tshark; scripts/test.sh installs it)",
        );
    }
    let cases = cases();
    let dir = std::env::temp_dir().join(format!("podnet-encap-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("frames.pcap");
    write_pcap(
        &pcap,
        &cases.iter().map(|c| c.frame.clone()).collect::<Vec<_>>(),
    );

    let verbose = tshark(&pcap, &["-V"]);
    for bad in [
        "Malformed",
        "Status: Bad",
        "Bad checksum",
        "incorrect",
        "Expert Info (Error",
        "Expert Info (Warning",
    ] {
        assert!(
            !verbose.contains(bad),
            "tshark -V reports {bad:?}:\n{verbose}"
        );
    }
    assert!(
        verbose.matches("Frame ").count() >= cases.len(),
        "{verbose}"
    );

    let mut fields: Vec<&str> = cases
        .iter()
        .flat_map(|c| c.expect.iter().map(|(f, _)| *f))
        .collect();
    fields.sort();
    fields.dedup();
    let mut args = vec![
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=|",
    ];
    for f in &fields {
        args.push("-e");
        args.push(f);
    }
    let table = tshark(&pcap, &args);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), cases.len(), "{table}");
    let mut failures = Vec::new();
    for (case, row) in cases.iter().zip(&rows) {
        let values: Vec<&str> = row.split('|').collect();
        for (field, want) in &case.expect {
            let i = fields.iter().position(|f| f == field).unwrap();
            let got = values.get(i).copied().unwrap_or("");
            if got != want {
                failures.push(format!("{}: {field} = {got:?}, built {want:?}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
