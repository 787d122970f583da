//! Conntrack over netlink: list flows and delete stale ones, inside a network namespace.
//!
//! When a UDP endpoint goes away, its conntrack entries keep steering a client's packets to it
//! (UDP has no connection to close). kube-proxy deletes them after every sync; [`stale_udp`]
//! is the same filter: a UDP flow to a service address whose DNAT target is no longer a serving
//! endpoint of that service port.

use crate::iptables::Protocol;
use crate::kube::{ClusterState, IpFamily, categorize_endpoints};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol as CtProtocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_NETFILTER};
use podnet_netns::NetNs;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};

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
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
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

/// A netlink conntrack socket bound to one network namespace.
#[derive(Debug)]
pub struct Conntrack {
    socket: Socket,
    seq: u32,
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

impl Conntrack {
    /// Opens a conntrack socket inside `ns` (it stays bound to that namespace).
    pub fn open_in(ns: &NetNs) -> Result<Conntrack, ConntrackError> {
        let socket = ns.run(|| -> io::Result<Socket> {
            let mut s = Socket::new(NETLINK_NETFILTER)?;
            s.bind_auto()?;
            s.connect(&NlAddr::new(0, 0))?;
            Ok(s)
        })??;
        Ok(Conntrack { socket, seq: 1 })
    }

    fn send(
        &mut self,
        msg: ConntrackMessage,
        family: IpFamily,
        flags: u16,
    ) -> Result<u32, ConntrackError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let nf = NetfilterMessage::new(NetfilterHeader::new(family_of(family), 0, 0), msg);
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(nf));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Receives until the end of a dump (or the ACK of a request), handing each conntrack
    /// message to `each`.
    fn receive(
        &mut self,
        seq: u32,
        op: &'static str,
        mut each: impl FnMut(&[ConntrackAttribute]),
    ) -> Result<(), ConntrackError> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[off..n])
                    .map_err(|e| ConntrackError::Decode(e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(ConntrackError::Decode("zero-length netlink message".into()));
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(ConntrackError::Kernel {
                                op,
                                source: e.to_io(),
                            }),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        if let NetfilterMessageInner::Conntrack(
                            ConntrackMessage::New(attrs) | ConntrackMessage::Get(attrs),
                        ) = &m.inner
                        {
                            each(attrs);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Lists the flows of `family`.
    pub fn list(&mut self, family: IpFamily) -> Result<Vec<Flow>, ConntrackError> {
        let seq = self.send(
            ConntrackMessage::Get(vec![]),
            family,
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        let mut flows = Vec::new();
        self.receive(seq, "dump", |attrs| {
            let mut orig = None;
            let mut reply = None;
            for a in attrs {
                match a {
                    ConntrackAttribute::CtaTupleOrig(t) => orig = tuple_parts(t),
                    ConntrackAttribute::CtaTupleReply(t) => reply = tuple_parts(t),
                    _ => {}
                }
            }
            if let (Some((p, os, od)), Some((_, rs, rd))) = (orig, reply) {
                flows.push(Flow {
                    protocol: p,
                    orig_src: os,
                    orig_dst: od,
                    reply_src: rs,
                    reply_dst: rd,
                });
            }
        })?;
        Ok(flows)
    }

    /// Deletes one flow, named by its original tuple. A flow that is already gone is not an
    /// error.
    pub fn delete(&mut self, flow: &Flow) -> Result<(), ConntrackError> {
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
        let seq = self.send(msg, family, NLM_F_REQUEST | NLM_F_ACK)?;
        match self.receive(seq, "delete", |_| {}) {
            Err(ConntrackError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Deletes every flow of `family` that `stale` selects; returns how many.
    pub fn delete_matching(
        &mut self,
        family: IpFamily,
        stale: impl Fn(&Flow) -> bool,
    ) -> Result<usize, ConntrackError> {
        let flows = self.list(family)?;
        let mut n = 0;
        for f in flows.iter().filter(|f| stale(f)) {
            self.delete(f)?;
            n += 1;
        }
        Ok(n)
    }
}

/// kube-proxy's stale-UDP filter for `state` on `node`: a UDP flow whose original destination
/// is a UDP service address (cluster IP, external IP, load-balancer IP, or a node port on any
/// address) and whose reply source is not one of that port's usable endpoints.
pub fn stale_udp(state: &ClusterState, node: &str) -> impl Fn(&Flow) -> bool + use<> {
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
    move |f: &Flow| {
        if f.protocol != Protocol::Udp {
            return false;
        }
        if let Some(eps) = by_addr.get(&f.orig_dst) {
            return !eps.contains(&f.reply_src.ip());
        }
        if let Some(eps) = by_nodeport.get(&f.orig_dst.port()) {
            return !eps.contains(&f.reply_src.ip());
        }
        false
    }
}
