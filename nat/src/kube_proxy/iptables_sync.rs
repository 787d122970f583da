//! Full and partial syncs of kube-proxy's iptables rules, applied with
//! `iptables-restore --noflush --counters` inside a network namespace.
//!
//! A partial sync (kube-proxy's KEP-3453) writes the top-level chains whole, plus only the
//! chains of Services whose rules changed since the last successful sync, and deletes the chains
//! of Services that went away. When a partial sync fails, the syncer falls back to a full one at
//! once. Each table's rules are replaced by one `iptables-restore` commit, so there is never a
//! moment without them.

use super::iptables_mode::{Compiled, Compiler, ServiceChains, is_service_chain, jump_rules};
use super::settings::NodeSettings;
use crate::conntrack::{Conntrack, stale_udp};
use crate::iptables::{
    Line, Protocol, Rule, SavedRule, Table, TableRules, parse_save, parse_save_tolerant,
};
use crate::kube::{ClusterState, IpFamily, ServiceKey};
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A program could not be started.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `iptables-restore` (or `iptables`) refused the input.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program and its arguments.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (names the offending line).
        stderr: String,
    },
    /// `iptables-save` printed something we cannot parse.
    #[error(transparent)]
    Parse(#[from] crate::iptables::ParseError),
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
    /// Conntrack cleanup failed (the rules were applied).
    #[error(transparent)]
    Conntrack(#[from] crate::conntrack::ConntrackError),
}

/// What one sync will write.
#[derive(Debug, Clone)]
pub struct SyncPlan {
    /// A full sync (every Service's chains) rather than a partial one.
    pub full: bool,
    /// The `iptables-restore` input.
    pub input: String,
    /// Services whose chains are written.
    pub written: BTreeSet<ServiceKey>,
    /// Chains deleted (`-X`).
    pub deleted: Vec<String>,
    compiled: Compiled,
}

impl SyncPlan {
    /// The rules this plan leaves in place: the `applied` state for the next [`plan`].
    pub fn into_applied(self) -> Applied {
        Applied {
            services: self.compiled.services,
            filter: self.compiled.filter,
            nat_top: self.compiled.nat_top,
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    /// The sync that succeeded was a full one.
    pub full: bool,
    /// A partial sync failed first and was replaced by a full one.
    pub fell_back: bool,
    /// Bytes of `iptables-restore` input.
    pub input_bytes: usize,
    /// Services whose chains were written.
    pub services_written: usize,
    /// Chains deleted.
    pub chains_deleted: usize,
    /// Time spent compiling and rendering.
    pub render_time: Duration,
    /// Time spent in `iptables-restore` (and, on full syncs, ensuring the jump rules).
    pub apply_time: Duration,
    /// Stale UDP conntrack flows deleted after the rules were applied.
    pub conntrack_deleted: usize,
    /// Rules in kube-proxy's own nat chains after the sync, counted from what the syncer
    /// wrote (upstream's `sync_proxy_rules_iptables_total{table="nat"}`), not read back.
    pub nat_rules: usize,
    /// The same for the filter table.
    pub filter_rules: usize,
}

/// The rules a successful sync left in the kernel, for planning the next partial sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Each Service's own chains.
    pub services: BTreeMap<ServiceKey, Arc<ServiceChains>>,
    /// The filter table as applied.
    pub filter: TableRules,
    /// The nat table's top-level chains as applied.
    pub nat_top: TableRules,
}

impl Applied {
    /// Rules in kube-proxy's own nat chains: the top-level chains and every Service's.
    pub fn nat_rule_count(&self) -> usize {
        self.nat_top.rule_count() + self.services.values().map(|s| s.rules.len()).sum::<usize>()
    }
}

/// A table's rules grouped by chain, borrowed.
fn by_chain(t: &TableRules) -> BTreeMap<&str, Vec<&Rule>> {
    let mut m: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for d in &t.chains {
        m.entry(d.name.as_str()).or_default();
    }
    for l in &t.lines {
        if let Line::Append(r) = l {
            m.entry(&r.chain).or_default().push(r);
        }
    }
    m
}

/// The chains of `now` whose rules differ from `prev`.
fn changed_chains(now: &TableRules, prev: Option<&TableRules>) -> BTreeSet<String> {
    let now_map = by_chain(now);
    let prev_map = prev.map(by_chain).unwrap_or_default();
    now_map
        .iter()
        .filter(|(c, rules)| prev_map.get(*c) != Some(*rules))
        .map(|(c, _)| (*c).to_owned())
        .collect()
}

/// What a partial sync writes besides the changed Services' chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartialMode {
    /// Every top-level chain, always (kube-proxy's KEP-3453 partial sync).
    #[default]
    KubeProxy,
    /// Only the top-level chains whose rules changed; when none did, the filter table is left
    /// out entirely. An endpoint change then writes just that Service's chains.
    Minimal,
}

/// Which iptables implementation applies the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Whatever `iptables-restore` is on this system (iptables-nft on Debian 12).
    #[default]
    System,
    /// `iptables-legacy-restore` (the x_tables kernel interface).
    Legacy,
    /// `iptables-nft-restore` (nf_tables).
    Nft,
}

impl Backend {
    /// The (restore, iptables, save) programs for `family`.
    pub fn programs(self, family: IpFamily) -> (&'static str, &'static str, &'static str) {
        match (self, family) {
            (Backend::System, IpFamily::V4) => ("iptables-restore", "iptables", "iptables-save"),
            (Backend::System, IpFamily::V6) => ("ip6tables-restore", "ip6tables", "ip6tables-save"),
            (Backend::Legacy, IpFamily::V4) => (
                "iptables-legacy-restore",
                "iptables-legacy",
                "iptables-legacy-save",
            ),
            (Backend::Legacy, IpFamily::V6) => (
                "ip6tables-legacy-restore",
                "ip6tables-legacy",
                "ip6tables-legacy-save",
            ),
            (Backend::Nft, IpFamily::V4) => {
                ("iptables-nft-restore", "iptables-nft", "iptables-nft-save")
            }
            (Backend::Nft, IpFamily::V6) => (
                "ip6tables-nft-restore",
                "ip6tables-nft",
                "ip6tables-nft-save",
            ),
        }
    }
}

/// Keeps kube-proxy's iptables rules in one network namespace in step with a [`ClusterState`].
#[derive(Debug)]
pub struct IptablesSyncer {
    settings: NodeSettings,
    netns: NetNs,
    applied: Option<Applied>,
    need_full: bool,
    conntrack: Option<Conntrack>,
    compiler: Compiler,
    backend: Backend,
    mode: PartialMode,
    /// kube-proxy's rules in kubelet's chains, from the last compile.
    kubelet_rules: Vec<(Table, Rule)>,
}

/// The output of `program` when it could be started and exited with success; else
/// [`SyncError::Spawn`] or [`SyncError::Failed`] naming `command` (the program and its
/// arguments) with its exit status and standard error.
fn checked(
    output: std::io::Result<std::process::Output>,
    program: &str,
    command: impl FnOnce() -> String,
) -> Result<std::process::Output, SyncError> {
    let out = output.map_err(|source| SyncError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(SyncError::Failed {
            program: command(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Runs `program args` in `ns` with `input` on stdin.
pub fn run_with_input(
    ns: &NetNs,
    program: &str,
    args: &[&str],
    input: &[u8],
) -> Result<String, SyncError> {
    // Spawned from a thread inside the namespace rather than with a pre-exec setns: without a
    // pre-exec hook the standard library can use posix_spawn (vfork) instead of fork, which
    // matters when this process holds a large rule set (fork copies its page tables).
    let spawned = ns.run(|| -> std::io::Result<std::process::Output> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write shows up as the program's own error below.
            let _ = stdin.write_all(input);
        }
        child.wait_with_output()
    })?;
    let out = checked(spawned, program, || format!("{program} {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Chains kube-proxy writes a rule into but does not own: kubelet makes `KUBE-FIREWALL` (older
/// kubelets with a `-m mark` rule of their own besides the localnet rule kube-proxy also
/// writes). kube-proxy's `iptables-restore` would flush it; the syncer instead adds its rules
/// to it when missing, like the jumps, and `--cleanup` leaves it (as upstream's does).
pub const KUBELET_CHAINS: [(Table, &str); 1] =
    [(Table::Filter, super::iptables_mode::KUBE_FIREWALL)];

/// Moves the rules of [`KUBELET_CHAINS`] out of `compiled` (so the restore leaves those chains
/// alone) and returns them, to be ensured one by one.
pub fn split_kubelet_chains(compiled: &mut Compiled) -> Vec<(Table, Rule)> {
    let shared = |t: Table, c: &str| KUBELET_CHAINS.iter().any(|(st, sc)| *st == t && *sc == c);
    let mut taken = Vec::new();
    let filter = &mut compiled.filter;
    filter.chains.retain(|d| !shared(Table::Filter, &d.name));
    filter.lines.retain(|l| match l {
        Line::Append(r) if shared(Table::Filter, &r.chain) => {
            taken.push((Table::Filter, r.clone()));
            false
        }
        _ => true,
    });
    taken
}

/// A rule kube-proxy keeps outside its own chains that is not there yet: a jump from a built-in
/// chain, or its rule in one of [`KUBELET_CHAINS`].
#[derive(Debug, Clone, PartialEq)]
pub struct MissingRule {
    /// The rule (its chain is where it goes).
    pub rule: Rule,
    /// Insert it at the top (`-I`, the jumps) rather than append it (`-A`).
    pub insert: bool,
    /// A chain that does not exist yet and is made first (a jump's target, or the kubelet
    /// chain itself).
    pub create_chain: Option<String>,
}

/// Which of kube-proxy's jumps from the built-in chains of `table`, and of its rules in
/// kubelet's chains (`shared`, from [`split_kubelet_chains`]), are missing in `save`, that
/// table's `iptables-save` output, in the order they are to be added.
///
/// The rules other programs keep in those chains (Docker's, firewalld's, a distribution's:
/// `-m state`, `-m multiport`, `-p icmp`, port ranges, ...) are read as text and only compared
/// with ours; output that does not parse as `iptables-save`'s is an error, never taken for
/// "nothing there".
pub fn missing_rules(
    table: Table,
    save: &str,
    shared: &[(Table, Rule)],
) -> Result<Vec<MissingRule>, SyncError> {
    let tables = parse_save_tolerant(save)?;
    // `iptables-save -t TABLE` prints the table with its built-in chains even when empty.
    let live =
        tables
            .iter()
            .find(|t| t.table == table)
            .ok_or_else(|| crate::iptables::ParseError {
                line: save.lines().count(),
                message: format!("no *{table} table in iptables-save -t {table} output"),
                text: String::new(),
            })?;
    let mut chains: BTreeSet<String> = live.chains.iter().map(|c| c.name.clone()).collect();
    let present: Vec<Rule> = live
        .rules
        .iter()
        .filter_map(|r| match r {
            SavedRule::Known(r) => Some(r.canonical()),
            SavedRule::Opaque(_) => None,
        })
        .collect();
    let mut missing = Vec::new();
    for (_, rule) in shared.iter().filter(|(t, _)| *t == table) {
        if present.contains(&rule.canonical()) {
            continue;
        }
        let chain = rule.chain.to_string();
        let create_chain = chains.insert(chain.clone()).then_some(chain);
        missing.push(MissingRule {
            rule: rule.clone(),
            insert: false,
            create_chain,
        });
    }
    for (t, _, rule) in jump_rules() {
        if t != table || present.contains(&rule.canonical()) {
            continue;
        }
        let create_chain = match &rule.target {
            Some(crate::iptables::Target::Jump(dst)) => {
                chains.insert(dst.to_string()).then(|| dst.to_string())
            }
            _ => None,
        };
        missing.push(MissingRule {
            rule,
            insert: true,
            create_chain,
        });
    }
    Ok(missing)
}

impl IptablesSyncer {
    /// A syncer for the namespace `netns`. Its first sync is a full one.
    pub fn new(netns: NetNs, settings: NodeSettings) -> IptablesSyncer {
        IptablesSyncer {
            settings,
            netns,
            applied: None,
            need_full: true,
            conntrack: None,
            compiler: Compiler::new(),
            backend: Backend::System,
            mode: PartialMode::KubeProxy,
            kubelet_rules: Vec::new(),
        }
    }

    /// Chooses what partial syncs write.
    pub fn with_partial_mode(mut self, mode: PartialMode) -> IptablesSyncer {
        self.mode = mode;
        self
    }

    /// Changes what later partial syncs write.
    pub fn set_partial_mode(&mut self, mode: PartialMode) {
        self.mode = mode;
    }

    /// Uses `backend` to apply the rules.
    pub fn with_backend(mut self, backend: Backend) -> IptablesSyncer {
        self.backend = backend;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// Changes the settings (the node's addresses changed, say); the next sync is a full one.
    pub fn set_settings(&mut self, settings: NodeSettings) {
        self.settings = settings;
        self.need_full = true;
    }

    /// The next sync will be a full one.
    pub fn force_full_sync(&mut self) {
        self.need_full = true;
    }

    fn restore_program(&self) -> &'static str {
        self.backend.programs(self.settings.family).0
    }

    fn save_program(&self) -> &'static str {
        self.backend.programs(self.settings.family).2
    }

    /// Plans a sync of `compiled` against the last successful one: partial unless a full sync
    /// is due. `stale` names chains found in the kernel that should go if unused.
    pub fn plan(&self, compiled: Compiled, stale: &BTreeSet<String>) -> SyncPlan {
        plan_with(
            self.mode,
            self.applied.as_ref(),
            self.need_full,
            compiled,
            stale,
        )
    }

    /// Records a plan as applied.
    pub fn commit(&mut self, plan: SyncPlan) {
        self.applied = Some(plan.into_applied());
        self.need_full = false;
    }

    /// Compiles `state` and brings the namespace's rules in step with it.
    ///
    /// A full sync reads the filter and nat tables (`iptables-save -t`, while the rules
    /// compile) and applies everything in one `iptables-restore` per sync: kube-proxy's chains,
    /// the missing jumps from the built-in chains (`-I`) and its missing rules in kubelet's
    /// chains. A partial sync runs `iptables-restore` alone.
    pub fn sync(&mut self, state: &ClusterState) -> Result<SyncReport, SyncError> {
        let t0 = Instant::now();
        if self.need_full {
            let save = self.save_program();
            let ns = &self.netns;
            let (live, mut compiled) = std::thread::scope(|s| {
                let reader = s.spawn(move || LiveTables::read(ns, save));
                let compiled = self.compiler.compile(state, &self.settings);
                let live = reader
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (live, compiled)
            });
            self.kubelet_rules = split_kubelet_chains(&mut compiled);
            let report = self.full_sync(compiled, t0, false, live?)?;
            return self.after_sync(state, report);
        }
        let mut compiled = self.compiler.compile(state, &self.settings);
        self.kubelet_rules = split_kubelet_chains(&mut compiled);
        let plan = self.plan(compiled, &BTreeSet::new());
        let render_time = t0.elapsed();
        let t1 = Instant::now();
        match self.restore(&plan.input) {
            Ok(()) => {
                let report = self.report(&plan, false, render_time, t1);
                self.commit(plan);
                self.after_sync(state, report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "partial iptables sync failed; doing a full sync");
                self.need_full = true;
                let live = LiveTables::read(&self.netns, self.save_program())?;
                let report = self.full_sync(plan.compiled, Instant::now(), true, live)?;
                self.after_sync(state, report)
            }
        }
    }

    fn report(
        &self,
        plan: &SyncPlan,
        fell_back: bool,
        render_time: Duration,
        t1: Instant,
    ) -> SyncReport {
        let c = &plan.compiled;
        let nat_rules =
            c.nat_top.rule_count() + c.services.values().map(|s| s.rules.len()).sum::<usize>();
        SyncReport {
            full: plan.full,
            fell_back,
            input_bytes: plan.input.len(),
            services_written: plan.written.len(),
            chains_deleted: plan.deleted.len(),
            render_time,
            apply_time: t1.elapsed(),
            conntrack_deleted: 0,
            nat_rules,
            filter_rules: c.filter.rule_count() + self.kubelet_rules.len(),
        }
    }

    fn full_sync(
        &mut self,
        compiled: Compiled,
        t0: Instant,
        fell_back: bool,
        live: LiveTables,
    ) -> Result<SyncReport, SyncError> {
        self.need_full = true;
        // Service chains in the kernel that no Service uses any more (left by an earlier run,
        // or by a failed sync) are deleted too.
        let stale = live.service_chains();
        let missing_filter = missing_rules(Table::Filter, &live.filter, &self.kubelet_rules)?;
        let missing_nat = missing_rules(Table::Nat, &live.nat, &self.kubelet_rules)?;
        let mut plan = self.plan(compiled, &stale);
        add_missing_rules(
            &mut plan.input,
            Table::Filter,
            &plan.compiled.filter,
            &missing_filter,
        );
        add_missing_rules(
            &mut plan.input,
            Table::Nat,
            &plan.compiled.nat_top,
            &missing_nat,
        );
        let render_time = t0.elapsed();
        let t1 = Instant::now();
        self.restore(&plan.input)?;
        let report = self.report(&plan, fell_back, render_time, t1);
        self.commit(plan);
        Ok(report)
    }

    /// Deletes stale UDP conntrack flows once the rules are in place (only when the state has
    /// UDP service ports).
    fn after_sync(
        &mut self,
        state: &ClusterState,
        mut report: SyncReport,
    ) -> Result<SyncReport, SyncError> {
        if !state.services.keys().any(|k| k.protocol == Protocol::Udp) {
            return Ok(report);
        }
        if self.conntrack.is_none() {
            self.conntrack = Some(Conntrack::open_in(&self.netns)?);
        }
        let filter = stale_udp(state, &self.settings.node_name);
        if let Some(ct) = self.conntrack.as_mut() {
            report.conntrack_deleted = ct.delete_matching(self.settings.family, filter)?;
        }
        Ok(report)
    }

    fn restore(&self, input: &str) -> Result<(), SyncError> {
        run_with_input(
            &self.netns,
            self.restore_program(),
            &["-w", "5", "--noflush", "--counters"],
            input.as_bytes(),
        )
        .map(|_| ())
    }

    /// The per-Service chains now in the namespace's nat table.
    pub fn live_service_chains(&self) -> Result<BTreeSet<String>, SyncError> {
        let out = run_with_input(&self.netns, self.save_program(), &["-t", "nat"], b"")?;
        Ok(service_chains_in_save(&out))
    }

    /// How many rules `table` holds now, every program's (read with
    /// [`parse_save_tolerant`], so rules the model does not represent count too).
    pub fn live_rule_count(&self, table: Table) -> Result<usize, SyncError> {
        let out = run_with_input(
            &self.netns,
            self.save_program(),
            &["-t", table.as_str()],
            b"",
        )?;
        Ok(parse_save_tolerant(&out)?
            .iter()
            .map(|t| t.rules.len())
            .sum())
    }

    /// Reads the namespace's rules back (`iptables-save`) for the tables kube-proxy writes.
    pub fn read_back(&self, table: Table) -> Result<Vec<crate::iptables::TableRules>, SyncError> {
        let out = run_with_input(
            &self.netns,
            self.save_program(),
            &["-t", table.as_str()],
            b"",
        )?;
        Ok(parse_save(&out)?)
    }
}

/// The per-Service chains declared in `iptables-save -t nat` output.
fn service_chains_in_save(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| is_service_chain(c))
        .map(str::to_owned)
        .collect()
}

/// The filter and nat tables as `iptables-save -t` printed them before a full sync.
struct LiveTables {
    filter: String,
    nat: String,
}

impl LiveTables {
    fn read(ns: &NetNs, save: &str) -> Result<LiveTables, SyncError> {
        Ok(LiveTables {
            filter: run_with_input(ns, save, &["-t", "filter"], b"")?,
            nat: run_with_input(ns, save, &["-t", "nat"], b"")?,
        })
    }

    fn service_chains(&self) -> BTreeSet<String> {
        service_chains_in_save(&self.nat)
    }
}

/// Adds `missing` (from [`missing_rules`]) to `table`'s block of the `iptables-restore` input
/// `input`: a declaration for each chain to be made that `compiled` does not declare already
/// (right after `*table`, so it exists before any rule jumps to it), and each rule before the
/// block's `COMMIT`, in order (`-I` inserts at the top as `iptables -I` does). The block must
/// be in `input` (a full sync writes both tables).
pub fn add_missing_rules(
    input: &mut String,
    table: Table,
    compiled: &TableRules,
    missing: &[MissingRule],
) {
    if missing.is_empty() {
        return;
    }
    let head = format!("*{}\n", table.as_str());
    let Some(start) = input.find(&head).map(|i| i + head.len()) else {
        return;
    };
    let Some(commit) = input[start..].find("COMMIT\n").map(|i| i + start) else {
        return;
    };
    let mut rules = String::new();
    let mut decls = String::new();
    for m in missing {
        if let Some(c) = &m.create_chain {
            if !compiled.chains.iter().any(|d| &d.name == c) {
                decls.push(':');
                decls.push_str(c);
                decls.push_str(" - [0:0]\n");
            }
        }
        let text = m.rule.render();
        if m.insert {
            rules.push_str("-I ");
            rules.push_str(text.strip_prefix("-A ").unwrap_or(&text));
        } else {
            rules.push_str(&text);
        }
        rules.push('\n');
    }
    input.insert_str(commit, &rules);
    input.insert_str(start, &decls);
}

/// The planning step of a sync, without I/O: which Services to write and which chains to delete.
///
/// `applied` is the state of the last successful sync (`None` before the first one).
pub fn plan(
    applied: Option<&Applied>,
    need_full: bool,
    compiled: Compiled,
    stale: &BTreeSet<String>,
) -> SyncPlan {
    plan_with(PartialMode::KubeProxy, applied, need_full, compiled, stale)
}

/// [`plan`] with a choice of what partial syncs write.
pub fn plan_with(
    mode: PartialMode,
    applied: Option<&Applied>,
    need_full: bool,
    compiled: Compiled,
    stale: &BTreeSet<String>,
) -> SyncPlan {
    let full = need_full || applied.is_none();
    // Services whose chains are (re)written: all of them in a full sync, otherwise those whose
    // chains changed. Chains are named after their Service, so a deleted chain belongs to a
    // Service that changed or went away: only those are searched.
    let same = |k: &ServiceKey, v: &Arc<ServiceChains>| {
        applied
            .and_then(|a| a.services.get(k))
            .is_some_and(|old| Arc::ptr_eq(old, v) || old == v)
    };
    let written: BTreeSet<ServiceKey> = compiled
        .services
        .iter()
        .filter(|(k, v)| full || !same(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    if let Some(prev) = applied {
        for (k, old) in &prev.services {
            let new = compiled.services.get(k);
            if new.is_some_and(|n| Arc::ptr_eq(n, old)) {
                continue;
            }
            let keep: BTreeSet<&str> = new
                .map(|n| n.chains.iter().map(|c| &**c).collect())
                .unwrap_or_default();
            deleted.extend(
                old.chains
                    .iter()
                    .filter(|c| !keep.contains(&***c))
                    .map(|c| c.to_string()),
            );
        }
    }
    if !stale.is_empty() {
        let active: BTreeSet<&str> = compiled.service_chain_names();
        deleted.extend(
            stale
                .iter()
                .filter(|c| !active.contains(c.as_str()))
                .cloned(),
        );
    }
    let deleted: Vec<String> = deleted.into_iter().collect();
    let rules: usize = written
        .iter()
        .filter_map(|k| compiled.services.get(k))
        .map(|s| s.rules.len())
        .sum();
    let mut input = String::with_capacity(
        (rules + compiled.nat_top.lines.len() + compiled.filter.lines.len()) * 110 + 4096,
    );
    if full || mode == PartialMode::KubeProxy {
        compiled.filter.render_into(&mut input);
        compiled.render_nat_into(&mut input, |k| written.contains(k), &deleted);
    } else {
        let filter_changed = changed_chains(&compiled.filter, applied.map(|a| &a.filter));
        let nat_changed = changed_chains(&compiled.nat_top, applied.map(|a| &a.nat_top));
        if !filter_changed.is_empty() {
            let mut f = TableRules::new(Table::Filter);
            f.chains.extend(
                compiled
                    .filter
                    .chains
                    .iter()
                    .filter(|d| filter_changed.contains(&d.name))
                    .cloned(),
            );
            f.lines.extend(
                compiled
                    .filter
                    .lines
                    .iter()
                    .filter(|l| matches!(l, Line::Append(r) if filter_changed.contains(&*r.chain)))
                    .cloned(),
            );
            f.render_into(&mut input);
        }
        compiled.render_nat_selected(
            &mut input,
            |c| nat_changed.contains(c),
            |k| written.contains(k),
            &deleted,
        );
    }
    SyncPlan {
        full,
        input,
        written,
        deleted,
        compiled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::IpFamily;

    /// Docker's and a distribution's rules in the built-in chains, in iptables-save's spelling.
    const FOREIGN_FILTER: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
";

    /// `save` with every jump of `table` inserted at the top of its built-in chain, the way
    /// `iptables -I` leaves them (the last inserted first) and iptables-save prints them.
    fn with_our_jumps(save: &str, table: Table) -> String {
        let mut out = String::new();
        let mut jumps: Vec<String> = jump_rules()
            .into_iter()
            .filter(|(t, _, _)| *t == table)
            .map(|(_, _, r)| r.render())
            .collect();
        jumps.reverse();
        for line in save.lines() {
            if line == "COMMIT" {
                for j in &jumps {
                    out.push_str(j);
                    out.push('\n');
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn target(m: &MissingRule) -> String {
        match &m.rule.target {
            Some(crate::iptables::Target::Jump(c)) => c.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_rules_do_not_hide_our_jumps() {
        let all = missing_rules(Table::Filter, FOREIGN_FILTER, &[]).unwrap();
        assert_eq!(
            all.len(),
            jump_rules()
                .iter()
                .filter(|(t, _, _)| *t == Table::Filter)
                .count()
        );
        assert!(all.iter().all(|m| m.insert));
        // Each of our chains is made once, by its first jump.
        let made: Vec<&String> = all.iter().filter_map(|m| m.create_chain.as_ref()).collect();
        let unique: BTreeSet<&String> = made.iter().copied().collect();
        assert_eq!(made.len(), unique.len());
        assert!(
            all.iter().all(|m| m.create_chain.is_none()
                || m.create_chain.as_deref() == Some(target(m).as_str()))
        );
        let with = with_our_jumps(FOREIGN_FILTER, Table::Filter);
        assert_eq!(
            missing_rules(Table::Filter, &with, &[]).unwrap(),
            Vec::new()
        );
        // One of ours deleted by hand: that one is missing, its chain still exists.
        let first = jump_rules()
            .into_iter()
            .find(|(t, _, _)| *t == Table::Filter)
            .map(|(_, _, r)| r.render())
            .unwrap();
        let without: String = with
            .lines()
            .filter(|l| *l != first)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace(
                "COMMIT",
                ":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-FIREWALL - [0:0]\nCOMMIT",
            );
        let m = missing_rules(Table::Filter, &without, &[]).unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].rule.render(), first);
        assert_eq!(m[0].create_chain, None);
    }

    #[test]
    fn our_rule_in_kubelets_chain_is_added_only_when_missing() {
        let mut compiled = Compiler::new().compile(
            &ClusterState::default(),
            &NodeSettings::new("n1", IpFamily::V4),
        );
        let shared = split_kubelet_chains(&mut compiled);
        assert_eq!(shared.len(), 1, "{shared:?}");
        // The restore no longer declares (and so flushes) kubelet's chain.
        assert!(!compiled.filter.render().contains("KUBE-FIREWALL"));
        // A kubelet chain with the same rule in kubelet's spelling, and a rule of its own.
        let kubelet = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n\
            -A INPUT -j KUBE-FIREWALL\n-A OUTPUT -j KUBE-FIREWALL\n\
            -A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n\
            -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
            COMMIT\n";
        let m = missing_rules(Table::Filter, kubelet, &shared).unwrap();
        assert!(
            m.iter()
                .all(|m| m.insert && !m.rule.chain.starts_with("KUBE-FIREWALL")),
            "{m:#?}"
        );
        // Without kubelet: the chain is made and our rule appended, before the jumps to it.
        let m = missing_rules(Table::Filter, FOREIGN_FILTER, &shared).unwrap();
        assert_eq!(&*m[0].rule.chain, "KUBE-FIREWALL");
        assert!(!m[0].insert);
        assert_eq!(m[0].create_chain.as_deref(), Some("KUBE-FIREWALL"));
        assert!(
            m[1..]
                .iter()
                .all(|j| j.create_chain.as_deref() != Some("KUBE-FIREWALL"))
        );
    }

    #[test]
    fn unreadable_save_output_is_an_error_not_an_empty_table() {
        for bad in [
            "",
            "garbage\n",
            "*filter\n:INPUT ACCEPT [0:0]\n",
            "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
            "*filter\n-A INPUT -m comment --comment \"open\nCOMMIT\n",
        ] {
            assert!(missing_rules(Table::Filter, bad, &[]).is_err(), "{bad:?}");
        }
    }
}
