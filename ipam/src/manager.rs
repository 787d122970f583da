//! Node-subnet leases on a [`Store`]: acquire, renew, reserve, release and watch, in flannel's
//! etcd schema so podnet and flannel nodes can share one cluster.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::{Layout, NetworkConfig};
use crate::error::{LeaseError, StoreError};
use crate::lease::{DEFAULT_PREFIX, Lease, LeaseAttrs, LeaseSubnets};
use crate::store::{KeyValue, Store, StoreEvent, StoreWatch};
use crate::sys;
use crate::time;

/// How leases are taken and kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagerOptions {
    /// The lease TTL (flannel: 24 h).
    pub ttl: Duration,
    /// Renew this long before expiry (flannel's `--subnet-lease-renew-margin`, 60 min).
    pub renew_margin: Duration,
    /// How many times a lost compare-and-swap race is retried with another subnet.
    pub race_retries: u32,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            ttl: Duration::from_secs(24 * 3600),
            renew_margin: Duration::from_secs(60 * 60),
            race_retries: 10,
        }
    }
}

impl ManagerOptions {
    /// Sets the lease TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the renewal margin.
    pub fn with_renew_margin(mut self, margin: Duration) -> Self {
        self.renew_margin = margin;
        self
    }
}

/// Leases of one network (one key prefix) in a store.
///
/// ```
/// use podnet_ipam::{FileStore, LeaseAttrs, SubnetManager};
/// let dir = tempfile::tempdir()?;
/// let sm = SubnetManager::new(FileStore::open(dir.path())?);
/// sm.put_network_config(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#)?;
/// let lease = sm.acquire(&LeaseAttrs::new("198.18.0.1".parse()?, "vxlan"), None)?;
/// assert_eq!(lease.subnets.ipv4.unwrap().prefix_len(), 24);
/// // The same node asking again gets the same subnet back.
/// let again = sm.acquire(&LeaseAttrs::new("198.18.0.1".parse()?, "vxlan"), None)?;
/// assert_eq!(again.subnets, lease.subnets);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A manager is `Clone` when its store is (both stores are), e.g. to watch on another thread.
#[derive(Debug, Clone)]
pub struct SubnetManager<S> {
    store: S,
    prefix: String,
    options: ManagerOptions,
}

/// A change to the set of leases, as seen by [`LeaseWatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseEvent {
    /// Every lease, first thing after the watch starts.
    Snapshot(Vec<Lease>),
    /// A new lease.
    Added(Lease),
    /// A lease whose value or expiry changed (a renewal, a new public IP, ...).
    Changed(Lease),
    /// A lease that was deleted or expired.
    Removed(Lease),
}

impl<S: Store> SubnetManager<S> {
    /// A manager under flannel's default prefix `/coreos.com/network`.
    pub fn new(store: S) -> Self {
        Self::with_prefix(store, DEFAULT_PREFIX)
    }

    /// A manager under another prefix (flannel's `--etcd-prefix`).
    pub fn with_prefix(store: S, prefix: &str) -> Self {
        SubnetManager {
            store,
            prefix: prefix.trim_end_matches('/').to_string(),
            options: ManagerOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn options(mut self, options: ManagerOptions) -> Self {
        self.options = options;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// `<prefix>/config`.
    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// `<prefix>/subnets/`.
    pub fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    /// The key of a lease: `<prefix>/subnets/10.5.52.0-24`.
    pub fn lease_key(&self, subnets: &LeaseSubnets) -> String {
        format!("{}{}", self.subnets_prefix(), subnets.key_name())
    }

    /// Reads and checks the network config.
    pub fn network_config(&self) -> Result<NetworkConfig, LeaseError> {
        let key = self.config_key();
        let kv = self
            .store
            .get(&key)?
            .ok_or_else(|| LeaseError::ConfigNotFound { key: key.clone() })?;
        let text = String::from_utf8_lossy(&kv.value);
        NetworkConfig::parse(&text).map_err(|source| LeaseError::Config { key, source })
    }

    /// Checks a network config and stores it (what `etcdctl put <prefix>/config` does).
    pub fn put_network_config(&self, text: &str) -> Result<NetworkConfig, LeaseError> {
        let key = self.config_key();
        let config = NetworkConfig::parse(text).map_err(|source| LeaseError::Config {
            key: key.clone(),
            source,
        })?;
        self.store.replace(&key, text.as_bytes(), None)?;
        Ok(config)
    }

    fn decode(kv: &KeyValue) -> Option<Lease> {
        let Some(subnets) = LeaseSubnets::parse_key_name(&kv.key) else {
            tracing::warn!(key = %kv.key, "skipping entry: not a subnet key");
            return None;
        };
        let text = match std::str::from_utf8(&kv.value) {
            Ok(t) => t,
            Err(_) => {
                tracing::warn!(key = %kv.key, "skipping lease: value is not UTF-8");
                return None;
            }
        };
        match LeaseAttrs::from_json(text) {
            Ok(attrs) => Some(Lease {
                subnets,
                attrs,
                expiration: kv.expires,
                revision: kv.mod_revision,
            }),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "skipping lease with a malformed value");
                None
            }
        }
    }

    /// Every readable lease and the revision they were read at. Entries that cannot be decoded
    /// are skipped with a warning naming their key.
    pub fn leases(&self) -> Result<(Vec<Lease>, u64), LeaseError> {
        let listing = self.store.list(&self.subnets_prefix())?;
        let leases = listing.kvs.iter().filter_map(Self::decode).collect();
        Ok((leases, listing.revision))
    }

    fn find_own<'a>(&self, leases: &'a [Lease], attrs: &LeaseAttrs) -> Option<&'a Lease> {
        leases.iter().find(|l| {
            if attrs.public_ip.is_unspecified() {
                attrs.public_ipv6.is_some() && l.attrs.public_ipv6 == attrs.public_ipv6
            } else {
                l.attrs.public_ip == attrs.public_ip
            }
        })
    }

    fn fits(config: &NetworkConfig, s: &LeaseSubnets) -> bool {
        let v4 = match (config.enable_ipv4, s.ipv4) {
            (true, Some(n)) => config.fits_v4(n),
            (true, None) => false,
            (false, v) => v.is_none(),
        };
        let v6 = match (config.enable_ipv6, s.ipv6) {
            (true, Some(n)) => config.fits_v6(n),
            (true, None) => false,
            (false, v) => v.is_none(),
        };
        v4 && v6
    }

    fn ttl_for(&self, reservation: bool) -> Option<Duration> {
        if reservation {
            None
        } else {
            Some(self.options.ttl)
        }
    }

    /// Acquires this node's lease.
    ///
    /// In order: the lease that already carries this node's public IP, if it still fits the
    /// config (its TTL is refreshed; a reservation stays a reservation); else `previous` (the
    /// subnet from the last subnet.env) if it fits and is free; else a random free subnet in
    /// [SubnetMin, SubnetMax]. The lease is created with compare-and-swap; when another node
    /// wins the race the leases are read again and another subnet is tried.
    pub fn acquire(
        &self,
        attrs: &LeaseAttrs,
        previous: Option<LeaseSubnets>,
    ) -> Result<Lease, LeaseError> {
        let config = self.network_config()?;
        let value = attrs.to_json();
        let attempts = self.options.race_retries.max(1);
        for attempt in 0..attempts {
            let listing = self.store.list(&self.subnets_prefix())?;
            let mut leases: Vec<Lease> = listing.kvs.iter().filter_map(Self::decode).collect();
            // A key whose value is unreadable still holds its subnet.
            let mut taken: Vec<LeaseSubnets> = listing
                .kvs
                .iter()
                .filter_map(|kv| LeaseSubnets::parse_key_name(&kv.key))
                .collect();
            if let Some(own) = self.find_own(&leases, attrs).cloned() {
                let key = self.lease_key(&own.subnets);
                if Self::fits(&config, &own.subnets) {
                    let ttl = self.ttl_for(own.is_reservation());
                    match self
                        .store
                        .replace_if(&key, value.as_bytes(), ttl, own.revision)?
                    {
                        Some(revision) => {
                            tracing::info!(%key, "reusing this node's lease");
                            return Ok(Lease {
                                subnets: own.subnets,
                                attrs: attrs.clone(),
                                expiration: ttl.map(|t| time::expiry(SystemTime::now(), t)),
                                revision,
                            });
                        }
                        None => continue,
                    }
                }
                tracing::info!(%key, "this node's lease does not fit the network config; deleting it");
                self.store.del(&key)?;
                leases.retain(|l| l.subnets != own.subnets);
                taken.retain(|t| *t != own.subnets);
            }

            let subnets = match previous
                .filter(|p| attempt == 0 && Self::fits(&config, p))
                .filter(|p| !taken.iter().any(|t| t.overlaps(p)))
            {
                Some(p) => p,
                None => pick_free(&config, &taken)?,
            };
            let key = self.lease_key(&subnets);
            let ttl = Some(self.options.ttl);
            if let Some(revision) = self.store.add(&key, value.as_bytes(), ttl)? {
                tracing::info!(%key, "acquired lease");
                return Ok(Lease {
                    subnets,
                    attrs: attrs.clone(),
                    expiration: ttl.map(|t| time::expiry(SystemTime::now(), t)),
                    revision,
                });
            }
            tracing::info!(%key, "another node took this subnet first; trying another");
        }
        Err(LeaseError::RaceRetriesExhausted { attempts })
    }

    /// Extends a lease by the TTL (a reservation keeps no TTL). Fails with
    /// [`LeaseError::Lost`] when another node holds the subnet now; re-creates the lease when
    /// it expired and nobody took the subnet.
    pub fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let key = self.lease_key(&lease.subnets);
        let value = lease.attrs.to_json();
        let ttl = self.ttl_for(lease.is_reservation());
        let revision = match self
            .store
            .replace_if(&key, value.as_bytes(), ttl, lease.revision)?
        {
            Some(r) => r,
            None => match self.store.get(&key)? {
                None => self
                    .store
                    .add(&key, value.as_bytes(), ttl)?
                    .ok_or_else(|| LeaseError::Lost { key: key.clone() })?,
                Some(kv) => {
                    let current = Self::decode(&kv);
                    let ours = current.as_ref().is_some_and(|c| {
                        c.attrs.public_ip == lease.attrs.public_ip
                            && c.attrs.public_ipv6 == lease.attrs.public_ipv6
                    });
                    if !ours {
                        return Err(LeaseError::Lost { key });
                    }
                    self.store
                        .replace_if(&key, value.as_bytes(), ttl, kv.mod_revision)?
                        .ok_or_else(|| LeaseError::Lost { key: key.clone() })?
                }
            },
        };
        lease.revision = revision;
        lease.expiration = ttl.map(|t| time::expiry(SystemTime::now(), t));
        Ok(())
    }

    /// How long to wait before renewing: expiry minus the renewal margin (zero when due, also
    /// when the margin is longer than the lease). `None` for a reservation, which never needs
    /// renewing.
    pub fn renew_delay(&self, lease: &Lease) -> Option<Duration> {
        let exp = lease.expiration?;
        let due = exp
            .checked_sub(self.options.renew_margin)
            .unwrap_or(std::time::UNIX_EPOCH);
        Some(
            due.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Renews the lease if its renewal is due; returns whether it did.
    pub fn renew_if_due(&self, lease: &mut Lease) -> Result<bool, LeaseError> {
        match self.renew_delay(lease) {
            Some(d) if d.is_zero() => self.renew(lease).map(|_| true),
            _ => Ok(false),
        }
    }

    /// Pins a subnet to a node with a lease that never expires (flannel's reservation).
    pub fn reserve(&self, subnets: LeaseSubnets, attrs: &LeaseAttrs) -> Result<Lease, LeaseError> {
        if subnets.ipv4.is_none() && subnets.ipv6.is_none() {
            return Err(LeaseError::Empty);
        }
        let key = self.lease_key(&subnets);
        let revision = self.store.replace(&key, attrs.to_json().as_bytes(), None)?;
        Ok(Lease {
            subnets,
            attrs: attrs.clone(),
            expiration: None,
            revision,
        })
    }

    /// Deletes a lease (a node leaving the cluster).
    pub fn release(&self, subnets: &LeaseSubnets) -> Result<bool, LeaseError> {
        Ok(self.store.del(&self.lease_key(subnets))?)
    }

    /// Watches every lease: first a [`LeaseEvent::Snapshot`], then one event per change.
    pub fn watch(&self) -> Result<LeaseWatch<'_, S>, LeaseError> {
        let mut w = LeaseWatch {
            manager: self,
            watch: None,
            known: BTreeMap::new(),
            pending: VecDeque::new(),
        };
        w.relist(true)?;
        Ok(w)
    }

    /// Resumes watching from a state the caller already knows: `known` as read at
    /// `revision` (see [`leases`](Self::leases)), e.g. kept across a restart. No snapshot is
    /// sent; changes since `revision` come as events. If the store compacted that history
    /// meanwhile, the watch lists again and reports the difference.
    pub fn watch_from(
        &self,
        known: Vec<Lease>,
        revision: u64,
    ) -> Result<LeaseWatch<'_, S>, LeaseError> {
        let known = known
            .into_iter()
            .map(|l| (self.lease_key(&l.subnets), l))
            .collect();
        Ok(LeaseWatch {
            manager: self,
            watch: Some(self.store.watch(&self.subnets_prefix(), revision + 1)?),
            known,
            pending: VecDeque::new(),
        })
    }
}

/// Picks a random free subnet in each enabled family.
fn pick_free(config: &NetworkConfig, taken: &[LeaseSubnets]) -> Result<LeaseSubnets, LeaseError> {
    let ipv4 = match config.v4_layout() {
        None => None,
        Some(layout) => {
            let taken = taken.iter().filter_map(|l| l.ipv4).map(|n| {
                (
                    u128::from(u32::from(n.network())),
                    u128::from(u32::from(n.broadcast())),
                )
            });
            let base = pick_in(&layout, taken).ok_or_else(|| LeaseError::NetworkFull {
                network: config.network.map(|n| n.to_string()).unwrap_or_default(),
                subnet_len: layout.subnet_len,
            })?;
            Some(
                Ipv4Net::new(Ipv4Addr::from(base as u32), layout.subnet_len)
                    .map_err(|_| LeaseError::Empty)?,
            )
        }
    };
    let ipv6 = match config.v6_layout() {
        None => None,
        Some(layout) => {
            let taken = taken
                .iter()
                .filter_map(|l| l.ipv6)
                .map(|n| (u128::from(n.network()), u128::from(n.broadcast())));
            let base = pick_in(&layout, taken).ok_or_else(|| LeaseError::NetworkFull {
                network: config
                    .ipv6_network
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                subnet_len: layout.subnet_len,
            })?;
            Some(
                Ipv6Net::new(Ipv6Addr::from(base), layout.subnet_len)
                    .map_err(|_| LeaseError::Empty)?,
            )
        }
    };
    Ok(LeaseSubnets { ipv4, ipv6 })
}

/// A random subnet of `layout` that overlaps none of the `taken` [start, end] intervals:
/// start at a random index and skip forward over taken intervals, wrapping once.
fn pick_in(layout: &Layout, taken: impl Iterator<Item = (u128, u128)>) -> Option<u128> {
    let cap = layout.capacity();
    if cap == 0 {
        return None;
    }
    let size = layout.subnet_size();
    let mut taken: Vec<(u128, u128)> = taken.collect();
    taken.sort_unstable();
    // Merge into disjoint intervals.
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(taken.len());
    for (s, e) in taken {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // First free index >= idx, or None past the end.
    let first_free_from = |mut idx: u128| -> Option<u128> {
        while idx < cap {
            let start = layout.min + idx * size;
            let end = start + (size - 1);
            // The first interval that ends at or after `start`.
            let pos = merged.partition_point(|&(_, e)| e < start);
            match merged.get(pos) {
                Some(&(s, e)) if s <= end => {
                    // Overlap: jump past the interval's end.
                    let next = e.checked_add(1)?;
                    idx = (next - layout.min).div_ceil(size);
                }
                _ => return Some(start),
            }
        }
        None
    };
    let r = sys::random_below(cap);
    first_free_from(r).or_else(|| first_free_from(0))
}

/// A watch on every lease of a network. After a compaction it lists again and reports what
/// changed meanwhile, so a consumer never misses a lease.
pub struct LeaseWatch<'a, S> {
    manager: &'a SubnetManager<S>,
    watch: Option<Box<dyn StoreWatch>>,
    known: BTreeMap<String, Lease>,
    pending: VecDeque<LeaseEvent>,
}

impl<S> std::fmt::Debug for LeaseWatch<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<S: Store> LeaseWatch<'_, S> {
    fn relist(&mut self, first: bool) -> Result<(), LeaseError> {
        let prefix = self.manager.subnets_prefix();
        let listing = self.manager.store.list(&prefix)?;
        let mut fresh = BTreeMap::new();
        for kv in &listing.kvs {
            if let Some(l) = SubnetManager::<S>::decode(kv) {
                fresh.insert(kv.key.clone(), l);
            }
        }
        if first {
            self.pending
                .push_back(LeaseEvent::Snapshot(fresh.values().cloned().collect()));
        } else {
            for (k, old) in &self.known {
                if !fresh.contains_key(k) {
                    self.pending.push_back(LeaseEvent::Removed(old.clone()));
                }
            }
            for (k, new) in &fresh {
                match self.known.get(k) {
                    None => self.pending.push_back(LeaseEvent::Added(new.clone())),
                    Some(old) if old != new => {
                        self.pending.push_back(LeaseEvent::Changed(new.clone()))
                    }
                    Some(_) => {}
                }
            }
        }
        self.known = fresh;
        self.watch = Some(self.manager.store.watch(&prefix, listing.revision + 1)?);
        Ok(())
    }

    /// The next event, waiting at most `timeout`; `Ok(None)` when nothing happened.
    ///
    /// After an error (say the store was unreachable), calling `next` again lists the leases
    /// again, reports the difference as events, and resumes watching.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<LeaseEvent>, LeaseError> {
        let deadline = time::deadline(timeout);
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            let left = time::left(deadline);
            let Some(watch) = self.watch.as_mut() else {
                self.relist(false)?;
                continue;
            };
            match watch.next(left) {
                Ok(None) => return Ok(None),
                Ok(Some(StoreEvent::Put(kv))) => {
                    if let Some(lease) = SubnetManager::<S>::decode(&kv) {
                        let ev = match self.known.insert(kv.key.clone(), lease.clone()) {
                            None => LeaseEvent::Added(lease),
                            Some(_) => LeaseEvent::Changed(lease),
                        };
                        return Ok(Some(ev));
                    }
                }
                Ok(Some(StoreEvent::Delete { key, .. })) => {
                    if let Some(old) = self.known.remove(&key) {
                        return Ok(Some(LeaseEvent::Removed(old)));
                    }
                }
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => {
                    tracing::warn!(
                        requested,
                        compacted,
                        "lease watch fell behind compaction; listing again"
                    );
                    self.watch = None;
                    self.relist(false)?;
                }
                Err(e) => {
                    // The next call lists again and starts a new watch (e.g. after etcd
                    // restarted), reporting what changed meanwhile.
                    self.watch = None;
                    return Err(e.into());
                }
            }
            if time::passed(deadline) && self.pending.is_empty() {
                return Ok(None);
            }
        }
    }

    /// The leases as this watch currently knows them.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.known.values()
    }
}
