//! `portmap` side by side with the reference plugin (Debian containernetworking-plugins 1.1.1):
//! the same conflist (bridge + portmap) through the reference plugins and podnet's, each in its
//! own namespaces; the same iptables rules (iptables-save of the "host" namespace, byte for
//! byte: the chain names hash the network name and container id, which both sides share), the
//! same `route_localnet`, conntrack entries of the UDP host ports deleted, only the container's
//! own rules gone after its DEL, and real traffic: a hostPort reached from the node (its own
//! address and 127.0.0.1), from another pod and from the pod itself (hairpin), TCP and UDP.

mod cni_plugins_support;
use cni_plugins_support::*;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

const NET: &str = "pmnet";

fn bridge_conf(d: &TempDir) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cnipm0",
        "isGateway": true, "ipMasq": true, "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": d.path(), "subnet": "10.88.0.0/24"}})
}

fn with_prev(conf: &Value, prev: &Value) -> String {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c.to_string()
}

/// The nat table of both families in `h`, without comments and counters.
fn nat(h: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for prog in ["iptables-save", "ip6tables-save"] {
        out.push(format!("# {prog}"));
        out.extend(
            h.exec(prog, &["-t", "nat"])
                .lines()
                .filter(|l| l.starts_with('-') || l.starts_with(':'))
                .map(|l| l.split(" [").next().unwrap_or(l).to_owned()),
        );
    }
    out
}

/// A TCP server in `c` on `port` answering each connection with the peer's address.
fn serve_tcp(c: &TestNs, port: u16) {
    let l = c
        .ns()
        .run(move || TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            use std::io::Write as _;
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = (&s).write_all(peer.as_bytes());
        }
    });
}

/// A UDP server in `c` on `port` answering each datagram with the peer's address.
fn serve_udp(c: &TestNs, port: u16) {
    let s = c
        .ns()
        .run(move || UdpSocket::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(peer.ip().to_string().as_bytes(), peer);
        }
    });
}

/// What a TCP connection from `ns` to `to` reads (the address the server saw), or the error.
fn tcp_from(ns: &TestNs, to: &str) -> String {
    let to: SocketAddr = to.parse().unwrap();
    ns.ns()
        .run(move || -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })
        .unwrap()
        .unwrap_or_else(|e| format!("error: {e}"))
}

/// What a UDP datagram from `ns` to `to` gets back, or the error.
fn udp_from(ns: &TestNs, to: &str) -> String {
    let to: SocketAddr = to.parse().unwrap();
    ns.ns()
        .run(move || -> std::io::Result<String> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_millis(700)))?;
            let mut buf = [0u8; 64];
            for _ in 0..4 {
                s.send_to(b"hi", to)?;
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
            Err(std::io::ErrorKind::TimedOut.into())
        })
        .unwrap()
        .unwrap_or_else(|e| format!("error: {e}"))
}

/// UDP conntrack entries to `port` in `h`.
fn udp_flows(h: &TestNs, port: u16) -> usize {
    let out = h.output(
        "conntrack",
        &["-L", "-p", "udp", "--dport", &port.to_string()],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("udp"))
        .count()
}

/// What one side leaves and does, for comparison.
#[derive(Debug, PartialEq)]
struct Seen {
    nat_after_add: Vec<String>,
    route_localnet: String,
    stale_udp_before: bool,
    stale_udp_after: usize,
    traffic: Vec<(String, String)>,
    nat_after_del1: Vec<String>,
    nat_after_all: Vec<String>,
}

fn pm_conf(mappings: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "type": "portmap",
        "capabilities": {"portMappings": true}, "runtimeConfig": {"portMappings": mappings}})
}

/// Connections to pod 1's servers through the host ports, from the node (its own address,
/// 127.0.0.1, a hostIP), from pod 2 and from pod 1 itself (hairpin): what each one saw.
fn through_host_ports(h: &TestNs, c1: &TestNs, c2: &TestNs) -> Vec<(String, String)> {
    vec![
        (
            "node -> own address:8080".into(),
            tcp_from(h, "10.88.0.1:8080"),
        ),
        (
            "node -> 127.0.0.1:8080".into(),
            tcp_from(h, "127.0.0.1:8080"),
        ),
        (
            "node -> hostIP 10.88.0.1:9090".into(),
            tcp_from(h, "10.88.0.1:9090"),
        ),
        ("pod 2 -> node:8080".into(), tcp_from(c2, "10.88.0.1:8080")),
        (
            "pod 1 -> node:8080 (hairpin)".into(),
            tcp_from(c1, "10.88.0.1:8080"),
        ),
        (
            "node -> own address:8081/udp".into(),
            udp_from(h, "10.88.0.1:8081"),
        ),
        (
            "pod 2 -> node:8081/udp".into(),
            udp_from(c2, "10.88.0.1:8081"),
        ),
    ]
}

fn one_side(side: &Side) -> Seen {
    let (h, c1, c2) = (
        TestNs::new("pm-h"),
        TestNs::new("pm-c1"),
        TestNs::new("pm-c2"),
    );
    let d = TempDir::new(&format!("pm-{}", side.what));
    let bridge = bridge_conf(&d).to_string();
    let pm1 = pm_conf(json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 81, "protocol": "udp"},
        {"hostPort": 9090, "containerPort": 80, "protocol": "tcp", "hostIP": "10.88.0.1"},
        {"hostPort": 9091, "containerPort": 80, "protocol": "tcp", "hostIP": "fd00::1"}]));
    let pm2 = pm_conf(json!([{"hostPort": 8082, "containerPort": 80, "protocol": "tcp"}]));
    let (n1, n2) = (ns_path(&c1), ns_path(&c2));

    let b1 = cni(side, &h, "bridge", "ADD", "ctr-pm1", &n1, &bridge);
    assert!(
        b1.ok,
        "{} bridge ADD: {} {}",
        side.what, b1.stdout, b1.stderr
    );
    let prev1 = b1.json();
    // A UDP flow to the host port before the mapping exists: ADD must delete it.
    let _ = udp_from(&h, "10.88.0.1:8081");
    let stale_udp_before = udp_flows(&h, 8081) > 0;
    let a1 = cni(
        side,
        &h,
        "portmap",
        "ADD",
        "ctr-pm1",
        &n1,
        &with_prev(&pm1, &prev1),
    );
    assert!(
        a1.ok,
        "{} portmap ADD: {} {}",
        side.what, a1.stdout, a1.stderr
    );
    assert_eq!(
        a1.json(),
        prev1,
        "{}: portmap passes prevResult through",
        side.what
    );
    let stale_udp_after = udp_flows(&h, 8081);
    let b2 = cni(side, &h, "bridge", "ADD", "ctr-pm2", &n2, &bridge);
    assert!(b2.ok, "{} bridge ADD 2: {}", side.what, b2.stdout);
    let prev2 = b2.json();
    let a2 = cni(
        side,
        &h,
        "portmap",
        "ADD",
        "ctr-pm2",
        &n2,
        &with_prev(&pm2, &prev2),
    );
    assert!(a2.ok, "{} portmap ADD 2: {}", side.what, a2.stdout);
    let nat_after_add = nat(&h);
    let route_localnet = h
        .exec("sysctl", &["-n", "net.ipv4.conf.cnipm0.route_localnet"])
        .trim()
        .to_owned();

    // Real traffic to pod 1's servers through the host ports.
    serve_tcp(&c1, 80);
    serve_udp(&c1, 81);
    let traffic = through_host_ports(&h, &c1, &c2);

    // CHECK, then DEL of pod 1 (portmap, then bridge, as a runtime does): pod 2's rules stay.
    let check = cni(
        side,
        &h,
        "portmap",
        "CHECK",
        "ctr-pm1",
        &n1,
        &with_prev(&pm1, &prev1),
    );
    if side.what == "podnet" {
        assert!(check.ok, "podnet CHECK: {} {}", check.stdout, check.stderr);
    } else {
        // The reference 1.1.1 checks the IPv4 rules in ip6tables too, and fails.
        assert!(
            !check.ok && check.stdout.contains("ipv6"),
            "reference CHECK: {}",
            check.stdout
        );
    }
    for _ in 0..2 {
        let del = cni(
            side,
            &h,
            "portmap",
            "DEL",
            "ctr-pm1",
            &n1,
            &with_prev(&pm1, &prev1),
        );
        assert!(del.ok, "{} portmap DEL: {}", side.what, del.stdout);
    }
    let bd = cni(side, &h, "bridge", "DEL", "ctr-pm1", &n1, &bridge);
    assert!(bd.ok, "{} bridge DEL: {}", side.what, bd.stdout);
    let nat_after_del1 = nat(&h);
    assert!(
        !nat_after_del1.iter().any(|l| l.contains("ctr-pm1")),
        "{}: pod 1's rules left: {nat_after_del1:#?}",
        side.what
    );
    assert!(
        nat_after_del1.iter().any(|l| l.contains("ctr-pm2")),
        "{}: pod 2's rules went with pod 1's",
        side.what
    );
    assert!(
        tcp_from(&h, "10.88.0.1:8080").starts_with("error"),
        "{}: the host port still answers after DEL",
        side.what
    );
    let del = cni(
        side,
        &h,
        "portmap",
        "DEL",
        "ctr-pm2",
        &n2,
        &with_prev(&pm2, &prev2),
    );
    assert!(del.ok, "{} portmap DEL 2: {}", side.what, del.stdout);
    let bd = cni(side, &h, "bridge", "DEL", "ctr-pm2", &n2, &bridge);
    assert!(bd.ok, "{} bridge DEL 2: {}", side.what, bd.stdout);
    let nat_after_all = nat(&h);
    assert!(
        !nat_after_all.iter().any(|l| l.contains("CNI-DN-")),
        "{}: DNAT chains left: {nat_after_all:#?}",
        side.what
    );
    Seen {
        nat_after_add,
        route_localnet,
        stale_udp_before,
        stale_udp_after,
        traffic,
        nat_after_del1,
        nat_after_all,
    }
}

#[test]
fn portmap_side_by_side_with_traffic() {
    require_root!();
    let r = one_side(&reference());
    let p = one_side(&podnet("pm"));
    assert_eq!(r, p);
    // What both did, spelled out.
    assert!(p.stale_udp_before, "the test made no UDP flow to delete");
    assert_eq!(p.stale_udp_after, 0);
    assert_eq!(p.route_localnet, "1");
    for (what, got) in &p.traffic {
        assert_eq!(got, "10.88.0.1", "{what}: {got}");
    }
    for chain in [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-SETMARK",
        "CNI-HOSTPORT-MASQ",
    ] {
        assert!(p.nat_after_add.iter().any(|l| l == &format!(":{chain} -")));
    }
}

/// Rules only (no traffic): more configs, each ADD and DEL through both sides, the same nat
/// table after each.
#[test]
fn portmap_configs_side_by_side() {
    require_root!();
    let ports: Vec<Value> = (0..20)
        .map(|i| json!({"hostPort": 10000 + i, "containerPort": 80, "protocol": "tcp"}))
        .collect();
    let mut many = pm_conf(json!(ports));
    many["snat"] = json!(false);
    many["conditionsV4"] = json!(["!", "-s", "192.0.2.0/24"]);
    let mut bit = pm_conf(json!([
        {"hostPort": 80, "containerPort": 8080, "protocol": "tcp"},
        {"hostPort": 53, "containerPort": 53, "protocol": "udp"},
        {"hostPort": 5000, "containerPort": 5000, "protocol": "sctp"}]));
    bit["markMasqBit"] = json!(5);
    let mut ext = pm_conf(json!([{"hostPort": 80, "containerPort": 80, "protocol": "tcp"}]));
    ext["externalSetMarkChain"] = json!("KUBE-MARK-MASQ");
    let sides = [reference(), podnet("pmc")];
    for (tag, conf) in [("many", many), ("bit", bit), ("ext", ext)] {
        let mut seen = Vec::new();
        for side in &sides {
            let (h, c) = (TestNs::new("pmc-h"), TestNs::new("pmc-c"));
            h.exec_input(
                "iptables-restore",
                &["--noflush"],
                "*nat\n:KUBE-MARK-MASQ - [0:0]\nCOMMIT\n",
            );
            let d = TempDir::new(&format!("pmc-{tag}-{}", side.what));
            let bridge = bridge_conf(&d).to_string();
            let n = ns_path(&c);
            let b = cni(side, &h, "bridge", "ADD", "ctr-pmc", &n, &bridge);
            assert!(b.ok, "{tag} {} bridge ADD: {}", side.what, b.stdout);
            let pm = with_prev(&conf, &b.json());
            let a = cni(side, &h, "portmap", "ADD", "ctr-pmc", &n, &pm);
            assert!(
                a.ok,
                "{tag} {} portmap ADD: {} {}",
                side.what, a.stdout, a.stderr
            );
            let after_add = nat(&h);
            let del = cni(side, &h, "portmap", "DEL", "ctr-pmc", &n, &pm);
            assert!(del.ok, "{tag} {} portmap DEL: {}", side.what, del.stdout);
            let after_del = nat(&h);
            assert!(!after_del.iter().any(|l| l.contains("CNI-DN-")), "{tag}");
            seen.push((after_add, after_del));
        }
        assert_eq!(seen[0], seen[1], "{tag}: nat tables differ");
    }
}

/// Configs both must refuse, with the same outcome (podnet's code 7 where the reference says
/// 999), and keys podnet refuses by name (code 2).
#[test]
fn portmap_bad_configs() {
    require_root!();
    let (r, p) = (reference(), podnet("pmbad"));
    let h = TestNs::new("pmb-h");
    let c = TestNs::new("pmb-c");
    let n = ns_path(&c);
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": n}],
        "ips": [{"interface": 0, "address": "10.88.0.2/24", "gateway": "10.88.0.1"}]});
    let one = json!([{"hostPort": 80, "containerPort": 80, "protocol": "tcp"}]);
    let mut bad = Vec::new();
    let mut c1 = pm_conf(one.clone());
    c1["markMasqBit"] = json!(32);
    bad.push(("markMasqBit 32", with_prev(&c1, &prev)));
    let mut c2 = pm_conf(one.clone());
    c2["markMasqBit"] = json!(3);
    c2["externalSetMarkChain"] = json!("X");
    bad.push((
        "markMasqBit and externalSetMarkChain",
        with_prev(&c2, &prev),
    ));
    let c3 = pm_conf(json!([{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]));
    bad.push(("hostPort 0", with_prev(&c3, &prev)));
    let c4 = pm_conf(json!([{"hostPort": 80, "containerPort": -1, "protocol": "tcp"}]));
    bad.push(("containerPort -1", with_prev(&c4, &prev)));
    bad.push(("no prevResult", pm_conf(one.clone()).to_string()));
    for (what, conf) in &bad {
        let ro = cni(&r, &h, "portmap", "ADD", "ctr-bad", &n, conf);
        let po = cni(&p, &h, "portmap", "ADD", "ctr-bad", &n, conf);
        same(what, &ro, &po);
        assert!(!po.ok, "{what}");
    }
    for (key, value) in [("backend", json!("nftables")), ("masqAll", json!(true))] {
        let mut conf = pm_conf(one.clone());
        conf[key] = value;
        let po = cni(
            &p,
            &h,
            "portmap",
            "ADD",
            "ctr-bad",
            &n,
            &with_prev(&conf, &prev),
        );
        assert_eq!(po.code(), json!(2), "{key}: {}", po.stdout);
        assert!(po.json()["msg"].as_str().unwrap().contains(key));
    }
    // Nothing was written.
    assert!(
        !nat(&h).iter().any(|l| l.contains("CNI-")),
        "{:#?}",
        nat(&h)
    );
}

/// CHECK finds a rule that went missing.
#[test]
fn portmap_check_finds_a_missing_rule() {
    require_root!();
    let p = podnet("pmchk");
    let (h, c) = (TestNs::new("pmk-h"), TestNs::new("pmk-c"));
    let d = TempDir::new("pmk");
    let n = ns_path(&c);
    let b = cni(
        &p,
        &h,
        "bridge",
        "ADD",
        "ctr-chk",
        &n,
        &bridge_conf(&d).to_string(),
    );
    assert!(b.ok, "{}", b.stdout);
    let pm = with_prev(
        &pm_conf(json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])),
        &b.json(),
    );
    assert!(cni(&p, &h, "portmap", "ADD", "ctr-chk", &n, &pm).ok);
    assert!(cni(&p, &h, "portmap", "CHECK", "ctr-chk", &n, &pm).ok);
    let save = h.exec("iptables-save", &["-t", "nat"]);
    let dnat = save
        .lines()
        .find(|l| l.starts_with("-A CNI-DN-") && l.contains("-j DNAT"))
        .unwrap();
    let mut args = vec!["-t", "nat", "-D"];
    let words: Vec<&str> = dnat.split_whitespace().skip(1).collect();
    args.extend(words);
    h.exec("iptables", &args);
    let chk = cni(&p, &h, "portmap", "CHECK", "ctr-chk", &n, &pm);
    assert_eq!(chk.code(), json!(105), "{}", chk.stdout);
    assert!(cni(&p, &h, "portmap", "DEL", "ctr-chk", &n, &pm).ok);
    assert!(!nat(&h).iter().any(|l| l.contains("CNI-DN-")));
}
