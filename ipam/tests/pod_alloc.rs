//! The host-local-compatible pod address allocator: allocation order, range sets,
//! exclusions, release, garbage collection and bad files.

mod common;

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use podnet_ipam::{AllocError, IpamConfig, PodAllocator};

fn conf(dir: &Path, ipam: &str) -> IpamConfig {
    IpamConfig::parse(&format!(
        r#"{{"cniVersion":"1.0.0","name":"net","ipam":{{"type":"host-local","dataDir":{:?},{ipam}}}}}"#,
        dir.display().to_string()
    ))
    .unwrap()
}

fn ips(a: &[podnet_ipam::Allocation]) -> Vec<String> {
    a.iter().map(|a| a.address.to_string()).collect()
}

#[test]
fn round_robin_skips_gateway_and_exclusions_and_wraps() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(
        d.path(),
        r#""ranges":[[{"subnet":"10.1.0.0/29"}]],"exclude":["10.1.0.3","10.1.0.5/32"]"#,
    ))
    .unwrap();
    // .1 gateway, .2 .. .6 usable, .3 and .5 excluded => .2 .4 .6
    let got: Vec<String> = (0..3)
        .map(|i| ips(&alloc.allocate(&format!("c{i}"), "eth0").unwrap())[0].clone())
        .collect();
    assert_eq!(got, ["10.1.0.2/29", "10.1.0.4/29", "10.1.0.6/29"]);
    assert_eq!(
        fs::read_to_string(d.path().join("net/last_reserved_ip.0")).unwrap(),
        "10.1.0.6"
    );
    match alloc.allocate("c9", "eth0") {
        Err(AllocError::Exhausted { index: 0, ranges }) => assert_eq!(ranges, "10.1.0.1-10.1.0.6"),
        other => panic!("{other:?}"),
    }
    // Free .2; round robin continues after .6 and wraps to .2.
    assert_eq!(
        alloc.release("c0", "eth0").unwrap(),
        ["10.1.0.2".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips(&alloc.allocate("c10", "eth0").unwrap()),
        ["10.1.0.2/29"]
    );
}

#[test]
fn range_sets_each_give_one_address_and_roll_back_together() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(
        d.path(),
        r#""ranges":[[{"subnet":"10.2.0.0/24","rangeStart":"10.2.0.10","rangeEnd":"10.2.0.11"}],
                     [{"subnet":"fd02::/120","gateway":"fd02::fe"},{"subnet":"fd03::/126"}]]"#,
    ))
    .unwrap();
    let a = alloc.allocate("c1", "eth0").unwrap();
    assert_eq!(ips(&a), ["10.2.0.10/24", "fd02::1/120"]);
    assert_eq!(a[1].gateway.to_string(), "fd02::fe");
    // Idempotent for the same container and interface.
    assert_eq!(alloc.allocate("c1", "eth0").unwrap(), a);
    // Another interface of the same container is another lease.
    assert_eq!(
        ips(&alloc.allocate("c1", "net1").unwrap()),
        ["10.2.0.11/24", "fd02::2/120"]
    );
    // The IPv4 set is now full: nothing is left behind in the IPv6 set either.
    let before = alloc.leases().unwrap().len();
    assert!(matches!(
        alloc.allocate("c2", "eth0"),
        Err(AllocError::Exhausted { index: 0, .. })
    ));
    assert_eq!(alloc.leases().unwrap().len(), before);
    // Release gives back both families.
    assert_eq!(alloc.release("c1", "eth0").unwrap().len(), 2);
    assert_eq!(alloc.leases().unwrap().len(), 2);
}

#[test]
fn round_robin_crosses_ranges_of_a_set() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(
        d.path(),
        r#""ranges":[[{"subnet":"10.3.0.0/30"},{"subnet":"10.3.1.0/30"}]]"#,
    ))
    .unwrap();
    // /30: .1 is gateway, .2 is the only usable address (host-local excludes broadcast).
    assert_eq!(ips(&alloc.allocate("a", "eth0").unwrap()), ["10.3.0.2/30"]);
    assert_eq!(ips(&alloc.allocate("b", "eth0").unwrap()), ["10.3.1.2/30"]);
    assert!(alloc.allocate("c", "eth0").is_err());
}

#[test]
fn requested_address() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(d.path(), r#""subnet":"10.4.0.0/24""#)).unwrap();
    let ip: IpAddr = "10.4.0.77".parse().unwrap();
    assert_eq!(
        ips(&alloc.allocate_with("a", "eth0", &[ip]).unwrap()),
        ["10.4.0.77/24"]
    );
    assert!(matches!(
        alloc.allocate_with("b", "eth0", &[ip]),
        Err(AllocError::Unavailable { .. })
    ));
    let gw: IpAddr = "10.4.0.1".parse().unwrap();
    assert!(matches!(
        alloc.allocate_with("b", "eth0", &[gw]),
        Err(AllocError::Unavailable { .. })
    ));
    let out: IpAddr = "10.5.0.1".parse().unwrap();
    assert!(matches!(
        alloc.allocate_with("b", "eth0", &[out]),
        Err(AllocError::Unavailable { .. })
    ));
}

#[test]
fn old_format_and_gc() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(d.path(), r#""subnet":"10.6.0.0/24""#)).unwrap();
    let dir = d.path().join("net");
    for i in 0..4 {
        alloc.allocate(&format!("c{i}"), "eth0").unwrap();
    }
    // A lease in the old id-only format, and an empty one left by a dead writer.
    fs::write(dir.join("10.6.0.100"), "old").unwrap();
    fs::write(dir.join("10.6.0.101"), "").unwrap();
    let leases = alloc.leases().unwrap();
    assert!(
        leases
            .iter()
            .any(|l| l.container_id == "old" && l.ifname.is_none())
    );
    let report = alloc
        .gc([("c1", "eth0"), ("c3", "eth0"), ("old", "eth7")])
        .unwrap();
    assert_eq!(report.kept, 3);
    assert_eq!(report.removed.len(), 2);
    assert_eq!(
        report.removed_empty,
        ["10.6.0.101".parse::<IpAddr>().unwrap()]
    );
    let left: Vec<String> = alloc
        .leases()
        .unwrap()
        .iter()
        .map(|l| l.container_id.clone())
        .collect();
    assert_eq!(left, ["c1", "c3", "old"]);
    // Release of an old-format lease by id.
    assert_eq!(alloc.release("old", "eth0").unwrap().len(), 1);
}

#[test]
fn corrupt_lease_files_are_skipped_with_a_warning_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(
        d.path(),
        r#""ranges":[[{"subnet":"10.7.0.0/24","rangeEnd":"10.7.0.4"}]]"#,
    ))
    .unwrap();
    let dir = d.path().join("net");
    fs::write(dir.join("10.7.0.2"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    fs::write(dir.join("10.7.0.3"), "a\r\nb\r\nc").unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "garbage").unwrap();
    fs::write(dir.join("not-an-ip"), "whatever").unwrap();
    let (leases, logs) = common::capture_logs(|| alloc.leases().unwrap());
    assert!(leases.is_empty());
    assert!(
        logs.contains("10.7.0.2") && logs.contains("10.7.0.3"),
        "{logs}"
    );
    // Corrupt files still hold their address: the only free one is .4.
    let (got, logs) = common::capture_logs(|| alloc.allocate("c", "eth0").unwrap());
    assert_eq!(ips(&got), ["10.7.0.4/24"]);
    assert!(logs.contains("last_reserved_ip.0"), "{logs}");
}

#[test]
fn bad_arguments_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(d.path(), r#""subnet":"10.8.0.0/24""#)).unwrap();
    assert!(matches!(
        alloc.allocate("", "eth0"),
        Err(AllocError::BadArgument {
            field: "container_id",
            ..
        })
    ));
    assert!(matches!(
        alloc.allocate("a\nb", "eth0"),
        Err(AllocError::BadArgument {
            field: "container_id",
            ..
        })
    ));
    assert!(matches!(
        alloc.allocate("a", "e\r\n"),
        Err(AllocError::BadArgument {
            field: "ifname",
            ..
        })
    ));
}

#[test]
fn changes_by_another_process_are_never_hidden_by_memory() {
    let d = tempfile::tempdir().unwrap();
    let text = r#""ranges":[[{"subnet":"10.9.0.0/29"}]]"#;
    let a = PodAllocator::open(conf(d.path(), text)).unwrap();
    let b = PodAllocator::open(conf(d.path(), text)).unwrap();
    let first = ips(&a.allocate("c1", "eth0").unwrap());
    a.allocate("c2", "eth0").unwrap();
    // Someone else releases c1 and hands its address to c9, many times over (so that the
    // file system may reuse inode numbers).
    let dir = d.path().join("net");
    for round in 0..20 {
        b.release("c1", "eth0").unwrap();
        b.release("c9", "eth0").unwrap();
        fs::write(dir.join("last_reserved_ip.0"), "10.9.0.6").unwrap();
        let got = ips(&b
            .allocate_with("c9", "eth0", &["10.9.0.2".parse().unwrap()])
            .unwrap());
        assert_eq!(got, first, "round {round}");
        // a must see that c1 has no address any more: c1 gets a new one, not c9's.
        let again = ips(&a.allocate("c1", "eth0").unwrap());
        assert_ne!(
            again, first,
            "round {round}: a handed out c9's address from memory"
        );
        // And a's release of c9 removes exactly c9's file.
        assert_eq!(a.release("c9", "eth0").unwrap().len(), 1);
        b.allocate_with("c9", "eth0", &["10.9.0.2".parse().unwrap()])
            .unwrap();
        assert_eq!(a.release("c1", "eth0").unwrap().len(), 1);
        b.release("c9", "eth0").unwrap();
        b.allocate_with("c1", "eth0", &["10.9.0.2".parse().unwrap()])
            .unwrap();
    }
}

#[test]
fn huge_ipv6_ranges_do_not_overflow() {
    let d = tempfile::tempdir().unwrap();
    let alloc = PodAllocator::open(conf(
        d.path(),
        r#""ranges":[[{"subnet":"::/1","rangeStart":"::"},{"subnet":"8000::/1"}]]"#,
    ))
    .unwrap();
    assert_eq!(ips(&alloc.allocate("a", "eth0").unwrap()), ["::/1"]);
    assert_eq!(ips(&alloc.allocate("b", "eth0").unwrap()), ["::2/1"]);
}
