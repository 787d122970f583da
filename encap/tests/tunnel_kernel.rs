//! Kernel tests of the UDP tunnel (root; namespaces only): two nodes, each with a TUN device
//! and a `UdpTunnel`, pods behind them. Ping and a 100 MB TCP transfer cross the tunnel; a
//! datagram from an unknown address and one whose inner source lies outside the sending
//! peer's subnet are dropped and counted; a packet to an unknown subnet is answered with ICMP
//! net unreachable; peers change while traffic flows; the stop handle stops the workers.
#![cfg(all(feature = "tunnel", target_os = "linux"))]

mod common;

use common::twonodes::{NODE_IP, POD_IP, TwoNodes, crafted, subnet};
use podnet_encap::tunnel::{Counters, DropReason, Mode, Peer, UdpTunnel};
use podnet_testsupport::require_root;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// FNV-1a over 64-bit words: the transfer's checksum.
fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for w in data.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h ^= u64::from_le_bytes(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sends `total` pseudo-random bytes from pod 1 to pod 2 over TCP; returns the checksums
/// computed by the sender and by the receiver. `during` runs while the data flows.
fn tcp_transfer(n: &TwoNodes, total: usize, during: impl FnOnce()) -> (u64, u64) {
    let listener = n.pods[1]
        .run(|| TcpListener::bind((POD_IP[1], 5001)))
        .expect("enter pod2")
        .expect("listen");
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let (mut h, mut got) = (0xcbf2_9ce4_8422_2325u64, 0usize);
        let mut pending = Vec::new();
        loop {
            let k = s.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            got += k;
            pending.extend_from_slice(&buf[..k]);
            let whole = pending.len() / 8 * 8;
            h = fnv(h, &pending[..whole]);
            pending.drain(..whole);
        }
        (fnv(h, &pending), got)
    });
    let mut stream = n.pods[0]
        .run(|| TcpStream::connect((POD_IP[1], 5001)))
        .expect("enter pod1")
        .expect("connect");
    let sender = std::thread::spawn(move || {
        let mut block = vec![0u8; 1 << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut sent = 0;
        while sent < total {
            for w in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            let k = block.len().min(total - sent);
            stream.write_all(&block[..k]).expect("write");
            h = fnv(h, &block[..k]);
            sent += k;
        }
        h
    });
    during();
    let sent_hash = sender.join().expect("sender");
    let (recv_hash, got) = receiver.join().expect("receiver");
    assert_eq!(got, total, "every byte arrived");
    (sent_hash, recv_hash)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn show(tag: &str, t: &[UdpTunnel; 2]) -> [Counters; 2] {
    let c = [t[0].counters(), t[1].counters()];
    eprintln!("{tag} node1: {}\n{tag} node2: {}", c[0], c[1]);
    c
}

fn ping_works(n: &TwoNodes) {
    // The first packets may race the neighbour resolution behind the TUN devices.
    wait_for("ping pod1 -> pod2", Duration::from_secs(10), || {
        n.pods[0].ping(&POD_IP[1].to_string(), 1)
    });
    assert!(
        n.pods[1].ping(&POD_IP[0].to_string(), 2),
        "ping pod2 -> pod1"
    );
    let out = n.pods[0].exec("ping", &["-c3", "-i0.2", "-W2", &POD_IP[1].to_string()]);
    assert!(out.contains("3 received"), "{out}");
    // TTL: pod 64, node1 forward -1, tunnel egress -1, tunnel ingress -1, node2 forward -1.
    assert!(
        out.contains("ttl=60"),
        "TTL decremented on both tunnel ends: {out}"
    );
}

fn full_suite(mode: Mode, queues: u32, transfer: usize) {
    let n = TwoNodes::new("tun", 1472);
    let t = n.udp_tunnels(mode, queues);
    assert_eq!(t[0].workers(), queues as usize);

    ping_works(&n);

    // A bulk TCP transfer, while node 1's peer table is swapped again and again.
    let start = Instant::now();
    let (sent, received) = tcp_transfer(&n, transfer, || {
        for k in 0..50u8 {
            let extra = Peer::new(
                format!("10.250.{k}.0/24").parse().unwrap(),
                Ipv4Addr::new(198, 18, 1, k),
            );
            t[0].replace_peers(&[Peer::new(subnet(1), NODE_IP[1]), extra]);
            std::thread::sleep(Duration::from_millis(2));
        }
        t[0].replace_peers(&[Peer::new(subnet(1), NODE_IP[1])]);
    });
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{mode:?}: {} MB in {secs:.2} s ({:.2} Gbit/s)",
        transfer >> 20,
        transfer as f64 * 8.0 / secs / 1e9
    );
    assert_eq!(sent, received, "the transfer's checksum is intact");
    wait_for("tx counter", Duration::from_secs(2), || {
        t[0].counters().tx_packets >= (transfer / 1500) as u64
    });
    let c = show("after transfer", &t);
    assert_eq!(c[1].dropped(DropReason::BadChecksum), 0);
    assert_eq!(c[1].dropped(DropReason::Malformed), 0);

    // Crafted datagrams into node 1: pod 1 listens on UDP 6000.
    let pod_sock = n.pods[0]
        .run(|| UdpSocket::bind((POD_IP[0], 6000)))
        .unwrap()
        .unwrap();
    pod_sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    n.nodes[1].exec("ip", &["addr", "add", "198.18.0.3/24", "dev", "eth0"]);
    let from = |ip: Ipv4Addr| {
        n.nodes[1]
            .run(move || UdpSocket::bind(SocketAddrV4::new(ip, 0)))
            .unwrap()
            .unwrap()
    };
    let tunnel1 = SocketAddrV4::new(NODE_IP[0], 8285);
    let before = t[0].counters();

    // The genuine article first: from node 2's address, inner source in node 2's subnet.
    from(NODE_IP[1])
        .send_to(&crafted(POD_IP[1], b"genuine"), tunnel1)
        .unwrap();
    let (k, _) = pod_sock
        .recv_from(&mut buf)
        .expect("genuine datagram delivered");
    assert_eq!(&buf[..k], b"genuine");

    // From an address that is no peer's.
    from(Ipv4Addr::new(198, 18, 0, 3))
        .send_to(&crafted(POD_IP[1], b"stranger"), tunnel1)
        .unwrap();
    // From the peer, but with an inner source outside its subnet.
    from(NODE_IP[1])
        .send_to(&crafted(Ipv4Addr::new(10, 244, 9, 9), b"spoofed"), tunnel1)
        .unwrap();
    // Garbage from the peer.
    from(NODE_IP[1])
        .send_to(b"not an ip packet", tunnel1)
        .unwrap();
    assert!(
        pod_sock.recv_from(&mut buf).is_err(),
        "nothing else reached the pod: {:?}",
        String::from_utf8_lossy(&buf)
    );
    wait_for("drop counters", Duration::from_secs(2), || {
        let c = t[0].counters();
        c.dropped(DropReason::UnknownSender) > before.dropped(DropReason::UnknownSender)
            && c.dropped(DropReason::Spoofed) > before.dropped(DropReason::Spoofed)
            && c.dropped(DropReason::Malformed) > before.dropped(DropReason::Malformed)
    });
    let after = t[0].counters();
    assert_eq!(
        after.dropped(DropReason::UnknownSender) - before.dropped(DropReason::UnknownSender),
        1
    );
    assert_eq!(
        after.dropped(DropReason::Spoofed) - before.dropped(DropReason::Spoofed),
        1
    );

    // A packet to a subnet no peer has: ICMP net unreachable, from the tunnel.
    let out = n.pods[0].output("ping", &["-c1", "-W2", "10.244.77.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("Destination Net Unreachable"),
        "ICMP net unreachable: {text}"
    );
    // Workers publish their counters after each batch: wait for that one.
    wait_for("ICMP counter", Duration::from_secs(2), || {
        let c = t[0].counters();
        c.icmp_sent > after.icmp_sent
            && c.dropped(DropReason::NoRoute) > after.dropped(DropReason::NoRoute)
    });

    // Removing the peer makes node 2 unreachable; adding it back restores the path.
    assert!(t[0].del_peer(subnet(1)));
    let out = n.pods[0].output("ping", &["-c1", "-W2", &POD_IP[1].to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Destination Net Unreachable"),
        "peer removed"
    );
    t[0].replace_peer(Peer::new(subnet(1), NODE_IP[1]));
    assert!(n.pods[0].ping(&POD_IP[1].to_string(), 2), "peer added back");
    show("end", &t);

    // The stop handle stops the workers promptly.
    let [a, b] = t;
    let start = Instant::now();
    a.stop_handle().stop();
    a.stop().expect("workers ended cleanly");
    b.stop().expect("workers ended cleanly");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn fast_mode_two_queues_ping_tcp_drops_icmp_and_live_peers() {
    require_root!();
    full_suite(Mode::Fast, 2, 100 << 20);
}

#[test]
fn one_packet_per_syscall_mode_works_the_same() {
    require_root!();
    full_suite(Mode::OnePacketPerSyscall, 1, 20 << 20);
}

#[test]
fn deleted_device_stops_the_workers_with_an_error() {
    require_root!();
    let n = TwoNodes::new("tundel", 1472);
    let t = n.udp_tunnels(Mode::Fast, 1);
    assert!(t[0].is_running());
    n.nodes[0].exec("ip", &["link", "del", "flannel0"]);
    wait_for("worker to notice", Duration::from_secs(5), || {
        !t[0].is_running()
    });
    let [a, _b] = t;
    assert!(a.stop().is_err(), "the worker reports why it stopped");
}

#[test]
fn underlay_mtu_below_the_tunnel_mtu_still_delivers() {
    require_root!();
    // flannel0 keeps MTU 1472 while the underlay shrinks to 1400: the kernel refuses GSO sends
    // whose segments exceed the path, so the tunnel sends those packets one by one (the
    // kernel fragments them), and the transfer still arrives whole.
    let n = TwoNodes::new("tunmtu", 1472);
    for node in &n.nodes {
        node.exec("ip", &["link", "set", "eth0", "mtu", "1400"]);
    }
    let t = n.udp_tunnels(Mode::Fast, 1);
    ping_works_loosely(&n);
    let (sent, received) = tcp_transfer(&n, 20 << 20, || {});
    assert_eq!(sent, received);
    let c = show("mtu", &t);
    assert_eq!(c[0].dropped(DropReason::SendFailed), 0);
}

fn ping_works_loosely(n: &TwoNodes) {
    wait_for("ping pod1 -> pod2", Duration::from_secs(10), || {
        n.pods[0].ping(&POD_IP[1].to_string(), 1)
    });
}
