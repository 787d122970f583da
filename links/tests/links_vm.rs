//! The link kinds this machine's kernel lacks, ipvlan and VLAN (802.1Q and 802.1ad), on a
//! real kernel: each test reported under its own name. Where the kernel has both they run
//! natively; otherwise (this machine: no CONFIG_IPVLAN, no CONFIG_VLAN_8021Q) all in one boot
//! of a qemu VM with Debian's kernel and its `ipvlan` and `8021q` modules, this very program
//! running there (`nat/tests/support/vm.rs` and `vm_tests.rs`; `PODNET_VM=1` asks for the VM
//! anyway). When the VM cannot be had the tests skip through `podnet_testsupport::skip`,
//! saying why, which `PODNET_NO_SKIPS=1` turns into a failure.
//!
//! The oracles are the kernel's own: its netlink answer read back, the VLAN table in
//! `/proc/net/vlan/`, and traffic between namespaces.

#[path = "../../nat/tests/support/vm.rs"]
mod vm;
#[path = "../../nat/tests/support/vm_tests.rs"]
mod vm_tests;

use ipnet::IpNet;
use podnet_links::{
    Handle, Ipvlan, IpvlanMode, LinkKind, StackedInfo, Veth, Vlan, VlanInfo, VlanProtocol,
};
use podnet_testsupport::{TestNs, require_root};
use vm::Vm;
use vm_tests::{KernelTest, KernelTests};

/// The modules the tests need in the guest (their dependencies are loaded with them).
const MODULES: &[&str] = &["veth", "8021q", "ipvlan"];

static TESTS: KernelTests = KernelTests {
    program: "links_vm",
    feature: "ipvlan and 802.1Q VLAN devices",
    tests: &[
        KernelTest {
            name: "ipvlan_in_every_mode",
            run: ipvlan_in_every_mode,
        },
        KernelTest {
            name: "ipvlan_l2_carries_traffic",
            run: ipvlan_l2_carries_traffic,
        },
        KernelTest {
            name: "vlan_802_1q_and_802_1ad",
            run: vlan_802_1q_and_802_1ad,
        },
        KernelTest {
            name: "vlan_tags_carry_traffic",
            run: vlan_tags_carry_traffic,
        },
        KernelTest {
            name: "kind_replies_as_captured",
            run: kind_replies_as_captured,
        },
    ],
    native: kernel_has_ipvlan_and_vlan,
    setup,
};

fn setup(vm: &mut Vm) -> Result<(), String> {
    vm.modules(MODULES)?;
    Ok(())
}

/// `true` when a namespace of our own can have both kinds. Needs root; without it, `false`.
fn kernel_has_ipvlan_and_vlan() -> bool {
    if !vm::is_root() {
        return false;
    }
    let ns = TestNs::new("kinds-probe");
    let Ok(h) = Handle::in_ns(&ns) else {
        return false;
    };
    h.link().add(&Veth::new("p0").peer("p1")).is_ok()
        && h.link().add(&Ipvlan::new("iv", "p0")).is_ok()
        && h.link().add(&Vlan::new("vl", "p1", 2)).is_ok()
}

fn ipvlan_in_every_mode() {
    require_root!();
    let ns = TestNs::new("ipvlan");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("up0").peer("up1")).unwrap();
    for (name, mode) in [
        ("ivl2", IpvlanMode::L2),
        ("ivl3", IpvlanMode::L3),
        ("ivl3s", IpvlanMode::L3s),
    ] {
        h.link().add(&Ipvlan::new(name, "up0").mode(mode)).unwrap();
        let l = h.link().get(name).unwrap();
        assert_eq!(l.kind, Some(LinkKind::Ipvlan), "{l}");
        assert_eq!(l.stacked, Some(StackedInfo::Ipvlan(mode)), "{l}");
        assert_eq!(l.link_name.as_deref(), Some("up0"));
        // An ipvlan device has its parent's MAC.
        assert_eq!(l.mac, h.link().get("up0").unwrap().mac);
        assert!(
            l.to_string().contains(&format!("ipvlan  mode {mode}")),
            "{l}"
        );
    }
    // The mode is the parent's: after l3s was added on up0, the l2 and l3 devices are l3s too.
    for name in ["ivl2", "ivl3"] {
        let l = h.link().get(name).unwrap();
        assert_eq!(l.stacked, Some(StackedInfo::Ipvlan(IpvlanMode::L3s)), "{l}");
    }
    let e = h.link().add(&Ipvlan::new("ivl2", "up0")).unwrap_err();
    assert!(e.is_exists(), "{e}");
    let e = h.link().add(&Ipvlan::new("ivx", "nosuch0")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    h.link().del("ivl3").unwrap();
    assert!(h.link().get("ivl3").unwrap_err().is_not_found());
}

/// An l2 ipvlan device moved into a pod namespace reaches an address on the other end of its
/// parent's veth.
fn ipvlan_l2_carries_traffic() {
    require_root!();
    let (node, peer, pod) = (
        TestNs::new("ipvl-node"),
        TestNs::new("ipvl-peer"),
        TestNs::new("ipvl-pod"),
    );
    let h = Handle::in_ns(&node).unwrap();
    h.link()
        .add(&Veth::new("eth0").peer("eth0").peer_netns(&peer))
        .unwrap();
    h.link().set("eth0").up().apply().unwrap();
    h.link().add(&Ipvlan::new("ipv0", "eth0")).unwrap();
    h.link().set("ipv0").netns(&pod).apply().unwrap();
    let p = Handle::in_ns(&pod).unwrap();
    p.addr()
        .add("ipv0", "198.18.70.2/24".parse::<IpNet>().unwrap())
        .unwrap();
    p.link().set("ipv0").up().apply().unwrap();
    let q = Handle::in_ns(&peer).unwrap();
    q.addr()
        .add("eth0", "198.18.70.1/24".parse::<IpNet>().unwrap())
        .unwrap();
    q.link().set("eth0").up().apply().unwrap();
    assert!(
        pod.ping("198.18.70.1", 3),
        "ipvlan l2 pod to the veth's far end"
    );
}

/// The kernel's VLAN table of the namespace, for one device (`/proc/net/vlan/DEV`).
fn proc_vlan(ns: &TestNs, dev: &str) -> String {
    // /proc/net is the main thread's namespace; /proc/thread-self/net this thread's.
    let path = format!("/proc/thread-self/net/vlan/{dev}");
    ns.run(move || std::fs::read_to_string(&path))
        .unwrap()
        .unwrap_or_else(|e| panic!("/proc/net/vlan/{dev}: {e}"))
}

fn vlan_802_1q_and_802_1ad() {
    require_root!();
    let ns = TestNs::new("vlan");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("trunk0").peer("trunk1")).unwrap();
    h.link().add(&Vlan::new("trunk0.5", "trunk0", 5)).unwrap();
    h.link()
        .add(&Vlan::new("svc100", "trunk0", 100).protocol(VlanProtocol::Dot1Ad))
        .unwrap();
    let q = h.link().get("trunk0.5").unwrap();
    assert_eq!(q.kind, Some(LinkKind::Vlan));
    assert_eq!(
        q.stacked,
        Some(StackedInfo::Vlan(VlanInfo {
            id: 5,
            protocol: VlanProtocol::Dot1Q
        }))
    );
    assert!(q.to_string().contains("vlan protocol 802.1Q id 5"), "{q}");
    let ad = h.link().get("svc100").unwrap();
    assert_eq!(
        ad.stacked,
        Some(StackedInfo::Vlan(VlanInfo {
            id: 100,
            protocol: VlanProtocol::Dot1Ad
        }))
    );
    assert!(proc_vlan(&ns, "trunk0.5").contains("VID: 5"));
    assert!(proc_vlan(&ns, "svc100").contains("VID: 100"));
    // The same id twice on one parent is refused by the kernel; an id above 4094 by us.
    assert!(h.link().add(&Vlan::new("dup5", "trunk0", 5)).is_err());
    let e = h.link().add(&Vlan::new("bad", "trunk0", 4095)).unwrap_err();
    assert!(
        matches!(e, podnet_links::Error::InvalidArgument { .. }),
        "{e}"
    );
}

/// VLAN 5 on both ends of a veth pair across two namespaces: the tagged devices talk, and a
/// device on VLAN 6 does not hear VLAN 5.
fn vlan_tags_carry_traffic() {
    require_root!();
    let (a, b) = (TestNs::new("vlan-a"), TestNs::new("vlan-b"));
    let ha = Handle::in_ns(&a).unwrap();
    let hb = Handle::in_ns(&b).unwrap();
    ha.link()
        .add(&Veth::new("trunk").peer("trunk").peer_netns(&b))
        .unwrap();
    for (h, addr, id) in [(&ha, "198.18.71.1/24", 5), (&hb, "198.18.71.2/24", 5)] {
        h.link().set("trunk").up().apply().unwrap();
        h.link().add(&Vlan::new("v", "trunk", id)).unwrap();
        h.addr().add("v", addr.parse::<IpNet>().unwrap()).unwrap();
        h.link().set("v").up().apply().unwrap();
    }
    assert!(a.ping("198.18.71.2", 3), "VLAN 5 to VLAN 5");
    // Move b's side to VLAN 6: nothing answers any more.
    hb.link().del("v").unwrap();
    hb.link().add(&Vlan::new("v", "trunk", 6)).unwrap();
    hb.addr()
        .add("v", "198.18.71.2/24".parse::<IpNet>().unwrap())
        .unwrap();
    hb.link().set("v").up().apply().unwrap();
    assert!(!a.ping("198.18.71.2", 1), "VLAN 5 must not reach VLAN 6");
}

/// The devices of the reply fixtures `links/tests/fixtures/{ipvlan,vlan}_*_link.hex`: fixture
/// name, device name and what it reads back as.
const REPLY_FIXTURES: &[(&str, &str, StackedInfo)] = &[
    (
        "ipvlan_l2_link",
        "ivl2",
        StackedInfo::Ipvlan(IpvlanMode::L2),
    ),
    (
        "ipvlan_l3_link",
        "ivl3",
        StackedInfo::Ipvlan(IpvlanMode::L3),
    ),
    (
        "ipvlan_l3s_link",
        "ivl3s",
        StackedInfo::Ipvlan(IpvlanMode::L3s),
    ),
    (
        "vlan_8021q_link",
        "va.5",
        StackedInfo::Vlan(VlanInfo {
            id: 5,
            protocol: VlanProtocol::Dot1Q,
        }),
    ),
    (
        "vlan_8021ad_link",
        "vb.100",
        StackedInfo::Vlan(VlanInfo {
            id: 100,
            protocol: VlanProtocol::Dot1Ad,
        }),
    ),
];

/// The marker of a captured reply in the test's output: `PODNET-FIXTURE <name> <hex>`.
const FIXTURE_MARK: &str = "PODNET-FIXTURE";

/// The kernel's RTM_NEWLINK replies to a link dump (`ip -d link show`) for ipvlan devices in
/// modes l2, l3 and l3s and VLAN devices 802.1Q and 802.1ad: each is printed (sequence number
/// and port id zeroed) with [`FIXTURE_MARK`], which is how the reply fixtures of the
/// root-free wire tests (`src/wire_tests.rs`) were captured: `tests/fixtures/capture.py
/// --from-vm-log` turns the guest's console log into the `.hex` files. The links read back
/// with the kind's settings.
fn kind_replies_as_captured() {
    use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};

    require_root!();
    let ns = TestNs::new("kind-replies");
    let h = Handle::in_ns(&ns).unwrap();
    h.link().add(&Veth::new("va").peer("vb")).unwrap();
    h.link().add(&Veth::new("vc").peer("vd")).unwrap();
    // One parent per mode: the mode is the parent's (all ipvlan devices on one parent share
    // it; adding one in another mode changes it for all).
    for (name, parent, mode) in [
        ("ivl2", "va", IpvlanMode::L2),
        ("ivl3", "vb", IpvlanMode::L3),
        ("ivl3s", "vc", IpvlanMode::L3s),
    ] {
        h.link().add(&Ipvlan::new(name, parent).mode(mode)).unwrap();
    }
    h.link().add(&Vlan::new("va.5", "va", 5)).unwrap();
    h.link()
        .add(&Vlan::new("vb.100", "vb", 100).protocol(VlanProtocol::Dot1Ad))
        .unwrap();

    // One dump on a socket of the namespace, each message kept as the kernel sent it.
    let messages: Vec<Vec<u8>> = ns
        .run(|| {
            let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
            sock.bind_auto()?;
            // As `ip -d link show` asks (the other reply fixtures are its answers).
            let mut get = LinkMessage::default();
            get.attributes.push(LinkAttribute::ExtMask(vec![
                LinkExtentMask::Vf,
                LinkExtentMask::SkipStats,
            ]));
            let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(get));
            req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            req.header.sequence_number = 1;
            req.finalize();
            let mut buf = vec![0; req.buffer_len()];
            req.serialize(&mut buf);
            sock.send(&buf, 0)?;
            let mut out = Vec::new();
            loop {
                let (data, _) = sock.recv_from_full()?;
                for m in podnet_links::nlattr::messages(&data) {
                    let (hdr, body) = m.map_err(|e| std::io::Error::other(e.to_string()))?;
                    if hdr.message_type == libc::NLMSG_DONE as u16 {
                        return Ok::<_, std::io::Error>(out);
                    }
                    assert_eq!(hdr.message_type, libc::RTM_NEWLINK, "the dump failed");
                    // The message again, sequence number and port id zeroed.
                    let mut msg = hdr.length.to_ne_bytes().to_vec();
                    msg.extend(hdr.message_type.to_ne_bytes());
                    msg.extend(hdr.flags.to_ne_bytes());
                    msg.extend([0; 8]);
                    msg.extend(body);
                    out.push(msg);
                }
            }
        })
        .unwrap()
        .unwrap();
    let name_of = |bytes: &[u8]| {
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = m.payload else {
            panic!("not a link: {m:?}")
        };
        link.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n),
            _ => None,
        })
    };
    let mine: Vec<_> = REPLY_FIXTURES
        .iter()
        .map(|(fixture, dev, want)| {
            let bytes = messages
                .iter()
                .find(|b| name_of(b).as_deref() == Some(*dev))
                .unwrap_or_else(|| panic!("{dev} is not in the dump"));
            (*fixture, *dev, want, bytes)
        })
        .collect();
    // All printed before anything is asserted.
    for (fixture, _, _, bytes) in &mine {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("{FIXTURE_MARK} {fixture} {hex}");
    }
    // The wire tests parse, assert and emit these bytes again; here, what podnet-links reads
    // from the kernel's answer to a get of each.
    for (_, dev, want, _) in mine {
        let l = h.link().get(dev).unwrap();
        assert_eq!(l.stacked.as_ref(), Some(want), "{l}");
    }
}

fn main() {
    vm_tests::main(&TESTS)
}
