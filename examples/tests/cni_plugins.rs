//! podnet-cni's multi-call plugins side by side with the reference plugins (Debian
//! containernetworking-plugins 1.1.1 in /usr/lib/cni): the same configs, including ones that
//! must fail, through both; the result JSON, the kernel state left, the error codes; and after
//! DEL nothing of either left.
//!
//! podnet's plugins run from a `CNI_PATH` directory of links to the podnet-cni binary, made by
//! `podnet_examples::cni::install_links`, so each runs under its standard type name. Every
//! plugin runs inside a "host" test namespace with CNI_NETNS a "container" test namespace.
//!
//! This file: `loopback`, IPAM `static` and `host-local`.

mod cni_plugins_support;
use cni_plugins_support::*;

#[test]
fn loopback_side_by_side() {
    require_root!();
    let host = TestNs::new("lo-h");
    let sides = [reference(), podnet("lo")];
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let conf = json!({"cniVersion": version, "name": "lo-net", "type": "loopback"}).to_string();
        let mut seen: Vec<Value> = Vec::new();
        for side in &sides {
            let c = TestNs::new("lo-c");
            let netns = ns_path(&c);
            c.exec("ip", &["link", "set", "lo", "down"]);
            let before = lo_state(&c);
            let add = cni(side, &host, "loopback", "ADD", "ctr-lo", &netns, &conf);
            assert!(
                add.ok,
                "{} loopback ADD {version}: {} {}",
                side.what, add.stdout, add.stderr
            );
            let up = lo_state(&c);
            let check = cni(side, &host, "loopback", "CHECK", "ctr-lo", &netns, &conf);
            let del = cni(side, &host, "loopback", "DEL", "ctr-lo", &netns, &conf);
            assert!(del.ok, "{} loopback DEL: {}", side.what, del.stdout);
            let after = lo_state(&c);
            assert_eq!(after, before, "{} DEL left lo changed", side.what);
            let del_again = cni(side, &host, "loopback", "DEL", "ctr-lo", &netns, &conf);
            // With prevResult: passed through unchanged.
            let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
            with_prev["prevResult"] = json!({"cniVersion": version, "ips": [
                {"address": "10.9.0.5/24", "gateway": "10.9.0.1", "version": "4"}],
                "dns": {"nameservers": ["10.96.0.10"]}});
            if version.starts_with('1') {
                with_prev["prevResult"]["ips"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("version");
            }
            let prev = cni(
                side,
                &host,
                "loopback",
                "ADD",
                "ctr-lo2",
                &netns,
                &with_prev.to_string(),
            );
            assert!(
                prev.ok,
                "{} ADD with prevResult: {}",
                side.what, prev.stdout
            );
            cni(side, &host, "loopback", "DEL", "ctr-lo2", &netns, &conf);
            seen.push(json!({
                "add": normalized(add.json(), &netns),
                "up": up,
                "check": check.ok,
                "del_again": del_again.ok,
                "prev": prev.json(),
            }));
        }
        // Deliberate difference (README): the reference loopback builds its own result already
        // labelled with the config's version, so for 0.3.x/0.4.0 it is never converted and its
        // IPs lack the `version` the spec requires there; podnet's have it.
        if !version.starts_with('1') {
            for ip in seen[1]["add"]["ips"].as_array_mut().unwrap() {
                let v = ip.as_object_mut().unwrap().remove("version");
                assert!(v.is_some(), "podnet's 0.x IPs carry version: {ip}");
            }
        }
        assert_eq!(seen[0], seen[1], "loopback {version}: reference vs podnet");
        assert_eq!(seen[0]["up"]["operstate"], "UNKNOWN", "lo is up after ADD");
    }
    // 1.1.0: the reference 1.1.1 refuses it (code 1); podnet's result is 1.0.0's relabelled,
    // and STATUS and GC succeed.
    let conf = json!({"cniVersion": "1.1.0", "name": "lo-net", "type": "loopback"}).to_string();
    let c = TestNs::new("lo-c");
    let netns = ns_path(&c);
    let r = cni(&sides[0], &host, "loopback", "ADD", "c", &netns, &conf);
    assert_eq!(r.code(), 1, "the reference plugins here predate spec 1.1.0");
    let p = cni(&sides[1], &host, "loopback", "ADD", "c", &netns, &conf);
    assert!(p.ok, "{}", p.stdout);
    assert_eq!(p.json()["cniVersion"], "1.1.0");
    assert_eq!(p.json()["ips"][0]["address"], "127.0.0.1/8");
    for cmd in ["CHECK", "STATUS", "GC", "DEL"] {
        let o = cni(&sides[1], &host, "loopback", cmd, "c", &netns, &conf);
        assert!(o.ok, "podnet loopback {cmd} 1.1.0: {}", o.stdout);
    }
    // DEL of a namespace that is gone, without a namespace, and failures.
    let conf = json!({"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}).to_string();
    let mut seen: Vec<Value> = Vec::new();
    for side in &sides {
        let gone = cni(
            side,
            &host,
            "loopback",
            "DEL",
            "c",
            "/run/netns/no-such-podnet-ns",
            &conf,
        );
        let none = cni(side, &host, "loopback", "DEL", "c", "", &conf);
        let c = TestNs::new("lo-c");
        let netns = ns_path(&c);
        let bad_version = cni(
            side,
            &host,
            "loopback",
            "ADD",
            "c",
            &netns,
            &conf.replace("1.0.0", "9.9.9"),
        );
        let not_json = cni(side, &host, "loopback", "ADD", "c", &netns, "{nope");
        let no_command = {
            let mut o = cni(side, &host, "loopback", "FROB", "c", &netns, &conf);
            o.ok = false;
            o
        };
        let check_old = cni(
            side,
            &host,
            "loopback",
            "CHECK",
            "c",
            &netns,
            &conf.replace("1.0.0", "0.3.1"),
        );
        c.exec("ip", &["link", "set", "lo", "down"]);
        let check_down = cni(side, &host, "loopback", "CHECK", "c", &netns, &conf);
        let version = cni(side, &host, "loopback", "VERSION", "", "", &conf);
        seen.push(json!({
            "gone": gone.ok,
            "none": none.ok,
            "bad_version": bad_version.code(),
            "not_json": not_json.code(),
            "no_command": no_command.code(),
            "check_old": check_old.code(),
            "check_down_fails": !check_down.ok,
            "version": version.json(),
        }));
    }
    // podnet also speaks 1.1.0, which the reference 1.1.1 predates.
    let podnet_versions = seen[1]["version"]["supportedVersions"]
        .as_array_mut()
        .unwrap();
    assert_eq!(podnet_versions.pop(), Some(json!("1.1.0")));
    assert_eq!(seen[0], seen[1], "loopback edge cases: reference vs podnet");
}

#[test]
fn static_ipam_side_by_side() {
    let sides = [reference(), podnet("static")];
    let base = |version: &str| {
        json!({"cniVersion": version, "name": "st", "type": "bridge", "ipam": {
            "type": "static",
            "addresses": [
                {"address": "10.10.0.5/24", "gateway": "10.10.0.1"},
                {"address": "fd00:10::5/64", "gateway": "fd00:10::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.0.254"}],
            "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local",
                    "search": ["svc.cluster.local"], "options": ["ndots:5"]}}})
    };
    let mut cases: Vec<(String, String, Value)> = Vec::new();
    for v in ["0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        cases.push((format!("config {v}"), String::new(), base(v)));
    }
    let mut one = base("0.2.0");
    one["ipam"]["addresses"].as_array_mut().unwrap().truncate(1);
    cases.push(("one address 0.2.0".into(), String::new(), one));
    cases.push((
        "CNI_ARGS IP and GATEWAY".into(),
        "IP=10.20.0.7/16,fd00:20::7/64;GATEWAY=10.20.0.1".into(),
        base("1.0.0"),
    ));
    cases.push((
        "CNI_ARGS unknown key".into(),
        "K8S_POD_NAME=x;IP=10.20.0.7/16".into(),
        base("1.0.0"),
    ));
    cases.push((
        "CNI_ARGS IgnoreUnknown".into(),
        "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.20.0.7/16".into(),
        base("1.0.0"),
    ));
    cases.push((
        "CNI_ARGS IP not a CIDR".into(),
        "IP=10.20.0.7".into(),
        base("1.0.0"),
    ));
    cases.push((
        "CNI_ARGS bad gateway".into(),
        "IP=10.20.0.7/16;GATEWAY=nope".into(),
        base("1.0.0"),
    ));
    let mut c = base("1.0.0");
    c["args"] = json!({"cni": {"ips": ["10.30.0.9/24"]}});
    cases.push(("args.cni.ips".into(), String::new(), c.clone()));
    c["runtimeConfig"] = json!({"ips": ["10.40.0.9/24", "fd00:40::9/64"]});
    cases.push(("runtimeConfig.ips".into(), String::new(), c));
    let mut c = base("1.0.0");
    c["ipam"]["addresses"][0]["address"] = json!("10.10.0.5");
    cases.push(("address not a CIDR".into(), String::new(), c));
    let mut c = base("1.0.0");
    c.as_object_mut().unwrap().remove("ipam");
    cases.push(("no ipam".into(), String::new(), c));
    cases.push(("bad version".into(), String::new(), base("9.9.9")));
    for (what, args, conf) in &cases {
        let r = ipam(&sides[0], "static", "ADD", args, conf);
        let p = ipam(&sides[1], "static", "ADD", args, conf);
        same(&format!("static ADD, {what}"), &r, &p);
        let r = ipam(&sides[0], "static", "DEL", args, conf);
        let p = ipam(&sides[1], "static", "DEL", args, conf);
        same(&format!("static DEL, {what}"), &r, &p);
    }
    // CHECK against a prevResult: missing, matching, another gateway.
    let add = ipam(&sides[0], "static", "ADD", "", &base("1.0.0")).json();
    let mut with_prev = base("1.0.0");
    let mut checks = vec![("CHECK without prevResult", base("1.0.0"))];
    with_prev["prevResult"] = add.clone();
    checks.push(("CHECK matching", with_prev.clone()));
    with_prev["prevResult"]["ips"][0]["gateway"] = json!("10.10.0.99");
    checks.push(("CHECK other gateway", with_prev));
    for (what, conf) in checks {
        let r = ipam(&sides[0], "static", "CHECK", "", &conf);
        let p = ipam(&sides[1], "static", "CHECK", "", &conf);
        same(what, &r, &p);
    }
}

#[test]
fn host_local_side_by_side() {
    let sides = [reference(), podnet("hl")];
    let dirs = [TempDir::new("hl-ref"), TempDir::new("hl-podnet")];
    let resolv = resolv_conf(dirs[0].path());
    let conf = |i: usize, version: &str| {
        json!({"cniVersion": version, "name": "hl", "type": "bridge", "ipam": {
            "type": "host-local", "dataDir": dirs[i].path(),
            "ranges": [[{"subnet": "10.50.0.0/29"}], [{"subnet": "fd00:50::/120"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            "resolvConf": resolv}})
    };
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let mut out = Vec::new();
        for (i, side) in sides.iter().enumerate() {
            let add = ipam(side, "host-local", "ADD", "", &conf(i, version));
            let leases = lease_files(dirs[i].path());
            let check = ipam(side, "host-local", "CHECK", "", &conf(i, version));
            let del = ipam(side, "host-local", "DEL", "", &conf(i, version));
            let after = lease_files(dirs[i].path());
            let del_again = ipam(side, "host-local", "DEL", "", &conf(i, version));
            let requested = ipam(side, "host-local", "ADD", "IP=10.50.0.5", &conf(i, version));
            let ip = requested.json()["ips"][0]["address"].clone();
            ipam(side, "host-local", "DEL", "", &conf(i, version));
            out.push(json!({
                "add": add.json(), "leases": leases, "check": check.ok, "del": del.ok,
                "after": after, "del_again": del_again.ok, "requested": ip,
            }));
        }
        assert_eq!(out[0], out[1], "host-local {version}: reference vs podnet");
        // DEL leaves no lease (host-local keeps its last_reserved_ip.N cursor files).
        for f in out[0]["after"].as_array().unwrap() {
            assert!(
                f[0].as_str().unwrap().starts_with("last_reserved_ip."),
                "{f}"
            );
        }
        assert!(!out[0]["leases"].as_array().unwrap().is_empty());
    }
    // Exhaustion: a /29 has 5 addresses besides the gateway; the sixth ADD fails in both.
    let small = |i: usize| {
        json!({"cniVersion": "1.0.0", "name": "hl", "type": "bridge", "ipam": {
            "type": "host-local", "dataDir": dirs[i].path(), "subnet": "10.60.0.0/29"}})
    };
    for (i, side) in sides.iter().enumerate() {
        for n in 0..5 {
            let o = ipam_id(side, &format!("c{n}"), &small(i));
            assert!(o.ok, "{} ADD {n}: {}", side.what, o.stdout);
        }
    }
    let r = ipam_id(&sides[0], "c5", &small(0));
    let p = ipam_id(&sides[1], "c5", &small(1));
    assert!(
        !r.ok && !p.ok,
        "a full range fails: {} / {}",
        r.stdout,
        p.stdout
    );
    assert_eq!(
        lease_files(dirs[0].path()).len(),
        lease_files(dirs[1].path()).len()
    );
}
