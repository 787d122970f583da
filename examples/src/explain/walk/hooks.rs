//! The netfilter hooks: the iptables and nftables chains registered at a hook, interleaved by
//! priority, evaluated on the flow, and what they did told as one hop.

use super::{Next, Walker};
use crate::explain::narrate::Says;
use crate::explain::nft::{self, NftTable};
use crate::explain::rules::{self, Ctx, HookOutcome, Verdict};
use crate::explain::view::NsView;
use crate::explain::{Flow, Hook, RulesHop, Step};
use podnet_nat::iptables::{Table, TableRules};
use std::net::Ipv4Addr;

/// A base chain registered at a hook: one table of iptables, or one chain of an nftables table.
enum Source<'a> {
    Iptables(&'a TableRules),
    Nft(&'a NftTable, String),
}

/// A source with what orders it: (priority, table handle, a nat chain, the source).
type Ranked<'a> = (i32, u64, bool, Source<'a>);

/// The chains at `hook`, from both rule sets, in the kernel's priority order; on a tie, the
/// kernel runs the hook registered last first: the newer table (nftables gives tables
/// increasing handles).
fn sources_at(v: &NsView, hook: Hook) -> Vec<Ranked<'_>> {
    let r = v.rules();
    let nft = v.nft_rules();
    let mut sources: Vec<Ranked<'_>> = Vec::new();
    for t in &r.tables {
        if let Some(prio) = rules::iptables_priority(t.table, hook) {
            let nat = t.table == Table::Nat;
            let handle = nft.handle_of("ip", t.table.as_str()).unwrap_or(0);
            sources.push((prio, handle, nat, Source::Iptables(t)));
        }
    }
    for t in nft.tables.iter().filter(|t| t.ipv4()) {
        for (chain, base) in t.base_chains(hook) {
            sources.push((base.prio, t.handle, base.nat, Source::Nft(t, chain)));
        }
    }
    sources.sort_by_key(|(prio, handle, _, _)| (*prio, std::cmp::Reverse(*handle)));
    sources
}

/// The address MASQUERADE picks on `oif`: the one on the next hop's subnet, else the first.
fn masquerade_addr(v: &NsView, oif: Option<&str>, nexthop: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    let l = oif.and_then(|o| v.link_named(o))?;
    let addrs = v.v4_addrs_of(l.index);
    addrs
        .iter()
        .find(|(a, len)| {
            nexthop.is_some_and(|nh| ipnet::Ipv4Net::new(*a, *len).is_ok_and(|n| n.contains(&nh)))
        })
        .or(addrs.first())
        .map(|(a, _)| *a)
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accept",
        Verdict::Drop { .. } => "drop",
        Verdict::Reject { .. } => "reject",
    }
}

/// What is missing when a rule drops or rejects: kube-proxy's "has no endpoints" rules name
/// the Service.
fn missing_for(rule: &str) -> Option<String> {
    if !rule.contains("has no endpoints") {
        return None;
    }
    let svc = rule
        .split('"')
        .nth(1)
        .map(|c| c.trim_end_matches(" has no endpoints").to_owned())
        .unwrap_or_else(|| "the Service".into());
    Some(format!(
        "endpoints for Service {svc}: kube-proxy rejects traffic to a Service without endpoints"
    ))
}

impl<'t> Walker<'t> {
    /// Evaluates the namespace's iptables rules at `hook`; a drop ends the walk.
    pub(super) fn rules(
        &mut self,
        ns: usize,
        hook: Hook,
        iif: Option<&str>,
        oif: Option<&str>,
        nexthop: Option<Ipv4Addr>,
    ) -> Result<(), Next> {
        let v = self.view(ns);
        let r = v.rules();
        if let Some(e) = &r.error {
            let c = format!("{}: iptables rules not read ({e})", v.label);
            self.caveats.push(c);
        }
        if let Some(e) = &v.nft_rules().error {
            let c = format!("{}: nftables rules not read ({e})", v.label);
            self.caveats.push(c);
        }
        let sources = sources_at(v, hook);
        if sources.is_empty() {
            return Ok(());
        }
        for s in &r.skipped {
            self.caveats.push(format!(
                "{}: rule not evaluated (beyond the rule model): {s}",
                v.label
            ));
        }
        let is_local = |ip: Ipv4Addr| v.is_local(ip);
        let sets = |spec: &str, f: &Flow| v.ipsets().matches(spec, f);
        let ctx = Ctx {
            hook,
            iif,
            oif,
            is_local: &is_local,
            masq_addr: masquerade_addr(v, oif, nexthop),
            choice: self.choice,
            sets: Some(&sets),
        };
        let out = self.evaluate(&sources, &ctx);
        self.record_jumps(&v.label, &out);
        self.report(ns, hook, oif.or(iif), out)
    }

    /// Runs the flow through the chains of one hook, in order, until one does not accept.
    fn evaluate(&mut self, sources: &[Ranked<'_>], ctx: &Ctx<'_>) -> HookOutcome {
        let mut out = HookOutcome::default();
        let mark_before = self.flow.mark;
        for (_, _, nat, source) in sources {
            // Of several nat chains at one hook, the first that sets up a translation wins.
            if *nat && (out.dnat.is_some() || out.snat.is_some()) {
                continue;
            }
            let verdict = match source {
                Source::Iptables(t) => rules::eval_table(t, &mut self.flow, ctx, &mut out),
                Source::Nft(t, chain) => nft::eval_base(t, chain, &mut self.flow, ctx, &mut out),
            };
            if verdict != Verdict::Accept {
                out.verdict = Some(verdict);
                break;
            }
        }
        if self.flow.mark != mark_before {
            out.mark = Some((mark_before, self.flow.mark));
        }
        if out.verdict.is_none() {
            out.verdict = Some(Verdict::Accept);
        }
        out
    }

    /// The chains the probe's own packet enters (for the trace to compare), and the caveats.
    fn record_jumps(&mut self, label: &str, out: &HookOutcome) {
        if self.inner() {
            for j in &out.jumps {
                self.jumps.push((label.to_owned(), j.clone()));
            }
            match &out.verdict {
                Some(Verdict::Drop { table, chain, .. })
                | Some(Verdict::Reject { table, chain, .. }) => self.jumps.push((
                    label.to_owned(),
                    rules::Jump {
                        table: table.clone(),
                        from: chain.clone(),
                        to: "DROP".into(),
                    },
                )),
                _ => {}
            }
        }
        for c in &out.caveats {
            self.caveats.push(format!("{label}: {c}"));
        }
    }

    /// The rules hop, when the rules did something worth telling; a drop ends the walk.
    fn report(
        &mut self,
        ns: usize,
        hook: Hook,
        dev: Option<&str>,
        out: HookOutcome,
    ) -> Result<(), Next> {
        let verdict = out.verdict.clone().unwrap_or(Verdict::Accept);
        let interesting = out.dnat.is_some()
            || out.snat.is_some()
            || out.mark.is_some()
            || !out.spreads.is_empty()
            || verdict != Verdict::Accept;
        if !interesting {
            return Ok(());
        }
        let hop = RulesHop {
            hook: hook.chain_name().to_owned(),
            jumps: out.jumps.clone(),
            spreads: out.spreads.clone(),
            dnat: out.dnat.map(|(a, b)| (a.to_string(), b.to_string())),
            snat: out.snat.map(|(a, b)| (a.to_string(), b.to_string())),
            mark: out.mark,
            rules: out
                .decisions
                .iter()
                .map(|(t, r)| format!("-t {t} {r}"))
                .collect(),
            verdict: verdict_word(&verdict).to_owned(),
        };
        self.hop(ns, Step::Rules, dev, Says::Rules);
        if let Some(h) = self.hops.last_mut() {
            h.rules = Some(hop);
        }
        let word = verdict_word(&verdict);
        match verdict {
            Verdict::Accept => Ok(()),
            Verdict::Drop { table, chain, rule } | Verdict::Reject { table, chain, rule } => {
                let by = if matches!(table.as_str(), "filter" | "nat" | "mangle" | "raw") {
                    "iptables"
                } else {
                    "nftables"
                };
                let reason = format!("{} by {by} ({table} {chain}): {rule}", word.to_uppercase());
                Err(self.drop(ns, dev, reason, missing_for(&rule)))
            }
        }
    }
}
