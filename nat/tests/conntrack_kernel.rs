//! Conntrack over netlink inside a test namespace: flows made with the `conntrack` tool are
//! listed, filtered by the kernel, and deleted.

use podnet_nat::conntrack::{Conntrack, DumpFilter, Flow, FlowSelector};
use podnet_nat::iptables::Protocol;
use podnet_nat::kube::IpFamily;
use podnet_testsupport::{SkipCause, TestNs, require_root, skip};

/// Creates a flow with `conntrack -I` (it only needs the namespace's conntrack table).
fn insert(ns: &TestNs, proto: &str, src: &str, dst: &str, sport: u16, dport: u16) {
    let (sport, dport) = (sport.to_string(), dport.to_string());
    let mut args = vec![
        "-I", "-p", proto, "-s", src, "-d", dst, "--sport", &sport, "--dport", &dport, "-t", "600",
    ];
    if proto == "tcp" {
        args.extend(["--state", "ESTABLISHED", "-u", "SEEN_REPLY"]);
    }
    let out = ns.output("conntrack", &args);
    assert!(
        out.status.success(),
        "conntrack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have_conntrack_tool(test: &str) -> bool {
    if std::process::Command::new("conntrack")
        .arg("--version")
        .output()
        .is_err()
    {
        skip(
            test,
            SkipCause::Avoidable,
            "the conntrack tool is not installed (Debian package conntrack)",
        );
        return false;
    }
    true
}

/// Stale UDP flows to 10.96.0.10:53 whose endpoint is not 10.244.1.5.
struct StaleDns;

impl FlowSelector for StaleDns {
    fn dump_filter(&self) -> DumpFilter {
        DumpFilter::protocol(Protocol::Udp)
    }
    fn selects(&self, f: &Flow) -> bool {
        f.protocol == Protocol::Udp
            && f.orig_dst == "10.96.0.10:53".parse().unwrap()
            && f.reply_src.ip() != "10.244.1.5".parse::<std::net::IpAddr>().unwrap()
    }
}

/// A sync looking for stale UDP flows reads only the UDP flows: the kernel filters the dump
/// (CTA_FILTER), so a node's many TCP flows never cross the socket on every sync.
#[test]
fn the_kernel_filters_the_dump_by_protocol() {
    require_root!();
    if !have_conntrack_tool("the_kernel_filters_the_dump_by_protocol") {
        return;
    }
    let ns = TestNs::new("ct-filter");
    const TCP: u16 = 150;
    for i in 0..TCP {
        insert(&ns, "tcp", "10.244.1.2", "10.244.2.3", 20000 + i, 80);
    }
    // Two UDP flows to a DNS service: one to a departed endpoint (the tool writes the reply
    // tuple as the inverse of the original, so the "endpoint" is the service address itself),
    // and one that is not a service flow.
    insert(&ns, "udp", "10.244.1.2", "10.96.0.10", 40000, 53);
    insert(&ns, "udp", "10.244.1.2", "10.244.2.3", 40001, 9999);

    let mut ct = Conntrack::in_ns(&ns).unwrap();
    let all = ct.list(IpFamily::V4).unwrap();
    assert_eq!(all.len(), usize::from(TCP) + 2);
    assert_eq!(ct.entries_received(), u64::from(TCP) + 2);

    let udp = ct
        .list_filtered(IpFamily::V4, &DumpFilter::protocol(Protocol::Udp))
        .unwrap();
    assert_eq!(
        udp.len(),
        2,
        "the kernel did not filter the dump by protocol"
    );
    assert!(udp.iter().all(|f| f.protocol == Protocol::Udp));
    assert_eq!(
        ct.entries_received(),
        u64::from(TCP) + 2 + 2,
        "the kernel sent TCP flows to a UDP-only dump"
    );

    let before = ct.entries_received();
    assert_eq!(ct.del_matching(IpFamily::V4, StaleDns).unwrap(), 1);
    assert_eq!(
        ct.entries_received() - before,
        2,
        "only UDP flows were read"
    );
    let left = ct.list(IpFamily::V4).unwrap();
    assert_eq!(left.len(), usize::from(TCP) + 1);
    assert!(
        !left
            .iter()
            .any(|f| f.orig_dst == "10.96.0.10:53".parse().unwrap())
    );
    // A plain closure is a selector too; the kernel cannot help it, and it still works.
    let n = ct
        .del_matching(IpFamily::V4, |f: &Flow| f.orig_dst.port() == 9999)
        .unwrap();
    assert_eq!(n, 1);
    // IPv6 has none of these.
    assert!(ct.list(IpFamily::V6).unwrap().is_empty());
}
