//! Shared by cni.rs and cni_lifecycle.rs: how the bridge plugin and IPAM are run, and how their
//! results, leases and kernel state are read and compared.
#![allow(dead_code, unreachable_pub)]

pub use podnet_testsupport::{TestNs, require_root};
pub use serde_json::{Value, json};
pub use std::io::Write;
pub use std::path::{Path, PathBuf};
pub use std::process::Stdio;

pub const PODNET: &str = env!("CARGO_BIN_EXE_podnet-cni");

pub const CNI_DIR: &str = "/usr/lib/cni";

pub fn reference(name: &str) -> String {
    let dir = std::env::var("PODNET_CNI_PLUGINS").unwrap_or_else(|_| CNI_DIR.into());
    let p = format!("{dir}/{name}");
    assert!(
        Path::new(&p).exists(),
        "{p} is missing: apt-get install containernetworking-plugins (or set PODNET_CNI_PLUGINS)"
    );
    p
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("podnet-cni-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {}", self.stdout, self.stderr))
    }
}

/// Runs `plugin` inside `host` with the given CNI_* variables and config.
pub fn invoke(host: &TestNs, plugin: &str, env: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = host.command(plugin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{plugin}: {e}"));
    // A plugin may exit before it reads stdin (the reference does when the environment is
    // incomplete): a broken pipe is its answer, not the test's failure.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{plugin}: {e}");
    }
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn cni(
    host: &TestNs,
    plugin: &str,
    cmd: &str,
    id: &str,
    cont: Option<&TestNs>,
    conf: &str,
) -> Out {
    let netns = cont
        .map(|c| format!("/run/netns/{}", c.name()))
        .unwrap_or_default();
    invoke(
        host,
        plugin,
        &[
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_PATH",
                &std::env::var("PODNET_CNI_PATH").unwrap_or_else(|_| CNI_DIR.into()),
            ),
        ],
        conf,
    )
}

pub fn add_ok(host: &TestNs, plugin: &str, id: &str, cont: &TestNs, conf: &str) -> Value {
    let out = cni(host, plugin, "ADD", id, Some(cont), conf);
    assert!(out.ok, "{plugin} ADD failed: {} {}", out.stdout, out.stderr);
    out.json()
}

pub fn bridge_conf(data_dir: &Path, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": "podnet-test",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "isDefaultGateway": true,
        "ipMasq": true,
        "mtu": 1400,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.244.7.0/24"}]],
            "routes": [{"dst": "10.96.0.0/12"}]
        },
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        for (k, v) in e {
            c.insert(k, v);
        }
    }
    c.to_string()
}

/// Lease files (named by address) in `<data_dir>/podnet-test`.
pub fn leases(data_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join("podnet-test"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn ip_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    serde_json::from_str(&ns.exec("ip", &a)).unwrap()
}

pub fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            out.insert((*k).into(), x.clone());
        }
    }
    Value::Object(out)
}

/// The container's links, addresses (without MAC-derived link-local ones), routes and the
/// sysctls the plugins set, with names and MACs that differ by chance left out.
pub fn container_state(c: &TestNs) -> Value {
    let links: Vec<Value> = ip_json(c, &["-d", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut p = pick(
                l,
                &[
                    "ifname",
                    "flags",
                    "mtu",
                    "operstate",
                    "txqlen",
                    "qdisc",
                    "link_type",
                ],
            );
            p["kind"] = l["linkinfo"]["info_kind"].clone();
            p
        })
        .collect();
    let addrs: Vec<Value> = ip_json(c, &["addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            let dev = l["ifname"].clone();
            l["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["scope"] != "link")
                .map(move |a| {
                    let mut p = pick(a, &["family", "local", "prefixlen", "broadcast", "scope"]);
                    p["dev"] = dev.clone();
                    p
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let routes4 = ip_json(c, &["-4", "route", "show", "table", "main"]);
    let routes6 = ip_json(c, &["-6", "route", "show", "table", "main"]);
    let sysctl = |k: &str| c.exec("sysctl", &["-n", k]).trim().to_owned();
    json!({
        "links": links,
        "addrs": addrs,
        "routes4": routes4,
        "routes6": routes6,
        "arp_notify": sysctl("net.ipv4.conf.eth0.arp_notify"),
        "accept_dad": sysctl("net.ipv6.conf.eth0.accept_dad"),
    })
}

/// The host side: the bridge, its addresses, its ports and the nat table.
pub fn host_state(h: &TestNs) -> Value {
    let br = &ip_json(h, &["-d", "link", "show", "cni0"])[0];
    let ports: Vec<Value> = ip_json(h, &["-d", "link", "show", "master", "cni0"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut p = pick(l, &["flags", "mtu", "operstate", "txqlen"]);
            p["hairpin"] = l["linkinfo"]["info_slave_data"]["hairpin"].clone();
            p
        })
        .collect();
    let addrs: Vec<Value> = ip_json(h, &["addr", "show", "cni0"])[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| pick(a, &["family", "local", "prefixlen", "broadcast", "scope"]))
        .collect();
    let nat: Vec<String> = h
        .exec("iptables-save", &["-t", "nat"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            // Counters differ with traffic.
            l.split(" [").next().unwrap_or(l).to_owned()
        })
        .collect();
    json!({
        "bridge": pick(br, &["flags", "mtu", "operstate"]),
        "bridge_addrs": addrs,
        "ports": ports,
        "nat": nat,
        "ip_forward": h.exec("sysctl", &["-n", "net.ipv4.ip_forward"]).trim(),
    })
}

/// The result with what differs by chance (MACs, the host veth's random name, the sandbox
/// path) replaced by placeholders.
pub fn normalized(mut r: Value) -> Value {
    if let Some(ifaces) = r["interfaces"].as_array_mut() {
        for (i, iface) in ifaces.iter_mut().enumerate() {
            if iface.get("mac").is_some() {
                iface["mac"] = json!("MAC");
            }
            if iface.get("sandbox").is_some() {
                iface["sandbox"] = json!("SANDBOX");
            }
            if i == 1 {
                let n = iface["name"].as_str().unwrap_or_default();
                assert!(n.starts_with("veth") && n.len() == 12, "host veth name {n}");
                iface["name"] = json!("vethXXXXXXXX");
            }
        }
    }
    r
}

/// The keys of the JSON text in order of appearance (to compare field order with the
/// reference, which a parsed `Value` forgets).
pub fn keys_in_order(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let mut k = j + 1;
            while k < b.len() && (b[k] as char).is_whitespace() {
                k += 1;
            }
            if k < b.len() && b[k] == b':' {
                keys.push(text[start..j].to_owned());
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    keys
}

/// The reference bridge + host-local and podnet-cni, same config (changed by `edit`), into
/// fresh namespaces: the same result and the same kernel state, through ADD, CHECK and DEL.
pub fn side_by_side(tag: &str, edit: impl Fn(&mut Value)) {
    let (ref_h, ref_c) = (
        TestNs::new(&format!("{tag}-ref-h")),
        TestNs::new(&format!("{tag}-ref-c")),
    );
    let (pn_h, pn_c) = (
        TestNs::new(&format!("{tag}-pn-h")),
        TestNs::new(&format!("{tag}-pn-c")),
    );
    let (ref_d, pn_d) = (
        TempDir::new(&format!("{tag}-ref")),
        TempDir::new(&format!("{tag}-pn")),
    );
    let conf = |d: &Path, extra: Value| {
        let mut c: Value = serde_json::from_str(&bridge_conf(d, extra)).unwrap();
        edit(&mut c);
        c["ipam"]["dataDir"] = json!(d);
        c.to_string()
    };
    let ref_conf = conf(ref_d.path(), json!({}));
    let pn_conf = conf(pn_d.path(), json!({"type": "podnet-cni"}));

    let ref_out = cni(
        &ref_h,
        &reference("bridge"),
        "ADD",
        "ctr-1",
        Some(&ref_c),
        &ref_conf,
    );
    assert!(
        ref_out.ok,
        "reference ADD: {} {}",
        ref_out.stdout, ref_out.stderr
    );
    let pn_out = cni(&pn_h, PODNET, "ADD", "ctr-1", Some(&pn_c), &pn_conf);
    assert!(
        pn_out.ok,
        "podnet-cni ADD: {} {}",
        pn_out.stdout, pn_out.stderr
    );

    // The same result, field for field and in the same order.
    let (r, p) = (ref_out.json(), pn_out.json());
    assert_eq!(
        normalized(p.clone()),
        normalized(r.clone()),
        "results differ"
    );
    assert_eq!(
        keys_in_order(&pn_out.stdout),
        keys_in_order(&ref_out.stdout)
    );
    let first = if p.get("ip4").is_some() {
        &p["ip4"]["ip"]
    } else {
        &p["ips"][0]["address"]
    };
    // The first free address, or the one the config asks for.
    let edited: Value = serde_json::from_str(&pn_conf).unwrap();
    let asked = [
        &edited["args"]["cni"]["ips"][0],
        &edited["runtimeConfig"]["ips"][0],
    ]
    .into_iter()
    .find_map(|v| v.as_str())
    .map(|a| a.split('/').next().unwrap_or(a).to_owned());
    let first_ip = asked.unwrap_or_else(|| "10.244.7.2".to_owned());
    assert_eq!(first, &json!(format!("{first_ip}/24")), "{p}");

    // The same container and host state.
    assert_eq!(container_state(&pn_c), container_state(&ref_c));
    assert_eq!(host_state(&pn_h), host_state(&ref_h));
    assert_eq!(leases(pn_d.path()), leases(ref_d.path()));
    if edited["ipam"]["type"] == "host-local" {
        assert_eq!(
            std::fs::read(pn_d.path().join(format!("podnet-test/{first_ip}"))).unwrap(),
            std::fs::read(ref_d.path().join(format!("podnet-test/{first_ip}"))).unwrap()
        );
    }
    assert!(
        pn_c.ping("10.244.7.1", 2),
        "container cannot reach its gateway"
    );

    // CHECK with the ADD's result passes (CHECK exists from 0.4.0 on). (The reference 1.1.1
    // fails its own CHECK here: it looks for the ipam route without a gateway, but installed
    // it via the gateway.)
    let version = p["cniVersion"].as_str().unwrap_or_default();
    let check =
        !(version.starts_with("0.1") || version.starts_with("0.2") || version.starts_with("0.3"));
    let mut with_prev: Value = serde_json::from_str(&pn_conf).unwrap();
    with_prev["prevResult"] = p.clone();
    let out = cni(
        &pn_h,
        PODNET,
        "CHECK",
        "ctr-1",
        Some(&pn_c),
        &with_prev.to_string(),
    );
    if check {
        assert!(out.ok, "CHECK: {} {}", out.stdout, out.stderr);
    } else {
        assert_eq!(out.json()["code"], 1, "CHECK before 0.4.0: {}", out.stdout);
    }

    // DEL leaves both in the same state, and a second DEL is fine.
    for (h, c, plugin, conf) in [
        (&ref_h, &ref_c, reference("bridge"), &ref_conf),
        (&pn_h, &pn_c, PODNET.to_owned(), &pn_conf),
    ] {
        for _ in 0..2 {
            let out = cni(h, &plugin, "DEL", "ctr-1", Some(c), conf);
            assert!(out.ok, "{plugin} DEL: {} {}", out.stdout, out.stderr);
        }
    }
    assert_eq!(
        container_state_after_del(&pn_c),
        container_state_after_del(&ref_c)
    );
    assert_eq!(host_state(&pn_h), host_state(&ref_h));
    assert!(leases(pn_d.path()).is_empty());
}

pub fn container_state_after_del(c: &TestNs) -> Value {
    let links: Vec<Value> = ip_json(c, &["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].clone())
        .collect();
    json!({"links": links, "routes": ip_json(c, &["route", "show"])})
}

/// podnet-host-local, built from the ipam crate next to this test's binaries.
pub fn podnet_host_local() -> PathBuf {
    let bin_dir = Path::new(PODNET).parent().unwrap().to_path_buf();
    let p = bin_dir.join("podnet-host-local");
    if !p.exists() {
        // `cargo test -p podnet-examples` alone does not build the ipam crate's binaries.
        let target = bin_dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "podnet-ipam",
            "--bin",
            "podnet-host-local",
            "--target-dir",
        ])
        .arg(target);
        if bin_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo runs");
        assert!(st.success(), "building podnet-host-local failed");
    }
    p
}

/// Host veths, container links and leases: what a failed ADD must not leave.
pub fn leftovers(h: &TestNs, c: &TestNs, data: &Path) -> Value {
    let veths: Vec<Value> = ip_json(h, &["link", "show", "type", "veth"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].clone())
        .collect();
    let cont: Vec<Value> = ip_json(c, &["addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!([l["ifname"], l["addr_info"].as_array().unwrap().len()]))
        .collect();
    json!({"host_veths": veths, "container": cont, "leases": leases(data)})
}

/// Runs podnet-host-local directly: an IPAM plugin touches no network device.
pub fn host_local(env: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = std::process::Command::new(podnet_host_local());
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
