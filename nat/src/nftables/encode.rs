//! The pure half of nftables over netlink: a [`Transaction`] turned into the bytes of one
//! nftables batch, with no socket and no system call, so every byte is unit-tested without
//! root. [`super::netlink::NftSocket`] sends what this builds.
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, one message per object, `NFNL_MSG_BATCH_END`, sent in one
//! `send`: the kernel applies it all or nothing. Only the last message asks for an
//! acknowledgement (proof the batch was handled), so a batch of a million messages does not
//! overflow the receive queue with acknowledgements. Rules are lowered to register-machine
//! expressions ([`Insn`]) here, and the anonymous sets they need are sent right before them;
//! consecutive element operations on one set share a message.

use super::expr::{Insn, verdict_attrs};
use super::lower::{AnonSet, Lowering};
use super::model::{Element, Op, Rule, Set, Transaction};
use super::types::{Family, KeyPart, KeyType, proto_number};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook as NlHook, HookNumber, InetHookNumber,
    ListAttribute, NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute, SetDescription,
    SetElementAttribute, SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage,
    TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

/// The nftables netlink subsystem.
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Payload bytes of one element message at most (attribute lengths are 16-bit).
const ELEM_MSG_BYTES: usize = 32 * 1024;

/// An nftables message of `family`.
pub(super) fn nf(family: Family, msg: NfTablesMessage) -> NetfilterMessage {
    NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::from(family.nfproto()), 0, 0),
        msg,
    )
}

/// nftables user data of one comment: `[type 0][len][text NUL]`.
pub(super) fn comment_udata(kind: u8, c: &str) -> Vec<u8> {
    let bytes = &c.as_bytes()[..c.len().min(250)];
    let mut v = Vec::with_capacity(bytes.len() + 3);
    v.push(kind);
    v.push(bytes.len() as u8 + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

/// The key of an element: each part padded to 4 bytes, as the kernel stores concatenations.
pub(crate) fn key_bytes(key: &[KeyPart]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() * 4);
    for k in key {
        match k {
            KeyPart::Addr(std::net::IpAddr::V4(a)) => v.extend_from_slice(&a.octets()),
            KeyPart::Addr(std::net::IpAddr::V6(a)) => v.extend_from_slice(&a.octets()),
            KeyPart::Proto(p) => v.extend_from_slice(&[proto_number(*p), 0, 0, 0]),
            KeyPart::Port(p) => {
                let b = p.to_be_bytes();
                v.extend_from_slice(&[b[0], b[1], 0, 0]);
            }
            KeyPart::Int(i) => v.extend_from_slice(&i.to_ne_bytes()),
        }
    }
    v
}

fn set_udata(s: &Set) -> Vec<u8> {
    let mut u = if s.key.len() == 1 {
        let order = if matches!(s.key[0], KeyType::Integer | KeyType::Mark) {
            1
        } else {
            2
        };
        vec![0, 4, order, 0, 0, 0]
    } else if !s.data.is_empty() || s.key.contains(&KeyType::Mark) {
        // The maps layout's concatenations: typed keys nft prints without a `typeof`.
        vec![0, 4, 0, 0, 0, 0]
    } else {
        // Concatenations: byte order "invalid", and nft's "typeof concat" marker.
        vec![
            0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
        ]
    };
    if let Some(c) = &s.comment {
        u.extend(comment_udata(7, c));
    }
    u
}

fn set_key_type(s: &Set) -> (u32, u32) {
    concat_type(&s.key)
}

/// nft's datatype number and the length of a key or data of `parts` (a concatenation packs 6
/// bits per part and pads each part to 4 bytes).
fn concat_type(parts: &[KeyType]) -> (u32, u32) {
    if parts.len() == 1 {
        return (parts[0].type_id(), parts[0].len());
    }
    let mut t = 0u32;
    let mut len = 0u32;
    for k in parts {
        t = (t << 6) | k.type_id();
        len += k.len().div_ceil(4) * 4;
    }
    (t, len)
}

/// One message of a batch and the operation it belongs to.
struct Msg {
    msg: NfTablesMessage,
    flags: u16,
    op: usize,
}

/// Turns a transaction into the nftables messages of one batch.
struct Encoder<'a> {
    tx: &'a Transaction,
    low: Lowering,
    msgs: Vec<Msg>,
}

impl Encoder<'_> {
    fn push(&mut self, msg: NfTablesMessage, flags: u16, op: usize) {
        self.msgs.push(Msg { msg, flags, op });
    }

    fn table(&self) -> String {
        self.tx.table.clone()
    }

    fn encode(&mut self) {
        let ops = &self.tx.ops;
        let mut i = 0;
        while i < ops.len() {
            match &ops[i] {
                Op::AddElement(_) | Op::DeleteElement(_) => {
                    // Consecutive element operations on one set share a message.
                    let add = matches!(ops[i], Op::AddElement(_));
                    let set = match &ops[i] {
                        Op::AddElement(e) | Op::DeleteElement(e) => e.set.clone(),
                        _ => unreachable!(),
                    };
                    let mut elems = Vec::new();
                    let mut bytes = 0;
                    while i < ops.len() && bytes < ELEM_MSG_BYTES {
                        let e = match (&ops[i], add) {
                            (Op::AddElement(e), true) | (Op::DeleteElement(e), false)
                                if e.set == set =>
                            {
                                e
                            }
                            _ => break,
                        };
                        let el = element_attrs(e, add);
                        bytes += el.buffer_len_hint();
                        elems.push(el.0);
                        i += 1;
                    }
                    let attrs = vec![
                        SetElementList::Table(self.table()),
                        SetElementList::Set(set),
                        SetElementList::Elements(elems),
                    ];
                    let msg = SetElementMessage { attributes: attrs };
                    if add {
                        self.push(NfTablesMessage::NewSetElement(msg), NLM_F_CREATE, i - 1);
                    } else {
                        self.push(NfTablesMessage::DeleteSetElement(msg), 0, i - 1);
                    }
                    continue;
                }
                op => self.encode_op(op, i),
            }
            i += 1;
        }
    }

    fn encode_op(&mut self, op: &Op, i: usize) {
        let table = self.table();
        match op {
            Op::AddTable { comment } => {
                let mut a = vec![
                    TableAttribute::Name(table),
                    TableAttribute::Flags(Default::default()),
                ];
                if let Some(c) = comment {
                    a.push(TableAttribute::UserData(comment_udata(0, c)));
                }
                self.push(
                    NfTablesMessage::NewTable(TableMessage { attributes: a }),
                    NLM_F_CREATE,
                    i,
                );
            }
            Op::AddChain(c) => {
                let mut a = vec![
                    ChainAttribute::Table(table),
                    ChainAttribute::Name(c.name.clone()),
                ];
                if let Some(b) = &c.base {
                    a.push(ChainAttribute::Type(b.kind.name().into()));
                    a.push(ChainAttribute::Hook(vec![
                        NlHook::Number(HookNumber::Inet(InetHookNumber::from(b.hook.number()))),
                        NlHook::Priority(b.priority as u32),
                    ]));
                }
                if let Some(cm) = &c.comment {
                    a.push(ChainAttribute::UserData(comment_udata(0, cm)));
                }
                self.push(
                    NfTablesMessage::NewChain(ChainMessage { attributes: a }),
                    NLM_F_CREATE,
                    i,
                );
            }
            Op::FlushChain(n) => {
                let a = vec![RuleAttribute::Table(table), RuleAttribute::Chain(n.clone())];
                self.push(
                    NfTablesMessage::DeleteRule(RuleMessage { attributes: a }),
                    0,
                    i,
                );
            }
            Op::DeleteChain(n) => {
                let a = vec![
                    ChainAttribute::Table(table),
                    ChainAttribute::Name(n.clone()),
                ];
                self.push(
                    NfTablesMessage::DeleteChain(ChainMessage { attributes: a }),
                    0,
                    i,
                );
            }
            Op::AddRule(r) => self.add_rule(r, i),
            Op::AddSet(set) => self.add_set(set, i),
            Op::FlushSet(n, _) => {
                let a = vec![SetElementList::Table(table), SetElementList::Set(n.clone())];
                self.push(
                    NfTablesMessage::DeleteSetElement(SetElementMessage { attributes: a }),
                    0,
                    i,
                );
            }
            Op::DeleteSet(n, _) => {
                let a = vec![SetAttribute::Table(table), SetAttribute::Name(n.clone())];
                self.push(
                    NfTablesMessage::DeleteSet(SetMessage { attributes: a }),
                    0,
                    i,
                );
            }
            Op::AddElement(_) | Op::DeleteElement(_) => unreachable!("grouped by encode"),
        }
    }

    /// `add rule`: the rule's expressions lowered, the anonymous sets they need sent first
    /// (with the same operation index), then the rule appended to its chain.
    fn add_rule(&mut self, r: &Rule, i: usize) {
        let table = self.table();
        let mut insns = Vec::new();
        for e in &r.exprs {
            e.lower(self.tx.family, &mut self.low, &mut insns);
        }
        for anon in std::mem::take(&mut self.low.anon) {
            self.anon_set(anon, i);
        }
        let mut a = vec![
            RuleAttribute::Table(table),
            RuleAttribute::Chain(r.chain.clone()),
            RuleAttribute::Expressions(insns.iter().map(Insn::encode).collect()),
        ];
        if let Some(c) = &r.comment {
            a.push(RuleAttribute::UserData(comment_udata(0, c)));
        }
        self.push(
            NfTablesMessage::NewRule(RuleMessage { attributes: a }),
            NLM_F_CREATE | NLM_F_APPEND,
            i,
        );
    }

    /// `add set` / `add map`: key type (a concatenation packs 6 bits per part), flags, a
    /// batch-local id, the default timeout in milliseconds and nft's userdata.
    fn add_set(&mut self, s: &Set, i: usize) {
        let table = self.table();
        let (kt, kl) = set_key_type(s);
        let mut flags = 0u32;
        if s.is_map() {
            flags |= 0x8; // NFT_SET_MAP
        }
        if s.timeout.is_some() {
            flags |= 0x10; // NFT_SET_TIMEOUT
        }
        if s.dynamic {
            flags |= 0x20; // NFT_SET_EVAL: updated from the packet path
        }
        let id = self.low.next_set_id;
        self.low.next_set_id += 1;
        let mut a = vec![
            SetAttribute::Table(table),
            SetAttribute::Name(s.name.clone()),
            SetAttribute::Flags(SetFlags::from_bits_retain(flags)),
            SetAttribute::KeyType(kt),
            SetAttribute::KeyLen(kl),
        ];
        if s.verdict_map {
            a.push(SetAttribute::DataType(0xffff_ff00)); // NFT_DATA_VERDICT
            a.push(SetAttribute::DataLen(0));
        } else if !s.data.is_empty() {
            let (dt, dl) = concat_type(&s.data);
            a.push(SetAttribute::DataType(dt));
            a.push(SetAttribute::DataLen(dl));
        }
        a.push(SetAttribute::Id(id));
        if let Some(t) = s.timeout {
            a.push(SetAttribute::Timeout(u64::from(t) * 1000));
        }
        a.push(SetAttribute::UserData(set_udata(s)));
        self.push(
            NfTablesMessage::NewSet(SetMessage { attributes: a }),
            NLM_F_CREATE,
            i,
        );
    }

    /// An anonymous set a rule needs: the set (with the number of elements as its size), then
    /// its elements in messages of at most [`ELEM_MSG_BYTES`], all tied to the set by its
    /// batch-local id.
    fn anon_set(&mut self, s: AnonSet, op: usize) {
        let table = self.table();
        let mut a = vec![
            SetAttribute::Table(table.clone()),
            SetAttribute::Name(s.name.into()),
            SetAttribute::Flags(SetFlags::from_bits_retain(s.flags)),
            SetAttribute::KeyType(s.key_type),
            SetAttribute::KeyLen(s.key_len),
        ];
        if s.verdict_map {
            a.push(SetAttribute::DataType(0xffff_ff00));
            a.push(SetAttribute::DataLen(0));
        }
        a.push(SetAttribute::Id(s.id));
        a.push(SetAttribute::Description(vec![SetDescription::Size(
            s.elements.len() as u32,
        )]));
        a.push(SetAttribute::UserData(s.udata));
        self.push(
            NfTablesMessage::NewSet(SetMessage { attributes: a }),
            NLM_F_CREATE,
            op,
        );
        let mut elems = Vec::new();
        let mut bytes = 0;
        let total = s.elements.len();
        for (n, (key, end, verdict)) in s.elements.into_iter().enumerate() {
            let mut e = Vec::new();
            if end {
                e.push(SetElementAttribute::Flags(SetElementFlags::IntervalEnd));
            }
            bytes += key.len() + 64;
            e.push(SetElementAttribute::Key(DataAttribute::Value(key)));
            if let Some(v) = verdict {
                bytes += v.chain().map_or(0, str::len);
                e.push(SetElementAttribute::Data(DataAttribute::Verdict(
                    verdict_attrs(&v),
                )));
            }
            elems.push(ListAttribute::Element(e));
            if bytes >= ELEM_MSG_BYTES || n + 1 == total {
                let attrs = vec![
                    SetElementList::Table(table.clone()),
                    SetElementList::Set(s.name.into()),
                    SetElementList::SetId(s.id),
                    SetElementList::Elements(std::mem::take(&mut elems)),
                ];
                self.push(
                    NfTablesMessage::NewSetElement(SetElementMessage { attributes: attrs }),
                    NLM_F_CREATE,
                    op,
                );
                bytes = 0;
            }
        }
    }
}

/// The attributes of one element, and a guess of its encoded size.
struct ElementAttrs(ListAttribute<SetElementAttribute>, usize);

impl ElementAttrs {
    fn buffer_len_hint(&self) -> usize {
        self.1
    }
}

fn element_attrs(e: &Element, with_value: bool) -> ElementAttrs {
    let key = key_bytes(&e.key);
    let mut size = key.len() + 24;
    let mut a = vec![SetElementAttribute::Key(DataAttribute::Value(key))];
    if with_value {
        if let Some(v) = &e.value {
            size += 32 + v.chain().map_or(0, str::len);
            a.push(SetElementAttribute::Data(DataAttribute::Verdict(
                verdict_attrs(v),
            )));
        } else if !e.data.is_empty() {
            let data = key_bytes(&e.data);
            size += data.len() + 8;
            a.push(SetElementAttribute::Data(DataAttribute::Value(data)));
        }
        if let Some(c) = &e.comment {
            size += c.len() + 8;
            a.push(SetElementAttribute::UserData(comment_udata(0, c)));
        }
    }
    ElementAttrs(ListAttribute::Element(a), size)
}

/// The register-machine expressions of every rule of `tx`, as they will be sent (dry runs,
/// tests).
pub fn lowered(tx: &Transaction) -> Vec<Insn> {
    let mut low = Lowering::for_batch();
    let mut out = Vec::new();
    for op in &tx.ops {
        if let Op::AddRule(r) = op {
            for e in &r.exprs {
                e.lower(tx.family, &mut low, &mut out);
            }
        }
    }
    out
}

/// A batch ready to send: the bytes, and which operation each message belongs to.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    pub(super) first_seq: u32,
    /// The transaction operation of each message between begin and end.
    pub(super) msg_ops: Vec<usize>,
}

impl Batch {
    /// Encodes `tx` with sequence numbers from `first_seq` (the batch begin message's).
    pub fn encode(tx: &Transaction, first_seq: u32) -> Batch {
        let mut enc = Encoder {
            tx,
            low: Lowering::for_batch(),
            msgs: Vec::with_capacity(tx.ops.len() + 2),
        };
        enc.encode();
        Batch::frame(tx.family, enc.msgs, first_seq)
    }

    /// The batch that deletes table `family table` (operation 0).
    pub fn delete_table(family: Family, table: &str, first_seq: u32) -> Batch {
        let msg = NfTablesMessage::DeleteTable(TableMessage {
            attributes: vec![TableAttribute::Name(table.into())],
        });
        let msgs = vec![Msg {
            msg,
            flags: 0,
            op: 0,
        }];
        Batch::frame(family, msgs, first_seq)
    }

    /// `msgs` between a batch begin and end message, numbered from `first_seq`; the last
    /// message asks for the acknowledgement.
    fn frame(family: Family, msgs: Vec<Msg>, first_seq: u32) -> Batch {
        let mut bytes = Vec::with_capacity(msgs.len() * 160 + 64);
        let mut seq = first_seq;
        let control = |m: ControlMessage| {
            NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
                NetfilterMessageInner::None(m),
            )
        };
        serialize(&mut bytes, control(ControlMessage::BatchBegin), 0, seq);
        let n = msgs.len();
        let mut msg_ops = Vec::with_capacity(n);
        for (k, m) in msgs.into_iter().enumerate() {
            seq = seq.wrapping_add(1);
            let mut flags = m.flags;
            if k + 1 == n {
                flags |= NLM_F_ACK; // proof the batch was handled
            }
            serialize(&mut bytes, nf(family, m.msg), flags, seq);
            msg_ops.push(m.op);
        }
        seq = seq.wrapping_add(1);
        serialize(&mut bytes, control(ControlMessage::BatchEnd), 0, seq);
        Batch {
            bytes,
            first_seq,
            msg_ops,
        }
    }

    /// The bytes sent.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Netlink messages between the batch begin and end.
    pub fn messages(&self) -> usize {
        self.msg_ops.len()
    }
}

/// Appends `msg` as one netlink request with `flags` and sequence number `seq`, padded.
fn serialize(out: &mut Vec<u8>, msg: NetfilterMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    m.finalize();
    let start = out.len();
    let len = m.buffer_len();
    out.resize(start + ((len + 3) & !3), 0);
    m.serialize(&mut out[start..start + len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::model::{Chain, Rule};
    use crate::nftables::rule::Expr;
    use podnet_links::nlattr::messages;

    /// (type, asks for an ack, sequence number) of each message of `b`.
    fn framing(b: &Batch) -> Vec<(u16, bool, u32)> {
        messages(b.bytes())
            .map(|m| {
                let (h, _) = m.unwrap();
                (h.message_type, h.flags & NLM_F_ACK != 0, h.sequence_number)
            })
            .collect()
    }

    #[test]
    fn a_batch_is_framed_and_numbered() {
        let mut tx = Transaction::new(Family::Ip, "t");
        tx.push(Op::AddTable { comment: None });
        tx.push(Op::AddChain(Chain::regular("a")));
        tx.push(Op::AddRule(Rule::new(
            "a",
            vec![Expr::Numgen {
                targets: vec!["a".into()],
            }],
        )));
        let b = Batch::encode(&tx, 100);
        // table, chain, anonymous map, its elements, rule
        assert_eq!(b.messages(), 5);
        assert_eq!(b.msg_ops, vec![0, 1, 2, 2, 2]);
        let kinds = framing(&b);
        assert_eq!(kinds.first(), Some(&(16, false, 100)));
        assert_eq!(kinds.last(), Some(&(17, false, 106)));
        // Only the last message of the batch asks for an acknowledgement.
        assert_eq!(kinds.iter().filter(|k| k.1).count(), 1);
        assert_eq!(kinds[5], ((10 << 8) | 6, true, 105));
    }

    #[test]
    fn consecutive_elements_of_one_set_share_a_message() {
        let mut tx = Transaction::new(Family::Ip, "t");
        for (set, port) in [("s", 1), ("s", 2), ("s", 3), ("u", 4)] {
            tx.push(Op::AddElement(Element {
                set: set.into(),
                key: vec![KeyPart::Port(port)],
                value: None,
                data: Vec::new(),
                comment: None,
            }));
        }
        let b = Batch::encode(&tx, 1);
        // One message for s's three elements (named by its last operation), one for u's.
        assert_eq!(b.msg_ops, vec![2, 3]);
    }

    #[test]
    fn deleting_a_table_is_one_acknowledged_message() {
        let b = Batch::delete_table(Family::Ip6, "kube-proxy", 7);
        assert_eq!(
            framing(&b),
            vec![(16, false, 7), ((10 << 8) | 2, true, 8), (17, false, 9)]
        );
    }

    #[test]
    fn element_keys_pad_each_part_to_four_bytes() {
        let key = [
            KeyPart::Addr("10.0.0.1".parse().unwrap()),
            KeyPart::Proto(crate::iptables::Protocol::Udp),
            KeyPart::Port(53),
        ];
        assert_eq!(key_bytes(&key), vec![10, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
    }
}
