//! Conntrack over netlink: list flows and delete stale ones, inside a network namespace.
//!
//! When a UDP endpoint goes away, its conntrack entries keep steering a client's packets to it
//! (UDP has no connection to close). kube-proxy deletes them after every sync; [`stale_udp`]
//! is the same filter: a UDP flow to a service address whose DNAT target is no longer a serving
//! endpoint of that service port.
//!
//! Dumps go through podnet-links' [`Connection`], which restarts a dump the kernel marks
//! `NLM_F_DUMP_INTR`. A [`FlowSelector`] says what the kernel can filter by
//! ([`DumpFilter`]: the address family and the transport protocol, kernel 5.8 and later), so a
//! sync that looks for stale UDP flows never copies the TCP flows of a busy node to userspace;
//! the selector's own test is applied again to what arrives (an older kernel ignores the filter).

use crate::iptables::Protocol;
use crate::kube::{ClusterState, IpFamily, categorize_endpoints};
use crate::nftables::precheck::Checked;
use netlink_packet_core::{DefaultNla, NLM_F_DUMP};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use podnet_links::netlink::{Connection, NetlinkError};
// NLA_F_NESTED: the kernel parses `CTA_FILTER` strictly and wants the flag.
use podnet_links::nlattr::{AttrWriter, NLA_F_NESTED};
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};

/// `IPCTNL_MSG_CT_GET`.
const IPCTNL_MSG_CT_GET: u8 = 1;
/// `CTA_TUPLE_ORIG` (nested).
const CTA_TUPLE_ORIG: u16 = 1;
/// `CTA_TUPLE_PROTO` (nested, inside a tuple).
const CTA_TUPLE_PROTO: u16 = 2;
/// `CTA_PROTO_NUM` (u8, inside `CTA_TUPLE_PROTO`).
const CTA_PROTO_NUM: u16 = 1;
/// `CTA_FILTER` (nested): which fields of the tuples in the same request filter a dump.
const CTA_FILTER: u16 = 25;
/// `CTA_FILTER_ORIG_FLAGS` (u32): the original-tuple fields that must match.
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
/// `CTA_FILTER_F_CTA_PROTO_NUM`: the transport protocol number.
const CTA_FILTER_F_PROTO_NUM: u32 = 1 << 3;

/// Errors of conntrack operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConntrackError {
    /// The socket could not be made or used.
    #[error("conntrack netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel refused a request.
    #[error("conntrack {op}: {source}")]
    Kernel {
        /// What was asked.
        op: &'static str,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// A message from the kernel did not decode.
    #[error("conntrack message did not decode: {0}")]
    Decode(String),
    /// A dump was interrupted by concurrent changes more often than it was retried.
    #[error("conntrack {op}: {source}")]
    Netlink {
        /// What was asked.
        op: &'static str,
        /// What went wrong.
        #[source]
        source: NetlinkError,
    },
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
}

impl ConntrackError {
    fn from_netlink(op: &'static str, e: NetlinkError) -> ConntrackError {
        match e {
            NetlinkError::Kernel(k) => ConntrackError::Kernel {
                op,
                source: io::Error::from_raw_os_error(k.errno),
            },
            NetlinkError::Io(e) => ConntrackError::Io(e),
            NetlinkError::Decode(m) => ConntrackError::Decode(m),
            NetlinkError::Netns(e) => ConntrackError::Netns(e),
            other => ConntrackError::Netlink { op, source: other },
        }
    }
}

/// One conntrack entry: the original and the reply tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The transport protocol (TCP, UDP or SCTP; others are not listed).
    pub protocol: Protocol,
    /// Original direction source.
    pub orig_src: SocketAddr,
    /// Original direction destination (a service address before DNAT).
    pub orig_dst: SocketAddr,
    /// Reply direction source (the endpoint after DNAT).
    pub reply_src: SocketAddr,
    /// Reply direction destination.
    pub reply_dst: SocketAddr,
}

/// What the kernel filters a dump by, so that only matching flows cross the socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DumpFilter {
    /// Only flows of this transport protocol (original direction).
    pub protocol: Option<Protocol>,
}

impl DumpFilter {
    /// Every flow of the family.
    pub const ALL: DumpFilter = DumpFilter { protocol: None };

    /// Only flows of `protocol`.
    pub fn protocol(protocol: Protocol) -> DumpFilter {
        DumpFilter {
            protocol: Some(protocol),
        }
    }

    /// The dump request: a conntrack GET whose attributes ask the kernel for this filter.
    ///
    /// Built from raw attributes because netlink-packet-netfilter 0.4 sets `NLA_F_NESTED` only
    /// on the attributes it knows, and the kernel parses `CTA_FILTER` strictly.
    fn request(&self) -> ConntrackMessage {
        let Some(p) = self.protocol else {
            return ConntrackMessage::Get(Vec::new());
        };
        let mut tuple = AttrWriter::new();
        tuple.nested(CTA_TUPLE_PROTO, |w| {
            w.bytes(CTA_PROTO_NUM, &[ct_proto(p).into()])
        });
        let mut filter = AttrWriter::new();
        filter.u32_ne(CTA_FILTER_ORIG_FLAGS, CTA_FILTER_F_PROTO_NUM);
        ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET,
            attributes: vec![
                DefaultNla::new(CTA_TUPLE_ORIG | NLA_F_NESTED, tuple.into_bytes()),
                DefaultNla::new(CTA_FILTER | NLA_F_NESTED, filter.into_bytes()),
            ],
        }
    }
}

/// Chooses flows: what the kernel can filter by, and the exact test.
///
/// Any `Fn(&Flow) -> bool` is a selector that the kernel cannot help (it reads every flow of
/// the family); [`stale_udp`] returns one that has the kernel send UDP flows only.
pub trait FlowSelector {
    /// What the kernel can filter by before the flows reach [`selects`](Self::selects).
    fn dump_filter(&self) -> DumpFilter {
        DumpFilter::ALL
    }
    /// `true` for a flow this selector chooses.
    fn selects(&self, flow: &Flow) -> bool;
}

impl<F: Fn(&Flow) -> bool> FlowSelector for F {
    fn selects(&self, flow: &Flow) -> bool {
        self(flow)
    }
}

/// A netlink conntrack socket bound to one network namespace.
#[derive(Debug)]
pub struct Conntrack {
    conn: Connection,
    received: u64,
}

fn family_of(f: IpFamily) -> NetfilterProtoFamily {
    match f {
        IpFamily::V4 => NetfilterProtoFamily::IPv4,
        IpFamily::V6 => NetfilterProtoFamily::IPv6,
    }
}

fn tuple_parts(tuples: &[Tuple]) -> Option<(Protocol, SocketAddr, SocketAddr)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for t in tuples {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(CtProtocol::Tcp) => proto = Some(Protocol::Tcp),
                        ProtoTuple::Protocol(CtProtocol::Udp) => proto = Some(Protocol::Udp),
                        ProtoTuple::Protocol(CtProtocol::Sctp) => proto = Some(Protocol::Sctp),
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        proto?,
        SocketAddr::new(src?, sport?),
        SocketAddr::new(dst?, dport?),
    ))
}

fn ct_proto(p: Protocol) -> CtProtocol {
    match p {
        Protocol::Tcp => CtProtocol::Tcp,
        Protocol::Udp => CtProtocol::Udp,
        Protocol::Sctp => CtProtocol::Sctp,
    }
}

/// The flow a conntrack message describes, if it is a TCP, UDP or SCTP flow.
fn flow_of(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let mut orig = None;
    let mut reply = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = tuple_parts(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple_parts(t),
            _ => {}
        }
    }
    let ((protocol, orig_src, orig_dst), (_, reply_src, reply_dst)) = (orig?, reply?);
    Some(Flow {
        protocol,
        orig_src,
        orig_dst,
        reply_src,
        reply_dst,
    })
}

/// Reads one datagram of the reply to conntrack dump request `seq` into the flows
/// [`Conntrack::list`] returns. Public (hidden) for the fuzz targets: malformed bytes are an
/// error, never a panic.
#[doc(hidden)]
pub fn parse_dump_datagram(buf: &[u8], seq: u32) -> Result<Vec<Flow>, ConntrackError> {
    let reply = podnet_links::netlink::parse_reply::<Checked>(buf, seq)
        .map_err(|e| ConntrackError::from_netlink("dump", e))?;
    Ok(reply
        .replies
        .iter()
        .filter_map(|Checked(m)| match &m.inner {
            NetfilterMessageInner::Conntrack(
                ConntrackMessage::New(attrs) | ConntrackMessage::Get(attrs),
            ) => flow_of(attrs),
            _ => None,
        })
        .collect())
}

impl Conntrack {
    /// A conntrack socket inside `ns` (it stays bound to that namespace; the caller's thread
    /// does not change namespace).
    pub fn in_ns(ns: &NetNs) -> Result<Conntrack, ConntrackError> {
        let conn = Connection::new_in(ns, NETLINK_NETFILTER)
            .map_err(|e| ConntrackError::from_netlink("open", e))?;
        Ok(Conntrack { conn, received: 0 })
    }

    fn request(
        &mut self,
        msg: ConntrackMessage,
        family: IpFamily,
        flags: u16,
        op: &'static str,
    ) -> Result<Vec<NetfilterMessage>, ConntrackError> {
        let nf = NetfilterMessage::new(NetfilterHeader::new(family_of(family), 0, 0), msg);
        // Checked: netlink-packet-netfilter 0.4 can panic on some malformed messages.
        self.conn
            .request(Checked(nf), flags)
            .map(|replies| replies.into_iter().map(|Checked(m)| m).collect())
            .map_err(|e| ConntrackError::from_netlink(op, e))
    }

    /// How many conntrack entries the kernel has sent this socket in dumps so far (what the
    /// kernel's filtering saves shows here).
    pub fn entries_received(&self) -> u64 {
        self.received
    }

    /// Lists the flows of `family`.
    pub fn list(&mut self, family: IpFamily) -> Result<Vec<Flow>, ConntrackError> {
        self.list_filtered(family, &DumpFilter::ALL)
    }

    /// Lists the flows of `family` that the kernel's `filter` lets through. A kernel older than
    /// 5.8 ignores the protocol filter: check [`Flow::protocol`] when it matters.
    pub fn list_filtered(
        &mut self,
        family: IpFamily,
        filter: &DumpFilter,
    ) -> Result<Vec<Flow>, ConntrackError> {
        let replies = self.request(filter.request(), family, NLM_F_DUMP, "dump")?;
        let mut flows = Vec::with_capacity(replies.len());
        for m in replies {
            if let NetfilterMessageInner::Conntrack(
                ConntrackMessage::New(attrs) | ConntrackMessage::Get(attrs),
            ) = &m.inner
            {
                self.received += 1;
                flows.extend(flow_of(attrs));
            }
        }
        Ok(flows)
    }

    /// Deletes one flow, named by its original tuple. A flow that is already gone is not an
    /// error (idempotent).
    pub fn del(&mut self, flow: &Flow) -> Result<(), ConntrackError> {
        let family = IpFamily::of(&flow.orig_src.ip());
        let tuple = vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(flow.orig_src.ip()),
                IPTuple::DestinationAddress(flow.orig_dst.ip()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(ct_proto(flow.protocol)),
                ProtoTuple::SourcePort(flow.orig_src.port()),
                ProtoTuple::DestinationPort(flow.orig_dst.port()),
            ]),
        ];
        let msg = ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(tuple)]);
        match self.request(msg, family, 0, "delete") {
            Err(ConntrackError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Deletes every flow of `family` that `selector` selects; returns how many. Only the
    /// flows its [`FlowSelector::dump_filter`] lets through are read from the kernel.
    pub fn del_matching(
        &mut self,
        family: IpFamily,
        selector: impl FlowSelector,
    ) -> Result<usize, ConntrackError> {
        let flows = self.list_filtered(family, &selector.dump_filter())?;
        let mut n = 0;
        for f in flows.iter().filter(|f| selector.selects(f)) {
            self.del(f)?;
            n += 1;
        }
        Ok(n)
    }
}

/// The earlier names, kept for callers. Not yet `#[deprecated]`: the syncers (other areas'
/// files) still call `open_in` and `delete_matching`.
impl Conntrack {
    #[doc(hidden)]
    pub fn open_in(ns: &NetNs) -> Result<Conntrack, ConntrackError> {
        Conntrack::in_ns(ns)
    }

    #[deprecated(note = "use del")]
    #[doc(hidden)]
    pub fn delete(&mut self, flow: &Flow) -> Result<(), ConntrackError> {
        self.del(flow)
    }

    #[doc(hidden)]
    pub fn delete_matching(
        &mut self,
        family: IpFamily,
        selector: impl FlowSelector,
    ) -> Result<usize, ConntrackError> {
        self.del_matching(family, selector)
    }
}

/// kube-proxy's stale-UDP filter for `state` on `node`: a UDP flow whose original destination
/// is a UDP service address (cluster IP, external IP, load-balancer IP, or a node port on any
/// address) and whose reply source is not one of that port's usable endpoints. The kernel
/// sends only UDP flows to it.
pub fn stale_udp(state: &ClusterState, node: &str) -> StaleUdp {
    let mut by_addr: BTreeMap<SocketAddr, BTreeSet<IpAddr>> = BTreeMap::new();
    let mut by_nodeport: BTreeMap<u16, BTreeSet<IpAddr>> = BTreeMap::new();
    for (spn, svc) in &state.services {
        if svc.protocol() != Protocol::Udp {
            continue;
        }
        let eps = state.endpoints_of(spn);
        let cat = categorize_endpoints(eps, svc, node);
        let serving: BTreeSet<IpAddr> = cat.all_reachable.iter().map(|e| e.ip()).collect();
        let ips = std::iter::once(svc.cluster_ip)
            .chain(svc.external_ips.iter().copied())
            .chain(svc.load_balancer_vips.iter().copied());
        for ip in ips {
            by_addr
                .entry(SocketAddr::new(ip, svc.port))
                .or_default()
                .extend(serving.iter().copied());
        }
        if let Some(np) = svc.node_port {
            by_nodeport
                .entry(np)
                .or_default()
                .extend(serving.iter().copied());
        }
    }
    StaleUdp {
        by_addr,
        by_nodeport,
    }
}

/// The selector [`stale_udp`] returns.
#[derive(Debug, Clone)]
pub struct StaleUdp {
    by_addr: BTreeMap<SocketAddr, BTreeSet<IpAddr>>,
    by_nodeport: BTreeMap<u16, BTreeSet<IpAddr>>,
}

impl FlowSelector for StaleUdp {
    fn dump_filter(&self) -> DumpFilter {
        DumpFilter::protocol(Protocol::Udp)
    }

    fn selects(&self, f: &Flow) -> bool {
        if f.protocol != Protocol::Udp {
            return false;
        }
        if let Some(eps) = self.by_addr.get(&f.orig_dst) {
            return !eps.contains(&f.reply_src.ip());
        }
        if let Some(eps) = self.by_nodeport.get(&f.orig_dst.port()) {
            return !eps.contains(&f.reply_src.ip());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    /// A datagram on the conntrack socket holding an nftables set message whose
    /// NFTA_SET_EXPR is not one attribute: found by the `conntrack` fuzz target,
    /// netlink-packet-netfilter 0.4 panicked decoding it (it decodes every subsystem's
    /// messages). Now a decode error.
    #[test]
    fn a_malformed_message_of_another_subsystem_is_an_error_not_a_panic() {
        let mut body = vec![2u8, 0, 0, 0];
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&17u16.to_ne_bytes()); // NFTA_SET_EXPR
        body.extend_from_slice(&[1, 0, 0, 0]); // an attribute of length 1
        let mut buf = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        buf.extend_from_slice(&((10u16 << 8) | 9).to_ne_bytes()); // NFT_MSG_NEWSET
        buf.extend_from_slice(&2u16.to_ne_bytes());
        buf.extend_from_slice(&5u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&body);
        assert!(matches!(
            parse_dump_datagram(&buf, 5),
            Err(ConntrackError::Decode(_))
        ));
    }

    #[test]
    fn a_protocol_filter_asks_the_kernel_with_nested_attributes() {
        let msg = DumpFilter::protocol(Protocol::Udp).request();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let ne = |v: u16| v.to_ne_bytes();
        let mut want = Vec::new();
        // CTA_TUPLE_ORIG | NLA_F_NESTED { CTA_TUPLE_PROTO | NLA_F_NESTED { CTA_PROTO_NUM 17 } }
        want.extend([ne(16), ne(0x8001), ne(12), ne(0x8002), ne(5), ne(1)].concat());
        want.extend([17, 0, 0, 0]);
        // CTA_FILTER | NLA_F_NESTED { CTA_FILTER_ORIG_FLAGS = CTA_FILTER_F_CTA_PROTO_NUM }
        want.extend([ne(12), ne(0x8019), ne(8), ne(1)].concat());
        want.extend(8u32.to_ne_bytes());
        assert_eq!(buf, want);
        assert_eq!(
            msg.message_type(),
            ConntrackMessage::Get(vec![]).message_type()
        );
        // No filter: a plain dump request.
        assert_eq!(DumpFilter::ALL.request(), ConntrackMessage::Get(vec![]));
    }

    #[test]
    fn stale_udp_has_the_kernel_send_udp_only() {
        let state = ClusterState::default();
        let sel = stale_udp(&state, "node1");
        assert_eq!(sel.dump_filter(), DumpFilter::protocol(Protocol::Udp));
        let closure = |_: &Flow| true;
        assert_eq!(closure.dump_filter(), DumpFilter::ALL);
    }
}
