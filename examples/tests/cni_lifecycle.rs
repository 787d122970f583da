//! podnet-cni against the reference plugins (Debian containernetworking-plugins 1.1.1 in
//! /usr/lib/cni), the bridge's lifecycle: failure injection with rollback, concurrency, bad
//! input, CHECK, GC, STATUS and VERSION.
//!
//! Every plugin runs inside a "host" test namespace (so its bridge lives there), with CNI_NETNS
//! pointing at a "container" test namespace.

mod cni_support;
use cni_support::*;

#[test]
fn add_against_a_conflicting_bridge_address_leaves_nothing_behind() {
    require_root!();
    let (h, c) = (TestNs::new("cni-cf-h"), TestNs::new("cni-cf-c"));
    let d = TempDir::new("conflict");
    h.exec("ip", &["link", "add", "cni0", "type", "bridge"]);
    h.exec("ip", &["addr", "add", "10.244.99.1/24", "dev", "cni0"]);
    h.exec("ip", &["link", "set", "cni0", "up"]);
    let nat_before = h.exec("iptables-save", &["-t", "nat"]);
    let conf = bridge_conf(d.path(), json!({"type": "podnet-cni"}));
    let out = cni(&h, PODNET, "ADD", "ctr-cf", Some(&c), &conf);
    assert!(!out.ok);
    let e = out.json();
    assert_eq!(e["code"], 101, "{e}");
    assert_eq!(e["cniVersion"], "1.0.0");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("10.244.99.1/24") && msg.contains("forceAddress"),
        "{msg}"
    );
    assert_eq!(
        leftovers(&h, &c, d.path()),
        json!({"host_veths": [], "container": [["lo", 2]], "leases": []})
    );
    let addrs: Vec<Value> = ip_json(&h, &["-4", "addr", "show", "cni0"])[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["local"].clone())
        .collect();
    assert_eq!(addrs, vec![json!("10.244.99.1")]);
    assert_eq!(
        h.exec("iptables-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.contains("CNI-"))
            .count(),
        0
    );
    drop(nat_before);

    // The reference plugin, same situation: it fails too, but leaves the container's
    // interface configured (informational; podnet-cni is what is asserted above).
    let (rh, rc) = (TestNs::new("cni-cf-rh"), TestNs::new("cni-cf-rc"));
    let rd = TempDir::new("conflict-ref");
    rh.exec("ip", &["link", "add", "cni0", "type", "bridge"]);
    rh.exec("ip", &["addr", "add", "10.244.99.1/24", "dev", "cni0"]);
    let out = cni(
        &rh,
        &reference("bridge"),
        "ADD",
        "ctr-cf",
        Some(&rc),
        &bridge_conf(rd.path(), json!({})),
    );
    assert!(!out.ok);
    eprintln!(
        "reference after the same failure: {}",
        leftovers(&rh, &rc, rd.path())
    );
}

#[test]
fn a_failure_after_the_veth_is_made_is_rolled_back() {
    require_root!();
    let (h, c) = (TestNs::new("cni-rb-h"), TestNs::new("cni-rb-c"));
    let d = TempDir::new("rollback");
    // The route's gateway is on no link of the container: the kernel refuses it after the
    // veth, the addresses and the masquerade rules exist.
    let mut conf: Value =
        serde_json::from_str(&bridge_conf(d.path(), json!({"type": "podnet-cni"}))).unwrap();
    conf["ipam"]["routes"] = json!([{"dst": "10.96.0.0/12", "gw": "198.18.9.9"}]);
    let out = cni(&h, PODNET, "ADD", "ctr-rb", Some(&c), &conf.to_string());
    assert!(!out.ok, "{}", out.stdout);
    assert_eq!(out.json()["code"], 100, "{}", out.stdout);
    assert_eq!(
        leftovers(&h, &c, d.path()),
        json!({"host_veths": [], "container": [["lo", 2]], "leases": []})
    );
    assert_eq!(
        h.exec("iptables-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.contains("CNI-"))
            .count(),
        0,
        "masquerade rules left behind"
    );
    // The next ADD with a good config gets the address the failed one gave back.
    let r = add_ok(
        &h,
        PODNET,
        "ctr-rb2",
        &c,
        &bridge_conf(d.path(), json!({"ipMasq": false})),
    );
    assert_eq!(r["ips"][0]["address"], "10.244.7.3/24"); // round-robin moves on, like host-local
}

#[test]
fn twenty_parallel_adds_get_twenty_distinct_addresses() {
    require_root!();
    let h = TestNs::new("cni-par-h");
    let conts: Vec<TestNs> = (0..20)
        .map(|i| TestNs::new(&format!("cni-par-{i}")))
        .collect();
    let d = TempDir::new("parallel");
    let conf = bridge_conf(d.path(), json!({"ipMasq": false}));
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = conts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (h, conf) = (&h, &conf);
                s.spawn(move || add_ok(h, PODNET, &format!("ctr-{i}"), c, conf))
            })
            .collect();
        handles.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let mut addrs: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap().to_owned())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 20, "{addrs:?}");
    assert_eq!(leases(d.path()).len(), 20);
    assert_eq!(
        ip_json(&h, &["link", "show", "master", "cni0"])
            .as_array()
            .unwrap()
            .len(),
        20
    );
    // Pods reach each other across the bridge.
    let other = results[19]["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(conts[0].ping(other, 2), "pod 0 cannot reach {other}");

    std::thread::scope(|s| {
        for (i, c) in conts.iter().enumerate() {
            let (h, conf) = (&h, &conf);
            s.spawn(move || {
                let out = cni(h, PODNET, "DEL", &format!("ctr-{i}"), Some(c), conf);
                assert!(out.ok, "DEL: {}", out.stdout);
            });
        }
    });
    assert!(leases(d.path()).is_empty());
    assert!(
        ip_json(&h, &["link", "show", "type", "veth"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_input_gets_the_spec_codes_and_changes_nothing() {
    require_root!();
    let (h, c) = (TestNs::new("cni-bad-h"), TestNs::new("cni-bad-c"));
    let d = TempDir::new("bad");
    let good = bridge_conf(d.path(), json!({}));
    let netns = format!("/run/netns/{}", c.name());
    let full = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr-bad"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", CNI_DIR),
    ];
    let without =
        |k: &str| -> Vec<(&str, &str)> { full.iter().copied().filter(|(n, _)| *n != k).collect() };
    let bad_version = good.replace("\"1.0.0\"", "\"9.9.9\"");
    // What, environment, stdin, expected code, a word the message must contain.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u64, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no CNI_COMMAND",
            without("CNI_COMMAND"),
            &good,
            4,
            "CNI_COMMAND",
        ),
        (
            "no CNI_CONTAINERID",
            without("CNI_CONTAINERID"),
            &good,
            4,
            "CNI_CONTAINERID",
        ),
        ("no CNI_NETNS", without("CNI_NETNS"), &good, 4, "CNI_NETNS"),
        (
            "no CNI_IFNAME",
            without("CNI_IFNAME"),
            &good,
            4,
            "CNI_IFNAME",
        ),
        (
            "malformed JSON",
            full.to_vec(),
            "{\"cniVersion\": \"1.0.0\", bad",
            6,
            "JSON",
        ),
        (
            "unknown cniVersion",
            full.to_vec(),
            &bad_version,
            1,
            "9.9.9",
        ),
    ];
    for (what, env, stdin, code, mention) in &cases {
        let ours = invoke(&h, PODNET, env, stdin);
        assert!(!ours.ok, "{what}: succeeded");
        let e = ours.json();
        assert_eq!(e["code"], *code, "{what}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(mention), "{what}: {e}");
        // The reference answers with the same code.
        let theirs = invoke(&h, &reference("bridge"), env, stdin);
        if !theirs.stdout.is_empty() {
            assert_eq!(
                theirs.json()["code"],
                *code,
                "{what}: reference says {}",
                theirs.stdout
            );
        }
    }
    let bad_name = good.replace("podnet-test", "bad/name");
    let e = invoke(&h, PODNET, &full, &bad_name).json();
    assert_eq!(e["code"], 7, "{e}");
    let e = invoke(
        &h,
        PODNET,
        &full,
        &good.replace("\"mtu\":1400", "\"mtu\":\"big\""),
    )
    .json();
    assert_eq!(e["code"], 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("mtu"), "{e}");
    let e = invoke(
        &h,
        PODNET,
        &full,
        &good.replace("\"mtu\":1400", "\"vlan\":100"),
    )
    .json();
    assert_eq!(e["code"], 2, "{e}");
    // Nothing was made: no bridge, no veth, no lease directory.
    assert_eq!(
        ip_json(&h, &["link", "show"]).as_array().unwrap().len(),
        1,
        "host namespace changed"
    );
    assert_eq!(
        leftovers(&h, &c, d.path()),
        json!({"host_veths": [], "container": [["lo", 2]], "leases": []})
    );
    assert!(!d.path().join("podnet-test").exists());
}

#[test]
fn version_status_gc_and_layer2() {
    require_root!();
    let h = TestNs::new("cni-misc-h");
    let (c1, c2) = (TestNs::new("cni-misc-1"), TestNs::new("cni-misc-2"));
    let d = TempDir::new("misc");

    let out = invoke(
        &h,
        PODNET,
        &[("CNI_COMMAND", "VERSION")],
        r#"{"cniVersion":"1.1.0"}"#,
    );
    assert!(out.ok);
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0"))
    );

    let conf = bridge_conf(
        d.path(),
        json!({"cniVersion": "1.1.0", "ipMasq": false,
               "ipam": {"type": "host-local", "dataDir": d.path(), "subnet": "10.244.8.0/30"}}),
    );
    let status = |h: &TestNs| invoke(h, PODNET, &[("CNI_COMMAND", "STATUS")], &conf);
    assert!(status(&h).ok);
    let r = add_ok(&h, PODNET, "ctr-a", &c1, &conf);
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][2]["mtu"], 1400);
    // A /30 has one address besides the gateway: now full.
    let out = status(&h);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 50);
    let out = cni(&h, PODNET, "ADD", "ctr-b", Some(&c2), &conf);
    assert_eq!(out.json()["code"], 103, "{}", out.stdout);
    assert_eq!(container_state_after_del(&c2)["links"], json!(["lo"]));

    // GC with no valid attachment frees the address.
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-other", "ifname": "eth0"}]);
    let out = invoke(
        &h,
        PODNET,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", CNI_DIR)],
        &gc.to_string(),
    );
    assert!(out.ok, "GC: {}", out.stdout);
    assert!(leases(d.path()).is_empty());
    assert!(status(&h).ok);

    // Without ipam: layer 2 only, the container's interface up without addresses.
    let l2 = json!({"cniVersion": "1.0.0", "name": "podnet-test", "type": "podnet-cni", "bridge": "br-l2"});
    let r = add_ok(&h, PODNET, "ctr-l2", &c2, &l2.to_string());
    assert!(r.get("ips").is_none(), "{r}");
    assert_eq!(
        ip_json(&c2, &["link", "show", "eth0"])[0]["operstate"],
        "UP"
    );
    let out = cni(&h, PODNET, "DEL", "ctr-l2", Some(&c2), &l2.to_string());
    assert!(out.ok);
}

#[test]
fn podnet_host_local_speaks_cni_1_1_gc_and_status() {
    let d = TempDir::new("hl-gc");
    let conf = json!({"cniVersion": "1.1.0", "name": "podnet-test",
        "ipam": {"type": "podnet-host-local", "dataDir": d.path(), "subnet": "10.244.12.0/24"}});
    let v = host_local(&[("CNI_COMMAND", "VERSION")], &conf.to_string()).json();
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0")),
        "{v}"
    );
    for id in ["c1", "c2"] {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/run/netns/unused"),
        ];
        let out = host_local(&env, &conf.to_string());
        assert!(out.ok, "ADD {id}: {} {}", out.stdout, out.stderr);
    }
    assert_eq!(leases(d.path()), ["10.244.12.2", "10.244.12.3"]);
    assert!(host_local(&[("CNI_COMMAND", "STATUS")], &conf.to_string()).ok);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let out = host_local(&[("CNI_COMMAND", "GC")], &gc.to_string());
    assert!(out.ok, "GC: {} {}", out.stdout, out.stderr);
    assert_eq!(leases(d.path()), ["10.244.12.2"]);
    let e = host_local(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c3"),
            ("CNI_IFNAME", "eth0"),
        ],
        "{bad",
    )
    .json();
    assert_eq!(e["code"], 6, "{e}");
}

#[test]
fn gc_removes_the_masquerade_rules_of_gone_containers() {
    require_root!();
    let h = TestNs::new("cni-gcm-h");
    let (c1, c2) = (TestNs::new("cni-gcm-1"), TestNs::new("cni-gcm-2"));
    let d = TempDir::new("gc-masq");
    let conf = bridge_conf(d.path(), json!({"cniVersion": "1.1.0"}));
    add_ok(&h, PODNET, "ctr-keep", &c1, &conf);
    add_ok(&h, PODNET, "ctr-gone", &c2, &conf);
    let chains = |h: &TestNs| -> Vec<String> {
        h.exec("iptables-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.starts_with(":CNI-"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(chains(&h).len(), 2);
    let mut gc: Value = serde_json::from_str(&conf).unwrap();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-keep", "ifname": "eth0"}]);
    let out = invoke(&h, PODNET, &[("CNI_COMMAND", "GC")], &gc.to_string());
    assert!(out.ok, "GC: {} {}", out.stdout, out.stderr);
    assert_eq!(leases(d.path()), ["10.244.7.2"]);
    let left = chains(&h);
    assert_eq!(left.len(), 1, "{left:?}");
    let save = h.exec("iptables-save", &["-t", "nat"]);
    assert!(
        save.contains("ctr-keep") && !save.contains("ctr-gone"),
        "{save}"
    );
}
