//! Egress offloads done in userspace: cutting a TSO/USO packet read from the TUN device into
//! wire-sized IPv4 packets (each with its own headers and full checksums), and finishing the
//! checksum of a packet the kernel left partial.
//!
//! Segments are not copied: each is a header written into a header arena plus a range of the
//! original packet's payload, sent together with scatter-gather I/O.
#![forbid(unsafe_code)]

use crate::checksum;
use crate::field::{get_u16, get_u32, set_u16, set_u32};
use crate::ipv4;
use std::net::SocketAddrV4;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// One inner packet to send: `hdr_len` bytes of the header arena at `hdr_off` (none when 0),
/// then `data_len` bytes of the packet arena at `data_off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seg {
    pub(crate) dst: SocketAddrV4,
    pub(crate) hdr_off: u32,
    pub(crate) hdr_len: u32,
    pub(crate) data_off: u32,
    pub(crate) data_len: u32,
}

impl Seg {
    /// The inner packet's length.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        (self.hdr_len + self.data_len) as usize
    }
}

/// Why a packet could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// Headers inconsistent with the virtio-net header or the packet.
    Malformed,
    /// The arenas cannot take this many segments now (flush and retry).
    NoRoom,
    /// More segments than the arenas can ever hold (a tiny segment size).
    TooMany,
}

/// Where segments go: a header arena and a segment list, both with fixed capacity (they never
/// grow, so splitting never allocates).
pub(crate) struct SegSink<'a> {
    pub(crate) hdrs: &'a mut Vec<u8>,
    pub(crate) segs: &'a mut Vec<Seg>,
}

impl SegSink<'_> {
    fn check_room(&self, n: usize, hdr_len: usize) -> Result<(), SplitError> {
        let hdr_need = n * hdr_len;
        if n > self.segs.capacity() || hdr_need > self.hdrs.capacity() {
            return Err(SplitError::TooMany);
        }
        if self.segs.len() + n > self.segs.capacity()
            || self.hdrs.len() + hdr_need > self.hdrs.capacity()
        {
            return Err(SplitError::NoRoom);
        }
        Ok(())
    }

    /// Appends segment `i` of `pkt` (`hl` the IPv4 header length, `hdr_len` with the
    /// transport header): a copy of the headers with the IPv4 total length, ID (the packet's
    /// plus `i`) and header checksum of a segment of `data_len` payload bytes, found at
    /// `data_off` in the packet arena. Returns its transport header, for the caller to finish.
    fn push_ipv4_segment(
        &mut self,
        pkt: &[u8],
        (hl, hdr_len): (usize, usize),
        i: usize,
        dst: SocketAddrV4,
        (data_off, data_len): (usize, usize),
    ) -> &mut [u8] {
        let h0 = self.hdrs.len();
        self.hdrs.extend_from_slice(&pkt[..hdr_len]);
        self.segs.push(Seg {
            dst,
            hdr_off: h0 as u32,
            hdr_len: hdr_len as u32,
            data_off: data_off as u32,
            data_len: data_len as u32,
        });
        let h = &mut self.hdrs[h0..];
        let mut ip = ipv4::Packet::new_unchecked(&mut h[..hl]);
        ip.set_total_len((hdr_len + data_len) as u16);
        ip.set_ident(get_u16(pkt, 4).wrapping_add(i as u16));
        ip.fill_checksum();
        &mut h[hl..]
    }
}

/// The source and destination addresses of a checked IPv4 packet.
fn ipv4_addrs(pkt: &[u8]) -> (std::net::Ipv4Addr, std::net::Ipv4Addr) {
    let p = ipv4::Packet::new_unchecked(pkt);
    (p.src(), p.dst())
}

/// The IPv4 header length and total length of `pkt`, checked.
fn ipv4_lens(pkt: &[u8]) -> Result<(usize, usize), SplitError> {
    let p = ipv4::Packet::new_checked(pkt).map_err(|_| SplitError::Malformed)?;
    if p.is_fragment() {
        return Err(SplitError::Malformed);
    }
    Ok((p.header_len(), usize::from(p.total_len())))
}

/// Cuts a TCP/IPv4 TSO packet (`pkt`, found at `base` in the packet arena, TTL already
/// handled) into segments of at most `mss` payload bytes, as the kernel's `tcp_gso_segment`
/// would: IP ID incremented, sequence numbers advanced, FIN and PSH on the last segment only,
/// CWR on the first only, full IP and TCP checksums. Returns the number of segments.
pub(crate) fn split_tcp4(
    pkt: &[u8],
    base: usize,
    mss: usize,
    dst: SocketAddrV4,
    out: &mut SegSink<'_>,
) -> Result<usize, SplitError> {
    let (hl, total) = ipv4_lens(pkt)?;
    let pkt = &pkt[..total];
    if pkt[9] != PROTO_TCP || mss == 0 {
        return Err(SplitError::Malformed);
    }
    let tcp = &pkt[hl..];
    if tcp.len() < 20 {
        return Err(SplitError::Malformed);
    }
    let thl = usize::from(tcp[12] >> 4) * 4;
    if thl < 20 || tcp.len() < thl {
        return Err(SplitError::Malformed);
    }
    let hdr_len = hl + thl;
    let payload = &pkt[hdr_len..];
    let n = payload.len().div_ceil(mss).max(1);
    out.check_room(n, hdr_len)?;
    let (src_ip, dst_ip) = ipv4_addrs(pkt);
    let seq0 = get_u32(tcp, 4);
    let flags0 = tcp[13];
    for i in 0..n {
        let off = i * mss;
        let plen = mss.min(payload.len() - off.min(payload.len()));
        let data_off = base + hdr_len + off.min(payload.len());
        let t = out.push_ipv4_segment(pkt, (hl, hdr_len), i, dst, (data_off, plen));
        set_u32(t, 4, seq0.wrapping_add(off as u32));
        let mut flags = flags0;
        if i + 1 < n {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        t[13] = flags;
        set_u16(t, 16, 0);
        let data = &payload[off.min(payload.len())..off.min(payload.len()) + plen];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src_ip, dst_ip, PROTO_TCP, (thl + plen) as u32),
            checksum::data(t),
            checksum::data(data),
        ]);
        set_u16(t, 16, checksum::finish(sum));
    }
    Ok(n)
}

/// Cuts a UDP/IPv4 USO packet into datagrams of at most `size` payload bytes, each with its
/// own IP header (ID incremented), UDP length and full UDP checksum. Returns the count.
pub(crate) fn split_udp4(
    pkt: &[u8],
    base: usize,
    size: usize,
    dst: SocketAddrV4,
    out: &mut SegSink<'_>,
) -> Result<usize, SplitError> {
    let (hl, total) = ipv4_lens(pkt)?;
    let pkt = &pkt[..total];
    if pkt[9] != PROTO_UDP || size == 0 || pkt.len() < hl + 8 {
        return Err(SplitError::Malformed);
    }
    let hdr_len = hl + 8;
    let payload = &pkt[hdr_len..];
    let n = payload.len().div_ceil(size).max(1);
    out.check_room(n, hdr_len)?;
    let (src_ip, dst_ip) = ipv4_addrs(pkt);
    for i in 0..n {
        let off = (i * size).min(payload.len());
        let plen = size.min(payload.len() - off);
        let data_off = base + hdr_len + off;
        let u = out.push_ipv4_segment(pkt, (hl, hdr_len), i, dst, (data_off, plen));
        set_u16(u, 4, (8 + plen) as u16);
        set_u16(u, 6, 0);
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src_ip, dst_ip, PROTO_UDP, (8 + plen) as u32),
            checksum::data(u),
            checksum::data(&payload[off..off + plen]),
        ]);
        let c = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        set_u16(u, 6, c);
    }
    Ok(n)
}

/// Finishes a checksum the kernel left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field at
/// `start + offset` holds the pseudo-header sum; the sum from `start` to the end goes there.
/// `false` (and nothing changed) when the offsets do not fit the packet.
pub(crate) fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start.saturating_add(offset);
    if start >= pkt.len() || field.saturating_add(2) > pkt.len() {
        return false;
    }
    let udp = pkt.first().is_some_and(|v| v >> 4 == 4) && pkt.get(9) == Some(&PROTO_UDP);
    let c = checksum::finish(checksum::data(&pkt[start..]));
    let c = if c == 0 && udp { 0xffff } else { c };
    set_u16(pkt, field, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};

    /// A TCP/IPv4 packet with `payload` bytes, flags ACK|PSH|FIN|CWR, and a correct checksum.
    pub(crate) fn tcp_packet(payload: usize, flags: u8) -> Vec<u8> {
        let mut v = vec![0u8; 20 + 32 + payload];
        Ipv4Repr::new(
            "10.244.1.2".parse().unwrap(),
            "10.244.2.3".parse().unwrap(),
            IpProtocol::TCP,
            63,
            32 + payload,
        )
        .emit(&mut Ipv4Packet::new_unchecked(&mut v[..]))
        .unwrap();
        set_u16(&mut v, 4, 0xfffe); // ID, to see it wrap
        Ipv4Packet::new_unchecked(&mut v[..]).fill_checksum();
        let t = &mut v[20..];
        set_u16(t, 0, 40000);
        set_u16(t, 2, 5201);
        set_u32(t, 4, 0xffff_f000); // sequence, to see it wrap
        set_u32(t, 8, 77);
        t[12] = 8 << 4; // 32-byte header: 12 bytes of options
        t[13] = flags;
        set_u16(t, 14, 512);
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        for (i, b) in t[32..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(
                "10.244.1.2".parse().unwrap(),
                "10.244.2.3".parse().unwrap(),
                6,
                (32 + payload) as u32,
            ),
            checksum::data(t),
        ]);
        set_u16(t, 16, checksum::finish(sum));
        v
    }

    fn tcp_ok(p: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(p).unwrap();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(ip.src(), ip.dst(), 6, ip.payload().len() as u32),
            checksum::data(ip.payload()),
        ]);
        ip.verify_checksum() && sum == 0xffff
    }

    fn assemble(arena: &[u8], hdrs: &[u8], s: &Seg) -> Vec<u8> {
        let mut v = hdrs[s.hdr_off as usize..(s.hdr_off + s.hdr_len) as usize].to_vec();
        v.extend_from_slice(&arena[s.data_off as usize..(s.data_off + s.data_len) as usize]);
        v
    }

    fn sink_vecs(segs: usize) -> (Vec<u8>, Vec<Seg>) {
        (Vec::with_capacity(segs * 120), Vec::with_capacity(segs))
    }

    #[test]
    fn tso_split_matches_what_the_kernel_would_send() {
        let (mss, payload) = (1000, 3500);
        let pkt = tcp_packet(payload, 0x80 | 0x10 | 0x08 | 0x01);
        let mut arena = vec![0u8; 7];
        arena.extend_from_slice(&pkt);
        let (mut hdrs, mut segs) = sink_vecs(16);
        let dst = "198.18.0.2:8285".parse().unwrap();
        let n = split_tcp4(
            &arena[7..],
            7,
            mss,
            dst,
            &mut SegSink {
                hdrs: &mut hdrs,
                segs: &mut segs,
            },
        )
        .unwrap();
        assert_eq!(n, 4);
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.dst, dst);
            let p = assemble(&arena, &hdrs, s);
            assert!(tcp_ok(&p), "segment {i} checksums");
            let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
            assert_eq!(usize::from(ip.total_len()), p.len());
            assert_eq!(ip.ident(), 0xfffeu16.wrapping_add(i as u16));
            let t = ip.payload();
            assert_eq!(get_u32(t, 4), 0xffff_f000u32.wrapping_add((i * mss) as u32));
            let flags = t[13];
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR on the first only");
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH) != 0,
                i == 3,
                "FIN/PSH on the last"
            );
            assert_eq!(&t[20..32], &pkt[40..52], "options copied");
            data.extend_from_slice(&t[32..]);
        }
        assert_eq!(&data[..], &pkt[52..]);
        assert_eq!(segs[3].data_len, 500);
    }

    #[test]
    fn tso_split_refuses_bad_input_and_reports_room() {
        let pkt = tcp_packet(3000, 0x10);
        let dst = "198.18.0.2:8285".parse().unwrap();
        let (mut hdrs, mut segs) = sink_vecs(2);
        let mut sink = SegSink {
            hdrs: &mut hdrs,
            segs: &mut segs,
        };
        assert_eq!(
            split_tcp4(&pkt, 0, 100, dst, &mut sink),
            Err(SplitError::TooMany)
        );
        assert_eq!(split_tcp4(&pkt, 0, 2000, dst, &mut sink), Ok(2));
        assert_eq!(
            split_tcp4(&pkt, 0, 2000, dst, &mut sink),
            Err(SplitError::NoRoom)
        );
        let (mut hdrs, mut segs) = sink_vecs(8);
        let mut sink = SegSink {
            hdrs: &mut hdrs,
            segs: &mut segs,
        };
        assert_eq!(
            split_tcp4(&pkt, 0, 0, dst, &mut sink),
            Err(SplitError::Malformed)
        );
        assert_eq!(
            split_tcp4(&pkt[..30], 0, 1000, dst, &mut sink),
            Err(SplitError::Malformed)
        );
        let mut bad = pkt.clone();
        bad[20 + 12] = 15 << 4; // TCP header longer than the packet allows? no: 60 bytes fits
        bad.truncate(20 + 40);
        set_u16(&mut bad, 2, 60);
        Ipv4Packet::new_unchecked(&mut bad[..]).fill_checksum();
        assert_eq!(
            split_tcp4(&bad, 0, 1000, dst, &mut sink),
            Err(SplitError::Malformed)
        );
        for cut in 0..60 {
            let _ = split_tcp4(&pkt[..cut], 0, 1000, dst, &mut sink);
        }
    }

    #[test]
    fn uso_split_gives_valid_datagrams() {
        let payload: Vec<u8> = (0..2500u32).map(|i| (i * 13) as u8).collect();
        let mut pkt = vec![0u8; 28 + payload.len()];
        let (src, dsta) = ("10.244.1.2".parse().unwrap(), "10.244.2.3".parse().unwrap());
        Ipv4Repr::new(src, dsta, IpProtocol::UDP, 64, 8 + payload.len())
            .emit(&mut Ipv4Packet::new_unchecked(&mut pkt[..]))
            .unwrap();
        set_u16(&mut pkt, 20, 9999);
        set_u16(&mut pkt, 22, 53);
        set_u16(&mut pkt, 24, (8 + payload.len()) as u16);
        pkt[28..].copy_from_slice(&payload);
        let (mut hdrs, mut segs) = sink_vecs(8);
        let dst = "198.18.0.2:8285".parse().unwrap();
        let n = split_udp4(
            &pkt,
            0,
            1000,
            dst,
            &mut SegSink {
                hdrs: &mut hdrs,
                segs: &mut segs,
            },
        )
        .unwrap();
        assert_eq!(n, 3);
        let mut data = Vec::new();
        for s in &segs {
            let p = assemble(&pkt, &hdrs, s);
            let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
            assert!(ip.verify_checksum());
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(u.verify_checksum(&IpPair::V4 { src, dst: dsta }));
            data.extend_from_slice(u.payload());
        }
        assert_eq!(data, payload);
    }

    #[test]
    fn completes_a_partial_checksum() {
        let full = tcp_packet(333, 0x18);
        let mut partial = full.clone();
        // What the kernel hands over: the pseudo-header sum, not inverted, in the field.
        let ps = checksum::pseudo_header_v4(
            "10.244.1.2".parse().unwrap(),
            "10.244.2.3".parse().unwrap(),
            6,
            (32 + 333) as u32,
        );
        set_u16(&mut partial, 36, ps);
        assert!(complete_checksum(&mut partial, 20, 16));
        assert_eq!(partial, full);
        assert!(!complete_checksum(&mut partial, 20, 10_000));
        assert!(!complete_checksum(&mut partial, 10_000, 0));
    }
}
