//! The flannel node agent: acquire a subnet lease, set up the backend's device, write
//! subnet.env, install the masquerade rules, and keep routes, neighbours and FDB entries for
//! every peer converged, from lease events and a periodic resync.
//!
//! Restart-safe: an existing device that matches the config is reused as it is, every entry is
//! programmed with `replace`, and only entries that no lease accounts for are deleted, so a
//! restarted agent never takes down what traffic is using.
//!
//! The lease is watched like any other: when it disappears from the store (deleted by hand, or
//! expired while the store was unreachable) and the subnet is still free, the agent takes it
//! again at once, so pods keep their addresses and other nodes route to them again. When
//! another node holds the subnet now (the lease was overwritten, or a renewal answers
//! [`LeaseError::Lost`](podnet_ipam::LeaseError::Lost)), this node must stop using it: the agent
//! removes subnet.env (so no new pod gets an address from it) and stops with
//! [`AgentError::LeaseLost`], as flannel exits, for a supervisor to restart it with a fresh
//! lease.
//!
//! Dual-stack as flannel: with `EnableIPv6` (and `IPv6Network`) the lease also holds an IPv6
//! subnet, and each backend runs once per family (vxlan: `flannel.<VNI>` and
//! `flannel-v6.<VNI>`; host-gw: IPv4 and IPv6 routes), with the masquerade rules of each
//! family (iptables and ip6tables, or the nftables tables `flannel-ipv4` and `flannel-ipv6`).
//! `EnableIPv4: false` makes an IPv6-only network. The udp backend is IPv4-only, as flannel's.

mod backend;
mod hostgw;
pub mod iface;
#[cfg(feature = "kube")]
pub mod kube;
mod udp;
mod vxlan;

#[doc(hidden)]
pub use backend::check_backend_config;
pub use backend::{Backend, Family, Peer, Underlay};

pub use iface::{IfaceChoice, Stack};
use ipnet::IpNet;
use podnet_ipam::{
    Lease, LeaseAttrs, LeaseEvent, LeaseSubnets, NetworkConfig, Store, SubnetEnv, SubnetManager,
};
use podnet_links::Handle;
use podnet_nat::flannel::FlannelNetwork;
use podnet_netns::NetNs;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The network config is missing or invalid.
    #[error("network config: {0}")]
    Config(String),
    /// The config names a backend this agent does not have.
    #[error("unknown backend type {0:?} (known: vxlan, host-gw, udp)")]
    UnknownBackend(String),
    /// subnet.env disagrees with the network config.
    #[error("{0}")]
    SubnetEnv(String),
    /// The underlay interface could not be determined.
    #[error("underlay interface: {0}")]
    Underlay(String),
    /// The lease store failed.
    #[error("lease store: {0}")]
    Lease(#[from] podnet_ipam::LeaseError),
    /// Programming the kernel failed.
    #[error("{0}")]
    Links(#[from] podnet_links::Error),
    /// Another node holds this node's subnet now; subnet.env was removed.
    #[error(
        "lease {subnet} lost: {holder}; flanneld stopped using it and exits so that a restart \
         takes a fresh lease (pods with addresses in {subnet} need new ones)"
    )]
    LeaseLost {
        /// The subnet this node held.
        subnet: String,
        /// Who holds it now, as far as the store says.
        holder: String,
    },
    /// The Kubernetes API failed (`--kube-subnet-mgr`).
    #[error("{0}")]
    Kube(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A stream of lease events (see [`LeaseSource::watch`]).
pub trait LeaseEvents {
    /// The next event, waiting at most `timeout`; `Ok(None)` when nothing happened.
    fn next(&mut self, timeout: Duration) -> Result<Option<LeaseEvent>, AgentError>;
}

impl<S: Store> LeaseEvents for podnet_ipam::LeaseWatch<'_, S> {
    fn next(&mut self, timeout: Duration) -> Result<Option<LeaseEvent>, AgentError> {
        Ok(podnet_ipam::LeaseWatch::next(self, timeout)?)
    }
}

/// Where the agent's leases live: a key-value store through [`SubnetManager`] (etcd, the
/// embedded store) or the Kubernetes API (`kube::KubeSubnetManager`, feature `kube`,
/// flannel's `--kube-subnet-mgr`).
pub trait LeaseSource {
    /// The network config the source holds.
    fn network_config(&self) -> Result<NetworkConfig, AgentError>;
    /// Stores the network config text (when the source has none).
    fn put_network_config(&self, text: &str) -> Result<(), AgentError>;
    /// Takes this node's lease, publishing `attrs`.
    fn acquire(
        &self,
        attrs: &LeaseAttrs,
        previous: Option<LeaseSubnets>,
    ) -> Result<Lease, AgentError>;
    /// Every lease now.
    fn leases(&self) -> Result<Vec<Lease>, AgentError>;
    /// Watches every lease: a [`LeaseEvent::Snapshot`] first, then the changes.
    fn watch(&self) -> Result<Box<dyn LeaseEvents + '_>, AgentError>;
    /// Writes this node's lease again (it disappeared).
    fn renew(&self, lease: &mut Lease) -> Result<(), AgentError>;
    /// Renews the lease when its TTL asks for it; `true` when it did.
    fn renew_if_due(&self, lease: &mut Lease) -> Result<bool, AgentError>;
    /// The backend is up (flannel's `CompleteLease`).
    fn started(&self, _lease: &Lease) -> Result<(), AgentError> {
        Ok(())
    }
}

impl<S: Store> LeaseSource for SubnetManager<S> {
    fn network_config(&self) -> Result<NetworkConfig, AgentError> {
        Ok(SubnetManager::network_config(self)?)
    }
    fn put_network_config(&self, text: &str) -> Result<(), AgentError> {
        SubnetManager::put_network_config(self, text)?;
        Ok(())
    }
    fn acquire(
        &self,
        attrs: &LeaseAttrs,
        previous: Option<LeaseSubnets>,
    ) -> Result<Lease, AgentError> {
        Ok(SubnetManager::acquire(self, attrs, previous)?)
    }
    fn leases(&self) -> Result<Vec<Lease>, AgentError> {
        Ok(SubnetManager::leases(self)?.0)
    }
    fn watch(&self) -> Result<Box<dyn LeaseEvents + '_>, AgentError> {
        Ok(Box::new(SubnetManager::watch(self)?))
    }
    fn renew(&self, lease: &mut Lease) -> Result<(), AgentError> {
        Ok(SubnetManager::renew(self, lease)?)
    }
    fn renew_if_due(&self, lease: &mut Lease) -> Result<bool, AgentError> {
        Ok(SubnetManager::renew_if_due(self, lease)?)
    }
}

fn is_lost(e: &AgentError) -> bool {
    matches!(e, AgentError::Lease(podnet_ipam::LeaseError::Lost { .. }))
}

/// The agent's settings (flanneld's flags).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `--iface`, `--iface-regex`, `--iface-can-reach` and `--public-ip`: the underlay
    /// interface and the addresses (see [`iface`]).
    pub interface: IfaceChoice,
    /// `--subnet-file`.
    pub subnet_file: PathBuf,
    /// `--ip-masq`.
    pub ip_masq: bool,
    /// `MASQUERADE --random-fully` (flannel's default; `--ip-masq-fully-random-disable`
    /// turns it off).
    pub ip_masq_random_fully: bool,
    /// `--iptables-forward-rules` (default on): accept the flannel network's traffic in
    /// FORWARD (the FLANNEL-FWD chain).
    pub iptables_forward_rules: bool,
    /// `--ip-blackhole-route`: a blackhole route for this node's subnet, kept at each resync,
    /// so traffic to its unused addresses is dropped here (for setups without a bridge).
    pub blackhole_route: bool,
    /// `--healthz-ip`/`--healthz-port`.
    pub healthz: Option<SocketAddr>,
    /// How often everything is reconciled even without lease events.
    pub resync: Duration,
    /// `--net-config-path`: network config text; stored when the store has none.
    pub net_config: Option<String>,
}

/// The backend instances of the network, one per address family it uses.
type Backends = Vec<(Family, Box<dyn Backend>)>;

/// What [`preflight`] establishes: the config, the backends and the previous subnet.env.
type Preflight = (NetworkConfig, Backends, Option<SubnetEnv>);

/// Everything checked before anything is built: a bad config, an unknown backend or a
/// subnet.env that contradicts the config stop the agent here, with nothing half-built.
fn preflight<L: LeaseSource>(sm: &L, opts: &AgentOptions) -> Result<Preflight, AgentError> {
    let config = match &opts.net_config {
        Some(text) => {
            let parsed =
                NetworkConfig::parse(text).map_err(|e| AgentError::Config(e.to_string()))?;
            if sm.network_config().is_err() {
                sm.put_network_config(text)?;
            }
            parsed
        }
        None => sm.network_config()?,
    };
    let mut backends: Backends = Vec::new();
    if config.enable_ipv4 {
        backends.push((Family::V4, backend::from_config(&config, Family::V4)?));
    }
    if config.enable_ipv6 {
        if config.ipv6_network.is_none() {
            return Err(AgentError::Config("EnableIPv6 without IPv6Network".into()));
        }
        backends.push((Family::V6, backend::from_config(&config, Family::V6)?));
    }
    let previous =
        SubnetEnv::read(&opts.subnet_file).map_err(|e| AgentError::SubnetEnv(e.to_string()))?;
    if let (Some(env), Some(network)) = (&previous, config.network) {
        if let Some(subnet) = env.subnet {
            if !network.contains(&subnet) {
                return Err(AgentError::SubnetEnv(format!(
                    "{} holds FLANNEL_SUBNET={subnet}, which is outside the Network {network} \
                     of the config; delete the file if the network changed on purpose",
                    opts.subnet_file.display()
                )));
            }
        }
    }
    if let (Some(env), Some(network)) = (&previous, config.ipv6_network) {
        if let Some(subnet) = env.ipv6_subnet {
            if !network.contains(&subnet) {
                return Err(AgentError::SubnetEnv(format!(
                    "{} holds FLANNEL_IPV6_SUBNET={subnet}, which is outside the IPv6Network \
                     {network} of the config; delete the file if the network changed on purpose",
                    opts.subnet_file.display()
                )));
            }
        }
    }
    Ok((config, backends, previous))
}

/// Adds a blackhole route for `subnet` unless one is there (flannel's `AddBlackholeV4Route`
/// and `AddBlackholeV6Route`; where the bridge's route for the subnet exists the kernel
/// refuses it, and flannel too only logs that).
fn ensure_blackhole(h: &Handle, subnet: IpNet) -> Result<(), podnet_links::Error> {
    let dst = subnet;
    let present = h
        .route()
        .list()?
        .iter()
        .any(|r| r.dst == dst && r.kind == podnet_links::RouteKind::Blackhole);
    if !present {
        h.route().add(&podnet_links::Route::blackhole(dst))?;
    }
    Ok(())
}

/// The other leases as peers of `family`: those with a subnet and a public address of it.
fn peers_of(own: &Lease, leases: &BTreeMap<String, Lease>, family: Family) -> Vec<Peer> {
    leases
        .values()
        .filter(|l| l.subnets != own.subnets)
        .filter_map(|l| {
            let (subnet, public_ip, data) = match family {
                Family::V4 => (
                    IpNet::V4(l.subnets.ipv4?),
                    std::net::IpAddr::V4(l.attrs.public_ip),
                    &l.attrs.backend_data,
                ),
                Family::V6 => (
                    IpNet::V6(l.subnets.ipv6?),
                    std::net::IpAddr::V6(l.attrs.public_ipv6?),
                    &l.attrs.backend_v6_data,
                ),
            };
            Some(Peer {
                subnet,
                public_ip,
                backend_type: l.attrs.backend_type.clone(),
                backend_data: data
                    .as_ref()
                    .and_then(|d| serde_json::from_str(d.get()).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

/// flannel's healthz server: `/healthz` answers 200 `flanneld is running` once the agent runs;
/// every other path is 404.
fn serve_healthz(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<SocketAddr> {
    use crate::http::{Request, Response};
    crate::http::serve(
        addr,
        Arc::new(|req: &Request| match req.path.as_str() {
            "/healthz" => Response::text(200, "flanneld is running"),
            _ => Response::not_found(),
        }),
        stop,
    )
}

/// What the store says of this node's subnet.
enum Ownership {
    /// Our lease is there.
    Ours,
    /// No lease holds the subnet.
    Gone,
    /// Another node's lease holds it.
    TakenBy(Lease),
}

fn ownership(own: &Lease, leases: &BTreeMap<String, Lease>) -> Ownership {
    match leases.get(&own.subnets.key_name()) {
        None => Ownership::Gone,
        Some(l)
            if l.attrs.public_ip == own.attrs.public_ip
                && l.attrs.public_ipv6 == own.attrs.public_ipv6 =>
        {
            Ownership::Ours
        }
        Some(l) => Ownership::TakenBy(l.clone()),
    }
}

/// This node lost its subnet to another: stop handing out addresses from it (remove
/// subnet.env) and say so.
fn lost(opts: &AgentOptions, subnet: &str, holder: String) -> AgentError {
    match std::fs::remove_file(&opts.subnet_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %opts.subnet_file.display(), "removing: {e}"),
    }
    let e = AgentError::LeaseLost {
        subnet: subnet.to_string(),
        holder,
    };
    tracing::error!("{e}");
    e
}

/// One step of the lease watch: (re)opens it, waits up to half a second for an event, and
/// applies it to `leases`. Whether anything changed.
fn next_lease_event<'a, L: LeaseSource>(
    sm: &'a L,
    watch: &mut Option<Box<dyn LeaseEvents + 'a>>,
    leases: &mut BTreeMap<String, Lease>,
    have_view: &mut bool,
) -> bool {
    if watch.is_none() {
        match sm.watch() {
            Ok(w) => *watch = Some(w),
            Err(e) => {
                tracing::warn!("watching leases: {e}; retrying, the programmed state stays");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let mut changed = false;
    if let Some(w) = watch.as_mut() {
        match w.next(Duration::from_millis(500)) {
            Ok(Some(event)) => {
                changed = true;
                match event {
                    LeaseEvent::Snapshot(all) => {
                        *leases = all.into_iter().map(|l| (l.subnets.key_name(), l)).collect();
                        *have_view = true;
                    }
                    LeaseEvent::Added(l) | LeaseEvent::Changed(l) => {
                        tracing::info!(subnet = %l.subnets.key_name(), public_ip = %l.attrs.public_ip, "lease added or changed");
                        leases.insert(l.subnets.key_name(), l);
                    }
                    LeaseEvent::Removed(l) => {
                        tracing::info!(subnet = %l.subnets.key_name(), "lease removed");
                        leases.remove(&l.subnets.key_name());
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("lease watch: {e}; re-listing");
                *watch = None;
            }
        }
    }
    changed
}

/// Checks that this node still holds its lease in `leases`: takes it again while it is free
/// (pods keep their addresses), and stops the agent when another node holds it. When to try
/// again, if taking it back failed for now.
fn keep_lease<L: LeaseSource>(
    sm: &L,
    opts: &AgentOptions,
    lease: &mut Lease,
    leases: &mut BTreeMap<String, Lease>,
    subnet: &str,
) -> Result<Option<Instant>, AgentError> {
    match ownership(lease, leases) {
        Ownership::Ours => {}
        Ownership::Gone => {
            // Take the subnet again while it is free: pods keep their addresses, and
            // the other nodes route to them again as soon as they see the lease.
            tracing::warn!(%subnet, "this node's lease is gone from the store; taking it again");
            match sm.renew(lease) {
                Ok(()) => {
                    tracing::info!(%subnet, "lease taken again");
                    leases.insert(lease.subnets.key_name(), lease.clone());
                }
                Err(e) if is_lost(&e) => {
                    return Err(lost(opts, subnet, "another node took it".into()));
                }
                Err(e) => {
                    tracing::warn!("taking the lease again: {e}; retrying in a second");
                    return Ok(Some(Instant::now() + Duration::from_secs(1)));
                }
            }
        }
        Ownership::TakenBy(other) => {
            let holder = format!("the store gives it to {}", other.attrs.public_ip);
            return Err(lost(opts, subnet, holder));
        }
    }
    Ok(None)
}

/// One family of the running network: its backend instance, the whole network and this
/// node's subnet.
struct FamilyNet {
    family: Family,
    backend: Box<dyn Backend>,
    network: IpNet,
    subnet: IpNet,
}

/// Prepares every family's backend, takes the lease with their data, and configures each
/// backend for its subnet: the lease, the families and the pods' MTU (what every family's
/// device leaves; VXLAN over IPv6 costs 20 bytes more).
fn start_backends<L: LeaseSource>(
    sm: &L,
    config: &NetworkConfig,
    backends: Backends,
    h: &Handle,
    under: &Underlay,
    previous: Option<SubnetEnv>,
) -> Result<(Lease, Vec<FamilyNet>, u32), AgentError> {
    let kind = backends.first().map(|(_, b)| b.kind()).unwrap_or_default();
    let mut backends = backends;
    let mut attrs = LeaseAttrs::new(under.public_ip, kind);
    for (family, backend) in &mut backends {
        let data = backend.prepare(h, under)?;
        match family {
            Family::V4 => {
                if let Some(d) = &data {
                    attrs = attrs
                        .with_backend_data(&d.to_string())
                        .map_err(|e| AgentError::Other(e.to_string()))?;
                }
            }
            Family::V6 => {
                attrs.public_ipv6 = under.public_ipv6;
                if let Some(d) = &data {
                    attrs = attrs
                        .with_backend_v6_data(&d.to_string())
                        .map_err(|e| AgentError::Other(e.to_string()))?;
                }
            }
        }
    }
    let lease = sm.acquire(&attrs, previous.and_then(|p| p.previous_subnets()))?;
    let subnets = lease.subnets.to_string();
    tracing::info!(subnet = %subnets, "lease acquired");
    let mut nets: Vec<FamilyNet> = Vec::new();
    for (family, backend) in backends {
        let (network, subnet) = match family {
            Family::V4 => (
                config.network.map(IpNet::V4),
                lease.subnets.ipv4.map(IpNet::V4),
            ),
            Family::V6 => (
                config.ipv6_network.map(IpNet::V6),
                lease.subnets.ipv6.map(IpNet::V6),
            ),
        };
        let (Some(network), Some(subnet)) = (network, subnet) else {
            return Err(AgentError::Other(format!(
                "lease {subnets} has no {family} subnet, but the config enables {family}"
            )));
        };
        nets.push(FamilyNet {
            family,
            backend,
            network,
            subnet,
        });
    }
    // The pods' MTU: what every family's device leaves (VXLAN over IPv6 costs 20 bytes more).
    let mut mtu = u32::MAX;
    for n in &mut nets {
        mtu = mtu.min(n.backend.configure(h, under, n.network, n.subnet)?);
    }
    Ok((lease, nets, mtu))
}

/// Runs the agent until `stop` is set. The caller picks the lease source.
pub fn run<L: LeaseSource>(
    sm: L,
    opts: AgentOptions,
    stop: Arc<AtomicBool>,
) -> Result<(), AgentError> {
    let (config, backends, previous) = preflight(&sm, &opts)?;
    if config.enable_ipv4 && config.network.is_none() {
        return Err(AgentError::Config("IPv4 Network is required".into()));
    }
    let stack = Stack::of(config.enable_ipv4, config.enable_ipv6);
    let h = Handle::new()?;
    let under = iface::choose_for(&opts.interface, &iface::LiveHost(&h), stack)
        .map_err(AgentError::Underlay)?;
    let kind = backends
        .first()
        .map(|(_, b)| b.kind())
        .ok_or_else(|| AgentError::Config("no address family enabled".into()))?;
    tracing::info!(
        backend = kind,
        iface = %under.name,
        iface_addr = %under.iface_addr,
        public_ip = %under.public_ip,
        iface_addr6 = ?under.iface_addr6,
        public_ipv6 = ?under.public_ipv6,
        network = ?config.network,
        ipv6_network = ?config.ipv6_network,
        "starting"
    );

    let (mut lease, mut nets, mtu) = start_backends(&sm, &config, backends, &h, &under, previous)?;
    let subnets = lease.subnets.to_string();
    SubnetEnv::from_lease(&config, &lease, mtu, opts.ip_masq)
        .write(&opts.subnet_file)
        .map_err(|e| AgentError::Other(e.to_string()))?;
    if let Err(e) = sm.started(&lease) {
        // flannel logs a failed CompleteLease and goes on.
        tracing::warn!("completing the lease: {e}");
    }
    let ns = NetNs::current().map_err(|e| AgentError::Other(e.to_string()))?;
    let masqs: Vec<FlannelNetwork> = nets
        .iter()
        .map(|n| FlannelNetwork {
            cluster_cidr: n.network,
            pod_cidr: n.subnet,
            random_fully: opts.ip_masq_random_fully,
        })
        .collect();
    let own_subnets: Vec<IpNet> = nets.iter().map(|n| n.subnet).collect();
    let apply_rules = |why: &str| {
        if opts.ip_masq || opts.iptables_forward_rules {
            let (m, f) = (opts.ip_masq, opts.iptables_forward_rules);
            for masq in &masqs {
                // EnableNFTables: flannel's nftables tables instead of its iptables chains.
                let result = if config.enable_nftables {
                    podnet_nat::flannel_nft::apply_parts(&ns, masq, m, f).map_err(|e| e.to_string())
                } else {
                    masq.apply_parts(&ns, m, f).map_err(|e| e.to_string())
                };
                if let Err(e) = result {
                    tracing::warn!(network = %masq.cluster_cidr, "masquerade and forward rules ({why}): {e}");
                }
            }
        }
        if opts.blackhole_route {
            for subnet in &own_subnets {
                if let Err(e) = ensure_blackhole(&h, *subnet) {
                    tracing::warn!("blackhole route for {subnet} ({why}): {e}");
                }
            }
        }
    };
    apply_rules("start");
    if let Some(addr) = opts.healthz {
        serve_healthz(addr, stop.clone())
            .map_err(|e| AgentError::Other(format!("--healthz-port {addr}: {e}")))?;
    }

    let mut leases: BTreeMap<String, Lease> = BTreeMap::new();
    // Whether `leases` comes from a snapshot or a listing (so a missing lease means something).
    let mut have_view = false;
    let mut watch = None;
    // `None`: a resync period longer than the clock can count, i.e. never.
    let mut next_resync = Some(Instant::now());
    let mut next_renew_try = Instant::now();
    // When to try again to take back a lease that is gone (the store was unreachable).
    let mut retake_at: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let changed = next_lease_event(&sm, &mut watch, &mut leases, &mut have_view);
        let resync_due = next_resync.is_some_and(|t| Instant::now() >= t);
        if resync_due {
            // The watch is the fast path; a periodic listing makes the agent converge even if a
            // watch stalls or misses an event.
            match sm.leases() {
                Ok(all) => {
                    let fresh: BTreeMap<String, Lease> =
                        all.into_iter().map(|l| (l.subnets.key_name(), l)).collect();
                    if fresh.keys().ne(leases.keys()) {
                        tracing::info!(
                            leases = fresh.len(),
                            "lease listing differs from the watch; using the listing"
                        );
                    }
                    leases = fresh;
                    have_view = true;
                }
                Err(e) => tracing::warn!("listing leases: {e}; keeping what is programmed"),
            }
        }
        let retake_due = retake_at.is_some_and(|t| Instant::now() >= t);
        if have_view && (changed || resync_due || retake_due) {
            retake_at = keep_lease(&sm, &opts, &mut lease, &mut leases, &subnets)?;
        }
        if changed || resync_due {
            for n in &mut nets {
                let peers = peers_of(&lease, &leases, n.family);
                if let Err(e) = n.backend.reconcile(&h, &under, n.network, n.subnet, &peers) {
                    tracing::warn!(family = %n.family, "reconcile: {e}");
                }
            }
            if resync_due {
                apply_rules("resync");
                next_resync = Instant::now().checked_add(opts.resync);
            }
        }
        // Renewal keeps its own schedule (the lease's TTL), whatever the resync period.
        if Instant::now() >= next_renew_try {
            match sm.renew_if_due(&mut lease) {
                Ok(true) => tracing::info!("lease renewed"),
                Ok(false) => {}
                Err(AgentError::Lease(podnet_ipam::LeaseError::Lost { key })) => {
                    return Err(lost(
                        &opts,
                        &subnets,
                        format!("renewing {key}: another node holds it"),
                    ));
                }
                Err(e) => {
                    // flannel tries again in a minute.
                    tracing::warn!("renewing lease: {e}; trying again in a minute");
                    next_renew_try = Instant::now() + Duration::from_secs(60);
                }
            }
        }
    }
    Ok(())
}
