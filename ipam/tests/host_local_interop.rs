//! Interop with the reference CNI host-local plugin (Debian containernetworking-plugins,
//! `/usr/lib/cni/host-local`, or `$PODNET_HOST_LOCAL`): both take turns on one data directory.
//! host-local with a dataDir only writes files; it touches no network namespace.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use podnet_ipam::{IpamConfig, PodAllocator};

fn host_local() -> PathBuf {
    let p = std::env::var("PODNET_HOST_LOCAL").unwrap_or_else(|_| "/usr/lib/cni/host-local".into());
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "{} not found: install Debian's containernetworking-plugins or set PODNET_HOST_LOCAL",
        p.display()
    );
    p
}

fn run(plugin: &Path, cmd: &str, id: &str, ifname: &str, conf: &str) -> (bool, String) {
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_IFNAME", ifname)
        .env("CNI_NETNS", "/run/netns/podnet-ipam-test-unused")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn conf_text(dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"interop","ipam":{{"type":"host-local","dataDir":{:?},
        "ranges":[[{{"subnet":"10.30.0.0/24","rangeStart":"10.30.0.10","rangeEnd":"10.30.0.250"}}],[{{"subnet":"fd30::/64"}}]]}}}}"#,
        dir.display().to_string()
    )
}

fn addresses(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn host_local_and_podnet_share_a_directory() {
    let hl = host_local();
    let d = tempfile::tempdir().unwrap();
    let text = conf_text(d.path());
    let dir = d.path().join("interop");

    // host-local first.
    for id in ["hl-1", "hl-2", "hl-3"] {
        let (ok, out) = run(&hl, "ADD", id, "eth0", &text);
        assert!(ok, "{out}");
    }
    let (_, out) = run(&hl, "ADD", "hl-4", "net1", &text);
    assert_eq!(addresses(&out), ["10.30.0.13/24", "fd30::5/64"]);

    // podnet reads host-local's leases...
    let alloc = PodAllocator::open(IpamConfig::parse(&text).unwrap()).unwrap();
    let leases = alloc.leases().unwrap();
    assert_eq!(leases.len(), 8);
    assert!(leases.iter().any(|l| l.container_id == "hl-4"
        && l.ifname.as_deref() == Some("net1")
        && l.ip.to_string() == "10.30.0.13"));
    // ...continues host-local's round robin...
    let got = alloc.allocate("pn-1", "eth0").unwrap();
    let got: Vec<String> = got.iter().map(|a| a.address.to_string()).collect();
    assert_eq!(got, ["10.30.0.14/24", "fd30::6/64"]);
    // ...writes the same bytes host-local writes...
    assert_eq!(fs::read(dir.join("10.30.0.14")).unwrap(), b"pn-1\r\neth0");
    assert_eq!(fs::read(dir.join("10.30.0.10")).unwrap(), b"hl-1\r\neth0");
    assert_eq!(
        fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(),
        "10.30.0.14"
    );
    assert_eq!(
        fs::read_to_string(dir.join("last_reserved_ip.1")).unwrap(),
        "fd30::6"
    );
    // ...and releases host-local's leases.
    assert_eq!(alloc.release("hl-2", "eth0").unwrap().len(), 2);
    assert!(!dir.join("10.30.0.11").exists());

    // host-local honours podnet's leases and round robin...
    let (ok, out) = run(&hl, "CHECK", "pn-1", "eth0", &text);
    assert!(ok, "host-local CHECK of a podnet lease: {out}");
    let (ok, out) = run(&hl, "ADD", "hl-5", "eth0", &text);
    assert!(ok, "{out}");
    assert_eq!(addresses(&out), ["10.30.0.15/24", "fd30::7/64"]);
    // ...refuses to hand out a podnet lease twice...
    let (ok, _) = run(&hl, "ADD", "pn-1", "eth0", &text);
    assert!(!ok, "host-local must see pn-1's existing lease");
    // ...and releases podnet's leases.
    let (ok, out) = run(&hl, "DEL", "pn-1", "eth0", &text);
    assert!(ok, "{out}");
    assert!(!dir.join("10.30.0.14").exists() && !dir.join("fd30::6").exists());

    // GC keeps exactly the live ones, whoever wrote them.
    let report = alloc.gc([("hl-1", "eth0"), ("hl-5", "eth0")]).unwrap();
    assert_eq!(report.kept, 4);
    let left: HashSet<String> = alloc
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| l.container_id)
        .collect();
    assert_eq!(
        left,
        HashSet::from(["hl-1".to_string(), "hl-5".to_string()])
    );
}

#[test]
fn podnet_binary_speaks_cni_like_host_local() {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_podnet-host-local"));
    let hl = host_local();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (ok1, out1) = run(&hl, "ADD", "c1", "eth0", &conf_text(d1.path()));
    let (ok2, out2) = run(&ours, "ADD", "c1", "eth0", &conf_text(d2.path()));
    assert!(ok1 && ok2, "{out1} {out2}");
    assert_eq!(addresses(&out1), addresses(&out2));
    for f in [
        "10.30.0.10",
        "fd30::2",
        "last_reserved_ip.0",
        "last_reserved_ip.1",
    ] {
        assert_eq!(
            fs::read(d1.path().join("interop").join(f)).unwrap(),
            fs::read(d2.path().join("interop").join(f)).unwrap(),
            "{f}"
        );
    }
    let (ok, _) = run(&ours, "CHECK", "c1", "eth0", &conf_text(d2.path()));
    assert!(ok);
    let (ok, _) = run(&ours, "DEL", "c1", "eth0", &conf_text(d2.path()));
    assert!(ok);
    let (ok, out) = run(&ours, "CHECK", "c1", "eth0", &conf_text(d2.path()));
    assert!(!ok && out.contains("\"code\""), "{out}");
}

#[test]
fn concurrent_host_local_and_podnet_never_share_an_address() {
    let hl = host_local();
    let d = tempfile::tempdir().unwrap();
    let text = conf_text(d.path());
    let per = 15;
    let mut workers = Vec::new();
    for w in 0..3 {
        let (hl, text) = (hl.clone(), text.clone());
        workers.push(std::thread::spawn(move || {
            for i in 0..per {
                let (ok, out) = run(&hl, "ADD", &format!("hl{w}-{i}"), "eth0", &text);
                assert!(ok, "{out}");
            }
        }));
    }
    for w in 0..3 {
        let text = text.clone();
        workers.push(std::thread::spawn(move || {
            let alloc = PodAllocator::open(IpamConfig::parse(&text).unwrap()).unwrap();
            for i in 0..per {
                alloc.allocate(&format!("pn{w}-{i}"), "eth0").unwrap();
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    let alloc = PodAllocator::open(IpamConfig::parse(&text).unwrap()).unwrap();
    let leases = alloc.leases().unwrap();
    assert_eq!(
        leases.len(),
        6 * per * 2,
        "one v4 and one v6 address per container"
    );
    let mut per_family: HashSet<(String, bool)> = HashSet::new();
    for l in &leases {
        assert!(
            per_family.insert((l.container_id.clone(), matches!(l.ip, IpAddr::V4(_)))),
            "{} holds two addresses of one family",
            l.container_id
        );
    }
}
