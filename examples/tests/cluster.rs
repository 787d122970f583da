//! End-to-end tests of flanneld on the simulated cluster: every backend, the embedded store and
//! etcd, restarts, a foreign flannel node, an etcd outage and bad input.
//!
//! Cluster namespaces are named with the test harness's prefix and this process id, so a run
//! that dies is swept by the next one; each test also tears its cluster down on drop.

mod cluster_support;

use cluster_support::{check_all, options, up, wait_programmed};
use podnet_examples::cluster::{self, Cluster};
use podnet_links::{Handle, MacAddr};
use podnet_testsupport::{TestNs, require_root};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn vxlan_three_nodes_two_pods_embedded_store() {
    require_root!();
    let c = up(options("vx", "vxlan", 3, 2, false));
    check_all(&c);
}

#[test]
fn host_gw_three_nodes_two_pods_embedded_store() {
    require_root!();
    let c = up(options("hg", "host-gw", 3, 2, false));
    check_all(&c);
}

#[test]
fn host_gw_three_nodes_two_pods_on_etcd() {
    require_root!();
    let c = up(options("hgetcd", "host-gw", 3, 2, true));
    check_all(&c);
    assert_eq!(etcd_range(&c, "/coreos.com/network/subnets/").len(), 3);
}

#[test]
fn vxlan_on_etcd_with_a_foreign_flannel_node_and_an_outage() {
    require_root!();
    let mut c = up(options("etcd", "vxlan", 3, 2, true));
    check_all(&c);

    // Our leases are flannel's JSON, readable by any flannel tool.
    let leases = etcd_range(&c, "/coreos.com/network/subnets/");
    assert_eq!(leases.len(), 3, "{leases:?}");
    for (key, value) in &leases {
        assert!(
            key.starts_with("/coreos.com/network/subnets/10.244."),
            "{key}"
        );
        let v: serde_json::Value = serde_json::from_str(value).unwrap();
        assert!(
            v["PublicIP"].as_str().unwrap().starts_with("198.18.0."),
            "{value}"
        );
        assert_eq!(v["BackendType"], "vxlan");
        assert_eq!(v["BackendData"]["VNI"], 1);
        assert!(
            v["BackendData"]["VtepMAC"]
                .as_str()
                .unwrap()
                .parse::<MacAddr>()
                .is_ok()
        );
    }

    // A lease written in flannel's exact JSON by another tool becomes a peer.
    let foreign = r#"{"PublicIP":"198.18.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
    // Subnets no node holds (the nodes' leases are random: a fixed one could be taken).
    let mut free = (250..=255)
        .map(|n| format!("10.244.{n}.0"))
        .filter(|s| !leases.iter().any(|(k, _)| k.ends_with(&format!("/{s}-24"))));
    let (free, later_subnet) = (free.next().unwrap(), free.next().unwrap());
    etcd_put(
        &c,
        &format!("/coreos.com/network/subnets/{free}-24"),
        foreign,
    );
    let h = Handle::in_ns(&c.nodes[0].ns).unwrap();
    wait_programmed(
        &h,
        &format!("{free}/24"),
        "198.18.0.99",
        Duration::from_secs(30),
        &c.opts.state_dir.join("node1/flanneld.log"),
    );

    // etcd stops for 30 s: traffic keeps flowing; afterwards a new node is learned.
    let etcd_pid = c.etcd.as_ref().unwrap().id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &etcd_pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let (a, b) = (c.pods[0].clone(), c.pods[2].clone());
    // One lost ping on a loaded machine is not an outage; three in a row are.
    let mut lost_in_a_row = 0;
    while start.elapsed() < Duration::from_secs(30) {
        if cluster::traffic::ping(&a.ns, b.ip.into()).is_some() {
            lost_in_a_row = 0;
        } else {
            lost_in_a_row += 1;
            eprintln!("ping lost {:?} into the etcd outage", start.elapsed());
        }
        assert!(
            lost_in_a_row < 3,
            "pod traffic stopped during the etcd outage after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &etcd_pid])
            .status()
            .unwrap()
            .success()
    );
    let later = r#"{"PublicIP":"198.18.0.98","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}"#;
    etcd_put(
        &c,
        &format!("/coreos.com/network/subnets/{later_subnet}-24"),
        later,
    );
    wait_programmed(
        &h,
        &format!("{later_subnet}/24"),
        "198.18.0.98",
        Duration::from_secs(30),
        &c.opts.state_dir.join("node1/flanneld.log"),
    );
    let _ = &mut c;
}

fn b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut v = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            v |= u32::from(val(*c)) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((v >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A POST to etcd's JSON gateway from inside the fabric: another tool than podnet's client.
fn etcd_post(c: &Cluster, path: &str, body: String) -> serde_json::Value {
    let path = path.to_owned();
    let text = c
        .fabric
        .run(move || {
            let addr = SocketAddr::new(cluster::FABRIC_IP.into(), 2379);
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            write!(
                s,
                "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            reply
        })
        .unwrap();
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("{}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn etcd_put(c: &Cluster, key: &str, value: &str) {
    let body = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        b64(key.as_bytes()),
        b64(value.as_bytes())
    );
    let reply = etcd_post(c, "/v3/kv/put", body);
    assert!(
        reply["header"]["revision"].is_string(),
        "etcd put of {key} failed: {reply}"
    );
}

fn etcd_range(c: &Cluster, prefix: &str) -> Vec<(String, String)> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let body = format!(
        r#"{{"key":"{}","range_end":"{}"}}"#,
        b64(prefix.as_bytes()),
        b64(&end)
    );
    let v = etcd_post(c, "/v3/kv/range", body);
    v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                String::from_utf8(unb64(kv["key"].as_str().unwrap())).unwrap(),
                String::from_utf8(unb64(kv["value"].as_str().unwrap())).unwrap(),
            )
        })
        .collect()
}

#[test]
fn restart_never_removes_routes_fdb_or_masquerade() {
    require_root!();
    let mut c = up(options("rs", "vxlan", 2, 1, false));
    let node = c.nodes[0].ns.clone();
    let peer_subnet = c.nodes[1].subnet.unwrap().to_string();
    let (src, dst) = (c.pods[0].clone(), c.pods[1].clone());
    let _server = cluster::EchoServer::start(&dst.ns, 7777).unwrap();

    // Sample every 10 ms: the route, the FDB entry and the masquerade rule on node1.
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, missing, samples, node) =
            (stop.clone(), missing.clone(), samples.clone(), node.clone());
        let subnet = peer_subnet.clone();
        std::thread::spawn(move || {
            let h = Handle::in_ns(&node).unwrap();
            let mut last_masq = Instant::now() - Duration::from_secs(1);
            while !stop.load(Ordering::Relaxed) {
                let route = h
                    .route()
                    .list()
                    .unwrap()
                    .iter()
                    .any(|r| r.dst.to_string() == subnet);
                let fdb = !h.fdb().list(Some("flannel.1".into())).unwrap().is_empty();
                let mut masq = true;
                if last_masq.elapsed() >= Duration::from_millis(10) {
                    last_masq = Instant::now();
                    let out = node
                        .command("iptables")
                        .args(["-w", "-t", "nat", "-S", "FLANNEL-POSTRTG"])
                        .output()
                        .unwrap();
                    masq = out.status.success()
                        && String::from_utf8_lossy(&out.stdout).contains("MASQUERADE");
                }
                if !(route && fdb && masq) {
                    missing.fetch_add(1, Ordering::Relaxed);
                    eprintln!("absent: route {route} fdb {fdb} masq {masq}");
                }
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // A long TCP transfer across the restart.
    let transfer = std::thread::spawn(move || {
        cluster::traffic::throughput(&src.ns, SocketAddr::new(dst.ip.into(), 7777), 4.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    let child = c.nodes[0].flanneld.as_mut().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.start_flanneld(0).unwrap();
    let gbps = transfer
        .join()
        .unwrap()
        .expect("the transfer completes across the restart");
    std::thread::sleep(Duration::from_secs(2)); // the restarted agent reconciles
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    eprintln!(
        "transfer {gbps:.2} Gbit/s; {} samples",
        samples.load(Ordering::Relaxed)
    );
    // About 650 samples on an idle machine (every 10 ms for 6.5 s); under a load of 20 an
    // `iptables -S` takes long enough that fewer than 100 were seen. The check is that the
    // sampler ran throughout, not how fast this machine is.
    assert!(samples.load(Ordering::Relaxed) > 30);
    assert_eq!(
        missing.load(Ordering::Relaxed),
        0,
        "something was absent during the restart"
    );
    // The restarted agent adopted the device: same lease, traffic still flows.
    c.wait_ready(Duration::from_secs(10)).unwrap();
    check_pair(&c);
}

fn check_pair(c: &Cluster) {
    let (a, b) = (&c.pods[0], &c.pods[1]);
    assert!(cluster::traffic::ping(&a.ns, b.ip.into()).is_some());
}

#[test]
fn deleted_device_and_stale_entries_are_repaired() {
    require_root!();
    let c = up(options("heal", "vxlan", 2, 1, false));
    let h = Handle::in_ns(&c.nodes[0].ns).unwrap();
    // A subnet no node holds (the leases are random: a fixed one could be taken).
    let stale = (250..=255)
        .map(|n| format!("10.244.{n}.0/24"))
        .find(|s| {
            c.nodes
                .iter()
                .all(|n| n.subnet.map(|x| x.to_string()) != Some(s.clone()))
        })
        .unwrap();
    let stale_gw = stale.trim_end_matches("/24").to_string();
    // A stale route and neighbour left by a previous life (flannel #2554) are removed...
    h.route()
        .add(
            &podnet_links::Route::new(stale.parse().unwrap())
                .via(stale_gw.parse().unwrap())
                .dev("flannel.1")
                .onlink(),
        )
        .unwrap();
    // ...and a deleted device comes back with its MAC, address and peers.
    let mac = h.link().get("flannel.1").unwrap().mac;
    let deadline = Instant::now() + Duration::from_secs(10);
    while h
        .route()
        .list()
        .unwrap()
        .iter()
        .any(|r| r.dst.to_string() == stale)
    {
        assert!(Instant::now() < deadline, "stale route not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    h.link().del("flannel.1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(l) = h.link().get("flannel.1") {
            if l.mac == mac && cluster::traffic::ping(&c.pods[0].ns, c.pods[1].ip.into()).is_some()
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "flannel.1 not recreated");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn flanneld(ns: &TestNs, args: &[&str]) -> std::process::Output {
    ns.command(env!("CARGO_BIN_EXE_flanneld"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_input_gives_a_clear_error_and_builds_nothing() {
    require_root!();
    let ns = TestNs::new("fl-bad");
    ns.exec(
        "ip",
        &["link", "add", "eth0", "type", "veth", "peer", "name", "x0"],
    );
    ns.exec("ip", &["addr", "add", "198.18.7.1/24", "dev", "eth0"]);
    ns.exec("ip", &["link", "set", "eth0", "up"]);
    let dir = std::env::temp_dir().join(format!("podnet-flbad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("net-conf.json");
    let store = dir.join("store");
    let env = dir.join("subnet.env");
    let base = |conf: &PathBuf| {
        vec![
            "--iface".to_string(),
            "eth0".into(),
            "--net-config-path".into(),
            conf.display().to_string(),
            "--subnet-file".into(),
            env.display().to_string(),
            "--store-dir".into(),
            store.display().to_string(),
        ]
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        flanneld(&ns, &a)
    };
    let built = || ns.exec("ip", &["-o", "link"]).contains("flannel");

    // An unknown backend type.
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"gre"}}"#,
    )
    .unwrap();
    let out = run(base(&conf));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("unknown backend type \"gre\""), "{err}");
    assert!(!built());

    // A subnet.env whose subnet is outside the Network.
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    std::fs::write(&env, "FLANNEL_NETWORK=10.99.0.0/16\nFLANNEL_SUBNET=10.99.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n").unwrap();
    let out = run(base(&conf));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("outside the Network 10.244.0.0/16"), "{err}");
    assert!(!built());
    std::fs::remove_file(&env).unwrap();

    // etcd unreachable at start.
    let mut args = base(&conf);
    args.truncate(6);
    args.extend(["--etcd-endpoints".to_string(), "http://127.0.0.1:9".into()]);
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("etcd"), "{err}");
    assert!(!built());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_binary_exits_zero_and_down_cleans_up_after_sigkill() {
    require_root!();
    let bin = env!("CARGO_BIN_EXE_podnet-cluster");
    let prefix = format!("{}{}-cli", podnet_testsupport::PREFIX, std::process::id());
    let out = std::process::Command::new(bin)
        .args(["demo", "--nodes", "2", "--pods", "1", "--prefix", &prefix])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        cluster::existing(&prefix).is_empty(),
        "demo left namespaces behind"
    );

    // Killed while building: `down` still removes everything, flanneld included.
    let mut child = std::process::Command::new(bin)
        .args(["up", "--nodes", "2", "--pods", "1", "--prefix", &prefix])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster::existing(&prefix).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cluster::existing(&prefix).is_empty());
    let out = std::process::Command::new(bin)
        .args(["down", "--prefix", &prefix])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(cluster::existing(&prefix).is_empty());
    let procs = std::process::Command::new("pgrep")
        .args(["-f", &prefix])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
}

#[test]
fn udp_three_nodes_two_pods_embedded_store() {
    require_root!();
    let c = up(options("udp", "udp", 3, 2, false));
    check_all(&c);
}

#[test]
fn udp_three_nodes_two_pods_on_etcd() {
    require_root!();
    let c = up(options("udpetcd", "udp", 3, 2, true));
    check_all(&c);
    assert_eq!(etcd_range(&c, "/coreos.com/network/subnets/").len(), 3);
}

/// Extreme values a user can type: each is a clear error naming what to change (exit 1, nothing
/// built), or works. No panic (exit 101).
#[test]
fn extreme_values_give_clear_errors_or_work() {
    require_root!();
    let ns = TestNs::new("fl-extreme");
    ns.exec(
        "ip",
        &["link", "add", "eth0", "type", "veth", "peer", "name", "x0"],
    );
    ns.exec("ip", &["addr", "add", "198.18.8.1/24", "dev", "eth0"]);
    ns.exec("ip", &["link", "set", "eth0", "up"]);
    let dir = std::env::temp_dir().join(format!("podnet-flext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("net-conf.json");
    let env = dir.join("subnet.env");
    let base = |store: &str| {
        vec![
            "--iface".to_string(),
            "eth0".into(),
            "--net-config-path".into(),
            conf.display().to_string(),
            "--subnet-file".into(),
            env.display().to_string(),
            "--store-dir".into(),
            dir.join(store).display().to_string(),
        ]
    };
    // flanneld with `args`, killed if it has not exited within 20 s (it should have).
    let run = |args: Vec<String>| {
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_flanneld"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    };
    let built = || ns.exec("ip", &["-o", "link"]).contains("flannel");
    let fails_with = |out: std::process::Output, want: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "want {want:?} in: {err}");
        assert!(!built(), "something was built: {err}");
    };
    let vxlan = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

    // The renewal margin, in minutes: flannel's range is 1 to 1439 (less than the 24 h lease).
    std::fs::write(&conf, vxlan).unwrap();
    for margin in ["18446744073709551615", "0", "1440"] {
        let mut a = base("s1");
        a.extend(["--subnet-lease-renew-margin".into(), margin.to_string()]);
        fails_with(run(a), "--subnet-lease-renew-margin");
    }

    // A Backend.MTU that is no MTU.
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","MTU":4294967297}}"#,
    )
    .unwrap();
    fails_with(run(base("s2")), "Backend.MTU");

    // An underlay too small to carry the encapsulation.
    ns.exec("ip", &["link", "set", "eth0", "mtu", "90"]);
    for (backend, store) in [("vxlan", "s3"), ("udp", "s4")] {
        std::fs::write(
            &conf,
            format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"{backend}"}}}}"#),
        )
        .unwrap();
        let _ = std::fs::remove_file(&env);
        fails_with(run(base(store)), "MTU 90");
    }
    ns.exec("ip", &["link", "set", "eth0", "mtu", "1500"]);

    // The longest resync period works (it means "practically never"; renewal still happens on
    // its own schedule).
    std::fs::write(&conf, vxlan).unwrap();
    let _ = std::fs::remove_file(&env);
    let a = base("s5");
    let mut child = ns
        .command(env!("CARGO_BIN_EXE_flanneld"))
        .args(&a)
        .env("FLANNELD_IPTABLES_RESYNC", "18446744073709551615")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.exists() && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("flanneld exited ({status}) with the longest resync period: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(env.exists() && alive, "flanneld died ({status}): {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embedded store of a cluster, as another tool (an operator) would open it.
fn cluster_leases(c: &Cluster) -> podnet_ipam::SubnetManager<podnet_ipam::FileStore> {
    podnet_ipam::SubnetManager::new(
        podnet_ipam::FileStore::open(c.opts.state_dir.join("store")).unwrap(),
    )
}

/// Polls `f` every 100 ms for up to `timeout`; panics with `what` and node1's log tail.
fn eventually(c: &Cluster, timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(c.opts.state_dir.join("node1/flanneld.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "{what} not seen in {timeout:?}; node1's flanneld log (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn routes_to(h: &Handle, subnet: &str) -> bool {
    h.route()
        .list()
        .unwrap()
        .iter()
        .any(|r| r.dst.to_string() == subnet)
}

/// node1's lease is deleted from the store while its subnet stays free: flanneld takes the same
/// subnet again at once, so node1's pods keep their addresses, node2 routes to them again and
/// traffic recovers; flanneld keeps running.
#[test]
fn a_deleted_lease_is_taken_again_and_traffic_recovers() {
    require_root!();
    let mut c = up(options("lsdel", "vxlan", 2, 1, false));
    check_pair(&c);
    let subnet = c.nodes[0].subnet.unwrap();
    let sm = cluster_leases(&c);
    let subnets = podnet_ipam::LeaseSubnets {
        ipv4: Some(subnet),
        ipv6: None,
    };
    assert!(
        sm.release(&subnets).unwrap(),
        "node1's lease was in the store"
    );
    let deleted = Instant::now();
    let h2 = Handle::in_ns(&c.nodes[1].ns).unwrap();
    eventually(
        &c,
        Duration::from_secs(10),
        "node1's lease back in the store",
        || {
            sm.leases()
                .unwrap()
                .0
                .iter()
                .any(|l| l.subnets == subnets && l.attrs.public_ip.to_string() == "198.18.0.1")
        },
    );
    eventually(
        &c,
        Duration::from_secs(10),
        "node2's route to node1's pods",
        || routes_to(&h2, &subnet.to_string()),
    );
    eventually(
        &c,
        Duration::from_secs(10),
        "traffic from node2's pod to node1's pod",
        || cluster::traffic::ping(&c.pods[1].ns, c.pods[0].ip.into()).is_some(),
    );
    eprintln!("recovered {:?} after the deletion", deleted.elapsed());
    let running = c.nodes[0].flanneld.as_mut().unwrap().try_wait().unwrap();
    assert!(running.is_none(), "flanneld exited: {running:?}");
    assert_eq!(
        podnet_ipam::SubnetEnv::read(c.subnet_file(0))
            .unwrap()
            .unwrap()
            .subnet
            .map(|s| s.trunc()),
        Some(subnet),
        "subnet.env keeps the subnet"
    );
}

/// Another node's lease now holds node1's subnet (written over node1's, as a foreign flannel
/// might): node1's flanneld stops using the subnet (subnet.env removed), exits 1 with a message
/// that says why, node2 routes the subnet to its new holder, and a restarted flanneld takes a
/// fresh subnet that node2 routes to node1 again.
#[test]
fn a_lease_taken_by_another_node_stops_flanneld_and_a_restart_takes_a_fresh_one() {
    require_root!();
    let mut c = up(options("lstaken", "vxlan", 2, 1, false));
    check_pair(&c);
    let old = c.nodes[0].subnet.unwrap();
    let sm = cluster_leases(&c);
    let key = sm.lease_key(&podnet_ipam::LeaseSubnets {
        ipv4: Some(old),
        ipv6: None,
    });
    let foreign = r#"{"PublicIP":"198.18.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:46"}}"#;
    podnet_ipam::Store::put(sm.store(), &key, foreign.as_bytes(), None).unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = c.nodes[0].flanneld.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "flanneld still runs on a subnet another node holds"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "{status}");
    let log = std::fs::read_to_string(c.opts.state_dir.join("node1/flanneld.log")).unwrap();
    assert!(
        log.contains(&format!("lease {old} lost")) && log.contains("198.18.0.99"),
        "{log}"
    );
    assert!(
        !c.subnet_file(0).exists(),
        "subnet.env still offers addresses from the lost subnet"
    );
    // node2 follows the store: the subnet goes to its new holder.
    let h2 = Handle::in_ns(&c.nodes[1].ns).unwrap();
    wait_programmed(
        &h2,
        &old.to_string(),
        "198.18.0.99",
        Duration::from_secs(15),
        &c.opts.state_dir.join("node2/flanneld.log"),
    );

    // Restarted (as a supervisor would), flanneld takes a fresh subnet and repairs the rest.
    c.start_flanneld(0).unwrap();
    let file = c.subnet_file(0);
    eventually(&c, Duration::from_secs(20), "a new subnet.env", || {
        matches!(podnet_ipam::SubnetEnv::read(&file), Ok(Some(_)))
    });
    let fresh = podnet_ipam::SubnetEnv::read(&file)
        .unwrap()
        .unwrap()
        .subnet
        .unwrap()
        .trunc();
    assert_ne!(fresh, old, "the restart took the lost subnet again");
    eventually(
        &c,
        Duration::from_secs(15),
        "node2's route to node1's new subnet",
        || routes_to(&h2, &fresh.to_string()),
    );
    // node1 itself reaches node2's pod again (from its new flannel.1 address).
    eventually(&c, Duration::from_secs(10), "node1 to node2's pod", || {
        cluster::traffic::ping(&c.nodes[0].ns, c.pods[1].ip.into()).is_some()
    });
    let running = c.nodes[0].flanneld.as_mut().unwrap().try_wait().unwrap();
    assert!(
        running.is_none(),
        "the restarted flanneld exited: {running:?}"
    );
}

/// flanneld's `--healthz-port` answers as flannel's does: `/healthz` is 200 `flanneld is
/// running`, any other path 404, and clients that connect and say nothing do not hold up the
/// answer.
#[test]
fn flanneld_healthz_answers_like_flannel() {
    require_root!();
    let ns = TestNs::new("fl-healthz");
    ns.exec(
        "ip",
        &["link", "add", "eth0", "type", "veth", "peer", "name", "x0"],
    );
    ns.exec("ip", &["addr", "add", "198.18.9.1/24", "dev", "eth0"]);
    ns.exec("ip", &["link", "set", "eth0", "up"]);
    ns.exec("ip", &["link", "set", "lo", "up"]);
    let dir = std::env::temp_dir().join(format!("podnet-flhz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("net-conf.json");
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    let mut child = ns
        .command(env!("CARGO_BIN_EXE_flanneld"))
        .arg("--iface=eth0")
        .arg(format!("--net-config-path={}", conf.display()))
        .arg(format!(
            "--subnet-file={}",
            dir.join("subnet.env").display()
        ))
        .arg(format!("--store-dir={}", dir.join("store").display()))
        .args(["--healthz-ip", "127.0.0.1", "--healthz-port", "8471"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:8471".parse().unwrap();
    let result = ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "healthz never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        let idle: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let t = Instant::now();
        let healthz = podnet_examples::http::get(addr, "/healthz").unwrap();
        let took = t.elapsed();
        let metrics = podnet_examples::http::get(addr, "/metrics").unwrap();
        let root = podnet_examples::http::get(addr, "/").unwrap();
        drop(idle);
        (healthz, took, metrics, root)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (healthz, took, metrics, root) = result.unwrap();
    assert_eq!(healthz, (200, "flanneld is running".to_string()));
    assert!(took < Duration::from_millis(500), "/healthz took {took:?}");
    assert_eq!(metrics.0, 404, "{metrics:?}");
    assert_eq!(root.0, 404, "{root:?}");
}
