//! The `portmap` meta plugin: host ports forwarded to the container with iptables DNAT, as the
//! reference plugin (containernetworking/plugins 1.1.1) writes them, chain for chain and rule for
//! rule, in one `iptables-restore --noflush` per address family instead of one `iptables` run per
//! rule.
//!
//! In table nat, for the `runtimeConfig.portMappings` and the container's address A (of
//! `prevResult`, on `CNI_IFNAME`):
//!
//! - `CNI-HOSTPORT-DNAT`, jumped to from PREROUTING and OUTPUT for local destinations (shared);
//!   it jumps, per protocol and per 15 ports (`-m multiport`, with `conditionsV4`/`V6`), to
//! - `CNI-DN-<21 hex digits of sha512(name + id)>`, the container's chain: per mapping a hairpin
//!   mark (source A's subnet), a localhost mark (source 127.0.0.1, IPv4) and the DNAT to
//!   A:containerPort, each for `-d hostIP` when the mapping has one;
//! - `CNI-HOSTPORT-SETMARK` (sets bit `markMasqBit`, default 13) and `CNI-HOSTPORT-MASQ`
//!   (masquerades what carries it), jumped to first in POSTROUTING (shared; not with
//!   `snat: false`, and SETMARK not with `externalSetMarkChain`), and `route_localnet` on the
//!   interface that routes to A.
//!
//! DEL removes the container's chain and the jumps to it (the shared chains stay, as the
//! reference leaves them); CHECK looks for every rule with `iptables -C`. After ADD, conntrack
//! entries of the UDP host ports are deleted, so that a stale flow does not keep traffic from
//! the new rules.

use super::error::{CHECK_FAILED, CniError, EXTERNAL_PROGRAM, INVALID_CONFIG};
use podnet_cni::conf::refuse_in;
use podnet_cni::{Args, CniResult, Plugin, PluginConf};
use podnet_links::{Handle, LinkRef, LinkSysctl};
use podnet_nat::conntrack::{Conntrack, DumpFilter, Flow, FlowSelector};
use podnet_nat::iptables::{AddrType, Match, Protocol, Rule, Target, split_rule_words};
use podnet_nat::kube::IpFamily;
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

/// The `portmap` plugin.
pub struct Portmap;

const TOP_DNAT: &str = "CNI-HOSTPORT-DNAT";
const SET_MARK: &str = "CNI-HOSTPORT-SETMARK";
const MARK_MASQ: &str = "CNI-HOSTPORT-MASQ";
/// The top chain of plugin versions before 0.7; DEL still removes a container's chain there.
const OLD_TOP_SNAT: &str = "CNI-HOSTPORT-SNAT";
const DEFAULT_MARK_BIT: u32 = 13;
/// `-m multiport` takes at most 15 ports.
const MULTIPORT_MAX: usize = 15;

/// One of `runtimeConfig.portMappings`.
#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    host_port: u16,
    container_port: u16,
    /// As given (the reference groups and sorts by the literal text).
    protocol: String,
    host_ip: Option<IpAddr>,
}

#[derive(Debug)]
struct Conf {
    name: String,
    snat: bool,
    conditions_v4: Vec<String>,
    conditions_v6: Vec<String>,
    mark_bit: u32,
    external_set_mark: Option<String>,
    mappings: Vec<Mapping>,
}

/// `prefix` then the hex digits of sha512(`s`), cut to `len` characters: the reference's
/// `MustFormatHashWithPrefix`.
pub(crate) fn hashed_name(prefix: &str, s: &str, len: usize) -> String {
    let digest = Sha512::digest(s.as_bytes());
    let mut out = String::from(prefix);
    for b in digest.iter() {
        if out.len() >= len {
            break;
        }
        let _ = write!(out, "{b:02x}");
    }
    out.truncate(len);
    out
}

/// The container's DNAT chain: `CNI-DN-` and 21 hex digits.
fn dnat_chain(network: &str, container_id: &str) -> String {
    hashed_name("CNI-DN-", &format!("{network}{container_id}"), 28)
}

/// The chain plugin versions before 0.7 made (`CNI-SN-`).
fn old_snat_chain(network: &str, container_id: &str) -> String {
    hashed_name("CNI-SN-", &format!("{network}{container_id}"), 28)
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|w| {
                w.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CniError::invalid(field, "not a list of strings"))
            })
            .collect(),
        Some(_) => Err(CniError::invalid(field, "not a list of strings")),
    }
}

fn port(m: &serde_json::Map<String, Value>, key: &str, i: usize) -> Result<u16, CniError> {
    let field = format!("runtimeConfig.portMappings[{i}].{key}");
    match m.get(key) {
        None | Some(Value::Null) => Err(CniError::invalid(&field, "missing")),
        Some(v) => v
            .as_i64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
            .ok_or_else(|| CniError::invalid(&field, format!("{v} is not a port (1 to 65535)"))),
    }
}

fn parse(base: &PluginConf) -> Result<Conf, CniError> {
    let o = &base.raw;
    // Keys of newer reference versions podnet does not implement.
    if let Some(b) = o.get("backend").and_then(Value::as_str)
        && b != "iptables"
    {
        return Err(CniError::unsupported(
            "portmap",
            "backend",
            &Value::String(b.to_owned()),
            "podnet's portmap writes iptables rules; remove it or set \"iptables\"",
        ));
    }
    refuse_in(
        o,
        "",
        "portmap",
        &["masqAll"],
        "remove it (only marked hairpin and localhost traffic is masqueraded)",
    )?;
    let snat = match o.get("snat") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(CniError::invalid("snat", "not a boolean")),
    };
    let external_set_mark = match o.get("externalSetMarkChain") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(CniError::invalid("externalSetMarkChain", "not a string")),
    };
    let mark_bit = match o.get("markMasqBit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|b| (0..=31).contains(b)).ok_or_else(|| {
            CniError::invalid("markMasqBit", "MasqMarkBit must be between 0 and 31")
        })? as u32),
    };
    if mark_bit.is_some() && external_set_mark.is_some() {
        return Err(CniError::new(
            INVALID_CONFIG,
            "Cannot specify externalSetMarkChain and markMasqBit",
        ));
    }
    let mut mappings = Vec::new();
    match base.runtime_config.get("portMappings") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, m) in a.iter().enumerate() {
                let Value::Object(m) = m else {
                    return Err(CniError::invalid(
                        &format!("runtimeConfig.portMappings[{i}]"),
                        "not an object",
                    ));
                };
                let protocol = m
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if Protocol::from_name(&protocol).is_none() {
                    return Err(CniError::invalid(
                        &format!("runtimeConfig.portMappings[{i}].protocol"),
                        format!("{protocol:?} is none of tcp, udp, sctp"),
                    ));
                }
                let host_ip = match m.get("hostIP").and_then(Value::as_str) {
                    None | Some("") => None,
                    Some(s) => Some(s.parse().map_err(|_| {
                        CniError::invalid(
                            &format!("runtimeConfig.portMappings[{i}].hostIP"),
                            format!("{s:?} is not an IP address"),
                        )
                    })?),
                };
                mappings.push(Mapping {
                    host_port: port(m, "hostPort", i)?,
                    container_port: port(m, "containerPort", i)?,
                    protocol,
                    host_ip,
                });
            }
        }
        Some(_) => {
            return Err(CniError::invalid(
                "runtimeConfig.portMappings",
                "not a list",
            ));
        }
    }
    Ok(Conf {
        name: base.name.clone(),
        snat,
        conditions_v4: strings(o.get("conditionsV4"), "conditionsV4")?,
        conditions_v6: strings(o.get("conditionsV6"), "conditionsV6")?,
        mark_bit: mark_bit.unwrap_or(DEFAULT_MARK_BIT),
        external_set_mark,
        mappings,
    })
}

/// The container's first IPv4 and first IPv6 address on `ifname` (addresses of interfaces
/// known to be elsewhere are skipped), as the reference picks them.
fn container_addrs(result: &CniResult, ifname: &str) -> Vec<ipnet::IpNet> {
    let mut v4 = None;
    let mut v6 = None;
    for ip in &result.ips {
        let slot = if ip.address.addr().is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_some() {
            continue;
        }
        if let Some(i) = ip.interface.and_then(|i| result.interfaces.get(i))
            && (i.name != ifname || i.sandbox.as_deref().unwrap_or("").is_empty())
        {
            continue;
        }
        *slot = Some(ip.address);
    }
    v4.into_iter().chain(v6).collect()
}

/// Writes one iptables-restore word (quoted when it has spaces or quotes).
fn word(out: &mut String, w: &str) {
    if !w.is_empty() && !w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        out.push_str(w);
        return;
    }
    out.push('"');
    for c in w.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A rule as the words after `-A CHAIN`, for `iptables -C` and `-D`.
fn spec_words(rule: &str) -> Vec<String> {
    split_rule_words(rule).into_iter().skip(2).collect()
}

/// The rules of one address family, in the order the reference adds them.
struct Rules {
    /// Shared rules `(line, prepend)`: added only when absent, in the form iptables-save
    /// prints them (so presence is a line comparison).
    shared: Vec<(String, bool)>,
    /// Shared chains the shared rules need.
    shared_chains: Vec<&'static str>,
    /// The container's chain.
    chain: String,
    /// Its rules (the chain is flushed and refilled).
    rules: Vec<String>,
    /// The jumps to it from CNI-HOSTPORT-DNAT.
    entries: Vec<String>,
}

fn mark(bit: u32) -> u32 {
    1u32 << bit
}

fn rules(c: &Conf, container_id: &str, addr: ipnet::IpNet) -> Rules {
    let v6 = addr.addr().is_ipv6();
    let m = mark(c.mark_bit);
    let mut shared = Vec::new();
    let mut shared_chains = Vec::new();
    if c.snat && c.external_set_mark.is_none() {
        shared_chains.extend([SET_MARK, MARK_MASQ]);
        shared.push((
            Rule::new(SET_MARK)
                .with(Match::comment("CNI portfwd masquerade mark"))
                .target(Target::MarkSetX { value: m, mask: m })
                .render(),
            false,
        ));
        shared.push((
            Rule::new(MARK_MASQ)
                .with(Match::Mark {
                    value: format!("{m:#x}"),
                    mask: Some(format!("{m:#x}")),
                    negate: false,
                })
                .target(Target::Masquerade {
                    random_fully: false,
                })
                .render(),
            false,
        ));
        shared.push((
            Rule::new("POSTROUTING")
                .with(Match::comment("CNI portfwd requiring masquerade"))
                .jump(MARK_MASQ)
                .render(),
            true,
        ));
    }
    shared_chains.push(TOP_DNAT);
    for entry in ["PREROUTING", "OUTPUT"] {
        shared.push((
            Rule::new(entry)
                .with(Match::DstType(AddrType::Local))
                .jump(TOP_DNAT)
                .render(),
            false,
        ));
    }

    let chain = dnat_chain(&c.name, container_id);
    let comment = {
        let t = format!("dnat name: {:?} id: {:?}", c.name, container_id);
        if t.len() <= 255 {
            t
        } else {
            let mut cut = 253;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &t[..cut])
        }
    };
    let conditions = if v6 {
        &c.conditions_v6
    } else {
        &c.conditions_v4
    };
    // Entry rules: per protocol (sorted), 15 ports at a time.
    let mut protos: Vec<&str> = c.mappings.iter().map(|m| m.protocol.as_str()).collect();
    protos.sort_unstable();
    protos.dedup();
    let mut entries = Vec::new();
    for proto in protos {
        let ports: Vec<String> = c
            .mappings
            .iter()
            .filter(|m| m.protocol == proto)
            .map(|m| m.host_port.to_string())
            .collect();
        for chunk in ports.chunks(MULTIPORT_MAX) {
            let mut l = format!("-A {TOP_DNAT} -m comment --comment ");
            word(&mut l, &comment);
            l.push_str(" -m multiport -p ");
            word(&mut l, proto);
            l.push_str(" --destination-ports ");
            l.push_str(&chunk.join(","));
            for w in conditions {
                l.push(' ');
                word(&mut l, w);
            }
            l.push_str(" -j ");
            l.push_str(&chain);
            entries.push(l);
        }
    }
    let set_mark = c.external_set_mark.as_deref().unwrap_or(SET_MARK);
    let mut dn = Vec::new();
    for e in &c.mappings {
        if e.host_ip.is_some_and(|h| h.is_ipv6() != v6) {
            continue;
        }
        let proto = Protocol::from_name(&e.protocol).unwrap_or(Protocol::Tcp);
        let base = |r: Rule| {
            let r = r
                .with(Match::Protocol(proto))
                .with(Match::ProtocolModule(proto))
                .with(Match::DestinationPort(e.host_port));
            match e.host_ip.filter(|h| !h.is_unspecified()) {
                Some(h) => r.with(Match::destination_ip(h)),
                None => r,
            }
        };
        if c.snat {
            dn.push(
                base(Rule::new(chain.as_str()).with(Match::source(addr.trunc())))
                    .jump(set_mark)
                    .render(),
            );
            if !v6 {
                dn.push(
                    base(
                        Rule::new(chain.as_str())
                            .with(Match::source_ip(std::net::Ipv4Addr::LOCALHOST.into())),
                    )
                    .jump(set_mark)
                    .render(),
                );
            }
        }
        dn.push(
            base(Rule::new(chain.as_str()))
                .target(Target::Dnat(SocketAddr::new(addr.addr(), e.container_port)))
                .render(),
        );
    }
    Rules {
        shared,
        shared_chains,
        chain,
        rules: dn,
        entries,
    }
}

/// `iptables<suffix>`, or `ip6tables<suffix>` for IPv6.
fn program(v6: bool, suffix: &str) -> String {
    if v6 {
        format!("ip6tables{suffix}")
    } else {
        format!("iptables{suffix}")
    }
}

fn save(v6: bool) -> Result<String, String> {
    let prog = program(v6, "-save");
    let out = Command::new(&prog)
        .args(["-t", "nat"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{prog}: {e} (install iptables)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn restore(v6: bool, input: &str) -> Result<(), String> {
    let prog = program(v6, "-restore");
    let mut child = Command::new(&prog)
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{prog}: {e} (install iptables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{prog}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The chains iptables-save declares, and its rule lines.
fn chains_of(save: &str) -> Vec<&str> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The `-D` lines that remove every jump from `from` to `to` in an iptables-save text.
fn delete_jumps(save: &str, from: &str, to: &str, out: &mut String) {
    let head = format!("-A {from} ");
    let tail = format!(" -j {to}");
    for l in save.lines() {
        if l.starts_with(&head) && l.ends_with(&tail) {
            out.push_str("-D");
            out.push_str(&l[2..]);
            out.push('\n');
        }
    }
}

/// The restore input that sets up `r` over the live rules `live`.
fn setup_input(r: &Rules, live: &str) -> String {
    let chains = chains_of(live);
    let lines: std::collections::HashSet<&str> = live.lines().collect();
    let mut s = String::from("*nat\n");
    for c in &r.shared_chains {
        if !chains.contains(c) {
            // -N, not a declaration: declaring a chain flushes it, and another ADD may have
            // filled it since `live` was read (then this transaction fails and is retried).
            let _ = writeln!(s, "-N {c}");
        }
    }
    let _ = writeln!(s, ":{} - [0:0]", r.chain);
    // Shared chains' own rules, then the container's chain, then the jumps: the reference's
    // order (a rule can only jump to a chain that exists).
    for (l, prepend) in &r.shared {
        if lines.contains(l.as_str()) {
            continue;
        }
        if *prepend {
            let words = split_rule_words(l);
            let _ = write!(s, "-I {} 1", words[1]);
            let rest = &l[3 + words[1].len()..];
            s.push_str(rest);
            s.push('\n');
        } else {
            s.push_str(l);
            s.push('\n');
        }
    }
    for l in &r.rules {
        s.push_str(l);
        s.push('\n');
    }
    delete_jumps(live, TOP_DNAT, &r.chain, &mut s);
    for l in &r.entries {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

fn forward(c: &Conf, container_id: &str, addr: ipnet::IpNet) -> Result<(), CniError> {
    let v6 = addr.addr().is_ipv6();
    let r = rules(c, container_id, addr);
    let fail = |e: String| CniError::new(EXTERNAL_PROGRAM, format!("portmap: {e}"));
    let mut last = String::new();
    for _ in 0..3 {
        let live = save(v6).map_err(fail)?;
        match restore(v6, &setup_input(&r, &live)) {
            Ok(()) => {
                last.clear();
                break;
            }
            // A concurrent ADD made a shared chain since `live` was read: read again.
            Err(e) => last = e,
        }
    }
    if !last.is_empty() {
        return Err(fail(format!("setting up the DNAT rules: {last}")));
    }
    if c.snat && !v6 {
        // 127/8 may cross into the container: route_localnet on the interface that routes to
        // it (best effort, as the reference finds it with a route lookup).
        if let Ok(h) = Handle::new()
            && let Ok(route) = h.route().get(addr.addr())
        {
            let name = match (route.dev, route.oif) {
                (Some(LinkRef::Name(n)), _) => Some(n),
                (Some(LinkRef::Index(i)), _) | (None, Some(i)) => {
                    h.link().get(i).ok().map(|l| l.name)
                }
                (None, None) => None,
            };
            if let Some(dev) = name {
                h.sysctl()
                    .set(&dev, LinkSysctl::RouteLocalnet, 1)
                    .map_err(|e| {
                        CniError::new(
                            super::error::KERNEL,
                            format!("unable to enable route_localnet: {e}"),
                        )
                    })?;
            }
        }
    }
    Ok(())
}

/// UDP flows to one of the mapped host ports.
struct UdpToPorts(Vec<u16>);

impl FlowSelector for UdpToPorts {
    fn dump_filter(&self) -> DumpFilter {
        DumpFilter::protocol(Protocol::Udp)
    }
    fn selects(&self, f: &Flow) -> bool {
        f.protocol == Protocol::Udp && self.0.contains(&f.orig_dst.port())
    }
}

/// Deletes the conntrack entries of UDP flows to the mapped UDP host ports, so that traffic
/// stuck to a stale flow takes the new rules; failures only reported, as the reference does.
fn delete_stale_udp(c: &Conf, family: IpFamily) {
    let ports: Vec<u16> = c
        .mappings
        .iter()
        .filter(|m| m.protocol.eq_ignore_ascii_case("udp"))
        .map(|m| m.host_port)
        .collect();
    if ports.is_empty() {
        return;
    }
    let res = podnet_netns::NetNs::current()
        .map_err(|e| e.to_string())
        .and_then(|ns| Conntrack::open_in(&ns).map_err(|e| e.to_string()))
        .and_then(|mut ct| {
            ct.delete_matching(family, UdpToPorts(ports))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = res {
        eprintln!("portmap: failed to delete stale UDP conntrack entries: {e}");
    }
}

/// Removes the container's chain `chain` and every jump to it from `top`, in both families
/// where iptables works. Nothing there is not an error.
fn teardown(chains: &[(&str, String)]) -> Result<(), CniError> {
    let mut usable = 0;
    let mut first_err = None;
    for v6 in [false, true] {
        let Ok(live) = save(v6) else { continue };
        usable += 1;
        let present = chains_of(&live);
        let mut s = String::from("*nat\n");
        let mut any = false;
        for (top, chain) in chains {
            let before = s.len();
            delete_jumps(&live, top, chain, &mut s);
            if present.contains(&chain.as_str()) {
                let _ = writeln!(s, "-F {chain}\n-X {chain}");
            }
            any |= s.len() != before;
        }
        if !any {
            continue;
        }
        s.push_str("COMMIT\n");
        if let Err(e) = restore(v6, &s) {
            first_err.get_or_insert(e);
        }
    }
    if usable == 0 {
        return Err(CniError::new(
            EXTERNAL_PROGRAM,
            "neither iptables nor ip6tables usable",
        ));
    }
    match first_err {
        Some(e) => Err(CniError::new(
            EXTERNAL_PROGRAM,
            format!("portmap: could not tear down the DNAT rules: {e}"),
        )),
        None => Ok(()),
    }
}

/// `iptables -C`: whether the rule is there.
fn rule_exists(v6: bool, rule: &str) -> bool {
    let words = split_rule_words(rule);
    Command::new(program(v6, ""))
        .args(["-w", "5", "-t", "nat", "-C", &words[1]])
        .args(&words[2..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn parse_all(args: &Args, stdin: &[u8]) -> Result<(PluginConf, Conf), CniError> {
    let base = PluginConf::parse(stdin, podnet_cni::SUPPORTED_VERSIONS)?;
    let c = parse(&base)?;
    let _ = args;
    Ok((base, c))
}

impl Plugin for Portmap {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let (base, c) = parse_all(args, stdin)?;
        let result = base
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "must be called as chained plugin"))?;
        if c.mappings.is_empty() {
            return Ok(result);
        }
        for addr in container_addrs(&result, &args.ifname) {
            forward(&c, &args.container_id, addr)?;
            delete_stale_udp(&c, IpFamily::of(&addr.addr()));
        }
        Ok(result)
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let (_, c) = parse_all(args, stdin)?;
        if c.mappings.is_empty() {
            return Ok(());
        }
        teardown(&[
            (TOP_DNAT, dnat_chain(&c.name, &args.container_id)),
            (OLD_TOP_SNAT, old_snat_chain(&c.name, &args.container_id)),
        ])
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let (base, c) = parse_all(args, stdin)?;
        let result = base
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "Required prevResult missing"))?;
        if c.mappings.is_empty() {
            return Ok(());
        }
        for addr in container_addrs(&result, &args.ifname) {
            let v6 = addr.addr().is_ipv6();
            let r = rules(&c, &args.container_id, addr);
            for rule in r.rules.iter().chain(&r.entries) {
                if !rule_exists(v6, rule) {
                    return Err(CniError::new(
                        CHECK_FAILED,
                        format!(
                            "portmap: rule not found in table nat: {}",
                            spec_words(rule).join(" ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_chain_names() {
        // The reference's names (seen in iptables-save after its ADD of network "pmnet",
        // container "ctr1").
        assert_eq!(dnat_chain("pmnet", "ctr1"), "CNI-DN-323d23e06ba2fdaccfbf7");
        assert_eq!(
            super::super::masq::chain_name("pmnet", "ctr1"),
            hashed_name("CNI-", "pmnetctr1", 28)
        );
    }

    fn conf(json: &str) -> Result<Conf, CniError> {
        parse(&PluginConf::parse(json.as_bytes(), podnet_cni::SUPPORTED_VERSIONS).unwrap())
    }

    #[test]
    fn rules_as_the_reference_writes_them() {
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap","runtimeConfig":{"portMappings":[
            {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
            {"hostPort":8081,"containerPort":81,"protocol":"udp"},
            {"hostPort":9090,"containerPort":90,"protocol":"tcp","hostIP":"10.99.0.1"}]}}"#,
        )
        .unwrap();
        let r = rules(&c, "ctr1", "10.99.0.2/24".parse().unwrap());
        let dn = "CNI-DN-323d23e06ba2fdaccfbf7";
        assert_eq!(
            r.rules,
            vec![
                format!(
                    "-A {dn} -s 10.99.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"
                ),
                format!("-A {dn} -s 127.0.0.1 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"),
                format!("-A {dn} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80"),
                format!(
                    "-A {dn} -s 10.99.0.0/24 -p udp -m udp --dport 8081 -j CNI-HOSTPORT-SETMARK"
                ),
                format!("-A {dn} -s 127.0.0.1 -p udp -m udp --dport 8081 -j CNI-HOSTPORT-SETMARK"),
                format!("-A {dn} -p udp -m udp --dport 8081 -j DNAT --to-destination 10.99.0.2:81"),
                format!(
                    "-A {dn} -s 10.99.0.0/24 -p tcp -m tcp --dport 9090 -d 10.99.0.1 -j CNI-HOSTPORT-SETMARK"
                ),
                format!(
                    "-A {dn} -s 127.0.0.1 -p tcp -m tcp --dport 9090 -d 10.99.0.1 -j CNI-HOSTPORT-SETMARK"
                ),
                format!(
                    "-A {dn} -p tcp -m tcp --dport 9090 -d 10.99.0.1 -j DNAT --to-destination 10.99.0.2:90"
                ),
            ]
        );
        assert_eq!(
            r.entries,
            vec![
                format!(
                    "-A CNI-HOSTPORT-DNAT -m comment --comment \"dnat name: \\\"pmnet\\\" id: \\\"ctr1\\\"\" -m multiport -p tcp --destination-ports 8080,9090 -j {dn}"
                ),
                format!(
                    "-A CNI-HOSTPORT-DNAT -m comment --comment \"dnat name: \\\"pmnet\\\" id: \\\"ctr1\\\"\" -m multiport -p udp --destination-ports 8081 -j {dn}"
                ),
            ]
        );
        // The shared rules in iptables-save's own form.
        let shared: Vec<&str> = r.shared.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            shared,
            vec![
                "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000",
                "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
                "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
                "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            ]
        );
    }

    #[test]
    fn setup_over_live_rules_adds_only_what_is_missing() {
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","snat":false,"runtimeConfig":{"portMappings":[
            {"hostPort":80,"containerPort":80,"protocol":"tcp"}]}}"#,
        )
        .unwrap();
        let r = rules(&c, "a", "10.1.0.2/24".parse().unwrap());
        let dn = dnat_chain("n", "a");
        let live = format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:{TOP_DNAT} - [0:0]\n\
             -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n\
             -A {TOP_DNAT} -p tcp -m comment --comment x -m multiport --dports 80 -j {dn}\nCOMMIT\n"
        );
        let input = setup_input(&r, &live);
        assert!(!input.contains("-N"), "{input}");
        assert!(!input.contains("-A PREROUTING"), "{input}");
        assert!(input.contains("-A OUTPUT -m addrtype"), "{input}");
        assert!(
            input.contains(&format!(
                "-D {TOP_DNAT} -p tcp -m comment --comment x -m multiport --dports 80 -j {dn}\n"
            )),
            "{input}"
        );
        assert!(!input.contains("SETMARK"), "{input}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","backend":"nftables"}"#)
            .unwrap_err();
        assert_eq!(e.code, 2, "{e:?}");
        assert!(e.msg.contains("backend"));
        let e = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","markMasqBit":3,"externalSetMarkChain":"X"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        let e = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","markMasqBit":32}"#)
            .unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        let e = conf(
            r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":1,"protocol":"tcp"}]}}"#,
        )
        .unwrap_err();
        assert!(e.msg.contains("hostPort"), "{e:?}");
    }
}
