//! `bandwidth` side by side with the reference plugin (Debian containernetworking-plugins
//! 1.1.1): the same conflist (bridge + bandwidth) through the reference plugins and podnet's,
//! each in its own namespaces; the same result (the ifb device appended), the same qdiscs
//! (`tc -j qdisc show` of the "host" namespace), the same ifb device, nothing of it after DEL,
//! and a flow measured in each direction lands within 20% of the configured rate.

mod cni_plugins_support;
use cni_plugins_support::*;
use podnet_testsupport::{SkipCause, skip};

const INGRESS_RATE: u64 = 8_000_000;
const EGRESS_RATE: u64 = 16_000_000;

fn bridge_conf(d: &TempDir) -> Value {
    json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "bridge", "bridge": "cnibw0",
        "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": d.path(), "subnet": "10.89.0.0/24"}})
}

fn bw_conf(prev: &Value) -> String {
    json!({"cniVersion": "1.0.0", "name": "bwnet", "type": "bandwidth",
        "ingressRate": INGRESS_RATE, "ingressBurst": 160_000,
        "egressRate": EGRESS_RATE, "egressBurst": 240_000, "prevResult": prev})
    .to_string()
}

/// The qdiscs of `h` (`tc -j qdisc show`), the host veth named `<veth>`.
fn qdiscs(h: &TestNs, veth: &str) -> Value {
    let mut v: Value = serde_json::from_str(&h.exec("tc", &["-j", "qdisc", "show"])).unwrap();
    for q in v.as_array_mut().unwrap() {
        if q["dev"] == veth {
            q["dev"] = json!("<veth>");
        }
    }
    v
}

/// The ifb devices of `h`: name, MTU, state, flags.
fn ifbs(h: &TestNs) -> Value {
    let l = ip_json(h, &["-d", "link", "show", "type", "ifb"]);
    json!(
        l.as_array()
            .unwrap()
            .iter()
            .map(|l| json!({
                "name": l["ifname"], "mtu": l["mtu"], "flags": l["flags"], "qdisc": l["qdisc"]
            }))
            .collect::<Vec<_>>()
    )
}

/// The result with MACs and the random veth name left out.
fn shape(r: &Value) -> Value {
    let mut r = r.clone();
    for i in r["interfaces"].as_array_mut().unwrap() {
        i["mac"] = json!("<mac>");
        if i["name"].as_str().unwrap_or("").starts_with("veth") {
            i["name"] = json!("<veth>");
        }
        if i.get("sandbox").is_some() {
            i["sandbox"] = json!("<netns>");
        }
    }
    r
}

/// iperf3 for 3 seconds from `h` to the server in `c` (`reverse`: from `c` to `h`); bits/s
/// received.
fn iperf(h: &TestNs, c: &TestNs, reverse: bool) -> f64 {
    let mut server = c
        .command("iperf3")
        .args(["-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = String::new();
    let mut got = None;
    for _ in 0..50 {
        let mut args = vec!["-c", "10.89.0.2", "-p", "5201", "-t", "3", "-J"];
        if reverse {
            args.push("-R");
        }
        let out = h.output("iperf3", &args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // iperf3 -J may exit 0 with an "error" (the server not listening yet): try again.
        got = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["end"]["sum_received"]["bits_per_second"].as_f64())
            .filter(|_| out.status.success());
        if got.is_some() {
            break;
        }
        last = text;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // `-1` servers can linger after the test: stop it.
    let _ = server.kill();
    let _ = server.wait();
    got.unwrap_or_else(|| panic!("iperf3 never connected: {last}"))
}

#[derive(Debug, PartialEq)]
struct Seen {
    result: Value,
    qdiscs: Value,
    ifbs: Value,
    filter_redirects_to_ifb: bool,
    qdiscs_after_del: Value,
    ifbs_after_del: Value,
}

fn one_side(side: &Side, measure: bool) -> (Seen, Option<(f64, f64)>) {
    let (h, c) = (TestNs::new("bw-h"), TestNs::new("bw-c"));
    let d = TempDir::new(&format!("bw-{}", side.what));
    let n = ns_path(&c);
    let bridge = bridge_conf(&d).to_string();
    let b = cni(side, &h, "bridge", "ADD", "ctr-bw", &n, &bridge);
    assert!(b.ok, "{} bridge ADD: {}", side.what, b.stdout);
    let prev = b.json();
    let veth = prev["interfaces"][1]["name"].as_str().unwrap().to_owned();
    let conf = bw_conf(&prev);
    let a = cni(side, &h, "bandwidth", "ADD", "ctr-bw", &n, &conf);
    assert!(
        a.ok,
        "{} bandwidth ADD: {} {}",
        side.what, a.stdout, a.stderr
    );
    let result = a.json();
    let ifb = result["interfaces"][3]["name"].as_str().unwrap().to_owned();
    let filters = h.exec("tc", &["filter", "show", "dev", &veth, "ingress"]);
    let filter_redirects_to_ifb =
        filters.contains(&format!("mirred (Egress Redirect to device {ifb}) stolen"));
    let seen_qdiscs = qdiscs(&h, &veth);
    let seen_ifbs = ifbs(&h);
    let check = cni(
        side,
        &h,
        "bandwidth",
        "CHECK",
        "ctr-bw",
        &n,
        &with_result(&conf, &result),
    );
    assert!(
        check.ok,
        "{} CHECK: {} {}",
        side.what, check.stdout, check.stderr
    );
    let rates = measure.then(|| (iperf(&h, &c, false), iperf(&h, &c, true)));
    for _ in 0..2 {
        let del = cni(side, &h, "bandwidth", "DEL", "ctr-bw", &n, &conf);
        assert!(del.ok, "{} bandwidth DEL: {}", side.what, del.stdout);
    }
    let bd = cni(side, &h, "bridge", "DEL", "ctr-bw", &n, &bridge);
    assert!(bd.ok, "{} bridge DEL: {}", side.what, bd.stdout);
    (
        Seen {
            result: shape(&result),
            qdiscs: seen_qdiscs,
            ifbs: seen_ifbs,
            filter_redirects_to_ifb,
            qdiscs_after_del: qdiscs(&h, &veth),
            ifbs_after_del: ifbs(&h),
        },
        rates,
    )
}

fn with_result(conf: &str, result: &Value) -> String {
    let mut c: Value = serde_json::from_str(conf).unwrap();
    c["prevResult"] = result.clone();
    c.to_string()
}

#[test]
fn bandwidth_side_by_side_and_shaped() {
    require_root!();
    if std::process::Command::new("iperf3")
        .arg("-v")
        .output()
        .is_err()
    {
        return skip(
            "bandwidth_side_by_side_and_shaped",
            SkipCause::Avoidable,
            "iperf3 is not installed (apt-get install iperf3)",
        );
    }
    let (r, _) = one_side(&reference(), false);
    let (p, rates) = one_side(&podnet("bw"), true);
    assert_eq!(r, p);
    assert!(p.filter_redirects_to_ifb);
    assert_eq!(p.ifbs_after_del, json!([]));
    let kinds: Vec<&Value> = p
        .qdiscs
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["kind"])
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "tbf").count(),
        2,
        "{}",
        p.qdiscs
    );
    let (into, out_of) = rates.unwrap();
    for (what, got, want) in [
        ("into the container (ingressRate)", into, INGRESS_RATE),
        ("out of the container (egressRate)", out_of, EGRESS_RATE),
    ] {
        let ratio = got / want as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{what}: {got:.0} bit/s measured, {want} configured ({ratio:.2}x)"
        );
    }
}

#[test]
fn bandwidth_runtime_config_and_bad_configs() {
    require_root!();
    let (r, p) = (reference(), podnet("bwbad"));
    let h = TestNs::new("bwb-h");
    let c = TestNs::new("bwb-c");
    let n = ns_path(&c);
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": n}],
        "ips": [{"interface": 0, "address": "10.89.0.2/24"}]});
    for (what, conf) in [
        (
            "rate without burst",
            json!({"cniVersion": "1.0.0", "name": "b", "type": "bandwidth", "ingressRate": 8000, "prevResult": prev}),
        ),
        (
            "burst without rate",
            json!({"cniVersion": "1.0.0", "name": "b", "type": "bandwidth", "egressBurst": 8000, "prevResult": prev}),
        ),
        (
            "runtimeConfig rate without burst",
            json!({"cniVersion": "1.0.0", "name": "b", "type": "bandwidth",
                "runtimeConfig": {"bandwidth": {"egressRate": 8000}}, "prevResult": prev}),
        ),
        (
            "old cniVersion",
            json!({"cniVersion": "0.2.0", "name": "b", "type": "bandwidth", "prevResult": prev}),
        ),
        // Nothing to shape: prevResult passed through.
        (
            "no limits",
            json!({"cniVersion": "1.0.0", "name": "b", "type": "bandwidth", "prevResult": prev}),
        ),
    ] {
        let ro = cni(&r, &h, "bandwidth", "ADD", "ctr-bwb", &n, &conf.to_string());
        let po = cni(&p, &h, "bandwidth", "ADD", "ctr-bwb", &n, &conf.to_string());
        same(what, &ro, &po);
    }
    // runtimeConfig.bandwidth shapes like the top-level keys.
    let d = TempDir::new("bwrc");
    let b = cni(
        &p,
        &h,
        "bridge",
        "ADD",
        "ctr-bwrc",
        &n,
        &bridge_conf(&d).to_string(),
    );
    assert!(b.ok, "{}", b.stdout);
    let veth = b.json()["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let conf = json!({"cniVersion": "1.0.0", "name": "b", "type": "bandwidth",
        "runtimeConfig": {"bandwidth": {"ingressRate": INGRESS_RATE, "ingressBurst": 160_000}},
        "prevResult": b.json()})
    .to_string();
    let a = cni(&p, &h, "bandwidth", "ADD", "ctr-bwrc", &n, &conf);
    assert!(a.ok, "{}", a.stdout);
    let q = qdiscs(&h, &veth);
    let tbf: Vec<&Value> = q
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["kind"] == "tbf")
        .collect();
    assert_eq!(tbf.len(), 1, "{q}");
    assert_eq!(tbf[0]["dev"], "<veth>");
    assert_eq!(tbf[0]["options"]["rate"], json!(INGRESS_RATE / 8));
    assert!(cni(&p, &h, "bandwidth", "DEL", "ctr-bwrc", &n, &conf).ok);
    // podnet's DEL also took its tbf off the veth (the reference leaves it to the veth's end).
    let q = qdiscs(&h, &veth);
    assert!(
        !q.as_array().unwrap().iter().any(|q| q["kind"] == "tbf"),
        "{q}"
    );
    assert!(
        cni(
            &p,
            &h,
            "bridge",
            "DEL",
            "ctr-bwrc",
            &n,
            &bridge_conf(&d).to_string()
        )
        .ok
    );
}
