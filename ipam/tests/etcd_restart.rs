//! EtcdStore against a real etcd that goes away and comes back: the lease watch reports the
//! error, then lists again and resumes without losing a change.

#![cfg(feature = "etcd")]

mod common;

use std::time::{Duration, Instant};

use podnet_ipam::{EtcdStore, LeaseAttrs, LeaseEvent, SubnetManager};

#[test]
fn lease_watch_survives_an_etcd_restart() {
    let mut server = common::EtcdServer::start();
    let sm = SubnetManager::new(EtcdStore::connect(&[&server.endpoint]).unwrap());
    sm.put_network_config(r#"{"Network":"10.70.0.0/16"}"#)
        .unwrap();
    let a = sm
        .acquire(
            &LeaseAttrs::new("198.18.10.1".parse().unwrap(), "vxlan"),
            None,
        )
        .unwrap();
    let mut w = sm.watch().unwrap();
    assert!(matches!(
        w.next(Duration::from_secs(5)).unwrap(),
        Some(LeaseEvent::Snapshot(_))
    ));

    server.stop();
    // The watch notices (an error), or at least sees nothing.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match w.next(Duration::from_millis(500)) {
            Err(e) => {
                eprintln!("watch error while etcd is down: {e}");
                break;
            }
            Ok(None) if Instant::now() < deadline => continue,
            other => panic!("{other:?}"),
        }
    }
    server.restart();
    // While we were away, another node took a lease and ours was released.
    let other = SubnetManager::new(EtcdStore::connect(&[&server.endpoint]).unwrap());
    let b = other
        .acquire(
            &LeaseAttrs::new("198.18.10.2".parse().unwrap(), "vxlan"),
            None,
        )
        .unwrap();
    other.release(&a.subnets).unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events.len() < 2 && Instant::now() < deadline {
        match w.next(Duration::from_secs(1)) {
            Ok(Some(e)) => events.push(e),
            Ok(None) => {}
            Err(e) => eprintln!("retrying after: {e}"),
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LeaseEvent::Added(l) if l.subnets == b.subnets)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LeaseEvent::Removed(l) if l.subnets == a.subnets)),
        "{events:?}"
    );
}
