//! Interop with the kernel's VXLAN device (needs root; runs in namespaces it makes).
//!
//! Namespace `a` has a kernel VXLAN device (VNI 42, UDP 4789) with 10.244.1.1/24 on it,
//! pointed at 198.18.0.2. Namespace `b` has no VXLAN device: a plain UDP socket bound to
//! 198.18.0.2:4789 receives the kernel's VXLAN payloads, and a packet socket on `eth0` sees the
//! whole frames. podnet plays the host 10.244.1.2 behind the tunnel: it decapsulates the
//! kernel's frames (from the UDP socket, and whole frames from the packet socket), answers ARP
//! and ping with ARP and ICMP built by podnet-encap, and sends the answers as whole frames it
//! VXLAN-encapsulated itself. `ping` in `a` succeeding proves the kernel accepted them.
#![allow(unsafe_code)] // the AF_PACKET socket below (test-only; the library forbids unsafe)

use podnet_encap::*;
use podnet_testsupport::{TestNs, linked_pair, require_root};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A raw AF_PACKET socket bound to one interface: whole Ethernet frames in and out.
mod packet_socket {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub(crate) struct PacketSocket {
        fd: OwnedFd,
    }

    impl PacketSocket {
        /// Opens the socket on `ifname` of the calling thread's namespace.
        pub(crate) fn bind(ifname: &str) -> io::Result<PacketSocket> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: socket(2) with constant arguments; the result is checked.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let name = CString::new(ifname).expect("no NUL in interface name");
            // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: sockaddr_ll is plain data for which all-zero bytes are a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            // SAFETY: `sll` is a valid sockaddr_ll and its exact size is passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(PacketSocket { fd })
        }

        /// A frame received on the interface (not one sent from it), without blocking.
        pub(crate) fn try_recv_incoming(&self, buf: &mut [u8]) -> Option<usize> {
            loop {
                // SAFETY: as above, all-zero is a valid sockaddr_ll.
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` and `sll` are valid for writes of the lengths passed.
                let n = unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                        (&mut sll as *mut libc::sockaddr_ll).cast::<libc::sockaddr>(),
                        &mut len,
                    )
                };
                if n < 0 {
                    return None;
                }
                if sll.sll_pkttype != libc::PACKET_OUTGOING {
                    return Some(n as usize);
                }
            }
        }

        /// Sends a whole Ethernet frame out of the interface.
        pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
            // SAFETY: `frame` is valid for reads of its length.
            let n =
                unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

const VNI: u32 = 42;
const PORT: u16 = 4789;
const POD_MAC: MacAddr = MacAddr([0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02]);

fn pod_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 2)
}

fn mac_of(ns: &TestNs, dev: &str) -> MacAddr {
    let out = ns.exec("ip", &["-br", "link", "show", "dev", dev]);
    let text = out
        .split_whitespace()
        .nth(2)
        .expect("ip -br link prints a MAC");
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate() {
        mac[i] = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    MacAddr(mac)
}

/// What podnet, as 10.244.1.2, answers to an inner frame from the kernel (ARP and ping).
fn answer(inner: &[u8]) -> Option<PacketBuf> {
    let eth = EthernetFrame::new_checked(inner).ok()?;
    let eth_repr = EthernetRepr::parse(&eth).ok()?;
    let mut out = PacketBuf::with_headroom(VxlanEncap::HEADROOM + 14 + 20, 128);
    match eth_repr.ethertype {
        EtherType::ARP => {
            let req = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
            if req.operation != podnet_encap::arp::Operation::REQUEST || req.target_ip != pod_ip() {
                return None;
            }
            req.reply(POD_MAC).prepend(&mut out);
        }
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let ip_repr = Ipv4Repr::parse(&ip).ok()?;
            if ip_repr.dst != pod_ip() || ip_repr.protocol != IpProtocol::ICMP {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
            let Icmpv4Repr::EchoRequest { ident, seq, data } = Icmpv4Repr::parse(&icmp).ok()?
            else {
                return None;
            };
            Icmpv4Repr::EchoReply { ident, seq, data }.append_to(&mut out);
            Ipv4Repr::new(pod_ip(), ip_repr.src, IpProtocol::ICMP, 64, 0)
                .prepend(&mut out)
                .ok()?;
        }
        _ => return None,
    }
    EthernetRepr {
        dst: eth_repr.src,
        src: POD_MAC,
        vlan: None,
        ethertype: eth_repr.ethertype,
    }
    .prepend(&mut out);
    Some(out)
}

#[derive(Default)]
struct Seen {
    /// Inner frames received on the UDP socket.
    udp_inner: Vec<Vec<u8>>,
    /// Whole frames from the kernel that podnet decapsulated.
    decapsulated: Vec<(Vec<u8>, VxlanRepr, u16, u16)>,
    /// Frames podnet sent.
    sent: usize,
}

#[test]
fn kernel_vxlan_and_podnet_talk() {
    require_root!();
    talk(false);
}

/// The kernel's default: outer UDP checksums on. The kernel leaves them for the NIC to finish
/// (CHECKSUM_PARTIAL), so a packet socket behind a veth sees unfinished values, which podnet
/// rightly refuses: this variant checks the UDP socket path and ping only.
#[test]
fn kernel_vxlan_with_udp_checksums_and_podnet_talk() {
    require_root!();
    talk(true);
}

/// Runs the exchange; `kernel_udpcsum` sets the kernel device's outer UDP checksum. podnet's
/// own frames always carry one, which the kernel verifies.
fn talk(kernel_udpcsum: bool) {
    let pair = linked_pair("vxlan", "198.18.0.1/24", "198.18.0.2/24");
    let encap = kernel_vxlan_in_a(&pair.a, &pair.b, kernel_udpcsum);
    let stop = AtomicBool::new(false);
    let ready = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let pinged = std::thread::scope(|s| {
        let responder = s.spawn(|| {
            pair.b
                .run(|| serve_in_b(&encap, &stop, &ready, &seen))
                .expect("responder thread in b")
        });
        let t0 = Instant::now();
        while !ready.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ok = (0..3).any(|_| pair.a.ping("10.244.1.2", 3));
        // Let the packet socket catch up with the last frames.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        responder.join().expect("responder");
        ok
    });
    check(seen.into_inner().unwrap(), pinged, kernel_udpcsum);
}

/// The kernel's VXLAN device in `a` (VNI 42, remote b, 10.244.1.1/24), and podnet's encap
/// parameters for b's answers.
fn kernel_vxlan_in_a(a: &TestNs, b: &TestNs, kernel_udpcsum: bool) -> VxlanEncap {
    a.exec(
        "ip",
        &[
            "link",
            "add",
            "vxlan0",
            "type",
            "vxlan",
            "id",
            "42",
            "local",
            "198.18.0.1",
            "remote",
            "198.18.0.2",
            "dstport",
            "4789",
            "dev",
            "eth0",
            if kernel_udpcsum {
                "udpcsum"
            } else {
                "noudpcsum"
            },
        ],
    );
    a.exec("ip", &["addr", "add", "10.244.1.1/24", "dev", "vxlan0"]);
    a.exec("ip", &["link", "set", "vxlan0", "up"]);
    let a_mac = mac_of(a, "eth0");
    let b_mac = mac_of(b, "eth0");
    // The underlay neighbours, so that neither side's first frame waits for ARP.
    a.exec(
        "ip",
        &[
            "neigh",
            "replace",
            "198.18.0.2",
            "lladdr",
            &b_mac.to_string(),
            "dev",
            "eth0",
        ],
    );

    let mut underlay = Underlay::new(
        b_mac,
        a_mac,
        IpPair::V4 {
            src: Ipv4Addr::new(198, 18, 0, 2),
            dst: Ipv4Addr::new(198, 18, 0, 1),
        },
    );
    underlay.udp_checksum = true; // the kernel verifies it
    VxlanEncap::new(underlay, Vni::new(VNI).unwrap())
}

/// podnet in b: answers ARP and ping from the kernel (until `stop`), recording what arrives
/// on its UDP socket and what its packet socket decapsulates.
fn serve_in_b(encap: &VxlanEncap, stop: &AtomicBool, ready: &AtomicBool, seen: &Mutex<Seen>) {
    let udp = UdpSocket::bind(("198.18.0.2", PORT)).expect("bind UDP 4789 in b");
    udp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let raw = packet_socket::PacketSocket::bind("eth0").expect("AF_PACKET on eth0");
    ready.store(true, Ordering::SeqCst);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        while let Some(n) = raw.try_recv_incoming(&mut buf) {
            if let Ok(d) = decapsulate_vxlan(&buf[..n], PORT) {
                let (sport, dport) = d.outer_ports();
                seen.lock()
                    .unwrap()
                    .decapsulated
                    .push((d.inner.to_vec(), d.vxlan, sport, dport));
            }
        }
        let Ok(n) = udp.recv(&mut buf) else { continue };
        let Ok((_, inner)) = podnet_encap::vxlan::parse_payload(&buf[..n]) else {
            continue;
        };
        seen.lock().unwrap().udp_inner.push(inner.to_vec());
        if let Some(mut reply) = answer(inner) {
            encap.encapsulate(&mut reply).expect("encapsulate");
            raw.send(reply.as_slice()).expect("send on eth0");
            seen.lock().unwrap().sent += 1;
        }
    }
    // Whatever the packet socket saw last is in the UDP socket's queue too.
    udp.set_nonblocking(true).unwrap();
    while let Ok(n) = udp.recv(&mut buf) {
        if let Ok((_, inner)) = podnet_encap::vxlan::parse_payload(&buf[..n]) {
            seen.lock().unwrap().udp_inner.push(inner.to_vec());
        }
    }
}

/// What the exchange must have shown.
fn check(seen: Seen, pinged: bool, kernel_udpcsum: bool) {
    assert!(
        pinged,
        "ping 10.244.1.2 through the kernel's VXLAN device to podnet was not answered \
         (podnet saw {} inner frames on its UDP socket and sent {} frames)",
        seen.udp_inner.len(),
        seen.sent
    );
    assert!(seen.sent >= 2, "podnet answered ARP and ping");
    let kinds = |frames: &mut dyn Iterator<Item = &Vec<u8>>| -> Vec<EtherType> {
        frames
            .filter_map(|i| {
                EthernetFrame::new_checked(&i[..])
                    .ok()
                    .map(|f| f.ethertype())
            })
            .collect()
    };
    let from_socket = kinds(&mut seen.udp_inner.iter());
    assert!(
        from_socket.contains(&EtherType::ARP),
        "the kernel's ARP request arrived"
    );
    assert!(
        from_socket.contains(&EtherType::IPV4),
        "the kernel's echo request arrived"
    );
    if kernel_udpcsum {
        return;
    }
    // podnet decapsulated the kernel's whole frames, and they carry what the socket got.
    assert!(
        seen.decapsulated.len() >= 2,
        "decapsulated {} kernel frames",
        seen.decapsulated.len()
    );
    for (inner, vx, sport, dport) in &seen.decapsulated {
        assert_eq!(vx.vni.get(), VNI);
        assert_eq!(vx.gbp, None);
        assert_eq!(*dport, PORT);
        assert!(
            (32768..61000).contains(sport),
            "kernel source port {sport} in the local port range"
        );
        assert!(
            seen.udp_inner.contains(inner),
            "a whole frame's inner frame was also received by the UDP socket"
        );
    }
    let whole = kinds(&mut seen.decapsulated.iter().map(|(i, ..)| i));
    assert!(
        whole.contains(&EtherType::ARP),
        "the kernel's ARP request was decapsulated"
    );
    assert!(
        whole.contains(&EtherType::IPV4),
        "the kernel's echo request was decapsulated"
    );
}
