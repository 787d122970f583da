//! podnet's `host-device` side by side with the reference plugin (Debian
//! containernetworking-plugins 1.1.1): the same configs, including ones that must fail,
//! through both, each in its own "host" and "container" namespaces; the result JSON, the
//! container's interface (name, alias, MAC, state, addresses, routes), the host after ADD (the
//! device gone) and after DEL (the device back under its own name, no address left), CHECK,
//! the error codes, and traffic through the moved device.
//!
//! This kernel has no dummy links: the "host device" is one end of a veth pair the test makes
//! in the host namespace, its peer in a third namespace (the "wire") with 10.78.0.1/24.

mod cni_plugins_support;
use cni_plugins_support::*;

const DEV_MAC: &str = "02:00:00:00:78:02";

/// The host's device: `hd0` (MAC [`DEV_MAC`]) in `h`, its peer `wire0` in `w` with 10.78.0.1.
fn host_device(h: &TestNs, w: &TestNs) {
    h.add_veth("hd0", w, "wire0");
    h.exec("ip", &["link", "set", "hd0", "address", DEV_MAC]);
    w.exec("ip", &["addr", "add", "10.78.0.1/24", "dev", "wire0"]);
    w.exec("ip", &["link", "set", "wire0", "up"]);
}

/// The links of `ns` (lo aside): name, alias, MAC, MTU, state, kind.
fn links(ns: &TestNs) -> Value {
    let l = ip_json(ns, &["-d", "link", "show"]);
    let mut out: Vec<Value> = l
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            json!({"name": l["ifname"], "alias": l["ifalias"], "mac": l["address"],
                   "mtu": l["mtu"], "up": l["flags"].as_array().is_some_and(|f| f.contains(&json!("UP"))),
                   "kind": l["linkinfo"]["info_kind"]})
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    json!(out)
}

/// The config of one case: `sel` names the device; `ipam` is `"static"`, `"host-local"` or
/// absent.
fn conf(sel: Value, ipam: Option<&str>, dir: &Path) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "hdnet", "type": "host-device",
        "dns": {"nameservers": ["10.96.0.10"]}});
    for (k, v) in sel.as_object().unwrap() {
        c[k] = v.clone();
    }
    match ipam {
        Some("static") => {
            c["ipam"] = json!({"type": "static",
                "addresses": [{"address": "10.78.0.2/24", "gateway": "10.78.0.1"}],
                // With its gateway: the reference 1.1.1's CHECK fails its own ADD for a route
                // without one (README).
                "routes": [{"dst": "10.96.0.0/12", "gw": "10.78.0.1"},
                           {"dst": "0.0.0.0/0", "gw": "10.78.0.1"}]});
        }
        Some("host-local") => {
            c["ipam"] = json!({"type": "host-local", "dataDir": dir, "subnet": "10.78.0.0/24",
                "rangeStart": "10.78.0.20", "routes": [{"dst": "0.0.0.0/0"}]});
        }
        _ => {}
    }
    c
}

#[test]
fn host_device_side_by_side() {
    require_root!();
    let sides = [reference(), podnet("hd")];
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("by name, static", json!({"device": "hd0"}), Some("static")),
        (
            "by MAC, host-local",
            json!({"hwaddr": DEV_MAC}),
            Some("host-local"),
        ),
        ("by name, no IPAM", json!({"device": "hd0"}), None),
    ];
    for (what, sel, ipam) in cases {
        let mut seen = Vec::new();
        for side in &sides {
            let (h, c, w) = (
                TestNs::new("hd-h"),
                TestNs::new("hd-c"),
                TestNs::new("hd-w"),
            );
            host_device(&h, &w);
            let d = TempDir::new(&format!("hd-{}", side.what));
            let netns = ns_path(&c);
            let conf = conf(sel.clone(), ipam, d.path());
            let host_before = links(&h);
            let add = cni(
                side,
                &h,
                "host-device",
                "ADD",
                "ctr-hd",
                &netns,
                &conf.to_string(),
            );
            assert!(
                add.ok,
                "{what}: {} ADD: {} {}",
                side.what, add.stdout, add.stderr
            );
            let r = normalized(add.json(), &netns);
            if ipam.is_some() {
                assert!(
                    c.ping("10.78.0.1", 2),
                    "{what}: {}: no traffic through the moved device",
                    side.what
                );
            }
            let mut with_prev = conf.clone();
            with_prev["prevResult"] = add.json();
            let check = cni(
                side,
                &h,
                "host-device",
                "CHECK",
                "ctr-hd",
                &netns,
                &with_prev.to_string(),
            );
            let state = json!({
                "result": r,
                "container_links": links(&c),
                "container_addrs": addrs(&c, ""),
                "container_routes": routes(&c, "-4", ""),
                "host_links": links(&h),
                "check": check.ok,
            });
            // CHECK fails once a route of prevResult is gone.
            let broken_check = if ipam == Some("static") {
                c.exec("ip", &["route", "del", "10.96.0.0/12"]);
                let out = cni(
                    side,
                    &h,
                    "host-device",
                    "CHECK",
                    "ctr-hd",
                    &netns,
                    &with_prev.to_string(),
                );
                let back = "route add 10.96.0.0/12 via 10.78.0.1 dev eth0";
                c.exec("ip", &back.split(' ').collect::<Vec<_>>());
                Some(out.ok)
            } else {
                None
            };
            let del = cni(
                side,
                &h,
                "host-device",
                "DEL",
                "ctr-hd",
                &netns,
                &conf.to_string(),
            );
            assert!(
                del.ok,
                "{what}: {} DEL: {} {}",
                side.what, del.stdout, del.stderr
            );
            let after = json!({"host_links": links(&h), "host_addrs": addrs(&h, ""),
                               "container_links": links(&c)});
            // The device is back under its own name (the reference leaves the alias set).
            let mut want_back = host_before.clone();
            for l in want_back.as_array_mut().unwrap() {
                if l["name"] == "hd0" {
                    l["alias"] = json!("hd0");
                    l["up"] = json!(false);
                }
            }
            assert_eq!(
                after["host_links"], want_back,
                "{what}: {}: after DEL",
                side.what
            );
            assert_eq!(after["container_links"], json!([]), "{what}: {}", side.what);
            assert_eq!(
                lease_files(d.path()),
                vec![],
                "{what}: {}: lease left",
                side.what
            );
            let del_again = cni(
                side,
                &h,
                "host-device",
                "DEL",
                "ctr-hd",
                &netns,
                &conf.to_string(),
            );
            seen.push((
                json!({"state": state, "broken_check": broken_check, "after": after}),
                del_again.ok,
            ));
        }
        assert_eq!(seen[0].0, seen[1].0, "{what}: reference vs podnet");
        // A second DEL: the reference fails (the device is gone from the container); podnet's
        // DEL is idempotent, as the spec asks (README).
        assert!(!seen[0].1, "{what}: the reference's second DEL succeeded");
        assert!(seen[1].1, "{what}: podnet's second DEL failed");
    }
}

#[test]
fn host_device_refusals_side_by_side() {
    require_root!();
    let sides = [reference(), podnet("hdf")];
    let cases: Vec<(&str, Value)> = vec![
        ("no device named", json!({})),
        ("unknown device", json!({"device": "nosuch0"})),
        ("bad MAC", json!({"hwaddr": "nope"})),
        ("unknown MAC", json!({"hwaddr": "02:00:00:00:78:99"})),
        (
            "kernelpath not under /sys/devices",
            json!({"kernelpath": "sys/x"}),
        ),
    ];
    for (what, sel) in cases {
        let mut outs = Vec::new();
        for side in &sides {
            let (h, c, w) = (
                TestNs::new("hdf-h"),
                TestNs::new("hdf-c"),
                TestNs::new("hdf-w"),
            );
            host_device(&h, &w);
            let d = TempDir::new(&format!("hdf-{}", side.what));
            let netns = ns_path(&c);
            let before = links(&h);
            let conf = conf(sel.clone(), Some("host-local"), d.path()).to_string();
            let out = cni(side, &h, "host-device", "ADD", "ctr-hd", &netns, &conf);
            assert_eq!(links(&h), before, "{what}: {}: the host changed", side.what);
            assert_eq!(
                links(&c),
                json!([]),
                "{what}: {}: the container changed",
                side.what
            );
            assert_eq!(
                lease_files(d.path()),
                vec![],
                "{what}: {}: lease left",
                side.what
            );
            outs.push(out);
        }
        same(what, &outs[0], &outs[1]);
    }
    // pciBusID: no PCI device here; the reference fails looking for it, podnet refuses the key
    // by name (code 2).
    let (h, c) = (TestNs::new("hdp-h"), TestNs::new("hdp-c"));
    let d = TempDir::new("hdp");
    let conf = conf(json!({"pciBusID": "0000:00:19.0"}), None, d.path()).to_string();
    let r = cni(
        &sides[0],
        &h,
        "host-device",
        "ADD",
        "ctr-hd",
        &ns_path(&c),
        &conf,
    );
    let p = cni(
        &sides[1],
        &h,
        "host-device",
        "ADD",
        "ctr-hd",
        &ns_path(&c),
        &conf,
    );
    assert!(!r.ok && !p.ok, "{r:?} {p:?}");
    assert_eq!(p.code(), json!(2), "{}", p.stdout);
    assert!(p.stdout.contains("pciBusID"), "{}", p.stdout);
}

/// A failing IPAM after the device moved: podnet moves it back and releases nothing it did
/// not take (the reference 1.1.1 leaves the device in the container).
#[test]
fn host_device_rollback() {
    require_root!();
    let side = podnet("hdr");
    let (h, c, w) = (
        TestNs::new("hdr-h"),
        TestNs::new("hdr-c"),
        TestNs::new("hdr-w"),
    );
    host_device(&h, &w);
    let d = TempDir::new("hdr");
    let mut conf = conf(json!({"device": "hd0"}), Some("host-local"), d.path());
    conf["ipam"]["type"] = json!("no-such-ipam");
    let before = links(&h);
    let out = cni(
        &side,
        &h,
        "host-device",
        "ADD",
        "ctr-hd",
        &ns_path(&c),
        &conf.to_string(),
    );
    assert!(!out.ok, "{}", out.stdout);
    let mut want = before.clone();
    for l in want.as_array_mut().unwrap() {
        if l["name"] == "hd0" {
            l["alias"] = json!("hd0");
        }
    }
    assert_eq!(
        links(&h),
        want,
        "the device did not come back: {}",
        out.stdout
    );
    assert_eq!(links(&c), json!([]));
}
