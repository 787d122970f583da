//! A kube-proxy-style service proxy: reads Service and EndpointSlice objects from a directory
//! (YAML or JSON, as `kubectl get -o yaml` writes them), compiles them with podnet-nat and keeps
//! the kernel in step: debounced by the minimum sync period, partial syncs, a periodic full
//! resync, conntrack cleanup, `/metrics` and `/healthz`.

mod http;
mod ipvs;
mod metrics;
mod nftables;

pub use ipvs::IpvsMode;
pub use metrics::Metrics;
pub use nftables::NftablesMode;

use podnet_nat::kube::{ClusterState, IpFamily, KubeObject, Warning, parse_objects};
use podnet_nat::proxy::NodeSettings;
use podnet_nat::proxy::sync::{Backend, IptablesSyncer};
use podnet_netns::NetNs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What one sync did, for logs and metrics.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// A full (not partial) sync.
    pub full: bool,
    /// How long it took.
    pub duration: Duration,
    /// Rules (or objects) in the kernel after it.
    pub rules: usize,
    /// Stale conntrack flows removed.
    pub conntrack_deleted: usize,
}

/// One proxy mode: how Services become kernel state.
pub trait Mode {
    /// `iptables`, `nftables` or `ipvs`.
    fn name(&self) -> &'static str;
    /// Brings the kernel in step with `state`; `full` forces a complete rewrite.
    fn sync(&mut self, state: &ClusterState, full: bool) -> Result<SyncOutcome, String>;
    /// What a sync would apply, as text (iptables-restore input, an nft script, ...).
    fn dry_run(&self, state: &ClusterState) -> String;
    /// Removes what this mode installed, and nothing another program owns. Returns what it
    /// left because something else still uses it (to be logged).
    fn cleanup(&mut self) -> Result<Vec<String>, String>;
}

/// kube-proxy's iptables mode on podnet-nat's syncer.
pub struct IptablesMode {
    syncer: IptablesSyncer,
    settings: NodeSettings,
    ns: NetNs,
    backend: Backend,
}

impl IptablesMode {
    /// The iptables mode for `settings`, applying inside `ns` with the system's
    /// `iptables-restore`.
    pub fn new(ns: NetNs, settings: NodeSettings) -> IptablesMode {
        IptablesMode {
            syncer: IptablesSyncer::new(ns.clone(), settings.clone()),
            settings,
            ns,
            backend: Backend::System,
        }
    }

    /// Applies (and cleans up) with `backend`'s programs instead (`--iptables-backend`).
    pub fn with_backend(mut self, backend: Backend) -> IptablesMode {
        self.syncer = self.syncer.with_backend(backend);
        self.backend = backend;
        self
    }
}

impl Mode for IptablesMode {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn sync(&mut self, state: &ClusterState, full: bool) -> Result<SyncOutcome, String> {
        if full {
            self.syncer.force_full_sync();
        }
        let start = Instant::now();
        let r = self.syncer.sync(state).map_err(|e| e.to_string())?;
        let rules = self
            .syncer
            .live_rule_count(podnet_nat::iptables::Table::Nat)
            .map_err(|e| format!("counting the nat rules after the sync: {e}"))?;
        Ok(SyncOutcome {
            full: r.full,
            duration: start.elapsed(),
            rules,
            conntrack_deleted: r.conntrack_deleted,
        })
    }

    fn dry_run(&self, state: &ClusterState) -> String {
        podnet_nat::proxy::iptables::compile(state, &self.settings).render()
    }

    fn cleanup(&mut self) -> Result<Vec<String>, String> {
        podnet_nat::proxy::cleanup::cleanup_iptables_mode(
            &self.ns,
            self.backend,
            self.settings.family,
        )
        .map(|r| r.kept())
        .map_err(|e| e.to_string())
    }
}

/// The objects in `dir`: every `*.yaml`, `*.yml` and `*.json` file, in name order. Problems
/// (unreadable files, malformed documents, unknown kinds) come back as warnings that name the
/// file; the rest is still used.
pub fn load_dir(dir: &Path) -> (Vec<KubeObject>, Vec<Warning>) {
    let mut objects = Vec::new();
    let mut warnings = Vec::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            warnings.push(Warning {
                object: dir.display().to_string(),
                message: e.to_string(),
            });
            return (objects, warnings);
        }
    };
    files.sort();
    for f in files {
        if !is_object_file(&f) {
            continue;
        }
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => {
                let (o, w) = parse_objects(&text, &name);
                objects.extend(o);
                warnings.extend(w.into_iter().map(|mut w| {
                    if !w.object.contains(&name) {
                        w.object = format!("{name}: {}", w.object);
                    }
                    w
                }));
            }
            Err(e) => warnings.push(Warning {
                object: name,
                message: e.to_string(),
            }),
        }
    }
    (objects, warnings)
}

/// A fingerprint of the directory's files (names, sizes, modification times).
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    // Only the files load_dir reads: anything else in the directory (a log, an editor's swap
    // file) changing must not set off a sync.
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_object_file(&e.path()))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()?))
        })
        .collect();
    v.sort();
    v
}

/// `true` for the files the config directory's objects are read from (`.yaml`, `.yml`,
/// `.json`).
fn is_object_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "yaml" | "yml" | "json")
}

/// The proxy's settings (kube-proxy's flags).
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `--config-dir`.
    pub config_dir: PathBuf,
    /// `--iptables-sync-period`: a full resync this often.
    pub sync_period: Duration,
    /// `--iptables-min-sync-period`: changes are applied at most this often.
    pub min_sync_period: Duration,
    /// `--metrics-bind-address` and `--healthz-bind-address` (one server may serve both).
    pub http: Vec<SocketAddr>,
}

/// The current state compiled from the config directory, with warnings logged.
pub fn load_state(dir: &Path, family: IpFamily) -> ClusterState {
    let (objects, warnings) = load_dir(dir);
    for w in &warnings {
        tracing::warn!("skipped {w}");
    }
    let (state, warnings) = ClusterState::from_objects(&objects, family);
    for w in &warnings {
        tracing::warn!("skipped {w}");
    }
    state
}

/// Runs the sync loop until `stop` is set.
pub fn run(
    mut mode: Box<dyn Mode>,
    opts: ProxyOptions,
    family: IpFamily,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let metrics = Arc::new(Mutex::new(Metrics::new(mode.name())));
    for addr in &opts.http {
        http::serve(*addr, metrics.clone(), stop.clone())
            .map_err(|e| format!("listening on {addr}: {e}"))?;
    }
    let mut seen = fingerprint(&opts.config_dir);
    let mut state = load_state(&opts.config_dir, family);
    let mut pending = true;
    let mut full = true;
    let mut last_sync: Option<Instant> = None;
    let mut next_full = Instant::now() + opts.sync_period;
    while !stop.load(Ordering::Relaxed) {
        let now = fingerprint(&opts.config_dir);
        if now != seen {
            seen = now;
            state = load_state(&opts.config_dir, family);
            pending = true;
        }
        if Instant::now() >= next_full {
            pending = true;
            full = true;
        }
        let allowed = last_sync.is_none_or(|t| t.elapsed() >= opts.min_sync_period);
        if pending && allowed {
            match mode.sync(&state, full) {
                Ok(o) => {
                    tracing::info!(
                        full = o.full,
                        ms = o.duration.as_secs_f64() * 1e3,
                        rules = o.rules,
                        services = state.services.len(),
                        conntrack_deleted = o.conntrack_deleted,
                        "synced"
                    );
                    metrics
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(&o, state.services.len());
                    pending = false;
                    if full {
                        next_full = Instant::now() + opts.sync_period;
                    }
                    full = false;
                }
                Err(e) => {
                    tracing::error!("sync failed: {e}; a full sync follows");
                    metrics.lock().unwrap_or_else(|p| p.into_inner()).failures += 1;
                    full = true;
                }
            }
            last_sync = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_files_change_the_fingerprint() {
        let dir = std::env::temp_dir().join(format!("podnet-kp-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("services.yaml"), "kind: List\nitems: []\n").unwrap();
        let before = fingerprint(&dir);
        // kube-proxy's own log in the directory (podnet-cluster puts it there) is no change.
        std::fs::write(dir.join("kube-proxy.log"), "synced\n").unwrap();
        std::fs::write(dir.join(".services.yaml.swp"), "x").unwrap();
        assert_eq!(fingerprint(&dir), before);
        std::fs::write(dir.join("slices.json"), "{}").unwrap();
        assert_ne!(fingerprint(&dir), before);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
