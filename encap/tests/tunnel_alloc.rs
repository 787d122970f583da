//! The tunnel's steady state allocates nothing (root; namespaces only): a counting global
//! allocator sees no allocation, in any thread of the process, while a TCP transfer crosses
//! two tunnels and datagrams from an unknown sender, spoofed packets and a packet to an unknown
//! subnet (ICMP net unreachable) take the drop paths.
#![cfg(all(feature = "tunnel", target_os = "linux"))]

mod common;

use common::twonodes::{NODE_IP, POD_IP, TwoNodes, crafted};
use podnet_encap::tunnel::{DropReason, Mode};
use podnet_testsupport::require_root;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// Counts every allocation of the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to the system allocator with the caller's arguments, keeping
// its contract; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds alloc's contract, which System.alloc shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: ptr came from this allocator (that is, from System) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from this allocator (that is, from System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Moves `bytes` from `tx` to `rx` with preallocated buffers (allocation-free itself).
fn transfer(
    tx: &mut TcpStream,
    rx: &mut TcpStream,
    bytes: usize,
    tx_buf: &[u8],
    rx_buf: &mut [u8],
) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut sent = 0;
            while sent < bytes {
                let k = tx_buf.len().min(bytes - sent);
                tx.write_all(&tx_buf[..k]).unwrap();
                sent += k;
            }
        });
        let mut got = 0;
        while got < bytes {
            got += rx.read(rx_buf).unwrap();
        }
    });
}

#[test]
fn steady_state_is_allocation_free() {
    require_root!();
    let a0 = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(vec![1u8; 10]));
    assert!(
        ALLOCATIONS.load(Ordering::SeqCst) > a0,
        "the counting allocator counts"
    );
    let n = TwoNodes::new("alloc", 1472);
    let t = n.udp_tunnels(Mode::Fast, 2);
    for _ in 0..50 {
        if n.pods[0].ping(&POD_IP[1].to_string(), 1) {
            break;
        }
    }

    // Everything the measured window uses is made first.
    let listener = n.pods[1]
        .run(|| TcpListener::bind((POD_IP[1], 5002)))
        .unwrap()
        .unwrap();
    let mut client = n.pods[0]
        .run(|| TcpStream::connect((POD_IP[1], 5002)))
        .unwrap()
        .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    n.nodes[1].exec("ip", &["addr", "add", "198.18.0.3/24", "dev", "eth0"]);
    let stranger = n.nodes[1]
        .run(|| UdpSocket::bind((Ipv4Addr::new(198, 18, 0, 3), 0)))
        .unwrap()
        .unwrap();
    let peer = n.nodes[1]
        .run(|| UdpSocket::bind((NODE_IP[1], 0)))
        .unwrap()
        .unwrap();
    let pod = n.pods[0]
        .run(|| UdpSocket::bind((POD_IP[0], 0)))
        .unwrap()
        .unwrap();
    let genuine_stranger = crafted(POD_IP[1], b"crafted");
    let spoofed = crafted(Ipv4Addr::new(10, 244, 9, 9), b"crafted");
    let tunnel1 = SocketAddr::V4(SocketAddrV4::new(NODE_IP[0], 8285));
    let nowhere = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 244, 77, 1), 9));
    let tx_buf = vec![0x5au8; 1 << 16];
    let mut rx_buf = vec![0u8; 1 << 16];
    let go = Arc::new(Barrier::new(3));

    // Warm up every path once (first-use allocations in the kernel-facing code, if any).
    transfer(&mut client, &mut server, 8 << 20, &tx_buf, &mut rx_buf);
    stranger.send_to(&genuine_stranger, tunnel1).unwrap();
    peer.send_to(&spoofed, tunnel1).unwrap();
    let _ = pod.send_to(b"x", nowhere);
    std::thread::sleep(Duration::from_millis(200));
    let before = t[0].counters();

    // The window's threads start (and allocate) before it opens.
    const WINDOW_BYTES: usize = 64 << 20;
    let sender = {
        let go = go.clone();
        let mut client = client.try_clone().unwrap();
        let tx_buf = tx_buf.clone();
        std::thread::spawn(move || {
            go.wait();
            let mut sent = 0;
            while sent < WINDOW_BYTES {
                let k = tx_buf.len().min(WINDOW_BYTES - sent);
                client.write_all(&tx_buf[..k]).unwrap();
                sent += k;
            }
        })
    };
    let drops = {
        let go = go.clone();
        std::thread::spawn(move || {
            go.wait();
            for _ in 0..20 {
                stranger.send_to(&genuine_stranger, tunnel1).unwrap();
                peer.send_to(&spoofed, tunnel1).unwrap();
                let _ = pod.send_to(b"x", nowhere);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let start = ALLOCATIONS.load(Ordering::SeqCst);
    go.wait();
    let mut got = 0;
    while got < WINDOW_BYTES {
        got += server.read(&mut rx_buf).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = ALLOCATIONS.load(Ordering::SeqCst) - start;
    sender.join().unwrap();
    drops.join().unwrap();

    let after = t[0].counters();
    eprintln!("node1: {after}");
    let grew = |r: DropReason| after.dropped(r) - before.dropped(r);
    assert!(
        grew(DropReason::UnknownSender) >= 20,
        "unknown senders took the drop path"
    );
    assert!(
        grew(DropReason::Spoofed) >= 20,
        "spoofed packets took the drop path"
    );
    assert!(
        grew(DropReason::NoRoute) >= 1,
        "a packet took the no-route path"
    );
    assert!(
        after.icmp_sent > before.icmp_sent,
        "ICMP net unreachable was sent"
    );
    assert!(
        after.tx_packets - before.tx_packets > 40_000,
        "the transfer crossed the tunnel"
    );
    assert_eq!(
        during, 0,
        "allocations in the steady state (all threads of the process)"
    );
}
