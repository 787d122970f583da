//! The etcd v3 store (feature `etcd`): TTLs are etcd leases, compare-and-swap is a
//! transaction, watches are etcd prefix watches.
//!
//! The API stays synchronous: the store owns a small tokio runtime (one worker thread) that
//! drives the gRPC connection, and each call blocks on it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use tokio::runtime::Runtime;

use super::{KeyValue, Listing, Store, StoreEvent, StoreWatch};
use crate::error::StoreError;

/// A store on an etcd v3 cluster.
///
/// ```no_run
/// use podnet_ipam::{EtcdStore, Store};
/// let store = EtcdStore::connect(&["http://127.0.0.1:2379"])?;
/// let listing = store.list("/coreos.com/network/subnets/")?;
/// println!("{} leases at revision {}", listing.kvs.len(), listing.revision);
/// # Ok::<(), podnet_ipam::StoreError>(())
/// ```
#[derive(Clone)]
pub struct EtcdStore {
    rt: Arc<Runtime>,
    client: Client,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

fn etcd_err(op: &'static str, key: &str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    let key = key.to_string();
    move |source| StoreError::Etcd { op, key, source }
}

fn ttl_secs(ttl: Duration) -> i64 {
    // etcd leases count whole seconds; round up so a key never lives shorter than asked.
    let s = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(s.max(1)).unwrap_or(i64::MAX)
}

fn rev(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:port`).
    pub fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, StoreError> {
        Self::connect_inner(endpoints, None)
    }

    /// Connects with etcd user authentication (flannel's `--etcd-username`/`--etcd-password`).
    pub fn connect_with_user<S: AsRef<str>>(
        endpoints: &[S],
        user: &str,
        password: &str,
    ) -> Result<Self, StoreError> {
        Self::connect_inner(endpoints, Some((user, password)))
    }

    fn connect_inner<S: AsRef<str>>(
        endpoints: &[S],
        user: Option<(&str, &str)>,
    ) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("podnet-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("etcd client runtime: {e}")))?;
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15));
        if let Some((name, password)) = user {
            opts = opts.with_user(name, password);
        }
        let joined = endpoints.join(",");
        let client = rt
            .block_on(Client::connect(endpoints, Some(opts)))
            .map_err(etcd_err("connect", &joined))?;
        Ok(EtcdStore {
            rt: Arc::new(rt),
            client,
        })
    }

    fn grant(
        &self,
        client: &mut Client,
        ttl: Option<Duration>,
        key: &str,
    ) -> Result<i64, StoreError> {
        match ttl {
            None => Ok(0),
            Some(t) => {
                let resp = self
                    .rt
                    .block_on(client.lease_grant(ttl_secs(t), None))
                    .map_err(etcd_err("lease grant", key))?;
                Ok(resp.id())
            }
        }
    }

    fn revoke(&self, client: &mut Client, lease: i64) {
        if lease != 0 {
            let _ = self.rt.block_on(client.lease_revoke(lease));
        }
    }

    /// Put options: the lease (if any), and the previous value back so that the lease the
    /// key leaves can be revoked instead of lingering until its TTL runs out.
    fn put_options(lease: i64) -> Option<PutOptions> {
        let opts = PutOptions::new().with_prev_key();
        Some(if lease == 0 {
            opts
        } else {
            opts.with_lease(lease)
        })
    }

    fn revoke_replaced(
        &self,
        client: &mut Client,
        prev: Option<&etcd_client::KeyValue>,
        lease: i64,
    ) {
        if let Some(old) = prev.map(|kv| kv.lease()).filter(|&l| l != 0 && l != lease) {
            self.revoke(client, old);
        }
    }

    /// Turns etcd key-values into ours, asking etcd for the remaining TTL of each lease once.
    fn convert(&self, client: &mut Client, kvs: &[etcd_client::KeyValue]) -> Vec<KeyValue> {
        let mut ttls: HashMap<i64, Option<SystemTime>> = HashMap::new();
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Ok(key) = kv.key_str() else {
                tracing::warn!(key = ?String::from_utf8_lossy(kv.key()), "skipping etcd key that is not UTF-8");
                continue;
            };
            let lease = kv.lease();
            let expires = if lease == 0 {
                None
            } else {
                *ttls.entry(lease).or_insert_with(|| {
                    let now = SystemTime::now();
                    match self.rt.block_on(client.lease_time_to_live(lease, None)) {
                        Ok(r) => {
                            Some(now + Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0)))
                        }
                        Err(e) => {
                            tracing::warn!(key, lease, error = %e, "could not read lease TTL");
                            Some(now)
                        }
                    }
                })
            };
            out.push(KeyValue {
                key: key.to_string(),
                value: kv.value().to_vec(),
                mod_revision: rev(kv.mod_revision()),
                expires,
            });
        }
        out
    }

    fn cas_put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        compare: Compare,
    ) -> Result<Option<u64>, StoreError> {
        let mut client = self.client.clone();
        let lease = self.grant(&mut client, ttl, key)?;
        let txn =
            Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, value, Self::put_options(lease))]);
        let resp = match self.rt.block_on(client.txn(txn)) {
            Ok(r) => r,
            Err(e) => {
                self.revoke(&mut client, lease);
                return Err(etcd_err("txn", key)(e));
            }
        };
        if !resp.succeeded() {
            self.revoke(&mut client, lease);
            return Ok(None);
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Put(p) = op {
                self.revoke_replaced(&mut client, p.prev_key(), lease);
            }
        }
        Ok(Some(resp.header().map(|h| rev(h.revision())).unwrap_or(0)))
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut client = self.client.clone();
        let resp = self
            .rt
            .block_on(client.get(key, None))
            .map_err(etcd_err("get", key))?;
        Ok(self.convert(&mut client, resp.kvs()).into_iter().next())
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let mut client = self.client.clone();
        let resp = self
            .rt
            .block_on(client.get(prefix, Some(GetOptions::new().with_prefix())))
            .map_err(etcd_err("get", prefix))?;
        let revision = resp.header().map(|h| rev(h.revision())).unwrap_or(0);
        let mut kvs = self.convert(&mut client, resp.kvs());
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { kvs, revision })
    }

    fn create(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        self.cas_put(key, value, ttl, Compare::version(key, CompareOp::Equal, 0))
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let r = i64::try_from(revision).unwrap_or(i64::MAX);
        self.cas_put(
            key,
            value,
            ttl,
            Compare::mod_revision(key, CompareOp::Equal, r),
        )
    }

    fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError> {
        let mut client = self.client.clone();
        let lease = self.grant(&mut client, ttl, key)?;
        match self
            .rt
            .block_on(client.put(key, value, Self::put_options(lease)))
        {
            Ok(r) => {
                self.revoke_replaced(&mut client, r.prev_key(), lease);
                Ok(r.header().map(|h| rev(h.revision())).unwrap_or(0))
            }
            Err(e) => {
                self.revoke(&mut client, lease);
                Err(etcd_err("put", key)(e))
            }
        }
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut client = self.client.clone();
        let resp = self
            .rt
            .block_on(client.delete(key, None))
            .map_err(etcd_err("delete", key))?;
        Ok(resp.deleted() > 0)
    }

    fn watch(&self, prefix: &str, start_revision: u64) -> Result<Box<dyn StoreWatch>, StoreError> {
        let mut client = self.client.clone();
        let start = i64::try_from(start_revision.max(1)).unwrap_or(i64::MAX);
        let opts = WatchOptions::new().with_prefix().with_start_revision(start);
        let stream = self
            .rt
            .block_on(client.watch(prefix, Some(opts)))
            .map_err(etcd_err("watch", prefix))?;
        Ok(Box::new(EtcdWatch {
            store: self.clone(),
            prefix: prefix.to_string(),
            start_revision: start_revision.max(1),
            stream,
            pending: VecDeque::new(),
        }))
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let mut client = self.client.clone();
        let r = i64::try_from(revision).unwrap_or(i64::MAX);
        self.rt
            .block_on(client.compact(r, None))
            .map_err(etcd_err("compact", ""))?;
        Ok(())
    }
}

struct EtcdWatch {
    store: EtcdStore,
    prefix: String,
    start_revision: u64,
    stream: WatchStream,
    pending: VecDeque<StoreEvent>,
}

impl StoreWatch for EtcdWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<StoreEvent>, StoreError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rt = self.store.rt.clone();
            let msg = rt
                .block_on(async { tokio::time::timeout_at(deadline, self.stream.message()).await });
            let resp = match msg {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(etcd_err("watch", &self.prefix)(e)),
                Ok(Ok(None)) => {
                    return Err(StoreError::Backend(format!(
                        "etcd watch on {} ended",
                        self.prefix
                    )));
                }
                Ok(Ok(Some(r))) => r,
            };
            if resp.compact_revision() != 0 {
                return Err(StoreError::Compacted {
                    requested: self.start_revision,
                    compacted: rev(resp.compact_revision()),
                });
            }
            if resp.canceled() {
                return Err(StoreError::Backend(format!(
                    "etcd canceled the watch on {}: {}",
                    self.prefix,
                    resp.cancel_reason()
                )));
            }
            let mut client = self.store.client.clone();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                match ev.event_type() {
                    EventType::Delete => {
                        let Ok(key) = kv.key_str() else { continue };
                        self.pending.push_back(StoreEvent::Delete {
                            key: key.to_string(),
                            revision: rev(kv.mod_revision()),
                        });
                    }
                    EventType::Put => {
                        if let Some(kv) = self
                            .store
                            .convert(&mut client, std::slice::from_ref(kv))
                            .into_iter()
                            .next()
                        {
                            self.pending.push_back(StoreEvent::Put(kv));
                        }
                    }
                }
            }
            if let Some(last) = self.pending.back() {
                self.start_revision = last.revision() + 1;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
        }
    }
}
