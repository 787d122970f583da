//! The traced probe: one real packet, traced by the kernel, compared with the prediction.
//!
//! Every namespace of the topology gets a temporary nftables table (`inet` and `bridge`
//! families, named `podnet_explain_<pid>`) with a chain at each hook, ahead of every other
//! chain (priority -400). In the source namespace the output chain marks the probe (DSCP 13);
//! everywhere the first chains set `meta nftrace` on packets that carry the mark in the
//! forward direction (an ICMP echo request, a TCP SYN without ACK, UDP), and on VXLAN and
//! flannel-udp packets whose inner packet does (matched at fixed offsets behind the UDP
//! header). The trace flag does not survive a namespace crossing or an encapsulation, so it is
//! set again wherever the probe shows up. With the flag set, the kernel reports every base
//! chain the packet passes (ours show the devices at each hook) and every rule that matches in
//! any table, iptables-nft's included, as NFT_MSG_TRACE messages on the NFNLGRP_NFTRACE
//! netlink group, which a socket in each namespace reads. The tables are removed afterwards,
//! also when something fails.
//!
//! The comparison is per namespace: whether the probe was seen there at all, the hooks and
//! devices (a multiset of [`Checkpoint`]s, order-free because br_netfilter interleaves the
//! families), and the chains the probe's own packet jumped to (iptables decisions; the outer
//! packet of a tunnel is left out there, as conntrack may already know its flow and skip the
//! nat table). Where kube-proxy spreads connections at random, the walk is redone along the
//! endpoint the kernel picked.

use super::rules::Jump;
use super::walk::FLANNEL_UDP_PORT;
use super::{Checkpoint, Choice, ExplainError, Packet, Proto, Snapshot, Topology, Walk, explain};
use podnet_links::netlink::Connection;
use podnet_links::nlattr;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The DSCP value that marks the probe (unused by anything in the cluster).
const DSCP: u8 = 13;
/// The TOS byte with that DSCP and no ECN bits.
const TOS: u8 = DSCP << 2;
/// nfnetlink's trace multicast group.
const NFNLGRP_NFTRACE: u32 = 9;
/// NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE.
const NFT_TRACE_MSG: u16 = (10 << 8) | 17;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_BRIDGE: u8 = 7;
const NFT_TRACETYPE_POLICY: u32 = 1;
const NFT_TRACETYPE_RULE: u32 = 3;
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// One comparison between the prediction and the kernel's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// The namespace.
    pub ns: String,
    /// What is compared, with what was predicted and what was traced when they differ.
    pub what: String,
    /// Whether the trace agrees.
    pub agrees: bool,
}

/// What the trace saw in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedNs {
    /// The namespace label.
    pub ns: String,
    /// Hooks and devices (from the temporary table's chains).
    pub checkpoints: Vec<Checkpoint>,
    /// Chains the probe's own packet jumped to, and `DROP` where a rule or policy dropped it.
    pub jumps: Vec<Jump>,
}

/// The result of a traced probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// What the probe was and what the sender saw.
    pub sent: String,
    /// The trace, per namespace where the probe was seen.
    pub traced: Vec<TracedNs>,
    /// The comparisons.
    pub agreements: Vec<Agreement>,
    /// The endpoint the kernel picked where kube-proxy spreads at random, when it differs from
    /// the first prediction.
    pub repredicted: Option<String>,
}

impl ProbeReport {
    /// Whether every comparison agrees.
    pub fn agrees(&self) -> bool {
        self.agreements.iter().all(|a| a.agrees)
    }

    /// The comparisons that disagree.
    pub fn disagreements(&self) -> impl Iterator<Item = &Agreement> {
        self.agreements.iter().filter(|a| !a.agrees)
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "traced probe: {}", self.sent)?;
        if let Some(r) = &self.repredicted {
            writeln!(f, "  {r}")?;
        }
        let width = self
            .agreements
            .iter()
            .map(|a| a.ns.len())
            .max()
            .unwrap_or(4);
        for a in &self.agreements {
            writeln!(
                f,
                "  {}  {:<width$}  {}",
                if a.agrees { "agree   " } else { "DISAGREE" },
                a.ns,
                a.what
            )?;
        }
        let n = self.agreements.len();
        let bad = self.disagreements().count();
        if bad == 0 {
            writeln!(
                f,
                "=> the kernel's trace agrees with the prediction ({n} checks)"
            )
        } else {
            writeln!(
                f,
                "=> the kernel's trace disagrees with the prediction in {bad} of {n} checks"
            )
        }
    }
}

/// Predicts the path of `packet` from `source`, sends one real probe with tracing on, and
/// compares. Returns the walk (redone along the endpoint the kernel picked, if it spread the
/// connection at random) and the comparison.
pub fn probe(
    topo: &Topology,
    source: &str,
    packet: &Packet,
    choice: &Choice,
) -> Result<(Walk, ProbeReport), ExplainError> {
    let first = explain(topo, source, packet, choice)?;
    let snap = &topo.open()?;
    let src = snap
        .find(source)
        .ok_or_else(|| ExplainError::UnknownSource(source.to_owned(), snap.labels().join(", ")))?;
    let table = format!("podnet_explain_{}", std::process::id());
    let vx_ports = vxlan_ports(snap);
    let tables = Tables::install(snap, src, &table, packet, &vx_ports)?;
    let listeners = snap
        .views()
        .iter()
        .map(|v| {
            let conn = Connection::new_in(live(v)?, libc::NETLINK_NETFILTER as isize)
                .map_err(|e| ExplainError::Probe(format!("{}: nfnetlink socket: {e}", v.label)))?;
            conn.socket()
                .add_membership(NFNLGRP_NFTRACE)
                .map_err(|e| ExplainError::Probe(format!("{}: NFNLGRP_NFTRACE: {e}", v.label)))?;
            conn.socket()
                .set_non_blocking(true)
                .map_err(|e| ExplainError::Probe(e.to_string()))?;
            Ok(conn)
        })
        .collect::<Result<Vec<_>, ExplainError>>()?;
    let sent = send(snap, src, packet)?;
    let events = collect(&listeners);
    drop(listeners);
    drop(tables);

    let traced = summarize(snap, &table, &events);
    // Follow the endpoints the kernel picked where the prediction had a choice.
    let mut walk = first;
    let mut repredicted = None;
    let had_spread = walk.rules().any(|(_, r)| !r.spreads.is_empty());
    if had_spread {
        let picked: Vec<String> = traced
            .iter()
            .flat_map(|t| t.jumps.iter().map(|j| j.to.clone()))
            .collect();
        let again = explain(topo, source, packet, &Choice::Prefer(picked))?;
        if again.hops != walk.hops {
            let before = chosen(&walk);
            let after = chosen(&again);
            repredicted = Some(format!(
                "the kernel picked {after} where the first prediction followed {before}: walked again along it"
            ));
            walk = again;
        }
    }
    let agreements = compare(&walk, &traced);
    Ok((
        walk,
        ProbeReport {
            sent,
            traced,
            agreements,
            repredicted,
        },
    ))
}

/// The endpoints followed at random spreads, for the report.
fn chosen(w: &Walk) -> String {
    let v: Vec<String> = w
        .rules()
        .flat_map(|(_, r)| r.spreads.iter())
        .map(|s| {
            s.alternatives
                .iter()
                .find(|a| a.chain == s.chosen)
                .and_then(|a| a.dnat.map(|d| d.to_string()))
                .unwrap_or_else(|| s.chosen.clone())
        })
        .collect();
    v.join(", ")
}

/// The UDP ports of the topology's VXLAN devices (8472 when there are none).
fn vxlan_ports(topo: &Snapshot) -> Vec<u16> {
    let mut ports: BTreeSet<u16> = topo
        .views()
        .iter()
        .flat_map(|v| {
            v.links()
                .iter()
                .filter_map(|l| l.vxlan.as_ref().map(|x| x.port))
        })
        .collect();
    if ports.is_empty() {
        ports.insert(podnet_links::PORT_LINUX);
    }
    ports.into_iter().collect()
}

/// The nft match of the probe's own packet in the forward direction (not its replies, which
/// can carry the same TOS: an echo reply copies it).
fn forward_match(p: Proto) -> &'static str {
    match p {
        Proto::Icmp => "icmp type echo-request",
        Proto::Tcp => "tcp flags & (syn | ack) == syn",
        Proto::Udp => "meta l4proto udp",
    }
}

/// The same, on the inner packet behind a UDP header, `off` bytes after it (the inner IP
/// header, assumed without options, as the probe's is).
fn inner_match(p: Proto, off: u32) -> String {
    let bits = |byte: u32| byte * 8;
    let proto = format!("@th,{},8 {}", bits(off + 9), p.number());
    let fwd = match p {
        Proto::Icmp => format!("@th,{},8 8", bits(off + 20)),
        Proto::Tcp => format!("@th,{},8 & 0x12 == 0x2", bits(off + 20 + 13)),
        Proto::Udp => String::new(),
    };
    format!("@th,{},8 {TOS:#x} {proto} {fwd}", bits(off + 1))
}

/// The rules that set `meta nftrace` on the probe (`prefix`: `ether type ip ` for bridges).
fn trace_rules(packet: &Packet, vx_ports: &[u16], prefix: &str) -> String {
    let mut s = format!(
        "    {prefix}ip dscp {DSCP} {} meta nftrace set 1\n",
        forward_match(packet.proto)
    );
    for port in vx_ports {
        // UDP (8) + VXLAN (8) + Ethernet (14) before the inner IP header.
        s += &format!(
            "    {prefix}udp dport {port} {} meta nftrace set 1\n",
            inner_match(packet.proto, 30)
        );
    }
    // flannel's udp backend: the inner IP packet right behind the UDP header.
    s += &format!(
        "    {prefix}udp dport {FLANNEL_UDP_PORT} {} meta nftrace set 1\n",
        inner_match(packet.proto, 8)
    );
    s
}

/// The rule that marks the probe in the source namespace.
fn mark_rule(packet: &Packet) -> String {
    let what = match (packet.proto, packet.port) {
        (Proto::Icmp, _) => "icmp type echo-request".to_string(),
        (Proto::Tcp, Some(p)) => format!("tcp dport {p} tcp flags & (syn | ack) == syn"),
        (Proto::Udp, Some(p)) => format!("udp dport {p}"),
        (p, None) => format!("meta l4proto {p}"),
    };
    format!("    ip daddr {} {what} ip dscp set {DSCP}\n", packet.dst)
}

/// The ruleset of one namespace.
fn ruleset(table: &str, packet: &Packet, vx_ports: &[u16], source: bool) -> String {
    let inet_rules = trace_rules(packet, vx_ports, "");
    let bridge_rules = trace_rules(packet, vx_ports, "ether type ip ");
    let mark = if source {
        mark_rule(packet)
    } else {
        String::new()
    };
    let chain = |name: &str, hook: &str, prio: i32, body: &str| {
        format!(
            "  chain {name} {{\n    type filter hook {hook} priority {prio}; policy accept;\n{body}  }}\n"
        )
    };
    let mut s = format!("table inet {table} {{\n");
    s += &chain("t_pre", "prerouting", -400, &inet_rules);
    s += &chain("t_in", "input", -400, "");
    s += &chain("t_fwd", "forward", -400, "");
    s += &chain("t_out", "output", -400, &format!("{mark}{inet_rules}"));
    s += &chain("t_post", "postrouting", 400, "");
    s += "}\n";
    s += &format!("table bridge {table} {{\n");
    s += &chain("t_pre", "prerouting", -400, &bridge_rules);
    s += &chain("t_in", "input", -400, "");
    s += &chain("t_fwd", "forward", -400, "");
    s += &chain("t_out", "output", -400, "");
    s += "}\n";
    s
}

/// The temporary tables, removed on drop.
struct Tables {
    namespaces: Vec<(String, podnet_netns::NetNs)>,
    table: String,
}

fn nft(ns: &podnet_netns::NetNs, input: &str) -> Result<(), String> {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Tables {
    fn install(
        topo: &Snapshot,
        src: usize,
        table: &str,
        packet: &Packet,
        vx_ports: &[u16],
    ) -> Result<Tables, ExplainError> {
        let mut t = Tables {
            namespaces: Vec::new(),
            table: table.to_owned(),
        };
        for (i, v) in topo.views().iter().enumerate() {
            // A table left by an earlier run of this process goes first.
            let _ = nft(
                live(v)?,
                &format!(
                    "add table inet {table}\ndelete table inet {table}\n\
                     add table bridge {table}\ndelete table bridge {table}\n"
                ),
            );
            nft(live(v)?, &ruleset(table, packet, vx_ports, i == src))
                .map_err(|e| ExplainError::Probe(format!("{}: {e}", v.label)))?;
            t.namespaces.push((v.label.clone(), live(v)?.clone()));
        }
        Ok(t)
    }
}

impl Drop for Tables {
    fn drop(&mut self) {
        for (label, ns) in &self.namespaces {
            let cmd = format!(
                "delete table inet {t}\ndelete table bridge {t}\n",
                t = self.table
            );
            if let Err(e) = nft(ns, &cmd) {
                eprintln!("explain: removing the trace table in {label}: {e}");
            }
        }
    }
}

/// Sends the probe from the source namespace; what the sender saw, in words.
fn send(topo: &Snapshot, src: usize, packet: &Packet) -> Result<String, ExplainError> {
    let v = &topo.views()[src];
    let dst = packet.dst;
    let what = format!("{packet} from {}", v.label);
    let result = match (packet.proto, packet.port) {
        (Proto::Icmp, _) => {
            let out = live(v)?
                .command("ping")
                .args(["-n", "-c", "1", "-W", "1", &dst.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| ExplainError::Probe(format!("ping: {e}")))?;
            if out.success() {
                "answered".to_string()
            } else {
                "no answer".to_string()
            }
        }
        (Proto::Tcp, Some(port)) => {
            let to = SocketAddr::new(dst.into(), port);
            live(v)?
                .run(
                    move || match TcpStream::connect_timeout(&to, Duration::from_millis(500)) {
                        Ok(_) => "connected".to_string(),
                        Err(e) => format!("connect: {e}"),
                    },
                )
                .map_err(|e| ExplainError::Probe(e.to_string()))?
        }
        (Proto::Udp, Some(port)) => {
            let to = SocketAddr::new(dst.into(), port);
            live(v)?
                .run(move || {
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    s.send_to(b"podnet explain probe", to)
                })
                .map_err(|e| ExplainError::Probe(e.to_string()))?
                .map(|_| "sent".to_string())
                .map_err(|e| ExplainError::Probe(format!("udp send: {e}")))?
        }
        (p, None) => {
            return Err(ExplainError::Probe(format!("a {p} probe needs a port")));
        }
    };
    Ok(format!("{what}: {result}"))
}

/// One trace message.
#[derive(Debug, Clone, Default)]
struct Event {
    ns: usize,
    family: u8,
    table: String,
    chain: String,
    kind: u32,
    verdict: Option<i32>,
    target: Option<String>,
    policy: Option<u32>,
    id: Option<u32>,
    iif: Option<u32>,
    oif: Option<u32>,
    net: Vec<u8>,
}

impl Event {
    /// The probe's own packet (not an outer, encapsulating one).
    fn inner(&self) -> bool {
        self.net.len() > 1 && self.net[0] >> 4 == 4 && self.net[1] == TOS
    }
}

/// Reads trace messages until none came for a while.
fn collect(listeners: &[Connection]) -> Vec<Event> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut events = Vec::new();
    loop {
        let mut got = false;
        for (i, conn) in listeners.iter().enumerate() {
            while let Ok((buf, _)) = conn.socket().recv_from_full() {
                got = true;
                parse_messages(&buf, i, &mut events);
            }
        }
        if got {
            last = Instant::now();
        }
        let quiet = last.elapsed() > Duration::from_millis(400);
        if (quiet && start.elapsed() > Duration::from_millis(600))
            || start.elapsed() > Duration::from_secs(5)
        {
            fill_packet_info(&mut events);
            return events;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The kernel sends the packet's devices and headers with the first message of each chain
/// evaluation only; the later ones carry the same trace id.
fn fill_packet_info(events: &mut [Event]) {
    /// Input device, output device, network header.
    type PacketInfo = (Option<u32>, Option<u32>, Vec<u8>);
    let mut last: BTreeMap<(usize, u32), PacketInfo> = BTreeMap::new();
    for e in events.iter_mut() {
        let Some(id) = e.id else { continue };
        if e.net.is_empty() && e.iif.is_none() && e.oif.is_none() {
            if let Some((iif, oif, net)) = last.get(&(e.ns, id)) {
                e.iif = *iif;
                e.oif = *oif;
                e.net = net.clone();
            }
        } else {
            last.insert((e.ns, id), (e.iif, e.oif, e.net.clone()));
        }
    }
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Netlink attributes: (type without flags, payload), up to the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    nlattr::attrs(b).map_while(Result::ok)
}

/// The trace events of one datagram, with their packet information filled in as the probe
/// does (for the fuzz targets).
pub(crate) fn parse_datagram(buf: &[u8]) -> usize {
    let mut events = Vec::new();
    parse_messages(buf, 0, &mut events);
    fill_packet_info(&mut events);
    events.iter().filter(|e| e.inner()).count()
}

/// Splits a datagram into netlink messages and keeps the nftables trace messages.
fn parse_messages(buf: &[u8], ns: usize, out: &mut Vec<Event>) {
    for (hdr, body) in nlattr::messages(buf).map_while(Result::ok) {
        if hdr.message_type == NFT_TRACE_MSG && body.len() >= 4 {
            if let Some(e) = parse_trace(body, ns) {
                out.push(e);
            }
        }
    }
}

/// One NFT_MSG_TRACE body: nfgenmsg, then NFTA_TRACE_* attributes.
fn parse_trace(body: &[u8], ns: usize) -> Option<Event> {
    let mut e = Event {
        ns,
        family: *body.first()?,
        ..Event::default()
    };
    for (kind, v) in attrs(body.get(4..)?) {
        match kind {
            1 => e.table = nlattr::cstr(v),
            2 => e.chain = nlattr::cstr(v),
            4 => e.kind = be32(v)?,
            5 => {
                for (k, x) in attrs(v) {
                    match k {
                        1 => e.verdict = be32(x).map(|c| c as i32),
                        2 => e.target = Some(nlattr::cstr(x)),
                        _ => {}
                    }
                }
            }
            6 => e.id = be32(v),
            8 => e.net = v.to_vec(),
            10 => e.iif = be32(v),
            12 => e.oif = be32(v),
            16 => e.policy = be32(v),
            _ => {}
        }
    }
    Some(e)
}

/// What the trace saw, per namespace.
fn summarize(topo: &Snapshot, table: &str, events: &[Event]) -> Vec<TracedNs> {
    let mut per: BTreeMap<usize, (BTreeSet<Checkpoint>, Vec<Jump>)> = BTreeMap::new();
    for e in events {
        let v = &topo.views()[e.ns];
        let name = |i: Option<u32>| i.map(|i| v.dev_name(i)).unwrap_or_default();
        let entry = per.entry(e.ns).or_default();
        if e.table == table {
            let hook = e.chain.trim_start_matches("t_");
            let dev = match hook {
                "pre" | "in" => name(e.iif),
                "out" | "post" => name(e.oif),
                _ => format!("{}>{}", name(e.iif), name(e.oif)),
            };
            let family = match e.family {
                NFPROTO_BRIDGE => "bridge",
                _ => "inet",
            };
            entry.0.insert(Checkpoint {
                ns: v.label.clone(),
                family: family.into(),
                hook: hook.into(),
                dev,
                inner: e.inner(),
            });
            continue;
        }
        if !matches!(e.family, NFPROTO_INET | NFPROTO_IPV4) || !e.inner() {
            continue;
        }
        let jump = match (e.kind, e.verdict, &e.target) {
            (NFT_TRACETYPE_RULE, Some(NFT_JUMP | NFT_GOTO), Some(t)) => Some(t.clone()),
            (NFT_TRACETYPE_RULE, Some(NF_DROP), _) => Some("DROP".to_string()),
            (NFT_TRACETYPE_POLICY, _, _) if e.policy == Some(NF_DROP as u32) => {
                Some("DROP".to_string())
            }
            _ => None,
        };
        if let Some(to) = jump {
            entry.1.push(Jump {
                table: e.table.clone(),
                from: e.chain.clone(),
                to,
            });
        }
    }
    per.into_iter()
        .map(|(i, (cps, jumps))| TracedNs {
            ns: topo.views()[i].label.clone(),
            checkpoints: cps.into_iter().collect(),
            jumps,
        })
        .collect()
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn jump_text(j: &Jump) -> String {
    format!("{} {}>{}", j.table, j.from, j.to)
}

/// Compares the walk with the trace, namespace by namespace.
fn compare(walk: &Walk, traced: &[TracedNs]) -> Vec<Agreement> {
    let mut order: Vec<String> = Vec::new();
    for c in &walk.checkpoints {
        if !order.contains(&c.ns) {
            order.push(c.ns.clone());
        }
    }
    for t in traced {
        if !order.contains(&t.ns) {
            order.push(t.ns.clone());
        }
    }
    let mut out = Vec::new();
    for ns in order {
        let predicted: BTreeSet<Checkpoint> = walk
            .checkpoints
            .iter()
            .filter(|c| c.ns == ns)
            .cloned()
            .collect();
        let t = traced.iter().find(|t| t.ns == ns);
        let seen: BTreeSet<Checkpoint> = t
            .map(|t| t.checkpoints.iter().cloned().collect())
            .unwrap_or_default();
        match (predicted.is_empty(), seen.is_empty()) {
            (false, true) => {
                out.push(Agreement {
                    ns: ns.clone(),
                    what: format!(
                        "predicted here ({}), but the trace never saw the probe here",
                        list(&predicted.iter().collect::<Vec<_>>())
                    ),
                    agrees: false,
                });
                continue;
            }
            (true, false) => {
                out.push(Agreement {
                    ns: ns.clone(),
                    what: format!(
                        "not predicted here, but the trace saw the probe: {}",
                        list(&seen.iter().collect::<Vec<_>>())
                    ),
                    agrees: false,
                });
                continue;
            }
            _ => {}
        }
        let missing: Vec<&Checkpoint> = predicted.difference(&seen).collect();
        let extra: Vec<&Checkpoint> = seen.difference(&predicted).collect();
        if missing.is_empty() && extra.is_empty() {
            out.push(Agreement {
                ns: ns.clone(),
                what: format!(
                    "hooks and devices: {}",
                    list(&predicted.iter().collect::<Vec<_>>())
                ),
                agrees: true,
            });
        } else {
            out.push(Agreement {
                ns: ns.clone(),
                what: format!(
                    "hooks and devices: predicted but not traced: {}; traced but not predicted: {}",
                    list(&missing),
                    list(&extra)
                ),
                agrees: false,
            });
        }
        let mut p: Vec<String> = walk
            .jumps
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, j)| jump_text(j))
            .collect();
        let mut s: Vec<String> = t
            .map(|t| t.jumps.iter().map(jump_text).collect())
            .unwrap_or_default();
        if p.is_empty() && s.is_empty() {
            continue;
        }
        p.sort();
        s.sort();
        if p == s {
            out.push(Agreement {
                ns: ns.clone(),
                what: format!("iptables chains: {}", p.join(", ")),
                agrees: true,
            });
        } else {
            let pm: Vec<&String> = p.iter().filter(|x| !s.contains(x)).collect();
            let sm: Vec<&String> = s.iter().filter(|x| !p.contains(x)).collect();
            out.push(Agreement {
                ns: ns.clone(),
                what: format!(
                    "iptables chains: predicted but not traced: {}; traced but not predicted: {}",
                    list(&pm),
                    list(&sm)
                ),
                agrees: false,
            });
        }
    }
    out
}

/// The live namespace of a view: the probe sends real packets, so a recording cannot serve.
fn live(v: &super::view::NsView) -> Result<&podnet_netns::NetNs, ExplainError> {
    v.netns().ok_or_else(|| {
        ExplainError::Probe(format!(
            "{} is recorded, not live: the probe needs the cluster itself",
            v.label
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_marks_and_traces_the_probe() {
        let p = Packet::new(Proto::Tcp, Ipv4Addr::new(10, 96, 0, 10)).port(80);
        let r = ruleset("podnet_explain_1", &p, &[8472], true);
        assert!(r.contains(
            "ip daddr 10.96.0.10 tcp dport 80 tcp flags & (syn | ack) == syn ip dscp set 13"
        ));
        assert!(r.contains("ip dscp 13 tcp flags & (syn | ack) == syn meta nftrace set 1"));
        assert!(r.contains(
            "udp dport 8472 @th,248,8 0x34 @th,312,8 6 @th,504,8 & 0x12 == 0x2 meta nftrace set 1"
        ));
        assert!(r.contains("udp dport 8285 @th,72,8 0x34 @th,136,8 6 @th,328,8 & 0x12 == 0x2"));
        assert!(r.contains("table bridge podnet_explain_1"));
        let other = ruleset("podnet_explain_1", &p, &[8472], false);
        assert!(!other.contains("dscp set"));
    }

    #[test]
    fn trace_messages_parse_and_garbage_does_not_panic() {
        // nlmsghdr + nfgenmsg(bridge) + TABLE "t" + CHAIN "t_pre" + TYPE rule + IIF 5.
        let mut attrs = Vec::new();
        let mut put = |kind: u16, v: &[u8]| {
            let len = 4 + v.len();
            attrs.extend_from_slice(&(len as u16).to_ne_bytes());
            attrs.extend_from_slice(&kind.to_ne_bytes());
            attrs.extend_from_slice(v);
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
        };
        put(1, b"t\0");
        put(2, b"t_pre\0");
        put(4, &3u32.to_be_bytes());
        put(10, &5u32.to_be_bytes());
        put(8, &[0x45, TOS, 0, 84]);
        let mut msg = Vec::new();
        let len = 16 + 4 + attrs.len();
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&NFT_TRACE_MSG.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&[NFPROTO_BRIDGE, 0, 0, 0]);
        msg.extend_from_slice(&attrs);
        let mut out = Vec::new();
        parse_messages(&msg, 3, &mut out);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!((e.table.as_str(), e.chain.as_str()), ("t", "t_pre"));
        assert_eq!(
            (e.kind, e.iif, e.family, e.ns),
            (3, Some(5), NFPROTO_BRIDGE, 3)
        );
        assert!(e.inner());
        for cut in 0..msg.len() {
            let mut out = Vec::new();
            parse_messages(&msg[..cut], 0, &mut out);
            let mut bad = msg.clone();
            bad[cut] = 0xff;
            parse_messages(&bad, 0, &mut out);
        }
    }
}
