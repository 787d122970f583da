//! One behavioural suite for every store: run against `FileStore` and, with feature `etcd`,
//! against `EtcdStore` on a real etcd server started on 127.0.0.1.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use podnet_ipam::{
    Lease, LeaseAttrs, LeaseError, LeaseEvent, LeaseSubnets, ManagerOptions, Store, StoreError,
    StoreEvent, SubnetManager,
};

type Open = dyn Fn() -> Box<dyn Store> + Send + Sync;

/// What each case gets: a way to open a store (several openings = several agents) and a key
/// prefix of its own.
struct Harness {
    open: Arc<Open>,
    prefix: String,
}

impl Harness {
    fn store(&self) -> Box<dyn Store> {
        (self.open)()
    }

    fn manager(&self) -> SubnetManager<Box<dyn Store>> {
        SubnetManager::with_prefix(self.store(), &self.prefix)
    }
}

fn attrs(ip: &str) -> LeaseAttrs {
    LeaseAttrs::new(ip.parse().unwrap(), "vxlan")
        .with_backend_data(r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#)
        .unwrap()
}

fn wait_event(w: &mut dyn podnet_ipam::StoreWatch) -> StoreEvent {
    w.next(Duration::from_secs(10))
        .expect("watch")
        .expect("an event within 10 s")
}

fn case_crud(h: &Harness) {
    let s = h.store();
    let k = format!("{}/a", h.prefix);
    let r1 = s.add(&k, b"one", None).unwrap().expect("created");
    assert_eq!(
        s.add(&k, b"two", None).unwrap(),
        None,
        "create must not overwrite"
    );
    let kv = s.get(&k).unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.expires),
        (&b"one"[..], r1, None)
    );
    assert_eq!(
        s.replace_if(&k, b"x", None, r1 + 1000).unwrap(),
        None,
        "stale revision"
    );
    let r2 = s.replace_if(&k, b"two", None, r1).unwrap().expect("cas");
    assert!(r2 > r1);
    assert_eq!(
        s.replace_if(&k, b"three", None, r1).unwrap(),
        None,
        "old revision"
    );
    let r3 = s.replace(&format!("{}/b", h.prefix), b"bee", None).unwrap();
    assert!(r3 > r2);
    s.replace(&format!("{}x/other", h.prefix), b"not mine", None)
        .unwrap();
    let l = s.list(&format!("{}/", h.prefix)).unwrap();
    let keys: Vec<&str> = l.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, [format!("{}/a", h.prefix), format!("{}/b", h.prefix)]);
    assert!(l.revision >= r3);
    assert!(s.del(&k).unwrap());
    assert!(!s.del(&k).unwrap());
    assert_eq!(s.get(&k).unwrap(), None);
    assert_eq!(
        s.replace_if(&k, b"x", None, r2).unwrap(),
        None,
        "update of a deleted key"
    );
    // Binary values survive.
    s.replace(&k, &[0, 159, 146, 150], None).unwrap();
    assert_eq!(s.get(&k).unwrap().unwrap().value, vec![0, 159, 146, 150]);
}

fn case_ttl(h: &Harness) {
    let s = h.store();
    let k = format!("{}/ttl", h.prefix);
    let before = std::time::SystemTime::now();
    s.add(&k, b"v", Some(Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    let kv = s.get(&k).unwrap().unwrap();
    let exp = kv.expires.expect("has a TTL");
    assert!(
        exp > before && exp <= before + Duration::from_secs(4),
        "{exp:?}"
    );
    let start = s.list(&format!("{}/", h.prefix)).unwrap().revision;
    let mut w = s.watch(&format!("{}/", h.prefix), start + 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get(&k).unwrap().is_some() {
        assert!(Instant::now() < deadline, "key did not expire");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.list(&format!("{}/", h.prefix)).unwrap().kvs.is_empty());
    match wait_event(&mut *w) {
        StoreEvent::Delete { key, .. } => assert_eq!(key, k),
        e => panic!("expected the expiry as a delete, got {e:?}"),
    }
    // An expired key can be created again.
    s.add(&k, b"again", None).unwrap().expect("re-created");
}

fn case_watch(h: &Harness) {
    let s = h.store();
    let p = format!("{}/w/", h.prefix);
    s.replace(&format!("{p}old"), b"0", None).unwrap();
    let start = s.list(&p).unwrap().revision;
    let mut w = s.watch(&p, start + 1).unwrap();
    let r1 = s.add(&format!("{p}a"), b"1", None).unwrap().unwrap();
    s.replace(&format!("{}/elsewhere", h.prefix), b"x", None)
        .unwrap();
    let r2 = s
        .replace_if(&format!("{p}a"), b"2", None, r1)
        .unwrap()
        .unwrap();
    assert!(s.del(&format!("{p}old")).unwrap());
    let e1 = wait_event(&mut *w);
    let e2 = wait_event(&mut *w);
    let e3 = wait_event(&mut *w);
    match (&e1, &e2, &e3) {
        (StoreEvent::Put(a), StoreEvent::Put(b), StoreEvent::Delete { key, revision }) => {
            assert_eq!(
                (a.key.as_str(), a.value.as_slice(), a.mod_revision),
                (&*format!("{p}a"), &b"1"[..], r1)
            );
            assert_eq!((b.value.as_slice(), b.mod_revision), (&b"2"[..], r2));
            assert_eq!(key, &format!("{p}old"));
            assert!(*revision > r2);
        }
        _ => panic!("unexpected events {e1:?} {e2:?} {e3:?}"),
    }
    assert_eq!(
        w.next(Duration::from_millis(300)).unwrap(),
        None,
        "nothing else"
    );
}

fn case_compaction(h: &Harness) {
    let s = h.store();
    let p = format!("{}/c/", h.prefix);
    let r0 = s.replace(&format!("{p}a"), b"1", None).unwrap();
    s.replace(&format!("{p}a"), b"2", None).unwrap();
    let r2 = s.replace(&format!("{p}a"), b"3", None).unwrap();
    s.compact(r2).unwrap();
    let mut w = s.watch(&p, r0).unwrap();
    match w.next(Duration::from_secs(10)) {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Watching from after the compaction works.
    let mut w = s.watch(&p, r2 + 1).unwrap();
    s.replace(&format!("{p}b"), b"4", None).unwrap();
    assert_eq!(wait_event(&mut *w).key(), format!("{p}b"));
}

fn case_acquire_and_schema(h: &Harness) {
    let sm = h.manager();
    assert!(matches!(
        sm.acquire(&attrs("198.18.0.1"), None),
        Err(LeaseError::ConfigNotFound { .. })
    ));
    sm.put_network_config(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#)
        .unwrap();
    let a = sm.acquire(&attrs("198.18.0.1"), None).unwrap();
    let net = a.subnets.ipv4.unwrap();
    assert_eq!(net.prefix_len(), 24);
    assert!(sm.network_config().unwrap().fits_v4(net));
    assert!(a.expiration.is_some());
    // flannel's exact key and value bytes.
    let key = format!("{}/subnets/{}-24", h.prefix, net.addr());
    let kv = h
        .store()
        .get(&key)
        .unwrap()
        .expect("lease at flannel's key");
    assert_eq!(
        String::from_utf8(kv.value).unwrap(),
        r#"{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#
    );
    let exp = kv.expires.expect("TTL");
    let left = exp.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(23 * 3600) && left <= Duration::from_secs(24 * 3600 + 5),
        "{left:?}"
    );
    // Same node again: same subnet. Another node: another subnet.
    let again = sm.acquire(&attrs("198.18.0.1"), None).unwrap();
    assert_eq!(again.subnets, a.subnets);
    let b = sm.acquire(&attrs("198.18.0.2"), None).unwrap();
    assert_ne!(b.subnets, a.subnets);
    let (leases, _) = sm.leases().unwrap();
    assert_eq!(leases.len(), 2);
    // Release.
    assert!(sm.release(&b.subnets).unwrap());
    assert_eq!(sm.leases().unwrap().0.len(), 1);
}

fn case_previous_subnet(h: &Harness) {
    let sm = h.manager();
    sm.put_network_config(r#"{"Network":"10.6.0.0/16"}"#)
        .unwrap();
    let prev = LeaseSubnets::parse_key_name("10.6.77.0-24").unwrap();
    let a = sm.acquire(&attrs("198.18.1.1"), Some(prev)).unwrap();
    assert_eq!(a.subnets, prev, "previous subnet reused when free");
    let b = sm.acquire(&attrs("198.18.1.2"), Some(prev)).unwrap();
    assert_ne!(b.subnets, prev, "previous subnet taken by someone else");
    // A previous subnet outside the config is ignored.
    let bad = LeaseSubnets::parse_key_name("10.7.1.0-24").unwrap();
    let c = sm.acquire(&attrs("198.18.1.3"), Some(bad)).unwrap();
    assert!(
        sm.network_config()
            .unwrap()
            .fits_v4(c.subnets.ipv4.unwrap())
    );
    // A node whose lease no longer fits the config loses it and gets a fitting one.
    sm.put_network_config(r#"{"Network":"10.6.0.0/16","SubnetLen":25}"#)
        .unwrap();
    let a2 = sm.acquire(&attrs("198.18.1.1"), None).unwrap();
    assert_eq!(a2.subnets.ipv4.unwrap().prefix_len(), 25);
    assert!(
        h.store().get(&sm.lease_key(&a.subnets)).unwrap().is_none(),
        "old lease deleted"
    );
}

fn case_reservation(h: &Harness) {
    let sm = h.manager();
    sm.put_network_config(r#"{"Network":"10.8.0.0/24","SubnetLen":26}"#)
        .unwrap();
    // Subnets: .64, .128, .192. Reserve .128 for node X.
    let res = LeaseSubnets::parse_key_name("10.8.0.128-26").unwrap();
    let r = sm.reserve(res, &attrs("198.18.2.9")).unwrap();
    assert!(r.is_reservation());
    assert_eq!(
        h.store().get(&sm.lease_key(&res)).unwrap().unwrap().expires,
        None
    );
    let mut got = BTreeSet::new();
    for i in 1..=2 {
        got.insert(
            sm.acquire(&attrs(&format!("198.18.2.{i}")), None)
                .unwrap()
                .subnets,
        );
    }
    assert!(!got.contains(&res), "nobody else gets a reserved subnet");
    assert!(matches!(
        sm.acquire(&attrs("198.18.2.3"), None),
        Err(LeaseError::NetworkFull { .. })
    ));
    // The owner gets its reservation, and it stays without TTL.
    let mut mine = sm.acquire(&attrs("198.18.2.9"), None).unwrap();
    assert_eq!(mine.subnets, res);
    assert!(mine.is_reservation());
    assert_eq!(sm.renew_delay(&mine), None);
    sm.renew(&mut mine).unwrap();
    assert_eq!(
        h.store().get(&sm.lease_key(&res)).unwrap().unwrap().expires,
        None
    );
}

fn case_renew(h: &Harness) {
    let sm = h.manager().options(
        ManagerOptions::default()
            .with_ttl(Duration::from_secs(3600))
            .with_renew_margin(Duration::from_secs(600)),
    );
    sm.put_network_config(r#"{"Network":"10.9.0.0/16"}"#)
        .unwrap();
    let mut l = sm.acquire(&attrs("198.18.3.1"), None).unwrap();
    let d = sm.renew_delay(&l).unwrap();
    assert!(
        d > Duration::from_secs(2900) && d <= Duration::from_secs(3000),
        "{d:?}"
    );
    assert!(!sm.renew_if_due(&mut l).unwrap());
    let (old_rev, old_exp) = (l.revision, l.expiration.unwrap());
    std::thread::sleep(Duration::from_millis(1100));
    sm.renew(&mut l).unwrap();
    assert!(l.revision > old_rev && l.expiration.unwrap() > old_exp);
    let stored = h.store().get(&sm.lease_key(&l.subnets)).unwrap().unwrap();
    assert_eq!(stored.mod_revision, l.revision);
    // Someone else takes the subnet: renewal reports the loss.
    h.store()
        .replace(
            &sm.lease_key(&l.subnets),
            attrs("198.18.3.2").to_json().as_bytes(),
            None,
        )
        .unwrap();
    assert!(matches!(sm.renew(&mut l), Err(LeaseError::Lost { .. })));
    // Deleted (expired) and free: renewal re-creates it.
    let mut l2 = sm.acquire(&attrs("198.18.3.3"), None).unwrap();
    sm.release(&l2.subnets).unwrap();
    sm.renew(&mut l2).unwrap();
    assert!(h.store().get(&sm.lease_key(&l2.subnets)).unwrap().is_some());
}

/// The longest durations a caller can pass work: a TTL of `Duration::MAX` (a lease that
/// practically never expires), a watch waiting `Duration::MAX`, a renewal margin longer than
/// any lease. None of them panics on `Instant`/`SystemTime` arithmetic.
fn case_extreme_durations(h: &Harness) {
    let s = h.store();
    let k = format!("{}/forever", h.prefix);
    let rev = s
        .add(&k, b"v", Some(Duration::MAX))
        .unwrap()
        .expect("created");
    let kv = s.get(&k).unwrap().unwrap();
    assert!(
        kv.expires.is_some_and(
            |e| e > std::time::SystemTime::now() + Duration::from_secs(100 * 365 * 86400)
        ),
        "{:?}",
        kv.expires
    );
    let mut w = s.watch(&format!("{}/", h.prefix), rev).unwrap();
    // An event is there already: a wait of Duration::MAX returns it at once.
    match w.next(Duration::MAX).unwrap() {
        Some(StoreEvent::Put(kv)) => assert_eq!(kv.key, k),
        other => panic!("{other:?}"),
    }

    let sm = h.manager().options(
        ManagerOptions::default()
            .with_ttl(Duration::MAX)
            .with_renew_margin(Duration::MAX),
    );
    sm.put_network_config(r#"{"Network":"10.10.0.0/16"}"#)
        .unwrap();
    let mut l = sm.acquire(&attrs("198.18.4.1"), None).unwrap();
    assert!(l.expiration.is_some(), "a TTL lease, not a reservation");
    // A margin longer than the lease: renewal is due now, and renewing works.
    assert_eq!(sm.renew_delay(&l), Some(Duration::ZERO));
    assert!(sm.renew_if_due(&mut l).unwrap());
    let mut lw = sm.watch().unwrap();
    match lw.next(Duration::MAX).unwrap() {
        Some(LeaseEvent::Snapshot(all)) => assert_eq!(all.len(), 1),
        other => panic!("{other:?}"),
    }
}

fn case_race_last_subnet(h: &Harness) {
    // Network with three subnets: .64, .128, .192 (/26 in a /24).
    let cfg = r#"{"Network":"10.10.0.0/24","SubnetLen":26}"#;
    for round in 0..4 {
        let prefix = format!("{}/race{round}", h.prefix);
        let setup = SubnetManager::with_prefix(h.store(), &prefix);
        setup.put_network_config(cfg).unwrap();
        setup.acquire(&attrs("198.18.4.1"), None).unwrap();
        setup.acquire(&attrs("198.18.4.2"), None).unwrap();
        let results = race_two_agents(h, &prefix, "198.18.4", None);
        let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let full = results
            .iter()
            .filter(|r| matches!(r, Err(LeaseError::NetworkFull { .. })))
            .count();
        assert_eq!((ok.len(), full), (1, 1), "round {round}: {results:?}");
        assert_eq!(setup.leases().unwrap().0.len(), 3);
    }
    // Two free subnets, both agents asking for the same previous one: both succeed.
    for round in 0..4 {
        let prefix = format!("{}/race2-{round}", h.prefix);
        let setup = SubnetManager::with_prefix(h.store(), &prefix);
        setup.put_network_config(cfg).unwrap();
        setup.acquire(&attrs("198.18.5.1"), None).unwrap();
        let taken = setup.leases().unwrap().0[0].subnets;
        let prev = ["10.10.0.64-26", "10.10.0.128-26", "10.10.0.192-26"]
            .iter()
            .map(|k| LeaseSubnets::parse_key_name(k).unwrap())
            .find(|s| *s != taken)
            .unwrap();
        let results: Vec<Lease> = race_two_agents(h, &prefix, "198.18.5", Some(prev))
            .into_iter()
            .map(|r| r.expect("both agents get a subnet"))
            .collect();
        assert_ne!(results[0].subnets, results[1].subnets);
    }
}

/// Two agents (public IPs `{net}.10` and `{net}.11`) acquiring a lease under `prefix` at the
/// same moment, each with its own store client; their results in order.
fn race_two_agents(
    h: &Harness,
    prefix: &str,
    net: &str,
    prev: Option<LeaseSubnets>,
) -> Vec<Result<Lease, LeaseError>> {
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (open, barrier, prefix) = (h.open.clone(), barrier.clone(), prefix.to_string());
            let ip = format!("{net}.{}", 10 + i);
            std::thread::spawn(move || {
                let sm = SubnetManager::with_prefix(open(), &prefix);
                barrier.wait();
                sm.acquire(&attrs(&ip), prev)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn case_malformed_values_skipped(h: &Harness) {
    let sm = h.manager();
    sm.put_network_config(r#"{"Network":"10.11.0.0/24","SubnetLen":26}"#)
        .unwrap();
    let s = h.store();
    let bad_key = format!("{}/subnets/10.11.0.64-26", h.prefix);
    s.replace(&bad_key, b"{\"PublicIP\": not json", None)
        .unwrap();
    s.replace(&format!("{}/subnets/garbage", h.prefix), b"{}", None)
        .unwrap();
    let ((leases, _), logs) = common::capture_logs(|| sm.leases().unwrap());
    assert!(leases.is_empty());
    assert!(logs.contains(&bad_key), "warning names the key: {logs}");
    assert!(logs.contains("garbage"), "warning names the key: {logs}");
    // The malformed entry still holds its subnet: two nodes fit, the third finds it full.
    let a = sm.acquire(&attrs("198.18.6.1"), None).unwrap();
    let b = sm.acquire(&attrs("198.18.6.2"), None).unwrap();
    assert!(a.subnets.key_name() != "10.11.0.64-26" && b.subnets.key_name() != "10.11.0.64-26");
    assert!(matches!(
        sm.acquire(&attrs("198.18.6.3"), None),
        Err(LeaseError::NetworkFull { .. })
    ));
    // A watch skips it too, and keeps going.
    let mut w = sm.watch().unwrap();
    match w.next(Duration::from_secs(5)).unwrap() {
        Some(LeaseEvent::Snapshot(l)) => assert_eq!(l.len(), 2),
        e => panic!("{e:?}"),
    }
    s.replace(&bad_key, b"[still bad", None).unwrap();
    sm.release(&a.subnets).unwrap();
    match w.next(Duration::from_secs(10)).unwrap() {
        Some(LeaseEvent::Removed(l)) => assert_eq!(l.subnets, a.subnets),
        e => panic!("{e:?}"),
    }
    // A bad config names the field.
    s.replace(
        &sm.config_key(),
        br#"{"Network":"10.11.0.0/16","SubnetLen":40}"#,
        None,
    )
    .unwrap();
    match sm.acquire(&attrs("198.18.6.9"), None) {
        Err(LeaseError::Config {
            source: podnet_ipam::ConfigError::Invalid { field, .. },
            ..
        }) => {
            assert_eq!(field, "SubnetLen")
        }
        other => panic!("{other:?}"),
    }
}

fn case_lease_watch(h: &Harness) {
    let sm = h.manager();
    sm.put_network_config(r#"{"Network":"10.12.0.0/16"}"#)
        .unwrap();
    let a = sm.acquire(&attrs("198.18.7.1"), None).unwrap();
    let mut w = sm.watch().unwrap();
    match w.next(Duration::from_secs(5)).unwrap() {
        Some(LeaseEvent::Snapshot(l)) => {
            assert_eq!(l.iter().map(|l| l.subnets).collect::<Vec<_>>(), [a.subnets])
        }
        e => panic!("{e:?}"),
    }
    let other = h.manager();
    let mut b = other.acquire(&attrs("198.18.7.2"), None).unwrap();
    match w.next(Duration::from_secs(10)).unwrap() {
        Some(LeaseEvent::Added(l)) => {
            assert_eq!(l.subnets, b.subnets);
            assert_eq!(l.attrs, attrs("198.18.7.2"));
        }
        e => panic!("{e:?}"),
    }
    other.renew(&mut b).unwrap();
    match w.next(Duration::from_secs(10)).unwrap() {
        Some(LeaseEvent::Changed(l)) => assert_eq!(l.revision, b.revision),
        e => panic!("{e:?}"),
    }
    other.release(&b.subnets).unwrap();
    match w.next(Duration::from_secs(10)).unwrap() {
        Some(LeaseEvent::Removed(l)) => assert_eq!(l.subnets, b.subnets),
        e => panic!("{e:?}"),
    }
    assert_eq!(w.next(Duration::from_millis(300)).unwrap(), None);

    // Resume after compaction: the watch lists again and reports the difference.
    let (known, rev) = sm.leases().unwrap();
    let c = other.acquire(&attrs("198.18.7.3"), None).unwrap();
    sm.release(&a.subnets).unwrap();
    let now = sm.leases().unwrap().1;
    h.store().compact(now).unwrap();
    let mut w = sm.watch_from(known, rev).unwrap();
    let mut events = Vec::new();
    while let Some(e) = w.next(Duration::from_secs(3)).unwrap() {
        events.push(e);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LeaseEvent::Removed(l) if l.subnets == a.subnets))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LeaseEvent::Added(l) if l.subnets == c.subnets))
    );
    // And it keeps watching after the re-list.
    other.release(&c.subnets).unwrap();
    match w.next(Duration::from_secs(10)).unwrap() {
        Some(LeaseEvent::Removed(l)) => assert_eq!(l.subnets, c.subnets),
        e => panic!("{e:?}"),
    }
}

fn case_dual_stack(h: &Harness) {
    let sm = h.manager();
    sm.put_network_config(
        r#"{"Network":"10.13.0.0/16","EnableIPv6":true,"IPv6Network":"fc00:13::/48","Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    let mut at = attrs("198.18.8.1");
    at.public_ipv6 = Some("fd18::1".parse().unwrap());
    let l = sm.acquire(&at, None).unwrap();
    let (v4, v6) = (l.subnets.ipv4.unwrap(), l.subnets.ipv6.unwrap());
    assert_eq!((v4.prefix_len(), v6.prefix_len()), (24, 64));
    let key = format!("{}/subnets/{}-24&{}-64", h.prefix, v4.addr(), v6.addr());
    let kv = h
        .store()
        .get(&key)
        .unwrap()
        .expect("dual-stack key joined with &");
    assert!(
        String::from_utf8(kv.value)
            .unwrap()
            .contains(r#""PublicIPv6":"fd18::1""#)
    );
}

type Case = (&'static str, fn(&Harness));

const CASES: &[Case] = &[
    ("crud", case_crud),
    ("ttl", case_ttl),
    ("watch", case_watch),
    ("compaction", case_compaction),
    ("acquire_and_schema", case_acquire_and_schema),
    ("previous_subnet", case_previous_subnet),
    ("reservation", case_reservation),
    ("renew", case_renew),
    ("race_last_subnet", case_race_last_subnet),
    ("malformed_values_skipped", case_malformed_values_skipped),
    ("lease_watch", case_lease_watch),
    ("dual_stack", case_dual_stack),
    ("extreme_durations", case_extreme_durations),
];

fn run_suite(name: &str, open_for_case: impl Fn(usize) -> (Arc<Open>, String)) {
    let filter = std::env::var("PODNET_CASE").ok();
    for (i, (case, f)) in CASES.iter().enumerate() {
        if filter.as_deref().is_some_and(|c| c != *case) {
            continue;
        }
        eprintln!("{name}: {case}");
        let (open, prefix) = open_for_case(i);
        let t = Instant::now();
        f(&Harness { open, prefix });
        eprintln!("{name}: {case} ok in {:?}", t.elapsed());
    }
}

#[test]
fn file_store_suite() {
    let dirs: Vec<tempfile::TempDir> = CASES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    run_suite("FileStore", |i| {
        let dir = dirs[i].path().to_path_buf();
        let open: Arc<Open> = Arc::new(move || {
            Box::new(podnet_ipam::FileStore::open(&dir).unwrap()) as Box<dyn Store>
        });
        (open, "/coreos.com/network".to_string())
    });
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_store_suite() {
    let server = common::EtcdServer::start();
    let endpoint = server.endpoint.clone();
    run_suite("EtcdStore", |i| {
        let endpoint = endpoint.clone();
        let open: Arc<Open> = Arc::new(move || {
            Box::new(podnet_ipam::EtcdStore::connect(&[&endpoint]).unwrap()) as Box<dyn Store>
        });
        (open, format!("/podnet-test/{i}/coreos.com/network"))
    });
    drop(server);
}

#[test]
fn file_store_history_limit_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = podnet_ipam::FileStoreOptions::default();
    opts.history = 5;
    let s = podnet_ipam::FileStore::open_with(dir.path(), opts).unwrap();
    let r0 = s.replace("/k", b"0", None).unwrap();
    for i in 1..10 {
        s.replace("/k", format!("{i}").as_bytes(), None).unwrap();
    }
    let mut w = s.watch("/", r0).unwrap();
    assert!(matches!(
        w.next(Duration::from_secs(1)),
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/", r0 + 5).unwrap();
    assert!(w.next(Duration::from_secs(1)).unwrap().is_some());
}

#[test]
fn file_store_corrupt_state_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), b"{\"revision\": tru").unwrap();
    match podnet_ipam::FileStore::open(dir.path()) {
        Err(StoreError::Corrupt { path, .. }) => assert!(path.ends_with("state.json")),
        other => panic!("{other:?}"),
    }
}
