//! Evaluates an iptables rule set (read with `iptables-save`, parsed by podnet-nat) against one
//! packet at one netfilter hook: which chains it enters, which rule decides, which DNAT target
//! with what probability, which marks it gets, whether it is dropped or rejected.
//!
//! The packet is the first of a new connection (conntrack state NEW, plus DNAT once a DNAT
//! happened in this namespace), which is what the nat table sees. `-m statistic` choices are
//! made by a [`Choice`](super::Choice), and every alternative is reported with its
//! probability. `-m recent --rcheck` (session affinity) is taken as "no earlier connection".

use super::{Choice, Flow, Hook, Proto};
use podnet_nat::iptables::{CtState, Match, Protocol, Rule, Table, TableRules, Target};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Nesting limit for jumps (the kernel's is 16 in iptables-nft's translation, more with
/// legacy; a loop in the rule set would otherwise never end).
const MAX_DEPTH: usize = 32;

/// What a hook decided for the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The packet goes on.
    Accept,
    /// A rule (or a chain policy) dropped it.
    Drop {
        /// The table.
        table: String,
        /// The chain of the rule (the built-in chain, for a policy).
        chain: String,
        /// The rule, or `policy DROP`.
        rule: String,
    },
    /// A REJECT rule refused it (an ICMP error or TCP reset goes back).
    Reject {
        /// The table.
        table: String,
        /// The chain of the rule.
        chain: String,
        /// The rule.
        rule: String,
    },
}

/// A jump from one chain into another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jump {
    /// The table.
    pub table: String,
    /// The chain the jumping rule is in.
    pub from: String,
    /// The chain jumped to.
    pub to: String,
}

/// One endpoint a `-m statistic --mode random` chain can choose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    /// The chain the rule jumps to (e.g. `KUBE-SEP-...`).
    pub chain: String,
    /// The DNAT target inside that chain, when there is one.
    pub dnat: Option<SocketAddr>,
    /// The rule's comment, if any.
    pub comment: Option<String>,
    /// The probability that a new connection takes this rule.
    pub probability: f64,
}

/// A random choice between rules of one chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// The chain with the `-m statistic` rules.
    pub chain: String,
    /// Every rule that could be taken, in order.
    pub alternatives: Vec<Alternative>,
    /// The chain the walk follows.
    pub chosen: String,
}

/// What the rules did to the packet at one hook.
#[derive(Debug, Clone, Default)]
pub(crate) struct HookOutcome {
    /// Accept, drop or reject.
    pub(crate) verdict: Option<Verdict>,
    /// Chains entered, in order.
    pub(crate) jumps: Vec<Jump>,
    /// Rules that matched and did something, rendered with their table.
    pub(crate) decisions: Vec<(String, String)>,
    /// Random choices made.
    pub(crate) spreads: Vec<Spread>,
    /// `Some((old, new))` when the destination changed.
    pub(crate) dnat: Option<(SocketAddr, SocketAddr)>,
    /// `Some((old, new))` when the source changed.
    pub(crate) snat: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Mark before and after, when it changed.
    pub(crate) mark: Option<(u32, u32)>,
    /// Rules that could not be evaluated exactly.
    pub(crate) caveats: Vec<String>,
}

/// The context a rule is evaluated in.
pub(crate) struct Ctx<'a> {
    pub(crate) hook: Hook,
    pub(crate) iif: Option<&'a str>,
    pub(crate) oif: Option<&'a str>,
    pub(crate) is_local: &'a dyn Fn(Ipv4Addr) -> bool,
    /// The address MASQUERADE would take (the output device's), when known.
    pub(crate) masq_addr: Option<Ipv4Addr>,
    pub(crate) choice: &'a Choice,
    /// Whether the flow matches a set match (`[!]NAME DIRS`); `None`: no such set.
    pub(crate) sets: Option<&'a SetMatch<'a>>,
}

/// Answers a set match (`[!]NAME DIRS`) for a flow; `None` when there is no such set.
pub(crate) type SetMatch<'a> = dyn Fn(&str, &Flow) -> Option<bool> + 'a;

#[cfg(test)]
impl<'a> Ctx<'a> {
    /// A context for unit tests: from `cni0` out of `oif`, MASQUERADE taking `masq`.
    pub(crate) fn for_test(
        hook: Hook,
        choice: &'a Choice,
        local: &'a dyn Fn(Ipv4Addr) -> bool,
        oif: &'a str,
        masq: Ipv4Addr,
    ) -> Ctx<'a> {
        Ctx {
            hook,
            iif: Some("cni0"),
            oif: Some(oif),
            is_local: local,
            masq_addr: Some(masq),
            choice,
            sets: None,
        }
    }
}

/// The tables that have a chain at `hook`, in the kernel's priority order.
fn tables_at(hook: Hook) -> &'static [Table] {
    match hook {
        Hook::Prerouting => &[Table::Raw, Table::Mangle, Table::Nat],
        Hook::Input => &[Table::Mangle, Table::Filter, Table::Nat],
        Hook::Forward => &[Table::Mangle, Table::Filter],
        Hook::Output => &[Table::Raw, Table::Mangle, Table::Nat, Table::Filter],
        Hook::Postrouting => &[Table::Mangle, Table::Nat],
    }
}

/// The alternative `choice` follows (its chain): the first one, or the first preferred.
pub(crate) fn pick(choice: &Choice, alternatives: &[Alternative]) -> String {
    match choice {
        Choice::First => None,
        Choice::Prefer(list) => alternatives
            .iter()
            .find(|a| {
                list.iter().any(|c| {
                    *c == a.chain
                        || a.dnat.is_some_and(|d| {
                            c.parse::<SocketAddr>().is_ok_and(|s| s == d)
                                || c.parse::<IpAddr>().is_ok_and(|ip| ip == d.ip())
                        })
                })
            })
            .map(|a| a.chain.clone()),
    }
    .or_else(|| alternatives.first().map(|a| a.chain.clone()))
    .unwrap_or_default()
}

/// The priority of an iptables table's chain at `hook` (the kernel's NF_IP_PRI_*), when the
/// table has one there.
pub(crate) fn iptables_priority(table: Table, hook: Hook) -> Option<i32> {
    if !tables_at(hook).contains(&table) {
        return None;
    }
    Some(match table {
        Table::Raw => -300,
        Table::Mangle => -150,
        Table::Nat => match hook {
            Hook::Prerouting | Hook::Output => -100,
            _ => 100,
        },
        Table::Filter => 0,
    })
}

/// Evaluates one table's built-in chain of `ctx.hook` for `flow`, changing it as the rules do
/// (DNAT, SNAT, MASQUERADE, MARK) and recording what happened in `out`.
pub(crate) fn eval_table(
    table: &TableRules,
    flow: &mut Flow,
    ctx: &Ctx<'_>,
    out: &mut HookOutcome,
) -> Verdict {
    // The nat table sees only the first packet of a connection: ours is new.
    let chain = ctx.hook.chain_name();
    if !table.chains.iter().any(|c| c.name == chain) {
        return Verdict::Accept;
    }
    let mut ev = Evaluator {
        table,
        flow,
        ctx,
        out,
    };
    match ev.chain(chain, 0) {
        End::Terminal(v) => v,
        End::Return => {
            let policy = table
                .chains
                .iter()
                .find(|c| c.name == chain)
                .and_then(|c| c.policy.clone())
                .unwrap_or_else(|| "ACCEPT".into());
            if policy == "DROP" {
                Verdict::Drop {
                    table: table.table.to_string(),
                    chain: chain.to_owned(),
                    rule: "policy DROP".into(),
                }
            } else {
                Verdict::Accept
            }
        }
    }
}

/// Evaluates every table at `hook` for `flow`, in priority order, until one drops it.
#[cfg(test)]
pub(crate) fn eval_hook(tables: &[TableRules], flow: &mut Flow, ctx: &Ctx<'_>) -> HookOutcome {
    let mut out = HookOutcome::default();
    let mark_before = flow.mark;
    for t in tables_at(ctx.hook) {
        let Some(table) = tables.iter().find(|x| x.table == *t) else {
            continue;
        };
        let verdict = eval_table(table, flow, ctx, &mut out);
        if verdict != Verdict::Accept {
            out.verdict = Some(verdict);
            break;
        }
    }
    if flow.mark != mark_before {
        out.mark = Some((mark_before, flow.mark));
    }
    if out.verdict.is_none() {
        out.verdict = Some(Verdict::Accept);
    }
    out
}

enum End {
    Return,
    Terminal(Verdict),
}

struct Evaluator<'a, 'b> {
    table: &'a TableRules,
    flow: &'b mut Flow,
    ctx: &'b Ctx<'b>,
    out: &'b mut HookOutcome,
}

fn chain_of(t: &Target) -> Option<&str> {
    match t {
        Target::Jump(c) => Some(c),
        _ => None,
    }
}

fn comment_of(r: &Rule) -> Option<String> {
    r.matches.iter().find_map(|m| match m {
        Match::Comment(c) => Some(c.to_string()),
        _ => None,
    })
}

fn probability_of(r: &Rule) -> Option<f64> {
    r.matches.iter().find_map(|m| match m {
        Match::Probability(p) => Some(*p),
        _ => None,
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn proto_of(p: Protocol) -> Option<Proto> {
    match p {
        Protocol::Tcp => Some(Proto::Tcp),
        Protocol::Udp => Some(Proto::Udp),
        Protocol::Sctp => None,
    }
}

/// `-i eth+` style interface matching.
fn iface_matches(pattern: &str, name: Option<&str>) -> bool {
    let Some(name) = name else { return false };
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

impl Evaluator<'_, '_> {
    fn chain(&mut self, name: &str, depth: usize) -> End {
        if depth > MAX_DEPTH {
            self.out
                .caveats
                .push(format!("jumps nested deeper than {MAX_DEPTH} at {name}"));
            return End::Return;
        }
        let rules: Vec<&Rule> = self.table.chain_rules(name).collect();
        // The endpoint this chain's random rules lead to, chosen when the first one is met.
        let mut chosen: Option<String> = None;
        for (i, rule) in rules.iter().enumerate() {
            if !self.matches_except_probability(rule) {
                continue;
            }
            if probability_of(rule).is_some() {
                let pick = match &chosen {
                    Some(c) => c.clone(),
                    None => {
                        let c = self.spread(name, &rules[i..]);
                        chosen = Some(c.clone());
                        c
                    }
                };
                if rule.target.as_ref().and_then(chain_of) != Some(pick.as_str()) {
                    continue;
                }
            }
            let Some(target) = &rule.target else { continue };
            match self.apply(name, rule, target, depth) {
                Some(end) => return end,
                None => continue,
            }
        }
        End::Return
    }

    /// Lists the alternatives of the random rules starting at `rules[0]` and picks one.
    fn spread(&mut self, chain: &str, rules: &[&Rule]) -> String {
        let mut remaining = 1.0f64;
        let mut alternatives = Vec::new();
        for r in rules {
            if !self.matches_except_probability(r) {
                continue;
            }
            let Some(target) = r.target.as_ref().and_then(chain_of) else {
                // A rule that is not a jump ends the choice.
                break;
            };
            let p = probability_of(r);
            let take = remaining * p.unwrap_or(1.0);
            alternatives.push(Alternative {
                chain: target.to_owned(),
                dnat: self.dnat_in(target),
                comment: comment_of(r),
                probability: take,
            });
            match p {
                Some(p) => remaining *= 1.0 - p,
                None => break,
            }
        }
        let chosen = pick(self.ctx.choice, &alternatives);
        self.out.spreads.push(Spread {
            chain: chain.to_owned(),
            alternatives,
            chosen: chosen.clone(),
        });
        chosen
    }

    /// The first DNAT target in `chain`.
    fn dnat_in(&self, chain: &str) -> Option<SocketAddr> {
        self.table.chain_rules(chain).find_map(|r| match r.target {
            Some(Target::Dnat(sa)) => Some(sa),
            _ => None,
        })
    }

    /// Applies a matching rule's target; `Some` ends the chain.
    fn apply(&mut self, chain: &str, rule: &Rule, target: &Target, depth: usize) -> Option<End> {
        let table = self.table.table.as_str();
        let text = super::ipset::lower(&rule.render());
        match target {
            Target::Jump(to) => {
                self.out.jumps.push(Jump {
                    table: table.to_owned(),
                    from: chain.to_owned(),
                    to: to.to_string(),
                });
                match self.chain(to, depth + 1) {
                    End::Return => None,
                    t @ End::Terminal(_) => Some(t),
                }
            }
            Target::Accept => {
                self.out.decisions.push((table.to_owned(), text));
                Some(End::Terminal(Verdict::Accept))
            }
            Target::Drop => Some(End::Terminal(Verdict::Drop {
                table: table.to_owned(),
                chain: chain.to_owned(),
                rule: text,
            })),
            Target::Reject => Some(End::Terminal(Verdict::Reject {
                table: table.to_owned(),
                chain: chain.to_owned(),
                rule: text,
            })),
            Target::Return => Some(End::Return),
            Target::Masquerade { .. } => {
                match self.ctx.masq_addr {
                    Some(a) => {
                        self.out.snat = Some((self.flow.src, a));
                        self.flow.src = a;
                    }
                    None => self
                        .out
                        .caveats
                        .push("MASQUERADE without a known output address".into()),
                }
                self.out.decisions.push((table.to_owned(), text));
                Some(End::Terminal(Verdict::Accept))
            }
            Target::Snat { to, .. } => {
                if let IpAddr::V4(a) = to {
                    self.out.snat = Some((self.flow.src, *a));
                    self.flow.src = *a;
                }
                self.out.decisions.push((table.to_owned(), text));
                Some(End::Terminal(Verdict::Accept))
            }
            Target::Dnat(sa) => {
                let old = SocketAddr::new(self.flow.dst.into(), self.flow.dport.unwrap_or(0));
                if let IpAddr::V4(a) = sa.ip() {
                    self.flow.dst = a;
                }
                if sa.port() != 0 && self.flow.dport.is_some() {
                    self.flow.dport = Some(sa.port());
                }
                self.flow.dnat = true;
                self.out.dnat = Some((old, *sa));
                self.out.decisions.push((table.to_owned(), text));
                Some(End::Terminal(Verdict::Accept))
            }
            Target::MarkOr(v) => {
                self.flow.mark |= v;
                self.out.decisions.push((table.to_owned(), text));
                None
            }
            Target::MarkOrText(s) => {
                self.flow.mark |= parse_u32(s).unwrap_or(0);
                self.out.decisions.push((table.to_owned(), text));
                None
            }
            Target::MarkXorText(s) => {
                self.flow.mark ^= parse_u32(s).unwrap_or(0);
                self.out.decisions.push((table.to_owned(), text));
                None
            }
            Target::MarkSetX { value, mask } => {
                self.flow.mark = (self.flow.mark & !mask) ^ value;
                self.out.decisions.push((table.to_owned(), text));
                None
            }
        }
    }

    fn matches_except_probability(&mut self, rule: &Rule) -> bool {
        let f = &*self.flow;
        let mut unknown = Vec::new();
        let hit = rule.matches.iter().all(|m| match m {
            Match::Comment(c) => match c.strip_prefix(super::ipset::MARK) {
                Some(spec) => {
                    let known = self.ctx.sets.and_then(|sets| sets(spec, f));
                    if known.is_none() {
                        unknown.push(spec.to_owned());
                    }
                    known.unwrap_or(false)
                }
                None => true,
            },
            Match::Nfacct(_) | Match::Probability(_) => true,
            Match::Protocol(p) | Match::ProtocolModule(p) => proto_of(*p) == Some(f.proto),
            Match::DestinationPort(p) => f.dport == Some(*p),
            Match::SourcePort(p) => f.sport == Some(*p),
            Match::Source { net, negate } => net.contains(&IpAddr::V4(f.src)) != *negate,
            Match::Destination { net, negate } => net.contains(&IpAddr::V4(f.dst)) != *negate,
            Match::InInterface { name, negate } => iface_matches(name, self.ctx.iif) != *negate,
            Match::OutInterface { name, negate } => iface_matches(name, self.ctx.oif) != *negate,
            Match::SrcType(_) => (self.ctx.is_local)(f.src),
            Match::DstType(_) => (self.ctx.is_local)(f.dst),
            Match::Mark {
                value,
                mask,
                negate,
            } => {
                let v = parse_u32(value).unwrap_or(0);
                let m = mask.as_deref().and_then(parse_u32).unwrap_or(u32::MAX);
                ((f.mark & m) == v) != *negate
            }
            Match::CtState { states, negate } => {
                let ours = states.iter().any(|s| match s {
                    CtState::New => true,
                    CtState::Dnat => f.dnat,
                    _ => false,
                });
                ours != *negate
            }
            Match::RecentSet { .. } => true,
            Match::RecentCheck { .. } => false,
        });
        for spec in unknown {
            let name = spec.trim_start_matches('!');
            self.out.caveats.push(format!(
                "ipset {} not read: its match taken as not matching",
                name.split(' ').next().unwrap_or(name)
            ));
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_nat::iptables::parse_save;

    const SAVE: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:FLANNEL-POSTRTG - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "demo/echo:tcp cluster IP" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m comment --comment "demo/echo:tcp -> 10.244.1.2:7777" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1
-A KUBE-SVC-A -m comment --comment "demo/echo:tcp -> 10.244.2.2:7777" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2
-A KUBE-SVC-A -m comment --comment "demo/echo:tcp -> 10.244.2.3:7777" -j KUBE-SEP-3
-A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.2:7777
-A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.2.2:7777
-A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.2.3:7777
COMMIT
*filter
:FORWARD DROP [0:0]
:KUBE-SERVICES - [0:0]
-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES
-A FORWARD -s 10.244.0.0/16 -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.13/32 -p tcp -m comment --comment "demo/empty:tcp has no endpoints" -m tcp --dport 80 -j REJECT
COMMIT
"#;

    fn flow(dst: [u8; 4], port: u16) -> Flow {
        Flow {
            proto: Proto::Tcp,
            src: Ipv4Addr::new(10, 244, 1, 2),
            dst: dst.into(),
            sport: None,
            dport: Some(port),
            mark: 0,
            dnat: false,
        }
    }

    fn ctx<'a>(hook: Hook, choice: &'a Choice, local: &'a dyn Fn(Ipv4Addr) -> bool) -> Ctx<'a> {
        Ctx::for_test(hook, choice, local, "eth0", Ipv4Addr::new(198, 18, 0, 1))
    }

    #[test]
    fn cluster_ip_spread_and_dnat() {
        let tables = parse_save(SAVE).unwrap();
        let local = |_: Ipv4Addr| false;
        let mut f = flow([10, 96, 0, 10], 80);
        let first = Choice::First;
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Prerouting, &first, &local));
        assert_eq!(o.verdict, Some(Verdict::Accept));
        assert_eq!(f.dst, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(f.dport, Some(7777));
        let s = &o.spreads[0];
        assert_eq!(s.alternatives.len(), 3);
        for a in &s.alternatives {
            assert!((a.probability - 1.0 / 3.0).abs() < 1e-6, "{a:?}");
        }
        let to: Vec<&str> = o.jumps.iter().map(|j| j.to.as_str()).collect();
        assert_eq!(to, ["KUBE-SERVICES", "KUBE-SVC-A", "KUBE-SEP-1"]);

        // The last endpoint (no statistic match) is reachable by choice too.
        let mut f = flow([10, 96, 0, 10], 80);
        let prefer = Choice::Prefer(vec!["10.244.2.3:7777".into()]);
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Prerouting, &prefer, &local));
        assert_eq!(f.dst, Ipv4Addr::new(10, 244, 2, 3));
        assert_eq!(o.jumps.last().unwrap().to, "KUBE-SEP-3");
    }

    #[test]
    fn masquerade_and_reject() {
        let tables = parse_save(SAVE).unwrap();
        let local = |_: Ipv4Addr| false;
        let first = Choice::First;
        let mut f = flow([198, 19, 0, 1], 80);
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Postrouting, &first, &local));
        assert_eq!(
            o.snat,
            Some((Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(198, 18, 0, 1)))
        );
        let mut f = flow([10, 244, 2, 9], 80);
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Postrouting, &first, &local));
        assert!(o.snat.is_none());

        let mut f = flow([10, 96, 0, 13], 80);
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Forward, &first, &local));
        assert!(
            matches!(o.verdict, Some(Verdict::Reject { ref rule, .. }) if rule.contains("has no endpoints"))
        );
        // The DROP policy applies when nothing accepts.
        let mut f = flow([10, 96, 0, 10], 80);
        f.src = Ipv4Addr::new(192, 168, 9, 9);
        let o = eval_hook(&tables, &mut f, &ctx(Hook::Forward, &first, &local));
        assert!(matches!(o.verdict, Some(Verdict::Drop { .. })));
    }
}
