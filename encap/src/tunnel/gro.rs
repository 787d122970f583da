//! Ingress offload done in userspace: coalescing consecutive TCP segments of one flow, as
//! they came out of the peer's segmentation, back into one large packet that the TUN device
//! takes in a single write (a virtio-net header with GSO TCPV4), the way the kernel's GRO would.
//!
//! Packets stay where they were received: a coalesced packet is the first packet's headers
//! (patched in place) followed by the other packets' payloads, written with scatter-gather
//! I/O. Packets of other flows and packets that cannot be coalesced keep their order relative
//! to the packets of their own flow.
#![forbid(unsafe_code)]

use super::vnet::{F_NEEDS_CSUM, GSO_TCPV4, VnetHdr};
use crate::checksum;
use crate::field::{get_u16, get_u32, set_u16};
use crate::ipv4;
use std::io::IoSlice;
use std::net::Ipv4Addr;

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const PROTO_TCP: u8 = 6;

/// The most packets coalesced into one.
pub(crate) const MAX_SEGS: usize = 64;

/// One packet to write to the TUN device: a single received packet, or several coalesced.
#[derive(Debug, Clone, Copy)]
struct Item {
    /// The first packet: offset and length in the receive buffer.
    off: u32,
    len: u32,
    /// TCP flow (source, destination, ports), or `None` for a packet that is not coalesced.
    flow: Option<(u32, u32, u32)>,
    hdr_len: u16,
    /// The first packet's payload length: the segment size of the coalesced packet.
    gso: u16,
    /// Payload bytes of all packets.
    payload: u32,
    next_seq: u32,
    count: u16,
    closed: bool,
    psh: bool,
    /// First and last of the later packets' payloads in `links`.
    first_link: u32,
    last_link: u32,
}

/// A later packet's payload in the receive buffer.
#[derive(Debug, Clone, Copy)]
struct Link {
    off: u32,
    len: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// What became of a packet handed to [`Coalescer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued (alone or coalesced).
    Queued,
    /// The TCP checksum is wrong: dropped.
    BadChecksum,
    /// No room: write the queue out, then push again.
    Full,
}

/// The packets of one receive batch, in order, coalesced where possible. Fixed capacity: it
/// never allocates after creation.
pub(crate) struct Coalescer {
    items: Vec<Item>,
    links: Vec<Link>,
    verify: bool,
}

/// The result of writing the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Writes that succeeded.
    pub(crate) writes: u64,
    /// Inner packets in failed writes.
    pub(crate) failed_packets: u64,
    /// The error of a write that failed, when it means the device is gone.
    pub(crate) fatal: Option<std::io::ErrorKind>,
}

impl Coalescer {
    /// A queue for `items` packets and `links` coalesced payloads. With `verify`, the TCP
    /// checksum of every coalesced packet is checked first (the device will not check a
    /// coalesced packet again).
    pub(crate) fn new(items: usize, links: usize, verify: bool) -> Coalescer {
        Coalescer {
            items: Vec::with_capacity(items),
            links: Vec::with_capacity(links),
            verify,
        }
    }

    /// `true` when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues the valid IPv4 packet `buf[off..off + len]` (TTL already decremented).
    pub(crate) fn push(&mut self, buf: &[u8], off: usize, len: usize) -> Pushed {
        if self.items.len() == self.items.capacity() || self.links.len() == self.links.capacity() {
            return Pushed::Full;
        }
        let pkt = &buf[off..off + len];
        let Some(t) = tcp_candidate(pkt) else {
            self.items.push(Item::single(off, len, None));
            return Pushed::Queued;
        };
        if self.verify && !tcp_checksum_ok(pkt, t.hdr_len) {
            return Pushed::BadChecksum;
        }
        let plen = len - t.hdr_len;
        if let Some(i) = self.items.iter().rposition(|it| it.flow == Some(t.flow)) {
            if self.can_append(&self.items[i], buf, pkt, &t, plen) {
                let l = self.links.len() as u32;
                self.links.push(Link {
                    off: (off + t.hdr_len) as u32,
                    len: plen as u32,
                    next: NONE,
                });
                let it = &mut self.items[i];
                if it.last_link == NONE {
                    it.first_link = l;
                } else {
                    self.links[it.last_link as usize].next = l;
                }
                it.last_link = l;
                it.count += 1;
                it.payload += plen as u32;
                it.next_seq = it.next_seq.wrapping_add(plen as u32);
                if plen < usize::from(it.gso) || t.psh {
                    it.closed = true;
                }
                it.psh |= t.psh;
                return Pushed::Queued;
            }
        }
        let mut it = Item::single(off, len, Some(t.flow));
        it.hdr_len = t.hdr_len as u16;
        it.gso = plen as u16;
        it.payload = plen as u32;
        it.next_seq = t.seq.wrapping_add(plen as u32);
        it.closed = t.psh;
        self.items.push(it);
        Pushed::Queued
    }

    fn can_append(&self, it: &Item, buf: &[u8], pkt: &[u8], t: &TcpInfo, plen: usize) -> bool {
        if it.closed
            || usize::from(it.count) >= MAX_SEGS
            || t.seq != it.next_seq
            || plen > usize::from(it.gso)
            || t.hdr_len != usize::from(it.hdr_len)
            || usize::from(it.hdr_len) + it.payload as usize + plen > usize::from(u16::MAX)
        {
            return false;
        }
        let first = &buf[it.off as usize..(it.off + it.len) as usize];
        // IPv4: same TOS, flags (DF), TTL; TCP: same ACK number, window, options. Ports and
        // addresses are the flow key; the header lengths are equal.
        first[1] == pkt[1]
            && first[6..9] == pkt[6..9]
            && first[20 + 8..20 + 12] == pkt[20 + 8..20 + 12]
            && first[20 + 14..20 + 16] == pkt[20 + 14..20 + 16]
            && first[20 + 20..t.hdr_len] == pkt[20 + 20..t.hdr_len]
    }

    /// Writes every queued packet to the TUN device with `write` (one call per packet, the
    /// slices of one packet together), in order, and empties the queue. `vnet` is the
    /// device's virtio-net header size. Headers of coalesced packets are patched in `buf`.
    pub(crate) fn write_all(
        &mut self,
        buf: &mut [u8],
        vnet: usize,
        mut write: impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> Written {
        let mut w = Written::default();
        let zero = [0u8; 16];
        let vnet = vnet.min(zero.len());
        for it in &self.items {
            if it.count > 1 {
                patch_headers(buf, it);
            }
        }
        let buf: &[u8] = buf;
        for it in &self.items {
            let mut hdr = [0u8; 16];
            if it.count > 1 {
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: GSO_TCPV4,
                    hdr_len: it.hdr_len,
                    gso_size: it.gso,
                    csum_start: 20,
                    csum_offset: 16,
                }
                .emit(&mut hdr[..vnet]);
            }
            let mut iov = [IoSlice::new(&[]); MAX_SEGS + 2];
            iov[0] = IoSlice::new(if it.count > 1 {
                &hdr[..vnet]
            } else {
                &zero[..vnet]
            });
            iov[1] = IoSlice::new(&buf[it.off as usize..(it.off + it.len) as usize]);
            let mut n = 2;
            let mut l = it.first_link;
            while l != NONE && n < iov.len() {
                let link = self.links[l as usize];
                iov[n] = IoSlice::new(&buf[link.off as usize..(link.off + link.len) as usize]);
                n += 1;
                l = link.next;
            }
            let slices = if vnet == 0 { &iov[1..n] } else { &iov[..n] };
            match write(slices) {
                Ok(_) => w.writes += 1,
                Err(e) => {
                    w.failed_packets += u64::from(it.count);
                    if matches!(e.raw_os_error(), Some(libc::EBADFD) | Some(libc::EBADF)) {
                        w.fatal = Some(e.kind());
                    }
                }
            }
        }
        self.items.clear();
        self.links.clear();
        w
    }
}

impl Item {
    fn single(off: usize, len: usize, flow: Option<(u32, u32, u32)>) -> Item {
        Item {
            off: off as u32,
            len: len as u32,
            flow,
            hdr_len: 0,
            gso: 0,
            payload: 0,
            next_seq: 0,
            count: 1,
            closed: true,
            psh: false,
            first_link: NONE,
            last_link: NONE,
        }
    }
}

/// A TCP segment that may be coalesced.
struct TcpInfo {
    flow: (u32, u32, u32),
    hdr_len: usize,
    seq: u32,
    psh: bool,
}

/// A TCP/IPv4 packet without IP options, with payload, flags ACK or ACK|PSH, not a fragment:
/// what a peer's segmentation of a bulk transfer produces.
fn tcp_candidate(pkt: &[u8]) -> Option<TcpInfo> {
    if pkt.len() < 40 || pkt[0] != 0x45 || pkt[9] != PROTO_TCP {
        return None;
    }
    if get_u16(pkt, 6) & 0x3fff != 0 {
        return None; // MF or a fragment offset
    }
    let thl = usize::from(pkt[32] >> 4) * 4;
    let flags = pkt[33];
    if thl < 20 || pkt.len() <= 20 + thl || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
        return None;
    }
    Some(TcpInfo {
        flow: (get_u32(pkt, 12), get_u32(pkt, 16), get_u32(pkt, 20)),
        hdr_len: 20 + thl,
        seq: get_u32(pkt, 24),
        psh: flags & TCP_PSH != 0,
    })
}

fn tcp_checksum_ok(pkt: &[u8], _hdr_len: usize) -> bool {
    let src = Ipv4Addr::from(get_u32(pkt, 12));
    let dst = Ipv4Addr::from(get_u32(pkt, 16));
    let seg = &pkt[20..];
    checksum::combine(&[
        checksum::pseudo_header_v4(src, dst, PROTO_TCP, seg.len() as u32),
        checksum::data(seg),
    ]) == 0xffff
}

/// Makes the first packet's headers describe the coalesced packet: IP total length and
/// checksum, PSH when any packet had it, and the TCP checksum field set to the pseudo-header
/// sum (the device finishes it: VIRTIO_NET_HDR_F_NEEDS_CSUM).
fn patch_headers(buf: &mut [u8], it: &Item) {
    let off = it.off as usize;
    let h = &mut buf[off..off + usize::from(it.hdr_len)];
    let total = usize::from(it.hdr_len) + it.payload as usize;
    let (src, dst) = {
        let mut ip = ipv4::Packet::new_unchecked(&mut h[..20]);
        ip.set_total_len(total as u16);
        ip.fill_checksum();
        (ip.src(), ip.dst())
    };
    if it.psh {
        h[33] |= TCP_PSH;
    }
    let tcp_len = total - 20;
    set_u16(
        h,
        36,
        checksum::pseudo_header_v4(src, dst, PROTO_TCP, tcp_len as u32),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::set_u32;

    /// A TCP/IPv4 packet of flow `port` with sequence `seq`, `payload` bytes and `flags`.
    fn seg(port: u16, seq: u32, payload: usize, flags: u8) -> Vec<u8> {
        let mut v = vec![0u8; 40 + payload];
        v[0] = 0x45;
        set_u16(&mut v, 2, (40 + payload) as u16);
        v[6] = 0x40;
        v[8] = 63;
        v[9] = 6;
        v[12..16].copy_from_slice(&[10, 244, 1, 2]);
        v[16..20].copy_from_slice(&[10, 244, 2, 3]);
        ipv4::Packet::new_unchecked(&mut v[..20]).fill_checksum();
        set_u16(&mut v, 20, port);
        set_u16(&mut v, 22, 5201);
        set_u32(&mut v, 24, seq);
        set_u32(&mut v, 28, 1);
        v[32] = 5 << 4;
        v[33] = flags;
        set_u16(&mut v, 34, 1000);
        for (i, b) in v[40..].iter_mut().enumerate() {
            *b = (seq as usize + i) as u8;
        }
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(
                [10, 244, 1, 2].into(),
                [10, 244, 2, 3].into(),
                6,
                (20 + payload) as u32,
            ),
            checksum::data(&v[20..]),
        ]);
        set_u16(&mut v, 36, checksum::finish(sum));
        v
    }

    /// Pushes the packets laid out in one buffer and returns what was written, as
    /// (virtio-net header, bytes).
    fn run(pkts: &[Vec<u8>], verify: bool) -> (Vec<(VnetHdr, Vec<u8>)>, Vec<Pushed>) {
        let mut buf = Vec::new();
        let mut at = Vec::new();
        for p in pkts {
            at.push((buf.len(), p.len()));
            buf.extend_from_slice(p);
        }
        let mut c = Coalescer::new(16, 64, verify);
        let pushed: Vec<Pushed> = at.iter().map(|&(o, l)| c.push(&buf, o, l)).collect();
        let mut out = Vec::new();
        let w = c.write_all(&mut buf, 12, |iov| {
            let mut v = Vec::new();
            for s in iov {
                v.extend_from_slice(s);
            }
            out.push((VnetHdr::parse(&v).unwrap(), v[12..].to_vec()));
            Ok(v.len())
        });
        assert_eq!(w.writes as usize, out.len());
        assert!(c.is_empty());
        (out, pushed)
    }

    #[test]
    fn consecutive_segments_become_one_gso_packet() {
        let pkts = [
            seg(1, 100, 1000, TCP_ACK),
            seg(1, 1100, 1000, TCP_ACK),
            seg(1, 2100, 500, TCP_ACK | TCP_PSH),
        ];
        let (out, _) = run(&pkts, true);
        assert_eq!(out.len(), 1);
        let (h, p) = &out[0];
        assert_eq!(
            (
                h.flags,
                h.gso_type,
                h.gso_size,
                h.hdr_len,
                h.csum_start,
                h.csum_offset
            ),
            (F_NEEDS_CSUM, GSO_TCPV4, 1000, 40, 20, 16)
        );
        let ip = ipv4::Packet::new_checked(&p[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), 40 + 2500);
        assert_eq!(p[33], TCP_ACK | TCP_PSH);
        // Finishing the checksum as the device would gives a valid TCP segment.
        let mut full = p.clone();
        super::super::gso::complete_checksum(&mut full, 20, 16);
        assert!(tcp_checksum_ok(&full, 40));
        let mut data = Vec::new();
        for q in &pkts {
            data.extend_from_slice(&q[40..]);
        }
        assert_eq!(&p[40..], &data[..]);
    }

    #[test]
    fn flows_interleave_and_order_holds_within_a_flow() {
        let pkts = [
            seg(1, 0, 1000, TCP_ACK),
            seg(2, 0, 1000, TCP_ACK),
            seg(1, 1000, 1000, TCP_ACK),
            seg(2, 1000, 1000, TCP_ACK),
            seg(1, 5000, 1000, TCP_ACK), // a gap: a new packet
            seg(1, 6000, 0, TCP_ACK),    // a pure ACK: alone
            seg(3, 0, 100, 0x02),        // SYN: alone
        ];
        let (out, _) = run(&pkts, true);
        let summary: Vec<(u16, u32, usize)> = out
            .iter()
            .map(|(h, p)| {
                (
                    get_u16(p, 20),
                    get_u32(p, 24),
                    p.len() - 40 + usize::from(h.gso_type),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, 0, 2001),
                (2, 0, 2001),
                (1, 5000, 1000),
                (1, 6000, 0),
                (3, 0, 100)
            ]
        );
    }

    #[test]
    fn not_coalesced_when_headers_differ_or_segment_is_larger() {
        let mut b = seg(1, 1000, 1000, TCP_ACK);
        set_u16(&mut b, 34, 999); // window changed
        let c = seg(1, 2000, 1200, TCP_ACK); // larger than the first
        let (out, _) = run(&[seg(1, 0, 1000, TCP_ACK), b, c], false);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(h, _)| h.gso_type == 0));
        let (out, _) = run(
            &[
                seg(1, 0, 1000, TCP_ACK),
                seg(1, 1000, 400, TCP_ACK),
                seg(1, 1400, 400, TCP_ACK),
            ],
            false,
        );
        assert_eq!(out.len(), 2, "a short segment ends the coalesced packet");
    }

    #[test]
    fn bad_checksum_is_refused_when_verifying() {
        let mut bad = seg(1, 1000, 1000, TCP_ACK);
        bad[500] ^= 1;
        let (out, pushed) = run(&[seg(1, 0, 1000, TCP_ACK), bad.clone()], true);
        assert_eq!(pushed, vec![Pushed::Queued, Pushed::BadChecksum]);
        assert_eq!(out.len(), 1);
        let (out, _) = run(&[seg(1, 0, 1000, TCP_ACK), bad], false);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.gso_type, GSO_TCPV4);
    }

    #[test]
    fn full_queue_says_so() {
        let mut c = Coalescer::new(2, 4, false);
        let p = seg(1, 0, 10, 0x02);
        assert_eq!(c.push(&p, 0, p.len()), Pushed::Queued);
        assert_eq!(c.push(&p, 0, p.len()), Pushed::Queued);
        assert_eq!(c.push(&p, 0, p.len()), Pushed::Full);
    }
}
