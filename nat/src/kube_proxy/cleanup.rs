//! kube-proxy's `--cleanup` for what a mode keeps in iptables: its own chains and its jumps
//! from the built-in chains, and nothing else.
//!
//! What is "its own" follows upstream's `CleanupLeftovers` (pkg/proxy/iptables and
//! pkg/proxy/ipvs): the fixed chains the mode creates, the per-Service chains (`KUBE-SVC-`,
//! `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-`, `KUBE-SEP-`) in iptables mode, and the jumps to them.
//! Chains other agents own keep their rules even when their names start with `KUBE-`:
//! kubelet's `KUBE-FIREWALL`, `KUBE-KUBELET-CANARY`, `KUBE-IPTABLES-HINT`, `KUBE-MARK-DROP`, and
//! the jumps to `KUBE-FIREWALL` (upstream creates those too but leaves them to kubelet).
//!
//! Two things go further than upstream, so that cleanup never breaks another program:
//! every copy of a jump is deleted (upstream deletes one), and a chain of ours that a rule
//! outside our chains still jumps to is left whole (flushing it would change what that rule
//! does; upstream's commit fails then). [`plan_cleanup`] decides all of it from
//! `iptables-save` text, without touching the kernel.

use super::iptables_mode::{
    KUBE_EXTERNAL_SERVICES, KUBE_FIREWALL, KUBE_FORWARD, KUBE_MARK_MASQ, KUBE_NODEPORTS,
    KUBE_POSTROUTING, KUBE_PROXY_FIREWALL, KUBE_SERVICES, is_service_chain, jump_rules,
};
use super::iptables_sync::{SyncError, run_with_input};
use crate::iptables::{
    ParseError, Rule, SavedRule, SavedTable, Table, Target, parse_save_tolerant,
};
use crate::kube::IpFamily;
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet};

/// `KUBE-PROXY-CANARY`: upstream's canary chain (mangle, nat, filter); removed when found.
pub const KUBE_PROXY_CANARY: &str = "KUBE-PROXY-CANARY";

/// What one proxy mode owns in iptables.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    /// Its fixed chains, per table.
    pub chains: Vec<(Table, &'static str)>,
    /// Also the per-Service chains of the nat table (iptables mode).
    pub service_chains: bool,
    /// Its jumps from the built-in chains (`table`, rule).
    pub jumps: Vec<(Table, Rule)>,
}

impl Owned {
    /// kube-proxy's iptables mode (upstream `cleanupLeftoversForFamily`): nat `KUBE-SERVICES`,
    /// `KUBE-NODEPORTS`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ` and the per-Service chains; filter
    /// `KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`, `KUBE-FORWARD`, `KUBE-NODEPORTS`,
    /// `KUBE-PROXY-FIREWALL`; `KUBE-PROXY-CANARY` anywhere; every jump of
    /// [`jump_rules`] except kubelet's jumps to `KUBE-FIREWALL`.
    pub fn iptables_mode() -> Owned {
        let mut chains = vec![
            (Table::Nat, KUBE_SERVICES),
            (Table::Nat, KUBE_NODEPORTS),
            (Table::Nat, KUBE_POSTROUTING),
            (Table::Nat, KUBE_MARK_MASQ),
            (Table::Filter, KUBE_SERVICES),
            (Table::Filter, KUBE_EXTERNAL_SERVICES),
            (Table::Filter, KUBE_FORWARD),
            (Table::Filter, KUBE_NODEPORTS),
            (Table::Filter, KUBE_PROXY_FIREWALL),
        ];
        for t in [Table::Mangle, Table::Nat, Table::Filter] {
            chains.push((t, KUBE_PROXY_CANARY));
        }
        let jumps = jump_rules()
            .into_iter()
            .filter(
                |(_, _, r)| !matches!(&r.target, Some(Target::Jump(c)) if &**c == KUBE_FIREWALL),
            )
            .map(|(t, _, r)| (t, r))
            .collect();
        Owned {
            chains,
            service_chains: true,
            jumps,
        }
    }

    /// `true` when `chain` of `table` is ours.
    pub fn owns(&self, table: Table, chain: &str) -> bool {
        self.chains.iter().any(|(t, c)| *t == table && *c == chain)
            || (self.service_chains && table == Table::Nat && is_service_chain(chain))
    }

    /// The tables with something of ours, in the order they are cleaned.
    pub fn tables(&self) -> Vec<Table> {
        let mut v: Vec<Table> = Vec::new();
        for t in self
            .chains
            .iter()
            .map(|(t, _)| *t)
            .chain(self.jumps.iter().map(|(t, _)| *t))
            .chain(self.service_chains.then_some(Table::Nat))
        {
            if !v.contains(&t) {
                v.push(t);
            }
        }
        v
    }
}

/// A chain of ours that cleanup leaves, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChain {
    /// The chain.
    pub chain: String,
    /// The rule outside our chains that jumps to it (or the kept chain that does).
    pub used_by: String,
}

/// What cleanup does to one table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanupPlan {
    /// The chains flushed and deleted.
    pub removed: Vec<String>,
    /// Jumps deleted (every copy counts).
    pub jumps_deleted: usize,
    /// Chains of ours left whole because something else still uses them.
    pub kept: Vec<KeptChain>,
    /// The `iptables-restore --noflush` input that does it; empty when there is nothing to do.
    pub input: String,
}

/// Where `rule` jumps or goes to (`-j CHAIN` / `-g CHAIN`), for a rule modelled or not.
fn rule_target(rule: &SavedRule) -> Option<String> {
    match rule {
        SavedRule::Known(r) => match &r.target {
            Some(Target::Jump(c)) => Some(c.to_string()),
            _ => None,
        },
        SavedRule::Opaque(o) => {
            let words = crate::iptables::split_rule_words(&o.text);
            words
                .iter()
                .position(|w| matches!(w.as_str(), "-j" | "--jump" | "-g" | "--goto"))
                .and_then(|i| words.get(i + 1))
                .cloned()
        }
    }
}

/// Plans the cleanup of `table` from its `iptables-save -t TABLE` output.
pub fn plan_cleanup(owned: &Owned, table: Table, save: &str) -> Result<CleanupPlan, ParseError> {
    let tables = parse_save_tolerant(save)?;
    let live: &SavedTable = tables
        .iter()
        .find(|t| t.table == table)
        .ok_or_else(|| ParseError {
            line: save.lines().count(),
            message: format!("no *{table} table in iptables-save -t {table} output"),
            text: String::new(),
        })?;
    let mut ours: BTreeSet<String> = live
        .chains
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| owned.owns(table, c))
        .collect();
    let jumps: Vec<Rule> = owned
        .jumps
        .iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, r)| r.canonical())
        .collect();
    // Our jumps, every copy, and everything else that jumps into our chains.
    let mut deletes: Vec<&Rule> = Vec::new();
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut inside: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &live.rules {
        let chain = r.chain();
        if ours.contains(chain) {
            if let Some(t) = rule_target(r) {
                inside.entry(chain).or_default().push(t);
            }
            continue;
        }
        if let SavedRule::Known(k) = r {
            if jumps.contains(&k.canonical()) {
                deletes.push(k);
                continue;
            }
        }
        if let Some(t) = rule_target(r).filter(|t| ours.contains(t)) {
            let text = match r {
                SavedRule::Known(k) => k.render(),
                SavedRule::Opaque(o) => o.text.clone(),
            };
            kept.entry(t).or_insert(text);
        }
    }
    // A kept chain keeps the chains it jumps to.
    let mut queue: Vec<String> = kept.keys().cloned().collect();
    while let Some(c) = queue.pop() {
        for t in inside.get(c.as_str()).into_iter().flatten() {
            if ours.contains(t) && !kept.contains_key(t) {
                kept.insert(t.clone(), format!("the kept chain {c}"));
                queue.push(t.clone());
            }
        }
    }
    ours.retain(|c| !kept.contains_key(c));
    let mut plan = CleanupPlan {
        removed: ours.iter().cloned().collect(),
        jumps_deleted: deletes.len(),
        kept: kept
            .into_iter()
            .map(|(chain, used_by)| KeptChain { chain, used_by })
            .collect(),
        input: String::new(),
    };
    if plan.removed.is_empty() && deletes.is_empty() {
        return Ok(plan);
    }
    let mut input = format!("*{table}\n");
    // Declaring a chain flushes it; then the jumps go, then the chains.
    for c in &plan.removed {
        input.push_str(&format!(":{c} - [0:0]\n"));
    }
    for r in deletes {
        let line = r.render();
        input.push_str("-D ");
        input.push_str(line.strip_prefix("-A ").unwrap_or(&line));
        input.push('\n');
    }
    for c in &plan.removed {
        input.push_str(&format!("-X {c}\n"));
    }
    input.push_str("COMMIT\n");
    plan.input = input;
    Ok(plan)
}

/// What [`cleanup`] did, per table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CleanupReport {
    /// Each table cleaned and its plan.
    pub tables: Vec<(Table, CleanupPlan)>,
}

impl CleanupReport {
    /// The chains left because something else uses them, as `table CHAIN (used by ...)`.
    pub fn kept(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|(t, p)| {
                p.kept
                    .iter()
                    .map(move |k| format!("{t} {} (used by {})", k.chain, k.used_by))
            })
            .collect()
    }
}

/// Removes what `owned` names from the namespace's iptables tables (`family`, with the
/// programs `restore` and `save`), one `iptables-restore --noflush` commit per table.
pub fn cleanup(
    ns: &NetNs,
    owned: &Owned,
    restore: &str,
    save: &str,
) -> Result<CleanupReport, SyncError> {
    let mut report = CleanupReport::default();
    for table in owned.tables() {
        let text = match run_with_input(ns, save, &["-t", table.as_str()], b"") {
            Ok(t) => t,
            // A table the kernel does not have (iptables-legacy without iptable_mangle)
            // holds nothing of ours.
            Err(SyncError::Failed { stderr, .. }) if stderr.contains("does not exist") => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let plan = plan_cleanup(owned, table, &text)?;
        if !plan.input.is_empty() {
            run_with_input(
                ns,
                restore,
                &["-w", "5", "--noflush"],
                plan.input.as_bytes(),
            )?;
        }
        report.tables.push((table, plan));
    }
    Ok(report)
}

/// [`cleanup`] of kube-proxy's iptables mode with `backend`'s programs.
pub fn cleanup_iptables_mode(
    ns: &NetNs,
    backend: super::iptables_sync::Backend,
    family: IpFamily,
) -> Result<CleanupReport, SyncError> {
    let (restore, _, save) = backend.programs(family);
    cleanup(ns, &Owned::iptables_mode(), restore, save)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubelet's chains, Docker's, ours (with one jump twice, as the old duplicate-jump bug
    /// left them), and a foreign chain that jumps into KUBE-SERVICES.
    const FILTER: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS
-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS
-A INPUT -j KUBE-FIREWALL
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A FORWARD -j DOCKER-USER
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A DOCKER-USER -j RETURN
COMMIT
";

    #[test]
    fn iptables_mode_removes_only_its_own() {
        let plan = plan_cleanup(&Owned::iptables_mode(), Table::Filter, FILTER).unwrap();
        assert_eq!(
            plan.removed,
            [
                "KUBE-EXTERNAL-SERVICES",
                "KUBE-FORWARD",
                "KUBE-NODEPORTS",
                "KUBE-PROXY-FIREWALL",
                "KUBE-SERVICES"
            ]
        );
        assert_eq!(plan.jumps_deleted, 4);
        assert!(plan.kept.is_empty());
        assert!(!plan.input.contains("KUBE-FIREWALL"), "{}", plan.input);
        assert!(!plan.input.contains("KUBE-KUBELET-CANARY"));
        assert!(!plan.input.contains("DOCKER"));
        assert_eq!(
            plan.input
                .matches("-D INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n")
                .count(),
            2
        );
        assert!(
            plan.input
                .starts_with("*filter\n:KUBE-EXTERNAL-SERVICES - [0:0]\n")
        );
        assert!(plan.input.ends_with("-X KUBE-SERVICES\nCOMMIT\n"));
    }

    #[test]
    fn a_chain_another_rule_uses_is_left_whole() {
        let nat = "*nat
:PREROUTING ACCEPT [0:0]
:OTHER - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SVC-CCCCCCCCCCCCCCCC - [0:0]
:KUBE-MARK-DROP - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OTHER -p tcp -m multiport --dports 80,443 -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-BBBBBBBBBBBBBBBB
-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m tcp -j DNAT --to-destination 10.244.0.2:443
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
COMMIT
";
        let plan = plan_cleanup(&Owned::iptables_mode(), Table::Nat, nat).unwrap();
        assert_eq!(plan.removed, ["KUBE-SVC-CCCCCCCCCCCCCCCC"]);
        assert_eq!(plan.jumps_deleted, 1);
        let kept: Vec<&str> = plan.kept.iter().map(|k| k.chain.as_str()).collect();
        assert_eq!(
            kept,
            [
                "KUBE-SEP-BBBBBBBBBBBBBBBB",
                "KUBE-SERVICES",
                "KUBE-SVC-AAAAAAAAAAAAAAAA"
            ]
        );
        assert_eq!(
            plan.kept[1].used_by,
            "-A OTHER -p tcp -m multiport --dports 80,443 -j KUBE-SERVICES"
        );
        assert!(!plan.input.contains("KUBE-MARK-DROP"));
    }

    #[test]
    fn nothing_of_ours_is_nothing_to_do_and_garbage_is_an_error() {
        let docker = "*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\nCOMMIT\n";
        let plan = plan_cleanup(&Owned::iptables_mode(), Table::Filter, docker).unwrap();
        assert_eq!(plan, CleanupPlan::default());
        for bad in ["", "*filter\n", "*nat\nCOMMIT\n", "nonsense\n"] {
            assert!(
                plan_cleanup(&Owned::iptables_mode(), Table::Filter, bad).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            Owned::iptables_mode().tables(),
            [Table::Nat, Table::Filter, Table::Mangle]
        );
    }
}
