//! podnet-cni against the reference plugins (Debian containernetworking-plugins 1.1.1 in
//! /usr/lib/cni), the bridge: side by side (dual-stack, requested IPs, older result versions,
//! IPAM through CNI_PATH), the reference bridge delegating to podnet-host-local, and the keys
//! refused by name. Failure injection, concurrency, bad input, CHECK, GC, STATUS and VERSION are
//! in cni_lifecycle.rs.
//!
//! Every plugin runs inside a "host" test namespace (so its bridge lives there), with CNI_NETNS
//! pointing at a "container" test namespace.

mod cni_support;
use cni_support::*;

#[test]
fn side_by_side_with_the_reference_bridge_and_host_local() {
    require_root!();
    side_by_side("sbs", |_| {});
}

#[test]
fn side_by_side_dual_stack() {
    require_root!();
    side_by_side("sbs6", |c| {
        c["ipam"]["ranges"] = json!([[{"subnet": "10.244.7.0/24"}], [{"subnet": "fd44:7::/64"}]]);
        c["ipam"]["routes"] = json!([{"dst": "10.96.0.0/12"}, {"dst": "fd44:96::/108"}]);
    });
}

#[test]
fn side_by_side_requested_ips() {
    require_root!();
    // host-local's requested addresses from args.cni.ips and runtimeConfig.ips.
    side_by_side("sbsreq", |c| {
        c["args"] = json!({"cni": {"ips": ["10.244.7.33"]}});
    });
    side_by_side("sbsrt", |c| {
        c["runtimeConfig"] = json!({"ips": ["10.244.7.44/24"]});
    });
}

/// host-local's `resolvConf` gives the result's DNS when the config has no `dns`, as the
/// reference bridge does since v1.2 (the installed 1.1.1 drops it: a deliberate difference).
#[test]
fn resolv_conf_gives_the_dns_when_the_config_has_none() {
    require_root!();
    let (h, c) = (TestNs::new("cni-resolv-h"), TestNs::new("cni-resolv-c"));
    let d = TempDir::new("resolv");
    let resolv = d.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.96.0.20\nsearch x.test\noptions ndots:2\n",
    )
    .unwrap();
    let mut conf: Value = serde_json::from_str(&bridge_conf(d.path(), json!({}))).unwrap();
    conf.as_object_mut().unwrap().remove("dns");
    conf["ipam"]["resolvConf"] = json!(resolv);
    let conf = conf.to_string();
    let r = add_ok(&h, PODNET, "ctr-resolv", &c, &conf);
    assert_eq!(
        r["dns"],
        json!({"nameservers": ["10.96.0.20"], "search": ["x.test"], "options": ["ndots:2"]})
    );
    assert!(cni(&h, PODNET, "DEL", "ctr-resolv", Some(&c), &conf).ok);
    // With a dns of its own, the config's wins.
    let mut with_dns: Value = serde_json::from_str(&conf).unwrap();
    with_dns["dns"] = json!({"nameservers": ["10.96.0.10"]});
    let r = add_ok(&h, PODNET, "ctr-resolv", &c, &with_dns.to_string());
    assert_eq!(r["dns"], json!({"nameservers": ["10.96.0.10"]}));
    assert!(
        cni(
            &h,
            PODNET,
            "DEL",
            "ctr-resolv",
            Some(&c),
            &with_dns.to_string()
        )
        .ok
    );
}

/// An IPAM type podnet does not do in process runs from CNI_PATH, as the reference bridge
/// runs it: here the reference `static` (CNI_PATH /usr/lib/cni) for both bridges, then
/// podnet's own `static` through the multi-call links.
#[test]
fn side_by_side_ipam_delegated_through_cni_path() {
    require_root!();
    let statik = |c: &mut Value| {
        c["ipam"] = json!({"type": "static",
            "addresses": [{"address": "10.244.7.2/24", "gateway": "10.244.7.1"}],
            "routes": [{"dst": "10.96.0.0/12"}],
            "dns": {"nameservers": ["10.96.0.53"]}});
    };
    side_by_side("sbsstatic", statik);
    // podnet's bridge delegating to podnet's static, found by its type name on CNI_PATH.
    let bin = TempDir::new("links");
    podnet_examples::cni::install_links(Path::new(PODNET), bin.path()).unwrap();
    let (h, c) = (TestNs::new("cni-deleg-h"), TestNs::new("cni-deleg-c"));
    let d = TempDir::new("deleg");
    let mut conf: Value = serde_json::from_str(&bridge_conf(d.path(), json!({}))).unwrap();
    statik(&mut conf);
    let conf = conf.to_string();
    let bridge = bin.path().join("bridge").to_string_lossy().into_owned();
    let env = |cmd: &'static str, netns: String| {
        vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", "ctr-deleg".to_owned()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", bin.path().to_string_lossy().into_owned()),
        ]
    };
    let run = |cmd: &'static str, conf: &str| {
        let e = env(cmd, format!("/run/netns/{}", c.name()));
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        invoke(&h, &bridge, &e, conf)
    };
    let add = run("ADD", &conf);
    assert!(add.ok, "{} {}", add.stdout, add.stderr);
    let r = add.json();
    assert_eq!(r["ips"][0]["address"], "10.244.7.2/24");
    assert_eq!(
        r["dns"],
        json!({"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]})
    );
    assert!(
        c.ping("10.244.7.1", 2),
        "container cannot reach its gateway"
    );
    let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
    with_prev["prevResult"] = r;
    let check = run("CHECK", &with_prev.to_string());
    assert!(check.ok, "{} {}", check.stdout, check.stderr);
    assert!(run("DEL", &conf).ok);
    assert_eq!(ip_json(&c, &["link", "show"]).as_array().unwrap().len(), 1);
    // An IPAM type on no CNI_PATH directory fails ADD and leaves no interface behind.
    let missing = conf.replace("\"static\"", "\"no-such-ipam\"");
    let out = run("ADD", &missing);
    assert!(!out.ok);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("no-such-ipam"),
        "{}",
        out.stdout
    );
    assert_eq!(ip_json(&c, &["link", "show"]).as_array().unwrap().len(), 1);
}

#[test]
fn bridge_keys_podnet_does_not_implement_are_refused_by_name() {
    require_root!();
    let (h, c) = (TestNs::new("cni-refuse-h"), TestNs::new("cni-refuse-c"));
    let d = TempDir::new("refuse");
    for (key, value) in [
        ("ipMasqBackend", json!("nftables")),
        ("portIsolation", json!(true)),
        ("disableContainerInterface", json!(true)),
        ("vlan", json!(7)),
        ("macspoofchk", json!(true)),
        (
            "runtimeConfig",
            json!({"ipRanges": [[{"subnet": "10.9.0.0/24"}]]}),
        ),
    ] {
        let conf = bridge_conf(d.path(), json!({ key: value }));
        let out = cni(&h, PODNET, "ADD", "ctr-refuse", Some(&c), &conf);
        assert!(!out.ok, "{key} accepted: {}", out.stdout);
        let e = out.json();
        assert_eq!(e["code"], 2, "{key}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(key), "{key}: {e}");
        assert!(leases(d.path()).is_empty(), "{key}: a lease was left");
        assert_eq!(
            ip_json(&c, &["link", "show"]).as_array().unwrap().len(),
            1,
            "{key}: the container got an interface"
        );
    }
    // ipMasqBackend "iptables" is what podnet does: accepted.
    let conf = bridge_conf(
        d.path(),
        json!({"ipMasqBackend": "iptables", "ipMasq": false}),
    );
    let out = cni(&h, PODNET, "ADD", "ctr-ok", Some(&c), &conf);
    assert!(out.ok, "{}", out.stdout);
    assert!(cni(&h, PODNET, "DEL", "ctr-ok", Some(&c), &conf).ok);
}

#[test]
fn side_by_side_older_result_versions() {
    require_root!();
    for v in ["0.4.0", "0.3.1", "0.2.0"] {
        side_by_side(&format!("sbs{}", v.replace('.', "")), |c| {
            c["cniVersion"] = json!(v)
        });
    }
}

#[test]
fn reference_bridge_delegates_to_podnet_host_local() {
    require_root!();
    let (h, c) = (TestNs::new("cni-hl-h"), TestNs::new("cni-hl-c"));
    let d = TempDir::new("hl");
    let path = d.path().join("bin");
    std::fs::create_dir_all(&path).unwrap();
    std::os::unix::fs::symlink(podnet_host_local(), path.join("podnet-host-local")).unwrap();
    let data = d.path().join("data");
    let mut conf: Value =
        serde_json::from_str(&bridge_conf(&data, json!({"ipMasq": false}))).unwrap();
    conf["ipam"]["type"] = json!("podnet-host-local");
    let conf = conf.to_string();
    let netns = format!("/run/netns/{}", c.name());
    let cni_path = path.to_string_lossy().into_owned();
    let run = |cmd: &str| {
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "ctr-hl"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", cni_path.as_str()),
        ];
        invoke(&h, &reference("bridge"), &env, &conf)
    };
    let out = run("ADD");
    assert!(
        out.ok,
        "reference bridge + podnet-host-local ADD: {} {}",
        out.stdout, out.stderr
    );
    let r = out.json();
    assert_eq!(r["ips"][0]["address"], "10.244.7.2/24");
    assert_eq!(r["ips"][0]["interface"], 2);
    assert_eq!(
        std::fs::read(data.join("podnet-test/10.244.7.2")).unwrap(),
        b"ctr-hl\r\neth0"
    );
    assert!(
        c.ping("10.244.7.1", 2),
        "container cannot reach its gateway"
    );
    let out = run("DEL");
    assert!(out.ok, "DEL: {} {}", out.stdout, out.stderr);
    assert!(leases(&data).is_empty());
    assert_eq!(container_state_after_del(&c)["links"], json!(["lo"]));
}
