//! One worker: a TUN queue and a UDP socket, both directions, on one thread.
//!
//! The worker moves bytes; what to do with each packet (route, drop, answer) is decided by
//! [`datapath`], which does no I/O.
//!
//! The loop moves a batch each way (TUN -> peers, peers -> TUN) while there is work, and
//! sleeps in poll(2) only when both sides are idle. Every buffer is allocated when the worker
//! starts; the loop itself does not allocate.
#![forbid(unsafe_code)]

use super::datapath::{self, Egress, Segmentation};
use super::gro::{Coalescer, Pushed};
use super::gso::{self, Seg, SegSink, SplitError};
use super::sys::{self, MAX_GSO_SEGMENTS, MAX_MSGS, MAX_UDP_PAYLOAD, RecvMeta, SendMsg};
use super::table::PeerTable;
use super::vnet::VnetHdr;
use super::{Counters, DropReason, Mode, Shared, TunnelError, WorkerStats};
use ipnet::Ipv4Net;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a worker was set up with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    /// The TUN device's virtio-net header size; 0 without one.
    pub(crate) vnet: usize,
    pub(crate) gso: bool,
    pub(crate) icmp_source: Option<Ipv4Addr>,
    pub(crate) local_subnet: Option<Ipv4Net>,
    pub(crate) verify: bool,
}

/// The largest packet a TUN device hands over (a 64 KiB GSO packet).
const MAX_TUN_PACKET: usize = 65536;
/// Reads per egress batch in fast mode.
const EGRESS_READS: usize = 64;
/// TUN reads that fit in the egress arena before it is flushed.
const EGRESS_ARENA_PACKETS: usize = 8;
/// Segments (inner packets) waiting to be sent.
const MAX_SEGS: usize = 2048;
/// Room for one segment's headers (IPv4 and TCP, both with options).
const SEG_HDR_ROOM: usize = 120;
/// Slices in one sendmmsg call.
const IOV_CAP: usize = 1024;
/// One receive slot: a datagram, or a GRO batch of them.
const RX_SLOT: usize = 65536;
/// Receive slots (messages per recvmmsg) in fast mode.
const RX_SLOTS: usize = 16;

pub(crate) fn run(
    tun: File,
    sock: UdpSocket,
    cfg: Config,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
) -> Result<(), TunnelError> {
    let mut w = Worker::new(tun, sock, cfg, shared, stats);
    let r = w.run();
    w.stats.publish(&w.c);
    r
}

struct Worker {
    tun: File,
    sock: UdpSocket,
    cfg: Config,
    fast: bool,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    table: Arc<PeerTable>,
    c: Counters,
    read_len: usize,
    tx_arena: Vec<u8>,
    tx_hdrs: Vec<u8>,
    tx_segs: Vec<Seg>,
    rx_buf: Vec<u8>,
    rx_meta: Vec<RecvMeta>,
    gro: Coalescer,
    /// Room for an ICMP answer after the virtio-net header.
    icmp: [u8; 16 + datapath::MAX_ICMP_LEN],
}

impl Worker {
    fn new(
        tun: File,
        sock: UdpSocket,
        cfg: Config,
        shared: Arc<Shared>,
        stats: Arc<WorkerStats>,
    ) -> Worker {
        let fast = cfg.mode == Mode::Fast;
        let read_len = cfg.vnet + MAX_TUN_PACKET + 64;
        let arena_packets = if fast { EGRESS_ARENA_PACKETS } else { 1 };
        let rx_slots = if fast { RX_SLOTS } else { 1 };
        let table = shared
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Worker {
            tun,
            sock,
            cfg,
            fast,
            shared,
            stats,
            table,
            c: Counters::default(),
            read_len,
            tx_arena: vec![0; read_len * arena_packets],
            tx_hdrs: Vec::with_capacity(MAX_SEGS * SEG_HDR_ROOM),
            tx_segs: Vec::with_capacity(MAX_SEGS),
            rx_buf: vec![0; RX_SLOT * rx_slots],
            rx_meta: vec![RecvMeta::default(); rx_slots],
            gro: Coalescer::new(256, 1024, cfg.verify),
            icmp: [0; 16 + datapath::MAX_ICMP_LEN],
        }
    }

    fn run(&mut self) -> Result<(), TunnelError> {
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            self.refresh_table();
            let out = self.egress().map_err(|source| TunnelError::Io {
                op: "read from the TUN device",
                source,
            })?;
            let inn = self.ingress().map_err(|source| TunnelError::Io {
                op: "receive from the UDP socket",
                source,
            })?;
            self.stats.publish(&self.c);
            if out == 0 && inn == 0 {
                sys::poll_readable(
                    &[
                        self.tun.as_fd(),
                        self.sock.as_fd(),
                        self.shared.wake_rx.as_fd(),
                    ],
                    1000,
                )
                .map_err(|source| TunnelError::Io { op: "poll", source })?;
            }
        }
    }

    /// Picks up a new peer table (one atomic load when nothing changed).
    fn refresh_table(&mut self) {
        if self.shared.version.load(Ordering::Acquire) != self.table.version {
            let t = self
                .shared
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.table = t;
        }
    }

    // ---- egress: TUN -> peers ----

    /// Reads a batch from the TUN queue and sends it; returns the packets read.
    fn egress(&mut self) -> io::Result<usize> {
        let max_reads = if self.fast { EGRESS_READS } else { 1 };
        let mut pos = 0;
        let mut reads = 0;
        while reads < max_reads {
            if pos + self.read_len > self.tx_arena.len() {
                self.flush_tx();
                pos = 0;
            }
            let n = match self.tun.read(&mut self.tx_arena[pos..pos + self.read_len]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.flush_tx();
                    return Err(e);
                }
            };
            reads += 1;
            self.c.tun_reads += 1;
            if n >= self.read_len {
                self.c.add_drop(DropReason::TunMalformed, 1);
                continue;
            }
            self.egress_packet(pos, n);
            pos = (pos + n + 7) & !7;
        }
        self.flush_tx();
        Ok(reads)
    }

    /// Routes one packet read from the TUN device at `tx_arena[pos..pos + n]`.
    fn egress_packet(&mut self, pos: usize, n: usize) {
        let vnet = self.cfg.vnet;
        let hdr = if vnet > 0 {
            match VnetHdr::parse(&self.tx_arena[pos..pos + n]) {
                Some(h) if n > vnet => h,
                _ => return self.c.add_drop(DropReason::TunMalformed, 1),
            }
        } else {
            VnetHdr::default()
        };
        let start = pos + vnet;
        let (peer, len, seg) =
            match datapath::egress(&mut self.tx_arena[start..pos + n], &hdr, &self.table) {
                Egress::Forward { peer, len, seg } => (peer, len, seg),
                Egress::NoRoute { len } => return self.unreachable(start, len),
                Egress::Drop(reason) => return self.c.add_drop(reason, 1),
            };
        match seg {
            Segmentation::None => {
                if self.tx_segs.len() == self.tx_segs.capacity() {
                    self.flush_tx();
                }
                self.tx_segs.push(Seg {
                    dst: peer,
                    hdr_off: 0,
                    hdr_len: 0,
                    data_off: start as u32,
                    data_len: len as u32,
                });
            }
            Segmentation::Tcp { size } | Segmentation::Udp { size } => {
                for attempt in 0..2 {
                    let mut sink = SegSink {
                        hdrs: &mut self.tx_hdrs,
                        segs: &mut self.tx_segs,
                    };
                    let pkt = &self.tx_arena[start..start + len];
                    let r = if matches!(seg, Segmentation::Tcp { .. }) {
                        gso::split_tcp4(pkt, start, size, peer, &mut sink)
                    } else {
                        gso::split_udp4(pkt, start, size, peer, &mut sink)
                    };
                    match r {
                        Ok(_) => break,
                        Err(SplitError::NoRoom) if attempt == 0 => self.flush_tx(),
                        Err(_) => return self.c.add_drop(DropReason::TunMalformed, 1),
                    }
                }
            }
        }
    }

    /// No peer takes the packet at `tx_arena[start..start + len]`: count it, and write the
    /// ICMP net-unreachable answer back into the device when there is one to send.
    fn unreachable(&mut self, start: usize, len: usize) {
        self.c.add_drop(DropReason::NoRoute, 1);
        let Some(src) = self.cfg.icmp_source else {
            return;
        };
        let v = self.cfg.vnet;
        let pkt = &self.tx_arena[start..start + len];
        let Some(n) = datapath::net_unreachable(pkt, src, &mut self.icmp[v..]) else {
            return;
        };
        self.icmp[..v].fill(0);
        if (&self.tun).write(&self.icmp[..v + n]).is_ok() {
            self.c.icmp_sent += 1;
        }
    }

    /// Sends every queued segment: in fast mode with sendmmsg, consecutive segments to one
    /// peer joined into UDP GSO batches; otherwise one send per packet.
    fn flush_tx(&mut self) {
        if self.tx_segs.is_empty() {
            return;
        }
        if self.fast {
            send_batched(
                &self.sock,
                &self.tx_arena,
                &self.tx_hdrs,
                &self.tx_segs,
                &mut self.cfg.gso,
                &mut self.c,
            );
        } else {
            for s in &self.tx_segs {
                let data = &self.tx_arena[s.data_off as usize..(s.data_off + s.data_len) as usize];
                self.c.tx_syscalls += 1;
                let r = if s.hdr_len == 0 {
                    self.sock.send_to(data, s.dst).map(|_| 1)
                } else {
                    let hdr = &self.tx_hdrs[s.hdr_off as usize..(s.hdr_off + s.hdr_len) as usize];
                    let iov = [IoSlice::new(hdr), IoSlice::new(data)];
                    let msg = SendMsg {
                        dst: s.dst,
                        iov_start: 0,
                        iov_len: 2,
                        segment: 0,
                    };
                    sys::send_batch(&self.sock, &iov, &[msg])
                };
                match r {
                    Ok(1) => {
                        self.c.tx_packets += 1;
                        self.c.tx_bytes += s.len() as u64;
                    }
                    _ => self.c.add_drop(DropReason::SendFailed, 1),
                }
            }
        }
        self.tx_segs.clear();
        self.tx_hdrs.clear();
    }

    // ---- ingress: peers -> TUN ----

    /// Receives a batch from the UDP socket and writes it to the TUN device; returns the
    /// datagrams received.
    fn ingress(&mut self) -> io::Result<usize> {
        let got = if self.fast {
            match sys::recv_batch(&self.sock, &mut self.rx_buf, RX_SLOT, &mut self.rx_meta) {
                Ok(n) => n,
                Err(e) => return transient(e),
            }
        } else {
            match sys::recv_one(&self.sock, &mut self.rx_buf[..RX_SLOT]) {
                Ok((len, src, truncated)) => {
                    self.rx_meta[0] = RecvMeta {
                        len,
                        src,
                        stride: len,
                        truncated,
                    };
                    1
                }
                Err(e) => return transient(e),
            }
        };
        if got == 0 {
            return Ok(0);
        }
        self.c.rx_syscalls += 1;
        for i in 0..got {
            let m = self.rx_meta[i];
            self.datagram(i * RX_SLOT, m);
        }
        self.write_queue();
        Ok(got)
    }

    /// Checks one received datagram (or GRO batch) at `rx_buf[base..]` and queues its
    /// packets.
    fn datagram(&mut self, base: usize, m: RecvMeta) {
        let sender = match datapath::accept_datagram(&m, &self.table) {
            Ok(s) => s,
            Err(reason) => return self.c.add_drop(reason, datapath::packets_in(&m)),
        };
        let stride = m.stride.max(1);
        let mut off = 0;
        while off < m.len {
            let len = stride.min(m.len - off);
            self.inner_packet(sender, base + off, len);
            off += len;
        }
    }

    /// Validates the inner packet at `rx_buf[off..off + len]` from `sender` and queues it
    /// for the TUN device.
    fn inner_packet(&mut self, sender: Ipv4Addr, off: usize, len: usize) {
        let pkt = &mut self.rx_buf[off..off + len];
        let total = match datapath::ingress(sender, pkt, &self.table, self.cfg.local_subnet) {
            Ok(total) => total,
            Err(reason) => return self.c.add_drop(reason, 1),
        };
        if self.fast && self.cfg.vnet > 0 {
            let mut r = self.gro.push(&self.rx_buf, off, total);
            if r == Pushed::Full {
                self.write_queue();
                r = self.gro.push(&self.rx_buf, off, total);
            }
            match r {
                Pushed::Queued => {
                    self.c.rx_packets += 1;
                    self.c.rx_bytes += total as u64;
                }
                Pushed::BadChecksum => self.c.add_drop(DropReason::BadChecksum, 1),
                Pushed::Full => self.c.add_drop(DropReason::TunWriteFailed, 1),
            }
        } else {
            self.c.rx_packets += 1;
            self.c.rx_bytes += total as u64;
            let zero = [0u8; 16];
            let v = self.cfg.vnet.min(zero.len());
            let iov = [
                IoSlice::new(&zero[..v]),
                IoSlice::new(&self.rx_buf[off..off + total]),
            ];
            let slices = if v == 0 { &iov[1..] } else { &iov[..] };
            // A TUN device takes a packet whole or not at all.
            match (&self.tun).write_vectored(slices) {
                Ok(n) if n == v + total => self.c.tun_writes += 1,
                _ => self.c.add_drop(DropReason::TunWriteFailed, 1),
            }
        }
    }

    /// Writes the coalescing queue to the TUN device.
    fn write_queue(&mut self) {
        if self.gro.is_empty() {
            return;
        }
        let mut tun = &self.tun;
        let w = self.gro.write_all(&mut self.rx_buf, self.cfg.vnet, |iov| {
            tun.write_vectored(iov)
        });
        self.c.tun_writes += w.writes;
        self.c
            .add_drop(DropReason::TunWriteFailed, w.failed_packets);
    }
}

/// Errors of a non-blocking receive that are no reason to stop: nothing there, an
/// interrupted call, or an ICMP error reported on the socket.
fn transient(e: io::Error) -> io::Result<usize> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ if matches!(
            e.raw_os_error(),
            Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)
        ) =>
        {
            Ok(1)
        }
        _ => Err(e),
    }
}

/// Sends `segs` with as few sendmmsg calls as possible: consecutive segments to the same
/// peer become one UDP GSO message (equal sizes, the last may be shorter, at most 64 and
/// 65507 bytes), and up to 64 messages go in one call.
fn send_batched(
    sock: &UdpSocket,
    arena: &[u8],
    hdrs: &[u8],
    segs: &[Seg],
    gso: &mut bool,
    c: &mut Counters,
) {
    let mut iov = [IoSlice::new(&[]); IOV_CAP];
    let mut msgs = [SendMsg::default(); MAX_MSGS];
    let mut counts = [(0u64, 0u64); MAX_MSGS];
    let (mut n_iov, mut n_msg) = (0usize, 0usize);
    let (mut size, mut bytes, mut closed) = (0usize, 0usize, false);
    for s in segs {
        let len = s.len();
        let append = *gso
            && n_msg > 0
            && msgs[n_msg - 1].dst == s.dst
            && !closed
            && (counts[n_msg - 1].0 as usize) < MAX_GSO_SEGMENTS
            && bytes + len <= MAX_UDP_PAYLOAD
            && len <= size
            && n_iov + 2 <= IOV_CAP;
        if !append {
            if n_msg == MAX_MSGS || n_iov + 2 > IOV_CAP {
                send_msgs(
                    sock,
                    &iov[..n_iov],
                    &msgs[..n_msg],
                    &counts[..n_msg],
                    gso,
                    c,
                );
                n_msg = 0;
                n_iov = 0;
            }
            msgs[n_msg] = SendMsg {
                dst: s.dst,
                iov_start: n_iov,
                iov_len: 0,
                segment: 0,
            };
            counts[n_msg] = (0, 0);
            n_msg += 1;
            size = len;
            bytes = 0;
        }
        let m = &mut msgs[n_msg - 1];
        if s.hdr_len > 0 {
            iov[n_iov] = IoSlice::new(&hdrs[s.hdr_off as usize..(s.hdr_off + s.hdr_len) as usize]);
            n_iov += 1;
            m.iov_len += 1;
        }
        iov[n_iov] = IoSlice::new(&arena[s.data_off as usize..(s.data_off + s.data_len) as usize]);
        n_iov += 1;
        m.iov_len += 1;
        bytes += len;
        closed = len < size;
        let k = &mut counts[n_msg - 1];
        k.0 += 1;
        k.1 += len as u64;
        if k.0 > 1 {
            m.segment = size as u16;
        }
    }
    send_msgs(
        sock,
        &iov[..n_iov],
        &msgs[..n_msg],
        &counts[..n_msg],
        gso,
        c,
    );
}

/// Sends prepared messages. A GSO message the kernel refuses (segments larger than the path
/// allows, or a device that cannot segment: EIO, after which GSO stays off) goes again as
/// separate datagrams; any other refused message is counted and skipped.
fn send_msgs(
    sock: &UdpSocket,
    iov: &[IoSlice<'_>],
    msgs: &[SendMsg],
    counts: &[(u64, u64)],
    gso: &mut bool,
    c: &mut Counters,
) {
    let mut i = 0;
    while i < msgs.len() {
        c.tx_syscalls += 1;
        match sys::send_batch(sock, iov, &msgs[i..]) {
            Ok(k) if k > 0 => {
                for &(p, b) in &counts[i..i + k] {
                    c.tx_packets += p;
                    c.tx_bytes += b;
                }
                i += k;
            }
            r => {
                if msgs[i].segment > 0 {
                    if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EIO)) {
                        *gso = false;
                    }
                    send_unsegmented(sock, iov, &msgs[i], c);
                } else {
                    c.add_drop(DropReason::SendFailed, counts[i].0);
                }
                i += 1;
            }
        }
    }
}

/// Sends the packets of a GSO message as separate datagrams (each is whole slices: a header
/// and a payload, or a whole packet).
fn send_unsegmented(sock: &UdpSocket, iov: &[IoSlice<'_>], m: &SendMsg, c: &mut Counters) {
    let mut one = [SendMsg::default(); MAX_GSO_SEGMENTS];
    let mut lens = [0u64; MAX_GSO_SEGMENTS];
    let (mut n, mut start, mut acc) = (0usize, m.iov_start, 0usize);
    let end = m.iov_start + m.iov_len;
    for (j, slice) in iov.iter().enumerate().take(end).skip(m.iov_start) {
        acc += slice.len();
        if (acc >= usize::from(m.segment) || j + 1 == end) && n < one.len() {
            one[n] = SendMsg {
                dst: m.dst,
                iov_start: start,
                iov_len: j + 1 - start,
                segment: 0,
            };
            lens[n] = acc as u64;
            n += 1;
            start = j + 1;
            acc = 0;
        }
    }
    let mut i = 0;
    while i < n {
        c.tx_syscalls += 1;
        match sys::send_batch(sock, iov, &one[i..n]) {
            Ok(k) if k > 0 => {
                for &b in &lens[i..i + k] {
                    c.tx_packets += 1;
                    c.tx_bytes += b;
                }
                i += k;
            }
            _ => {
                c.add_drop(DropReason::SendFailed, 1);
                i += 1;
            }
        }
    }
}
