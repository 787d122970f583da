//! EtcdStore with etcd user authentication enabled on a real server.

#![cfg(feature = "etcd")]

mod common;

use podnet_ipam::{EtcdStore, LeaseAttrs, Store, SubnetManager};

#[test]
fn user_and_password() {
    let server = common::EtcdServer::start();
    // The admin steps with etcd's own tool (Debian etcd-client), as an operator would.
    common::enable_auth(&server.endpoint, &[]);
    // Without credentials: refused, as an error (not a panic).
    let anon = EtcdStore::connect(&[&server.endpoint]).unwrap();
    let err = anon.get("/x").unwrap_err().to_string();
    assert!(err.contains("user name is empty"), "{err}");
    // A wrong password: refused at connect, saying so.
    let err = EtcdStore::connect_with_user(&[&server.endpoint], "root", "wrong")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid user ID or password"), "{err}");
    let sm = SubnetManager::new(
        EtcdStore::connect_with_user(&[&server.endpoint], "root", "s3cret").unwrap(),
    );
    sm.put_network_config(r#"{"Network":"10.71.0.0/16"}"#)
        .unwrap();
    let l = sm
        .acquire(
            &LeaseAttrs::new("198.18.11.1".parse().unwrap(), "vxlan"),
            None,
        )
        .unwrap();
    assert_eq!(l.subnets.ipv4.unwrap().prefix_len(), 24);
}
