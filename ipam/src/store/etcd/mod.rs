//! The etcd v3 store (feature `etcd`): TTLs are etcd leases, compare-and-swap is a
//! transaction, watches are etcd prefix watches.
//!
//! The API stays synchronous: the store owns a small tokio runtime (one worker thread) that
//! drives the gRPC connection, and each call blocks on it.

mod client;
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod pb;
mod rpc;

pub use client::{EtcdError, EtcdTls};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use self::client::Client;
use self::pb::WatchRequest;
use self::pb::compare::{CompareResult, CompareTarget, TargetUnion};
use self::pb::event::EventType;
use self::pb::request_op::Request;
use self::pb::response_op::Response;
use self::pb::watch_request::RequestUnion;
use super::{KeyValue, Listing, Store, StoreEvent, StoreWatch};
use crate::error::StoreError;

/// How to reach etcd: its endpoints, TLS and user (flannel's `--etcd-endpoints`,
/// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`, `--etcd-username`,
/// `--etcd-password`). `Debug` does not show the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The endpoints, `http://host:port` or `https://host:port`; the first that answers is used.
    pub endpoints: Vec<String>,
    /// TLS for `https://` endpoints.
    pub tls: EtcdTls,
    /// The etcd user, when etcd has authentication on.
    pub username: Option<String>,
    /// The user's password.
    pub password: Option<String>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

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

fn etcd_err(op: &'static str, key: &str) -> impl FnOnce(EtcdError) -> StoreError {
    let key = key.to_string();
    move |source| StoreError::Etcd { op, key, source }
}

/// etcd's longest lease (`MaxLeaseTTL`, 9,000,000,000 s): a longer TTL is refused.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

fn ttl_secs(ttl: Duration) -> i64 {
    // etcd leases count whole seconds; round up so a key never lives shorter than asked, and
    // cap at etcd's maximum (about 285 years) so any Duration works.
    let s = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(s.max(1))
        .unwrap_or(MAX_LEASE_TTL)
        .min(MAX_LEASE_TTL)
}

fn rev(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn header_rev(h: Option<&pb::ResponseHeader>) -> u64 {
    h.map(|h| rev(h.revision)).unwrap_or(0)
}

/// The end of the key range that holds every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented, or `\0` (the
/// whole keyspace) when every byte is 0xff.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Connection and request time limits of [`EtcdStore::connect`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl EtcdStore {
    /// Connects to the first of the given endpoints (`http://host:port`) that answers.
    pub fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, StoreError> {
        Self::connect_inner(endpoints, &EtcdTls::default(), None)
    }

    /// Connects with etcd user authentication (flannel's `--etcd-username`/`--etcd-password`).
    pub fn connect_with_user<S: AsRef<str>>(
        endpoints: &[S],
        user: &str,
        password: &str,
    ) -> Result<Self, StoreError> {
        Self::connect_with(&EtcdConfig {
            endpoints: endpoints.iter().map(|e| e.as_ref().to_string()).collect(),
            username: Some(user.to_string()),
            password: Some(password.to_string()),
            ..EtcdConfig::default()
        })
    }

    /// Connects as `config` says: TLS for `https://` endpoints (a CA, a client certificate),
    /// and a user. A TLS file that cannot be read or holds no PEM is named in the error before
    /// any connection is tried; a failed handshake (a CA that did not sign etcd's certificate,
    /// an expired certificate, a client certificate etcd refuses) is an
    /// [`EtcdError::Unreachable`] whose reason is the TLS library's.
    ///
    /// ```no_run
    /// use podnet_ipam::{EtcdConfig, EtcdStore, EtcdTls};
    /// let store = EtcdStore::connect_with(&EtcdConfig {
    ///     endpoints: vec!["https://127.0.0.1:2379".into()],
    ///     tls: EtcdTls {
    ///         ca_file: Some("/etc/etcd/ca.pem".into()),
    ///         cert_file: Some("/etc/etcd/client.pem".into()),
    ///         key_file: Some("/etc/etcd/client-key.pem".into()),
    ///     },
    ///     ..EtcdConfig::default()
    /// })?;
    /// # Ok::<(), podnet_ipam::StoreError>(())
    /// ```
    pub fn connect_with(config: &EtcdConfig) -> Result<Self, StoreError> {
        let user = match (&config.username, &config.password) {
            (Some(u), p) if !u.is_empty() => Some((u.clone(), p.clone().unwrap_or_default())),
            (_, Some(p)) if !p.is_empty() => {
                return Err(StoreError::Etcd {
                    op: "connect",
                    key: config.endpoints.join(","),
                    source: EtcdError::Settings(
                        "a password (--etcd-password) without a user name (--etcd-username)".into(),
                    ),
                });
            }
            _ => None,
        };
        Self::connect_inner(&config.endpoints, &config.tls, user)
    }

    fn connect_inner<S: AsRef<str>>(
        endpoints: &[S],
        tls: &EtcdTls,
        user: Option<(String, String)>,
    ) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("podnet-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("etcd client runtime: {e}")))?;
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        let joined = endpoints.join(",");
        let client = rt
            .block_on(Client::connect(
                &endpoints,
                tls,
                user,
                CONNECT_TIMEOUT,
                REQUEST_TIMEOUT,
            ))
            .map_err(etcd_err("connect", &joined))?;
        Ok(EtcdStore {
            rt: Arc::new(rt),
            client,
        })
    }

    /// A lease of `ttl` (0, no lease, when there is no TTL).
    async fn grant(&self, ttl: Option<Duration>, key: &str) -> Result<i64, StoreError> {
        let Some(t) = ttl else { return Ok(0) };
        let req = pb::LeaseGrantRequest {
            ttl: ttl_secs(t),
            id: 0,
        };
        let resp = self
            .client
            .retry_auth(|| {
                let mut lease = self.client.rpc();
                async move { lease.lease_grant(req).await }
            })
            .await
            .map_err(etcd_err("lease grant", key))?
            .into_inner();
        Ok(resp.id)
    }

    async fn revoke(&self, lease: i64) {
        if lease != 0 {
            let _ = self
                .client
                .retry_auth(|| {
                    let mut c = self.client.rpc();
                    async move { c.lease_revoke(pb::LeaseRevokeRequest { id: lease }).await }
                })
                .await;
        }
    }

    /// Revokes the lease the key's previous value held when the new value does not hold it,
    /// instead of letting it linger until its TTL runs out.
    async fn revoke_replaced(&self, prev: Option<&pb::KeyValue>, lease: i64) {
        if let Some(old) = prev.map(|kv| kv.lease).filter(|&l| l != 0 && l != lease) {
            self.revoke(old).await;
        }
    }

    /// The time-to-live left of a lease, as the moment it runs out.
    async fn expiry(&self, key: &str, lease: i64) -> SystemTime {
        let now = SystemTime::now();
        let resp = self
            .client
            .retry_auth(|| {
                let mut c = self.client.rpc();
                async move {
                    c.lease_time_to_live(pb::LeaseTimeToLiveRequest {
                        id: lease,
                        keys: false,
                    })
                    .await
                }
            })
            .await;
        match resp {
            Ok(r) => crate::time::expiry(
                now,
                Duration::from_secs(u64::try_from(r.into_inner().ttl).unwrap_or(0)),
            ),
            Err(e) => {
                tracing::warn!(key, lease, error = %e, "could not read lease TTL");
                now
            }
        }
    }

    /// Turns etcd key-values into ours, asking etcd for the remaining TTL of each lease once.
    async fn convert(&self, kvs: &[pb::KeyValue]) -> Vec<KeyValue> {
        let mut ttls: HashMap<i64, SystemTime> = HashMap::new();
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let Ok(key) = std::str::from_utf8(&kv.key) else {
                tracing::warn!(key = ?String::from_utf8_lossy(&kv.key), "skipping etcd key that is not UTF-8");
                continue;
            };
            let expires = if kv.lease == 0 {
                None
            } else if let Some(t) = ttls.get(&kv.lease) {
                Some(*t)
            } else {
                let t = self.expiry(key, kv.lease).await;
                ttls.insert(kv.lease, t);
                Some(t)
            };
            out.push(KeyValue {
                key: key.to_string(),
                value: kv.value.clone(),
                mod_revision: rev(kv.mod_revision),
                expires,
            });
        }
        out
    }

    /// Puts `key` when `compare` holds, in one transaction: `Some(revision)`, or `None` when
    /// the comparison failed.
    fn cas_put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        compare: pb::Compare,
    ) -> Result<Option<u64>, StoreError> {
        self.rt.block_on(async {
            let lease = self.grant(ttl, key).await?;
            let txn = pb::TxnRequest {
                compare: vec![compare],
                success: vec![pb::RequestOp {
                    request: Some(Request::RequestPut(put_request(key, value, lease))),
                }],
                failure: vec![],
            };
            let resp = self
                .client
                .retry_auth(|| {
                    let mut kv = self.client.rpc();
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                })
                .await;
            let resp = match resp {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    self.revoke(lease).await;
                    return Err(etcd_err("txn", key)(e));
                }
            };
            if !resp.succeeded {
                self.revoke(lease).await;
                return Ok(None);
            }
            for op in &resp.responses {
                if let Some(Response::ResponsePut(p)) = &op.response {
                    self.revoke_replaced(p.prev_kv.as_ref(), lease).await;
                }
            }
            Ok(Some(header_rev(resp.header.as_ref())))
        })
    }

    async fn range(&self, key: &str, prefix: bool) -> Result<pb::RangeResponse, StoreError> {
        let req = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: if prefix {
                prefix_end(key.as_bytes())
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        Ok(self
            .client
            .retry_auth(|| {
                let mut kv = self.client.rpc();
                let req = req.clone();
                async move { kv.range(req).await }
            })
            .await
            .map_err(etcd_err("get", key))?
            .into_inner())
    }
}

/// A put that returns the previous value, so that the lease it held can be revoked.
fn put_request(key: &str, value: &[u8], lease: i64) -> pb::PutRequest {
    pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        lease,
        prev_kv: true,
    }
}

fn compare(key: &str, target: CompareTarget, value: TargetUnion) -> pb::Compare {
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(value),
        range_end: Vec::new(),
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.rt.block_on(async {
            let resp = self.range(key, false).await?;
            Ok(self.convert(&resp.kvs).await.into_iter().next())
        })
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.rt.block_on(async {
            let resp = self.range(prefix, true).await?;
            let revision = header_rev(resp.header.as_ref());
            let mut kvs = self.convert(&resp.kvs).await;
            kvs.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(Listing { kvs, revision })
        })
    }

    fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        // Version 0: the key does not exist.
        let cmp = compare(key, CompareTarget::Version, TargetUnion::Version(0));
        self.cas_put(key, value, ttl, cmp)
    }

    fn replace_if(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        let r = i64::try_from(revision).unwrap_or(i64::MAX);
        let cmp = compare(key, CompareTarget::Mod, TargetUnion::ModRevision(r));
        self.cas_put(key, value, ttl, cmp)
    }

    fn replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.rt.block_on(async {
            let lease = self.grant(ttl, key).await?;
            let req = put_request(key, value, lease);
            let resp = self
                .client
                .retry_auth(|| {
                    let mut kv = self.client.rpc();
                    let req = req.clone();
                    async move { kv.put(req).await }
                })
                .await;
            match resp {
                Ok(r) => {
                    let r = r.into_inner();
                    self.revoke_replaced(r.prev_kv.as_ref(), lease).await;
                    Ok(header_rev(r.header.as_ref()))
                }
                Err(e) => {
                    self.revoke(lease).await;
                    Err(etcd_err("put", key)(e))
                }
            }
        })
    }

    fn del(&self, key: &str) -> Result<bool, StoreError> {
        let req = pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = self
            .rt
            .block_on(self.client.retry_auth(|| {
                let mut kv = self.client.rpc();
                let req = req.clone();
                async move { kv.delete_range(req).await }
            }))
            .map_err(etcd_err("delete", key))?;
        Ok(resp.into_inner().deleted > 0)
    }

    fn watch(&self, prefix: &str, start_revision: u64) -> Result<Box<dyn StoreWatch>, StoreError> {
        let start = i64::try_from(start_revision.max(1)).unwrap_or(i64::MAX);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision: start,
                ..Default::default()
            })),
        };
        // The sender stays with the watch: dropping it would end the request stream, and etcd
        // would close the watch.
        let (requests, rx) = mpsc::channel(1);
        let stream = self
            .rt
            .block_on(async {
                requests.send(create).await.map_err(|_| EtcdError::Status {
                    code: "Cancelled".into(),
                    message: "watch request stream closed".into(),
                })?;
                // A token that expired gets no second chance here: the stream carries it.
                self.client.watch(rx).await
            })
            .map_err(etcd_err("watch", prefix))?;
        Ok(Box::new(EtcdWatch {
            store: self.clone(),
            prefix: prefix.to_string(),
            start_revision: start_revision.max(1),
            _requests: requests,
            stream,
            pending: VecDeque::new(),
        }))
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        let r = i64::try_from(revision).unwrap_or(i64::MAX);
        self.rt
            .block_on(self.client.retry_auth(|| {
                let mut kv = self.client.rpc();
                async move {
                    kv.compact(pb::CompactionRequest {
                        revision: r,
                        physical: false,
                    })
                    .await
                }
            }))
            .map_err(etcd_err("compact", ""))?;
        Ok(())
    }
}

struct EtcdWatch {
    store: EtcdStore,
    prefix: String,
    start_revision: u64,
    _requests: mpsc::Sender<WatchRequest>,
    stream: tonic::Streaming<pb::WatchResponse>,
    pending: VecDeque<StoreEvent>,
}

impl StoreWatch for EtcdWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<StoreEvent>, StoreError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        // No deadline when the wait is longer than the clock can count.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let rt = self.store.rt.clone();
        loop {
            // `Streaming::message` keeps its state in the stream, so a timeout loses nothing.
            let msg = rt.block_on(async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, self.stream.message()).await,
                    None => Ok(self.stream.message().await),
                }
            });
            let resp = match msg {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(etcd_err("watch", &self.prefix)(e.into())),
                Ok(Ok(None)) => {
                    return Err(StoreError::Backend(format!(
                        "etcd watch on {} ended",
                        self.prefix
                    )));
                }
                Ok(Ok(Some(r))) => r,
            };
            if resp.compact_revision != 0 {
                return Err(StoreError::Compacted {
                    requested: self.start_revision,
                    compacted: rev(resp.compact_revision),
                });
            }
            if resp.canceled {
                return Err(StoreError::Backend(format!(
                    "etcd canceled the watch on {}: {}",
                    self.prefix, resp.cancel_reason
                )));
            }
            for ev in &resp.events {
                let Some(kv) = &ev.kv else { continue };
                if ev.r#type == EventType::Delete as i32 {
                    let Ok(key) = std::str::from_utf8(&kv.key) else {
                        continue;
                    };
                    self.pending.push_back(StoreEvent::Delete {
                        key: key.to_string(),
                        revision: rev(kv.mod_revision),
                    });
                } else if let Some(kv) = rt
                    .block_on(self.store.convert(std::slice::from_ref(kv)))
                    .into_iter()
                    .next()
                {
                    self.pending.push_back(StoreEvent::Put(kv));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/coreos.com/"), b"/coreos.com0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(86400)), 86400);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::MAX), MAX_LEASE_TTL);
    }
}
