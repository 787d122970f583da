//! podnet-cni's multi-call plugins side by side with the reference plugins (Debian
//! containernetworking-plugins 1.1.1 in /usr/lib/cni): the same configs, including ones that
//! must fail, through both; the result JSON, the kernel state left, the error codes; and after
//! DEL nothing of either left.
//!
//! podnet's plugins run from a `CNI_PATH` directory of links to the podnet-cni binary, made by
//! `podnet_examples::cni::install_links`, so each runs under its standard type name. Every
//! plugin runs inside a "host" test namespace with CNI_NETNS a "container" test namespace.

use podnet_testsupport::{TestNs, require_root};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

const PODNET: &str = env!("CARGO_BIN_EXE_podnet-cni");
const REFERENCE_DIR: &str = "/usr/lib/cni";

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("podnet-cni-plugins-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One side: where its plugins are.
struct Side {
    what: &'static str,
    dir: PathBuf,
    _keep: Option<TempDir>,
}

fn reference() -> Side {
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

fn podnet(tag: &str) -> Side {
    let t = TempDir::new(&format!("bin-{tag}"));
    let made = podnet_examples::cni::install_links(Path::new(PODNET), t.path()).unwrap();
    assert_eq!(made.len(), podnet_examples::cni::PLUGINS.len());
    Side {
        what: "podnet",
        dir: t.path().to_owned(),
        _keep: Some(t),
    }
}

/// One plugin invocation's outcome.
#[derive(Debug)]
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {}", self.stdout, self.stderr))
    }
    fn code(&self) -> Value {
        assert!(!self.ok, "expected a failure, got {}", self.stdout);
        self.json()["code"].clone()
    }
}

/// Runs `side`'s `plugin` inside `host` with `cmd`, container `id`, namespace path `netns`.
fn cni(
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
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{plugin}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ns_path(c: &TestNs) -> String {
    format!("/run/netns/{}", c.name())
}

/// `ip -j` output of a command in `ns`, as JSON.
fn ip_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    serde_json::from_str(&ns.exec("ip", &a)).unwrap()
}

/// lo's state in `c`: flags and addresses.
fn lo_state(c: &TestNs) -> Value {
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
fn normalized(mut r: Value, netns: &str) -> Value {
    if let Some(ifs) = r.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            if i["sandbox"] == netns {
                i["sandbox"] = json!("<netns>");
            }
        }
    }
    r
}

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
