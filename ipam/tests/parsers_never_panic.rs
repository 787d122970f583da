//! Property tests: every parser of outside input returns a value or an error, never panics,
//! and what podnet writes it reads back.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use podnet_ipam::{IpamConfig, LeaseAttrs, LeaseSubnets, NetworkConfig, SubnetEnv};
use proptest::prelude::*;

fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,0-9a-zA-Z./ -]{0,80}",
        r#"\{"(Network|SubnetLen|SubnetMin|SubnetMax|EnableIPv6|IPv6Network|IPv6SubnetLen|Backend)":("10\.[0-9]{1,3}\.0\.0/[0-9]{1,2}"|[0-9]{1,3}|true|null|\{\}|"fc00::/[0-9]{1,3}")\}"#,
    ]
}

proptest! {
    #[test]
    fn network_config_never_panics(s in jsonish()) {
        let _ = NetworkConfig::parse(&s);
    }

    #[test]
    fn network_config_fields_never_panic(net in any::<u32>(), len in 0u8..=32, sl in 0u64..40, min in any::<u32>(), v6 in any::<u128>(), len6 in 0u8..=128, sl6 in 0u64..130) {
        let text = format!(
            r#"{{"Network":"{}/{len}","SubnetLen":{sl},"SubnetMin":"{}","EnableIPv6":true,"IPv6Network":"{}/{len6}","IPv6SubnetLen":{sl6}}}"#,
            Ipv4Addr::from(net), Ipv4Addr::from(min), Ipv6Addr::from(v6)
        );
        if let Ok(c) = NetworkConfig::parse(&text) {
            prop_assert!(c.subnet_min <= c.subnet_max);
            prop_assert!(c.ipv6_subnet_min <= c.ipv6_subnet_max);
        }
    }

    #[test]
    fn lease_attrs_never_panic(s in jsonish()) {
        let _ = LeaseAttrs::from_json(&s);
    }

    #[test]
    fn subnet_keys_never_panic(s in "[0-9a-f.:&/-]{0,60}") {
        let _ = LeaseSubnets::parse_key_name(&s);
    }

    #[test]
    fn subnet_keys_roundtrip(a in any::<u32>(), l in 1u8..=31, b in any::<u128>(), l6 in 1u8..=127, dual in any::<bool>()) {
        let s = LeaseSubnets {
            ipv4: Some(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()),
            ipv6: dual.then(|| Ipv6Net::new(Ipv6Addr::from(b), l6).unwrap().trunc()),
        };
        prop_assert_eq!(LeaseSubnets::parse_key_name(&s.key_name()), Some(s));
    }

    #[test]
    fn lease_attrs_roundtrip(ip in any::<u32>(), ip6 in proptest::option::of(any::<u128>()), bt in "[a-z<>&]{0,8}", vni in any::<u32>()) {
        let mut a = LeaseAttrs::new(Ipv4Addr::from(ip), bt)
            .with_backend_data(&format!("{{ \"VNI\" : {vni} }}"))
            .unwrap();
        a.public_ipv6 = ip6.map(Ipv6Addr::from);
        let text = a.to_json();
        prop_assert!(!text.contains('<') && !text.contains(' '));
        prop_assert_eq!(LeaseAttrs::from_json(&text).unwrap(), a);
    }

    #[test]
    fn subnet_env_never_panics(s in any::<String>(), k in "FLANNEL_(NETWORK|SUBNET|MTU|IPMASQ|IPV6_SUBNET)", v in "[0-9a-f.:/ ]{0,20}") {
        let _ = SubnetEnv::parse(&s);
        let _ = SubnetEnv::parse(&format!("{k}={v}\n"));
    }

    #[test]
    fn ipam_ranges_never_panic(net in any::<u32>(), len in 0u8..=32, a in any::<u8>(), b in any::<u8>(), g in any::<u8>()) {
        let base = Ipv4Net::new(Ipv4Addr::from(net), len).unwrap().network();
        let at = |o: u8| Ipv4Addr::from(u32::from(base).wrapping_add(u32::from(o)));
        let text = format!(
            r#"{{"name":"n","ipam":{{"subnet":"{base}/{len}","rangeStart":"{}","rangeEnd":"{}","gateway":"{}"}}}}"#,
            at(a), at(b), at(g)
        );
        let text2 = format!(r#"{{"name":"n","ipam":{{"subnet":"{base}/{len}","rangeStart":"{}"}}}}"#, at(a));
        for t in [text, text2] {
            if let Ok(c) = IpamConfig::parse(&t) {
                let r = c.ranges[0][0];
                prop_assert!(r.range_start <= r.range_end);
                prop_assert!(r.contains(r.range_start) && r.contains(r.range_end));
            }
        }
    }

    #[test]
    fn ipam_config_never_panics(s in jsonish(), subnet in "[0-9a-f.:/]{0,24}", start in "[0-9a-f.:]{0,16}") {
        let _ = IpamConfig::parse(&s);
        let _ = IpamConfig::parse(&format!(
            r#"{{"name":"n","ipam":{{"subnet":"{subnet}","rangeStart":"{start}","rangeEnd":"{start}","gateway":"{start}"}}}}"#
        ));
    }
}
