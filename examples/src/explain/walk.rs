//! The walk itself: a small state machine over "the local stack sends", "a frame arrives on a
//! device" and "an IP packet arrives on a device", each step asking the namespace's kernel.

use super::rules::{self, Ctx, Verdict};
use super::state::{NsView, RouteAnswer, RouteQuery, RouteType};
use super::{
    Checkpoint, Choice, ExplainError, Flow, Hook, Hop, Outcome, Packet, Proto, RulesHop, Snapshot,
    Step, Topology, Walk,
};
use podnet_links::{Link, LinkKind, MacAddr, NeighState};
use std::net::{IpAddr, Ipv4Addr};

/// More states than any sane path has: beyond this, the packet is in a loop.
const MAX_STATES: usize = 64;
/// flannel's udp backend port.
pub(crate) const FLANNEL_UDP_PORT: u16 = 8285;

/// Walks the path of `packet` sent from the namespace `source` (a label or name of `topo`).
pub fn explain(
    topo: &Topology,
    source: &str,
    packet: &Packet,
    choice: &Choice,
) -> Result<Walk, ExplainError> {
    let topo = &topo.open()?;
    let src = topo
        .find(source)
        .ok_or_else(|| ExplainError::UnknownSource(source.to_owned(), topo.labels().join(", ")))?;
    let flow = Flow {
        proto: packet.proto,
        src: packet.src.unwrap_or(Ipv4Addr::UNSPECIFIED),
        dst: packet.dst,
        sport: None,
        dport: match packet.proto {
            Proto::Icmp => None,
            _ => packet.port,
        },
        mark: 0,
        dnat: false,
    };
    let mut w = Walker {
        topo,
        choice,
        flow,
        stack: Vec::new(),
        hops: Vec::new(),
        checkpoints: Vec::new(),
        jumps: Vec::new(),
        caveats: Vec::new(),
        defaulted: None,
        arp_macs: Vec::new(),
    };
    let outcome = w.run(src);
    let mut caveats = Vec::new();
    for c in w.caveats {
        if !caveats.contains(&c) {
            caveats.push(c);
        }
    }
    Ok(Walk {
        source: topo.views()[src].label.clone(),
        packet: packet.clone(),
        hops: w.hops,
        outcome,
        checkpoints: w.checkpoints,
        jumps: w.jumps,
        caveats,
    })
}

/// A packet wrapped inside the current one.
#[derive(Debug, Clone)]
struct Encap {
    kind: EncapKind,
    inner: Flow,
    inner_mac: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy)]
enum EncapKind {
    Vxlan { vni: u32, port: u16 },
    Udp { port: u16 },
}

enum Next {
    /// The local stack of a namespace sends the current packet (out of `oif` if given).
    Send {
        ns: usize,
        oif: Option<u32>,
    },
    /// A frame to `mac` arrives on device `dev`.
    Frame {
        ns: usize,
        dev: u32,
        mac: MacAddr,
    },
    /// An IP packet arrives on `iif` (after any bridging; `port`: the bridge port the frame
    /// came in by, when `iif` is a bridge).
    Packet {
        ns: usize,
        iif: u32,
        port: Option<u32>,
    },
    Done(Outcome),
}

struct Walker<'t> {
    topo: &'t Snapshot,
    choice: &'t Choice,
    /// The packet on the wire (the outer one while encapsulated).
    flow: Flow,
    /// Packets wrapped inside `flow`, innermost first.
    stack: Vec<Encap>,
    hops: Vec<Hop>,
    checkpoints: Vec<Checkpoint>,
    jumps: Vec<(String, rules::Jump)>,
    caveats: Vec<String>,
    /// A forwarding namespace that sent a destination owned by a known namespace down its
    /// default route: the likely missing route when the packet is dropped further on.
    defaulted: Option<String>,
    /// MACs this walk had the kernel resolve by ARP: the replies teach the bridges on the way.
    arp_macs: Vec<MacAddr>,
}

fn is_ether(l: &Link) -> bool {
    l.mac.is_some_and(|m| m != MacAddr::ZERO)
}

impl<'t> Walker<'t> {
    fn view(&self, ns: usize) -> &'t NsView {
        let topo: &'t Snapshot = self.topo;
        &topo.views()[ns]
    }

    fn label(&self, ns: usize) -> String {
        self.view(ns).label.clone()
    }

    fn inner(&self) -> bool {
        self.stack.is_empty()
    }

    fn hop(&mut self, ns: usize, step: Step, dev: Option<&str>, text: String) {
        self.hops.push(Hop {
            ns: self.label(ns),
            step,
            dev: dev.map(str::to_owned),
            text,
            to_ns: None,
            to_dev: None,
            rules: None,
            inner: self.inner(),
        });
    }

    fn checkpoint(&mut self, ns: usize, family: &str, hook: &str, dev: String) {
        self.checkpoints.push(Checkpoint {
            ns: self.label(ns),
            family: family.to_owned(),
            hook: hook.to_owned(),
            dev,
            inner: self.inner(),
        });
    }

    fn drop(
        &mut self,
        ns: usize,
        dev: Option<&str>,
        reason: String,
        missing: Option<String>,
    ) -> Next {
        self.hop(ns, Step::Drop, dev, reason.clone());
        Next::Done(Outcome::Dropped {
            ns: self.label(ns),
            reason,
            missing,
        })
    }

    fn run(&mut self, src: usize) -> Outcome {
        let mut next = Next::Send { ns: src, oif: None };
        for _ in 0..MAX_STATES {
            next = match next {
                Next::Send { ns, oif } => self.send(ns, oif),
                Next::Frame { ns, dev, mac } => self.frame(ns, dev, mac),
                Next::Packet { ns, iif, port } => self.packet(ns, iif, port),
                Next::Done(o) => return o,
            };
        }
        match next {
            Next::Done(o) => o,
            _ => {
                let ns = self.hops.last().map(|h| h.ns.clone()).unwrap_or_default();
                Outcome::Dropped {
                    ns,
                    reason: format!("more than {MAX_STATES} steps: the packet is in a loop"),
                    missing: None,
                }
            }
        }
    }

    fn query(&self, iif: Option<u32>, oif: Option<u32>) -> RouteQuery {
        let f = &self.flow;
        RouteQuery {
            dst: Some(f.dst),
            src: (!f.src.is_unspecified()).then_some(f.src),
            iif,
            oif,
            mark: f.mark,
            proto: Some(f.proto.number()),
            dport: f.dport,
            fib_match: false,
        }
    }

    /// Asks the kernel for the route, and the matching entry for the story.
    fn route(
        &mut self,
        ns: usize,
        q: &RouteQuery,
    ) -> Result<(RouteAnswer, String), (i32, String, String)> {
        let v = self.view(ns);
        let names = |i: u32| v.dev_name(i);
        let asked = q.describe(&names);
        match v.route_get(q) {
            Ok(a) => {
                let mut fq = q.clone();
                fq.fib_match = true;
                let matched = v.route_get(&fq).ok();
                let mut text = format!("{asked}: ");
                match a.kind {
                    RouteType::Local => text += &format!("local {} (table local)", self.flow.dst),
                    _ => {
                        let prefix = matched.as_ref().and_then(|m| m.prefix).map_or_else(
                            || self.flow.dst.to_string(),
                            |p| {
                                if p.prefix_len() == 0 {
                                    "default".into()
                                } else {
                                    p.to_string()
                                }
                            },
                        );
                        text += &prefix;
                        if let Some(gw) = a.gateway {
                            text += &format!(" via {gw}");
                        }
                        if let Some(o) = a.oif {
                            text += &format!(" dev {}", v.dev_name(o));
                        }
                        if matched.as_ref().is_some_and(|m| m.onlink) {
                            text += " onlink";
                        }
                        if q.iif.is_none() {
                            if let Some(s) = a.prefsrc {
                                text += &format!(" src {s}");
                            }
                        }
                        if a.table != podnet_links::TABLE_MAIN && a.table != 0 {
                            text += &format!(" table {}", a.table);
                        }
                    }
                }
                // A forwarder that sends a known namespace's address down its default route.
                let default = matched
                    .as_ref()
                    .and_then(|m| m.prefix)
                    .is_some_and(|p| p.prefix_len() == 0);
                if default && q.iif.is_some() && self.inner() && self.defaulted.is_none() {
                    if let Some(owner) = self.owner_of(self.flow.dst) {
                        let via = a.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                        let dev = a.oif.map(|o| v.dev_name(o)).unwrap_or_default();
                        self.defaulted = Some(format!(
                            "a route in {} for {} (an address of {owner}): it has none, so its default route{via} dev {dev} took the packet",
                            v.label, self.flow.dst
                        ));
                    }
                }
                Ok((a, text))
            }
            Err((errno, msg)) => Err((errno, msg, asked)),
        }
    }

    /// The namespace that holds `ip` as an address.
    fn owner_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.topo
            .views()
            .iter()
            .find(|v| v.owner_of(ip).is_some())
            .map(|v| v.label.clone())
    }

    /// Evaluates the namespace's iptables rules at `hook`; a drop ends the walk.
    fn rules(
        &mut self,
        ns: usize,
        hook: Hook,
        iif: Option<&str>,
        oif: Option<&str>,
        nexthop: Option<Ipv4Addr>,
    ) -> Result<(), Next> {
        let v = self.view(ns);
        let r = v.rules();
        let nft = v.nft_rules();
        if let Some(e) = &r.error {
            let c = format!("{}: iptables rules not read ({e})", v.label);
            self.caveats.push(c);
        }
        if let Some(e) = &nft.error {
            let c = format!("{}: nftables rules not read ({e})", v.label);
            self.caveats.push(c);
        }
        // The chains at this hook, from both rule sets, in the kernel's priority order; on a
        // tie, the kernel runs the hook registered last first: the newer table (nftables gives
        // tables increasing handles).
        enum Source<'a> {
            Iptables(&'a podnet_nat::iptables::TableRules),
            Nft(&'a super::nft::NftTable, String),
        }
        let mut sources: Vec<(i32, u64, bool, Source<'_>)> = Vec::new();
        for t in &r.tables {
            if let Some(prio) = rules::iptables_priority(t.table, hook) {
                let nat = t.table == podnet_nat::iptables::Table::Nat;
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
        if sources.is_empty() {
            return Ok(());
        }
        for s in &r.skipped {
            self.caveats.push(format!(
                "{}: rule not evaluated (beyond the rule model): {s}",
                v.label
            ));
        }
        let masq_addr = oif.and_then(|o| v.link_named(o)).and_then(|l| {
            let addrs = v.v4_addrs_of(l.index);
            addrs
                .iter()
                .find(|(a, len)| {
                    nexthop.is_some_and(|nh| {
                        ipnet::Ipv4Net::new(*a, *len).is_ok_and(|n| n.contains(&nh))
                    })
                })
                .or(addrs.first())
                .map(|(a, _)| *a)
        });
        let is_local = |ip: Ipv4Addr| v.is_local(ip);
        let ctx = Ctx {
            hook,
            iif,
            oif,
            is_local: &is_local,
            masq_addr,
            choice: self.choice,
        };
        let label = v.label.clone();
        let mut out = rules::HookOutcome::default();
        let mark_before = self.flow.mark;
        for (_, _, nat, source) in &sources {
            // Of several nat chains at one hook, the first that sets up a translation wins.
            if *nat && (out.dnat.is_some() || out.snat.is_some()) {
                continue;
            }
            let verdict = match source {
                Source::Iptables(t) => rules::eval_table(t, &mut self.flow, &ctx, &mut out),
                Source::Nft(t, chain) => {
                    super::nft::eval_base(t, chain, &mut self.flow, &ctx, &mut out)
                }
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
        if self.inner() {
            for j in &out.jumps {
                self.jumps.push((label.clone(), j.clone()));
            }
            match &out.verdict {
                Some(Verdict::Drop { table, chain, .. })
                | Some(Verdict::Reject { table, chain, .. }) => self.jumps.push((
                    label.clone(),
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
        let verdict = out.verdict.clone().unwrap_or(Verdict::Accept);
        let interesting = out.dnat.is_some()
            || out.snat.is_some()
            || out.mark.is_some()
            || !out.spreads.is_empty()
            || verdict != Verdict::Accept;
        if !interesting {
            return Ok(());
        }
        let mut text = format!("{}:", hook.chain_name());
        let path = jump_path(&out.jumps, hook.chain_name());
        if !path.is_empty() {
            text += &format!(" {path}");
        }
        for s in &out.spreads {
            let n = s.alternatives.len();
            let list: Vec<String> = s
                .alternatives
                .iter()
                .map(|a| {
                    let what = a.dnat.map_or_else(|| a.chain.clone(), |d| d.to_string());
                    format!("{what} {:.0}%", a.probability * 100.0)
                })
                .collect();
            let chosen = s
                .alternatives
                .iter()
                .find(|a| a.chain == s.chosen)
                .map(|a| a.dnat.map_or_else(|| a.chain.clone(), |d| d.to_string()))
                .unwrap_or_else(|| s.chosen.clone());
            text += &format!(
                "; {} spreads over {n} endpoint{} [{}], follows {chosen}",
                s.chain,
                if n == 1 { "" } else { "s" },
                list.join(", ")
            );
        }
        if let Some((old, new)) = out.dnat {
            text += &format!("; DNAT {old} -> {new}");
        }
        if let Some((old, new)) = out.snat {
            text += &format!("; MASQUERADE/SNAT source {old} -> {new}");
        }
        if let Some((old, new)) = out.mark {
            text += &format!("; mark {old:#x} -> {new:#x}");
        }
        let verdict_word = match &verdict {
            Verdict::Accept => "accept",
            Verdict::Drop { .. } => "drop",
            Verdict::Reject { .. } => "reject",
        };
        if verdict != Verdict::Accept {
            text += &format!("; {}", verdict_word.to_uppercase());
        }
        let hop = RulesHop {
            hook: hook.chain_name().to_owned(),
            jumps: out.jumps.clone(),
            spreads: out.spreads.clone(),
            dnat: out.dnat.map(|(a, b)| (a.to_string(), b.to_string())),
            snat: out.snat.map(|(a, b)| (a.to_string(), b.to_string())),
            rules: out
                .decisions
                .iter()
                .map(|(t, r)| format!("-t {t} {r}"))
                .collect(),
            verdict: verdict_word.to_owned(),
        };
        let dev = oif.or(iif).map(str::to_owned);
        self.hops.push(Hop {
            ns: label.clone(),
            step: Step::Rules,
            dev,
            text,
            to_ns: None,
            to_dev: None,
            rules: Some(hop),
            inner: self.inner(),
        });
        match verdict {
            Verdict::Accept => Ok(()),
            Verdict::Drop { table, chain, rule } | Verdict::Reject { table, chain, rule } => {
                let missing = if rule.contains("has no endpoints") {
                    let svc = rule
                        .split('"')
                        .nth(1)
                        .map(|c| c.trim_end_matches(" has no endpoints").to_owned())
                        .unwrap_or_else(|| "the Service".into());
                    Some(format!(
                        "endpoints for Service {svc}: kube-proxy rejects traffic to a Service without endpoints"
                    ))
                } else {
                    None
                };
                let by = if matches!(table.as_str(), "filter" | "nat" | "mangle" | "raw") {
                    "iptables"
                } else {
                    "nftables"
                };
                let reason = format!(
                    "{} by {by} ({table} {chain}): {rule}",
                    verdict_word.to_uppercase()
                );
                self.hops.push(Hop {
                    ns: label.clone(),
                    step: Step::Drop,
                    dev: oif.or(iif).map(str::to_owned),
                    text: reason.clone(),
                    to_ns: None,
                    to_dev: None,
                    rules: None,
                    inner: self.inner(),
                });
                Err(Next::Done(Outcome::Dropped {
                    ns: label,
                    reason,
                    missing,
                }))
            }
        }
    }

    /// The local stack of `ns` sends the current packet.
    fn send(&mut self, ns: usize, oif: Option<u32>) -> Next {
        let q = self.query(None, oif);
        let (a, text) = match self.route(ns, &q) {
            Ok(r) => r,
            Err((_, msg, asked)) => {
                let dst = self.flow.dst;
                let label = self.label(ns);
                return self.drop(
                    ns,
                    None,
                    format!("{asked}: {msg}"),
                    Some(format!("a route to {dst} in {label}")),
                );
            }
        };
        if self.flow.src.is_unspecified() {
            if let Some(IpAddr::V4(s)) = a.prefsrc {
                self.flow.src = s;
            }
        }
        let flow = self.flow.to_string();
        let what = if self.inner() {
            flow
        } else {
            format!("{flow} (the outer packet)")
        };
        self.hop(ns, Step::Send, None, what);
        self.hop(
            ns,
            Step::Route,
            a.oif.map(|o| self.view(ns).dev_name(o)).as_deref(),
            text,
        );
        match a.kind {
            RouteType::Local => return self.deliver(ns),
            RouteType::Unicast => {}
            RouteType::Broadcast | RouteType::Other(_) => {
                return self.drop(ns, None, format!("route type {:?}: not sent", a.kind), None);
            }
        }
        let Some(oif) = a.oif else {
            return self.drop(ns, None, "route without an output device".into(), None);
        };
        let oname = self.view(ns).dev_name(oif);
        self.checkpoint(ns, "inet", "out", oname.clone());
        let nexthop = gw4(&a).unwrap_or(self.flow.dst);
        let dst_before = self.flow.dst;
        if let Err(n) = self.rules(ns, Hook::Output, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        let (oif, oname, nexthop) = if self.flow.dst != dst_before {
            // DNAT in OUTPUT: the kernel routes again.
            let q = self.query(None, None);
            match self.route(ns, &q) {
                Ok((a, text)) => {
                    self.hop(ns, Step::Route, None, format!("after DNAT, {text}"));
                    match (a.kind, a.oif) {
                        (RouteType::Local, _) => return self.deliver(ns),
                        (_, Some(o)) => (
                            o,
                            self.view(ns).dev_name(o),
                            gw4(&a).unwrap_or(self.flow.dst),
                        ),
                        _ => {
                            return self.drop(ns, None, "no output device after DNAT".into(), None);
                        }
                    }
                }
                Err((_, msg, asked)) => {
                    return self.drop(ns, None, format!("{asked}: {msg}"), None);
                }
            }
        } else {
            (oif, oname, nexthop)
        };
        self.checkpoint(ns, "inet", "post", oname.clone());
        if let Err(n) = self.rules(ns, Hook::Postrouting, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        self.output(ns, oif, nexthop)
    }

    /// An IP packet arrives on `iif` of `ns`.
    fn packet(&mut self, ns: usize, iif: u32, port: Option<u32>) -> Next {
        let iname = self.view(ns).dev_name(iif);
        self.checkpoint(ns, "inet", "pre", iname.clone());
        let dst_before = self.flow.dst;
        if let Err(n) = self.rules(ns, Hook::Prerouting, Some(&iname), None, None) {
            return n;
        }
        let dnat_here = self.flow.dst != dst_before;
        // The bridge passes the frame up (its input hook) before the IP route lookup, unless
        // br_netfilter DNATed it, in which case br_netfilter looks the route up first.
        let br_nf_dnat = dnat_here && port.is_some() && self.view(ns).bridge_calls_iptables();
        if let (Some(p), false) = (port, br_nf_dnat) {
            let pname = self.view(ns).dev_name(p);
            self.checkpoint(ns, "bridge", "in", pname);
        }
        let q = self.query(Some(iif), None);
        let (a, text) = match self.route(ns, &q) {
            Ok(r) => r,
            Err((errno, msg, asked)) => {
                let v = self.view(ns);
                let forwarding = v.sysctl("net.ipv4.ip_forward").is_some_and(|f| f == "1");
                let why = match errno {
                    libc::EHOSTUNREACH | libc::ENETUNREACH if !forwarding => format!(
                        "{} is not an address of {}, which does not forward (net.ipv4.ip_forward=0)",
                        self.flow.dst, v.label
                    ),
                    libc::EHOSTUNREACH | libc::ENETUNREACH => {
                        format!("no route to {} in {}", self.flow.dst, v.label)
                    }
                    libc::EXDEV => format!(
                        "the reverse-path filter of {} refuses source {} on {iname}",
                        v.label, self.flow.src
                    ),
                    libc::EINVAL => format!("martian packet ({})", self.flow),
                    _ => msg.clone(),
                };
                let missing = self
                    .defaulted
                    .clone()
                    .or_else(|| Some(format!("a route to {} in {}", self.flow.dst, v.label)));
                return self.drop(ns, Some(&iname), format!("{asked}: {msg}: {why}"), missing);
            }
        };
        self.hop(ns, Step::Route, Some(&iname), text);
        if let (Some(p), true) = (port, br_nf_dnat) {
            // A frame DNATed to an address on the bridge it came from is bridged there
            // (br_nf_pre_routing_finish's "bridged DNAT"), not routed.
            if a.kind == RouteType::Unicast && a.oif == Some(iif) {
                return self.bridged_dnat(ns, iif, p);
            }
            let pname = self.view(ns).dev_name(p);
            self.checkpoint(ns, "bridge", "in", pname);
        }
        match a.kind {
            RouteType::Local => {
                self.checkpoint(ns, "inet", "in", iname.clone());
                if let Err(n) = self.rules(ns, Hook::Input, Some(&iname), None, None) {
                    return n;
                }
                self.deliver(ns)
            }
            RouteType::Unicast => {
                let Some(oif) = a.oif else {
                    return self.drop(ns, None, "route without an output device".into(), None);
                };
                let oname = self.view(ns).dev_name(oif);
                let nexthop = gw4(&a).unwrap_or(self.flow.dst);
                self.checkpoint(ns, "inet", "fwd", format!("{iname}>{oname}"));
                if let Err(n) =
                    self.rules(ns, Hook::Forward, Some(&iname), Some(&oname), Some(nexthop))
                {
                    return n;
                }
                self.checkpoint(ns, "inet", "post", oname.clone());
                if let Err(n) = self.rules(
                    ns,
                    Hook::Postrouting,
                    Some(&iname),
                    Some(&oname),
                    Some(nexthop),
                ) {
                    return n;
                }
                self.output(ns, oif, nexthop)
            }
            other => self.drop(
                ns,
                Some(&iname),
                format!("route type {other:?}: the kernel does not forward it"),
                None,
            ),
        }
    }

    /// br_netfilter's bridged DNAT: the frame goes back out of bridge `br` (from `port`) to the
    /// DNAT target's MAC, through the FORWARD and POSTROUTING hooks but without routing.
    fn bridged_dnat(&mut self, ns: usize, br: u32, port: u32) -> Next {
        let Some(brl) = self.view(ns).link(br).cloned() else {
            return self.drop(ns, None, format!("bridge if{br} vanished"), None);
        };
        let dst = self.flow.dst;
        self.hop(
            ns,
            Step::Bridge,
            Some(&brl.name),
            format!(
                "{}: {dst} is on {} itself, so br_netfilter bridges the DNATed frame instead of routing it",
                brl.name, brl.name
            ),
        );
        let mac = match self.neighbour(ns, &brl, dst) {
            Ok(m) => m,
            Err(n) => return n,
        };
        let (out, flooded) = match self.bridge_port(ns, &brl, mac, Some(port)) {
            Ok(p) => p,
            Err(n) => return n,
        };
        let b = brl.name.clone();
        self.checkpoint(ns, "inet", "fwd", format!("{b}>{b}"));
        if let Err(n) = self.rules(ns, Hook::Forward, Some(&b), Some(&b), Some(dst)) {
            return n;
        }
        self.checkpoint(ns, "inet", "post", b.clone());
        if let Err(n) = self.rules(ns, Hook::Postrouting, Some(&b), Some(&b), Some(dst)) {
            return n;
        }
        let pname = self.view(ns).dev_name(port);
        for q in std::iter::once(&out).chain(&flooded) {
            self.checkpoint(ns, "bridge", "fwd", format!("{pname}>{}", q.name));
        }
        self.cross(ns, &out, mac)
    }

    /// The packet leaves `ns` by `oif` towards `nexthop`.
    fn output(&mut self, ns: usize, oif: u32, nexthop: Ipv4Addr) -> Next {
        let Some(link) = self.view(ns).link(oif).cloned() else {
            return self.drop(ns, None, format!("output device if{oif} vanished"), None);
        };
        if !link.is_up() {
            return self.drop(
                ns,
                Some(&link.name),
                format!("{} is down", link.name),
                Some(format!(
                    "`ip link set {} up` in {}",
                    link.name,
                    self.label(ns)
                )),
            );
        }
        match &link.kind {
            Some(LinkKind::Veth) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                self.cross(ns, &link, mac)
            }
            Some(LinkKind::Bridge) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                let (port, flooded) = match self.bridge_port(ns, &link, mac, None) {
                    Ok(p) => p,
                    Err(n) => return n,
                };
                for q in std::iter::once(&port).chain(&flooded) {
                    self.checkpoint(ns, "bridge", "out", q.name.clone());
                }
                self.cross(ns, &port, mac)
            }
            Some(LinkKind::Vxlan) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                self.vxlan(ns, &link, mac)
            }
            Some(LinkKind::Tun) => self.tunnel(ns, &link),
            _ if link.name == "lo" => self.deliver(ns),
            _ => {
                let label = self.label(ns);
                self.hop(
                    ns,
                    Step::Leave,
                    Some(&link.name),
                    format!(
                        "out of {} ({}), beyond the known namespaces",
                        link.name,
                        link.kind
                            .as_ref()
                            .map_or("no kind".to_string(), |k| k.to_string())
                    ),
                );
                Next::Done(Outcome::Left {
                    ns: label,
                    dev: link.name.clone(),
                })
            }
        }
    }

    /// The next hop's link-layer address on `link`: the neighbour entry, or who answers ARP.
    fn neighbour(&mut self, ns: usize, link: &Link, nexthop: Ipv4Addr) -> Result<MacAddr, Next> {
        let v = self.view(ns);
        let entry = v.neighbour(&link.name, nexthop).cloned();
        if let Some(n) = &entry {
            if let (Some(mac), false) = (
                n.mac,
                matches!(n.state, NeighState::Incomplete | NeighState::Failed),
            ) {
                self.hop(ns, Step::Neigh, Some(&link.name), n.to_string());
                return Ok(mac);
            }
        }
        let state = entry
            .as_ref()
            .map(|n| format!(" ({})", n.state))
            .unwrap_or_default();
        let label = v.label.clone();
        if link.kind == Some(LinkKind::Vxlan) {
            return Err(self.drop(
                ns,
                Some(&link.name),
                format!(
                    "no usable neighbour entry for {nexthop} on {}{state}: an ARP request over VXLAN finds no one",
                    link.name
                ),
                Some(format!(
                    "the neighbour entry `{nexthop} dev {} lladdr <remote VTEP MAC>` in {label} (flannel programs one per remote node)",
                    link.name
                )),
            ));
        }
        match self.l2_owner(ns, link, nexthop, 0) {
            Some((owner_ns, owner_dev, mac)) => {
                self.arp_macs.push(mac);
                let owner = self.label(owner_ns);
                self.hop(
                    ns,
                    Step::Neigh,
                    Some(&link.name),
                    format!(
                        "no entry for {nexthop} on {}{state}: the kernel asks by ARP; {owner} {owner_dev} ({mac}) answers",
                        link.name
                    ),
                );
                Ok(mac)
            }
            None => Err(self.drop(
                ns,
                Some(&link.name),
                format!(
                    "no neighbour entry for {nexthop} on {}{state} and no device on that link has {nexthop}: ARP goes unanswered",
                    link.name
                ),
                Some(format!("a host with address {nexthop} on the link of {} in {label}", link.name)),
            )),
        }
    }

    /// Who on the link of `link` holds `ip`: (namespace, device, MAC).
    fn l2_owner(
        &self,
        ns: usize,
        link: &Link,
        ip: Ipv4Addr,
        depth: usize,
    ) -> Option<(usize, String, MacAddr)> {
        if depth > 3 {
            return None;
        }
        match link.kind {
            Some(LinkKind::Veth) => {
                let (pns, pidx) = self.peer(ns, link)?;
                let pv = self.view(pns);
                let plink = pv.link(pidx)?;
                if pv.owner_of(ip).is_some_and(|o| o.index == pidx) {
                    return Some((pns, plink.name.clone(), plink.mac?));
                }
                let br = plink.master?;
                let brl = pv.link(br)?;
                if pv.owner_of(ip).is_some_and(|o| o.index == br) {
                    return Some((pns, brl.name.clone(), brl.mac?));
                }
                pv.ports_of(br)
                    .into_iter()
                    .filter(|q| q.index != pidx)
                    .find_map(|q| self.l2_owner(pns, q, ip, depth + 1))
            }
            Some(LinkKind::Bridge) => self
                .view(ns)
                .ports_of(link.index)
                .into_iter()
                .find_map(|q| self.l2_owner(ns, q, ip, depth + 1)),
            _ => None,
        }
    }

    /// The veth peer of `link`: (namespace, index), when it is in the topology.
    fn peer(&self, ns: usize, link: &Link) -> Option<(usize, u32)> {
        let idx = link.link?;
        let Some(id) = link.link_netnsid else {
            return Some((ns, idx));
        };
        let here = self.view(ns);
        self.topo.views().iter().enumerate().find_map(|(i, v)| {
            if i == ns {
                return None;
            }
            let l = v.link(idx)?;
            (l.link == Some(link.index) && here.nsid_of(v) == Some(id)).then_some((i, idx))
        })
    }

    /// The port of bridge `br` a frame to `mac` leaves by (`from`: the port it came in on).
    fn bridge_port(
        &mut self,
        ns: usize,
        br: &Link,
        mac: MacAddr,
        from: Option<u32>,
    ) -> Result<(Link, Vec<Link>), Next> {
        let v = self.view(ns);
        if let Some(e) = v.bridge_fdb(br.index, mac) {
            let dev = e.dev.to_string();
            if let Some(port) = v.link_named(&dev).filter(|p| p.index != br.index).cloned() {
                let state = if e.state == NeighState::Permanent || e.state == NeighState::Noarp {
                    "static"
                } else {
                    "learnt"
                };
                let back = if Some(port.index) == from {
                    " (back out the port it came in by: hairpin)"
                } else {
                    ""
                };
                self.hop(
                    ns,
                    Step::Bridge,
                    Some(&br.name),
                    format!(
                        "{}: fdb {mac} is on port {} ({state}){back}",
                        br.name, port.name
                    ),
                );
                return Ok((port, Vec::new()));
            }
        }
        // Unknown unicast: flooded to every port; the one whose far end owns the MAC takes it.
        // Unless this walk just had the kernel ask by ARP for it: the reply taught the bridge.
        let ports: Vec<Link> = v.ports_of(br.index).into_iter().cloned().collect();
        let n = ports.len();
        let owner = ports
            .iter()
            .filter(|p| Some(p.index) != from)
            .find(|p| {
                self.peer(ns, p)
                    .and_then(|(pns, pidx)| self.view(pns).link(pidx).and_then(|l| l.mac))
                    == Some(mac)
            })
            .cloned();
        match owner {
            Some(p) if self.arp_macs.contains(&mac) => {
                self.hop(
                    ns,
                    Step::Bridge,
                    Some(&br.name),
                    format!(
                        "{}: no fdb entry for {mac} yet; the ARP reply teaches it: port {}",
                        br.name, p.name
                    ),
                );
                Ok((p, Vec::new()))
            }
            Some(p) => {
                self.hop(
                    ns,
                    Step::Bridge,
                    Some(&br.name),
                    format!(
                        "{}: no fdb entry for {mac}: flooded to its {n} ports; {} leads to it",
                        br.name, p.name
                    ),
                );
                let others = ports
                    .into_iter()
                    .filter(|q| Some(q.index) != from && q.index != p.index)
                    .collect();
                Ok((p, others))
            }
            None => {
                let label = self.label(ns);
                Err(self.drop(
                    ns,
                    Some(&br.name),
                    format!(
                        "{}: no fdb entry for {mac} and no port leads to it",
                        br.name
                    ),
                    Some(format!(
                        "a device with MAC {mac} on bridge {} in {label}",
                        br.name
                    )),
                ))
            }
        }
    }

    /// Sends a frame to `mac` out of veth `link` into its peer's namespace.
    fn cross(&mut self, ns: usize, link: &Link, mac: MacAddr) -> Next {
        if link.kind != Some(LinkKind::Veth) {
            let label = self.label(ns);
            self.hop(
                ns,
                Step::Leave,
                Some(&link.name),
                format!("out of {}, beyond the known namespaces", link.name),
            );
            return Next::Done(Outcome::Left {
                ns: label,
                dev: link.name.clone(),
            });
        }
        match self.peer(ns, link) {
            Some((pns, pidx)) => {
                let pv = self.view(pns);
                let pname = pv.dev_name(pidx);
                let port = pv
                    .link(pidx)
                    .and_then(|l| l.master)
                    .map(|m| format!(" (a port of {})", pv.dev_name(m)))
                    .unwrap_or_default();
                let plabel = pv.label.clone();
                let mut hop = Hop {
                    ns: self.label(ns),
                    step: Step::Veth,
                    dev: Some(link.name.clone()),
                    text: format!("{} -> {plabel} {pname}{port}, to {mac}", link.name),
                    to_ns: Some(plabel),
                    to_dev: Some(pname),
                    rules: None,
                    inner: self.inner(),
                };
                hop.inner = self.inner();
                self.hops.push(hop);
                // The namespace boundary clears the mark (skb_scrub_packet).
                self.flow.mark = 0;
                self.flow.dnat = false;
                Next::Frame {
                    ns: pns,
                    dev: pidx,
                    mac,
                }
            }
            None => {
                let label = self.label(ns);
                self.hop(
                    ns,
                    Step::Leave,
                    Some(&link.name),
                    format!(
                        "{}'s peer is in a namespace outside the topology",
                        link.name
                    ),
                );
                Next::Done(Outcome::Left {
                    ns: label,
                    dev: link.name.clone(),
                })
            }
        }
    }

    /// A frame to `mac` arrives on `dev`.
    fn frame(&mut self, ns: usize, dev: u32, mac: MacAddr) -> Next {
        let v = self.view(ns);
        let Some(link) = v.link(dev).cloned() else {
            return self.drop(ns, None, format!("device if{dev} vanished"), None);
        };
        let Some(br) = link.master.and_then(|m| v.link(m)).cloned() else {
            if link.mac == Some(mac) || !is_ether(&link) {
                return Next::Packet {
                    ns,
                    iif: dev,
                    port: None,
                };
            }
            return self.drop(
                ns,
                Some(&link.name),
                format!(
                    "the frame is for {mac}, not {} ({}): not for this host",
                    link.name,
                    link.mac.map(|m| m.to_string()).unwrap_or_default()
                ),
                None,
            );
        };
        self.checkpoint(ns, "bridge", "pre", link.name.clone());
        let own = br.mac == Some(mac) || v.ports_of(br.index).iter().any(|p| p.mac == Some(mac));
        if own {
            let label = v.label.clone();
            self.hop(
                ns,
                Step::Bridge,
                Some(&br.name),
                format!(
                    "{}: {mac} is the bridge's own address: up to {label}'s IP stack",
                    br.name
                ),
            );
            return Next::Packet {
                ns,
                iif: br.index,
                port: Some(dev),
            };
        }
        let (port, flooded) = match self.bridge_port(ns, &br, mac, Some(dev)) {
            Ok(p) => p,
            Err(n) => return n,
        };
        if self.view(ns).bridge_calls_iptables() {
            // br_netfilter: bridged IPv4 crosses the iptables hooks, with the bridge as device.
            self.checkpoint(ns, "inet", "pre", br.name.clone());
            if let Err(n) = self.rules(ns, Hook::Prerouting, Some(&br.name), None, None) {
                return n;
            }
            self.checkpoint(ns, "inet", "fwd", format!("{}>{}", br.name, br.name));
            if let Err(n) = self.rules(ns, Hook::Forward, Some(&br.name), Some(&br.name), None) {
                return n;
            }
            self.checkpoint(ns, "inet", "post", br.name.clone());
            if let Err(n) = self.rules(ns, Hook::Postrouting, Some(&br.name), Some(&br.name), None)
            {
                return n;
            }
        }
        for q in std::iter::once(&port).chain(&flooded) {
            self.checkpoint(ns, "bridge", "fwd", format!("{}>{}", link.name, q.name));
        }
        self.cross(ns, &port, mac)
    }

    /// VXLAN: the FDB entry for `mac` gives the remote VTEP; the frame leaves inside UDP.
    fn vxlan(&mut self, ns: usize, link: &Link, mac: MacAddr) -> Next {
        let v = self.view(ns);
        let Some(vx) = link.vxlan.clone() else {
            return self.drop(
                ns,
                Some(&link.name),
                "VXLAN device without VXLAN settings".into(),
                None,
            );
        };
        let entries = v.own_fdb(&link.name, mac);
        let (entry, how) = match entries.first() {
            Some(e) => ((*e).clone(), format!("fdb {mac}")),
            None => match v.own_fdb(&link.name, MacAddr::ZERO).first() {
                Some(e) => (
                    (*e).clone(),
                    format!("no fdb entry for {mac}; default (00:00:00:00:00:00)"),
                ),
                None => {
                    let label = v.label.clone();
                    // Whose VTEP is it? A VXLAN device of the topology with that MAC.
                    let vtep = self.topo.views().iter().find_map(|w| {
                        w.links()
                            .iter()
                            .find(|l| l.kind == Some(LinkKind::Vxlan) && l.mac == Some(mac))
                            .map(|l| {
                                let local = l
                                    .vxlan
                                    .as_ref()
                                    .and_then(|x| x.local)
                                    .map(|a| a.to_string())
                                    .unwrap_or_else(|| "<remote VTEP>".into());
                                (w.label.clone(), local)
                            })
                    });
                    let (whose, dst) = vtep
                        .map(|(w, d)| (format!(" ({w}'s VTEP)"), d))
                        .unwrap_or_else(|| (String::new(), "<remote VTEP>".into()));
                    return self.drop(
                        ns,
                        Some(&link.name),
                        format!(
                            "{} has no FDB entry for {mac} and no default destination: the VXLAN driver drops the frame",
                            link.name
                        ),
                        Some(format!(
                            "the FDB entry `{mac} dev {} dst {dst}`{whose} in {label}",
                            link.name
                        )),
                    );
                }
            },
        };
        let Some(IpAddr::V4(remote)) = entry.dst.or(vx.remote) else {
            return self.drop(
                ns,
                Some(&link.name),
                format!("FDB entry for {mac} without an IPv4 destination"),
                None,
            );
        };
        let port = entry.port.unwrap_or(vx.port);
        let vni = entry.vni.unwrap_or(vx.vni);
        let local = match vx.local {
            Some(IpAddr::V4(a)) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let src = if local.is_unspecified() {
            "(chosen by route)".to_string()
        } else {
            local.to_string()
        };
        self.hop(
            ns,
            Step::Vxlan,
            Some(&link.name),
            format!(
                "{}: {how} dst {remote}: wrapped in udp {src} -> {remote}:{port}, VNI {vni}",
                link.name
            ),
        );
        let inner = self.flow.clone();
        self.stack.push(Encap {
            kind: EncapKind::Vxlan { vni, port },
            inner,
            inner_mac: Some(mac),
        });
        self.flow = Flow {
            proto: Proto::Udp,
            src: local,
            dst: remote,
            sport: None,
            dport: Some(port),
            mark: self.flow.mark,
            dnat: false,
        };
        Next::Send { ns, oif: vx.dev }
    }

    /// A TUN device: the process reading it (flanneld's udp backend) sends the packet inside
    /// UDP to the node whose pods own the destination.
    fn tunnel(&mut self, ns: usize, tun: &Link) -> Next {
        let dst = self.flow.dst;
        let peer = self.topo.views().iter().enumerate().find_map(|(i, v)| {
            if i == ns || v.tun_device().is_none() {
                return None;
            }
            let a = v
                .route_get(&RouteQuery {
                    dst: Some(dst),
                    ..RouteQuery::default()
                })
                .ok()?;
            let tun_idx = v.tun_device().map(|t| t.index);
            let owns = match a.kind {
                RouteType::Local => true,
                RouteType::Unicast => a.gateway.is_none() && a.oif != tun_idx,
                _ => false,
            };
            owns.then(|| underlay_addr(v).map(|ip| (i, ip))).flatten()
        });
        let label = self.label(ns);
        let Some((pns, peer_ip)) = peer else {
            return self.drop(
                ns,
                Some(&tun.name),
                format!(
                    "{} is a TUN device; no node of the topology owns {dst}, so its tunnel has no peer for it",
                    tun.name
                ),
                Some(format!("a node whose subnet holds {dst} (a flannel lease)")),
            );
        };
        let plabel = self.label(pns);
        self.hop(
            ns,
            Step::Tunnel,
            Some(&tun.name),
            format!(
                "{} is a TUN device: the process reading it (flanneld's udp backend) sends the packet as the payload of udp -> {peer_ip}:{FLANNEL_UDP_PORT} ({plabel}, whose subnet holds {dst})",
                tun.name
            ),
        );
        let _ = label;
        let inner = self.flow.clone();
        self.stack.push(Encap {
            kind: EncapKind::Udp {
                port: FLANNEL_UDP_PORT,
            },
            inner,
            inner_mac: None,
        });
        self.flow = Flow {
            proto: Proto::Udp,
            src: Ipv4Addr::UNSPECIFIED,
            dst: peer_ip,
            sport: None,
            dport: Some(FLANNEL_UDP_PORT),
            mark: 0,
            dnat: false,
        };
        Next::Send { ns, oif: None }
    }

    /// The packet is for an address of `ns`: delivered, or unwrapped when it is a tunnel's.
    fn deliver(&mut self, ns: usize) -> Next {
        let Some(encap) = self.stack.last().cloned() else {
            let v = self.view(ns);
            let label = v.label.clone();
            let f = self.flow.clone();
            let listener = match (f.proto, f.dport) {
                (Proto::Tcp, Some(p)) => Some(v.sockets("tcp", p, Some(f.dst))),
                (Proto::Udp, Some(p)) => Some(v.sockets("udp", p, Some(f.dst))),
                _ => None,
            };
            let what = match listener {
                Some(true) => ": a socket listens",
                Some(false) => {
                    ": no socket listens (the kernel answers with a reset or port unreachable)"
                }
                None => "",
            };
            self.hop(
                ns,
                Step::Deliver,
                None,
                format!("{} is an address of {label}{what}", f.dst),
            );
            return Next::Done(Outcome::Delivered {
                ns: label,
                addr: f.dst,
                port: f.dport,
                listener,
            });
        };
        let v = self.view(ns);
        let label = v.label.clone();
        match encap.kind {
            EncapKind::Vxlan { vni, port } => {
                let dev = v
                    .links()
                    .iter()
                    .find(|l| {
                        l.vxlan
                            .as_ref()
                            .is_some_and(|x| x.port == port && x.vni == vni)
                    })
                    .cloned();
                let Some(dev) = dev else {
                    return self.drop(
                        ns,
                        None,
                        format!("no VXLAN device of {label} takes UDP port {port} with VNI {vni}: the kernel answers port unreachable"),
                        Some(format!("a VXLAN device with VNI {vni} on port {port} in {label}")),
                    );
                };
                self.stack.pop();
                self.flow = encap.inner.clone();
                self.hop(
                    ns,
                    Step::Decap,
                    Some(&dev.name),
                    format!(
                        "udp port {port} VNI {vni}: {} unwraps {}",
                        dev.name, self.flow
                    ),
                );
                let mac = encap.inner_mac.unwrap_or(MacAddr::ZERO);
                if dev.master.is_some() {
                    return Next::Frame {
                        ns,
                        dev: dev.index,
                        mac,
                    };
                }
                if dev.mac != Some(mac) {
                    return self.drop(
                        ns,
                        Some(&dev.name),
                        format!(
                            "the inner frame is for {mac}, not {} ({}): the sender's neighbour entry names another VTEP",
                            dev.name,
                            dev.mac.map(|m| m.to_string()).unwrap_or_default()
                        ),
                        None,
                    );
                }
                Next::Packet {
                    ns,
                    iif: dev.index,
                    port: None,
                }
            }
            EncapKind::Udp { port } => {
                let tun = v.tun_device().cloned();
                let listening = v.udp_listening(port);
                match (tun, listening) {
                    (Some(tun), true) => {
                        self.stack.pop();
                        self.flow = encap.inner.clone();
                        self.hop(
                            ns,
                            Step::Decap,
                            Some(&tun.name),
                            format!("udp port {port}: the tunnel's socket takes it and writes {} into {}", self.flow, tun.name),
                        );
                        Next::Packet {
                            ns,
                            iif: tun.index,
                            port: None,
                        }
                    }
                    _ => self.drop(
                        ns,
                        None,
                        format!("nothing in {label} takes UDP port {port} into a TUN device"),
                        Some(format!(
                            "flanneld's udp tunnel (UDP {port}, a TUN device) in {label}"
                        )),
                    ),
                }
            }
        }
    }
}

/// The chains entered, per table: `nat KUBE-SERVICES > KUBE-SVC-X > KUBE-MARK-MASQ,
/// KUBE-SVC-X > KUBE-SEP-Y; filter KUBE-FORWARD` (a jump from the chain last entered continues
/// the line; one from elsewhere starts a new one).
pub(crate) fn jump_path(jumps: &[rules::Jump], hook_chain: &str) -> String {
    let mut tables: Vec<(String, String)> = Vec::new();
    let mut last_to: Option<(String, String)> = None;
    for j in jumps {
        if !tables.iter().any(|(t, _)| *t == j.table) {
            tables.push((j.table.clone(), String::new()));
        }
        let Some((_, text)) = tables.iter_mut().find(|(t, _)| *t == j.table) else {
            continue;
        };
        let continues = last_to
            .as_ref()
            .is_some_and(|(t, to)| *t == j.table && *to == j.from);
        if continues {
            text.push_str(&format!(" > {}", j.to));
        } else {
            if !text.is_empty() {
                text.push_str(", ");
            }
            if j.from == hook_chain {
                text.push_str(&j.to);
            } else {
                text.push_str(&format!("{} > {}", j.from, j.to));
            }
        }
        last_to = Some((j.table.clone(), j.to.clone()));
    }
    tables
        .iter()
        .map(|(t, text)| format!("{t} {text}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn gw4(a: &RouteAnswer) -> Option<Ipv4Addr> {
    match a.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    }
}

/// A namespace's underlay address: the first global IPv4 address on a device that is neither
/// a bridge, a bridge port, a tunnel nor loopback (a node's `eth0`).
fn underlay_addr(v: &NsView) -> Option<Ipv4Addr> {
    v.links()
        .iter()
        .filter(|l| {
            l.name != "lo"
                && l.master.is_none()
                && !matches!(
                    l.kind,
                    Some(LinkKind::Bridge | LinkKind::Vxlan | LinkKind::Tun)
                )
        })
        .find_map(|l| v.v4_addrs_of(l.index).first().map(|(a, _)| *a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(table: &str, from: &str, to: &str) -> rules::Jump {
        rules::Jump {
            table: table.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn jump_paths_read_per_table() {
        let jumps = [
            j("nat", "OUTPUT", "KUBE-SERVICES"),
            j("nat", "KUBE-SERVICES", "KUBE-SVC-A"),
            j("nat", "KUBE-SVC-A", "KUBE-MARK-MASQ"),
            j("nat", "KUBE-SVC-A", "KUBE-SEP-1"),
            j("filter", "OUTPUT", "KUBE-FIREWALL"),
            j("filter", "OUTPUT", "KUBE-SERVICES"),
        ];
        assert_eq!(
            jump_path(&jumps, "OUTPUT"),
            "nat KUBE-SERVICES > KUBE-SVC-A > KUBE-MARK-MASQ, KUBE-SVC-A > KUBE-SEP-1; \
             filter KUBE-FIREWALL, KUBE-SERVICES"
        );
    }
}
