//! podnet-ipam: flannel's net-conf.json, lease attributes and subnet keys, subnet.env, and
//! host-local's configuration and lease files.

use podnet_ipam::{IpamConfig, LeaseAttrs, LeaseSubnets, NetworkConfig, SubnetEnv};
use std::hint::black_box;

/// flannel's network configuration (`net-conf.json`, the etcd `config` key), with its
/// `Backend` section read as flanneld reads it.
pub fn net_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = NetworkConfig::parse(&text) {
        black_box(podnet_examples::flannel::check_backend_config(&c).is_ok());
        assert!(c.subnet_min <= c.subnet_max);
        assert!(c.ipv6_subnet_min <= c.ipv6_subnet_max);
        if let Some(n) = c.network {
            black_box(c.fits_v4(n));
        }
        if let Some(n) = c.ipv6_network {
            black_box(c.fits_v6(n));
        }
        black_box(format!("{c:?}"));
    }
}

/// A lease's value (its attributes' JSON, and a vxlan peer's VtepMAC in it) and its key: what
/// podnet reads back is what it writes again.
pub fn flannel_lease(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = LeaseAttrs::from_json(&text) {
        let again = LeaseAttrs::from_json(&a.to_json()).expect("podnet reads what it writes");
        assert_eq!(again, a);
        // A peer's VtepMAC, as flanneld's vxlan backend reads it.
        let data = a.backend_data.as_ref().map(|d| d.get()).unwrap_or("null");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
            let mac = v.get("VtepMAC").and_then(|m| m.as_str());
            black_box(mac.map(|m| m.parse::<podnet_links::MacAddr>()));
        }
    }
    if let Some(s) = LeaseSubnets::parse_key_name(&text) {
        assert_eq!(LeaseSubnets::parse_key_name(&s.key_name()), Some(s));
        black_box(s.overlaps(&s));
    }
}

/// flannel's `subnet.env`: the text podnet writes from what it read, it reads back the same
/// (a network or subnet without its pair is not written, as flannel does not).
pub fn subnet_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(env) = SubnetEnv::parse(&text) {
        black_box(env.previous_subnets());
        let written = env.to_string();
        let again = SubnetEnv::parse(&written).expect("podnet reads what it writes");
        assert_eq!(again.to_string(), written);
        assert_eq!((again.mtu, again.ipmasq), (env.mtu, env.ipmasq));
    }
}

/// host-local's configuration (the network config with its `ipam` section, and GC's
/// `cni.dev/valid-attachments`).
pub fn host_local_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = IpamConfig::parse(&text) {
        for set in &c.ranges {
            for r in set {
                assert!(r.range_start <= r.range_end);
                assert!(r.contains(r.range_start) && r.contains(r.range_end));
            }
        }
        black_box(c.lease_dir());
    }
    if let Ok(attachments) = podnet_ipam::valid_attachments(&text) {
        black_box(attachments);
    }
}

/// A host-local lease file (`<container id>\r\n<ifname>`).
pub fn host_local_lease(data: &[u8]) {
    if let Ok(Some((id, ifname))) = podnet_ipam::parse_lease_file(data) {
        assert!(!id.is_empty() && !id.contains(['\r', '\n']));
        assert!(!ifname.is_some_and(|i| i.contains(['\r', '\n'])));
    }
}

/// Files as flannel, host-local and podnet write them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for t in [
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}"#,
        r#"{"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.200.0","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":64,"Backend":{"Type":"host-gw"}}"#,
        r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd10::/56","Backend":{"Type":"udp","Port":8285}}"#,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"GBP":true,"DirectRouting":true,"MTU":1400}}"#,
    ] {
        out.push(("net_conf", t.as_bytes().to_vec()));
    }
    for t in [
        r#"{"PublicIP":"198.18.0.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:f1:7f:1f:1d:24"}}"#,
        r#"{"PublicIP":"198.18.0.2","BackendType":"host-gw"}"#,
        "/coreos.com/network/subnets/10.5.52.0-24&fc00:0:0:34::-64",
        "10.244.3.0-24",
    ] {
        out.push(("flannel_lease", t.as_bytes().to_vec()));
    }
    out.push((
        "subnet_env",
        b"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
          FLANNEL_IPV6_NETWORK=fd10::/56\nFLANNEL_IPV6_SUBNET=fd10:0:0:1::1/64\n\
          FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
            .to_vec(),
    ));
    for t in [
        r#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge","ipam":{"type":"host-local","dataDir":"/run/podnet-ipam","ranges":[[{"subnet":"10.244.7.0/24","rangeStart":"10.244.7.10","rangeEnd":"10.244.7.200","gateway":"10.244.7.1"}],[{"subnet":"fd10::/64"}]],"routes":[{"dst":"0.0.0.0/0"}],"exclude":["10.244.7.128/28"]}}"#,
        r#"{"name":"n","ipam":{"subnet":"10.244.8.0/30"}}"#,
        r#"{"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local","subnet":"10.244.9.0/24"},"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
    ] {
        out.push(("host_local_config", t.as_bytes().to_vec()));
    }
    out.push(("host_local_lease", b"c0ffee1234\r\neth0".to_vec()));
    out.push(("host_local_lease", b"c0ffee1234".to_vec()));
    out
}
