//! Tables read back: the typed forms of nftables dump replies (chains, sets, elements,
//! rules), parsed without a socket. [`super::netlink::NftSocket`]'s list operations and the
//! fuzz targets read replies through here; every nftables message from the kernel passes
//! [`super::precheck`] before netlink-packet-netfilter decodes it.

use super::expr::{Insn, decode_verdict};
use super::netlink::NftError;
use super::precheck::Checked;
use super::types::{BaseChain, ChainType, Hook, Verdict};
use netlink_packet_netfilter::NetfilterMessageInner;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, DataAttribute, ExpressionAttribute, Hook as NlHook, HookNumber, ListAttribute,
    NfTablesMessage, RuleAttribute, SetAttribute, SetElementAttribute, SetElementFlags,
    SetElementList,
};
use podnet_links::netlink::KernelError;

/// A table's chain as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// Hook, type and priority of a base chain.
    pub base: Option<BaseChain>,
    /// Comment.
    pub comment: Option<String>,
}

/// A set or map as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// Name (`__map0` and the like for anonymous sets).
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// NFT_SET_* flags.
    pub flags: u32,
    /// nft's key datatype.
    pub key_type: u32,
    /// Key bytes.
    pub key_len: u32,
    /// A verdict map.
    pub verdict_map: bool,
    /// Default timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Comment.
    pub comment: Option<String>,
}

/// A set element as read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElementInfo {
    /// Key bytes (concatenation parts padded to 4 bytes).
    pub key: Vec<u8>,
    /// Ends an interval.
    pub interval_end: bool,
    /// The verdict of a map element.
    pub verdict: Option<Verdict>,
    /// Comment.
    pub comment: Option<String>,
}

/// A rule as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its chain.
    pub chain: String,
    /// Kernel handle.
    pub handle: u64,
    /// Its expressions, in order; those podnet does not decode are [`Insn::Other`].
    pub insns: Vec<Insn>,
    /// How many of `insns` podnet does not decode ([`Insn::Other`], kept whole).
    pub undecoded: usize,
    /// Comment.
    pub comment: Option<String>,
}

impl RuleInfo {
    /// The rule's expressions as `NFTA_RULE_EXPRESSIONS` elements, to write the rule back:
    /// the ones podnet does not decode come out as they were read.
    pub fn expressions(&self) -> Vec<ListAttribute<ExpressionAttribute>> {
        self.insns.iter().map(Insn::encode).collect()
    }
}

/// The nftables messages among a dump's replies.
pub(super) fn nftables_messages(msgs: Vec<Checked>) -> Vec<NfTablesMessage> {
    msgs.into_iter()
        .filter_map(|Checked(m)| match m.inner {
            NetfilterMessageInner::NfTables(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// One datagram of an nftables dump reply, read every way the list operations read replies.
#[doc(hidden)]
#[derive(Debug)]
pub struct DumpDatagram {
    /// The acknowledgement or `NLMSG_DONE` that ends the reply, if the datagram held it.
    pub finished: Option<Result<(), KernelError>>,
    /// A message carried `NLM_F_DUMP_INTR`.
    pub interrupted: bool,
    /// As [`super::netlink::NftSocket::list_chains`] returns them.
    pub chains: Vec<ChainInfo>,
    /// As [`super::netlink::NftSocket::list_sets`] returns them.
    pub sets: Vec<SetInfo>,
    /// As [`super::netlink::NftSocket::list_elements`] returns them.
    pub elements: Vec<ElementInfo>,
    /// As [`super::netlink::NftSocket::list_rules`] returns them.
    pub rules: Vec<RuleInfo>,
}

/// Reads one datagram of the reply to dump request `seq` for `table` into every typed form.
/// Public (hidden) for the fuzz targets: malformed bytes are an error or are left out, never a
/// panic.
#[doc(hidden)]
pub fn parse_dump_datagram(buf: &[u8], seq: u32, table: &str) -> Result<DumpDatagram, NftError> {
    let reply = podnet_links::netlink::parse_reply::<Checked>(buf, seq)?;
    let msgs = nftables_messages(reply.replies);
    Ok(DumpDatagram {
        finished: reply.finished,
        interrupted: reply.interrupted,
        chains: chains_of(msgs.clone(), table),
        sets: sets_of(msgs.clone(), table),
        elements: elements_of(msgs.clone()),
        rules: rules_of(msgs, table),
    })
}

/// The chains of `table` among a chain dump's messages.
pub(super) fn chains_of(msgs: Vec<NfTablesMessage>, table: &str) -> Vec<ChainInfo> {
    let mut out = Vec::new();
    for m in msgs {
        let NfTablesMessage::NewChain(c) = m else {
            continue;
        };
        let mut info = ChainInfo {
            name: String::new(),
            handle: 0,
            base: None,
            comment: None,
        };
        let (mut hook, mut prio, mut kind) = (None, None, None);
        let mut in_table = true;
        for a in c.attributes {
            match a {
                ChainAttribute::Table(t) => in_table = t == table,
                ChainAttribute::Name(n) => info.name = n,
                ChainAttribute::Handle(h) => info.handle = h,
                ChainAttribute::Type(t) => {
                    kind = match t.as_str() {
                        "filter" => Some(ChainType::Filter),
                        "nat" => Some(ChainType::Nat),
                        _ => None,
                    }
                }
                ChainAttribute::Hook(hs) => {
                    for h in hs {
                        match h {
                            NlHook::Number(n) => {
                                let num = match n {
                                    HookNumber::Inet(i) => u32::from(i),
                                    HookNumber::Dev(d) => u32::from(d),
                                    HookNumber::Other(o) => o,
                                    _ => u32::MAX,
                                };
                                hook = Hook::from_number(num);
                            }
                            NlHook::Priority(p) => prio = Some(p as i32),
                            _ => {}
                        }
                    }
                }
                ChainAttribute::UserData(u) => info.comment = comment_from_udata(0, &u),
                _ => {}
            }
        }
        if let (Some(hook), Some(priority), Some(kind)) = (hook, prio, kind) {
            info.base = Some(BaseChain {
                kind,
                hook,
                priority,
            });
        }
        if in_table {
            out.push(info);
        }
    }
    out
}

/// The sets and maps of `table` among a set dump's messages.
pub(super) fn sets_of(msgs: Vec<NfTablesMessage>, table: &str) -> Vec<SetInfo> {
    let mut out = Vec::new();
    for m in msgs {
        let NfTablesMessage::NewSet(s) = m else {
            continue;
        };
        let mut info = SetInfo {
            name: String::new(),
            handle: 0,
            flags: 0,
            key_type: 0,
            key_len: 0,
            verdict_map: false,
            timeout_ms: None,
            comment: None,
        };
        let mut in_table = true;
        for a in s.attributes {
            match a {
                SetAttribute::Table(t) => in_table = t == table,
                SetAttribute::Name(n) => info.name = n,
                SetAttribute::Handle(h) => info.handle = h,
                SetAttribute::Flags(f) => info.flags = f.bits(),
                SetAttribute::KeyType(t) => info.key_type = t,
                SetAttribute::KeyLen(l) => info.key_len = l,
                SetAttribute::DataType(t) => info.verdict_map = t == 0xffff_ff00,
                SetAttribute::Timeout(t) => info.timeout_ms = Some(t),
                SetAttribute::UserData(u) => info.comment = comment_from_udata(7, &u),
                _ => {}
            }
        }
        if in_table {
            out.push(info);
        }
    }
    out
}

/// The elements among a set element dump's messages.
pub(super) fn elements_of(msgs: Vec<NfTablesMessage>) -> Vec<ElementInfo> {
    let mut out = Vec::new();
    for m in msgs {
        let NfTablesMessage::NewSetElement(s) = m else {
            continue;
        };
        for a in s.attributes {
            let SetElementList::Elements(list) = a else {
                continue;
            };
            for el in list {
                let ListAttribute::Element(attrs) = el else {
                    continue;
                };
                let mut info = ElementInfo {
                    key: Vec::new(),
                    interval_end: false,
                    verdict: None,
                    comment: None,
                };
                for a in attrs {
                    match a {
                        SetElementAttribute::Key(DataAttribute::Value(v)) => info.key = v,
                        SetElementAttribute::Data(DataAttribute::Verdict(v)) => {
                            let bytes: Vec<u8> = v
                                .iter()
                                .flat_map(|va| {
                                    let mut b =
                                        vec![0u8; netlink_packet_core::Emitable::buffer_len(va)];
                                    netlink_packet_core::Emitable::emit(va, &mut b);
                                    b
                                })
                                .collect();
                            info.verdict = decode_verdict(&bytes);
                        }
                        SetElementAttribute::Flags(f) => {
                            info.interval_end = f.contains(SetElementFlags::IntervalEnd)
                        }
                        SetElementAttribute::UserData(u) => {
                            info.comment = comment_from_udata(0, &u)
                        }
                        _ => {}
                    }
                }
                out.push(info);
            }
        }
    }
    out
}

/// The rules of `table` among a rule dump's messages, in chain order.
pub(super) fn rules_of(msgs: Vec<NfTablesMessage>, table: &str) -> Vec<RuleInfo> {
    let mut out = Vec::new();
    for m in msgs {
        let NfTablesMessage::NewRule(r) = m else {
            continue;
        };
        let mut info = RuleInfo {
            chain: String::new(),
            handle: 0,
            insns: Vec::new(),
            undecoded: 0,
            comment: None,
        };
        let mut in_table = true;
        for a in r.attributes {
            match a {
                RuleAttribute::Table(t) => in_table = t == table,
                RuleAttribute::Chain(c) => info.chain = c,
                RuleAttribute::Handle(h) => info.handle = h,
                RuleAttribute::Expressions(list) => {
                    for e in &list {
                        match Insn::decode(e) {
                            Some(i) => {
                                info.undecoded += usize::from(!i.is_decoded());
                                info.insns.push(i);
                            }
                            // A list element without a name is no expression: nothing to keep.
                            None => info.undecoded += 1,
                        }
                    }
                }
                RuleAttribute::UserData(u) => info.comment = comment_from_udata(0, &u),
                _ => {}
            }
        }
        if in_table {
            out.push(info);
        }
    }
    out
}

/// The comment of type `kind` in nftables user data (`[type][len][value]` records).
fn comment_from_udata(kind: u8, u: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 2 <= u.len() {
        let (t, l) = (u[i], u[i + 1] as usize);
        let v = u.get(i + 2..i + 2 + l)?;
        if t == kind {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            return Some(String::from_utf8_lossy(&v[..end]).into_owned());
        }
        i += 2 + l;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::encode::comment_udata;
    use podnet_links::netlink::NetlinkError;

    const NFNL_SUBSYS_NFTABLES: u16 = 10;

    /// One netlink attribute (native byte order, padded).
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    /// One nftables message of `msg` type in a dump reply with sequence number 7.
    fn dump_message(msg: u16, attrs: &[u8]) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0]; // nfgenmsg: NFPROTO_IPV4
        body.extend_from_slice(attrs);
        let mut out = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        out.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        out.extend_from_slice(&7u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// A rule whose `cmp` expression carries data that is not one attribute (2 bytes): found
    /// by the `nftables` fuzz target, netlink-packet-netfilter 0.4 panicked on it (it reads
    /// the value as an attribute without checking its length). Set elements' keys have the
    /// same problem.
    #[test]
    fn malformed_nested_data_is_a_decode_error_not_a_panic() {
        let cmp = [
            nla(1, b"cmp\0"),
            nla(0x8002, &nla(3, &[0x2d, 0x08])), // NFTA_CMP_DATA: 2 bytes
        ]
        .concat();
        let rule = [
            nla(1, b"kube-proxy\0"),
            nla(2, b"c\0"),
            nla(0x8004, &nla(0x8001, &cmp)),
        ]
        .concat();
        let buf = dump_message(6, &rule);
        assert!(matches!(
            parse_dump_datagram(&buf, 7, "kube-proxy"),
            Err(NftError::Netlink(NetlinkError::Decode(_)))
        ));
        let element = nla(0x8001, &nla(0x8001, &[0xff, 0xff, 1, 0]));
        let elements = [nla(2, b"s\0"), nla(0x8003, &element)].concat();
        let buf = dump_message(12, &elements);
        assert!(parse_dump_datagram(&buf, 7, "kube-proxy").is_err());
        // The same rule with well-formed data decodes.
        let cmp = [
            nla(1, b"cmp\0"),
            nla(0x8002, &nla(0x8003, &nla(1, &[10, 0, 0, 1]))),
        ]
        .concat();
        let rule = [nla(1, b"kube-proxy\0"), nla(0x8004, &nla(0x8001, &cmp))].concat();
        let d = parse_dump_datagram(&dump_message(6, &rule), 7, "kube-proxy").unwrap();
        assert_eq!(d.rules.len(), 1);
    }

    /// A rule with an expression podnet does not decode (`limit rate 10/second`) between two
    /// it does: read back in order, counted as undecoded, and written back byte for byte.
    #[test]
    fn a_rule_keeps_the_expressions_podnet_does_not_decode() {
        let limit_data = [nla(1, &10u64.to_be_bytes()), nla(2, &1u64.to_be_bytes())].concat();
        let limit = [nla(1, b"limit\0"), nla(0x8002, &limit_data)].concat();
        let counter = [nla(1, b"counter\0"), nla(0x8002, &[])].concat();
        let verdict = [
            nla(1, b"immediate\0"),
            nla(
                0x8002,
                &[
                    nla(1, &0u32.to_be_bytes()),
                    nla(0x8002, &nla(0x8002, &nla(1, &1u32.to_be_bytes()))),
                ]
                .concat(),
            ),
        ]
        .concat();
        let exprs = [
            nla(0x8001, &counter),
            nla(0x8001, &limit),
            nla(0x8001, &verdict),
        ]
        .concat();
        let rule = [nla(1, b"kube-proxy\0"), nla(2, b"c\0"), nla(0x8004, &exprs)].concat();
        let d = parse_dump_datagram(&dump_message(6, &rule), 7, "kube-proxy").unwrap();
        let r = &d.rules[0];
        assert_eq!(r.undecoded, 1);
        assert_eq!(r.insns.len(), 3);
        assert_eq!(r.insns[0], Insn::Counter);
        assert_eq!(
            r.insns[1],
            Insn::Other {
                name: "limit".into(),
                data: limit_data.clone()
            }
        );
        assert_eq!(r.insns[2], Insn::Verdict(Verdict::Accept));
        let written = r.expressions();
        let mut limit_out = vec![0u8; netlink_packet_core::Emitable::buffer_len(&written[1])];
        netlink_packet_core::Emitable::emit(&written[1], &mut limit_out);
        assert_eq!(limit_out, nla(0x8001, &limit));
    }

    #[test]
    fn comments_roundtrip_through_udata() {
        let u = comment_udata(7, "ns2/svc2:p80");
        assert_eq!(comment_from_udata(7, &u).as_deref(), Some("ns2/svc2:p80"));
        assert_eq!(comment_from_udata(0, &u), None);
        assert_eq!(comment_from_udata(7, &[7, 200, 1]), None);
    }
}
