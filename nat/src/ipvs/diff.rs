//! What an ipvs-mode sync changes, computed from the rules the last successful sync applied
//! and the rules wanted now, without I/O.
//!
//! A partial sync ([`super::sync::IpvsSyncer`]) writes only this: the ipset entries added and
//! removed (`add`/`del` lines for one `ipset -exist restore`, no set rewritten), the iptables
//! rules only when they changed, the `kube-ipvs0` addresses bound and unbound, and the virtual
//! services that are new, edited, deleted or whose destinations changed. A one-endpoint change
//! is then one virtual service with one destination added and one removed, and one
//! `KUBE-LOOP-BACK` entry added and one removed.

use super::ipset::{IpSet, render_restore};
use super::types::ServiceId;
use crate::kube_proxy::ipvs_mode::IpvsRules;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// The changes from one applied [`IpvsRules`] to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsDiff {
    /// `ipset -exist restore` input: `add`/`del` lines for the entries that changed, and for a
    /// set the last sync did not write (or wrote with another type), that set swapped in
    /// whole. Empty when no entry changed.
    pub ipset_restore: String,
    /// ipset entries added, per set.
    pub ipset_added: BTreeMap<String, BTreeSet<String>>,
    /// ipset entries removed, per set.
    pub ipset_removed: BTreeMap<String, BTreeSet<String>>,
    /// The iptables rules differ: the restore runs.
    pub iptables_changed: bool,
    /// Addresses to bind to `kube-ipvs0`.
    pub bind: BTreeSet<IpAddr>,
    /// Addresses to remove from `kube-ipvs0`.
    pub unbind: BTreeSet<IpAddr>,
    /// Virtual services to add.
    pub services_added: BTreeSet<ServiceId>,
    /// Virtual services whose own settings (scheduler, flags, persistence) changed.
    pub services_edited: BTreeSet<ServiceId>,
    /// Virtual services to delete.
    pub services_deleted: BTreeSet<ServiceId>,
    /// Destinations wanted now that the last sync did not have, per virtual service.
    pub destinations_added: BTreeMap<ServiceId, BTreeSet<SocketAddr>>,
    /// Destinations the last sync had that are no longer wanted.
    pub destinations_removed: BTreeMap<ServiceId, BTreeSet<SocketAddr>>,
    /// Destinations kept whose weight or forwarding changed.
    pub destinations_edited: BTreeMap<ServiceId, BTreeSet<SocketAddr>>,
}

impl IpvsDiff {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == IpvsDiff::default()
    }

    /// The virtual services a partial sync writes to: added, edited, or with destinations
    /// added, removed or edited (not the deleted ones).
    pub fn touched_services(&self) -> BTreeSet<ServiceId> {
        let mut s: BTreeSet<ServiceId> = self.services_added.clone();
        s.extend(self.services_edited.iter().copied());
        s.extend(self.destinations_added.keys().copied());
        s.extend(self.destinations_removed.keys().copied());
        s.extend(self.destinations_edited.keys().copied());
        s
    }

    /// ipset entries added plus removed.
    pub fn ipset_entries_changed(&self) -> usize {
        self.ipset_added.values().map(BTreeSet::len).sum::<usize>()
            + self
                .ipset_removed
                .values()
                .map(BTreeSet::len)
                .sum::<usize>()
    }
}

/// The changes that bring what `prev` applied to `now`.
pub fn diff(prev: &IpvsRules, now: &IpvsRules) -> IpvsDiff {
    let mut d = IpvsDiff {
        iptables_changed: prev.iptables != now.iptables,
        bind: now
            .bind_addrs
            .difference(&prev.bind_addrs)
            .copied()
            .collect(),
        unbind: prev
            .bind_addrs
            .difference(&now.bind_addrs)
            .copied()
            .collect(),
        ..IpvsDiff::default()
    };
    ipsets(&prev.ipsets, &now.ipsets, &mut d);
    for (id, want) in &now.services {
        let Some(had) = prev.services.get(id) else {
            d.services_added.insert(*id);
            if !want.destinations.is_empty() {
                d.destinations_added
                    .insert(*id, want.destinations.iter().map(|x| x.addr).collect());
            }
            continue;
        };
        if had.service != want.service {
            d.services_edited.insert(*id);
        }
        let old: BTreeMap<SocketAddr, _> = had.destinations.iter().map(|x| (x.addr, x)).collect();
        let new: BTreeMap<SocketAddr, _> = want.destinations.iter().map(|x| (x.addr, x)).collect();
        let mut added = BTreeSet::new();
        let mut edited = BTreeSet::new();
        for (addr, x) in &new {
            match old.get(addr) {
                None => {
                    added.insert(*addr);
                }
                Some(o) if o != x => {
                    edited.insert(*addr);
                }
                Some(_) => {}
            }
        }
        let removed: BTreeSet<SocketAddr> = old
            .keys()
            .filter(|a| !new.contains_key(*a))
            .copied()
            .collect();
        for (map, set) in [
            (&mut d.destinations_added, added),
            (&mut d.destinations_edited, edited),
            (&mut d.destinations_removed, removed),
        ] {
            if !set.is_empty() {
                map.insert(*id, set);
            }
        }
    }
    d.services_deleted = prev
        .services
        .keys()
        .filter(|id| !now.services.contains_key(*id))
        .copied()
        .collect();
    d
}

/// Fills the ipset part of `d`.
fn ipsets(prev: &[IpSet], now: &[IpSet], d: &mut IpvsDiff) {
    for set in now {
        let same_kind =
            |p: &&IpSet| p.name == set.name && p.set_type == set.set_type && p.family == set.family;
        let Some(old) = prev.iter().find(same_kind) else {
            // Not written by the last sync as it is now: made (or remade) whole.
            d.ipset_restore
                .push_str(&render_restore(std::slice::from_ref(set)));
            if !set.entries.is_empty() {
                d.ipset_added.insert(set.name.clone(), set.entries.clone());
            }
            continue;
        };
        let added: BTreeSet<String> = set.entries.difference(&old.entries).cloned().collect();
        let removed: BTreeSet<String> = old.entries.difference(&set.entries).cloned().collect();
        for e in &removed {
            let _ = writeln!(d.ipset_restore, "del {} {e}", set.name);
        }
        for e in &added {
            let _ = writeln!(d.ipset_restore, "add {} {e}", set.name);
        }
        if !added.is_empty() {
            d.ipset_added.insert(set.name.clone(), added);
        }
        if !removed.is_empty() {
            d.ipset_removed.insert(set.name.clone(), removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::ipset;
    use crate::kube::{ClusterState, IpFamily, parse_objects};
    use crate::kube_proxy::NodeSettings;
    use crate::kube_proxy::ipvs_mode::{IpvsModeSettings, compile};

    /// `n` ClusterIP Services with one TCP port and 5 endpoints each (as the benchmark's);
    /// `bump` replaces svc0's first endpoint with an unused address.
    fn objects(n: usize, bump: bool) -> String {
        let mut y = String::new();
        for i in 0..n {
            let ip = |k: usize| format!("10.244.{}.{}", k / 256, k % 256);
            let eps: Vec<String> = (0..5)
                .map(|e| {
                    let k = if i == 0 && e == 0 && bump {
                        n * 5 + 1
                    } else {
                        i * 5 + e + 1
                    };
                    format!("{{addresses: [{}], nodeName: node-{}}}", ip(k), k % 50)
                })
                .collect();
            let _ = write!(
                y,
                "---\nkind: Service\nmetadata: {{name: svc{i}, namespace: ns}}\n\
                 spec: {{clusterIP: 10.96.{}.{}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
                 ---\nkind: EndpointSlice\nmetadata: {{name: svc{i}-a, namespace: ns, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
                 endpoints: [{}]\n",
                (i + 10) / 256,
                (i + 10) % 256,
                eps.join(", ")
            );
        }
        y
    }

    fn rules(n: usize, bump: bool) -> IpvsRules {
        let (objs, w) = parse_objects(&objects(n, bump), "t");
        assert!(w.is_empty(), "{w:?}");
        let (state, w) = ClusterState::from_objects(&objs, IpFamily::V4);
        assert!(w.is_empty(), "{w:?}");
        let mut node = NodeSettings::new("node-1", IpFamily::V4);
        node.node_ips = vec!["198.18.0.1".parse().unwrap()];
        compile(&state, &node, &IpvsModeSettings::default())
    }

    #[test]
    fn nothing_changed_is_an_empty_diff() {
        let r = rules(20, false);
        let d = diff(&r, &r.clone());
        assert!(d.is_empty(), "{d:#?}");
        assert!(d.touched_services().is_empty());
    }

    /// The figure of issue 23: one endpoint of one Service replaced touches exactly that
    /// Service's destinations and the hairpin set's entries of that endpoint; no other
    /// service, set, address or iptables rule.
    #[test]
    fn one_endpoint_change_touches_only_what_changed() {
        let n = 300;
        let before = rules(n, false);
        let after = rules(n, true);
        assert_eq!(before.services.len(), n);
        let d = diff(&before, &after);
        let svc0 = *after
            .services
            .iter()
            .find(|(_, c)| c.port.to_string() == "ns/svc0:http")
            .map(|(id, _)| id)
            .expect("svc0's virtual service");
        assert_eq!(d.touched_services(), BTreeSet::from([svc0]));
        assert!(d.services_added.is_empty() && d.services_edited.is_empty());
        assert!(d.services_deleted.is_empty());
        let old_ep: SocketAddr = "10.244.0.1:8080".parse().unwrap();
        let new_ep: SocketAddr = format!("10.244.{}.{}:8080", (n * 5 + 1) / 256, (n * 5 + 1) % 256)
            .parse()
            .unwrap();
        assert_eq!(d.destinations_added[&svc0], BTreeSet::from([new_ep]));
        assert_eq!(d.destinations_removed[&svc0], BTreeSet::from([old_ep]));
        assert!(d.destinations_edited.is_empty());
        assert!(!d.iptables_changed);
        assert!(d.bind.is_empty() && d.unbind.is_empty());
        // The hairpin set names each endpoint on this node (node-1: both the old and the new
        // endpoint are there): one entry out, one in; no set rewritten.
        let lb = ipset::set_name(ipset::LOOP_BACK, IpFamily::V4);
        assert_eq!(
            d.ipset_entries_changed(),
            2,
            "{:?} {:?}",
            d.ipset_added,
            d.ipset_removed
        );
        assert_eq!(d.ipset_added.keys().collect::<Vec<_>>(), [&lb]);
        assert_eq!(d.ipset_removed.keys().collect::<Vec<_>>(), [&lb]);
        let lines: Vec<&str> = d.ipset_restore.lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(&format!("del {lb} 10.244.0.1,tcp:8080,")));
        assert!(lines[1].starts_with(&format!("add {lb} {},tcp:8080,", new_ep.ip())));
        assert!(!d.ipset_restore.contains("swap") && !d.ipset_restore.contains("create"));
    }

    #[test]
    fn services_and_addresses_come_and_go() {
        let before = rules(3, false);
        let after = rules(5, false);
        let d = diff(&before, &after);
        assert_eq!(d.services_added.len(), 2);
        assert_eq!(d.destinations_added.len(), 2);
        assert!(d.destinations_added.values().all(|s| s.len() == 5));
        assert_eq!(d.bind.len(), 2);
        let cluster_ips = ipset::set_name(ipset::CLUSTER_IP, IpFamily::V4);
        assert_eq!(d.ipset_added[&cluster_ips].len(), 2);
        let back = diff(&after, &before);
        assert_eq!(back.services_deleted, d.services_added);
        assert_eq!(back.unbind, d.bind);
        assert!(
            back.destinations_removed.is_empty(),
            "deleted services take theirs along"
        );
        assert_eq!(back.ipset_removed[&cluster_ips].len(), 2);
        // A set the last sync did not write is made whole.
        let mut no_sets = before.clone();
        no_sets.ipsets.clear();
        let d = diff(&no_sets, &before);
        assert_eq!(
            d.ipset_restore.matches("swap ").count(),
            before.ipsets.len()
        );
    }
}
