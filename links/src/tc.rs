//! Traffic control: queueing disciplines (tbf, htb, ingress, clsact) and a u32 filter with a
//! mirred redirect, like `tc qdisc` and `tc filter`. Enough to do what the CNI `bandwidth`
//! plugin does: shape a pod's egress with tbf on its host veth, and its ingress by redirecting
//! the veth's ingress to an ifb device shaped with tbf.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::nlattr::{AttrWriter, attrs};
use crate::types::LinkRef;
use netlink_packet_core::{
    DefaultNla, Emitable, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, Nla,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use std::fmt;
use std::time::Duration;

const TCA_OPTIONS: u16 = 2;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_DIRECT_QLEN: u16 = 6;
/// ETH_P_ALL in network byte order, as tcm_info's low half wants it.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
/// struct tc_ratespec's linklayer: Ethernet (the kernel then needs no rate table).
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// The kernel's packet scheduler ticks are 64 ns (PSCHED_SHIFT 6).
const PSCHED_SHIFT: u32 = 6;

/// A qdisc or class id, `MAJOR:MINOR` in hex (`1:`, `ffff:`, `1:10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcId {
    /// The major number (the qdisc).
    pub major: u16,
    /// The minor number (the class; 0 for a qdisc).
    pub minor: u16,
}

impl TcId {
    /// `root`: the device's egress root.
    pub const ROOT: TcId = TcId::new(0xffff, 0xffff);
    /// The parent of the `ingress` and `clsact` qdiscs (TC_H_INGRESS).
    pub const INGRESS_PARENT: TcId = TcId::new(0xffff, 0xfff1);
    /// The handle of the `ingress` and `clsact` qdiscs, `ffff:`: the parent of ingress filters.
    pub const INGRESS: TcId = TcId::new(0xffff, 0);
    /// clsact's ingress hook, `ffff:fff2`, as a filter parent.
    pub const CLSACT_INGRESS: TcId = TcId::new(0xffff, 0xfff2);
    /// clsact's egress hook, `ffff:fff3`, as a filter parent.
    pub const CLSACT_EGRESS: TcId = TcId::new(0xffff, 0xfff3);

    /// `MAJOR:MINOR`.
    pub const fn new(major: u16, minor: u16) -> TcId {
        TcId { major, minor }
    }

    fn to_nl(self) -> TcHandle {
        TcHandle {
            major: self.major,
            minor: self.minor,
        }
    }

    fn from_nl(h: TcHandle) -> TcId {
        TcId::new(h.major, h.minor)
    }
}

impl fmt::Display for TcId {
    /// As `tc` prints it: `root`, `ingress`, `1:`, `1:10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TcId::ROOT => f.write_str("root"),
            TcId::INGRESS_PARENT => f.write_str("ingress"),
            TcId { major, minor: 0 } => write!(f, "{major:x}:"),
            TcId { major, minor } => write!(f, "{major:x}:{minor:x}"),
        }
    }
}

/// A token bucket filter: `tc qdisc add dev DEV root tbf rate R burst B limit L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate, bits per second.
    pub rate: u64,
    /// Bucket size, bytes (`burst`).
    pub burst: u32,
    /// Bytes that may wait in the queue (`limit`).
    pub limit: u32,
}

impl Tbf {
    /// `rate RATE burst BURST latency LATENCY`: the limit is what the rate sends in `latency`
    /// plus the burst, as `tc` computes it (and the CNI `bandwidth` plugin, with 25 ms).
    pub fn new(rate_bits: u64, burst: u32, latency: Duration) -> Tbf {
        let in_latency = u128::from(rate_bits / 8) * latency.as_micros() / 1_000_000;
        let limit = u32::try_from(in_latency)
            .unwrap_or(u32::MAX)
            .saturating_add(burst);
        Tbf {
            rate: rate_bits,
            burst,
            limit,
        }
    }

    fn check(&self) -> Result<()> {
        if self.rate < 8 || self.burst == 0 || self.limit == 0 {
            return Err(Error::InvalidArgument {
                what: "tbf".into(),
                reason: format!(
                    "rate {} bit/s, burst {} and limit {} must all be positive (rate at least \
                     8 bit/s)",
                    self.rate, self.burst, self.limit
                ),
            });
        }
        Ok(())
    }

    /// TCA_OPTIONS' content: TCA_TBF_PARMS (struct tc_tbf_qopt), TCA_TBF_BURST, and
    /// TCA_TBF_RATE64 for rates of 2^32 bytes/s and more.
    fn options(&self) -> Vec<u8> {
        let bytes_ps = self.rate / 8;
        // The time to send the burst at the rate, in scheduler ticks.
        let buffer_ns = u128::from(self.burst) * 1_000_000_000 / u128::from(bytes_ps.max(1));
        let buffer = u32::try_from(buffer_ns >> PSCHED_SHIFT).unwrap_or(u32::MAX);
        let mut parms = Vec::with_capacity(36);
        parms.extend_from_slice(&ratespec(bytes_ps));
        parms.extend_from_slice(&[0u8; 12]); // no peak rate
        parms.extend_from_slice(&self.limit.to_ne_bytes());
        parms.extend_from_slice(&buffer.to_ne_bytes());
        parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu: only with a peak rate
        let mut out = AttrWriter::new();
        out.bytes(TCA_TBF_PARMS, &parms);
        if bytes_ps > u64::from(u32::MAX) {
            out.u64_ne(TCA_TBF_RATE64, bytes_ps);
        }
        out.u32_ne(TCA_TBF_BURST, self.burst);
        out.into_bytes()
    }

    fn from_options(opts: &[u8]) -> Option<Tbf> {
        let mut tbf = Tbf {
            rate: 0,
            burst: 0,
            limit: 0,
        };
        let mut buffer_ticks = 0u32;
        for attr in attrs(opts) {
            let (kind, v) = attr.ok()?;
            match kind {
                TCA_TBF_PARMS if v.len() >= 36 => {
                    tbf.rate = u64::from(u32_at(v, 8)) * 8;
                    tbf.limit = u32_at(v, 24);
                    buffer_ticks = u32_at(v, 28);
                }
                TCA_TBF_RATE64 if v.len() >= 8 => {
                    tbf.rate = u64::from_ne_bytes(v[..8].try_into().ok()?) * 8;
                }
                TCA_TBF_BURST if v.len() >= 4 => tbf.burst = u32_at(v, 0),
                _ => {}
            }
        }
        if tbf.burst == 0 {
            // Dumps carry the buffer as time: the bytes the rate sends in it.
            let ns = u128::from(buffer_ticks) << PSCHED_SHIFT;
            tbf.burst = u32::try_from(ns * u128::from(tbf.rate / 8) / 1_000_000_000).ok()?;
        }
        Some(tbf)
    }
}

/// The hierarchical token bucket qdisc: `tc qdisc add dev DEV root handle 1: htb default N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Htb {
    /// `default N`: the minor number of the class unclassified traffic goes to (0: none, sent
    /// unshaped).
    pub default_class: u32,
    /// `r2q`: divides a class's rate into its quantum (10 when 0).
    pub r2q: u32,
    /// `direct_qlen`: packets queued for direct (unclassified) sending, when set.
    pub direct_qlen: Option<u32>,
}

impl Htb {
    fn options(&self) -> Vec<u8> {
        let mut glob = Vec::with_capacity(20);
        glob.extend_from_slice(&3u32.to_ne_bytes()); // version
        let r2q = if self.r2q == 0 { 10 } else { self.r2q };
        glob.extend_from_slice(&r2q.to_ne_bytes());
        glob.extend_from_slice(&self.default_class.to_ne_bytes());
        glob.extend_from_slice(&0u32.to_ne_bytes()); // debug
        glob.extend_from_slice(&0u32.to_ne_bytes()); // direct_pkts (read only)
        let mut out = AttrWriter::new();
        out.bytes(TCA_HTB_INIT, &glob);
        if let Some(q) = self.direct_qlen {
            out.u32_ne(TCA_HTB_DIRECT_QLEN, q);
        }
        out.into_bytes()
    }

    fn from_options(opts: &[u8]) -> Option<Htb> {
        let mut htb = Htb::default();
        for attr in attrs(opts) {
            let (kind, v) = attr.ok()?;
            match kind {
                TCA_HTB_INIT if v.len() >= 20 => {
                    htb.r2q = u32_at(v, 4);
                    htb.default_class = u32_at(v, 8);
                }
                TCA_HTB_DIRECT_QLEN if v.len() >= 4 => htb.direct_qlen = Some(u32_at(v, 0)),
                _ => {}
            }
        }
        Some(htb)
    }
}

/// The kind of a qdisc and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QdiscKind {
    /// `tbf`.
    Tbf(Tbf),
    /// `htb`.
    Htb(Htb),
    /// `ingress`: a hook for ingress filters.
    Ingress,
    /// `clsact`: hooks for ingress and egress filters.
    Clsact,
    /// Any other kind, by name (`noqueue`, `fq_codel`, `pfifo_fast`...); its options kept as
    /// bytes.
    Other(String, Vec<u8>),
}

impl QdiscKind {
    fn name(&self) -> &str {
        match self {
            QdiscKind::Tbf(_) => "tbf",
            QdiscKind::Htb(_) => "htb",
            QdiscKind::Ingress => "ingress",
            QdiscKind::Clsact => "clsact",
            QdiscKind::Other(name, _) => name,
        }
    }
}

/// A queueing discipline: built with the constructors to add, replace or delete one, and
/// returned by [`Qdiscs::list`].
///
/// ```
/// use podnet_links::{Qdisc, Tbf};
/// use std::time::Duration;
/// let q = Qdisc::tbf(Tbf::new(1_000_000, 32 * 1024, Duration::from_millis(25)));
/// assert_eq!(q.to_string(), "qdisc tbf 0: root rate 1000Kbit burst 32Kb limit 35893b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Qdisc {
    /// The device's index, on qdiscs read from the kernel.
    pub index: u32,
    /// The device's name, on qdiscs read from the kernel, when known.
    pub dev: Option<String>,
    /// The qdisc's handle (`1:`); 0 lets the kernel choose.
    pub handle: TcId,
    /// Where it hangs: [`TcId::ROOT`], a class, or [`TcId::INGRESS_PARENT`].
    pub parent: TcId,
    /// The kind and its settings.
    pub kind: QdiscKind,
}

impl Qdisc {
    fn new(kind: QdiscKind, handle: TcId, parent: TcId) -> Qdisc {
        Qdisc {
            index: 0,
            dev: None,
            handle,
            parent,
            kind,
        }
    }

    /// `root tbf ...`.
    pub fn tbf(tbf: Tbf) -> Qdisc {
        Qdisc::new(QdiscKind::Tbf(tbf), TcId::default(), TcId::ROOT)
    }

    /// `root handle 1: htb ...`.
    pub fn htb(htb: Htb) -> Qdisc {
        Qdisc::new(QdiscKind::Htb(htb), TcId::new(1, 0), TcId::ROOT)
    }

    /// `ingress` (handle `ffff:`).
    pub fn ingress() -> Qdisc {
        Qdisc::new(QdiscKind::Ingress, TcId::INGRESS, TcId::INGRESS_PARENT)
    }

    /// `clsact` (handle `ffff:`; filters hang on [`TcId::CLSACT_INGRESS`] and
    /// [`TcId::CLSACT_EGRESS`]).
    pub fn clsact() -> Qdisc {
        Qdisc::new(QdiscKind::Clsact, TcId::INGRESS, TcId::INGRESS_PARENT)
    }

    /// `handle MAJ:`.
    pub fn handle(mut self, handle: TcId) -> Qdisc {
        self.handle = handle;
        self
    }

    /// `parent MAJ:MIN` (or [`TcId::ROOT`]).
    pub fn parent(mut self, parent: TcId) -> Qdisc {
        self.parent = parent;
        self
    }

    pub(crate) fn to_message(&self, index: u32, delete: bool) -> Result<TcMessage> {
        let mut msg = tc_message("qdisc", index, self.parent)?;
        msg.header.handle = self.handle.to_nl();
        msg.attributes
            .push(TcAttribute::Kind(self.kind.name().to_owned()));
        if delete {
            return Ok(msg);
        }
        let options = match &self.kind {
            QdiscKind::Tbf(t) => {
                t.check()?;
                t.options()
            }
            QdiscKind::Htb(h) => h.options(),
            QdiscKind::Ingress | QdiscKind::Clsact => Vec::new(),
            QdiscKind::Other(_, o) => o.clone(),
        };
        if !options.is_empty() {
            msg.attributes
                .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, options)));
        }
        Ok(msg)
    }

    /// Reads a qdisc from the kernel's message, in the kernel's encoding ([`kernel_form`]).
    pub(crate) fn from_message(m: &TcMessage) -> Qdisc {
        let m = &kernel_form(m);
        let mut name = String::new();
        let mut opts = Vec::new();
        for a in &m.attributes {
            match a {
                TcAttribute::Kind(k) => name = k.clone(),
                TcAttribute::Options(o) => opts = options_bytes(o),
                TcAttribute::Other(nla) if nla.kind() == TCA_OPTIONS => opts = nla_value(nla),
                _ => {}
            }
        }
        let kind = match name.as_str() {
            "tbf" => Tbf::from_options(&opts).map(QdiscKind::Tbf),
            "htb" => Htb::from_options(&opts).map(QdiscKind::Htb),
            "ingress" => Some(QdiscKind::Ingress),
            "clsact" => Some(QdiscKind::Clsact),
            _ => None,
        }
        .unwrap_or(QdiscKind::Other(name, opts));
        Qdisc {
            index: u32::try_from(m.header.index).unwrap_or(0),
            dev: None,
            handle: TcId::from_nl(m.header.handle),
            parent: TcId::from_nl(m.header.parent),
            kind,
        }
    }
}

/// A rate as `tc` prints it: `1000Kbit`, `10Mbit`.
fn rate_text(bits: u64) -> String {
    match bits {
        b if b >= 1_000_000_000 && b % 1_000_000 == 0 => format!("{}Gbit", b / 1_000_000_000),
        b if b >= 1_000_000 && b % 1_000_000 == 0 && b >= 10_000_000 => {
            format!("{}Mbit", b / 1_000_000)
        }
        b if b >= 1000 && b % 1000 == 0 => format!("{}Kbit", b / 1000),
        b => format!("{b}bit"),
    }
}

/// A size as `tc` prints it: `32Kb`, `1Mb`, `1500b`.
fn size_text(bytes: u32) -> String {
    match bytes {
        b if b >= 1024 * 1024 && b % (1024 * 1024) == 0 => format!("{}Mb", b / (1024 * 1024)),
        b if b >= 1024 && b % 1024 == 0 => format!("{}Kb", b / 1024),
        b => format!("{b}b"),
    }
}

impl fmt::Display for Qdisc {
    /// Like one line of `tc qdisc show`: `qdisc tbf 8001: dev eth0 root rate 1Mbit burst 32Kb
    /// limit 35893b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "qdisc {} {}",
            self.kind.name(),
            TcId::new(self.handle.major, 0)
        )?;
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        match self.parent {
            TcId::ROOT | TcId::INGRESS_PARENT => write!(f, " {}", self.parent)?,
            p => write!(f, " parent {p}")?,
        }
        match &self.kind {
            QdiscKind::Tbf(t) => write!(
                f,
                " rate {} burst {} limit {}",
                rate_text(t.rate),
                size_text(t.burst),
                size_text(t.limit)
            ),
            QdiscKind::Htb(h) => write!(f, " r2q {} default {:#x}", h.r2q, h.default_class),
            _ => Ok(()),
        }
    }
}

/// Qdisc operations of one [`Handle`]: `h.qdisc().add("eth0", &Qdisc::ingress())`, like
/// `tc qdisc`.
#[derive(Debug, Clone, Copy)]
pub struct Qdiscs<'h> {
    pub(crate) h: &'h Handle,
}

impl Qdiscs<'_> {
    fn change(&self, op: &'static str, dev: LinkRef, q: &Qdisc, flags: u16) -> Result<()> {
        let index = self.h.link().index(dev.clone())?;
        let delete = op == "qdisc del";
        let msg = q.to_message(index, delete)?;
        let msg = if delete {
            RouteNetlinkMessage::DelQueueDiscipline(msg)
        } else {
            RouteNetlinkMessage::NewQueueDiscipline(msg)
        };
        let what = format!("{} dev {dev}", q.kind.name());
        match self.h.request(msg, flags) {
            Ok(_) => Ok(()),
            // Deleting where nothing is: the root's default qdisc has handle 0.
            Err(crate::netlink::NetlinkError::Kernel(k))
                if delete
                    && k.errno == libc::EINVAL
                    && k.message
                        .as_deref()
                        .is_some_and(|m| m.contains("handle of zero")) =>
            {
                Err(Error::NotFound {
                    name: what,
                    errno: libc::ENOENT,
                    message: k.message,
                })
            }
            Err(e) => Err(Error::from_netlink(op, what, e)),
        }
    }

    /// `tc qdisc add dev DEV ...`; [`Error::Exists`] if one is there already.
    pub fn add(&self, dev: impl Into<LinkRef>, qdisc: &Qdisc) -> Result<()> {
        self.change("qdisc add", dev.into(), qdisc, NLM_F_CREATE | NLM_F_EXCL)
    }

    /// `tc qdisc replace dev DEV ...`: add, or replace the qdisc at the same parent
    /// (idempotent).
    pub fn replace(&self, dev: impl Into<LinkRef>, qdisc: &Qdisc) -> Result<()> {
        self.change(
            "qdisc replace",
            dev.into(),
            qdisc,
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// `tc qdisc del dev DEV PARENT KIND`; [`Error::NotFound`] if the device has no qdisc of
    /// that kind there (the kernel itself answers EINVAL, "Invalid handle", once an ingress
    /// hook has lost its qdisc).
    pub fn del(&self, dev: impl Into<LinkRef>, qdisc: &Qdisc) -> Result<()> {
        let dev = dev.into();
        let there = self.list(Some(dev.clone()))?.iter().any(|q| {
            q.parent == qdisc.parent
                && q.kind.name() == qdisc.kind.name()
                && (qdisc.handle.major == 0 || q.handle.major == qdisc.handle.major)
        });
        if !there {
            return Err(Error::NotFound {
                name: format!("{} dev {dev}", qdisc.kind.name()),
                errno: libc::ENOENT,
                message: None,
            });
        }
        self.change("qdisc del", dev, qdisc, 0)
    }

    /// The qdiscs of one device, or of all (`tc qdisc show [dev DEV]`).
    pub fn list(&self, dev: Option<LinkRef>) -> Result<Vec<Qdisc>> {
        let index = dev.map(|d| self.h.link().index(d)).transpose()?;
        let replies = self
            .h
            .request(
                RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
                NLM_F_DUMP,
            )
            .map_err(|e| Error::from_netlink("qdisc show", "all", e))?;
        let names = self.h.link().names()?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewQueueDiscipline(m) => Some(Qdisc::from_message(m)),
                _ => None,
            })
            .filter(|q| index.is_none_or(|i| i == q.index))
            .map(|mut q| {
                q.dev = names.get(&q.index).cloned();
                q
            })
            .collect())
    }
}

/// A u32 filter that matches every packet and redirects it to another device's egress
/// (`tc filter add dev DEV parent ffff: protocol all prio P u32 match u32 0 0 action mirred
/// egress redirect dev TARGET`): how the CNI `bandwidth` plugin sends a veth's ingress to an
/// ifb device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// The device's index, on filters read from the kernel.
    pub index: u32,
    /// Where it hangs: [`TcId::INGRESS`] for the ingress qdisc, a clsact hook, or a class.
    pub parent: TcId,
    /// `prio P` (0 lets the kernel choose).
    pub priority: u16,
    /// The device packets are redirected to (`mirred egress redirect dev X`).
    pub redirect_to: Option<LinkRef>,
    /// The classifier's kind, on filters read from the kernel (`u32`).
    pub kind: String,
}

impl Filter {
    /// A match-all u32 filter under `parent` redirecting to `target`'s egress.
    pub fn redirect(parent: TcId, target: impl Into<LinkRef>) -> Filter {
        Filter {
            index: 0,
            parent,
            priority: 0,
            redirect_to: Some(target.into()),
            kind: "u32".into(),
        }
    }

    /// `prio P`.
    pub fn priority(mut self, priority: u16) -> Filter {
        self.priority = priority;
        self
    }

    pub(crate) fn to_message(&self, index: u32, target: u32) -> Result<TcMessage> {
        let mut msg = tc_message("filter", index, self.parent)?;
        msg.header.info = (u32::from(self.priority) << 16) | u32::from(ETH_P_ALL_BE);
        msg.attributes.push(TcAttribute::Kind("u32".into()));
        let mut sel = TcU32Selector::default();
        sel.flags = TcU32SelectorFlags::Terminal;
        sel.nkeys = 1;
        sel.keys = vec![TcU32Key::default()]; // match u32 0 0 at 0: every packet
        let mut mirred = TcMirror::default();
        mirred.generic = TcActionGeneric::default();
        mirred.generic.action = TcActionType::Stolen;
        mirred.eaction = TcMirrorActionType::EgressRedir;
        mirred.ifindex = target;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                mirred,
            ))]),
        ];
        // The action before the selector, as tc sends them.
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::U32(TcFilterU32Option::Action(vec![action])),
            TcOption::U32(TcFilterU32Option::Selector(sel)),
        ]));
        Ok(msg)
    }

    pub(crate) fn from_message(
        m: &TcMessage,
        names: &std::collections::HashMap<u32, String>,
    ) -> Filter {
        let mut f = Filter {
            index: u32::try_from(m.header.index).unwrap_or(0),
            parent: TcId::from_nl(m.header.parent),
            priority: (m.header.info >> 16) as u16,
            redirect_to: None,
            kind: String::new(),
        };
        for a in &kernel_form(m).attributes {
            match a {
                TcAttribute::Kind(k) => f.kind = k.clone(),
                TcAttribute::Options(opts) => {
                    let actions = opts.iter().flat_map(|o| match o {
                        TcOption::U32(TcFilterU32Option::Action(actions)) => actions.as_slice(),
                        _ => &[],
                    });
                    // The mirred action's options, raw (kernel_form): its TCA_MIRRED_PARMS.
                    let parms = actions
                        .flat_map(|act| &act.attributes)
                        .filter_map(|aa| match aa {
                            TcActionAttribute::Other(nla) if nla.kind() == TCA_ACT_OPTIONS => {
                                let opts = nla_value(nla);
                                crate::nlattr::find(&opts, TCA_MIRRED_PARMS).map(<[u8]>::to_vec)
                            }
                            _ => None,
                        });
                    for p in parms {
                        // struct tc_mirred: tc_gen (20 bytes), eaction, ifindex.
                        let ifindex = u32_at(&p, 24);
                        if ifindex != 0 {
                            f.redirect_to = Some(match names.get(&ifindex) {
                                Some(n) => LinkRef::Name(n.clone()),
                                None => LinkRef::Index(ifindex),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        f
    }
}

impl fmt::Display for Filter {
    /// Like `tc filter show`'s summary: `filter parent ffff: protocol all pref 1 u32 action
    /// mirred egress redirect dev ifb0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "filter parent {} protocol all pref {} {}",
            self.parent, self.priority, self.kind
        )?;
        if let Some(t) = &self.redirect_to {
            write!(f, " action mirred egress redirect dev {t}")?;
        }
        Ok(())
    }
}

/// Filter operations of one [`Handle`]: `h.filter().add("veth1", &Filter::redirect(..))`,
/// like `tc filter`.
#[derive(Debug, Clone, Copy)]
pub struct Filters<'h> {
    pub(crate) h: &'h Handle,
}

impl Filters<'_> {
    /// `tc filter add dev DEV ...`.
    pub fn add(&self, dev: impl Into<LinkRef>, filter: &Filter) -> Result<()> {
        let dev = dev.into();
        let index = self.h.link().index(dev.clone())?;
        let Some(target) = &filter.redirect_to else {
            return Err(Error::InvalidArgument {
                what: format!("filter on {dev}"),
                reason: "no redirect target".into(),
            });
        };
        let target = self.h.link().index(target.clone())?;
        let msg = filter.to_message(index, target)?;
        self.h
            .request(
                RouteNetlinkMessage::NewTrafficFilter(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map_err(|e| Error::from_netlink("filter add", format!("dev {dev}"), e))?;
        Ok(())
    }

    /// `tc filter del dev DEV parent P [prio N]`: every filter under `parent` (of that
    /// priority, when not 0).
    pub fn del(&self, dev: impl Into<LinkRef>, parent: TcId, priority: u16) -> Result<()> {
        let dev = dev.into();
        let index = self.h.link().index(dev.clone())?;
        let mut msg = tc_message("filter", index, parent)?;
        msg.header.info = u32::from(priority) << 16;
        self.h
            .request(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
            .map_err(|e| Error::from_netlink("filter del", format!("dev {dev}"), e))?;
        Ok(())
    }

    /// The filters of one device under `parent` (`tc filter show dev DEV parent P`).
    pub fn list(&self, dev: impl Into<LinkRef>, parent: TcId) -> Result<Vec<Filter>> {
        let dev = dev.into();
        let index = self.h.link().index(dev.clone())?;
        let msg = tc_message("filter", index, parent)?;
        let replies = self
            .h
            .request(RouteNetlinkMessage::GetTrafficFilter(msg), NLM_F_DUMP)
            .map_err(|e| Error::from_netlink("filter show", format!("dev {dev}"), e))?;
        let names = self.h.link().names()?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                // The kernel also reports each priority's classifier head (no handle).
                RouteNetlinkMessage::NewTrafficFilter(m)
                    if m.header.handle.minor != 0 || m.header.handle.major != 0 =>
                {
                    Some(Filter::from_message(m, &names))
                }
                _ => None,
            })
            .collect())
    }
}

/// `m` as the kernel encodes it, so that a message read from the kernel is emitted again byte
/// for byte (what `wire_tests` checks against captured replies). netlink-packet-route
/// 0.34 differs from the kernel in two places of traffic control:
///
/// - it parses the `TCA_OPTIONS` of a kind it does not know (tbf, htb, clsact) as
///   `Options(vec![Other(<the TCA_OPTIONS attribute>)])`, which it would emit wrapped in a
///   second `TCA_OPTIONS`: here it becomes that one attribute (`TcAttribute::Other`), as
///   [`Qdisc::to_message`] writes options too;
/// - it writes an action's `TCA_ACT_OPTIONS` with `NLA_F_NESTED`, which iproute2 sets in its
///   requests but the kernel's dumps do not (`nla_nest_start_noflag`): here the options become
///   raw bytes under the bare type.
pub(crate) fn kernel_form(m: &TcMessage) -> TcMessage {
    let mut out = m.clone();
    for a in &mut out.attributes {
        let TcAttribute::Options(opts) = a else {
            continue;
        };
        if let [TcOption::Other(nla)] = opts.as_slice()
            && nla.kind() == TCA_OPTIONS
        {
            *a = TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, nla_value(nla)));
            continue;
        }
        for o in opts.iter_mut() {
            let TcOption::U32(TcFilterU32Option::Action(actions)) = o else {
                continue;
            };
            for action in actions.iter_mut() {
                for aa in &mut action.attributes {
                    if let TcActionAttribute::Options(ao) = aa {
                        let mut raw = vec![0u8; ao.as_slice().buffer_len()];
                        ao.as_slice().emit(&mut raw);
                        *aa = TcActionAttribute::Other(DefaultNla::new(TCA_ACT_OPTIONS, raw));
                    }
                }
            }
        }
    }
    out
}

/// A traffic control message (qdisc or filter, `what` in errors) on device `index` under
/// `parent`.
fn tc_message(what: &str, index: u32, parent: TcId) -> Result<TcMessage> {
    let mut msg = TcMessage::default();
    msg.header.index = i32::try_from(index).map_err(|_| Error::InvalidArgument {
        what: format!("{what} device"),
        reason: format!("index {index} out of range"),
    })?;
    msg.header.parent = parent.to_nl();
    Ok(msg)
}

/// struct tc_ratespec for `bytes_ps` (capped at u32; TCA_*_RATE64 carries more), Ethernet
/// link layer.
fn ratespec(bytes_ps: u64) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = TC_LINKLAYER_ETHERNET;
    let rate = u32::try_from(bytes_ps).unwrap_or(u32::MAX);
    r[8..12].copy_from_slice(&rate.to_ne_bytes());
    r
}

fn u32_at(v: &[u8], at: usize) -> u32 {
    v.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

fn nla_value(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0u8; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

/// TCA_OPTIONS' bytes when netlink-packet-route parsed them (the kinds it knows: ingress).
fn options_bytes(opts: &[TcOption]) -> Vec<u8> {
    let mut out = AttrWriter::new();
    for o in opts {
        let mut v = vec![0u8; o.value_len()];
        o.emit_value(&mut v);
        out.bytes(o.kind(), &v);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_options_read_back() {
        let t = Tbf::new(10_000_000, 16 * 1024, Duration::from_millis(25));
        assert_eq!(t.limit, 31250 + 16384);
        assert_eq!(Tbf::from_options(&t.options()), Some(t));
        let big = Tbf::new(100_000_000_000, 1 << 20, Duration::from_millis(1));
        assert_eq!(Tbf::from_options(&big.options()), Some(big));
    }

    #[test]
    fn htb_options_read_back() {
        let h = Htb {
            default_class: 0x30,
            r2q: 10,
            direct_qlen: Some(100),
        };
        assert_eq!(Htb::from_options(&h.options()), Some(h));
    }

    #[test]
    fn ids_print_like_tc() {
        assert_eq!(TcId::ROOT.to_string(), "root");
        assert_eq!(TcId::INGRESS.to_string(), "ffff:");
        assert_eq!(TcId::new(1, 0x10).to_string(), "1:10");
        assert_eq!(rate_text(10_000_000), "10Mbit");
        assert_eq!(size_text(32 * 1024), "32Kb");
    }

    #[test]
    fn a_tbf_without_rate_is_refused() {
        let q = Qdisc::tbf(Tbf {
            rate: 0,
            burst: 1,
            limit: 1,
        });
        assert!(matches!(
            q.to_message(1, false),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
