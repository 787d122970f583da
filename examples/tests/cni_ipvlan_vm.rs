//! podnet's `ipvlan` CNI plugin side by side with the reference plugin (Debian
//! containernetworking-plugins 1.1.1) on a kernel with ipvlan: the same configs (modes l2, l3
//! and l3s, `mtu`, IPAM host-local and static, and ones that must fail) through both, each in
//! its own "host" and "container" namespaces; the result JSON, the container's link (kind,
//! mode, MTU, MAC), addresses and routes, CHECK, the error codes, and nothing left after DEL;
//! traffic in l2 mode; `linkInContainer` (which the reference 1.1.1 does not have) on its own.
//!
//! This machine's kernel has no ipvlan, so the tests run inside a qemu VM with Debian's kernel
//! and its `ipvlan` module (`nat/tests/support/vm.rs` and `vm_tests.rs`), this very program
//! running there, with the reference plugins and podnet-cni put into the guest; where the
//! kernel has ipvlan they run natively (`PODNET_VM=1` asks for the VM anyway). When the VM
//! cannot be had the tests skip through `podnet_testsupport::skip`, saying why.
//!
//! A `harness = false` test target (`Cargo.toml`).

mod cni_plugins_support;
#[path = "../../nat/tests/support/vm.rs"]
mod vm;
#[path = "../../nat/tests/support/vm_tests.rs"]
mod vm_tests;

use cni_plugins_support::*;
use podnet_links::{Handle, Ipvlan, Veth};
use vm::Vm;
use vm_tests::{KernelTest, KernelTests};

/// Where the guest has the reference plugins and podnet-cni.
const GUEST_REFERENCE_DIR: &str = "/test/cni";
const GUEST_PODNET: &str = "/test/bin/podnet-cni";

static TESTS: KernelTests = KernelTests {
    program: "cni_ipvlan_vm",
    feature: "ipvlan",
    tests: &[
        KernelTest {
            name: "ipvlan_side_by_side",
            run: ipvlan_side_by_side,
        },
        KernelTest {
            name: "ipvlan_link_in_container",
            run: ipvlan_link_in_container,
        },
    ],
    native: kernel_has_ipvlan,
    setup,
};

/// The modules, `ip` (busybox's lacks `-j`), the reference plugins the tests run and
/// podnet-cni, and the environment that names them to the guest.
fn setup(vm: &mut Vm) -> Result<(), String> {
    vm.memory_mb = 512;
    vm.modules(&["veth", "ipvlan"])?;
    for plugin in ["ipvlan", "host-local", "static", "loopback"] {
        vm.host_program(
            &Path::new(REFERENCE_DIR).join(plugin),
            &format!("{GUEST_REFERENCE_DIR}/{plugin}"),
        )?;
    }
    vm.host_program(Path::new(PODNET), GUEST_PODNET)?;
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("ip (iproute2) is not installed on this machine")?;
    for dir in ["/bin", "/sbin"] {
        vm.host_program(ip, &format!("{dir}/ip"))?;
    }
    vm.env("PODNET_CNI_PLUGINS", GUEST_REFERENCE_DIR)
        .env("PODNET_CNI_BIN", GUEST_PODNET);
    Ok(())
}

/// `true` when a namespace of our own can have an ipvlan device. Needs root; without it,
/// `false`.
fn kernel_has_ipvlan() -> bool {
    if !vm::is_root() {
        return false;
    }
    let ns = TestNs::new("ipvlan-probe");
    let Ok(h) = Handle::in_ns(&ns) else {
        return false;
    };
    h.link().add(&Veth::new("p0").peer("p1")).is_ok()
        && h.link().add(&Ipvlan::new("iv", "p0")).is_ok()
}

const MASTER_MAC: &str = "02:00:00:00:82:01";

/// The master `iv0` (MAC [`MASTER_MAC`], up) in `h`, its peer `wire0` in `w` with 10.82.0.1.
fn master(h: &TestNs, w: &TestNs) {
    h.add_veth("iv0", w, "wire0");
    h.exec("ip", &["link", "set", "iv0", "address", MASTER_MAC, "up"]);
    w.exec("ip", &["addr", "add", "10.82.0.1/24", "dev", "wire0"]);
    w.exec("ip", &["link", "set", "wire0", "up"]);
}

/// The container's links (lo aside): name, kind, ipvlan mode, MTU, MAC, up.
fn links(ns: &TestNs) -> Value {
    let l = ip_json(ns, &["-d", "link", "show"]);
    json!(
        l.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["ifname"] != "lo")
            .map(
                |l| json!({"name": l["ifname"], "kind": l["linkinfo"]["info_kind"],
                "mode": l["linkinfo"]["info_data"]["mode"], "mtu": l["mtu"], "mac": l["address"],
                "up": l["flags"].as_array().is_some_and(|f| f.contains(&json!("UP")))})
            )
            .collect::<Vec<_>>()
    )
}

/// host-local's lease files (addresses only) of network `net` in `dir`.
fn leases(dir: &Path, net: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(net))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn ipvlan_side_by_side() {
    require_root!();
    let sides = [reference(), podnet("ipvlan")];
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("l2, host-local", |_| {}),
        ("l3, host-local, mtu 1400", |c| {
            c["mode"] = json!("l3");
            c["mtu"] = json!(1400);
        }),
        ("l3s, static, IPv4 and IPv6", |c| {
            c["mode"] = json!("l3s");
            // Routes with their gateway: the reference 1.1.1's CHECK fails its own ADD for a
            // route without one (README).
            c["ipam"] = json!({"type": "static",
                "addresses": [{"address": "10.82.0.9/24", "gateway": "10.82.0.1"},
                              {"address": "fd82::9/64", "gateway": "fd82::1"}],
                "routes": [{"dst": "10.96.0.0/12", "gw": "10.82.0.1"},
                           {"dst": "::/0", "gw": "fd82::1"}]});
        }),
        ("no such master", |c| c["master"] = json!("nosuch0")),
    ];
    for (what, edit) in cases {
        let mut seen = Vec::new();
        for side in &sides {
            let (h, c, w) = (
                TestNs::new("ivl-h"),
                TestNs::new("ivl-c"),
                TestNs::new("ivl-w"),
            );
            master(&h, &w);
            let d = TempDir::new(&format!("ivl-{}", side.what));
            let netns = ns_path(&c);
            let mut conf = json!({"cniVersion": "1.0.0", "name": "ivl", "type": "ipvlan",
                "master": "iv0",
                "ipam": {"type": "host-local", "dataDir": d.path(),
                         "ranges": [[{"subnet": "10.82.0.0/24", "rangeStart": "10.82.0.20"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
                "dns": {"nameservers": ["10.96.0.10"]}});
            edit(&mut conf);
            let conf = conf.to_string();
            let host_before = addrs(&h, "");
            let add = cni(side, &h, "ipvlan", "ADD", "ctr-ivl", &netns, &conf);
            let mut out = json!({"ok": add.ok});
            if add.ok {
                let raw = add.json();
                out["result"] = normalized(raw.clone(), &netns);
                out["links"] = links(&c);
                out["routes"] = json!([routes(&c, "-4", ""), routes(&c, "-6", "")]);
                out["addrs"] = addrs(&c, "");
                out["arp_notify"] = json!(
                    c.exec("sysctl", &["-n", "net.ipv4.conf.eth0.arp_notify"])
                        .trim()
                );
                if what.starts_with("l2") {
                    out["ping"] = json!(c.ping("10.82.0.1", 3));
                }
                let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
                with_prev["prevResult"] = raw;
                let with_prev = with_prev.to_string();
                out["check"] =
                    json!(cni(side, &h, "ipvlan", "CHECK", "ctr-ivl", &netns, &with_prev).ok);
                // CHECK against another mode fails.
                let mut other: Value = serde_json::from_str(&with_prev).unwrap();
                other["mode"] = json!(if what.starts_with("l2") { "l3" } else { "l2" });
                out["check_other_mode"] = json!(
                    cni(
                        side,
                        &h,
                        "ipvlan",
                        "CHECK",
                        "ctr-ivl",
                        &netns,
                        &other.to_string()
                    )
                    .ok
                );
            } else {
                let code = add.code();
                out["code"] = json!(if code == 999 || code == 7 {
                    json!("999 or 7")
                } else {
                    code
                });
                assert!(
                    !add.json()["msg"].as_str().unwrap_or_default().is_empty(),
                    "{what}: {}: an error without a message",
                    side.what
                );
            }
            let del = cni(side, &h, "ipvlan", "DEL", "ctr-ivl", &netns, &conf);
            if add.ok {
                assert!(del.ok, "{what}: {} DEL: {}", side.what, del.stdout);
                if what.starts_with("l2") {
                    let again = cni(side, &h, "ipvlan", "DEL", "ctr-ivl", &netns, &conf);
                    out["del_again"] = json!(again.ok);
                }
            }
            assert_eq!(
                links(&c),
                json!([]),
                "{what}: {}: DEL left the ipvlan",
                side.what
            );
            assert_eq!(
                addrs(&h, ""),
                host_before,
                "{what}: {}: the host changed",
                side.what
            );
            assert_eq!(
                leases(d.path(), "ivl"),
                Vec::<String>::new(),
                "{what}: {}",
                side.what
            );
            seen.push(out);
        }
        assert_eq!(seen[0], seen[1], "ipvlan, {what}: reference vs podnet");
    }
}

/// `linkInContainer`: the master is in the container's namespace; the device is made there,
/// CHECK looks for the master there, and DEL leaves the master alone. (The reference 1.1.1
/// does not have the key: it looks for the master on the host and fails.)
fn ipvlan_link_in_container() {
    require_root!();
    let side = podnet("ivc");
    let (h, c, w) = (
        TestNs::new("ivc-h"),
        TestNs::new("ivc-c"),
        TestNs::new("ivc-w"),
    );
    master(&c, &w);
    let d = TempDir::new("ivc");
    let netns = ns_path(&c);
    let conf = json!({"cniVersion": "1.0.0", "name": "ivc", "type": "ipvlan",
        "master": "iv0", "linkInContainer": true, "mode": "l2",
        "ipam": {"type": "host-local", "dataDir": d.path(), "subnet": "10.82.0.0/24",
                 "rangeStart": "10.82.0.30"}})
    .to_string();
    let add = cni(&side, &h, "ipvlan", "ADD", "ctr-ivc", &netns, &conf);
    assert!(add.ok, "{} {}", add.stdout, add.stderr);
    assert_eq!(add.json()["ips"][0]["address"], "10.82.0.30/24");
    let l = links(&c);
    let eth0 = l
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "eth0")
        .unwrap();
    assert_eq!(eth0["kind"], "ipvlan", "{l}");
    assert_eq!(eth0["mac"], MASTER_MAC, "{l}");
    assert!(c.ping("10.82.0.1", 3), "no traffic from the ipvlan");
    let mut with_prev: Value = serde_json::from_str(&conf).unwrap();
    with_prev["prevResult"] = add.json();
    let check = cni(
        &side,
        &h,
        "ipvlan",
        "CHECK",
        "ctr-ivc",
        &netns,
        &with_prev.to_string(),
    );
    assert!(check.ok, "{}", check.stdout);
    let del = cni(&side, &h, "ipvlan", "DEL", "ctr-ivc", &netns, &conf);
    assert!(del.ok, "{}", del.stdout);
    let names: Vec<Value> = links(&c)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("iv0")],
        "DEL must remove eth0 and keep the master"
    );
    assert_eq!(leases(d.path(), "ivc"), Vec::<String>::new());
    // Without linkInContainer the master is looked up on the host, where there is none.
    let host_only = conf.replace("\"linkInContainer\":true", "\"linkInContainer\":false");
    let out = cni(&side, &h, "ipvlan", "ADD", "ctr-ivc", &netns, &host_only);
    assert!(!out.ok && out.stdout.contains("iv0"), "{}", out.stdout);
}

fn main() {
    vm_tests::main(&TESTS)
}
