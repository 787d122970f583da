//! The maps layout of kube-proxy's nftables mode ([`NftLayout::Maps`]): the same table,
//! dispatch maps and per-Service chains as kube-proxy's layout, but the endpoints live in
//! named data maps and sets instead of per-endpoint chains and anonymous verdict maps, so a
//! change of a Service's endpoints only adds and deletes elements.
//!
//! Why: the kernel validates the whole table at commit (`nf_tables_validate`, every chain
//! reachable from the base chains, through every verdict map element) when the transaction
//! asked for it, and it is asked for (net/netfilter/nf_tables_api.c, Linux 6.x):
//!
//! - by `nf_tables_newrule` for every new rule holding an expression with a `validate`
//!   operation (immediate verdicts, lookups, nat, masq, reject, fib, ...): any rule
//!   kube-proxy's layout writes;
//! - by `nft_add_set_elem` for an element whose data is a `jump` or `goto` verdict, once per
//!   binding of the map;
//!
//! and not by element operations on maps whose data is not a verdict, nor by deleting
//! elements, rules or chains. `nft_add_set_elem` also walks the map's bindings (every rule
//! that looks it up) for each element with data, and `nf_tables_bind_set` walks a data map's
//! elements when a rule in a new chain binds it; `nf_tables_newset` and the lookups by name
//! walk the table's list of sets. Hence the layout:
//!
//! - Per Service port and traffic policy an endpoint *group* (a number). Its policy chain
//!   (`service-…` / `local-…`) ends with `dnat to numgen random mod K offset G*4096 map
//!   @slots-S` and a fallback (`reject` for the Cluster chain: the Service has no endpoint;
//!   `drop` for the Local chain: none on this node). The K slots of the group (K = the
//!   smallest power of two at least 8 and at least twice the number of endpoints) hold the
//!   endpoints' `address . port` round-robin, so each endpoint's share is within 1/K of an
//!   even one. K only changes when the endpoint count crosses a power of two; then (only) the
//!   rule is rewritten.
//! - Slot maps are shared by [`GROUPS_PER_SHARD`] groups (`slots-0`, `slots-1`, ...): few
//!   sets (cheap list walks), few bindings per map (cheap element adds), no anonymous sets
//!   (the quadratic `__nft_set_trans_bind` walk of kube-proxy's full sync is gone).
//! - Hairpin: the set `hairpin-pairs` of `endpoint . endpoint` address pairs, matched in
//!   `masquerading` (after DNAT the source and destination of a hairpin packet are both the
//!   endpoint), marks the packet for masquerade.
//! - ClientIP affinity: the dynamic map `sticky-S` remembers `group . client : endpoint`
//!   with the Service's timeout; a rule in the policy chain sends a client to its remembered
//!   endpoint while `group . endpoint` is in the set `live-endpoints`, and forgets it when it
//!   is not (the endpoint went away), as kube-proxy's per-endpoint affinity sets do.
//!
//! Differences from kube-proxy's layout: Services without endpoints are rejected (or, through
//! a Local policy, dropped) by the policy chain in the nat hooks rather than through
//! `no-endpoint-services` in the filter hooks; external traffic of a Local-policy Service
//! with no endpoint anywhere is dropped rather than rejected; at most 4,096 endpoints per
//! group are used.

use super::NodeSettings;
use super::nftables_mode::{
    Builder, MARK_MASQ_CHAIN, MASQUERADING_CHAIN, NftProxySettings, PortNames, ServiceObjects,
    base_ops, dispatch_elements, external_chain, firewall_chain, internal_chain,
};
use crate::kube::plan::{Policy, PortPlan};
use crate::kube::{Endpoint, ServiceKey, ServicePort, ServicePortName};
use crate::nftables::model::{KeyPart, KeyType, Op, Rule, Set, Verdict};
use crate::nftables::rule::{Affinity, Expr};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How the nftables mode lays out its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NftLayout {
    /// Exactly kube-proxy's objects (golden-tested against upstream's expected output).
    #[default]
    KubeProxy,
    /// Endpoints in data maps: an endpoint change only adds and deletes map elements.
    Maps,
}

impl NftLayout {
    /// The name of the `--nftables-layout` flag's value.
    pub fn name(self) -> &'static str {
        match self {
            NftLayout::KubeProxy => "kube-proxy",
            NftLayout::Maps => "maps",
        }
    }
}

impl std::str::FromStr for NftLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<NftLayout, String> {
        match s {
            "kube-proxy" => Ok(NftLayout::KubeProxy),
            "maps" => Ok(NftLayout::Maps),
            other => Err(format!(
                "unknown nftables layout {other:?} (kube-proxy, maps)"
            )),
        }
    }
}

/// Endpoint groups sharing one slot map and one affinity map.
pub const GROUPS_PER_SHARD: u32 = 256;
/// Slots a group can have at most (the group's slots start at `group * MAX_SLOTS`).
pub const MAX_SLOTS: u32 = 4096;
/// Live endpoints of the affinity groups: `group . address . port`.
pub const LIVE_SET: &str = "live-endpoints";
/// `endpoint . endpoint` address pairs: hairpin traffic after DNAT.
pub const HAIRPIN_SET: &str = "hairpin-pairs";

/// The slot map of shard `shard`.
pub fn slots_map(shard: u32) -> String {
    format!("slots-{shard}")
}

/// The affinity map of shard `shard`.
pub fn sticky_map(shard: u32) -> String {
    format!("sticky-{shard}")
}

/// Slots of a group with `n` endpoints: a power of two, at least 8 and at least `2n`, at
/// most [`MAX_SLOTS`].
pub fn slot_count(n: usize) -> u32 {
    let want = (2 * n).max(8).min(MAX_SLOTS as usize);
    (want.next_power_of_two() as u32).min(MAX_SLOTS)
}

/// The endpoint groups of the Service ports, numbered from 0, numbers of removed Services
/// reused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    ids: BTreeMap<(ServicePortName, bool), u32>,
    free: BTreeSet<u32>,
    next: u32,
}

impl Groups {
    /// The group of `port`'s `policy` endpoints, made when new.
    pub fn id(&mut self, port: &ServicePortName, policy: Policy) -> u32 {
        let key = (port.clone(), policy == Policy::Local);
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = match self.free.pop_first() {
            Some(id) => id,
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        self.ids.insert(key, id);
        id
    }

    /// Frees the groups of Service `key`.
    pub fn release(&mut self, key: &ServiceKey) {
        let gone: Vec<(ServicePortName, bool)> = self
            .ids
            .keys()
            .filter(|(p, _)| &p.service == key)
            .cloned()
            .collect();
        for k in gone {
            if let Some(id) = self.ids.remove(&k) {
                self.free.insert(id);
            }
        }
    }

    /// The shards in use: `0..shards()`.
    pub fn shards(&self) -> u32 {
        self.next.div_ceil(GROUPS_PER_SHARD)
    }
}

/// The maps a shard needs: its slot map and its affinity map.
pub fn shard_sets(settings: &NftProxySettings, shard: u32) -> [Set; 2] {
    let family = settings.family();
    let endpoint = vec![family.addr_type(), KeyType::InetService];
    [
        Set {
            name: slots_map(shard),
            key: vec![KeyType::Mark],
            verdict_map: false,
            data: endpoint.clone(),
            dynamic: false,
            timeout: None,
            comment: None,
        },
        Set {
            name: sticky_map(shard),
            key: vec![KeyType::Mark, family.addr_type()],
            verdict_map: false,
            data: endpoint,
            dynamic: true,
            timeout: Some(10_800),
            comment: None,
        },
    ]
}

/// The fixed objects of the maps layout: kube-proxy's, plus the live-endpoint and hairpin
/// sets (flushed: a full sync writes their elements again) and the hairpin rule at the top
/// of `masquerading`.
pub fn base_ops_maps(settings: &NftProxySettings, recreate_base_chains: bool) -> Vec<Op> {
    let family = settings.family();
    let mut ops = base_ops(settings, recreate_base_chains);
    let set = |name: &str, key: Vec<KeyType>| Set {
        name: name.into(),
        key,
        verdict_map: false,
        data: Vec::new(),
        dynamic: false,
        timeout: None,
        comment: None,
    };
    let live = set(
        LIVE_SET,
        vec![KeyType::Mark, family.addr_type(), KeyType::InetService],
    );
    let hairpin = set(HAIRPIN_SET, vec![family.addr_type(), family.addr_type()]);
    let first_masq_rule = ops
        .iter()
        .position(|op| matches!(op, Op::AddRule(r) if r.chain == MASQUERADING_CHAIN))
        .unwrap_or(ops.len());
    let rule = Rule::new(
        MASQUERADING_CHAIN,
        vec![
            Expr::AddrPairInSet {
                set: HAIRPIN_SET.into(),
            },
            Expr::Verdict(Verdict::Jump(MARK_MASQ_CHAIN.into())),
        ],
    )
    .with_comment("hairpin: the endpoint connects to itself through a Service");
    ops.splice(
        first_masq_rule..first_masq_rule,
        [
            Op::AddSet(live),
            Op::AddSet(hairpin),
            Op::FlushSet(LIVE_SET.into(), false),
            Op::FlushSet(HAIRPIN_SET.into(), false),
            Op::AddRule(rule),
        ],
    );
    ops
}

/// A ready endpoint on this node: the plan of a port as if it had endpoints everywhere, the
/// shape of its chains whatever its endpoints are.
fn synthetic_endpoint(port: &ServicePort, node: &NodeSettings) -> Endpoint {
    let ip = match port.cluster_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    Endpoint {
        addr: SocketAddr::new(ip, port.port),
        node_name: Some(node.node_name.clone()),
        zone: None,
        ready: true,
        serving: true,
        terminating: false,
        topology: Default::default(),
    }
}

/// Compiles one Service in the maps layout, numbering its endpoint groups in `groups`.
pub fn compile_service_maps<'a>(
    ports: impl IntoIterator<Item = (&'a ServicePort, &'a [Endpoint])>,
    settings: &NftProxySettings,
    groups: &mut Groups,
) -> ServiceObjects {
    let node = &settings.node;
    let mut b = Builder::default();
    for (svc, endpoints) in ports {
        let synthetic = [synthetic_endpoint(svc, node)];
        let shape = PortPlan::new(svc, &synthetic, node);
        let real = PortPlan::new(svc, endpoints, node);
        let names = PortNames::new(&shape);
        for (used, chain) in [
            (shape.uses_cluster_chain(), &names.cluster),
            (shape.uses_local_chain(), &names.local),
            (shape.uses_external_chain(), &names.external),
            (shape.firewall.is_some(), &names.firewall),
        ] {
            if used {
                b.ensure(chain);
            }
        }
        dispatch_elements(&mut b, &shape, &names);
        internal_chain(&mut b, &shape, &names, node);
        external_chain(&mut b, &shape, &names, node);
        firewall_chain(&mut b, &shape, &names);
        for (used, policy, chain, eps) in [
            (
                shape.uses_cluster_chain(),
                Policy::Cluster,
                &names.cluster,
                &real.cluster,
            ),
            (
                shape.uses_local_chain(),
                Policy::Local,
                &names.local,
                &real.local,
            ),
        ] {
            if !used {
                continue;
            }
            let group = groups.id(&svc.name, policy);
            group_rules(&mut b, &shape, group, chain, policy, eps);
        }
        for ep in &real.reachable {
            b.data_element(
                HAIRPIN_SET,
                vec![KeyPart::Addr(ep.ip()), KeyPart::Addr(ep.ip())],
                Vec::new(),
            );
        }
    }
    b.objs
}

/// A group's rules in its policy chain and its elements: slots, live endpoints.
fn group_rules(
    b: &mut Builder,
    shape: &PortPlan<'_>,
    group: u32,
    chain: &str,
    policy: Policy,
    eps: &[&Endpoint],
) {
    let shard = group / GROUPS_PER_SHARD;
    let k = slot_count(eps.len());
    let offset = group * MAX_SLOTS;
    let affinity = shape.affinity.map(|timeout| Affinity {
        map: sticky_map(shard),
        group,
        timeout,
    });
    if let Some(a) = &affinity {
        b.rule(
            chain,
            vec![Expr::AffinityForget {
                affinity: a.clone(),
                live: LIVE_SET.into(),
            }],
            None,
        );
        b.rule(
            chain,
            vec![Expr::AffinityDnat {
                affinity: a.clone(),
                live: LIVE_SET.into(),
            }],
            None,
        );
        for ep in eps {
            b.data_element(
                LIVE_SET,
                vec![
                    KeyPart::Int(group),
                    KeyPart::Addr(ep.ip()),
                    KeyPart::Port(ep.addr.port()),
                ],
                Vec::new(),
            );
        }
    }
    b.rule(
        chain,
        vec![Expr::SlotDnat {
            map: slots_map(shard),
            modulus: k,
            offset,
            affinity,
        }],
        None,
    );
    let fallback = match policy {
        Policy::Cluster => Expr::Reject,
        Policy::Local => Expr::Verdict(Verdict::Drop),
    };
    b.rule(chain, vec![fallback], Some("no endpoint"));
    let used = eps.len().min(MAX_SLOTS as usize);
    if used == 0 {
        return;
    }
    for slot in 0..k {
        let ep = eps[slot as usize % used];
        b.data_element(
            &slots_map(shard),
            vec![KeyPart::Int(offset + slot)],
            vec![KeyPart::Addr(ep.ip()), KeyPart::Port(ep.addr.port())],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_are_powers_of_two_with_room() {
        assert_eq!(slot_count(0), 8);
        assert_eq!(slot_count(4), 8);
        assert_eq!(slot_count(5), 16);
        assert_eq!(slot_count(100), 256);
        assert_eq!(slot_count(100_000), MAX_SLOTS);
    }

    #[test]
    fn groups_are_reused_after_release() {
        let mut g = Groups::default();
        let a = ServicePortName {
            service: ServiceKey::new("ns", "a"),
            port: "p".into(),
            protocol: crate::iptables::Protocol::Tcp,
        };
        let mut b = a.clone();
        b.service = ServiceKey::new("ns", "b");
        assert_eq!(g.id(&a, Policy::Cluster), 0);
        assert_eq!(g.id(&a, Policy::Local), 1);
        assert_eq!(g.id(&b, Policy::Cluster), 2);
        assert_eq!(g.id(&a, Policy::Cluster), 0);
        g.release(&a.service);
        assert_eq!(g.id(&b, Policy::Local), 0);
        assert_eq!(g.shards(), 1);
    }
}
