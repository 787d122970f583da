//! IPVS on a kernel that has it: run as root, each test inside fresh namespaces.
//!
//! Not a test target of its own: `ipvs_vm.rs` (with `tests/support/vm_tests.rs`) runs these
//! natively when this machine's kernel has IPVS, and otherwise inside a virtual machine with
//! Debian's kernel, reporting each under its name in [`TESTS`]. So IPVS is always there when
//! they run, and a missing IPVS is a failure. The tools they compare with (`ipvsadm`, `ipset`,
//! `iptables-legacy-restore`) are in the VM; natively, a missing one is a skip that says so.

use crate::support::vm_tests::KernelTest;
use podnet_links::{Dummy, Handle, Route, Veth};
use podnet_nat::ipvs::{
    Destination, ForwardMethod, Ipvs, IpvsError, IpvsObject, Scheduler, ServiceFlags, ServiceId,
    Timeouts, VirtualService,
};
use podnet_testsupport::{SkipCause, TestNs, require_root, skip};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The tests, as `ipvs_vm` reports them.
pub(crate) const TESTS: &[KernelTest] = &[
    KernelTest {
        name: "ipvs_kernel::services_and_destinations_add_edit_delete_list",
        run: services_and_destinations_add_edit_delete_list,
    },
    KernelTest {
        name: "ipvs_kernel::namespaces_have_their_own_tables",
        run: namespaces_have_their_own_tables,
    },
    KernelTest {
        name: "ipvs_kernel::tcp_to_the_virtual_ip_reaches_the_endpoints",
        run: tcp_to_the_virtual_ip_reaches_the_endpoints,
    },
    KernelTest {
        name: "ipvs_kernel::kube_proxy_ipvs_mode_syncs_and_serves",
        run: kube_proxy_ipvs_mode_syncs_and_serves,
    },
];

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An IPVS client in `ns`. The runner runs these tests only where the kernel has IPVS, so
/// any error is a failure.
fn ipvs_in(ns: &TestNs) -> Ipvs {
    Ipvs::in_ns(ns).unwrap_or_else(|e| panic!("opening IPVS in {}: {e}", ns.name()))
}

/// `true` when every one of `programs` runs in `ns` (`--version`); otherwise records a skip of
/// `test` naming the missing ones (in the VM, where they are all put, `PODNET_NO_SKIPS=1`
/// makes that a failure).
fn have_programs(ns: &TestNs, programs: &[&str], test: &str) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| ns.command(p).arg("--version").output().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        SkipCause::Avoidable,
        &format!(
            "{} not installed (Debian packages ipvsadm, ipset, iptables)",
            missing.join(", ")
        ),
    );
    false
}

/// `ipvsadm -Ln` in `ns`.
fn ipvsadm(ns: &TestNs) -> String {
    ns.exec("ipvsadm", &["-Ln"])
}

/// One service of `ipvsadm -Ln` output: its line's words and its destinations' words.
#[derive(Debug)]
struct Listed {
    words: Vec<String>,
    dests: Vec<Vec<String>>,
}

fn parse_ipvsadm(text: &str) -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    for line in text.lines() {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match words.first().map(String::as_str) {
            Some("TCP" | "UDP" | "SCTP" | "FWM") => out.push(Listed {
                words,
                dests: Vec::new(),
            }),
            Some("->") if words.get(1).is_some_and(|w| w != "RemoteAddress:Port") => {
                if let Some(last) = out.last_mut() {
                    last.dests.push(words[1..].to_vec());
                }
            }
            _ => {}
        }
    }
    out
}

fn listed<'a>(list: &'a [Listed], proto: &str, addr: &str) -> &'a Listed {
    list.iter()
        .find(|l| l.words[0] == proto && l.words[1] == addr)
        .unwrap_or_else(|| panic!("ipvsadm does not list {proto} {addr}: {list:#?}"))
}

/// Editing or deleting a destination that does not exist, and adding to or listing a
/// service that does not exist, fail with errors that say which.
fn check_missing_objects(ipvs: &mut Ipvs, web: &ServiceId, missing: &ServiceId, d1: &Destination) {
    let gone = Destination::new(sa("10.244.9.9:1"));
    assert!(matches!(
        ipvs.edit_destination(web, &gone),
        Err(IpvsError::NotFound {
            object: IpvsObject::Destination,
            ..
        })
    ));
    assert!(matches!(
        ipvs.del_destination(web, gone.addr),
        Err(IpvsError::NotFound {
            object: IpvsObject::Destination,
            ..
        })
    ));
    assert!(matches!(
        ipvs.add_destination(missing, d1),
        Err(IpvsError::NotFound {
            object: IpvsObject::Service,
            ..
        })
    ));
    assert!(matches!(
        ipvs.list_destinations(missing),
        Err(IpvsError::NotFound {
            object: IpvsObject::Service,
            ..
        })
    ));
}

/// What ipvsadm, an independent client, lists after
/// [`services_and_destinations_add_edit_delete_list`] added and edited its services and
/// destinations: `services` of them, each as it was made.
fn check_ipvsadm_listing(ns: &TestNs, services: usize) {
    let text = ipvsadm(ns);
    eprintln!("{text}");
    let list = parse_ipvsadm(&text);
    assert_eq!(list.len(), services, "{text}");
    let w = listed(&list, "TCP", "10.96.0.1:80");
    assert_eq!(w.words[2..], ["lc", "persistent", "300"], "{text}");
    let mut d: Vec<_> = w.dests.iter().map(|d| d[..3].to_vec()).collect();
    d.sort();
    assert_eq!(
        d,
        vec![
            vec!["10.244.1.2:8080", "Masq", "1"],
            vec!["10.244.2.2:8080", "Masq", "0"]
        ],
        "{text}"
    );
    for (i, sched) in Scheduler::KNOWN.iter().enumerate().skip(1) {
        let l = listed(&list, "TCP", &format!("10.96.0.{}:80", i + 1));
        assert_eq!(l.words[2], sched.name(), "{text}");
    }
    let mh = listed(&list, "TCP", "10.96.0.9:80");
    assert_eq!(mh.words[2..], ["mh", "(mh-port)"], "{text}");
    let s = listed(&list, "UDP", "10.96.1.1:53");
    assert_eq!(
        s.words[2..],
        ["rr", "persistent", "10800", "mask", "255.255.255.0"],
        "{text}"
    );
    assert_eq!(s.dests[0][..3], ["10.244.1.2:5353", "Masq", "1"], "{text}");
    let f = listed(&list, "FWM", "16384");
    assert_eq!(f.words[2], "wlc", "{text}");
    assert_eq!(f.dests[0][..2], ["10.244.1.2:0", "Route"], "{text}");
    let six = listed(&list, "TCP", "[fd10:96::a]:443");
    assert_eq!(six.words[2..], ["sh", "persistent", "60"], "{text}");
    assert_eq!(
        six.dests[0][..3],
        ["[fd00:244::2]:8443", "Masq", "1"],
        "{text}"
    );
}

fn services_and_destinations_add_edit_delete_list() {
    require_root!();
    let ns = TestNs::new("ipvs-crud");
    if !have_programs(
        &ns,
        &["ipvsadm"],
        "ipvs_kernel::services_and_destinations_add_edit_delete_list",
    ) {
        return;
    }
    let mut ipvs = ipvs_in(&ns);
    let info = ipvs.info().unwrap();
    assert_eq!(info.version, (1, 2, 1));
    assert!(info.conn_table_size > 0);
    assert!(
        ipvs.list_services().unwrap().is_empty(),
        "a new namespace has none"
    );

    // One TCP service per scheduler.
    let mut expected = Vec::new();
    for (i, sched) in Scheduler::KNOWN.iter().enumerate() {
        let id = ServiceId::tcp(sa(&format!("10.96.0.{}:80", i + 1)));
        let mut svc = VirtualService::new(id).scheduler(sched.clone());
        if *sched == Scheduler::MaglevHashing {
            svc = svc.flags(ServiceFlags::SCHED2); // kube-proxy's mh flag: mh-port
        }
        ipvs.add_service(&svc).unwrap();
        expected.push(svc);
    }
    // Persistence (ClientIP affinity), with a /24 granularity.
    let mut sticky = VirtualService::new(ServiceId::udp(sa("10.96.1.1:53"))).persistent(10800);
    sticky.netmask = 24;
    ipvs.add_service(&sticky).unwrap();
    expected.push(sticky.clone());
    let fwm = VirtualService::new(ServiceId::FwMark {
        family: podnet_nat::kube::IpFamily::V4,
        mark: 0x4000,
    })
    .scheduler(Scheduler::WeightedLeastConnection);
    ipvs.add_service(&fwm).unwrap();
    expected.push(fwm.clone());
    let v6 = VirtualService::new(ServiceId::tcp(sa("[fd10:96::a]:443")))
        .scheduler(Scheduler::SourceHashing)
        .persistent(60);
    ipvs.add_service(&v6).unwrap();
    expected.push(v6.clone());

    let mut listed_services: Vec<VirtualService> = ipvs
        .list_services()
        .unwrap()
        .into_iter()
        .map(|e| e.service)
        .collect();
    listed_services.sort_by_key(|s| s.id);
    expected.sort_by_key(|s| s.id);
    assert_eq!(listed_services, expected);

    // Adding again: Exists, naming the service.
    let err = ipvs.add_service(&expected[0]).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert!(
        err.to_string().contains(&expected[0].id.to_string()),
        "{err}"
    );
    // An unknown scheduler is named.
    let err = ipvs
        .add_service(
            &VirtualService::new(ServiceId::tcp(sa("10.96.9.9:80")))
                .scheduler(Scheduler::Other("nosuch".into())),
        )
        .unwrap_err();
    assert!(
        matches!(err, IpvsError::UnknownScheduler { ref scheduler, .. } if scheduler == "nosuch"),
        "{err}"
    );

    // Edit: scheduler and persistence change in place.
    let web = ServiceId::tcp(sa("10.96.0.1:80"));
    let edited = VirtualService::new(web)
        .scheduler(Scheduler::LeastConnection)
        .persistent(300);
    ipvs.edit_service(&edited).unwrap();
    assert_eq!(ipvs.get_service(&web).unwrap().unwrap().service, edited);
    let missing = ServiceId::tcp(sa("10.96.9.9:80"));
    assert!(matches!(
        ipvs.edit_service(&VirtualService::new(missing)),
        Err(IpvsError::NotFound {
            object: IpvsObject::Service,
            ..
        })
    ));
    assert_eq!(ipvs.get_service(&missing).unwrap(), None);

    // Destinations.
    let d1 = Destination::new(sa("10.244.1.2:8080"));
    let d2 = Destination::new(sa("10.244.2.2:8080")).weight(3);
    ipvs.add_destination(&web, &d1).unwrap();
    ipvs.add_destination(&web, &d2).unwrap();
    assert!(ipvs.add_destination(&web, &d1).unwrap_err().is_exists());
    let mut dests: Vec<Destination> = ipvs
        .list_destinations(&web)
        .unwrap()
        .into_iter()
        .map(|d| d.destination)
        .collect();
    dests.sort_by_key(|d| d.addr);
    assert_eq!(dests, vec![d1, d2]);
    let d2b = d2.weight(0);
    ipvs.edit_destination(&web, &d2b).unwrap();
    let got = ipvs.list_destinations(&web).unwrap();
    assert!(got.iter().any(|d| d.destination == d2b), "{got:?}");
    check_missing_objects(&mut ipvs, &web, &missing, &d1);
    // A fwmark service takes destinations too, and an IPv6 one IPv6 destinations.
    ipvs.add_destination(
        &fwm.id,
        &Destination::new(sa("10.244.1.2:0")).forward(ForwardMethod::DirectRoute),
    )
    .unwrap();
    ipvs.add_destination(&v6.id, &Destination::new(sa("[fd00:244::2]:8443")))
        .unwrap();
    ipvs.add_destination(&sticky.id, &Destination::new(sa("10.244.1.2:5353")))
        .unwrap();

    check_ipvsadm_listing(&ns, expected.len());

    // Timeouts.
    let t = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    ipvs.set_timeouts(t).unwrap();
    assert_eq!(ipvs.timeouts().unwrap(), t);

    // Delete one destination, one service, then everything.
    ipvs.del_destination(&web, d1.addr).unwrap();
    assert_eq!(ipvs.list_destinations(&web).unwrap().len(), 1);
    ipvs.del_service(&web).unwrap();
    assert!(matches!(
        ipvs.del_service(&web),
        Err(IpvsError::NotFound {
            object: IpvsObject::Service,
            ..
        })
    ));
    assert_eq!(ipvs.list_services().unwrap().len(), expected.len() - 1);
    ipvs.flush().unwrap();
    assert!(ipvs.list_services().unwrap().is_empty());
}

fn namespaces_have_their_own_tables() {
    require_root!();
    let a = TestNs::new("ipvs-a");
    let b = TestNs::new("ipvs-b");
    let mut ia = ipvs_in(&a);
    let mut ib = ipvs_in(&b);
    ia.add_service(&VirtualService::new(ServiceId::tcp(sa("10.96.0.1:443"))))
        .unwrap();
    assert_eq!(ia.list_services().unwrap().len(), 1);
    assert!(ib.list_services().unwrap().is_empty());
}

/// A TCP server in `ns` on `addr` that answers every connection with `name` until dropped.
struct NameServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NameServer {
    fn start(ns: &TestNs, addr: SocketAddr, name: &'static str) -> NameServer {
        let listener = ns
            .run(move || TcpListener::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        NameServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from `ns` to `addr` and returns what the server said.
fn ask(ns: &TestNs, addr: SocketAddr) -> String {
    ns.run(move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

/// Joins `node` and `other` with a veth (`node_if` on the node side, `eth0` inside), with
/// `node_addr` and `other_addr` (CIDR) and a default route from `other` via the node.
fn attach(node: &TestNs, node_if: &str, node_addr: &str, other: &TestNs, other_addr: &str) {
    let h = Handle::in_ns(node).unwrap();
    h.link()
        .add(&Veth::new(node_if).peer("eth0").peer_netns(other))
        .unwrap();
    h.addr()
        .add(node_if, node_addr.parse::<podnet_links::IpNet>().unwrap())
        .unwrap();
    h.link().set(node_if).up().apply().unwrap();
    let o = Handle::in_ns(other).unwrap();
    o.addr()
        .add("eth0", other_addr.parse::<podnet_links::IpNet>().unwrap())
        .unwrap();
    o.link().set("eth0").up().apply().unwrap();
    let gw = node_addr.split('/').next().unwrap().parse().unwrap();
    o.route()
        .add(&Route::new("0.0.0.0/0".parse().unwrap()).via(gw))
        .unwrap();
}

fn tcp_to_the_virtual_ip_reaches_the_endpoints() {
    require_root!();
    let node = TestNs::new("ipvs-node");
    if !have_programs(
        &node,
        &["ipvsadm"],
        "ipvs_kernel::tcp_to_the_virtual_ip_reaches_the_endpoints",
    ) {
        return;
    }
    let mut ipvs = ipvs_in(&node);
    let client = TestNs::new("ipvs-client");
    let ep1 = TestNs::new("ipvs-ep1");
    let ep2 = TestNs::new("ipvs-ep2");
    attach(&node, "vclient", "10.244.0.1/24", &client, "10.244.0.2/24");
    attach(&node, "vep1", "10.244.1.1/24", &ep1, "10.244.1.2/24");
    attach(&node, "vep2", "10.244.2.1/24", &ep2, "10.244.2.2/24");
    node.sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    // The service IP lives on kube-ipvs0, as kube-proxy's ipvs mode puts it.
    let h = Handle::in_ns(&node).unwrap();
    h.link().add(&Dummy::new("kube-ipvs0")).unwrap();
    h.addr()
        .add(
            "kube-ipvs0",
            "10.96.0.10/32".parse::<podnet_links::IpNet>().unwrap(),
        )
        .unwrap();

    let _s1 = NameServer::start(&ep1, sa("10.244.1.2:8080"), "ep1");
    let _s2 = NameServer::start(&ep2, sa("10.244.2.2:8080"), "ep2");
    let vip = sa("10.96.0.10:80");
    let id = ServiceId::tcp(vip);
    ipvs.add_service(&VirtualService::new(id)).unwrap();
    ipvs.add_destination(&id, &Destination::new(sa("10.244.1.2:8080")))
        .unwrap();
    ipvs.add_destination(&id, &Destination::new(sa("10.244.2.2:8080")))
        .unwrap();

    // Round robin from a client namespace routed through the node.
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..20 {
        *counts.entry(ask(&client, vip)).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        [("ep1".to_string(), 10), ("ep2".to_string(), 10)].into(),
        "round robin over both endpoints"
    );
    // From the node itself (the VIP is a local address there).
    let from_node = ask(&node, vip);
    assert!(from_node == "ep1" || from_node == "ep2", "{from_node}");

    // The kernel counted them (connection counts at once; the counters when its estimator
    // next runs, every 2 s), and ipvsadm lists the service and both destinations.
    let dests = ipvs.list_destinations(&id).unwrap();
    let conns: u32 = dests
        .iter()
        .map(|d| d.active_conns + d.inactive_conns)
        .sum();
    assert_eq!(conns, 21, "{dests:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let dests = ipvs.list_destinations(&id).unwrap();
        let total: u64 = dests.iter().map(|d| d.stats.conns).sum();
        let service = ipvs.get_service(&id).unwrap().unwrap();
        if total == 21 && service.stats.conns == 21 {
            assert!(
                dests
                    .iter()
                    .all(|d| d.stats.in_packets > 0 && d.stats.out_bytes > 0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters never reached 21: {dests:?} {service:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = ipvsadm(&node);
    eprintln!("{text}");
    let list = parse_ipvsadm(&text);
    let l = listed(&list, "TCP", "10.96.0.10:80");
    assert_eq!(l.words[2], "rr");
    let mut d: Vec<_> = l.dests.iter().map(|d| d[..3].to_vec()).collect();
    d.sort();
    assert_eq!(
        d,
        vec![
            vec!["10.244.1.2:8080", "Masq", "1"],
            vec!["10.244.2.2:8080", "Masq", "1"]
        ]
    );

    // Weight 0 stops new connections to ep2; deleting ep1 leaves nothing to connect to.
    ipvs.edit_destination(&id, &Destination::new(sa("10.244.2.2:8080")).weight(0))
        .unwrap();
    for _ in 0..4 {
        assert_eq!(ask(&client, vip), "ep1");
    }
    ipvs.edit_destination(&id, &Destination::new(sa("10.244.2.2:8080")))
        .unwrap();
    ipvs.del_destination(&id, sa("10.244.1.2:8080")).unwrap();
    for _ in 0..4 {
        assert_eq!(ask(&client, vip), "ep2");
    }
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- {addresses: [10.244.1.2], nodeName: node-1}
- {addresses: [10.244.2.2], nodeName: node-2}
ports: [{name: http, port: 8080, protocol: TCP}]
"#;

fn state(yaml: &str) -> podnet_nat::kube::ClusterState {
    let (objects, warnings) = podnet_nat::kube::parse_objects(yaml, "test");
    assert!(warnings.is_empty(), "{warnings:?}");
    let (state, warnings) =
        podnet_nat::kube::ClusterState::from_objects(&objects, podnet_nat::kube::IpFamily::V4);
    assert!(warnings.is_empty(), "{warnings:?}");
    state
}

/// What ipvsadm, ipset and iptables see after [`kube_proxy_ipvs_mode_syncs_and_serves`]'s
/// first sync: both endpoints behind the cluster IP and the node port, the sets' entries,
/// kube-proxy's jumps.
fn check_kube_proxy_view(node: &TestNs) {
    use podnet_nat::ipvs::ipset;
    let text = ipvsadm(node);
    eprintln!("{text}");
    let list = parse_ipvsadm(&text);
    for (proto, addr) in [("TCP", "10.96.0.10:80"), ("TCP", "198.18.0.1:30080")] {
        let l = listed(&list, proto, addr);
        let mut d: Vec<_> = l.dests.iter().map(|d| d[..3].to_vec()).collect();
        d.sort();
        assert_eq!(
            d,
            vec![
                vec!["10.244.1.2:8080", "Masq", "1"],
                vec!["10.244.2.2:8080", "Masq", "1"]
            ],
            "{text}"
        );
    }
    let set = node.exec("ipset", &["list", ipset::CLUSTER_IP]);
    assert!(set.contains("10.96.0.10,tcp:80"), "{set}");
    let np = node.exec("ipset", &["list", ipset::NODE_PORT_TCP]);
    assert!(np.contains("30080"), "{np}");
    let saved = node.exec("iptables-legacy-save", &[]);
    assert!(
        saved.contains(
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        ),
        "{saved}"
    );
    // (iptables-save writes `! -s` first.)
    assert!(
        saved.contains(
            "-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment \"Kubernetes service \
             cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP \
             dst,dst -j KUBE-MARK-MASQ"
        ),
        "{saved}"
    );
}

/// --cleanup removes what ipvs mode made, and only that: another program's virtual service
/// on the node's address (keepalived's, say) and kubelet's chain stay.
fn check_cleanup(
    syncer: &mut podnet_nat::ipvs::sync::IpvsSyncer,
    node: &TestNs,
    one: &podnet_nat::kube::ClusterState,
) {
    syncer.sync(one).unwrap();
    node.exec("ipvsadm", &["-A", "-t", "198.18.0.1:8443", "-s", "rr"]);
    node.exec(
        "iptables-legacy",
        &["-t", "filter", "-N", "KUBE-KUBELET-CANARY"],
    );
    let report = syncer.cleanup(podnet_nat::kube::IpFamily::V4).unwrap();
    assert_eq!(report.services_deleted, 2, "{report:?}");
    assert!(report.kept.is_empty(), "{report:?}");
    let left = ipvsadm(node);
    assert!(
        left.contains("198.18.0.1:8443") && !left.contains("10.96.0.10"),
        "{left}"
    );
    let saved = node.exec("iptables-legacy-save", &[]);
    let ours: Vec<&str> = saved
        .lines()
        .filter(|l| l.contains("KUBE-") && !l.contains("KUBE-KUBELET-CANARY"))
        .collect();
    assert!(ours.is_empty(), "{saved}");
    assert!(saved.contains(":KUBE-KUBELET-CANARY"), "{saved}");
    assert!(node.exec("ipset", &["list", "-n"]).trim().is_empty());
}

/// kube-proxy's ipvs mode, compiled and applied by `IpvsSyncer` in a node namespace: ClusterIP
/// and NodePort traffic from a client namespace reaches both endpoints; scaling down drains the
/// removed endpoint; deleting the Service removes its virtual services, addresses and entries.
fn kube_proxy_ipvs_mode_syncs_and_serves() {
    use podnet_nat::ipvs::ipset;
    use podnet_nat::ipvs::sync::IpvsSyncer;
    use podnet_nat::kube_proxy::iptables_sync::Backend;
    use podnet_nat::kube_proxy::ipvs_mode::IpvsModeSettings;
    use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
    require_root!();
    let node = TestNs::new("ipvs-kp-node");
    let tools = ["ipvsadm", "ipset", "iptables-legacy-restore"];
    if !have_programs(
        &node,
        &tools,
        "ipvs_kernel::kube_proxy_ipvs_mode_syncs_and_serves",
    ) {
        return;
    }
    let client = TestNs::new("ipvs-kp-client");
    let ep1 = TestNs::new("ipvs-kp-ep1");
    let ep2 = TestNs::new("ipvs-kp-ep2");
    attach(&node, "eth0", "198.18.0.1/24", &client, "198.18.0.2/24");
    attach(&node, "vep1", "10.244.1.1/24", &ep1, "10.244.1.2/24");
    attach(&node, "vep2", "10.244.2.1/24", &ep2, "10.244.2.2/24");
    let _s1 = NameServer::start(&ep1, sa("10.244.1.2:8080"), "ep1");
    let _s2 = NameServer::start(&ep2, sa("10.244.2.2:8080"), "ep2");

    let mut settings = NodeSettings::new("node-1", podnet_nat::kube::IpFamily::V4);
    settings.node_ips = vec!["198.18.0.1".parse().unwrap()];
    settings.local_detector = LocalDetector::ClusterCidr("10.244.0.0/16".parse().unwrap());
    let timeouts = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    let mode = IpvsModeSettings {
        strict_arp: true,
        timeouts,
        ..IpvsModeSettings::default()
    };
    let mut syncer = IpvsSyncer::new(node.ns().clone(), settings, mode)
        .unwrap()
        .with_backend(Backend::Legacy);
    assert_eq!(syncer.ipvs().timeouts().unwrap(), timeouts);
    assert_eq!(
        node.sysctl_get("net.ipv4.conf.all.arp_ignore").unwrap(),
        "1",
        "--ipvs-strict-arp"
    );
    let report = syncer.sync(&state(WEB)).unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(
        (
            report.services_added,
            report.destinations_added,
            report.addresses_added
        ),
        (2, 4, 1),
        "{report:?}"
    );
    assert_eq!(report.jumps_inserted, 9, "{report:?}");
    assert_eq!(
        node.sysctl_get("net.ipv4.vs.conntrack").unwrap(),
        "1",
        "kube-proxy's sysctls"
    );
    // A second sync with nothing changed changes nothing.
    let again = syncer.sync(&state(WEB)).unwrap();
    assert_eq!(
        (
            again.services_added + again.services_edited + again.services_deleted,
            again.destinations_added + again.destinations_edited + again.destinations_deleted,
            again.addresses_added + again.addresses_removed,
            again.jumps_inserted
        ),
        (0, 0, 0, 0),
        "{again:?}"
    );
    // It was a partial sync: no ipset entry, no iptables-restore.
    assert!(
        !again.full && !again.iptables_restored && again.ipset_entries_changed == 0,
        "{again:?}"
    );

    check_kube_proxy_view(&node);

    // Traffic: the cluster IP and the node port, from a client outside the cluster network.
    for target in [sa("10.96.0.10:80"), sa("198.18.0.1:30080")] {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..10 {
            *seen.entry(ask(&client, target)).or_insert(0) += 1;
        }
        assert_eq!(
            seen,
            [("ep1".to_string(), 5), ("ep2".to_string(), 5)].into(),
            "{target}"
        );
    }

    // Scale down to ep1: ep2 has (closed, TIME_WAIT) connections, so it drains at weight 0.
    let one = WEB.replace("- {addresses: [10.244.2.2], nodeName: node-2}\n", "");
    let report = syncer.sync(&state(&one)).unwrap();
    assert_eq!(report.destinations_draining, 2, "{report:?}");
    // A partial sync: only the two virtual services' destinations (ep2 is on another node,
    // so it had no hairpin entry).
    assert!(
        !report.full && !report.iptables_restored && report.ipset_entries_changed == 0,
        "{report:?}"
    );
    for _ in 0..4 {
        assert_eq!(ask(&client, sa("10.96.0.10:80")), "ep1");
        assert_eq!(ask(&client, sa("198.18.0.1:30080")), "ep1");
    }

    // The Service goes away: its virtual services, address and set entries with it.
    let report = syncer.sync(&state("")).unwrap();
    assert_eq!(
        (report.services_deleted, report.addresses_removed),
        (2, 1),
        "{report:?}"
    );
    assert!(syncer.ipvs().list_services().unwrap().is_empty());
    let set = node.exec("ipset", &["list", ipset::CLUSTER_IP]);
    assert!(!set.contains("10.96.0.10"), "{set}");

    check_cleanup(&mut syncer, &node, &state(&one));
}
