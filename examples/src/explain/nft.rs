//! Native nftables rule sets (kube-proxy's nftables mode, say), read with `nft -j list
//! ruleset` and evaluated for one packet at one hook.
//!
//! The evaluator knows the expressions such rule sets are made of: payload and meta keys
//! (addresses, `l4proto`, ports, mark, interface names), `ct state`, `fib daddr type`,
//! bitwise `& | ^`, concatenations, named and anonymous sets and verdict maps, `numgen random
//! mod N vmap` (a random spread, reported like iptables' `-m statistic`), `jump`, `goto`,
//! `return`, `accept`, `drop`, `reject`, `dnat to`, `snat to`, `masquerade`, `meta mark set`.
//! A rule with anything else is taken as not matching, and the walk says so. iptables-nft's own
//! tables are left to the iptables evaluator, which reads them from `iptables-save`.

use super::rules::{Alternative, Ctx, HookOutcome, Jump, Spread, Verdict, pick};
use super::{Flow, Hook};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

/// Nesting limit for jumps (the kernel's is 16).
const MAX_DEPTH: usize = 32;

/// The native nftables tables of a namespace.
#[derive(Debug, Default, Clone)]
pub(crate) struct NftRuleset {
    pub(crate) tables: Vec<NftTable>,
    /// Every table's handle (iptables-nft's too), by (family, name): handles are given in
    /// creation order.
    handles: HashMap<(String, String), u64>,
    /// Why the rule set could not be read, if it could not.
    pub(crate) error: Option<String>,
}

/// One table.
#[derive(Debug, Clone)]
pub(crate) struct NftTable {
    pub(crate) family: String,
    pub(crate) name: String,
    pub(crate) handle: u64,
    chains: Vec<NftChain>,
    /// Set and map elements, by name.
    sets: HashMap<String, Vec<Value>>,
}

/// A base chain's hook.
#[derive(Debug, Clone)]
pub(crate) struct BaseChain {
    pub(crate) hook: String,
    pub(crate) prio: i32,
    /// A `type nat` chain.
    pub(crate) nat: bool,
    policy_drop: bool,
}

#[derive(Debug, Clone)]
struct NftChain {
    name: String,
    base: Option<BaseChain>,
    rules: Vec<Vec<Value>>,
}

/// iptables-nft's tables, which `iptables-save` shows in iptables terms.
fn is_xt_table(family: &str, name: &str) -> bool {
    matches!(family, "ip" | "ip6")
        && matches!(name, "filter" | "nat" | "mangle" | "raw" | "security")
}

/// Parses `nft -j list ruleset`, keeping the native tables (not iptables-nft's, not the
/// probe's trace tables).
pub(crate) fn parse(json: &str) -> NftRuleset {
    let v: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            return NftRuleset {
                error: Some(format!("nft -j output: {e}")),
                ..NftRuleset::default()
            };
        }
    };
    let mut tables: Vec<NftTable> = Vec::new();
    let mut handles = HashMap::new();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    let keep = |family: &str, name: &str| {
        !is_xt_table(family, name) && !name.starts_with("podnet_explain_")
    };
    let find = |tables: &mut Vec<NftTable>, family: &str, name: &str| -> Option<usize> {
        tables
            .iter()
            .position(|t| t.family == family && t.name == name)
    };
    for item in &items {
        let Some((kind, o)) = item.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let family = o["family"].as_str().unwrap_or("");
        let table = o["table"].as_str().unwrap_or("");
        match kind.as_str() {
            "table" => {
                let name = o["name"].as_str().unwrap_or("");
                let handle = o["handle"].as_u64().unwrap_or(0);
                handles.insert((family.to_owned(), name.to_owned()), handle);
                if keep(family, name) {
                    tables.push(NftTable {
                        family: family.to_owned(),
                        name: name.to_owned(),
                        handle,
                        chains: Vec::new(),
                        sets: HashMap::new(),
                    });
                }
            }
            "chain" => {
                let Some(t) = find(&mut tables, family, table) else {
                    continue;
                };
                let base = o["hook"].as_str().map(|hook| BaseChain {
                    hook: hook.to_owned(),
                    prio: o["prio"].as_i64().unwrap_or(0) as i32,
                    nat: o["type"].as_str() == Some("nat"),
                    policy_drop: o["policy"].as_str() == Some("drop"),
                });
                tables[t].chains.push(NftChain {
                    name: o["name"].as_str().unwrap_or("").to_owned(),
                    base,
                    rules: Vec::new(),
                });
            }
            "set" | "map" => {
                let Some(t) = find(&mut tables, family, table) else {
                    continue;
                };
                let elems = o["elem"].as_array().cloned().unwrap_or_default();
                tables[t]
                    .sets
                    .insert(o["name"].as_str().unwrap_or("").to_owned(), elems);
            }
            "rule" => {
                let Some(t) = find(&mut tables, family, table) else {
                    continue;
                };
                let chain = o["chain"].as_str().unwrap_or("");
                let exprs = o["expr"].as_array().cloned().unwrap_or_default();
                if let Some(c) = tables[t].chains.iter_mut().find(|c| c.name == chain) {
                    c.rules.push(exprs);
                }
            }
            _ => {}
        }
    }
    NftRuleset {
        tables,
        handles,
        error: None,
    }
}

impl NftRuleset {
    /// A rule set that could not be read.
    pub(crate) fn failed(error: String) -> NftRuleset {
        NftRuleset {
            error: Some(error),
            ..NftRuleset::default()
        }
    }

    /// The handle of table `family name`, if nftables has it (iptables-legacy's tables are not
    /// nftables tables).
    pub(crate) fn handle_of(&self, family: &str, name: &str) -> Option<u64> {
        self.handles
            .get(&(family.to_owned(), name.to_owned()))
            .copied()
    }
}

/// The nft name of a hook.
pub(crate) fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
        Hook::Postrouting => "postrouting",
    }
}

impl NftTable {
    /// Whether the table sees IPv4 packets.
    pub(crate) fn ipv4(&self) -> bool {
        matches!(self.family.as_str(), "ip" | "inet")
    }

    /// The base chains at `hook`: (name, hook).
    pub(crate) fn base_chains(&self, hook: Hook) -> Vec<(String, BaseChain)> {
        self.chains
            .iter()
            .filter_map(|c| {
                c.base
                    .as_ref()
                    .filter(|b| b.hook == hook_name(hook))
                    .map(|b| (c.name.clone(), b.clone()))
            })
            .collect()
    }
}

/// Evaluates base chain `chain` of `table` for `flow`.
pub(crate) fn eval_base(
    table: &NftTable,
    chain: &str,
    flow: &mut Flow,
    ctx: &Ctx<'_>,
    out: &mut HookOutcome,
) -> Verdict {
    let mut ev = Eval {
        table,
        flow,
        ctx,
        out,
        no_endpoints: None,
    };
    match ev.chain(chain, 0) {
        End::Terminal(v) => v,
        End::Return => {
            let drop = table
                .chains
                .iter()
                .find(|c| c.name == chain)
                .and_then(|c| c.base.as_ref())
                .is_some_and(|b| b.policy_drop);
            if drop {
                Verdict::Drop {
                    table: table.name.clone(),
                    chain: chain.to_owned(),
                    rule: "policy drop".into(),
                }
            } else {
                Verdict::Accept
            }
        }
    }
}

/// A value a key expression yields.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Addr(Ipv4Addr),
    Num(u64),
    Proto(u8),
    Str(String),
    /// Not known for this packet (a source port, a header it does not have).
    Unknown,
}

enum End {
    Return,
    Terminal(Verdict),
}

/// What a rule ended with.
enum RuleEnd {
    /// It did not match (or a map had no element for the key).
    NoMatch,
    /// It matched and the chain goes on.
    Continue,
    /// It ended the chain.
    End(End),
}

struct Eval<'a, 'b> {
    table: &'a NftTable,
    flow: &'b mut Flow,
    ctx: &'b Ctx<'b>,
    out: &'b mut HookOutcome,
    /// The Service of the no-endpoints map element that matched, if one did.
    no_endpoints: Option<String>,
}

fn proto_number(s: &str) -> Option<u8> {
    Some(match s {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        _ => s.parse().ok()?,
    })
}

fn target(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.get("target")?.as_str().map(str::to_owned)
}

impl Eval<'_, '_> {
    fn caveat(&mut self, what: String) {
        let c = format!(
            "nftables table {} {}: {what}",
            self.table.family, self.table.name
        );
        if !self.out.caveats.contains(&c) {
            self.out.caveats.push(c);
        }
    }

    fn chain(&mut self, name: &str, depth: usize) -> End {
        if depth > MAX_DEPTH {
            self.caveat(format!("jumps nested deeper than {MAX_DEPTH} at {name}"));
            return End::Return;
        }
        let Some(chain) = self.table.chains.iter().find(|c| c.name == name) else {
            self.caveat(format!("no chain {name}"));
            return End::Return;
        };
        for rule in &chain.rules {
            match self.rule(name, rule, depth) {
                RuleEnd::NoMatch | RuleEnd::Continue => {}
                RuleEnd::End(e) => return e,
            }
        }
        End::Return
    }

    fn rule(&mut self, chain: &str, rule: &[Value], depth: usize) -> RuleEnd {
        for e in rule {
            let Some((kind, body)) = e.as_object().and_then(|m| m.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "match" => {
                    let left = self.value(&body["left"]);
                    let op = body["op"].as_str().unwrap_or("==");
                    let Some(eq) = self.compare(&left, &body["right"]) else {
                        self.caveat(format!("a match it cannot evaluate in {chain}: {e}"));
                        return RuleEnd::NoMatch;
                    };
                    let ok = if op == "!=" { !eq } else { eq };
                    if !ok {
                        return RuleEnd::NoMatch;
                    }
                }
                "counter" | "log" | "limit" | "notrack" | "quota" => {}
                // A dynamic set update (session affinity): it records, nothing more.
                "set" => {}
                "jump" | "goto" | "accept" | "drop" | "return" | "continue" => {
                    return self.verdict(chain, e, depth);
                }
                "vmap" => {
                    let verdict = if let Some(ng) = body["key"].get("numgen") {
                        self.numgen(chain, ng, &body["data"])
                    } else {
                        let key = self.key(&body["key"]);
                        self.lookup(&key, &body["data"])
                    };
                    match verdict {
                        Some(v) => return self.verdict(chain, &v, depth),
                        None => return RuleEnd::NoMatch,
                    }
                }
                "reject" => {
                    let rule = self.reject_text(chain);
                    return RuleEnd::End(End::Terminal(Verdict::Reject {
                        table: self.table.name.clone(),
                        chain: chain.to_owned(),
                        rule,
                    }));
                }
                "dnat" => {
                    let Some(a) = body["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<Ipv4Addr>().ok())
                    else {
                        self.caveat(format!("dnat it cannot read in {chain}: {e}"));
                        return RuleEnd::NoMatch;
                    };
                    let port = body["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                    let old = SocketAddr::new(self.flow.dst.into(), self.flow.dport.unwrap_or(0));
                    self.flow.dst = a;
                    if let (Some(p), Some(_)) = (port, self.flow.dport) {
                        self.flow.dport = Some(p);
                    }
                    self.flow.dnat = true;
                    let new = SocketAddr::new(a.into(), port.unwrap_or(0));
                    self.out.dnat = Some((old, new));
                    self.out
                        .decisions
                        .push((self.table.name.clone(), format!("{chain}: dnat to {new}")));
                    return RuleEnd::End(End::Terminal(Verdict::Accept));
                }
                "snat" | "masquerade" => {
                    let to = if kind == "snat" {
                        body["addr"]
                            .as_str()
                            .and_then(|a| a.parse::<Ipv4Addr>().ok())
                    } else {
                        self.ctx.masq_addr
                    };
                    match to {
                        Some(a) => {
                            self.out.snat = Some((self.flow.src, a));
                            self.flow.src = a;
                        }
                        None => self.caveat(format!("{kind} without a known address in {chain}")),
                    }
                    self.out
                        .decisions
                        .push((self.table.name.clone(), format!("{chain}: {kind}")));
                    return RuleEnd::End(End::Terminal(Verdict::Accept));
                }
                "mangle" => {
                    let is_mark =
                        body["key"].get("meta").and_then(|m| m["key"].as_str()) == Some("mark");
                    match (is_mark, self.value(&body["value"])) {
                        (true, V::Num(n)) => {
                            self.flow.mark = n as u32;
                            self.out.decisions.push((
                                self.table.name.clone(),
                                format!("{chain}: meta mark set {n:#x}"),
                            ));
                        }
                        _ => self.caveat(format!("a mangle it cannot evaluate in {chain}: {e}")),
                    }
                }
                _ => {
                    self.caveat(format!("expression `{kind}` not evaluated (in {chain})"));
                    return RuleEnd::NoMatch;
                }
            }
        }
        RuleEnd::Continue
    }

    /// The text of a reject, with the Service it stands for when a no-endpoints map led here.
    fn reject_text(&self, chain: &str) -> String {
        match &self.no_endpoints {
            Some(svc) => format!("\"{svc} has no endpoints\" (kube-proxy's {chain}) reject"),
            None => format!("{chain}: reject"),
        }
    }

    fn verdict(&mut self, chain: &str, v: &Value, depth: usize) -> RuleEnd {
        let table = self.table.name.clone();
        if let Some(t) = target(v, "jump") {
            self.out.jumps.push(Jump {
                table,
                from: chain.to_owned(),
                to: t.clone(),
            });
            return match self.chain(&t, depth + 1) {
                End::Return => RuleEnd::Continue,
                e @ End::Terminal(_) => RuleEnd::End(e),
            };
        }
        if let Some(t) = target(v, "goto") {
            self.out.jumps.push(Jump {
                table,
                from: chain.to_owned(),
                to: t.clone(),
            });
            return RuleEnd::End(self.chain(&t, depth + 1));
        }
        if v.get("accept").is_some() {
            return RuleEnd::End(End::Terminal(Verdict::Accept));
        }
        if v.get("drop").is_some() {
            return RuleEnd::End(End::Terminal(Verdict::Drop {
                table,
                chain: chain.to_owned(),
                rule: format!("{chain}: drop"),
            }));
        }
        if v.get("return").is_some() {
            return RuleEnd::End(End::Return);
        }
        RuleEnd::Continue
    }

    /// `numgen random mod N vmap { 0 : goto A, ... }`: a random spread.
    fn numgen(&mut self, chain: &str, ng: &Value, data: &Value) -> Option<Value> {
        let n = ng["mod"].as_u64().unwrap_or(1).max(1);
        let elems = data["set"].as_array().cloned().unwrap_or_default();
        let mut alternatives = Vec::new();
        let mut verdicts = Vec::new();
        for e in &elems {
            let (Some(_), Some(v)) = (e.get(0), e.get(1)) else {
                continue;
            };
            let Some(to) = target(v, "goto").or_else(|| target(v, "jump")) else {
                continue;
            };
            alternatives.push(Alternative {
                chain: to.clone(),
                dnat: self.dnat_in(&to),
                comment: None,
                probability: 1.0 / n as f64,
            });
            verdicts.push((to, v.clone()));
        }
        let chosen = pick(self.ctx.choice, &alternatives);
        self.out.spreads.push(Spread {
            chain: chain.to_owned(),
            alternatives,
            chosen: chosen.clone(),
        });
        verdicts
            .into_iter()
            .find(|(c, _)| *c == chosen)
            .map(|(_, v)| v)
    }

    /// The first `dnat to` in `chain`.
    fn dnat_in(&self, chain: &str) -> Option<SocketAddr> {
        let c = self.table.chains.iter().find(|c| c.name == chain)?;
        c.rules.iter().flatten().find_map(|e| {
            let d = e.get("dnat")?;
            let a: Ipv4Addr = d["addr"].as_str()?.parse().ok()?;
            let p = d["port"].as_u64().and_then(|p| u16::try_from(p).ok())?;
            Some(SocketAddr::new(a.into(), p))
        })
    }

    /// A map lookup: the element's verdict for `key`.
    fn lookup(&mut self, key: &[V], data: &Value) -> Option<Value> {
        let elems: Vec<Value> = match data {
            Value::String(s) if s.starts_with('@') => {
                self.table.sets.get(&s[1..]).cloned().unwrap_or_default()
            }
            _ => data["set"].as_array().cloned().unwrap_or_default(),
        };
        let map = data.as_str().unwrap_or("");
        for e in &elems {
            let (Some(k), Some(v)) = (e.get(0), e.get(1)) else {
                continue;
            };
            if self.elem_matches(key, k) {
                if map.contains("no-endpoint") {
                    self.no_endpoints =
                        Some(elem_comment(k).unwrap_or_else(|| "the Service".into()));
                }
                return Some(v.clone());
            }
        }
        None
    }

    fn elem_matches(&self, key: &[V], elem: &Value) -> bool {
        let elem = elem.get("elem").map_or(elem, |e| &e["val"]);
        match elem.get("concat").and_then(Value::as_array) {
            Some(parts) => {
                parts.len() == key.len()
                    && parts
                        .iter()
                        .zip(key)
                        .all(|(p, k)| self.compare(k, p) == Some(true))
            }
            None => key.len() == 1 && self.compare(&key[0], elem) == Some(true),
        }
    }

    /// The parts of a (possibly concatenated) key.
    fn key(&self, k: &Value) -> Vec<V> {
        match k.get("concat").and_then(Value::as_array) {
            Some(parts) => parts.iter().map(|p| self.value(p)).collect(),
            None => vec![self.value(k)],
        }
    }

    fn value(&self, e: &Value) -> V {
        let f = &*self.flow;
        match e {
            Value::Number(n) => n.as_u64().map_or(V::Unknown, V::Num),
            Value::String(s) => V::Str(s.clone()),
            Value::Object(m) => {
                if let Some(p) = m.get("payload") {
                    let proto = p["protocol"].as_str().unwrap_or("");
                    let field = p["field"].as_str().unwrap_or("");
                    return match (proto, field) {
                        ("ip", "daddr") => V::Addr(f.dst),
                        ("ip", "saddr") => V::Addr(f.src),
                        ("ip", "protocol") => V::Proto(f.proto.number()),
                        ("th" | "tcp" | "udp", "dport") => {
                            let right_proto =
                                proto == "th" || proto_number(proto) == Some(f.proto.number());
                            match f.dport {
                                Some(d) if right_proto => V::Num(u64::from(d)),
                                _ => V::Unknown,
                            }
                        }
                        _ => V::Unknown,
                    };
                }
                if let Some(meta) = m.get("meta") {
                    return match meta["key"].as_str().unwrap_or("") {
                        "l4proto" => V::Proto(f.proto.number()),
                        "mark" => V::Num(u64::from(f.mark)),
                        "iifname" => self.ctx.iif.map_or(V::Unknown, |s| V::Str(s.to_owned())),
                        "oifname" => self.ctx.oif.map_or(V::Unknown, |s| V::Str(s.to_owned())),
                        "nfproto" => V::Str("ipv4".into()),
                        _ => V::Unknown,
                    };
                }
                if let Some(ct) = m.get("ct") {
                    return match ct["key"].as_str().unwrap_or("") {
                        "state" => V::Str("new".into()),
                        "status" if f.dnat => V::Str("dnat".into()),
                        _ => V::Unknown,
                    };
                }
                if let Some(fib) = m.get("fib") {
                    let flags = fib["flags"].to_string();
                    if fib["result"].as_str() == Some("type") {
                        let a = if flags.contains("saddr") {
                            f.src
                        } else {
                            f.dst
                        };
                        return V::Str(
                            if (self.ctx.is_local)(a) {
                                "local"
                            } else {
                                "unicast"
                            }
                            .into(),
                        );
                    }
                    return V::Unknown;
                }
                for (op, f) in [("&", 0u8), ("|", 1), ("^", 2)] {
                    if let Some(args) = m.get(op).and_then(Value::as_array) {
                        let (Some(a), Some(b)) = (args.first(), args.get(1)) else {
                            return V::Unknown;
                        };
                        return match (self.value(a), self.value(b)) {
                            (V::Num(a), V::Num(b)) => V::Num(match f {
                                0 => a & b,
                                1 => a | b,
                                _ => a ^ b,
                            }),
                            _ => V::Unknown,
                        };
                    }
                }
                V::Unknown
            }
            _ => V::Unknown,
        }
    }

    /// Whether `v` equals (or lies in) the right-hand side; `None` when it cannot tell.
    fn compare(&self, v: &V, right: &Value) -> Option<bool> {
        if *v == V::Unknown {
            return Some(false);
        }
        match right {
            Value::String(s) if s.starts_with('@') => {
                let elems = self.table.sets.get(&s[1..])?;
                Some(elems.iter().any(|e| {
                    let k = e.get(0).filter(|_| e.is_array()).unwrap_or(e);
                    self.elem_matches(std::slice::from_ref(v), k)
                }))
            }
            Value::String(s) => Some(match v {
                V::Addr(a) => s.parse::<Ipv4Addr>().is_ok_and(|b| b == *a),
                V::Proto(p) => proto_number(s) == Some(*p),
                V::Num(n) => s.parse::<u64>().is_ok_and(|b| b == *n),
                V::Str(x) => x == s,
                V::Unknown => false,
            }),
            Value::Number(n) => Some(match v {
                V::Num(x) => n.as_u64() == Some(*x),
                V::Proto(p) => n.as_u64() == Some(u64::from(*p)),
                _ => false,
            }),
            Value::Array(items) => Some(items.iter().any(|i| self.compare(v, i) == Some(true))),
            Value::Object(m) => {
                if let Some(p) = m.get("prefix") {
                    let V::Addr(a) = v else { return Some(false) };
                    let net: Ipv4Addr = p["addr"].as_str()?.parse().ok()?;
                    let len = u8::try_from(p["len"].as_u64()?).ok()?;
                    let net = ipnet::Ipv4Net::new(net, len).ok()?;
                    return Some(net.contains(a));
                }
                if let Some(r) = m.get("range").and_then(Value::as_array) {
                    let (lo, hi) = (r.first()?, r.get(1)?);
                    return Some(match v {
                        V::Addr(a) => {
                            let lo: Ipv4Addr = lo.as_str()?.parse().ok()?;
                            let hi: Ipv4Addr = hi.as_str()?.parse().ok()?;
                            lo <= *a && *a <= hi
                        }
                        V::Num(n) => lo.as_u64()? <= *n && *n <= hi.as_u64()?,
                        _ => false,
                    });
                }
                if let Some(items) = m.get("set").and_then(Value::as_array) {
                    return Some(items.iter().any(|i| self.compare(v, i) == Some(true)));
                }
                None
            }
            _ => None,
        }
    }
}

/// The comment of a set element, if it has one.
fn elem_comment(k: &Value) -> Option<String> {
    k.get("elem")?.get("comment")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Choice, Proto};

    /// kube-proxy's nftables table for one Service with two endpoints (from `nft -j`).
    const JSON: &str = r#"{"nftables": [
 {"table": {"family": "ip", "name": "kube-proxy", "handle": 1}},
 {"table": {"family": "ip", "name": "nat", "handle": 2}},
 {"map": {"family": "ip", "name": "service-ips", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
   "elem": [[{"concat": ["10.96.0.10", "tcp", 80]}, {"goto": {"target": "service-A"}}]]}},
 {"map": {"family": "ip", "name": "no-endpoint-services", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
   "elem": [[{"elem": {"val": {"concat": ["10.96.0.13", "tcp", 80]}, "comment": "demo/empty:tcp"}}, {"goto": {"target": "reject-chain"}}]]}},
 {"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "type": "ipv4_addr", "elem": ["10.96.0.10", "10.96.0.13"]}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-prerouting", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-postrouting", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "filter-forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "services"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "service-A"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "endpoint-1"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "endpoint-2"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "mark-for-masquerade"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "masquerading"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "service-endpoints-check"}},
 {"chain": {"family": "ip", "table": "kube-proxy", "name": "reject-chain"}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-prerouting", "expr": [{"jump": {"target": "services"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-postrouting", "expr": [{"jump": {"target": "masquerading"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "filter-forward", "expr": [
   {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"jump": {"target": "service-endpoints-check"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-endpoints-check", "expr": [
   {"vmap": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@no-endpoint-services"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "reject-chain", "expr": [{"reject": null}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "expr": [
   {"vmap": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@service-ips"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-A", "expr": [
   {"vmap": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "data": {"set": [[0, {"goto": {"target": "endpoint-1"}}], [1, {"goto": {"target": "endpoint-2"}}]]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-1", "expr": [
   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.244.1.2"}}, {"jump": {"target": "mark-for-masquerade"}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-1", "expr": [
   {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "10.244.1.2", "port": 7777}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "endpoint-2", "expr": [
   {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "10.244.2.2", "port": 7777}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "mark-for-masquerade", "expr": [
   {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 16384]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [
   {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}, {"return": null}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [
   {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"^": [{"meta": {"key": "mark"}}, 16384]}}}]}},
 {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [{"masquerade": {"flags": "fully-random"}}]}}
]}"#;

    fn flow(src: [u8; 4], dst: [u8; 4]) -> Flow {
        Flow {
            proto: Proto::Tcp,
            src: src.into(),
            dst: dst.into(),
            sport: None,
            dport: Some(80),
            mark: 0,
            dnat: false,
        }
    }

    fn ctx<'a>(hook: Hook, choice: &'a Choice, local: &'a dyn Fn(Ipv4Addr) -> bool) -> Ctx<'a> {
        Ctx::for_test(hook, choice, local, "cni0", Ipv4Addr::new(10, 244, 1, 1))
    }

    #[test]
    fn kube_proxy_nftables_mode() {
        let rs = parse(JSON);
        assert!(rs.error.is_none());
        assert_eq!(rs.tables.len(), 1, "iptables-nft's nat table is left out");
        let t = &rs.tables[0];
        let local = |_: Ipv4Addr| false;
        let first = Choice::First;
        let (chain, base) = &t.base_chains(Hook::Prerouting)[0];
        assert!(base.nat && base.prio == -100);

        // A ClusterIP: numgen spread, the first endpoint is the client itself (hairpin mark).
        let mut f = flow([10, 244, 1, 2], [10, 96, 0, 10]);
        let mut out = HookOutcome::default();
        let v = eval_base(
            t,
            chain,
            &mut f,
            &ctx(Hook::Prerouting, &first, &local),
            &mut out,
        );
        assert_eq!(v, Verdict::Accept);
        assert_eq!(
            (f.dst, f.dport, f.mark),
            (Ipv4Addr::new(10, 244, 1, 2), Some(7777), 0x4000)
        );
        let to: Vec<&str> = out.jumps.iter().map(|j| j.to.as_str()).collect();
        assert_eq!(
            to,
            ["services", "service-A", "endpoint-1", "mark-for-masquerade"]
        );
        assert_eq!(out.spreads[0].alternatives.len(), 2);
        assert_eq!(
            out.spreads[0].alternatives[1].dnat,
            Some("10.244.2.2:7777".parse().unwrap())
        );

        // The other endpoint on request; then masquerading in POSTROUTING only with the mark.
        let prefer = Choice::Prefer(vec!["10.244.2.2".into()]);
        let mut f = flow([10, 244, 1, 2], [10, 96, 0, 10]);
        let mut out = HookOutcome::default();
        eval_base(
            t,
            chain,
            &mut f,
            &ctx(Hook::Prerouting, &prefer, &local),
            &mut out,
        );
        assert_eq!(f.dst, Ipv4Addr::new(10, 244, 2, 2));
        assert_eq!(f.mark, 0);
        let mut out = HookOutcome::default();
        eval_base(
            t,
            "nat-postrouting",
            &mut f,
            &ctx(Hook::Postrouting, &first, &local),
            &mut out,
        );
        assert!(out.snat.is_none());
        f.mark = 0x4000;
        let mut out = HookOutcome::default();
        eval_base(
            t,
            "nat-postrouting",
            &mut f,
            &ctx(Hook::Postrouting, &first, &local),
            &mut out,
        );
        assert_eq!(
            out.snat.map(|(_, to)| to),
            Some(Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(f.mark, 0);

        // No endpoints: rejected in filter-forward, naming the Service.
        let mut f = flow([10, 244, 1, 2], [10, 96, 0, 13]);
        let mut out = HookOutcome::default();
        let v = eval_base(
            t,
            "filter-forward",
            &mut f,
            &ctx(Hook::Forward, &first, &local),
            &mut out,
        );
        match v {
            Verdict::Reject { chain, rule, .. } => {
                assert_eq!(chain, "reject-chain");
                assert!(
                    rule.contains("\"demo/empty:tcp has no endpoints\""),
                    "{rule}"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("not json").error.is_some());
        assert!(parse("{}").tables.is_empty());
        assert!(
            parse(r#"{"nftables": [1, "x", {"rule": {}}, {"table": {}}]}"#)
                .error
                .is_none()
        );
    }
}
