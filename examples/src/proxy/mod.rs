//! A kube-proxy-style service proxy: reads Service and EndpointSlice objects (and this node's
//! Node) from a directory (YAML or JSON, as `kubectl get -o yaml` writes them) or from the
//! API server ([`input`]), compiles them with podnet-nat and keeps
//! the kernel in step: debounced by the minimum sync period, partial syncs, a periodic full
//! resync, conntrack cleanup, `/metrics`, `/healthz` and `/livez` that turn 503 when syncs
//! fall behind (upstream's proxier health), and the Services' health-check node ports.

pub mod config;
pub mod flags;
mod health;
mod http;
pub mod input;
mod ipvs;
#[cfg(feature = "kube")]
pub mod kube_input;
mod metrics;
mod nftables;
pub mod node_addrs;
pub mod service_health;
mod watch;

pub use health::ProxierHealth;
pub use input::{FileInput, Input, InputRead, TriggerTimes};
pub use ipvs::IpvsMode;
#[cfg(feature = "kube")]
pub use kube_input::KubeInput;
pub use metrics::Metrics;
pub use nftables::NftablesMode;

use node_addrs::{AddressWatch, NodeIpSource};
use podnet_nat::kube::{ClusterState, IpFamily, KubeObject, Warning, parse_document};
use podnet_nat::kube_proxy::NodeSettings;
use podnet_nat::kube_proxy::iptables_sync::{Backend, IptablesSyncer, PartialMode};
use podnet_netns::NetNs;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
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
    /// Rules (or objects) the mode holds in the kernel after it, counted from what it wrote
    /// (in iptables mode: the rules of its own nat chains).
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
    /// The node's addresses changed: later syncs use `ips` (the caller forces a full one).
    fn set_node_ips(&mut self, ips: Vec<IpAddr>);
    /// The API server's Service CIDRs changed: later syncs use `cidrs` (the caller forces a
    /// full one). Only the nftables mode uses them (to drop traffic to unallocated cluster
    /// IPs); the others ignore them.
    fn set_service_cidrs(&mut self, cidrs: Vec<ipnet::IpNet>) {
        let _ = cidrs;
    }
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
            // A partial sync writes only the chains that changed (a one-endpoint change: that
            // Service's chains); the periodic full sync rewrites everything.
            syncer: IptablesSyncer::new(ns.clone(), settings.clone())
                .with_partial_mode(PartialMode::Minimal),
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
        tracing::debug!(
            render_ms = r.render_time.as_secs_f64() * 1e3,
            apply_ms = r.apply_time.as_secs_f64() * 1e3,
            input_bytes = r.input_bytes,
            services_written = r.services_written,
            "iptables sync"
        );
        Ok(SyncOutcome {
            full: r.full,
            duration: start.elapsed(),
            // Counted from what the syncer wrote, as upstream does: no iptables-save per sync.
            rules: r.nat_rules,
            conntrack_deleted: r.conntrack_deleted,
        })
    }

    fn dry_run(&self, state: &ClusterState) -> String {
        podnet_nat::kube_proxy::iptables_mode::compile(state, &self.settings).render()
    }

    fn set_node_ips(&mut self, ips: Vec<IpAddr>) {
        self.settings.node_ips = ips;
        self.syncer.set_settings(self.settings.clone());
    }

    fn cleanup(&mut self) -> Result<Vec<String>, String> {
        podnet_nat::kube_proxy::cleanup::cleanup_iptables_mode(
            &self.ns,
            self.backend,
            self.settings.family,
        )
        .map(|r| r.kept())
        .map_err(|e| e.to_string())
    }
}

/// The config directory's objects, read file by file (every `*.yaml`, `*.yml` and `*.json`,
/// in name order).
///
/// A file that is malformed or empty, or YAML whose last line has no newline (caught
/// half-written, as `kubectl get -o yaml > f` leaves it for a moment) keeps its last good
/// version until a good one replaces it, with a warning naming it and what is wrong; a file
/// that is deleted is gone. To remove a file's objects, delete it or write an empty `List`.
/// Without a last good version (a file that was never good), what parses of it is used, as
/// before, and the rest is reported.
///
/// What cannot be told from a complete file: hand-written YAML with `kind: List` first, cut
/// exactly at the end of a line between two items, reads as a shorter List (kubectl writes
/// `kind` last, so its output cut anywhere is caught).
#[derive(Debug, Clone)]
pub struct ConfigDir {
    dir: PathBuf,
    good: BTreeMap<PathBuf, Vec<KubeObject>>,
}

/// One read of a [`ConfigDir`].
#[derive(Debug, Clone, Default)]
pub struct DirRead {
    /// Every object, from the files as they are or as they last were good.
    pub objects: Vec<KubeObject>,
    /// What to log: unreadable files and skipped objects, each naming its file.
    pub warnings: Vec<Warning>,
    /// The files whose last good version stands in for what they hold now.
    pub held: Vec<PathBuf>,
}

impl ConfigDir {
    /// The directory `dir`, nothing read yet.
    pub fn new(dir: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir {
            dir: dir.into(),
            good: BTreeMap::new(),
        }
    }

    /// Reads the directory again.
    pub fn read(&mut self) -> DirRead {
        let mut out = DirRead::default();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_object_file(p))
                .collect(),
            Err(e) => {
                // The directory itself is unreadable: every file keeps its last good version.
                out.warnings.push(Warning {
                    object: self.dir.display().to_string(),
                    message: format!("{e}; keeping the last good version of its files"),
                });
                out.held.extend(self.good.keys().cloned());
                out.objects.extend(self.good.values().flatten().cloned());
                return out;
            }
        };
        files.sort();
        // Deleted files are gone.
        self.good.retain(|f, _| files.contains(f));
        for f in files {
            let name = f.display().to_string();
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.good.remove(&f);
                    continue;
                }
                Err(e) => {
                    self.hold(&f, &name, &e.to_string(), &mut out);
                    continue;
                }
            };
            let parsed = parse_document(&text, &name);
            let named = parsed.warnings.into_iter().map(|mut w| {
                if !w.object.contains(&name) {
                    w.object = format!("{name}: {}", w.object);
                }
                w
            });
            // YAML is written line by line (kubectl, serde_yaml, PyYAML end it with a
            // newline): a last line without one was caught being written, even when what came
            // before parses (a List whose `kind` comes first, cut between two items). JSON cut
            // short does not parse at all.
            let json = matches!(text.trim_start().chars().next(), Some('{' | '['));
            let cut_line = !json && !text.is_empty() && !text.ends_with('\n');
            if parsed.malformed || parsed.empty || cut_line {
                if self.good.contains_key(&f) {
                    let why = named.map(|w| w.message).next().unwrap_or_else(|| {
                        if parsed.empty {
                            "the file is empty".to_owned()
                        } else {
                            "its last line has no newline (caught half-written?)".to_owned()
                        }
                    });
                    self.hold(&f, &name, &why, &mut out);
                    continue;
                }
                // Never good: what parses is used, the rest reported.
                out.warnings.extend(named);
                out.objects.extend(parsed.objects);
                continue;
            }
            out.warnings.extend(named);
            out.objects.extend(parsed.objects.iter().cloned());
            self.good.insert(f, parsed.objects);
        }
        out
    }

    /// Uses the last good version of `f` (if there is one) in place of what it holds now.
    fn hold(&self, f: &Path, name: &str, why: &str, out: &mut DirRead) {
        match self.good.get(f) {
            Some(objects) => {
                out.warnings.push(Warning {
                    object: name.to_owned(),
                    message: format!("{why}; keeping its last good version"),
                });
                out.objects.extend(objects.iter().cloned());
                out.held.push(f.to_owned());
            }
            None => out.warnings.push(Warning {
                object: name.to_owned(),
                message: why.to_owned(),
            }),
        }
    }

    /// Reads the directory and compiles the state, logging every warning.
    pub fn state(&mut self, family: IpFamily) -> ClusterState {
        let read = self.read();
        for w in &read.warnings {
            tracing::warn!("{w}");
        }
        let (state, warnings) = ClusterState::from_objects(&read.objects, family);
        for w in &warnings {
            tracing::warn!("skipped {w}");
        }
        state
    }
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
    /// `--metrics-bind-address` and `--healthz-bind-address`.
    pub http: HttpAddresses,
    /// Where the node's addresses come from; when from the kernel, they are followed and a
    /// change resyncs in full.
    pub node_ips: NodeIpSource,
    /// This node's name (`--hostname-override`): its ready endpoints answer the health-check
    /// node ports.
    pub node_name: String,
    /// Where the health-check node ports listen (the node's addresses within
    /// `--nodeport-addresses`); empty: every address.
    pub health_check_addresses: Vec<IpAddr>,
}

/// Where kube-proxy's HTTP servers listen (`None`: not served).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAddresses {
    /// `--metrics-bind-address`: `/metrics`, `/healthz` (`ok`), `/proxyMode`.
    pub metrics: Option<SocketAddr>,
    /// `--healthz-bind-address`: `/healthz` and `/livez`, 503 when syncs are overdue.
    pub healthz: Option<SocketAddr>,
}

/// The state compiled from the config directory as it is now, with warnings logged (one read,
/// as `--dry-run` does; the sync loop keeps a [`ConfigDir`]).
pub fn load_state(dir: &Path, family: IpFamily) -> ClusterState {
    ConfigDir::new(dir).state(family)
}

/// Runs the sync loop on the config directory until `stop` is set.
pub fn run(
    mode: Box<dyn Mode>,
    opts: ProxyOptions,
    family: IpFamily,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let input = Box::new(FileInput::new(&opts.config_dir));
    run_with(mode, opts, input, family, stop)
}

/// The state one read of an input compiles to on node `node`: warnings logged, topology
/// applied (the zone from the node's Node object, when the input has it).
pub fn compile_read(read: &InputRead, family: IpFamily, node: &str) -> ClusterState {
    for w in &read.warnings {
        tracing::warn!("{w}");
    }
    let (mut state, warnings) = ClusterState::from_objects(&read.objects, family);
    for w in &warnings {
        tracing::warn!("skipped {w}");
    }
    let zone = podnet_nat::kube::topology::node_zone(&read.objects, node);
    podnet_nat::kube::topology::apply(&mut state, node, zone.as_deref());
    state
}

/// `true` once every first list of `input` is complete; until then `/healthz` says why (and
/// the log, once per reason).
fn first_lists_complete(
    input: &dyn Input,
    health: &ProxierHealth,
    waiting_logged: &mut Option<String>,
) -> bool {
    match input.synced() {
        Ok(()) => {
            if waiting_logged.is_some() {
                tracing::info!("every first list is complete; syncing");
            }
            health.set_waiting(None);
            true
        }
        Err(why) => {
            if waiting_logged.as_ref() != Some(&why) {
                tracing::info!("{why}");
                *waiting_logged = Some(why.clone());
            }
            health.set_waiting(Some(why));
            false
        }
    }
}

/// Runs the sync loop on `input` until `stop` is set. Nothing is synced before the input's
/// first lists are complete; until then `/healthz` answers 503 saying what is missing.
pub fn run_with(
    mut mode: Box<dyn Mode>,
    opts: ProxyOptions,
    mut input: Box<dyn Input>,
    family: IpFamily,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let health = Arc::new(ProxierHealth::new(opts.sync_period));
    let mut m = Metrics::new(mode.name());
    m.register_health(&health);
    let metrics = Arc::new(Mutex::new(m));
    let mut service_health = service_health::ServiceHealthServer::new(
        opts.node_name.clone(),
        opts.health_check_addresses.clone(),
        health.clone(),
    );
    http::start(
        &opts.http,
        mode.name(),
        metrics.clone(),
        health.clone(),
        stop.clone(),
    )?;
    let watch = match &opts.node_ips {
        NodeIpSource::Fixed(_) => None,
        NodeIpSource::Kernel { ns, .. } => Some(
            AddressWatch::start(ns, stop.clone())
                .map_err(|e| format!("watching the node's addresses: {e}"))?,
        ),
    };
    let mut node_ips = opts.node_ips.read(family)?;
    mode.set_node_ips(node_ips.clone());
    let mut state = ClusterState {
        family,
        ..ClusterState::default()
    };
    let mut triggers = TriggerTimes::default();
    let mut service_cidrs: Option<Vec<ipnet::IpNet>> = None;
    // Every first list is complete (always, for the config directory).
    let mut ready = false;
    let mut waiting_logged: Option<String> = None;
    let mut input_changed = true;
    let mut pending = false;
    let mut full = true;
    let mut last_sync: Option<Instant> = None;
    // A period too long for the clock to add is no periodic resync at all.
    let mut next_full = Instant::now().checked_add(opts.sync_period);
    // A sync is queued and its time recorded (upstream's last-queued timestamp).
    let mut queued = false;
    while !stop.load(Ordering::Relaxed) {
        if !ready && first_lists_complete(input.as_ref(), &health, &mut waiting_logged) {
            ready = true;
            input_changed = true;
        }
        if ready && input_changed {
            let read = input.read();
            triggers.update(&read.objects);
            // The first read's Services and endpoints are changes too, as upstream's
            // informers deliver them as additions.
            let new = compile_read(&read, family, &opts.node_name);
            let (svc, eps) = metrics::state_changes(&state, &new);
            metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .changes(svc, eps);
            state = new;
            pending = true;
            let cidrs = input.service_cidrs();
            if cidrs.is_some() && cidrs != service_cidrs {
                tracing::info!(?cidrs, "the Service CIDRs changed; a full sync follows");
                mode.set_service_cidrs(cidrs.clone().unwrap_or_default());
                service_cidrs = cidrs;
                pending = true;
                full = true;
            }
        }
        if watch.as_ref().is_some_and(AddressWatch::changed) {
            match opts.node_ips.read(family) {
                Ok(ips) if ips != node_ips => {
                    tracing::info!(?ips, "the node's addresses changed; a full sync follows");
                    node_ips = ips;
                    mode.set_node_ips(node_ips.clone());
                    pending = true;
                    full = true;
                }
                Ok(_) => {}
                // The watch fires again on the next change; the addresses we have stay.
                Err(e) => tracing::warn!("{e}"),
            }
        }
        if ready && next_full.is_some_and(|t| Instant::now() >= t) {
            pending = true;
            full = true;
        }
        if pending && ready {
            health.queued();
            if !queued {
                metrics.lock().unwrap_or_else(|p| p.into_inner()).queued();
                queued = true;
            }
        }
        let allowed = last_sync.is_none_or(|t| t.elapsed() >= opts.min_sync_period);
        if pending && allowed && ready {
            match mode.sync(&state, full) {
                Ok(o) => {
                    let end = SystemTime::now();
                    tracing::info!(
                        full = o.full,
                        ms = o.duration.as_secs_f64() * 1e3,
                        rules = o.rules,
                        services = state.services.len(),
                        conntrack_deleted = o.conntrack_deleted,
                        "synced"
                    );
                    {
                        let mut m = metrics.lock().unwrap_or_else(|p| p.into_inner());
                        m.record(&o, state.services.len());
                        m.programmed(&triggers.take(), end);
                    }
                    health.updated();
                    queued = false;
                    // As upstream, after the rules are in: health-check node ports follow.
                    service_health.sync(&state);
                    pending = false;
                    if full {
                        next_full = Instant::now().checked_add(opts.sync_period);
                    }
                    full = false;
                }
                Err(e) => {
                    tracing::error!("sync failed: {e}; a full sync follows");
                    metrics
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record_failure();
                    full = true;
                }
            }
            last_sync = Some(Instant::now());
        }
        // Wakes at once when the input changes; at the latest after a tenth of a second,
        // for the stop flag, the node's addresses, the input's first lists and the timers.
        input_changed = input.wait(Duration::from_millis(100));
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

    #[test]
    fn a_file_keeps_its_last_good_version_until_a_good_one_or_its_deletion() {
        let dir = std::env::temp_dir().join(format!("podnet-kp-held-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let svc = |name: &str| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: d}}\n\
                 spec: {{clusterIP: 10.96.0.10, ports: [{{name: p, port: 80}}]}}\n"
            )
        };
        let names = |r: &DirRead| -> Vec<String> {
            r.objects
                .iter()
                .map(|o| match o {
                    KubeObject::Service(s) => s.metadata.name.clone(),
                    KubeObject::EndpointSlice(e) => e.metadata.name.clone(),
                    KubeObject::Node(n) => n.metadata.name.clone(),
                })
                .collect()
        };
        let f = dir.join("a.yaml");
        let mut config = ConfigDir::new(&dir);
        std::fs::write(&f, svc("one")).unwrap();
        let r = config.read();
        assert_eq!(names(&r), ["one"]);
        assert!(r.held.is_empty() && r.warnings.is_empty());
        let one = svc("one");
        for bad in [
            &one[..one.len() / 2],
            "",
            "   \n# comment\n",
            "kind: Service\nspec: 7\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            let r = config.read();
            assert_eq!(names(&r), ["one"], "{bad:?}");
            assert_eq!(r.held, std::slice::from_ref(&f));
            assert!(r.warnings[0].object.contains("a.yaml"), "{:?}", r.warnings);
            assert!(
                r.warnings[0]
                    .message
                    .ends_with("keeping its last good version")
            );
        }
        // A kind-first List cut anywhere but at the end of a line is held too.
        let item = |name: &str| format!("- {}\n", svc(name).trim_end().replace('\n', "\n  "));
        let list = format!("kind: List\nitems:\n{}{}", item("one"), item("two"));
        std::fs::write(&f, &list).unwrap();
        assert_eq!(names(&config.read()), ["one", "two"]);
        for cut in 1..list.len() {
            if list.as_bytes()[cut - 1] == b'\n' {
                continue;
            }
            std::fs::write(&f, &list[..cut]).unwrap();
            let r = config.read();
            assert_eq!(
                names(&r),
                ["one", "two"],
                "cut at {cut}: {:?}",
                &list[..cut]
            );
        }
        std::fs::write(&f, svc("one")).unwrap();
        assert_eq!(names(&config.read()), ["one"]);
        // Not UTF-8: unreadable as text, held too.
        std::fs::write(&f, [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(names(&config.read()), ["one"]);
        std::fs::write(&f, svc("two")).unwrap();
        assert_eq!(names(&config.read()), ["two"]);
        std::fs::remove_file(&f).unwrap();
        let r = config.read();
        assert!(r.objects.is_empty() && r.held.is_empty());
        // A file that was never good: what parses of it is used, the rest reported.
        std::fs::write(&f, format!("{}---\nkind: Service\nspec: 7\n", svc("three"))).unwrap();
        let r = config.read();
        assert_eq!(names(&r), ["three"]);
        assert!(r.held.is_empty() && r.warnings.len() == 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
