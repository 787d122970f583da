//! Shared by cni_plugins.rs and cni_interfaces.rs: the two sides (reference and podnet), how a
//! plugin is run, and how results and kernel state are read.
#![allow(dead_code, unreachable_pub)]

pub use podnet_testsupport::{TestNs, require_root};
pub use serde_json::{Value, json};
pub use std::io::Write;
pub use std::path::{Path, PathBuf};
pub use std::process::Stdio;

pub const PODNET: &str = env!("CARGO_BIN_EXE_podnet-cni");

pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The podnet-cni binary: [`PODNET`], or `PODNET_CNI_BIN` where the tests run elsewhere (a
/// VM).
pub fn podnet_binary() -> PathBuf {
    std::env::var_os("PODNET_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PODNET))
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("podnet-cni-plugins-{}-{tag}", std::process::id()));
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

/// One side: where its plugins are.
pub struct Side {
    pub what: &'static str,
    pub dir: PathBuf,
    pub _keep: Option<TempDir>,
}

pub fn reference() -> Side {
    let dir =
        PathBuf::from(std::env::var("PODNET_CNI_PLUGINS").unwrap_or_else(|_| REFERENCE_DIR.into()));
    assert!(
        dir.join("loopback").exists(),
        "{} has no reference plugins: apt-get install containernetworking-plugins (or set \
         PODNET_CNI_PLUGINS)",
        dir.display()
    );
    Side {
        what: "reference",
        dir,
        _keep: None,
    }
}

pub fn podnet(tag: &str) -> Side {
    let t = TempDir::new(&format!("bin-{tag}"));
    let made = podnet_examples::cni::install_links(&podnet_binary(), t.path()).unwrap();
    assert_eq!(made.len(), podnet_examples::cni::PLUGINS.len());
    Side {
        what: "podnet",
        dir: t.path().to_owned(),
        _keep: Some(t),
    }
}

/// Writes the config to a plugin; a plugin may exit before reading it (the reference does
/// when the environment is incomplete), so a broken pipe is not the test's failure.
pub fn write_stdin(child: &mut std::process::Child, conf: &[u8]) {
    if let Err(e) = child.stdin.take().unwrap().write_all(conf) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
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
    pub fn code(&self) -> Value {
        assert!(!self.ok, "expected a failure, got {}", self.stdout);
        self.json()["code"].clone()
    }
}

/// Runs `side`'s `plugin` inside `host` with `cmd`, container `id`, namespace path `netns`.
pub fn cni(
    side: &Side,
    host: &TestNs,
    plugin: &str,
    cmd: &str,
    id: &str,
    netns: &str,
    conf: &str,
) -> Out {
    let mut c = host.command(side.dir.join(plugin));
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &side.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| {
        let dir: Vec<_> = std::fs::read_dir(&side.dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        panic!("{plugin} ({}): {e}; {dir:?}", side.dir.display())
    });
    write_stdin(&mut child, conf.as_bytes());
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn ns_path(c: &TestNs) -> String {
    format!("/run/netns/{}", c.name())
}

/// `ip -j` output of a command in `ns`, as JSON.
pub fn ip_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    serde_json::from_str(&ns.exec("ip", &a)).unwrap()
}

/// lo's state in `c`: flags and addresses.
pub fn lo_state(c: &TestNs) -> Value {
    let addr = ip_json(c, &["addr", "show", "dev", "lo"]);
    let a = &addr[0];
    json!({
        "flags": a["flags"],
        "operstate": a["operstate"],
        "addrs": a["addr_info"].as_array().map(|l| l.iter().map(|i| json!({
            "family": i["family"], "local": i["local"], "prefixlen": i["prefixlen"]
        })).collect::<Vec<_>>()),
    })
}

/// The result with the container namespace's path made comparable.
pub fn normalized(mut r: Value, netns: &str) -> Value {
    if let Some(ifs) = r.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            if i["sandbox"] == netns {
                i["sandbox"] = json!("<netns>");
            }
        }
    }
    r
}

/// Runs an IPAM plugin of `side` directly: IPAM touches no network device, so no namespace
/// (CNI_NETNS is only passed along).
pub fn ipam(side: &Side, plugin: &str, cmd: &str, cni_args: &str, conf: &Value) -> Out {
    let mut c = std::process::Command::new(side.dir.join(plugin));
    c.env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", "ctr-ipam")
        .env("CNI_NETNS", "/run/netns/unused")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &side.dir)
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{plugin}: {e}"));
    write_stdin(&mut child, conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The same outcome from both sides: the same result JSON, or both failing. A failure's code
/// is the same, except where the reference gives code 999 ("internal") to a bad config or
/// CNI_ARGS, for which podnet gives the spec's 7 or 4 (a deliberate difference, README).
pub fn same(what: &str, r: &Out, p: &Out) {
    assert_eq!(
        r.ok, p.ok,
        "{what}: reference ok={} ({}), podnet ok={} ({})",
        r.ok, r.stdout, p.ok, p.stdout
    );
    if r.ok {
        if !r.stdout.trim().is_empty() || !p.stdout.trim().is_empty() {
            assert_eq!(r.json(), p.json(), "{what}: results differ");
        }
        return;
    }
    let (rc, pc) = (r.code(), p.code());
    let deliberate = rc == 999 && (pc == 7 || pc == 4);
    assert!(
        rc == pc || deliberate,
        "{what}: reference code {rc} ({}), podnet code {pc} ({})",
        r.stdout,
        p.stdout
    );
    assert!(
        !p.json()["msg"].as_str().unwrap_or_default().is_empty(),
        "{what}: podnet's error says nothing"
    );
}

/// A resolv.conf for host-local's `resolvConf`.
pub fn resolv_conf(dir: &Path) -> PathBuf {
    let p = dir.join("resolv.conf");
    std::fs::write(
        &p,
        "# test\nnameserver 10.96.0.10\nnameserver 10.96.0.11\ndomain example.test\n\
         search a.test b.test\noptions ndots:5 edns0\n",
    )
    .unwrap();
    p
}

/// The lease files of a host-local data directory: name and content.
pub fn lease_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("hl")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lock" {
                continue;
            }
            out.push((name, std::fs::read_to_string(e.path()).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// host-local ADD for container `id`.
pub fn ipam_id(side: &Side, id: &str, conf: &Value) -> Out {
    let mut c = std::process::Command::new(side.dir.join("host-local"));
    c.env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/run/netns/unused")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &side.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    write_stdin(&mut child, conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Routes of `ns` as (dst, gateway, dev, scope, prefsrc), with `veth` named `<veth>`.
pub fn routes(ns: &TestNs, family: &str, veth: &str) -> Value {
    let v = ip_json(ns, &[family, "route", "show", "table", "all"]);
    let mut out: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] != "local" && r["type"] != "broadcast" && r["type"] != "multicast")
        .filter(|r| r["dst"] != "fe80::/64" && r["dev"] != "lo")
        .map(|r| {
            let dev = if r["dev"] == veth {
                json!("<veth>")
            } else {
                r["dev"].clone()
            };
            json!({"dst": r["dst"], "gateway": r["gateway"], "dev": dev, "scope": r["scope"],
                   "prefsrc": r["prefsrc"], "protocol": r["protocol"]})
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    json!(out)
}

/// Addresses of `ns` (lo aside) with `veth` named `<veth>`.
pub fn addrs(ns: &TestNs, veth: &str) -> Value {
    let v = ip_json(ns, &["addr", "show"]);
    let mut out: Vec<Value> = Vec::new();
    for l in v.as_array().unwrap() {
        if l["ifname"] == "lo" {
            continue;
        }
        let name = if l["ifname"] == veth {
            json!("<veth>")
        } else {
            l["ifname"].clone()
        };
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] == "link" {
                continue;
            }
            out.push(
                json!({"dev": name, "local": a["local"], "prefixlen": a["prefixlen"],
                            "scope": a["scope"]}),
            );
        }
        out.push(json!({"dev": name, "mtu": l["mtu"], "up": l["operstate"]}));
    }
    out.sort_by_key(|v| v.to_string());
    json!(out)
}

/// eth0's settings in `c` and the sysctls tuning sets in the test.
pub fn tuned_state(c: &TestNs) -> Value {
    let l = &ip_json(c, &["-d", "link", "show", "dev", "eth0"])[0];
    json!({
        "mac": l["address"], "mtu": l["mtu"], "flags": l["flags"], "promiscuity": l["promiscuity"],
        "rp_filter": c.exec("sysctl", &["-n", "net.ipv4.conf.eth0.rp_filter"]).trim(),
        "somaxconn": c.exec("sysctl", &["-n", "net.core.somaxconn"]).trim(),
    })
}

/// The container's macvlan: kind, mode, MTU, state.
pub fn macvlan_link(c: &TestNs) -> Value {
    let l = ip_json(c, &["-d", "link", "show"]);
    let l: Vec<Value> = l
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            json!({"name": l["ifname"], "mtu": l["mtu"], "kind": l["linkinfo"]["info_kind"],
                   "mode": l["linkinfo"]["info_data"]["mode"], "state": l["operstate"]})
        })
        .collect();
    json!(l)
}
