//! Two simulated nodes for the tunnel's kernel tests and benchmark: namespaces `node1` and
//! `node2` joined by an underlay veth (198.18.0.1 and 198.18.0.2), each with one pod namespace
//! behind it (10.244.1.2 and 10.244.2.2, pod subnets 10.244.1.0/24 and 10.244.2.0/24). The pods
//! reach each other over one of: a plain routed veth path, kernel VXLAN programmed by
//! podnet-links, or podnet's UdpTunnel on a TUN device. Nothing touches the root namespace.
#![allow(dead_code, unreachable_pub)]

use ipnet::{IpNet, Ipv4Net};
use podnet_encap::tunnel::{self, Mode, Peer, UdpTunnel};
use podnet_encap::{IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, PacketBuf, UdpRepr};
use podnet_links::{FdbEntry, Handle, Neighbour, Route, Vxlan};
use podnet_testsupport::TestNs;
use std::net::{IpAddr, Ipv4Addr};

/// The nodes' underlay addresses.
pub const NODE_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];
/// The pods' addresses.
pub const POD_IP: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)];
/// The cluster network.
pub const NETWORK: &str = "10.244.0.0/16";
/// The underlay MTU.
pub const UNDERLAY_MTU: u32 = 1500;

/// A flannel-UDP payload: an IPv4/UDP packet from `src` port 7000 to pod 1's port 6000 with
/// `body`.
pub fn crafted(src: Ipv4Addr, body: &[u8]) -> Vec<u8> {
    let mut buf = PacketBuf::from_payload(64, body);
    let pair = IpPair::V4 {
        src,
        dst: POD_IP[0],
    };
    UdpRepr {
        src_port: 7000,
        dst_port: 6000,
        payload_len: 0,
    }
    .prepend(&mut buf, &pair, true)
    .expect("udp");
    Ipv4Repr::new(src, POD_IP[0], IpProtocol::UDP, 64, 0)
        .prepend(&mut buf)
        .expect("ipv4");
    assert!(Ipv4Packet::new_checked(buf.as_slice()).is_ok());
    buf.as_slice().to_vec()
}

/// Node `i`'s pod subnet.
pub fn subnet(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 244, i as u8 + 1, 0), 24).expect("subnet")
}

/// Two nodes with a pod each.
pub struct TwoNodes {
    /// The node namespaces.
    pub nodes: [TestNs; 2],
    /// The pod namespaces.
    pub pods: [TestNs; 2],
}

impl TwoNodes {
    /// The namespaces, the underlay and the pods (pod MTU `pod_mtu`), forwarding on; no path
    /// between the pod subnets yet.
    pub fn new(tag: &str, pod_mtu: u32) -> TwoNodes {
        let pair = podnet_testsupport::linked_pair(
            tag,
            &format!("{}/24", NODE_IP[0]),
            &format!("{}/24", NODE_IP[1]),
        );
        let nodes = [pair.a, pair.b];
        let pods = [
            TestNs::new(&format!("{tag}-pod1")),
            TestNs::new(&format!("{tag}-pod2")),
        ];
        let mtu = pod_mtu.to_string();
        for i in 0..2 {
            let (node, pod) = (&nodes[i], &pods[i]);
            node.sysctl_set("net.ipv4.ip_forward", "1")
                .expect("ip_forward");
            node.exec(
                "ip",
                &[
                    "link",
                    "add",
                    "veth0",
                    "mtu",
                    &mtu,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "mtu",
                    &mtu,
                    "netns",
                    pod.name(),
                ],
            );
            let gw = Ipv4Addr::new(10, 244, i as u8 + 1, 1);
            node.exec("ip", &["addr", "add", &format!("{gw}/24"), "dev", "veth0"]);
            node.exec("ip", &["link", "set", "veth0", "up"]);
            pod.exec(
                "ip",
                &["addr", "add", &format!("{}/24", POD_IP[i]), "dev", "eth0"],
            );
            pod.exec("ip", &["link", "set", "eth0", "up"]);
            pod.exec("ip", &["route", "add", "default", "via", &gw.to_string()]);
        }
        TwoNodes { nodes, pods }
    }

    /// A plain routed path: each node routes the other's pod subnet via its underlay address
    /// (flannel's host-gw), no encapsulation.
    pub fn plain_routes(&self) {
        for i in 0..2 {
            let j = 1 - i;
            self.nodes[i].exec(
                "ip",
                &[
                    "route",
                    "add",
                    &subnet(j).to_string(),
                    "via",
                    &NODE_IP[j].to_string(),
                ],
            );
        }
    }

    /// Kernel VXLAN as flannel's vxlan backend programs it, through podnet-links:
    /// `flannel.1` (VNI 1, port 8472, MTU underlay - 50), and per peer a neighbour entry, an FDB
    /// entry and an onlink route.
    pub fn vxlan(&self) {
        let handles: Vec<Handle> = self
            .nodes
            .iter()
            .map(|n| Handle::in_ns(n).expect("netlink handle"))
            .collect();
        let mut macs = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let eth0 = h.link().index("eth0").expect("eth0");
            h.link()
                .add(
                    &Vxlan::new("flannel.1", 1)
                        .local(IpAddr::V4(NODE_IP[i]))
                        .dev(eth0)
                        .port(8472)
                        .learning(false)
                        .mtu(UNDERLAY_MTU - 50),
                )
                .expect("add vxlan");
            let local = IpNet::new(IpAddr::V4(subnet(i).network()), 32).expect("/32");
            h.addr().add("flannel.1", local).expect("vxlan address");
            h.link().set("flannel.1").up().apply().expect("vxlan up");
            macs.push(h.link().get("flannel.1").expect("vxlan").mac.expect("mac"));
        }
        for (i, h) in handles.iter().enumerate() {
            let j = 1 - i;
            let gw = IpAddr::V4(subnet(j).network());
            h.neigh()
                .replace(&Neighbour::new(gw, macs[j], "flannel.1"))
                .expect("neighbour");
            h.fdb()
                .replace(&FdbEntry::new(macs[j], "flannel.1").dst(IpAddr::V4(NODE_IP[j])))
                .expect("fdb");
            h.route()
                .replace(
                    &Route::new(IpNet::V4(subnet(j)))
                        .via(gw)
                        .dev("flannel.1")
                        .onlink(),
                )
                .expect("route");
        }
    }

    /// podnet's UdpTunnel on each node, set up as flannel's udp backend does: `flannel0` with
    /// `<subnet>.0/32`, MTU underlay - 28, a route for the whole network, and the other node
    /// as the one peer. `queues` TUN queues (one worker each).
    pub fn udp_tunnels(&self, mode: Mode, queues: u32) -> [UdpTunnel; 2] {
        self.udp_tunnels_with(mode, queues, true)
    }

    /// [`TwoNodes::udp_tunnels`], choosing whether coalesced segments' checksums are checked.
    pub fn udp_tunnels_with(&self, mode: Mode, queues: u32, verify: bool) -> [UdpTunnel; 2] {
        let make = |i: usize| {
            let node = &self.nodes[i];
            let h = Handle::in_ns(node).expect("netlink handle");
            let dev = h
                .link()
                .add(&tunnel::tun_spec("flannel0", queues, mode))
                .expect("add tun");
            let mtu = (UNDERLAY_MTU - 28).to_string();
            node.exec(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{}/32", subnet(i).network()),
                    "dev",
                    "flannel0",
                ],
            );
            node.exec("ip", &["link", "set", "flannel0", "mtu", &mtu, "up"]);
            node.exec("ip", &["route", "add", NETWORK, "dev", "flannel0"]);
            let addr = std::net::SocketAddrV4::new(NODE_IP[i], tunnel::PORT);
            let sockets =
                tunnel::bind_sockets_in_ns(node.ns(), addr, queues as usize).expect("bind UDP");
            UdpTunnel::builder()
                .tun(dev.into_queues())
                .sockets(sockets)
                .mode(mode)
                .icmp_source(icmp_source())
                .local_subnet(subnet(i))
                .verify_checksums(verify)
                .peers(&[Peer::new(subnet(1 - i), NODE_IP[1 - i])])
                .start()
                .expect("start tunnel")
        };
        [make(0), make(1)]
    }
}

/// The source of ICMP errors from the tunnel: an address of the cluster network that no node
/// holds (the network address; flannel leases start one subnet above it).
pub fn icmp_source() -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, 0)
}
