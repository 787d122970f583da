//! Kernel tests for podnet-netns; each works in namespaces it made and deletes.

use podnet_netns::{NetNs, NetNsError};
use podnet_testsupport::{TestNs, require_root};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

fn thread_ns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

/// A name unique to this test run.
fn unique(tag: &str) -> String {
    format!("{}{}-{tag}", podnet_testsupport::PREFIX, std::process::id())
}

#[test]
fn create_open_list_delete() {
    require_root!();
    let name = unique("cold");
    let ns = NetNs::add(&name).expect("create");
    assert_eq!(ns.name(), Some(name.as_str()));
    assert!(NetNs::list().unwrap().contains(&name));
    let again = NetNs::open(&name).expect("open");
    assert_eq!(again.inode().unwrap(), ns.inode().unwrap());
    assert_ne!(
        ns.inode().unwrap(),
        NetNs::current().unwrap().inode().unwrap()
    );
    match NetNs::add(&name) {
        Err(NetNsError::Exists { name: n }) => assert_eq!(n, name),
        other => panic!("expected Exists, got {other:?}"),
    }
    NetNs::del(&name).expect("delete");
    assert!(!NetNs::list().unwrap().contains(&name));
    match NetNs::open(&name) {
        Err(NetNsError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        NetNs::del(&name),
        Err(NetNsError::NotFound { .. })
    ));
    // The handle still refers to a live namespace after the name is gone.
    assert!(ns.run(thread_ns_inode).unwrap() == ns.inode().unwrap());
}

#[test]
fn interoperates_with_ip_netns() {
    require_root!();
    // Ours is visible to `ip netns`.
    let ours = TestNs::new("interop");
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(ours.name()));
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ours.name(),
            "ip",
            "link",
            "add",
            "v0",
            "type",
            "veth",
        ])
        .status()
        .unwrap();
    assert!(out.success());
    assert!(ours.exec("ip", &["-br", "link"]).contains("v0"));

    // Theirs opens with ours.
    let theirs = unique("ipmade");
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", &theirs])
            .status()
            .unwrap()
            .success()
    );
    let ns = NetNs::open(&theirs).expect("open ip-made namespace");
    let links = ns.command("ip").args(["-br", "link"]).output().unwrap();
    assert!(String::from_utf8_lossy(&links.stdout).starts_with("lo"));
    NetNs::del(&theirs).expect("delete ip-made namespace");
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&theirs));
}

#[test]
fn run_never_switches_the_callers_thread() {
    require_root!();
    let ns = TestNs::new("run");
    let target = ns.inode().unwrap();
    let home = thread_ns_inode();
    assert_ne!(home, target);
    // Many threads call run concurrently; every closure sees the target namespace, no caller
    // ever sees anything but its own.
    let seen: Vec<(u64, u64, i64, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    for _ in 0..25 {
                        let caller_tid = podnet_netns::current_tid();
                        let (inside, tid) = ns
                            .run(|| (thread_ns_inode(), podnet_netns::current_tid()))
                            .unwrap();
                        out.push((inside, thread_ns_inode(), caller_tid, tid));
                    }
                    out
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        handles.into_iter().flatten().collect()
    });
    assert_eq!(seen.len(), 200);
    for (inside, after, caller_tid, tid) in seen {
        assert_eq!(inside, target);
        assert_eq!(after, home);
        assert_ne!(caller_tid, tid, "the closure must run on its own thread");
    }
    assert_eq!(thread_ns_inode(), home);
}

#[test]
fn run_reports_a_panic() {
    require_root!();
    let ns = TestNs::new("panic");
    let r: Result<(), _> = ns.run(|| panic!("boom in namespace"));
    match r {
        Err(NetNsError::Panicked { message }) => assert!(message.contains("boom")),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn sockets_opened_in_run_stay_in_the_namespace() {
    require_root!();
    let ns = TestNs::new("sock");
    // 127.0.0.1 in the test namespace is not the host's loopback: a listener there is invisible
    // outside.
    let listener = ns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let inside = ns
        .run(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        .unwrap();
    assert!(inside);
}

#[test]
fn command_and_sysctl() {
    require_root!();
    let ns = TestNs::new("sysctl");
    ns.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(
        ns.command("cat")
            .arg("/proc/sys/net/ipv4/ip_forward")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap(),
        "1"
    );
    // The host's value is untouched by the namespace's.
    let other = TestNs::new("sysctl2");
    assert_eq!(other.sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
    match ns.sysctl_set("net.ipv4.no_such_knob", "1") {
        Err(NetNsError::Sysctl { key, source }) => {
            assert_eq!(key, "net.ipv4.no_such_knob");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Sysctl error, got {other:?}"),
    }
}

#[test]
fn anonymous_namespaces_are_not_listed() {
    require_root!();
    let before: HashSet<String> = NetNs::list().unwrap().into_iter().collect();
    let anon = NetNs::new_anonymous().unwrap();
    assert!(anon.name().is_none());
    assert_ne!(
        anon.inode().unwrap(),
        NetNs::current().unwrap().inode().unwrap()
    );
    let links = anon.command("ip").args(["-br", "link"]).output().unwrap();
    assert!(String::from_utf8_lossy(&links.stdout).starts_with("lo"));
    let after: HashSet<String> = NetNs::list().unwrap().into_iter().collect();
    // Other tests may create namespaces concurrently; ours adds none.
    assert!(
        after
            .iter()
            .all(|n| before.contains(n) || n.starts_with(podnet_testsupport::PREFIX))
    );
}
