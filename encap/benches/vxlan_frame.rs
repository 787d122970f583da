//! podnet-encap against etherparse on an Ethernet/IPv4/UDP/VXLAN/Ethernet/IPv4/TCP frame, in
//! the same run, on the same bytes; prints podnet's time as a fraction of etherparse's.
//!
//! Three comparisons, each at two inner TCP payload sizes:
//! - `parse`: slice every header with length and version checks, no checksums (podnet's
//!   `new_checked` views; etherparse's `SlicedPacket::from_ethernet`, twice).
//! - `parse_validate`: the same plus every checksum a receiver must check: outer IPv4 header,
//!   outer UDP, inner IPv4 header (podnet's `decapsulate_vxlan` and `Repr::parse`; on the
//!   etherparse side, its own checksum functions on its own slices).
//! - `build`: from header fields and the TCP segment's bytes (neither side has a TCP codec in
//!   play: etherparse writes the segment as an IP payload), computing the same checksums:
//!   inner IPv4 header, outer IPv4 header, outer UDP. podnet also hashes the inner flow for the
//!   outer source port; etherparse uses a fixed port.
//!
//! etherparse has no VXLAN type: its side reads and writes the 8 VXLAN bytes by hand. Neither
//! side sees the other's output; both start from the same frame or the same fields.
//!
//! Run: `cargo bench -p podnet-encap --bench vxlan_frame`

use criterion::{BenchmarkId, Criterion, Throughput};
use etherparse::{IpNumber, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use podnet_encap::*;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::PathBuf;

const SIZES: [usize; 2] = [64, 1400];
const OUTER_SRC: [u8; 4] = [198, 18, 0, 1];
const OUTER_DST: [u8; 4] = [198, 18, 0, 2];
const POD_SRC: [u8; 4] = [10, 244, 1, 2];
const POD_DST: [u8; 4] = [10, 244, 2, 3];
const MAC_A: [u8; 6] = [2, 0, 0x5e, 0x10, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0x5e, 0x10, 0, 2];
const POD_A: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 1, 2];
const POD_B: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 2, 3];
const VNI: u32 = 1;
const SPORT: u16 = 49152;

/// A TCP segment (20-byte header, ACK|PSH, then payload), as opaque bytes.
fn tcp_segment(payload: usize) -> Vec<u8> {
    let mut seg = vec![
        0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
        0, 0, 0, 1, 0, 0, 0, 1, // seq, ack
        0x50, 0x18, 0xfa, 0xf0, // data offset 5, ACK|PSH, window
        0, 0, 0, 0, // checksum, urgent
    ];
    seg.extend((0..payload).map(|i| i as u8));
    seg
}

fn encap() -> VxlanEncap {
    let mut u = Underlay::new(
        MacAddr(MAC_A),
        MacAddr(MAC_B),
        IpPair::V4 {
            src: OUTER_SRC.into(),
            dst: OUTER_DST.into(),
        },
    );
    u.udp_checksum = true;
    VxlanEncap::new(u, Vni::new(VNI).unwrap())
}

fn podnet_build(enc: &VxlanEncap, tcp: &[u8]) -> PacketBuf {
    let mut buf = PacketBuf::from_payload(VxlanEncap::HEADROOM + 14 + 20, tcp);
    Ipv4Repr::new(
        Ipv4Addr::from(POD_SRC),
        Ipv4Addr::from(POD_DST),
        IpProtocol::TCP,
        64,
        0,
    )
    .prepend(&mut buf)
    .unwrap();
    EthernetRepr {
        dst: MacAddr(POD_B),
        src: MacAddr(POD_A),
        vlan: None,
        ethertype: EtherType::IPV4,
    }
    .prepend(&mut buf);
    enc.encapsulate(&mut buf).unwrap();
    buf
}

fn etherparse_build(tcp: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + 14 + 20 + tcp.len());
    payload.extend_from_slice(&[0x08, 0, 0, 0]);
    payload.extend_from_slice(&(VNI << 8).to_be_bytes());
    PacketBuilder::ethernet2(POD_A, POD_B)
        .ipv4(POD_SRC, POD_DST, 64)
        .write(&mut payload, IpNumber::TCP, tcp)
        .unwrap();
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(OUTER_SRC, OUTER_DST, 64)
        .udp(SPORT, 4789);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// A minimal TCP check, the same on both sides where podnet has no TCP codec: the header fits
/// and its data offset is sane. Returns the ports.
#[inline(always)]
fn tcp_ports(seg: &[u8]) -> Option<(u16, u16)> {
    if seg.len() < 20 {
        return None;
    }
    let off = usize::from(seg[12] >> 4) * 4;
    if off < 20 || off > seg.len() {
        return None;
    }
    Some((
        u16::from_be_bytes([seg[0], seg[1]]),
        u16::from_be_bytes([seg[2], seg[3]]),
    ))
}

#[inline(always)]
fn podnet_parse(frame: &[u8]) -> Option<(u32, Ipv4Addr, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::UDP {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let vx = VxlanPacket::new_checked(udp.payload()).ok()?;
    if !vx.vni_valid() {
        return None;
    }
    let inner = EthernetFrame::new_checked(vx.payload()).ok()?;
    if inner.ethertype() != EtherType::IPV4 {
        return None;
    }
    let iip = Ipv4Packet::new_checked(inner.payload()).ok()?;
    if iip.protocol() != IpProtocol::TCP {
        return None;
    }
    let (_, dport) = tcp_ports(iip.payload())?;
    Some((vx.vni().get(), iip.src(), dport))
}

#[inline(always)]
fn podnet_parse_validate(frame: &[u8]) -> Option<(u32, Ipv4Addr, u16)> {
    let d = decapsulate_vxlan(frame, 4789).ok()?;
    let inner = EthernetFrame::new_checked(d.inner).ok()?;
    if EthernetRepr::parse(&inner).ok()?.ethertype != EtherType::IPV4 {
        return None;
    }
    let iip = Ipv4Packet::new_checked(inner.payload()).ok()?;
    let ir = Ipv4Repr::parse(&iip).ok()?;
    if ir.protocol != IpProtocol::TCP {
        return None;
    }
    let (_, dport) = tcp_ports(iip.payload())?;
    Some((d.vxlan.vni.get(), ir.src, dport))
}

#[inline(always)]
fn vxlan_payload<'a>(outer: &SlicedPacket<'a>) -> Option<&'a [u8]> {
    let Some(TransportSlice::Udp(udp)) = &outer.transport else {
        return None;
    };
    let p = udp.payload();
    if p.len() < 8 || p[0] & 0x08 == 0 {
        return None;
    }
    Some(p)
}

#[inline(always)]
fn etherparse_parse(frame: &[u8]) -> Option<(u32, Ipv4Addr, u16)> {
    let outer = SlicedPacket::from_ethernet(frame).ok()?;
    let vx = vxlan_payload(&outer)?;
    let vni = u32::from_be_bytes([vx[4], vx[5], vx[6], vx[7]]) >> 8;
    let inner = SlicedPacket::from_ethernet(&vx[8..]).ok()?;
    let Some(NetSlice::Ipv4(iip)) = &inner.net else {
        return None;
    };
    let Some(TransportSlice::Tcp(tcp)) = &inner.transport else {
        return None;
    };
    Some((
        vni,
        Ipv4Addr::from(iip.header().source()),
        tcp.destination_port(),
    ))
}

#[inline(always)]
fn etherparse_parse_validate(frame: &[u8]) -> Option<(u32, Ipv4Addr, u16)> {
    let outer = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(oip)) = &outer.net else {
        return None;
    };
    let oh = oip.header();
    if oh.to_header().calc_header_checksum() != oh.header_checksum() {
        return None;
    }
    let Some(TransportSlice::Udp(udp)) = &outer.transport else {
        return None;
    };
    if udp.checksum() != 0 {
        let sum = udp
            .to_header()
            .calc_checksum_ipv4_raw(oh.source(), oh.destination(), udp.payload())
            .ok()?;
        if sum != udp.checksum() {
            return None;
        }
    }
    if udp.destination_port() != 4789 {
        return None;
    }
    let vx = vxlan_payload(&outer)?;
    let vni = u32::from_be_bytes([vx[4], vx[5], vx[6], vx[7]]) >> 8;
    let inner = SlicedPacket::from_ethernet(&vx[8..]).ok()?;
    let Some(NetSlice::Ipv4(iip)) = &inner.net else {
        return None;
    };
    let ih = iip.header();
    if ih.to_header().calc_header_checksum() != ih.header_checksum() {
        return None;
    }
    let Some(TransportSlice::Tcp(tcp)) = &inner.transport else {
        return None;
    };
    Some((vni, Ipv4Addr::from(ih.source()), tcp.destination_port()))
}

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    // The bench binary lives in <target>/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median point estimate (ns) criterion saved for one benchmark.
fn median_ns(dir: &std::path::Path, group: &str, function: &str, size: usize) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(size.to_string())
        .join("new/estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let pe = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = pe.find([',', '}'])?;
    pe[..end].trim().parse().ok()
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let enc = encap();
    let groups = ["parse", "parse_validate", "build"];
    for &size in &SIZES {
        let tcp = tcp_segment(size);
        let frame = podnet_build(&enc, &tcp).as_slice().to_vec();
        let expect = Some((VNI, Ipv4Addr::from(POD_SRC), 80));
        assert_eq!(podnet_parse(&frame), expect);
        assert_eq!(podnet_parse_validate(&frame), expect);
        assert_eq!(etherparse_parse(&frame), expect);
        assert_eq!(etherparse_parse_validate(&frame), expect);
        let theirs = etherparse_build(&tcp);
        assert_eq!(theirs.len(), frame.len());
        assert_eq!(etherparse_parse_validate(&theirs), expect);
        assert_eq!(podnet_parse_validate(&theirs), expect);

        let mut g = c.benchmark_group("parse");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(BenchmarkId::new("podnet", size), &frame, |b, f| {
            b.iter(|| podnet_parse(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("etherparse", size), &frame, |b, f| {
            b.iter(|| etherparse_parse(black_box(f)))
        });
        g.finish();

        let mut g = c.benchmark_group("parse_validate");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(BenchmarkId::new("podnet", size), &frame, |b, f| {
            b.iter(|| podnet_parse_validate(black_box(f)))
        });
        g.bench_with_input(BenchmarkId::new("etherparse", size), &frame, |b, f| {
            b.iter(|| etherparse_parse_validate(black_box(f)))
        });
        g.finish();

        let mut g = c.benchmark_group("build");
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(BenchmarkId::new("podnet", size), &tcp, |b, t| {
            b.iter(|| podnet_build(&enc, black_box(t)))
        });
        g.bench_with_input(BenchmarkId::new("etherparse", size), &tcp, |b, t| {
            b.iter(|| etherparse_build(black_box(t)))
        });
        g.finish();
    }
    c.final_summary();

    println!("\npodnet time / etherparse time (median; goal <= 0.70):");
    for group in groups {
        for &size in &SIZES {
            match (
                median_ns(&dir, group, "podnet", size),
                median_ns(&dir, group, "etherparse", size),
            ) {
                (Some(p), Some(e)) => println!(
                    "  {group:<15} tcp payload {size:>4} B: podnet {p:>8.1} ns, etherparse \
                     {e:>8.1} ns, ratio {:.2}",
                    p / e
                ),
                _ => println!("  {group:<15} tcp payload {size:>4} B: not measured in this run"),
            }
        }
    }
}
