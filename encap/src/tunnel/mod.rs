//! The userspace UDP tunnel: flannel's udp backend datapath, TUN device <-> UDP socket.
//!
//! Egress: IP packets read from the TUN device are sent, each as the whole payload of a UDP
//! datagram (flannel-UDP, port 8285), to the public address of the peer whose subnet holds the
//! destination (longest prefix match). Ingress: datagrams from peers are validated and their
//! inner packets written to the TUN device. The TTL is decremented both ways, as flannel does,
//! and a packet no peer can take is answered with ICMP "net unreachable" written back into the
//! device. A podnet node and flannel's own udp backend understand each other.
//!
//! Beyond flannel:
//! - **Fast.** recvmmsg/sendmmsg batches; UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO); TUN offloads
//!   (IFF_VNET_HDR with TSO/USO: a 64 KB TCP packet from the kernel is cut into wire-sized
//!   packets here and sent with one system call; on the way in, consecutive TCP segments are
//!   coalesced back into one packet for one TUN write); a multi-queue TUN device with one worker
//!   thread per queue; no allocation per packet once running.
//! - **Safe.** Only datagrams from a known peer's public address are accepted; an inner packet
//!   whose source lies outside the sending peer's subnet is dropped (anti-spoofing); malformed
//!   input is dropped; every drop is counted by reason ([`Counters`]).
//! - **Live.** Peers are added and removed while traffic flows; [`UdpTunnel::stop`] (or a
//!   [`StopHandle`]) shuts the workers down.
//!
//! What happens to each packet is decided apart from any I/O (the private `datapath` module,
//! unit-tested without root); the worker threads only move bytes.
//!
//! [`Mode::OnePacketPerSyscall`] works like flannel's C proxy (one packet per system call, no
//! offloads), for comparison.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use podnet_encap::tunnel::{self, Mode, Peer, UdpTunnel};
//! use podnet_links::Handle;
//!
//! let h = Handle::new()?;
//! let dev = h.link().add(&tunnel::tun_spec("flannel0", 2, Mode::Fast))?;
//! // (give flannel0 an address and a route for the cluster network, and bring it up)
//! let sockets = tunnel::bind_sockets("198.18.0.1:8285".parse()?, 2)?;
//! let tunnel = UdpTunnel::builder()
//!     .tun(dev.into_queues())
//!     .sockets(sockets)
//!     .icmp_source("10.244.0.0".parse()?)
//!     .peers(&[Peer::new("10.244.2.0/24".parse()?, "198.18.0.2".parse()?)])
//!     .start()?;
//! tunnel.replace_peer(Peer::new("10.244.3.0/24".parse()?, "198.18.0.3".parse()?));
//! println!("{:?}", tunnel.counters());
//! tunnel.stop()?;
//! # Ok(())
//! # }
//! ```

mod datapath;
mod gro;
mod gso;
mod sys;
mod table;
mod vnet;
mod worker;

use ipnet::Ipv4Net;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use table::PeerTable;

pub use crate::flannel::PORT;

/// A peer node: its subnet and the public address its tunnel listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The pod subnet behind the peer.
    pub subnet: Ipv4Net,
    /// The peer's public (underlay) address and UDP port.
    pub addr: SocketAddrV4,
}

impl Peer {
    /// A peer on flannel's default port, 8285.
    pub fn new(subnet: Ipv4Net, public_ip: Ipv4Addr) -> Peer {
        Peer {
            subnet,
            addr: SocketAddrV4::new(public_ip, PORT),
        }
    }

    /// The same peer on another port.
    pub fn with_port(self, port: u16) -> Peer {
        Peer {
            addr: SocketAddrV4::new(*self.addr.ip(), port),
            ..self
        }
    }
}

/// How the workers move packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Batches (recvmmsg/sendmmsg), UDP GSO/GRO, and TUN offloads when the device has a
    /// virtio-net header (see [`tun_spec`]).
    #[default]
    Fast,
    /// One packet per system call and no offloads, the way flannel's C proxy works (for
    /// benchmarks). Create the device without a virtio-net header for the real thing.
    OnePacketPerSyscall,
}

/// Why a packet was dropped. Every drop is counted under one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Egress: not a whole IPv4 packet, or a virtio-net header that does not fit it.
    TunMalformed,
    /// Egress: not IPv4 (IPv6), or an offload the tunnel does not do (TCP over IPv6).
    TunUnsupported,
    /// Egress: no peer's subnet holds the destination (ICMP net unreachable goes back when
    /// allowed).
    NoRoute,
    /// The TTL ran out (either way).
    TtlExpired,
    /// Ingress: the datagram's source address is no peer's public address.
    UnknownSender,
    /// Ingress: the inner source lies outside the sending peer's subnet.
    Spoofed,
    /// Ingress: not a valid IPv4 packet (length, version, header checksum), or truncated.
    Malformed,
    /// Ingress: a TCP segment with a wrong checksum, found before coalescing.
    BadChecksum,
    /// Ingress: the inner destination lies outside the local subnet (when one is set).
    NotLocal,
    /// Egress: the UDP send failed.
    SendFailed,
    /// Ingress: the write to the TUN device failed.
    TunWriteFailed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 11] = [
        DropReason::TunMalformed,
        DropReason::TunUnsupported,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::UnknownSender,
        DropReason::Spoofed,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::NotLocal,
        DropReason::SendFailed,
        DropReason::TunWriteFailed,
    ];

    /// A short name (`no_route`, `spoofed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TunMalformed => "tun_malformed",
            DropReason::TunUnsupported => "tun_unsupported",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Spoofed => "spoofed",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NotLocal => "not_local",
            DropReason::SendFailed => "send_failed",
            DropReason::TunWriteFailed => "tun_write_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tunnel's counters, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Packets read from the TUN device (a TSO packet counts once).
    pub tun_reads: u64,
    /// Inner packets sent to peers (after segmentation).
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Send system calls.
    pub tx_syscalls: u64,
    /// Inner packets received from peers and accepted.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Receive system calls that returned data.
    pub rx_syscalls: u64,
    /// Writes to the TUN device (a coalesced packet counts once).
    pub tun_writes: u64,
    /// ICMP net-unreachable messages written back into the device.
    pub icmp_sent: u64,
    /// Drops, indexed like [`DropReason::ALL`]; see [`Counters::dropped`].
    pub drops: [u64; 11],
}

const NUM_COUNTERS: usize = 9 + 11;

impl Counters {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn add_drop(&mut self, reason: DropReason, n: u64) {
        self.drops[reason.index()] += n;
    }

    /// The names of the counters other than the drops, in [`Counters::scalars_mut`]'s order
    /// (and the order of the workers' shared array).
    const SCALAR_NAMES: [&'static str; 9] = [
        "tun_reads",
        "tx_packets",
        "tx_bytes",
        "tx_syscalls",
        "rx_packets",
        "rx_bytes",
        "rx_syscalls",
        "tun_writes",
        "icmp_sent",
    ];

    /// The counters other than the drops, in the order of [`Counters::SCALAR_NAMES`].
    fn scalars_mut(&mut self) -> [&mut u64; 9] {
        [
            &mut self.tun_reads,
            &mut self.tx_packets,
            &mut self.tx_bytes,
            &mut self.tx_syscalls,
            &mut self.rx_packets,
            &mut self.rx_bytes,
            &mut self.rx_syscalls,
            &mut self.tun_writes,
            &mut self.icmp_sent,
        ]
    }

    fn to_array(mut self) -> [u64; NUM_COUNTERS] {
        let mut a = [0u64; NUM_COUNTERS];
        for (slot, v) in a.iter_mut().zip(self.scalars_mut()) {
            *slot = *v;
        }
        a[9..].copy_from_slice(&self.drops);
        a
    }

    fn from_array(a: [u64; NUM_COUNTERS]) -> Counters {
        let mut c = Counters::default();
        for (v, x) in c.scalars_mut().into_iter().zip(a) {
            *v = x;
        }
        c.drops.copy_from_slice(&a[9..]);
        c
    }
}

impl fmt::Display for Counters {
    /// `tun_reads=.. tx_packets=.. ... dropped: no_route=3 spoofed=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut c = *self;
        for (i, (name, v)) in Counters::SCALAR_NAMES
            .iter()
            .zip(c.scalars_mut())
            .enumerate()
        {
            write!(f, "{}{name}={v}", if i == 0 { "" } else { " " })?;
        }
        let mut first = true;
        for r in DropReason::ALL {
            let n = self.dropped(r);
            if n > 0 {
                write!(f, "{} {r}={n}", if first { " dropped:" } else { "" })?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One worker's counters: written by the worker alone, read by anyone.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct WorkerStats([AtomicU64; NUM_COUNTERS]);

impl WorkerStats {
    pub(crate) fn publish(&self, c: &Counters) {
        for (slot, v) in self.0.iter().zip(c.to_array()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    fn load(&self) -> [u64; NUM_COUNTERS] {
        let mut a = [0u64; NUM_COUNTERS];
        for (v, slot) in a.iter_mut().zip(&self.0) {
            *v = slot.load(Ordering::Relaxed);
        }
        a
    }
}

/// What went wrong setting up or running the tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The setup asked for something impossible; checked before any thread starts.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument (`"TUN queues"`, `"UDP sockets"`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Entering the network namespace failed.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
    /// A worker thread panicked.
    #[error("tunnel worker {0} panicked")]
    Panicked(usize),
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> TunnelError {
    move |source| TunnelError::Io { op, source }
}

/// State shared by the handle and the workers.
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    /// Readable once stop is asked: the workers poll it.
    pub(crate) wake_rx: UnixDatagram,
    wake_tx: UnixDatagram,
    /// The current peer table; `version` says when it changed.
    pub(crate) table: Mutex<Arc<PeerTable>>,
    pub(crate) version: AtomicU64,
}

impl Shared {
    fn publish(&self, peers: &[Peer]) {
        self.modify(|list| {
            list.clear();
            list.extend_from_slice(peers);
        });
    }

    /// Changes the peer list under the lock (so concurrent changes do not lose each other)
    /// and publishes the new table.
    fn modify<R>(&self, f: impl FnOnce(&mut Vec<Peer>) -> R) -> R {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut peers = t.peers().to_vec();
        let r = f(&mut peers);
        let v = t.version + 1;
        *t = Arc::new(PeerTable::new(&peers, v));
        self.version.store(v, Ordering::Release);
        r
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake_tx.send(&[1]);
    }
}

/// Stops a tunnel's workers from anywhere (another thread, a signal handler thread).
#[derive(Clone)]
pub struct StopHandle(Arc<Shared>);

impl StopHandle {
    /// Asks every worker to stop; they finish their current batch and exit.
    pub fn stop(&self) {
        self.0.request_stop();
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopping", &self.0.stop.load(Ordering::Relaxed))
            .finish()
    }
}

/// A running tunnel: its workers, peers and counters. Dropping it stops the workers.
pub struct UdpTunnel {
    shared: Arc<Shared>,
    stats: Vec<Arc<WorkerStats>>,
    workers: Vec<Option<JoinHandle<Result<(), TunnelError>>>>,
}

impl fmt::Debug for UdpTunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpTunnel")
            .field("workers", &self.workers.len())
            .field("peers", &self.peers().len())
            .finish()
    }
}

/// Sets up a [`UdpTunnel`] (from [`UdpTunnel::builder`]).
#[derive(Debug)]
pub struct Builder {
    queues: Vec<File>,
    sockets: Vec<UdpSocket>,
    mode: Mode,
    icmp_source: Option<Ipv4Addr>,
    local_subnet: Option<Ipv4Net>,
    verify: bool,
    socket_buffer: usize,
    peers: Vec<Peer>,
}

impl Default for Builder {
    fn default() -> Builder {
        UdpTunnel::builder()
    }
}

impl Builder {
    /// The TUN device's queue files (one worker each), e.g. `TunDevice::into_queues()`.
    pub fn tun(mut self, queues: Vec<File>) -> Builder {
        self.queues = queues;
        self
    }

    /// The UDP sockets: one per queue (see [`bind_sockets`]), or one shared by all workers.
    pub fn sockets(mut self, sockets: Vec<UdpSocket>) -> Builder {
        self.sockets = sockets;
        self
    }

    /// How packets move (default [`Mode::Fast`]).
    pub fn mode(mut self, mode: Mode) -> Builder {
        self.mode = mode;
        self
    }

    /// The source of the ICMP net-unreachable messages written back into the device. It
    /// must not be an address of this host (the kernel drops packets from its own addresses
    /// as martians); without it, no ICMP is sent.
    pub fn icmp_source(mut self, addr: Ipv4Addr) -> Builder {
        self.icmp_source = Some(addr);
        self
    }

    /// Accept only inner packets addressed into this subnet (this node's pods).
    pub fn local_subnet(mut self, subnet: Ipv4Net) -> Builder {
        self.local_subnet = Some(subnet);
        self
    }

    /// Check the TCP checksum of each segment before coalescing it (default on). Without
    /// it, a coalesced packet's integrity rests on the outer UDP checksum, which the kernel
    /// verified, as with kernel VXLAN; segments that are not coalesced are always checked by
    /// the kernel.
    pub fn verify_checksums(mut self, on: bool) -> Builder {
        self.verify = on;
        self
    }

    /// The UDP sockets' receive and send buffer size (default 8 MiB).
    pub fn socket_buffer(mut self, bytes: usize) -> Builder {
        self.socket_buffer = bytes;
        self
    }

    /// The initial peers.
    pub fn peers(mut self, peers: &[Peer]) -> Builder {
        self.peers = peers.to_vec();
        self
    }

    /// Starts one worker thread per queue.
    pub fn start(self) -> Result<UdpTunnel, TunnelError> {
        if self.queues.is_empty() {
            return Err(TunnelError::InvalidArgument {
                what: "TUN queues",
                reason: "none given",
            });
        }
        if self.sockets.is_empty() {
            return Err(TunnelError::InvalidArgument {
                what: "UDP sockets",
                reason: "none given",
            });
        }
        if self.sockets.len() != 1 && self.sockets.len() != self.queues.len() {
            return Err(TunnelError::InvalidArgument {
                what: "UDP sockets",
                reason: "give one per TUN queue, or one for all",
            });
        }
        let mut sockets = self.sockets;
        while sockets.len() < self.queues.len() {
            let s = sockets[0].try_clone().map_err(io_err("clone UDP socket"))?;
            sockets.push(s);
        }
        let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(io_err("wake-up socket pair"))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wake_rx,
            wake_tx,
            table: Mutex::new(Arc::new(PeerTable::default())),
            version: AtomicU64::new(0),
        });
        shared.publish(&self.peers);
        let mut configs = Vec::new();
        for (q, s) in self.queues.iter().zip(&sockets) {
            let vnet = sys::tun_vnet_hdr(q.as_fd()).map_err(io_err("query TUN queue"))?;
            if vnet.is_some_and(|n| !(vnet::MIN_LEN..=16).contains(&n)) {
                return Err(TunnelError::InvalidArgument {
                    what: "TUN queue",
                    reason: "its virtio-net header size must be 10 to 16 bytes",
                });
            }
            sys::set_nonblocking(q.as_fd()).map_err(io_err("set TUN queue non-blocking"))?;
            sys::set_buffers(s, self.socket_buffer.max(1 << 16));
            let fast = self.mode == Mode::Fast;
            if fast {
                // Without GRO the kernel hands over one datagram at a time: slower, not wrong.
                let _ = sys::enable_gro(s);
            }
            let gso = fast && sys::gso_supported(s);
            configs.push(worker::Config {
                mode: self.mode,
                vnet: vnet.unwrap_or(0),
                gso,
                icmp_source: self.icmp_source,
                local_subnet: self.local_subnet,
                verify: self.verify,
            });
        }
        let mut stats = Vec::new();
        let mut workers = Vec::new();
        for (i, ((q, s), cfg)) in self
            .queues
            .into_iter()
            .zip(sockets)
            .zip(configs)
            .enumerate()
        {
            let st = Arc::new(WorkerStats::default());
            stats.push(st.clone());
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("podnet-tunnel-{i}"))
                .spawn(move || worker::run(q, s, cfg, sh, st))
                .map_err(io_err("spawn tunnel worker"))?;
            workers.push(Some(h));
        }
        Ok(UdpTunnel {
            shared,
            stats,
            workers,
        })
    }
}

impl UdpTunnel {
    /// A builder: give it the TUN queues and the UDP sockets, then `start()`.
    pub fn builder() -> Builder {
        Builder {
            queues: Vec::new(),
            sockets: Vec::new(),
            mode: Mode::Fast,
            icmp_source: None,
            local_subnet: None,
            verify: true,
            socket_buffer: 8 << 20,
            peers: Vec::new(),
        }
    }

    /// Replaces the whole peer set (what a reconcile loop wants). Workers pick it up before
    /// their next batch.
    pub fn replace_peers(&self, peers: &[Peer]) {
        self.shared.publish(peers);
    }

    /// Adds a peer, or replaces the address of its subnet's peer (like `ip route replace`).
    pub fn replace_peer(&self, peer: Peer) {
        self.shared.modify(|peers| {
            peers.retain(|p| p.subnet != peer.subnet.trunc());
            peers.push(peer);
        });
    }

    /// Deletes the peer of `subnet`; `false` when there was none.
    pub fn del_peer(&self, subnet: Ipv4Net) -> bool {
        self.shared.modify(|peers| {
            let before = peers.len();
            peers.retain(|p| p.subnet != subnet.trunc());
            peers.len() != before
        })
    }

    /// The current peers, one per subnet.
    pub fn peers(&self) -> Vec<Peer> {
        let t = self.shared.table.lock().unwrap_or_else(|e| e.into_inner());
        t.peers().to_vec()
    }

    /// The counters, summed over the workers.
    pub fn counters(&self) -> Counters {
        let mut sum = [0u64; NUM_COUNTERS];
        for s in &self.stats {
            for (a, b) in sum.iter_mut().zip(s.load()) {
                *a += b;
            }
        }
        Counters::from_array(sum)
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// `true` while every worker runs (a worker stops on its own only on a fatal error, such
    /// as its TUN device being deleted).
    pub fn is_running(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.as_ref().is_some_and(|h| !h.is_finished()))
    }

    /// A handle that stops the workers from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.shared.clone())
    }

    /// Stops the workers and waits for them; returns the first error a worker ended with.
    pub fn stop(mut self) -> Result<(), TunnelError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), TunnelError> {
        self.shared.request_stop();
        let mut first = Ok(());
        for (i, w) in self.workers.iter_mut().enumerate() {
            if let Some(h) = w.take() {
                let r = h.join().unwrap_or(Err(TunnelError::Panicked(i)));
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }
}

impl Drop for UdpTunnel {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Binds `n` UDP sockets to `addr` with SO_REUSEPORT, one per worker, in the calling
/// thread's network namespace ([`bind_sockets_in_ns`] binds inside another).
pub fn bind_sockets(addr: SocketAddrV4, n: usize) -> io::Result<Vec<UdpSocket>> {
    (0..n.max(1))
        .map(|_| sys::udp_socket_reuseport(addr))
        .collect()
}

/// [`bind_sockets`] inside the namespace `ns` (the sockets stay bound to it), the way
/// `podnet_links::Handle::in_ns` opens its socket; the calling thread does not switch.
pub fn bind_sockets_in_ns(
    ns: &podnet_links::NetNs,
    addr: SocketAddrV4,
    n: usize,
) -> Result<Vec<UdpSocket>, TunnelError> {
    ns.run(move || bind_sockets(addr, n))?
        .map_err(io_err("bind the UDP sockets"))
}

/// The TUN device a tunnel in `mode` wants: `queues` queues; for [`Mode::Fast`] a 12-byte
/// virtio-net header with checksum, TSO and USO offloads, for
/// [`Mode::OnePacketPerSyscall`] plain packets, like flannel's.
pub fn tun_spec(name: &str, queues: u32, mode: Mode) -> podnet_links::Tun {
    use podnet_links::{Offload, Tun};
    let t = Tun::new(name).queues(queues.max(1)).multi_queue(queues > 1);
    match mode {
        Mode::Fast => t
            .vnet_hdr(true)
            .vnet_hdr_size(12)
            .offload(Offload::CSUM | Offload::TSO4 | Offload::TSO6 | Offload::USO4 | Offload::USO6),
        Mode::OnePacketPerSyscall => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_the_workers_array_and_print_every_field() {
        let mut drops = [0u64; 11];
        drops[0] = 3;
        let c = Counters {
            tun_reads: 1,
            tx_packets: 2,
            tx_bytes: 3,
            tx_syscalls: 4,
            rx_packets: 5,
            rx_bytes: 6,
            rx_syscalls: 7,
            tun_writes: 8,
            icmp_sent: 9,
            drops,
        };
        let a = c.to_array();
        assert_eq!(a[..10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 3]);
        assert_eq!(Counters::from_array(a), c);
        let text = c.to_string();
        assert!(
            text.starts_with(
                "tun_reads=1 tx_packets=2 tx_bytes=3 tx_syscalls=4 rx_packets=5 rx_bytes=6 \
                 rx_syscalls=7 tun_writes=8 icmp_sent=9 dropped: "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("{}=3", DropReason::ALL[0])),
            "{text}"
        );
    }
}
