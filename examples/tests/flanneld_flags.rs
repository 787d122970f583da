//! flanneld's interface selection and rule flags, as flannel has them, on a node namespace
//! with two interfaces: `eth0` (the default route) and `eth1`.
//!
//! Each run starts flanneld (vxlan, embedded store) until it writes subnet.env, then reads
//! what the kernel has: the VXLAN device's underlay device and local address, the iptables
//! chains, the routes.

use podnet_testsupport::{TestNs, require_root};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ETH0_IP: &str = "198.18.20.1";
const ETH1_IP: &str = "198.18.21.1";

/// A node with `eth0` (default route via 198.18.20.254) and `eth1` (198.18.21.0/24), each a
/// veth into a namespace of its own; and a state directory.
struct Node {
    ns: TestNs,
    _peers: [TestNs; 2],
    dir: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = TestNs::new(tag);
        let peers = [
            TestNs::new(&format!("{tag}-p0")),
            TestNs::new(&format!("{tag}-p1")),
        ];
        let addrs = [(ETH0_IP, "198.18.20.254"), (ETH1_IP, "198.18.21.254")];
        for (i, (peer, (ip, gw))) in peers.iter().zip(addrs).enumerate() {
            let (dev, up) = (format!("eth{i}"), format!("up{i}"));
            ns.exec(
                "ip",
                &[
                    "link",
                    "add",
                    &dev,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &up,
                    "netns",
                    peer.name(),
                ],
            );
            ns.exec("ip", &["addr", "add", &format!("{ip}/24"), "dev", &dev]);
            ns.exec("ip", &["link", "set", &dev, "up"]);
            peer.exec("ip", &["addr", "add", &format!("{gw}/24"), "dev", &up]);
            peer.exec("ip", &["link", "set", &up, "up"]);
        }
        ns.exec("ip", &["route", "add", "default", "via", "198.18.20.254"]);
        let dir = std::env::temp_dir().join(format!("podnet-flflags-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("net-conf.json"),
            r#"{"Network": "10.247.0.0/16", "Backend": {"Type": "vxlan"}}"#,
        )
        .unwrap();
        Node {
            ns,
            _peers: peers,
            dir,
        }
    }

    fn net_conf(&self, text: &str) {
        std::fs::write(self.dir.join("net-conf.json"), text).unwrap();
    }

    fn flanneld(&self, flags: &[&str]) -> Child {
        let _ = std::fs::remove_file(self.dir.join("subnet.env"));
        let log = std::fs::File::create(self.dir.join("flanneld.log")).unwrap();
        self.ns
            .command(env!("CARGO_BIN_EXE_flanneld"))
            .args(flags)
            .arg("--subnet-file")
            .arg(self.dir.join("subnet.env"))
            .arg("--net-config-path")
            .arg(self.dir.join("net-conf.json"))
            .arg("--store-dir")
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("flanneld.log")).unwrap_or_default()
    }

    /// Runs flanneld with `flags` until it wrote subnet.env, calls `check`, stops it.
    fn run(&self, flags: &[&str], check: impl FnOnce(&Node)) {
        let mut child = self.flanneld(flags);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.dir.join("subnet.env").exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("flanneld {flags:?} exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "flanneld {flags:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(self)));
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = result {
            eprintln!("flanneld {flags:?} log:\n{}", self.log());
            std::panic::resume_unwind(e);
        }
    }

    /// Runs flanneld with `flags` and expects it to stop with an error; returns its log.
    fn refused(&self, flags: &[&str]) -> String {
        let mut child = self.flanneld(flags);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(!status.success(), "flanneld {flags:?} succeeded");
                return self.log();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("flanneld {flags:?} kept running:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `flannel.1`'s underlay device and local address, from `ip -d link`.
    fn vxlan_underlay(&self) -> (String, String) {
        let text = self.ns.exec("ip", &["-d", "link", "show", "flannel.1"]);
        let word_after = |key: &str| {
            text.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .unwrap_or_else(|| panic!("no {key} in {text}"))
                .to_owned()
        };
        (word_after("dev"), word_after("local"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn interface_selection_as_flannel() {
    require_root!();
    let node = Node::new("flif");
    let eth1 = ("eth1".to_string(), ETH1_IP.to_string());
    // No flag: the default route's interface.
    node.run(&[], |n| {
        assert_eq!(n.vxlan_underlay(), ("eth0".into(), ETH0_IP.into()))
    });
    // By address; a name that does not exist is skipped.
    node.run(&["--iface", "wlan9", "--iface", ETH1_IP], |n| {
        assert_eq!(n.vxlan_underlay(), eth1)
    });
    // A comma-separated FLANNELD_IFACE-style list, by name.
    node.run(&["--iface", "wlan9,eth1"], |n| {
        assert_eq!(n.vxlan_underlay(), eth1)
    });
    // A regex on the addresses, after --iface found nothing.
    node.run(
        &["--iface", "wlan9", "--iface-regex", r"^198\.18\.21\."],
        |n| assert_eq!(n.vxlan_underlay(), eth1),
    );
    // The route to an address.
    node.run(&["--iface-can-reach", "198.18.21.254"], |n| {
        assert_eq!(n.vxlan_underlay(), eth1)
    });
    // --public-ip alone: the interface holding it.
    node.run(&["--public-ip", ETH1_IP], |n| {
        assert_eq!(n.vxlan_underlay(), eth1)
    });
    // Nothing matches: every attempt named.
    let log = node.refused(&["--iface", "wlan9", "--iface-regex", "^zz"]);
    assert!(
        log.contains("--iface wlan9: no interface named wlan9")
            && log.contains("--iface-regex ^zz: matches none of the interfaces"),
        "{log}"
    );
    // Not an IPv6 address: refused by name.
    let log = node.refused(&["--public-ipv6", "198.18.0.1"]);
    assert!(log.contains("--public-ipv6"), "{log}");
}

#[test]
fn masquerade_forward_and_blackhole_flags() {
    require_root!();
    let node = Node::new("flrules");
    // Defaults with --ip-masq: MASQUERADE --random-fully, FLANNEL-FWD, no blackhole route.
    node.run(&["--ip-masq"], |n| {
        // The rules and their jumps follow subnet.env within a moment.
        let wanted = [
            "-j MASQUERADE --random-fully",
            "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD",
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG",
        ];
        eventually(|| {
            let save = n.ns.exec("iptables-save", &[]);
            wanted.iter().all(|w| save.contains(w)).then_some(())
        });
        let routes = n.ns.exec("ip", &["route", "show", "type", "blackhole"]);
        assert!(routes.trim().is_empty(), "{routes}");
    });
    let fresh = Node::new("flrules2");
    fresh.run(
        &[
            "--ip-masq",
            "--ip-masq-fully-random-disable",
            "--iptables-forward-rules=false",
            "--ip-blackhole-route",
            "--iptables-resync",
            "1",
        ],
        |n| {
            let save = eventually(|| {
                let save = n.ns.exec("iptables-save", &[]);
                save.contains("-j MASQUERADE\n").then_some(save)
            });
            assert!(!save.contains("--random-fully"), "{save}");
            assert!(!save.contains("FLANNEL-FWD"), "{save}");
            let subnet = std::fs::read_to_string(n.dir.join("subnet.env"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("FLANNEL_SUBNET=").map(str::to_owned))
                .unwrap();
            // The route is for the network of the subnet (10.247.x.0/24).
            let net: ipnet::Ipv4Net = subnet.parse().unwrap();
            let want = format!("blackhole {}", net.trunc());
            eventually(|| {
                let routes = n.ns.exec("ip", &["route", "show", "type", "blackhole"]);
                routes.contains(&want).then_some(())
            });
            // Deleted, it comes back at the next resync.
            n.ns.exec(
                "ip",
                &["route", "del", "blackhole", &net.trunc().to_string()],
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while !n
                .ns
                .exec("ip", &["route", "show", "type", "blackhole"])
                .contains(&want)
            {
                assert!(Instant::now() < deadline, "blackhole route not restored");
                std::thread::sleep(Duration::from_millis(200));
            }
        },
    );
}

/// `check`'s value once it has one, within ten seconds.
fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn enable_nftables_and_net_conf_keys() {
    require_root!();
    let node = Node::new("flnft");
    node.net_conf(r#"{"Network": "10.247.0.0/16", "EnableNFTables": true, "Backend": {"type": "vxlan", "vni": 7}}"#);
    let mut tables = Vec::new();
    // Started twice: the same table each time, no rule twice.
    for _ in 0..2 {
        node.run(&["--ip-masq", "--iptables-resync", "1"], |n| {
            let table = eventually(|| {
                let out = n.ns.output("nft", &["list", "table", "ip", "flannel-ipv4"]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (text.contains("masquerade fully-random") && text.contains("chain forward"))
                    .then_some(text)
            });
            let save = n.ns.exec("iptables-save", &[]);
            assert!(
                !save.contains("FLANNEL-"),
                "iptables used with EnableNFTables: {save}"
            );
            // The Backend keys are read regardless of case, as flannel does: VNI 7.
            assert!(
                n.ns.output("ip", &["link", "show", "flannel.7"])
                    .status
                    .success()
            );
            std::thread::sleep(Duration::from_millis(1500)); // a resync
            let again = n.ns.exec("nft", &["list", "table", "ip", "flannel-ipv4"]);
            assert_eq!(again, table, "a resync changed the table");
            tables.push(table);
        });
    }
    assert_eq!(tables[0], tables[1], "a restart changed the table");

    node.net_conf(
        r#"{"Network": "10.247.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:247::/56",
            "Backend": {"Type": "vxlan"}}"#,
    );
    // Dual-stack needs the IPv6 default route's interface (or --iface) and an IPv6 address
    // on it; this node has neither.
    let log = node.refused(&[]);
    assert!(log.contains("no IPv6 default route"), "{log}");
    let log = node.refused(&["--iface", "eth0"]);
    assert!(log.contains("eth0 has no global IPv6 address"), "{log}");
    // flannel's udp backend is IPv4-only: EnableIPv6 with it is refused by name.
    node.net_conf(
        r#"{"Network": "10.247.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:247::/56",
            "Backend": {"Type": "udp"}}"#,
    );
    let log = node.refused(&[]);
    assert!(log.contains("flannel's udp backend is IPv4-only"), "{log}");
    node.net_conf(
        r#"{"Network": "10.247.0.0/16", "Backend": {"Type": "vxlan", "Learning": true}}"#,
    );
    let log = node.refused(&[]);
    assert!(log.contains("Backend.Learning"), "{log}");
}
