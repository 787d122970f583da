//! EtcdStore with etcd user authentication enabled on a real server.

#![cfg(feature = "etcd")]

mod common;

use podnet_ipam::{EtcdStore, LeaseAttrs, Store, SubnetManager};

#[test]
fn user_and_password() {
    let server = common::EtcdServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([&server.endpoint], None)
            .await
            .unwrap();
        c.user_add("root", "s3cret", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    // Without credentials: refused, as an error (not a panic).
    let anon = EtcdStore::connect(&[&server.endpoint]).unwrap();
    assert!(anon.get("/x").is_err());
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
