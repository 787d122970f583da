//! Applies kube-proxy's ipvs mode inside a network namespace and keeps it in step.
//!
//! One [`IpvsSyncer::sync`] does what kube-proxy's ipvs `syncProxyRules` does, in its order:
//! makes sure `kube-ipvs0` exists; replaces every ipset's entries (one `ipset -exist restore`,
//! each set swapped in whole); restores the nat and filter chains (`iptables-restore --noflush
//! --counters`) and inserts the jumps from the built-in chains when missing; binds the service
//! addresses to `kube-ipvs0`; adds or edits virtual services and destinations; then removes
//! addresses and virtual services that are no longer wanted; and deletes the conntrack flows of
//! UDP clients whose real server went away, as the iptables and nftables modes do. Only
//! differences touch IPVS: a sync with nothing changed reads IPVS and writes nothing to it.
//!
//! That is the full sync: the first one, one forced by [`IpvsSyncer::force_full_sync`] (the
//! periodic resync), and the one after a sync that failed in part. Every other sync is
//! partial: it writes only what [`super::diff::diff`] finds changed since the last successful
//! sync (ipset entries added and removed, the iptables rules only when they changed, the
//! addresses, and the virtual services that changed, each of whose destinations is read from
//! the kernel for its connection counts), and reads nothing else.
//!
//! A destination that is no longer wanted is deleted at once unless it is TCP with
//! connections: then its weight goes to 0 (no new connections) and a later sync deletes it
//! once its connections are gone, as kube-proxy's graceful termination does.

use super::client::{Ipvs, IpvsError};
use super::diff::{IpvsDiff, diff};
use super::types::{Destination, ServiceId, VirtualService};
use crate::conntrack::{Conntrack, StaleUdp, stale_udp};
use crate::iptables::Protocol;
use crate::kube::{ClusterState, IpFamily};
use crate::kube_proxy::NodeSettings;
use crate::kube_proxy::iptables_sync::{Backend, SyncError, run_with_input};
use crate::kube_proxy::ipvs_mode::{
    DUMMY_DEVICE, IpvsModeSettings, IpvsRules, JUMP_RULES, compile,
};
use ipnet::IpNet;
use podnet_links::{Dummy, Handle};
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What can stop a sync. Failures of single virtual services do not: they are listed in
/// [`IpvsSyncReport::failures`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpvsSyncError {
    /// Opening IPVS, or listing its services, failed.
    #[error(transparent)]
    Ipvs(#[from] IpvsError),
    /// The dummy device or its addresses could not be set up.
    #[error("{DUMMY_DEVICE}: {0}")]
    Link(#[from] podnet_links::Error),
    /// `ipset` or `iptables-restore` refused the input, or could not run.
    #[error(transparent)]
    Tool(#[from] SyncError),
    /// Deleting stale UDP conntrack flows failed (the rest of the sync was applied).
    #[error(transparent)]
    Conntrack(#[from] crate::conntrack::ConntrackError),
    /// A sysctl ipvs mode needs could not be set.
    #[error("setting {key}: {error}")]
    Sysctl {
        /// The sysctl.
        key: &'static str,
        /// Why not.
        error: String,
    },
}

/// `--ipvs-strict-arp`.
const STRICT_ARP: [(&str, &str); 2] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
];

/// The sysctls kube-proxy's ipvs mode sets to 1.
const SYSCTLS: [&str; 4] = [
    "net.ipv4.vs.conntrack",
    "net.ipv4.vs.expire_nodest_conn",
    "net.ipv4.vs.expire_quiescent_template",
    "net.ipv4.ip_forward",
];

/// What one sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsSyncReport {
    /// A full sync (every set, rule and virtual service written or read), not a partial one.
    pub full: bool,
    /// ipset entries added or removed by a partial sync (a full one swaps every set in).
    pub ipset_entries_changed: usize,
    /// `iptables-restore` ran (always in a full sync; in a partial one when the rules changed).
    pub iptables_restored: bool,
    /// Virtual services added.
    pub services_added: usize,
    /// Virtual services edited (scheduler, flags, persistence).
    pub services_edited: usize,
    /// Virtual services deleted.
    pub services_deleted: usize,
    /// Destinations added.
    pub destinations_added: usize,
    /// Destinations edited (weight, forwarding method).
    pub destinations_edited: usize,
    /// Destinations deleted.
    pub destinations_deleted: usize,
    /// Destinations left with weight 0 until their connections end.
    pub destinations_draining: usize,
    /// Addresses bound to `kube-ipvs0`.
    pub addresses_added: usize,
    /// Addresses removed from `kube-ipvs0`.
    pub addresses_removed: usize,
    /// Jumps from built-in chains that were missing and inserted.
    pub jumps_inserted: usize,
    /// Per-service failures (the rest of the sync went on), as kube-proxy logs and goes on.
    pub failures: Vec<String>,
    /// Stale UDP conntrack flows deleted after the sync ([`IpvsSyncer::sync`] only).
    pub conntrack_deleted: usize,
    /// How long the sync took.
    pub duration: Duration,
}

/// Keeps kube-proxy's ipvs mode in one network namespace in step with a [`ClusterState`].
#[derive(Debug)]
pub struct IpvsSyncer {
    netns: NetNs,
    node: NodeSettings,
    settings: IpvsModeSettings,
    backend: Backend,
    ipvs: Ipvs,
    links: Handle,
    conntrack: Option<Conntrack>,
    /// What the last successful sync applied (`None`: the next sync is a full one).
    applied: Option<IpvsRules>,
    /// Virtual services with destinations draining at weight 0: every sync looks at them
    /// again until their connections are gone.
    draining: BTreeSet<ServiceId>,
}

impl IpvsSyncer {
    /// A syncer for `netns`; fails with [`IpvsError::NotAvailable`] when its kernel has no
    /// IPVS. Sets the sysctls kube-proxy's ipvs mode sets in the namespace: `net.ipv4.vs.conntrack`
    /// (so that iptables can masquerade what IPVS forwards), `expire_nodest_conn`,
    /// `expire_quiescent_template` and `net.ipv4.ip_forward`, all to 1 (and the ARP ones of
    /// [`IpvsModeSettings::strict_arp`]), and the IPVS timeouts asked for.
    pub fn new(
        netns: NetNs,
        node: NodeSettings,
        settings: IpvsModeSettings,
    ) -> Result<IpvsSyncer, IpvsSyncError> {
        let mut ipvs = Ipvs::in_ns(&netns)?;
        let strict_arp: &[(&'static str, &str)] = if settings.strict_arp {
            &STRICT_ARP
        } else {
            &[]
        };
        for (key, value) in SYSCTLS
            .iter()
            .map(|k| (*k, "1"))
            .chain(strict_arp.iter().copied())
        {
            netns
                .sysctl_set(key, value)
                .map_err(|e| IpvsSyncError::Sysctl {
                    key,
                    error: e.to_string(),
                })?;
        }
        let t = settings.timeouts;
        if t.tcp > 0 || t.tcp_fin > 0 || t.udp > 0 {
            ipvs.set_timeouts(t)?;
        }
        let links = Handle::in_ns(&netns)?;
        Ok(IpvsSyncer {
            netns,
            node,
            settings,
            backend: Backend::System,
            ipvs,
            links,
            conntrack: None,
            applied: None,
            draining: BTreeSet::new(),
        })
    }

    /// Uses `backend`'s iptables programs.
    pub fn with_backend(mut self, backend: Backend) -> IpvsSyncer {
        self.backend = backend;
        self
    }

    /// Changes the node settings [`IpvsSyncer::sync`] compiles with (the node's addresses
    /// changed, say).
    pub fn set_node(&mut self, node: NodeSettings) {
        self.node = node;
    }

    /// The next sync is a full one (kube-proxy's periodic resync): every set, rule and virtual
    /// service read from or written to the kernel, not only what changed.
    pub fn force_full_sync(&mut self) {
        self.applied = None;
    }

    /// The IPVS client (to look at what a sync did).
    pub fn ipvs(&mut self) -> &mut Ipvs {
        &mut self.ipvs
    }

    /// Compiles `state`, applies it, then deletes the stale UDP conntrack flows
    /// ([`IpvsSyncer::delete_stale_udp`]), as kube-proxy's ipvs `syncProxyRules` does.
    pub fn sync(&mut self, state: &ClusterState) -> Result<IpvsSyncReport, IpvsSyncError> {
        let rules = compile(state, &self.node, &self.settings);
        let mut report = self.apply(&rules)?;
        report.conntrack_deleted = self.delete_stale_udp(state)?;
        Ok(report)
    }

    /// Deletes the UDP conntrack flows that [`stale_udp_in_ipvs_mode`] selects for `state`,
    /// once the virtual services are in step with it; returns how many. Without UDP Service
    /// ports it does nothing (no dump).
    ///
    /// With `net.ipv4.vs.conntrack=1` (set by [`IpvsSyncer::new`]) IPVS keeps a conntrack entry
    /// per connection whose reply tuple names the real server: a UDP client whose real server
    /// went away keeps being sent to it (or, once IPVS expires its own entry, loses a
    /// datagram) until the entry goes.
    pub fn delete_stale_udp(&mut self, state: &ClusterState) -> Result<usize, IpvsSyncError> {
        let Some(filter) = stale_udp_in_ipvs_mode(state, &self.node.node_name) else {
            return Ok(0);
        };
        if self.conntrack.is_none() {
            self.conntrack = Some(Conntrack::open_in(&self.netns)?);
        }
        match self.conntrack.as_mut() {
            Some(ct) => Ok(ct.delete_matching(state.family, filter)?),
            None => Ok(0),
        }
    }

    /// Applies compiled rules: only what changed since the last successful sync when there
    /// is one (see the module's documentation), else everything.
    pub fn apply(&mut self, rules: &IpvsRules) -> Result<IpvsSyncReport, IpvsSyncError> {
        // Until this sync succeeds in whole, the next one is a full one.
        let prev = self.applied.take();
        let report = match prev.as_ref().filter(|p| p.family == rules.family) {
            Some(prev) => {
                let d = diff(prev, rules);
                self.apply_diff(rules, &d)?
            }
            None => self.apply_full(rules)?,
        };
        if report.failures.is_empty() {
            self.applied = Some(rules.clone());
        }
        Ok(report)
    }

    /// A partial sync: writes `d` (computed from what the last sync applied to `rules`).
    fn apply_diff(
        &mut self,
        rules: &IpvsRules,
        d: &IpvsDiff,
    ) -> Result<IpvsSyncReport, IpvsSyncError> {
        let start = Instant::now();
        let mut report = IpvsSyncReport::default();
        if !d.ipset_restore.is_empty() {
            run_with_input(
                &self.netns,
                "ipset",
                &["-exist", "restore"],
                d.ipset_restore.as_bytes(),
            )?;
            report.ipset_entries_changed = d.ipset_entries_changed();
        }
        if d.iptables_changed {
            let (restore, _, _) = self.backend.programs(rules.family);
            run_with_input(
                &self.netns,
                restore,
                &["--noflush", "--counters"],
                rules.iptables.render().as_bytes(),
            )?;
            report.iptables_restored = true;
        }
        for ip in &d.bind {
            self.links.addr().replace(DUMMY_DEVICE, IpNet::from(*ip))?;
            report.addresses_added += 1;
        }
        let mut touched = d.touched_services();
        touched.extend(self.draining.iter().copied());
        for id in &touched {
            let Some(wanted) = rules.services.get(id) else {
                continue; // a draining service that went away: deleted below
            };
            let fresh = d.services_added.contains(id);
            let result = if fresh {
                self.ipvs.add_service(&wanted.service).map(|()| {
                    report.services_added += 1;
                })
            } else if d.services_edited.contains(id) {
                self.ipvs.edit_service(&wanted.service).map(|()| {
                    report.services_edited += 1;
                })
            } else {
                Ok(())
            };
            let result = result.and_then(|()| {
                self.sync_destinations(id, &wanted.destinations, fresh, &mut report)
            });
            match result {
                Ok(draining) => self.note_draining(*id, draining),
                Err(e) => report
                    .failures
                    .push(format!("{} ({}): {e}", id, wanted.port)),
            }
        }
        for id in &d.services_deleted {
            self.draining.remove(id);
            if self.excluded(id) {
                continue;
            }
            match self.ipvs.del_service(id) {
                Ok(()) => report.services_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        for ip in &d.unbind {
            match self.links.addr().del(DUMMY_DEVICE, IpNet::from(*ip)) {
                Ok(()) => report.addresses_removed += 1,
                Err(podnet_links::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    fn note_draining(&mut self, id: ServiceId, draining: usize) {
        if draining > 0 {
            self.draining.insert(id);
        } else {
            self.draining.remove(&id);
        }
    }

    /// A full sync: every set swapped in, the iptables rules restored and the jumps checked,
    /// every virtual service of the family read and brought in step.
    fn apply_full(&mut self, rules: &IpvsRules) -> Result<IpvsSyncReport, IpvsSyncError> {
        let start = Instant::now();
        let mut report = IpvsSyncReport {
            full: true,
            iptables_restored: true,
            ..IpvsSyncReport::default()
        };
        self.ensure_dummy()?;
        run_with_input(
            &self.netns,
            "ipset",
            &["-exist", "restore"],
            rules.render_ipsets().as_bytes(),
        )?;
        let (restore, iptables, _) = self.backend.programs(rules.family);
        run_with_input(
            &self.netns,
            restore,
            &["--noflush", "--counters"],
            rules.iptables.render().as_bytes(),
        )?;
        report.jumps_inserted = self.ensure_jumps(iptables)?;
        let bound = self.bound_addresses(rules.family)?;
        for ip in rules.bind_addrs.difference(&bound) {
            self.links.addr().replace(DUMMY_DEVICE, IpNet::from(*ip))?;
            report.addresses_added += 1;
        }
        self.sync_ipvs(rules, &mut report)?;
        for ip in bound.difference(&rules.bind_addrs) {
            self.links.addr().del(DUMMY_DEVICE, IpNet::from(*ip))?;
            report.addresses_removed += 1;
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    fn ensure_dummy(&self) -> Result<(), IpvsSyncError> {
        match self.links.link().get(DUMMY_DEVICE) {
            Ok(_) => Ok(()),
            Err(podnet_links::Error::NotFound { .. }) => {
                match self.links.link().add(&Dummy::new(DUMMY_DEVICE)) {
                    Ok(()) | Err(podnet_links::Error::Exists { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// kube-proxy's `EnsureRule(Prepend, ...)` for each jump: `-C`, and `-I` when missing.
    fn ensure_jumps(&self, iptables: &str) -> Result<usize, IpvsSyncError> {
        let mut inserted = 0;
        for j in JUMP_RULES {
            let mut check = vec!["-w", "-t", j.table.as_str(), "-C", j.from];
            check.extend(j.args());
            if run_with_input(&self.netns, iptables, &check, b"").is_ok() {
                continue;
            }
            let mut insert = vec!["-w", "-t", j.table.as_str(), "-I", j.from];
            insert.extend(j.args());
            run_with_input(&self.netns, iptables, &insert, b"")?;
            inserted += 1;
        }
        Ok(inserted)
    }

    fn bound_addresses(&self, family: IpFamily) -> Result<BTreeSet<IpAddr>, IpvsSyncError> {
        Ok(self
            .links
            .addr()
            .list(Some(DUMMY_DEVICE.into()))?
            .into_iter()
            .map(|a| a.addr.addr())
            .filter(|ip| IpFamily::of(ip) == family)
            .collect())
    }

    fn sync_ipvs(
        &mut self,
        rules: &IpvsRules,
        report: &mut IpvsSyncReport,
    ) -> Result<(), IpvsSyncError> {
        let family = rules.family;
        let current: BTreeMap<ServiceId, VirtualService> = self
            .ipvs
            .list_services()?
            .into_iter()
            .map(|e| (e.service.id, e.service))
            .filter(|(id, _)| id.family() == family)
            .collect();
        self.draining.clear();
        for (id, wanted) in &rules.services {
            let fresh = !current.contains_key(id);
            let result = match current.get(id) {
                None => self.ipvs.add_service(&wanted.service).map(|()| {
                    report.services_added += 1;
                }),
                Some(have) if *have != wanted.service => {
                    self.ipvs.edit_service(&wanted.service).map(|()| {
                        report.services_edited += 1;
                    })
                }
                Some(_) => Ok(()),
            };
            let result = result
                .and_then(|()| self.sync_destinations(id, &wanted.destinations, fresh, report));
            match result {
                Ok(draining) => self.note_draining(*id, draining),
                Err(e) => report
                    .failures
                    .push(format!("{} ({}): {e}", id, wanted.port)),
            }
        }
        for id in current.keys() {
            if rules.services.contains_key(id) || self.excluded(id) {
                continue;
            }
            match self.ipvs.del_service(id) {
                Ok(()) => report.services_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        Ok(())
    }

    fn excluded(&self, id: &ServiceId) -> bool {
        match id {
            ServiceId::Addr { addr, .. } => self
                .settings
                .exclude_cidrs
                .iter()
                .any(|n| n.contains(&addr.ip())),
            // kube-proxy never makes fwmark services; leave them to whoever did.
            ServiceId::FwMark { .. } => true,
        }
    }

    fn sync_destinations(
        &mut self,
        id: &ServiceId,
        wanted: &[Destination],
        fresh: bool,
        report: &mut IpvsSyncReport,
    ) -> Result<usize, IpvsError> {
        // A service this sync just added has no destinations yet.
        let current = if fresh {
            Vec::new()
        } else {
            self.ipvs.list_destinations(id)?
        };
        let have: BTreeMap<SocketAddr, _> =
            current.iter().map(|d| (d.destination.addr, d)).collect();
        for d in wanted {
            match have.get(&d.addr) {
                None => {
                    self.ipvs.add_destination(id, d)?;
                    report.destinations_added += 1;
                }
                Some(h) if h.destination != *d => {
                    self.ipvs.edit_destination(id, d)?;
                    report.destinations_edited += 1;
                }
                Some(_) => {}
            }
        }
        let wanted_addrs: BTreeSet<SocketAddr> = wanted.iter().map(|d| d.addr).collect();
        let mut draining = 0;
        for h in current
            .iter()
            .filter(|h| !wanted_addrs.contains(&h.destination.addr))
        {
            let tcp = matches!(
                id,
                ServiceId::Addr {
                    protocol: Protocol::Tcp,
                    ..
                }
            );
            if tcp && h.active_conns + h.inactive_conns > 0 {
                if h.destination.weight != 0 {
                    self.ipvs.edit_destination(id, &h.destination.weight(0))?;
                }
                report.destinations_draining += 1;
                draining += 1;
                continue;
            }
            match self.ipvs.del_destination(id, h.destination.addr) {
                Ok(()) => report.destinations_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(draining)
    }

    /// Removes what ipvs mode made (kube-proxy's `--cleanup`), and only that: the virtual
    /// services of this family it made ([`is_ours`]: on an address bound to `kube-ipvs0`, or
    /// in one of its ipsets; outside the excluded networks), `kube-ipvs0`, its jumps and
    /// chains ([`crate::kube_proxy::ipvs_mode::owned_iptables`]), and its ipsets.
    ///
    /// A chain or ipset that something else still uses is left, and named in the report.
    pub fn cleanup(&mut self, family: IpFamily) -> Result<IpvsCleanupReport, IpvsSyncError> {
        let mut report = IpvsCleanupReport::default();
        // Whatever happens below, the next sync starts from scratch.
        self.applied = None;
        self.draining.clear();
        let fam = family;
        // What the last sync left tells which services are ours: read it before removing it.
        let bound = match self.links.link().get(DUMMY_DEVICE) {
            Ok(_) => self.bound_addresses(family)?,
            Err(podnet_links::Error::NotFound { .. }) => BTreeSet::new(),
            Err(e) => return Err(e.into()),
        };
        let sets = parse_ipset_save(&run_with_input(&self.netns, "ipset", &["save"], b"")?);
        for e in self.ipvs.list_services()? {
            let id = e.service.id;
            if id.family() != fam || self.excluded(&id) || !is_ours(&id, &bound, &sets, family) {
                continue;
            }
            match self.ipvs.del_service(&id) {
                Ok(()) => report.services_deleted += 1,
                Err(err) if err.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
        }
        match self.links.link().del(DUMMY_DEVICE) {
            Ok(()) | Err(podnet_links::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let (restore, _, save) = self.backend.programs(family);
        let iptables = crate::kube_proxy::cleanup::cleanup(
            &self.netns,
            &crate::kube_proxy::ipvs_mode::owned_iptables(),
            restore,
            save,
        )?;
        report.kept.extend(iptables.kept());
        // After the rules that matched them are gone (a set in use cannot be destroyed).
        for (base, _, _) in super::ipset::SETS {
            let name = super::ipset::set_name(base, family);
            if !sets.contains_key(&name) {
                continue;
            }
            match run_with_input(&self.netns, "ipset", &["destroy", &name], b"") {
                Ok(_) => report.sets_destroyed += 1,
                Err(SyncError::Failed { stderr, .. }) => {
                    report.kept.push(format!("ipset {name} ({stderr})"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }
}

/// What [`IpvsSyncer::cleanup`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsCleanupReport {
    /// Virtual services deleted.
    pub services_deleted: usize,
    /// ipsets destroyed.
    pub sets_destroyed: usize,
    /// What was left because something else still uses it (chains, ipsets), and why.
    pub kept: Vec<String>,
}

/// Which conntrack flows ipvs mode deletes after a sync of `state` on `node`, or `None` when
/// `state` has no UDP Service port (then nothing is dumped): kube-proxy's stale-UDP filter
/// ([`crate::conntrack::stale_udp`]) as in the iptables and nftables modes. IPVS leaves the
/// same conntrack tuples as their DNAT does (original destination the cluster IP, external
/// or load-balancer IP, or a node address and node port; reply source the real server).
pub fn stale_udp_in_ipvs_mode(state: &ClusterState, node: &str) -> Option<StaleUdp> {
    state
        .services
        .keys()
        .any(|k| k.protocol == Protocol::Udp)
        .then(|| stale_udp(state, node))
}

/// The entries of each ipset in `ipset save` output (`add NAME ENTRY` lines).
pub fn parse_ipset_save(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("create"), Some(name), _) => {
                sets.entry(name.to_owned()).or_default();
            }
            (Some("add"), Some(name), Some(entry)) => {
                sets.entry(name.to_owned())
                    .or_default()
                    .insert(entry.to_owned());
            }
            _ => {}
        }
    }
    sets
}

/// Whether ipvs mode made the virtual service `id`, judged from what its syncs leave: a
/// cluster, external or load-balancer address bound to `kube-ipvs0` (`bound`), an address and
/// port in its `KUBE-CLUSTER-IP`, `KUBE-EXTERNAL-IP*`, `KUBE-LOAD-BALANCER*` or SCTP node-port
/// sets, or a port in its TCP/UDP node-port sets (`sets`, from [`parse_ipset_save`]).
/// Firewall-mark services are never kube-proxy's.
pub fn is_ours(
    id: &ServiceId,
    bound: &BTreeSet<IpAddr>,
    sets: &BTreeMap<String, BTreeSet<String>>,
    family: IpFamily,
) -> bool {
    use super::ipset as s;
    let ServiceId::Addr { protocol, addr } = id else {
        return false;
    };
    if bound.contains(&addr.ip()) {
        return true;
    }
    let has = |base: &str, entry: &str| {
        sets.get(&s::set_name(base, family))
            .is_some_and(|e| e.contains(entry))
    };
    let ip_port = format!("{},{}:{}", addr.ip(), protocol.as_str(), addr.port());
    let by_addr = [
        s::CLUSTER_IP,
        s::EXTERNAL_IP,
        s::EXTERNAL_IP_LOCAL,
        s::LOAD_BALANCER,
        s::LOAD_BALANCER_LOCAL,
        s::NODE_PORT_SCTP,
        s::NODE_PORT_LOCAL_SCTP,
    ];
    if by_addr.iter().any(|b| has(b, &ip_port)) {
        return true;
    }
    let port = addr.port().to_string();
    let by_port: &[&str] = match protocol {
        Protocol::Tcp => &[s::NODE_PORT_TCP, s::NODE_PORT_LOCAL_TCP],
        Protocol::Udp => &[s::NODE_PORT_UDP, s::NODE_PORT_LOCAL_UDP],
        Protocol::Sctp => &[],
    };
    by_port.iter().any(|b| has(b, &port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str =
        "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment
add KUBE-CLUSTER-IP 10.96.0.10,tcp:80 comment \"demo/echo:tcp cluster IP\"
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 comment
add KUBE-NODE-PORT-TCP 30080
create KUBE-NODE-PORT-UDP bitmap:port range 0-65535
create KUBE-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-EXTERNAL-IP 198.18.0.1,udp:53
create OTHER hash:ip family inet
add OTHER 10.0.0.1
";

    fn svc(proto: Protocol, addr: &str) -> ServiceId {
        ServiceId::Addr {
            protocol: proto,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn ipset_save_is_read_per_set() {
        let sets = parse_ipset_save(SAVE);
        assert_eq!(sets.len(), 5);
        assert!(sets["KUBE-CLUSTER-IP"].contains("10.96.0.10,tcp:80"));
        assert!(sets["KUBE-NODE-PORT-TCP"].contains("30080"));
        assert!(sets["KUBE-NODE-PORT-UDP"].is_empty());
        assert!(parse_ipset_save("").is_empty());
    }

    #[test]
    fn only_the_services_kube_proxy_made_are_ours() {
        let sets = parse_ipset_save(SAVE);
        let bound: BTreeSet<IpAddr> = ["10.96.0.11".parse().unwrap()].into();
        let v4 = IpFamily::V4;
        // Bound to kube-ipvs0, in the cluster-IP set, a node port, an external IP.
        assert!(is_ours(
            &svc(Protocol::Tcp, "10.96.0.11:443"),
            &bound,
            &sets,
            v4
        ));
        assert!(is_ours(
            &svc(Protocol::Tcp, "10.96.0.10:80"),
            &bound,
            &sets,
            v4
        ));
        assert!(is_ours(
            &svc(Protocol::Tcp, "198.18.0.1:30080"),
            &bound,
            &sets,
            v4
        ));
        assert!(is_ours(
            &svc(Protocol::Udp, "198.18.0.1:53"),
            &bound,
            &sets,
            v4
        ));
        // Another program's: keepalived on the node's address, the wrong protocol, a port of
        // no set, a firewall-mark service.
        assert!(!is_ours(
            &svc(Protocol::Tcp, "198.18.0.1:80"),
            &bound,
            &sets,
            v4
        ));
        assert!(!is_ours(
            &svc(Protocol::Udp, "198.18.0.1:30080"),
            &bound,
            &sets,
            v4
        ));
        assert!(!is_ours(
            &svc(Protocol::Tcp, "10.96.0.10:81"),
            &bound,
            &sets,
            v4
        ));
        let fwmark = ServiceId::FwMark {
            family: IpFamily::V4,
            mark: 1,
        };
        assert!(!is_ours(&fwmark, &bound, &sets, v4));
    }

    /// The flows IPVS leaves in conntrack (original destination the service address, reply
    /// source the real server) that go after an endpoint of a UDP Service went away.
    #[test]
    fn stale_udp_flows_are_those_to_real_servers_that_went_away() {
        use crate::kube::parse_objects;
        let yaml = "kind: Service\nmetadata: {name: dns, namespace: d}\n\
            spec: {type: NodePort, clusterIP: 10.96.0.14, ports: [{name: dns, port: 53, targetPort: 5353, nodePort: 30053, protocol: UDP}]}\n\
            ---\nkind: Service\nmetadata: {name: web, namespace: d}\n\
            spec: {clusterIP: 10.96.0.15, ports: [{name: http, port: 80, protocol: TCP}]}\n\
            ---\nkind: EndpointSlice\nmetadata: {name: dns-1, namespace: d, labels: {kubernetes.io/service-name: dns}}\n\
            addressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}]\n\
            endpoints: [{addresses: [10.244.2.2]}]\n";
        let (objects, w) = parse_objects(yaml, "t");
        assert!(w.is_empty(), "{w:?}");
        let state = ClusterState::from_objects(&objects, IpFamily::V4).0;
        use crate::conntrack::{Flow, FlowSelector};
        let sel = stale_udp_in_ipvs_mode(&state, "node1").expect("a UDP Service port");
        let stale = |f: &Flow| sel.selects(f);
        let flow = |p: Protocol, dst: &str, rs: &str| Flow {
            protocol: p,
            orig_src: "10.244.1.2:40000".parse().unwrap(),
            orig_dst: dst.parse().unwrap(),
            reply_src: rs.parse().unwrap(),
            reply_dst: "10.244.1.2:40000".parse().unwrap(),
        };
        // To the cluster IP and to a node port, answered by a real server that is gone.
        assert!(stale(&flow(
            Protocol::Udp,
            "10.96.0.14:53",
            "10.244.1.3:5353"
        )));
        assert!(stale(&flow(
            Protocol::Udp,
            "198.18.0.1:30053",
            "10.244.1.3:5353"
        )));
        // Still served, TCP, or to something that is no Service: left alone.
        assert!(!stale(&flow(
            Protocol::Udp,
            "10.96.0.14:53",
            "10.244.2.2:5353"
        )));
        assert!(!stale(&flow(
            Protocol::Udp,
            "198.18.0.1:30053",
            "10.244.2.2:5353"
        )));
        assert!(!stale(&flow(
            Protocol::Tcp,
            "10.96.0.15:80",
            "10.244.1.3:80"
        )));
        assert!(!stale(&flow(
            Protocol::Udp,
            "192.0.2.53:53",
            "192.0.2.53:53"
        )));
        // Without UDP Service ports, no conntrack dump at all.
        let tcp_only = ClusterState::from_objects(&objects[1..2], IpFamily::V4).0;
        assert!(stale_udp_in_ipvs_mode(&tcp_only, "node1").is_none());
    }

    #[test]
    fn cleanup_owns_ipvs_modes_chains_and_jumps() {
        let owned = crate::kube_proxy::ipvs_mode::owned_iptables();
        assert!(owned.owns(crate::iptables::Table::Filter, "KUBE-IPVS-FILTER"));
        assert!(owned.owns(crate::iptables::Table::Nat, "KUBE-LOAD-BALANCER"));
        assert!(!owned.owns(crate::iptables::Table::Filter, "KUBE-FIREWALL"));
        assert!(!owned.owns(crate::iptables::Table::Nat, "KUBE-SVC-AAAAAAAAAAAAAAAA"));
        assert_eq!(owned.jumps.len(), JUMP_RULES.len());
    }
}
