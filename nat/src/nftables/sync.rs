//! Keeping kube-proxy's nftables table in step with the service model: full syncs, and
//! incremental ones that touch only the Services that changed.
//!
//! The [`Planner`] is pure: from what it applied before and the new state it makes the
//! [`Transaction`], and records the result only when told the transaction was applied. The
//! [`NftablesSyncer`] sends its transactions to a namespace's kernel as netlink batches.
//!
//! A partial sync does what kube-proxy's does, with the same number of operations: each
//! changed Service's chains are added, flushed and refilled; its elements of the shared maps
//! are added, deleted or replaced one by one; chains it no longer uses are flushed at once and
//! deleted by a later sync (kube-proxy waits a second: with kernels before 6.2 a chain a map
//! element pointed to stays busy a moment after the element is gone); affinity sets it no
//! longer uses are deleted. Nothing else is written, and what is planned depends only on the
//! changed Services, so its cost does not grow with the number of Services when the caller
//! names them ([`NftablesSyncer::sync_services`]).

use super::model::{Element, KeyPart, Op, Transaction, Verdict};
use super::netlink::{NftError, NftSocket};
use crate::conntrack::{Conntrack, ConntrackError, stale_udp};
use crate::iptables::Protocol;
use crate::kube::{ClusterState, Endpoint, ServiceKey, ServicePort};
use crate::kube_proxy::nftables_maps::{
    Groups, NftLayout, base_ops_maps, compile_service_maps, shard_sets, slots_map,
};
use crate::kube_proxy::nftables_mode::{
    Compiled, NftProxySettings, ServiceObjects, TABLE, base_ops, compile_service, is_service_chain,
    ports_of,
};
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftSyncError {
    /// The kernel refused the transaction, or the socket failed.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Conntrack cleanup failed (the rules were applied).
    #[error(transparent)]
    Conntrack(#[from] ConntrackError),
}

type ElemKey = (String, Vec<KeyPart>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ElemState {
    value: Option<Verdict>,
    data: Vec<KeyPart>,
    comment: Option<String>,
    refs: u32,
}

#[derive(Debug, Clone)]
struct Cached {
    input: Vec<(ServicePort, Vec<Endpoint>)>,
    objs: Arc<ServiceObjects>,
}

/// A transaction and what it leaves behind once applied.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A full sync (the fixed objects and every Service) rather than a partial one.
    pub full: bool,
    /// The transaction.
    pub tx: Transaction,
    /// Services whose chains are written.
    pub services_written: usize,
    updates: Vec<(ServiceKey, Option<Arc<ServiceObjects>>)>,
    elem_updates: Vec<(ElemKey, Option<ElemState>)>,
    new_stale: Vec<String>,
    revived: Vec<String>,
    shards: u32,
}

/// Plans kube-proxy's nftables transactions for one table.
#[derive(Debug, Clone)]
pub struct Planner {
    settings: NftProxySettings,
    applied: BTreeMap<ServiceKey, Arc<ServiceObjects>>,
    elements: HashMap<ElemKey, ElemState>,
    stale_chains: BTreeMap<String, Instant>,
    stale_delay: Duration,
    need_full: bool,
    base_recreated: bool,
    cache: BTreeMap<ServiceKey, Cached>,
    layout: NftLayout,
    groups: Groups,
    shards_made: u32,
}

impl Planner {
    /// A planner whose first plan is a full one.
    pub fn new(settings: NftProxySettings) -> Planner {
        Planner {
            settings,
            applied: BTreeMap::new(),
            elements: HashMap::new(),
            stale_chains: BTreeMap::new(),
            stale_delay: Duration::from_secs(1),
            need_full: true,
            base_recreated: false,
            cache: BTreeMap::new(),
            layout: NftLayout::KubeProxy,
            groups: Groups::default(),
            shards_made: 0,
        }
    }

    /// A planner for `layout`.
    pub fn with_layout(settings: NftProxySettings, layout: NftLayout) -> Planner {
        let mut p = Planner::new(settings);
        p.layout = layout;
        p
    }

    /// The table layout.
    pub fn layout(&self) -> NftLayout {
        self.layout
    }

    /// Changes the table layout: the next plan is a full one.
    pub fn set_layout(&mut self, layout: NftLayout) {
        if layout != self.layout {
            self.layout = layout;
            self.cache.clear();
            self.need_full = true;
        }
    }

    /// The settings.
    pub fn settings(&self) -> &NftProxySettings {
        &self.settings
    }

    /// Changes the settings (the node's addresses changed, say): the cache is dropped and the
    /// next plan is a full one.
    pub fn set_settings(&mut self, settings: NftProxySettings) {
        self.settings = settings;
        self.cache.clear();
        self.need_full = true;
    }

    /// How long a flushed chain waits before it is deleted (kube-proxy: one second).
    pub fn set_stale_chain_delay(&mut self, d: Duration) {
        self.stale_delay = d;
    }

    /// Chains flushed and waiting to be deleted.
    pub fn stale_chains(&self) -> impl Iterator<Item = &str> {
        self.stale_chains.keys().map(String::as_str)
    }

    /// The next plan is a full one.
    pub fn force_full(&mut self) {
        self.need_full = true;
    }

    /// A full plan is due.
    pub fn needs_full(&self) -> bool {
        self.need_full
    }

    /// The Services the last applied plans left in place.
    pub fn applied(&self) -> &BTreeMap<ServiceKey, Arc<ServiceObjects>> {
        &self.applied
    }

    /// The objects of Service `key` in `state` (`None` when it has no ports), compiled again
    /// only when its ports or endpoints changed.
    fn compiled(&mut self, state: &ClusterState, key: &ServiceKey) -> Option<Arc<ServiceObjects>> {
        let ports = ports_of(state, key);
        if ports.is_empty() {
            self.cache.remove(key);
            return None;
        }
        if let Some(c) = self.cache.get(key) {
            let same = c.input.len() == ports.len()
                && c.input
                    .iter()
                    .zip(&ports)
                    .all(|((p, e), (p2, e2))| p == *p2 && e.as_slice() == *e2);
            if same {
                return Some(c.objs.clone());
            }
        }
        let objs = Arc::new(match self.layout {
            NftLayout::KubeProxy => compile_service(ports.iter().copied(), &self.settings),
            NftLayout::Maps => {
                compile_service_maps(ports.iter().copied(), &self.settings, &mut self.groups)
            }
        });
        self.cache.insert(
            key.clone(),
            Cached {
                input: ports
                    .iter()
                    .map(|(p, e)| ((*p).clone(), e.to_vec()))
                    .collect(),
                objs: objs.clone(),
            },
        );
        Some(objs)
    }

    /// Compiles every Service of `state` (using the cache).
    pub fn compile_all(&mut self, state: &ClusterState) -> Compiled {
        let keys: BTreeSet<ServiceKey> = state.services.keys().map(|k| k.service.clone()).collect();
        self.cache.retain(|k, _| keys.contains(k));
        let services = keys
            .into_iter()
            .filter_map(|k| self.compiled(state, &k).map(|o| (k, o)))
            .collect();
        Compiled {
            family: self.settings.family(),
            base: match self.layout {
                NftLayout::KubeProxy => base_ops(&self.settings, !self.base_recreated),
                NftLayout::Maps => base_ops_maps(&self.settings, !self.base_recreated),
            },
            services,
        }
    }

    /// A transaction deleting the flushed chains that waited long enough (empty when none).
    /// Deleted chains are forgotten at once; if the deletion fails they are found again by the
    /// next full sync.
    pub fn stale_deletions(&mut self, now: Instant) -> Transaction {
        let mut tx = Transaction::new(self.settings.family(), TABLE);
        let due: Vec<String> = self
            .stale_chains
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= self.stale_delay)
            .map(|(c, _)| c.clone())
            .collect();
        for c in due {
            self.stale_chains.remove(&c);
            tx.push(Op::DeleteChain(c));
        }
        tx
    }

    /// A full plan: the fixed objects, every Service, and cleanup of the chains and affinity
    /// sets found in the table (`live_chains`, `live_sets`) that no Service uses.
    pub fn plan_full(
        &mut self,
        state: &ClusterState,
        live_chains: &[String],
        live_sets: &[String],
    ) -> Plan {
        let compiled = self.compile_all(state);
        let mut tx = compiled.full_transaction();
        let shards = self.groups.shards();
        if self.layout == NftLayout::Maps {
            // The shards' maps, before the rules that use them; the slots are written again.
            let mut ops = Vec::new();
            for shard in 0..shards {
                for s in shard_sets(&self.settings, shard) {
                    ops.push(Op::AddSet(s));
                }
                ops.push(Op::FlushSet(slots_map(shard), true));
            }
            let at = compiled.base.len();
            tx.ops.splice(at..at, ops);
        }
        let active_chains: BTreeSet<&str> = compiled
            .services
            .values()
            .flat_map(|s| s.chains.iter().map(|(c, _)| c.as_str()))
            .collect();
        let active_sets: BTreeSet<&str> = compiled
            .services
            .values()
            .flat_map(|s| s.sets.iter().map(|s| s.name.as_str()))
            .collect();
        let mut new_stale = Vec::new();
        let mut revived = Vec::new();
        for c in live_chains {
            if !is_service_chain(c) {
                continue;
            }
            if active_chains.contains(c.as_str()) {
                revived.push(c.clone());
            } else {
                tx.push(Op::FlushChain(c.clone()));
                new_stale.push(c.clone());
            }
        }
        for s in live_sets {
            if s.starts_with("affinity-") && !active_sets.contains(s.as_str()) {
                tx.push(Op::DeleteSet(s.clone(), false));
            }
        }
        let mut updates: Vec<(ServiceKey, Option<Arc<ServiceObjects>>)> = self
            .applied
            .keys()
            .filter(|k| !compiled.services.contains_key(*k))
            .map(|k| (k.clone(), None))
            .collect();
        updates.extend(
            compiled
                .services
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone()))),
        );
        Plan {
            full: true,
            services_written: compiled.services.len(),
            tx,
            updates,
            elem_updates: Vec::new(),
            new_stale,
            revived,
            shards,
        }
    }

    /// A partial plan for the Services `keys` (all Services of `state` and all applied ones
    /// when `None`). Services whose objects did not change are left out.
    pub fn plan_partial(&mut self, state: &ClusterState, keys: Option<&[ServiceKey]>) -> Plan {
        let keys: Vec<ServiceKey> = match keys {
            Some(k) => k.to_vec(),
            None => {
                let mut all: BTreeSet<ServiceKey> =
                    state.services.keys().map(|k| k.service.clone()).collect();
                all.extend(self.applied.keys().cloned());
                all.into_iter().collect()
            }
        };
        let mut changes: Vec<(ServiceKey, Option<Arc<ServiceObjects>>)> = Vec::new();
        for k in keys {
            let new = self.compiled(state, &k);
            let old = self.applied.get(&k);
            let same = match (&new, old) {
                (Some(n), Some(o)) => Arc::ptr_eq(n, o) || **n == **o,
                (None, None) => true,
                _ => false,
            };
            if !same {
                changes.push((k, new));
            }
        }
        self.plan_changes(changes)
    }

    /// Elements: how many more (or fewer) of the changed Services hold each key after
    /// `changes` than before, with the newest version of the element.
    fn element_delta<'a>(
        &self,
        changes: &'a [(ServiceKey, Option<Arc<ServiceObjects>>)],
    ) -> BTreeMap<ElemKey, (i64, Option<&'a Element>)> {
        let mut delta: BTreeMap<ElemKey, (i64, Option<&Element>)> = BTreeMap::new();
        for (k, new) in changes {
            if let Some(old) = self.applied.get(k) {
                for e in &old.elements {
                    delta
                        .entry((e.set.clone(), e.key.clone()))
                        .or_insert((0, None))
                        .0 -= 1;
                }
            }
            if let Some(objs) = new {
                for e in &objs.elements {
                    let d = delta
                        .entry((e.set.clone(), e.key.clone()))
                        .or_insert((0, None));
                    d.0 += 1;
                    d.1 = Some(e);
                }
            }
        }
        delta
    }

    fn plan_changes(&self, changes: Vec<(ServiceKey, Option<Arc<ServiceObjects>>)>) -> Plan {
        let mut tx = Transaction::new(self.settings.family(), TABLE);
        let mut new_stale = Vec::new();
        let mut revived = Vec::new();
        let mut written = 0;
        let shards = self.groups.shards();
        if self.layout == NftLayout::Maps {
            for shard in self.shards_made..shards {
                for s in shard_sets(&self.settings, shard) {
                    tx.push(Op::AddSet(s));
                }
            }
        }
        // Chains and sets of the new versions (in the maps layout, only the chains whose
        // rules changed: an endpoint change writes none).
        for (k, new) in &changes {
            if let Some(objs) = new {
                match (self.layout, self.applied.get(k)) {
                    (NftLayout::Maps, Some(old)) => {
                        let before: HashMap<&str, &Vec<super::model::Rule>> =
                            old.chains.iter().map(|(c, r)| (c.as_str(), r)).collect();
                        let mut any = false;
                        for (c, rules) in &objs.chains {
                            if before.get(c.as_str()) != Some(&rules) {
                                tx.push(Op::AddChain(super::model::Chain::regular(c.clone())));
                                tx.push(Op::FlushChain(c.clone()));
                                for r in rules {
                                    tx.push(Op::AddRule(r.clone()));
                                }
                                any = true;
                            }
                        }
                        if any {
                            written += 1;
                        }
                    }
                    _ => {
                        objs.write_chains(&mut tx);
                        written += 1;
                    }
                }
                for (c, _) in &objs.chains {
                    if self.stale_chains.contains_key(c) {
                        revived.push(c.clone());
                    }
                }
            }
        }
        let delta = self.element_delta(&changes);
        let services_written = written;
        let mut elem_updates = Vec::new();
        let mut deletes = Vec::new();
        for (key, (d, newest)) in delta {
            let cur = self.elements.get(&key);
            let before = cur.map_or(0, |c| i64::from(c.refs));
            let after = (before + d).max(0);
            let del_elem = || Element {
                set: key.0.clone(),
                key: key.1.clone(),
                value: None,
                data: Vec::new(),
                comment: None,
            };
            if after == 0 {
                if before > 0 {
                    deletes.push(Op::DeleteElement(del_elem()));
                }
                elem_updates.push((key.clone(), None));
                continue;
            }
            // A Service that still holds the key keeps its value; a changed one brings a new
            // value.
            let (value, data, comment) = match (newest, cur) {
                (Some(e), _) => (e.value.clone(), e.data.clone(), e.comment.clone()),
                (None, Some(c)) => (c.value.clone(), c.data.clone(), c.comment.clone()),
                (None, None) => continue,
            };
            let element = || Element {
                set: key.0.clone(),
                key: key.1.clone(),
                value: value.clone(),
                data: data.clone(),
                comment: comment.clone(),
            };
            match cur {
                Some(c) if c.value == value && c.data == data && c.comment == comment => {}
                Some(_) => {
                    tx.push(Op::DeleteElement(del_elem()));
                    tx.push(Op::AddElement(element()));
                }
                None => tx.push(Op::AddElement(element())),
            }
            elem_updates.push((
                key,
                Some(ElemState {
                    value,
                    data,
                    comment,
                    refs: after as u32,
                }),
            ));
        }
        // Chains and affinity sets the changed Services no longer use.
        for (k, new) in &changes {
            let Some(old) = self.applied.get(k) else {
                continue;
            };
            let keep: BTreeSet<&str> = new
                .iter()
                .flat_map(|n| n.chains.iter().map(|(c, _)| c.as_str()))
                .collect();
            for (c, _) in &old.chains {
                if !keep.contains(c.as_str()) {
                    tx.push(Op::FlushChain(c.clone()));
                    new_stale.push(c.clone());
                }
            }
        }
        for (k, new) in &changes {
            let Some(old) = self.applied.get(k) else {
                continue;
            };
            let keep: BTreeSet<&str> = new
                .iter()
                .flat_map(|n| n.sets.iter().map(|s| s.name.as_str()))
                .collect();
            for s in &old.sets {
                if !keep.contains(s.name.as_str()) {
                    tx.push(Op::DeleteSet(s.name.clone(), false));
                }
            }
        }
        tx.ops.extend(deletes);
        Plan {
            full: false,
            tx,
            services_written,
            updates: changes,
            elem_updates,
            new_stale,
            revived,
            shards,
        }
    }

    /// Records `plan` as applied at `now`.
    pub fn commit(&mut self, plan: Plan, now: Instant) {
        for (k, v) in plan.updates {
            match v {
                Some(o) => {
                    self.applied.insert(k, o);
                }
                None => {
                    self.applied.remove(&k);
                    self.groups.release(&k);
                }
            }
        }
        self.shards_made = self.shards_made.max(plan.shards);
        if plan.full {
            self.elements.clear();
            for s in self.applied.values() {
                for e in &s.elements {
                    let st = self
                        .elements
                        .entry((e.set.clone(), e.key.clone()))
                        .or_insert(ElemState {
                            value: e.value.clone(),
                            data: e.data.clone(),
                            comment: e.comment.clone(),
                            refs: 0,
                        });
                    st.refs += 1;
                }
            }
            self.need_full = false;
            self.base_recreated = true;
        } else {
            for (k, v) in plan.elem_updates {
                match v {
                    Some(s) => {
                        self.elements.insert(k, s);
                    }
                    None => {
                        self.elements.remove(&k);
                    }
                }
            }
        }
        for c in plan.revived {
            self.stale_chains.remove(&c);
        }
        for c in plan.new_stale {
            self.stale_chains.insert(c, now);
        }
    }

    /// Forgets a plan that failed: the next plan is a full one.
    pub fn abort(&mut self) {
        self.need_full = true;
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq)]
pub struct NftSyncReport {
    /// The transaction was a full one.
    pub full: bool,
    /// A partial transaction failed first and a full one replaced it.
    pub fell_back: bool,
    /// Operations of the transaction (kube-proxy's `NumOperations`).
    pub operations: usize,
    /// Netlink messages sent (anonymous sets and their elements included).
    pub messages: usize,
    /// Services whose chains were written.
    pub services_written: usize,
    /// Stale chains deleted before the transaction.
    pub chains_deleted: usize,
    /// Time spent planning (compiling the changed Services, diffing).
    pub plan_time: Duration,
    /// Time spent sending the batch and waiting for the kernel.
    pub apply_time: Duration,
    /// Stale UDP conntrack flows deleted after the rules were applied.
    pub conntrack_deleted: usize,
}

/// Keeps kube-proxy's nftables table of one family in one network namespace in step with a
/// [`ClusterState`], over netlink.
#[derive(Debug)]
pub struct NftablesSyncer {
    netns: NetNs,
    sock: Option<NftSocket>,
    planner: Planner,
    conntrack: Option<Conntrack>,
}

impl NftablesSyncer {
    /// A syncer for namespace `netns`. Its first sync is a full one.
    pub fn new(netns: NetNs, settings: NftProxySettings) -> NftablesSyncer {
        NftablesSyncer {
            netns,
            sock: None,
            planner: Planner::new(settings),
            conntrack: None,
        }
    }

    /// A syncer writing the table in `layout`. Its first sync is a full one.
    pub fn with_layout(
        netns: NetNs,
        settings: NftProxySettings,
        layout: NftLayout,
    ) -> NftablesSyncer {
        NftablesSyncer {
            netns,
            sock: None,
            planner: Planner::with_layout(settings, layout),
            conntrack: None,
        }
    }

    /// The planner (for dry runs and its settings).
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The planner, mutably (stale-chain delay, forcing a full sync).
    pub fn planner_mut(&mut self) -> &mut Planner {
        &mut self.planner
    }

    /// The netlink socket, opened on first use.
    pub fn socket(&mut self) -> Result<&mut NftSocket, NftError> {
        if self.sock.is_none() {
            self.sock = Some(NftSocket::open_in(&self.netns)?);
        }
        Ok(self.sock.as_mut().expect("just opened"))
    }

    /// Brings the table in step with `state`, comparing every Service.
    pub fn sync(&mut self, state: &ClusterState) -> Result<NftSyncReport, NftSyncError> {
        self.sync_inner(state, None)
    }

    /// Brings the Services `changed` in step with `state`, trusting that no other Service
    /// changed (as kube-proxy trusts its change trackers). The work done depends only on those
    /// Services. A full sync, when one is due, still covers every Service.
    pub fn sync_services(
        &mut self,
        state: &ClusterState,
        changed: &[ServiceKey],
    ) -> Result<NftSyncReport, NftSyncError> {
        self.sync_inner(state, Some(changed))
    }

    fn sync_inner(
        &mut self,
        state: &ClusterState,
        keys: Option<&[ServiceKey]>,
    ) -> Result<NftSyncReport, NftSyncError> {
        let family = self.planner.settings().family();
        // Stale chains first, in a transaction of their own (failures are retried by the
        // next full sync).
        let dels = self.planner.stale_deletions(Instant::now());
        let chains_deleted = dels.len();
        if !dels.is_empty() {
            if let Err(e) = self.socket()?.apply(&dels) {
                tracing::warn!(error = %e, "deleting stale nftables chains failed");
            }
        }
        let t0 = Instant::now();
        let mut fell_back = false;
        if !self.planner.needs_full() {
            let plan = self.planner.plan_partial(state, keys);
            let plan_time = t0.elapsed();
            let t1 = Instant::now();
            match self.socket()?.apply(&plan.tx) {
                Ok(messages) => {
                    let report = NftSyncReport {
                        full: false,
                        fell_back: false,
                        operations: plan.tx.len(),
                        messages,
                        services_written: plan.services_written,
                        chains_deleted,
                        plan_time,
                        apply_time: t1.elapsed(),
                        conntrack_deleted: 0,
                    };
                    let changed: Vec<ServiceKey> =
                        plan.updates.iter().map(|(k, _)| k.clone()).collect();
                    self.planner.commit(plan, Instant::now());
                    return self.after_sync(state, Some(&changed), report);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "partial nftables sync failed; doing a full sync");
                    self.planner.abort();
                    fell_back = true;
                }
            }
        }
        let t0 = Instant::now();
        let sock = self.socket()?;
        let live_chains: Vec<String> = sock
            .list_chains(family, TABLE)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let live_sets: Vec<String> = sock
            .list_sets(family, TABLE)?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let plan = self.planner.plan_full(state, &live_chains, &live_sets);
        let plan_time = t0.elapsed();
        let t1 = Instant::now();
        let messages = self.socket()?.apply(&plan.tx)?;
        let report = NftSyncReport {
            full: true,
            fell_back,
            operations: plan.tx.len(),
            messages,
            services_written: plan.services_written,
            chains_deleted,
            plan_time,
            apply_time: t1.elapsed(),
            conntrack_deleted: 0,
        };
        self.planner.commit(plan, Instant::now());
        self.after_sync(state, None, report)
    }

    /// Deletes stale UDP conntrack flows of the Services just written (of all, after a full
    /// sync) once the rules are in place.
    fn after_sync(
        &mut self,
        state: &ClusterState,
        changed: Option<&[ServiceKey]>,
        mut report: NftSyncReport,
    ) -> Result<NftSyncReport, NftSyncError> {
        let scope: ClusterState = match changed {
            None => state.clone(),
            Some(keys) => {
                let mut s = ClusterState {
                    family: state.family,
                    ..ClusterState::default()
                };
                for k in keys {
                    for (svc, eps) in ports_of(state, k) {
                        s.services.insert(svc.name.clone(), svc.clone());
                        s.endpoints.insert(svc.name.clone(), eps.to_vec());
                    }
                }
                s
            }
        };
        if !scope.services.keys().any(|k| k.protocol == Protocol::Udp) {
            return Ok(report);
        }
        if self.conntrack.is_none() {
            self.conntrack = Some(Conntrack::open_in(&self.netns)?);
        }
        let filter = stale_udp(&scope, &self.planner.settings().node.node_name);
        if let Some(ct) = self.conntrack.as_mut() {
            report.conntrack_deleted =
                ct.delete_matching(self.planner.settings().node.family, filter)?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{IpFamily, parse_objects};
    use crate::kube_proxy::NodeSettings;
    use crate::nftables::FakeTable;

    fn state(yaml: &str) -> ClusterState {
        let (objs, w) = parse_objects(yaml, "test");
        assert!(w.is_empty(), "{w:?}");
        ClusterState::from_objects(&objs, IpFamily::V4).0
    }

    const TWO_PORTS: &str = "kind: Service\nmetadata: {name: web, namespace: demo}\n\
        spec: {clusterIP: 10.96.0.10, ports: [{name: a, port: 80}, {name: b, port: 81}]}\n";
    const ONE_PORT: &str = "kind: Service\nmetadata: {name: web, namespace: demo}\n\
        spec: {clusterIP: 10.96.0.10, ports: [{name: a, port: 80}]}\n";

    fn planner() -> (Planner, FakeTable) {
        let p = Planner::new(NftProxySettings::new(NodeSettings::new("n", IpFamily::V4)));
        (p, FakeTable::new(super::super::Family::Ip, TABLE))
    }

    fn run(p: &mut Planner, t: &mut FakeTable, st: &ClusterState) -> Transaction {
        let plan = if p.needs_full() {
            p.plan_full(st, &[], &[])
        } else {
            p.plan_partial(st, None)
        };
        t.apply(&plan.tx).expect("applies");
        let tx = plan.tx.clone();
        p.commit(plan, Instant::now());
        tx
    }

    #[test]
    fn a_cluster_ip_shared_by_ports_stays_while_one_port_remains() {
        let (mut p, mut t) = planner();
        run(&mut p, &mut t, &state(TWO_PORTS));
        let tx = run(&mut p, &mut t, &state(ONE_PORT));
        let text = tx.render();
        assert!(
            text.contains(
                "delete element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 81 }"
            ),
            "{text}"
        );
        assert!(!text.contains("cluster-ips"), "{text}");
        assert_eq!(t.elements("cluster-ips").unwrap().count(), 1);
        // The Service goes: its cluster IP goes too.
        let tx = run(&mut p, &mut t, &ClusterState::default());
        assert!(
            tx.render()
                .contains("delete element ip kube-proxy cluster-ips { 10.96.0.10 }")
        );
        assert_eq!(t.elements("cluster-ips").unwrap().count(), 0);
    }

    #[test]
    fn a_changed_value_is_deleted_and_added() {
        let (mut p, mut t) = planner();
        run(&mut p, &mut t, &state(ONE_PORT));
        let with_ep = format!(
            "{ONE_PORT}---\nkind: EndpointSlice\napiVersion: discovery.k8s.io/v1\n\
             metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}\n\
             addressType: IPv4\nports: [{{name: a, port: 8080}}]\nendpoints: [{{addresses: [10.244.1.2]}}]\n"
        );
        let tx = run(&mut p, &mut t, &state(&with_ep));
        let text = tx.render();
        assert!(
            text.contains("delete element ip kube-proxy no-endpoint-services"),
            "{text}"
        );
        assert!(
            text.contains(
                "add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto service-"
            ),
            "{text}"
        );
        // Same state again: nothing to do.
        assert!(run(&mut p, &mut t, &state(&with_ep)).is_empty());
    }

    fn eps_yaml(addrs: &[&str]) -> String {
        let mut y = format!(
            "{ONE_PORT}---\nkind: EndpointSlice\napiVersion: discovery.k8s.io/v1\n\
             metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}\n\
             addressType: IPv4\nports: [{{name: a, port: 8080}}]\nendpoints:\n"
        );
        for a in addrs {
            y.push_str(&format!("- addresses: [{a}]\n"));
        }
        y
    }

    #[test]
    fn in_the_maps_layout_an_endpoint_change_only_changes_elements() {
        let mut p = Planner::with_layout(
            NftProxySettings::new(NodeSettings::new("n", IpFamily::V4)),
            NftLayout::Maps,
        );
        let mut t = FakeTable::new(super::super::Family::Ip, TABLE);
        let first = run(
            &mut p,
            &mut t,
            &state(&eps_yaml(&["10.244.1.2", "10.244.2.2"])),
        );
        let text = first.render();
        assert!(text.contains("add map ip kube-proxy slots-0"), "{text}");
        assert!(
            text.contains("dnat to numgen random mod 8 offset 0 map @slots-0"),
            "{text}"
        );
        assert_eq!(t.elements("slots-0").unwrap().count(), 8);
        assert_eq!(t.elements("hairpin-pairs").unwrap().count(), 2);
        // One endpoint replaced: elements only, no chain, rule or verdict.
        let tx = run(
            &mut p,
            &mut t,
            &state(&eps_yaml(&["10.244.1.2", "10.244.3.2"])),
        );
        assert!(!tx.is_empty());
        for op in &tx.ops {
            match op {
                Op::AddElement(e) => {
                    assert!(e.value.is_none(), "{op:?}");
                }
                Op::DeleteElement(_) => {}
                other => panic!("not an element operation: {other:?}"),
            }
        }
        let data: BTreeSet<String> = t
            .elements("slots-0")
            .unwrap()
            .map(|e| e.data[0].to_string())
            .collect();
        assert_eq!(
            data,
            BTreeSet::from(["10.244.1.2".to_string(), "10.244.3.2".to_string()])
        );
        // No endpoints: the slots are emptied, the rule stays and rejects.
        let tx = run(&mut p, &mut t, &state(ONE_PORT));
        assert!(tx.ops.iter().all(|op| matches!(op, Op::DeleteElement(_))));
        assert_eq!(t.elements("slots-0").unwrap().count(), 0);
        // Five endpoints need 16 slots: the rule is rewritten once.
        let five = [
            "10.244.1.2",
            "10.244.2.2",
            "10.244.3.2",
            "10.244.4.2",
            "10.244.5.2",
        ];
        let tx = run(&mut p, &mut t, &state(&eps_yaml(&five)));
        assert!(tx.render().contains("mod 16 offset 0"), "{}", tx.render());
        // The Service goes: its elements go, its group is free again.
        run(&mut p, &mut t, &ClusterState::default());
        assert_eq!(t.elements("slots-0").unwrap().count(), 0);
        assert_eq!(t.elements("hairpin-pairs").unwrap().count(), 0);
    }

    #[test]
    fn the_fake_table_refuses_what_the_kernel_refuses() {
        let (mut p, mut t) = planner();
        run(&mut p, &mut t, &state(ONE_PORT));
        let mut tx = Transaction::new(super::super::Family::Ip, TABLE);
        tx.push(Op::DeleteChain("services".into()));
        let err = t.apply(&tx).unwrap_err();
        assert!(err.reason.contains("in use"), "{err}");
        let mut tx = Transaction::new(super::super::Family::Ip, TABLE);
        tx.push(Op::AddRule(super::super::Rule::new(
            "services",
            vec![super::super::Expr::Verdict(Verdict::Jump("nowhere".into()))],
        )));
        assert!(t.apply(&tx).is_err());
    }
}
