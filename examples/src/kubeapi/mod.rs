//! The Kubernetes API for podnet's daemons, through kube-rs (`kube` with `k8s-openapi`).
//!
//! - [`KubeOptions`] / [`Kube::connect`]: the client config as client-go's
//!   `BuildConfigFromFlags` builds it: a kubeconfig file (`--kubeconfig`), a server URL that
//!   overrides the kubeconfig's (`--master`), or, with neither, the in-cluster config (the
//!   service account's token and CA, `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`;
//!   the service account's directory moved by [`SERVICE_ACCOUNT_DIR_VAR`]).
//! - [`Watched`]: a list/watch cache with client-go reflector semantics, driven by
//!   kube-runtime's watcher: an initial list (paged, [`WatchOptions::page_size`]), a watch
//!   from the list's resourceVersion, bookmarks (the resourceVersion moves on without events,
//!   so a dropped watch resumes from there), a fresh list when the server answers 410 Gone,
//!   exponential backoff on errors (client-go's: 800 ms doubling to 30 s, with jitter), and a
//!   synced flag that is set only once the first list is complete.
//!
//! The daemons are synchronous; [`Kube`] runs the async client on a runtime of its own (one
//! worker thread) and offers blocking calls.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why talking to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The client config could not be built (kubeconfig, in-cluster environment, URL).
    #[error("kubernetes client config: {0}")]
    Config(String),
    /// A request failed; the message is the server's `Status` or the transport error.
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The runtime for the client could not be started.
    #[error("kubernetes client runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Where the API server is and how to authenticate (kube-proxy's `--kubeconfig`/`--master`,
/// flanneld's `--kubeconfig-file`/`--kube-api-url`).
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// A kubeconfig file; its current context is used.
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL; overrides the kubeconfig's server.
    pub master: Option<String>,
}

impl KubeOptions {
    /// The client config these options describe.
    pub async fn config(&self) -> Result<kube::Config, KubeError> {
        let master = match &self.master {
            Some(m) => Some(
                m.parse()
                    .map_err(|e| KubeError::Config(format!("API server URL {m:?}: {e}")))?,
            ),
            None => None,
        };
        let mut config = match (&self.kubeconfig, master) {
            (Some(path), master) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
                let mut c = kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
                if let Some(m) = master {
                    c.cluster_url = m;
                }
                c
            }
            (None, Some(m)) => kube::Config::new(m),
            (None, None) => in_cluster_config(&service_account_dir())
                .await
                .map_err(|e| {
                    KubeError::Config(format!(
                        "no kubeconfig and no API server URL given, and the in-cluster config \
                         failed: {e}"
                    ))
                })?,
        };
        // Watches are long polls: no read timeout shorter than the watch's own.
        config.read_timeout = None;
        Ok(config)
    }
}

/// Where a pod finds its service account's token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The environment variable that moves [`SERVICE_ACCOUNT_DIR`] (for tests, and for a
/// service account's files mounted elsewhere).
pub const SERVICE_ACCOUNT_DIR_VAR: &str = "PODNET_SERVICE_ACCOUNT_DIR";

/// The service account directory: [`SERVICE_ACCOUNT_DIR_VAR`] when set, else
/// [`SERVICE_ACCOUNT_DIR`].
pub fn service_account_dir() -> PathBuf {
    std::env::var_os(SERVICE_ACCOUNT_DIR_VAR)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR), PathBuf::from)
}

/// The in-cluster config as client-go's `InClusterConfig` builds it: the API server at
/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (both must be set), the
/// service account's `token` (re-read as it rotates) and `ca.crt` from `dir`, its
/// `namespace` as the default one.
async fn in_cluster_config(dir: &std::path::Path) -> Result<kube::Config, String> {
    use kube::config::{
        AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
        NamedContext,
    };
    let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Err(
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined".to_owned(),
        );
    };
    if host.is_empty() || port.is_empty() {
        return Err("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are empty".to_owned());
    }
    let port: u16 = port
        .parse()
        .map_err(|e| format!("KUBERNETES_SERVICE_PORT {port:?}: {e}"))?;
    let server = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => format!("https://{}", std::net::SocketAddr::new(ip, port)),
        Err(_) => format!("https://{host}:{port}"),
    };
    let token = dir.join("token");
    let ca = dir.join("ca.crt");
    // client-go reads the token at once: a missing one is an error now, not at each request.
    std::fs::read(&token).map_err(|e| format!("{}: {e}", token.display()))?;
    std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let name = "in-cluster".to_owned();
    let file = Kubeconfig {
        clusters: vec![NamedCluster {
            name: name.clone(),
            cluster: Some(Cluster {
                server: Some(server),
                certificate_authority: Some(ca.display().to_string()),
                ..Cluster::default()
            }),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: name.clone(),
            auth_info: Some(AuthInfo {
                token_file: Some(token.display().to_string()),
                ..AuthInfo::default()
            }),
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Some(Context {
                cluster: name.clone(),
                user: Some(name.clone()),
                namespace,
                ..Context::default()
            }),
        }],
        current_context: Some(name),
        ..Kubeconfig::default()
    };
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// A connected client and the runtime it runs on; blocking calls for synchronous daemons.
pub struct Kube {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube").finish_non_exhaustive()
    }
}

impl Kube {
    /// Builds the config and the client (no request is made yet).
    pub fn connect(opts: &KubeOptions) -> Result<Kube, KubeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kube-client")
            .enable_all()
            .build()?;
        let client = rt.block_on(async {
            let config = opts.config().await?;
            kube::Client::try_from(config).map_err(KubeError::Api)
        })?;
        Ok(Kube { rt, client })
    }

    /// The async client, for callers with their own tasks on [`Kube::runtime`].
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The runtime the client's connections live on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Reads a Node.
    pub fn get_node(&self, name: &str) -> Result<Node, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        Ok(self.rt.block_on(api.get(name))?)
    }

    /// Patches a Node's `status` subresource (where flannel writes its annotations, and the
    /// `NetworkUnavailable` condition) with a strategic merge patch.
    pub fn patch_node_status(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<Node, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        Ok(self.rt.block_on(api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        ))?)
    }

    /// Patches a Node with a strategic merge patch.
    pub fn patch_node(&self, name: &str, patch: &serde_json::Value) -> Result<Node, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        Ok(self
            .rt
            .block_on(api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)))?)
    }

    /// Starts a list/watch cache of `api`'s objects.
    pub fn watch<K>(&self, api: Api<K>, opts: WatchOptions) -> Watched<K>
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        Watched::start(self.rt.handle(), api, opts)
    }
}

/// What a [`Watched`] lists and watches.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `fieldSelector`, e.g. `metadata.name=node-1`.
    pub fields: Option<String>,
    /// `labelSelector`.
    pub labels: Option<String>,
    /// Objects per page of the initial list (`limit`); `None`: kube-runtime's default (500).
    pub page_size: Option<u32>,
    /// The watch's `timeoutSeconds` (after which it is re-opened from the last
    /// resourceVersion); `None`: kube-runtime's default (290 s).
    pub timeout_secs: Option<u32>,
    /// Told (with a `()`) after each change is queued, so that one thread can wait for the
    /// changes of several caches.
    pub wake: Option<mpsc::Sender<()>>,
}

/// A change to the cache of a [`Watched`].
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// A (re)list completed: the whole set, replacing what was there.
    Synced(Vec<K>),
    /// An object was added or changed.
    Applied(K),
    /// An object was deleted.
    Deleted(K),
}

/// Counters of what the watcher went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Completed lists (the first one and every relist, e.g. after 410 Gone).
    pub lists: u64,
    /// Errors seen (each followed by a backoff).
    pub errors: u64,
    /// The last error, as text.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Cache<K> {
    objects: BTreeMap<String, K>,
    stats: WatchStats,
}

/// A list/watch cache of one kind of object, kept by a task on the client's runtime; stops
/// when dropped.
pub struct Watched<K> {
    cache: Arc<(Mutex<Cache<K>>, Condvar)>,
    synced: Arc<AtomicBool>,
    changes: mpsc::Receiver<Change<K>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Debug for Watched<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn key_of<K: kube::Resource>(o: &K) -> String {
    let m = o.meta();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

impl<K> Watched<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts the watcher on `rt`.
    pub fn start(rt: &tokio::runtime::Handle, api: Api<K>, opts: WatchOptions) -> Watched<K> {
        let mut config = watcher::Config::default();
        if let Some(f) = &opts.fields {
            config = config.fields(f);
        }
        if let Some(l) = &opts.labels {
            config = config.labels(l);
        }
        if let Some(p) = opts.page_size {
            config = config.page_size(p);
        }
        if let Some(t) = opts.timeout_secs {
            config = config.timeout(t);
        }
        let cache = Arc::new((
            Mutex::new(Cache {
                objects: BTreeMap::new(),
                stats: WatchStats::default(),
            }),
            Condvar::new(),
        ));
        let synced = Arc::new(AtomicBool::new(false));
        let (tx, changes) = mpsc::channel();
        let (c, s) = (cache.clone(), synced.clone());
        let wake = opts.wake.clone();
        let task = rt.spawn(async move {
            let mut stream = watcher(api, config).default_backoff().boxed();
            // The objects of a list in progress; they replace the cache at InitDone.
            let mut listing: Option<BTreeMap<String, K>> = None;
            while let Some(item) = stream.next().await {
                let (lock, cv) = &*c;
                let mut cache = lock.lock().unwrap_or_else(|e| e.into_inner());
                let change = match item {
                    Ok(watcher::Event::Init) => {
                        listing = Some(BTreeMap::new());
                        None
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        listing
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key_of(&o), o);
                        None
                    }
                    Ok(watcher::Event::InitDone) => {
                        cache.objects = listing.take().unwrap_or_default();
                        cache.stats.lists += 1;
                        Some(Change::Synced(cache.objects.values().cloned().collect()))
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        cache.objects.insert(key_of(&o), o.clone());
                        Some(Change::Applied(o))
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        cache.objects.remove(&key_of(&o));
                        Some(Change::Deleted(o))
                    }
                    Err(e) => {
                        tracing::warn!("watching {}: {e}; backing off", std::any::type_name::<K>());
                        cache.stats.errors += 1;
                        cache.stats.last_error = Some(e.to_string());
                        None
                    }
                };
                drop(cache);
                let synced = matches!(change, Some(Change::Synced(_)));
                if let Some(ch) = change {
                    if tx.send(ch).is_err() {
                        return;
                    }
                }
                // Synced once the list's change is queued: a consumer that waited for it and
                // then drains the queue sees no stale list after its snapshot.
                if synced {
                    s.store(true, Ordering::SeqCst);
                }
                if let Some(w) = &wake {
                    // Nobody waiting any more is no reason to stop the cache.
                    let _ = w.send(());
                }
                cv.notify_all();
            }
        });
        Watched {
            cache,
            synced,
            changes,
            task,
        }
    }
}

impl<K: Clone> Watched<K> {
    /// Whether the first list has completed (it stays set through later relists, as
    /// client-go's `HasSynced`).
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// The flag behind [`Watched::is_synced`], for health checks.
    pub fn synced_flag(&self) -> Arc<AtomicBool> {
        self.synced.clone()
    }

    /// Waits until the first list has completed; `false` when `timeout` passed first.
    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.cache;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_synced() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = cv
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The cached objects, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<K> {
        let (lock, _) = &*self.cache;
        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
        g.objects.values().cloned().collect()
    }

    /// Drops the changes queued so far (a caller about to take a [`Watched::snapshot`] that
    /// covers them).
    pub fn drain_changes(&self) {
        while self.changes.try_recv().is_ok() {}
    }

    /// The next change, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Change<K>> {
        self.changes.recv_timeout(timeout).ok()
    }

    /// What the watcher went through so far.
    pub fn stats(&self) -> WatchStats {
        let (lock, _) = &*self.cache;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stats.clone()
    }
}

impl<K> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
