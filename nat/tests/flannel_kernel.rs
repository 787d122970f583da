//! flannel's rules in a namespace: installed as flanneld installs them, and replaced atomically
//! (a reader running concurrently never sees the chain without its rules).

use podnet_nat::flannel::FlannelNetwork;
use podnet_nat::kube_proxy::iptables_sync::run_with_input;
use podnet_nat::nftables::NftSocket;
use podnet_testsupport::{TestNs, require_root};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn net(pod: &str) -> FlannelNetwork {
    FlannelNetwork {
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        pod_cidr: pod.parse().unwrap(),
        random_fully: true,
    }
}

#[test]
fn iptables_rules_are_installed_and_replaced_atomically() {
    require_root!();
    let ns = TestNs::new("flannel-ipt");
    net("10.244.1.0/24").apply(&ns).expect("apply");
    let save = ns.exec("iptables", &["-t", "nat", "-S", "FLANNEL-POSTRTG"]);
    let rules: Vec<&str> = save.lines().filter(|l| l.starts_with("-A")).collect();
    assert_eq!(rules.len(), 6, "{save}");
    assert!(save.contains("-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"), "{save}");
    let fwd = ns.exec("iptables", &["-t", "filter", "-S", "FLANNEL-FWD"]);
    assert!(
        fwd.contains(
            "-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT"
        ),
        "{fwd}"
    );

    // Concurrent reader while the lease changes back and forth.
    let masq_rules = |text: &str| text.lines().filter(|l| l.starts_with("-A")).count();
    readers_see_whole_chains(
        &ns,
        ("iptables", &["-t", "nat", "-S", "FLANNEL-POSTRTG"]),
        masq_rules,
        |pod| net(pod).apply(&ns).expect("update"),
    );
    // The jumps exist exactly once.
    let post = ns.exec("iptables", &["-t", "nat", "-S", "POSTROUTING"]);
    assert_eq!(post.matches("FLANNEL-POSTRTG").count(), 1, "{post}");
    let fwd = ns.exec("iptables", &["-t", "filter", "-S", "FORWARD"]);
    assert_eq!(fwd.matches("FLANNEL-FWD").count(), 1, "{fwd}");
}

#[test]
fn nftables_tables_are_installed_and_replaced_atomically() {
    require_root!();
    let ns = TestNs::new("flannel-nft");
    podnet_nat::flannel_nft::apply(&ns, &net("10.244.1.0/24")).expect("apply");
    let out = ns.exec("nft", &["list", "table", "ip", "flannel-ipv4"]);
    for want in [
        "type nat hook postrouting priority srcnat",
        "meta mark & 0x00004000 == 0x00004000 return",
        "ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
        "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
        "ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
        "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
        "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
        "type filter hook forward priority filter",
        "ip saddr 10.244.0.0/16 accept",
        "ip daddr 10.244.0.0/16 accept",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let masq_rules =
        |text: &str| text.matches("return").count() + text.matches("masquerade").count();
    readers_see_whole_chains(
        &ns,
        ("nft", &["list", "chain", "ip", "flannel-ipv4", "postrtg"]),
        masq_rules,
        |pod| podnet_nat::flannel_nft::apply(&ns, &net(pod)).expect("update"),
    );
}

/// Switches the pod subnet 30 times with `update` while another thread lists flannel's
/// masquerade chain with `list` (a program and its arguments) in `ns`: every listing, counted
/// with `rules`, shows the whole chain (6 rules), never a partial one.
fn readers_see_whole_chains(
    ns: &TestNs,
    (program, args): (&str, &[&str]),
    rules: fn(&str) -> usize,
    update: impl Fn(&str),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let ns = ns.ns().clone();
        let (program, args) = (
            program.to_owned(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = ns.command(&program).args(&args).output().unwrap();
                seen.push(rules(&String::from_utf8_lossy(&out.stdout)));
            }
            seen
        })
    };
    for i in 0..30 {
        update(if i % 2 == 0 {
            "10.244.2.0/24"
        } else {
            "10.244.1.0/24"
        });
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|n| *n == 6),
        "a reader saw a partial chain: {seen:?}"
    );
}

/// `nft list ruleset` after flannel's nftables tables were applied to a fresh namespace, as
/// recorded from the earlier libnftnl-based implementation (the `nftnl` crate), which the
/// netlink batch built by podnet itself must reproduce (the mark rule since edited by hand to
/// test kube-proxy's bit, `meta mark & 0x00004000 == 0x00004000`, as flannel's iptables rule
/// does):
/// IPv4 and IPv6 with byte-aligned prefixes and `fully-random`.
const GOLDEN_DUAL: &str = include_str!("fixtures/flannel-nft-dual.ruleset");
/// The same with prefixes off byte boundaries (/12, /25, /57, /62) and IPv6 without
/// `fully-random`.
const GOLDEN_ODD: &str = include_str!("fixtures/flannel-nft-odd.ruleset");

fn network(cluster: &str, pod: &str, random_fully: bool) -> FlannelNetwork {
    FlannelNetwork {
        cluster_cidr: cluster.parse().unwrap(),
        pod_cidr: pod.parse().unwrap(),
        random_fully,
    }
}

/// The whole ruleset `nft` lists equals the recorded golden text, after the first apply, after
/// an idempotent re-apply, and after a change of lease and back.
#[test]
fn nftables_ruleset_equals_golden() {
    require_root!();
    let cases = [
        (
            "dual",
            GOLDEN_DUAL,
            [
                network("10.244.0.0/16", "10.244.1.0/24", true),
                network("fd10:244::/56", "fd10:244:0:1::/64", true),
            ],
        ),
        (
            "odd",
            GOLDEN_ODD,
            [
                network("10.240.0.0/12", "10.240.3.128/25", true),
                network("fd10:244::/57", "fd10:244:0:4::/62", false),
            ],
        ),
    ];
    for (tag, golden, nets) in cases {
        let ns = TestNs::new("flannel-golden");
        let list = || ns.exec("nft", &["list", "ruleset"]);
        for net in &nets {
            podnet_nat::flannel_nft::apply(&ns, net).expect("apply");
        }
        assert_eq!(list(), golden, "{tag}: first apply");
        for net in &nets {
            podnet_nat::flannel_nft::apply(&ns, net).expect("re-apply");
        }
        assert_eq!(list(), golden, "{tag}: re-apply");
        for net in &nets {
            let mut other = net.clone();
            other.pod_cidr = match net.pod_cidr {
                ipnet::IpNet::V4(_) => "10.255.0.0/24".parse().unwrap(),
                ipnet::IpNet::V6(_) => "fd10:255::/64".parse().unwrap(),
            };
            podnet_nat::flannel_nft::apply(&ns, &other).expect("other lease");
        }
        assert_ne!(list(), golden, "{tag}: other lease");
        for net in &nets {
            podnet_nat::flannel_nft::apply(&ns, net).expect("lease back");
        }
        assert_eq!(list(), golden, "{tag}: lease back");
    }
}

/// The batch podnet sends over netlink builds the same tables as `nft -f` of the same
/// transaction written as a script (`Transaction::render`): the same `nft list` text and the
/// same expressions read back over netlink, rule by rule.
#[test]
fn nftables_netlink_equals_nft_of_the_script() {
    require_root!();
    for net in [
        network("10.244.0.0/16", "10.244.1.0/24", true),
        network("10.240.0.0/12", "10.240.3.128/25", false),
        network("fd10:244::/56", "fd10:244:0:1::/64", true),
        network("fd10:244::/57", "fd10:244:0:4::/62", false),
    ] {
        let tx = podnet_nat::flannel_nft::batch(&net);
        let script = tx.render();
        let by_nft = TestNs::new("flannel-nft-f");
        run_with_input(&by_nft, "nft", &["-f", "-"], script.as_bytes())
            .unwrap_or_else(|e| panic!("nft refuses the script: {e}\n{script}"));
        let by_podnet = TestNs::new("flannel-nft-nl");
        podnet_nat::flannel_nft::send(&by_podnet, &tx).expect("send");
        let list = |ns: &TestNs| ns.exec("nft", &["list", "ruleset"]);
        assert_eq!(list(&by_podnet), list(&by_nft), "{script}");
        let rules = |ns: &TestNs| {
            let mut sock = NftSocket::open_in(ns).unwrap();
            sock.list_rules(tx.family, &tx.table, None)
                .unwrap()
                .into_iter()
                .map(|r| (r.chain, r.insns, r.undecoded))
                .collect::<Vec<_>>()
        };
        let (ours, nfts) = (rules(&by_podnet), rules(&by_nft));
        assert_eq!(ours.len(), 8);
        assert!(
            ours.iter().all(|r| r.2 == 0),
            "undecoded expressions: {ours:?}"
        );
        assert_eq!(ours, nfts, "{script}");
    }
}

/// The source address `outside` sees for a UDP datagram that a pod (10.244.1.2) sends through
/// `router`, where flannel's rules are installed by `install` and every forwarded packet carries
/// the mark `mark` (set in prerouting, as kube-proxy's KUBE-MARK-MASQ or another agent would).
fn source_seen_outside(tag: &str, mark: u32, install: impl Fn(&TestNs)) -> std::net::IpAddr {
    let pod = TestNs::new(&format!("{tag}-pod"));
    let router = TestNs::new(&format!("{tag}-rt"));
    let outside = TestNs::new(&format!("{tag}-out"));
    for (ns, peer, name) in [(&pod, &router, "pod0"), (&outside, &router, "out0")] {
        ns.add_veth("eth0", peer, name);
        ns.exec("ip", &["link", "set", "eth0", "up"]);
        router.exec("ip", &["link", "set", name, "up"]);
    }
    pod.exec("ip", &["addr", "add", "10.244.1.2/24", "dev", "eth0"]);
    pod.exec("ip", &["route", "add", "default", "via", "10.244.1.1"]);
    router.exec("ip", &["addr", "add", "10.244.1.1/24", "dev", "pod0"]);
    router.exec("ip", &["addr", "add", "198.19.0.254/24", "dev", "out0"]);
    router.ns().sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    outside.exec("ip", &["addr", "add", "198.19.0.1/24", "dev", "eth0"]);
    run_with_input(
        &router,
        "nft",
        &["-f", "-"],
        format!(
            "add table ip mark-test\n\
             add chain ip mark-test pre {{ type filter hook prerouting priority mangle ; }}\n\
             add rule ip mark-test pre meta mark set {mark:#x}\n"
        )
        .as_bytes(),
    )
    .expect("mark rule");
    install(&router);
    outside
        .ns()
        .run(|| -> std::net::IpAddr {
            let sock = std::net::UdpSocket::bind("198.19.0.1:9999").unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            pod.ns()
                .run(|| {
                    let s = std::net::UdpSocket::bind("10.244.1.2:0").unwrap();
                    for _ in 0..3 {
                        s.send_to(b"x", "198.19.0.1:9999").unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                })
                .unwrap();
            let mut buf = [0u8; 16];
            let (_, from) = sock.recv_from(&mut buf).expect("datagram from the pod");
            from.ip()
        })
        .unwrap()
}

/// A packet carrying kube-proxy's masquerade bit 0x4000 is left alone by flannel's rules even
/// when another bit of the mark is set too (0x4001): both backends match the bit, as flannel's
/// iptables rule `-m mark --mark 0x4000/0x4000` does, so they agree on every packet.
#[test]
fn both_backends_leave_packets_with_the_kube_proxy_bit_alone() {
    require_root!();
    let net = net("10.244.1.0/24");
    let iptables = |ns: &TestNs| net.apply(ns).expect("iptables rules");
    let nftables = |ns: &TestNs| podnet_nat::flannel_nft::apply(ns, &net).expect("nft rules");
    let pod: std::net::IpAddr = "10.244.1.2".parse().unwrap();
    let masqueraded: std::net::IpAddr = "198.19.0.254".parse().unwrap();
    // Without the bit both masquerade; with exactly the bit, or the bit among others, neither
    // does.
    for (mark, want) in [
        (0, masqueraded),
        (0x4000, pod),
        (0x4001, pod),
        (0xc000, pod),
    ] {
        assert_eq!(
            source_seen_outside("fmark-ipt", mark, iptables),
            want,
            "iptables, mark {mark:#x}"
        );
        assert_eq!(
            source_seen_outside("fmark-nft", mark, nftables),
            want,
            "nftables, mark {mark:#x}"
        );
    }
}
