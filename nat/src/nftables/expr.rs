//! nftables register-machine expressions as netlink attributes.
//!
//! netlink-packet-netfilter 0.4 types `payload`, `meta`, `cmp`, `bitwise`, `immediate` and
//! `lookup`; this module uses those, and writes the expressions it lacks (`ct`, `fib`,
//! `numgen`, `nat`, `masq`, `reject`, `dynset`, `counter`) as raw attributes, with the numbers
//! of the kernel's `include/uapi/linux/netfilter/nf_tables.h`. [`Insn::decode`] reads any of
//! them back from a rule dump.

use netlink_packet_core::{DefaultNla, Emitable};
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, Verdict as NlVerdict, VerdictAttribute,
};
use podnet_links::nlattr::{attrs, attrs_with_flags, cstr, find};

use super::types::Verdict;

/// Where a `payload` expression loads from (`NFT_PAYLOAD_*_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadBase {
    /// The network header.
    Network = 1,
    /// The transport header.
    Transport = 2,
}

/// The meta keys podnet uses (`NFT_META_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKind {
    /// The packet mark.
    Mark = 3,
    /// The input interface name.
    Iifname = 6,
    /// The layer 4 protocol number.
    L4Proto = 16,
}

/// One register-machine expression. Registers are numbered as the kernel numbers them: 0 is the
/// verdict register, 1-4 the 128-bit registers, 8-23 the 32-bit ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `payload load LEN @ BASE + OFFSET => reg DREG`.
    Payload {
        /// Header.
        base: PayloadBase,
        /// Offset in bytes.
        offset: u32,
        /// Length in bytes.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `meta load KEY => reg DREG`.
    MetaLoad {
        /// Key.
        key: MetaKind,
        /// Destination register.
        dreg: u32,
    },
    /// `meta set KEY with reg SREG`.
    MetaSet {
        /// Key.
        key: MetaKind,
        /// Source register.
        sreg: u32,
    },
    /// `cmp eq|neq reg SREG DATA`.
    Cmp {
        /// Source register.
        sreg: u32,
        /// `!=` rather than `==`.
        neq: bool,
        /// The value compared with.
        data: Vec<u8>,
    },
    /// `bitwise reg DREG = (reg SREG & MASK) ^ XOR`.
    Bitwise {
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
        /// The mask.
        mask: Vec<u8>,
        /// The xor value (as long as the mask).
        xor: Vec<u8>,
    },
    /// `immediate reg DREG DATA`.
    Immediate {
        /// Destination register.
        dreg: u32,
        /// The value.
        data: Vec<u8>,
    },
    /// `immediate reg 0 VERDICT`.
    Verdict(Verdict),
    /// `lookup reg SREG set SET [dreg DREG]`.
    Lookup {
        /// The set's name (`__map%d` for an anonymous one made in the same batch).
        set: String,
        /// The set's transaction id, for sets made in the same batch.
        set_id: Option<u32>,
        /// Source register.
        sreg: u32,
        /// Destination register (0, the verdict register, for verdict maps).
        dreg: Option<u32>,
        /// Match when the key is absent (`NFT_LOOKUP_F_INV`).
        invert: bool,
    },
    /// `ct load state => reg DREG` (only the state key is used).
    CtState {
        /// Destination register.
        dreg: u32,
    },
    /// `fib saddr|daddr type => reg DREG`.
    FibAddrType {
        /// Look up the source address (else the destination).
        saddr: bool,
        /// Destination register.
        dreg: u32,
    },
    /// `numgen reg DREG = random mod MODULUS`.
    NumgenRandom {
        /// Modulus.
        modulus: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `nat dnat FAMILY addr_min reg A proto_min reg P flags F`.
    Dnat {
        /// NFPROTO of the address.
        family: u8,
        /// Register holding the address.
        addr_reg: u32,
        /// Register holding the port.
        proto_reg: u32,
        /// NF_NAT_RANGE_* flags.
        flags: u32,
    },
    /// `masq flags F`.
    Masq {
        /// NF_NAT_RANGE_* flags (0x10 is fully-random).
        flags: u32,
    },
    /// `reject type T code C`.
    Reject {
        /// NFT_REJECT_* type.
        kind: u32,
        /// ICMP code.
        code: u8,
    },
    /// `dynset update reg_key SREG set SET`.
    DynsetUpdate {
        /// The set.
        set: String,
        /// Its transaction id, when made in the same batch.
        set_id: Option<u32>,
        /// Register holding the key.
        sreg: u32,
    },
    /// `counter`.
    Counter,
    /// An expression podnet does not decode (another kind, or attributes podnet does not
    /// write), kept as the kernel sent it: its name and the attributes of its data, flags
    /// included. It encodes back to the same bytes, so a rule read back can be written back
    /// unchanged (as netlink-packet-route keeps `Other(DefaultNla)`).
    Other {
        /// The expression's name (`log`, `limit`, `ct`, ...).
        name: String,
        /// The value of its `NFTA_EXPR_DATA` nest.
        data: Vec<u8>,
    },
}

// Attribute numbers of the expressions netlink-packet-netfilter does not type.
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFTA_NG_OFFSET: u16 = 4;
const NFT_NG_RANDOM: u32 = 1;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_DNAT: u32 = 1;
const NFTA_MASQ_FLAGS: u16 = 1;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_SET_ID: u16 = 2;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
// Attribute numbers used when decoding the typed expressions from raw bytes.
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// NF_DROP, NF_ACCEPT and the nftables verdict codes.
pub(crate) const NF_DROP: u32 = 0;
pub(crate) const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = (-3i32) as u32;
const NFT_GOTO: u32 = (-4i32) as u32;
const NFT_RETURN: u32 = (-5i32) as u32;

fn u32_attr(kind: u16, v: u32) -> DefaultNla {
    DefaultNla::new(kind, v.to_be_bytes().to_vec())
}

fn str_attr(kind: u16, s: &str) -> DefaultNla {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    DefaultNla::new(kind, v)
}

fn other(name: &str, attributes: Vec<DefaultNla>) -> Expressions {
    Expressions::Other {
        expression_type: name.to_owned(),
        attributes,
    }
}

/// The verdict as the attributes of an `NFTA_DATA_VERDICT` nest.
pub(crate) fn verdict_attrs(v: &Verdict) -> Vec<VerdictAttribute> {
    match v {
        Verdict::Accept => vec![VerdictAttribute::Code(NlVerdict::Other(NF_ACCEPT))],
        Verdict::Drop => vec![VerdictAttribute::Code(NlVerdict::Other(NF_DROP))],
        Verdict::Return => vec![VerdictAttribute::Code(NlVerdict::Return)],
        Verdict::Jump(c) => vec![
            VerdictAttribute::Code(NlVerdict::Jump),
            VerdictAttribute::Chain(c.clone()),
        ],
        Verdict::Goto(c) => vec![
            VerdictAttribute::Code(NlVerdict::Goto),
            VerdictAttribute::Chain(c.clone()),
        ],
    }
}

impl Insn {
    /// The expression as an element of `NFTA_RULE_EXPRESSIONS`.
    pub fn encode(&self) -> ListAttribute<ExpressionAttribute> {
        let reg = Register::from;
        let ex = match self {
            Insn::Payload {
                base,
                offset,
                len,
                dreg,
            } => Expressions::Payload(vec![
                Payload::DestinationRegister(reg(*dreg)),
                Payload::Base(*base as u32),
                Payload::Offset(*offset),
                Payload::Len(*len),
            ]),
            Insn::MetaLoad { key, dreg } => Expressions::Meta(vec![
                Meta::Key(MetaKey::from(*key as u32)),
                Meta::DestinationRegister(reg(*dreg)),
            ]),
            Insn::MetaSet { key, sreg } => Expressions::Meta(vec![
                Meta::Key(MetaKey::from(*key as u32)),
                Meta::SourceRegister(reg(*sreg)),
            ]),
            Insn::Cmp { sreg, neq, data } => Expressions::Cmp(vec![
                Cmp::SourceRegister(reg(*sreg)),
                Cmp::Op(if *neq {
                    Operator::NotEqual
                } else {
                    Operator::Equal
                }),
                Cmp::Data(DataAttribute::Value(data.clone())),
            ]),
            Insn::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => Expressions::Bitwise(vec![
                Bitwise::SourceRegister(reg(*sreg)),
                Bitwise::DestinationRegister(reg(*dreg)),
                Bitwise::Length(mask.len() as u32),
                Bitwise::Mask(DataAttribute::Value(mask.clone())),
                Bitwise::Xor(DataAttribute::Value(xor.clone())),
            ]),
            Insn::Immediate { dreg, data } => Expressions::Immediate(vec![
                Immediate::DestinationRegister(reg(*dreg)),
                Immediate::Data(DataAttribute::Value(data.clone())),
            ]),
            Insn::Verdict(v) => Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Verdict),
                Immediate::Data(DataAttribute::Verdict(verdict_attrs(v))),
            ]),
            Insn::Lookup {
                set,
                set_id,
                sreg,
                dreg,
                invert,
            } => {
                let mut a = vec![Lookup::SourceRegister(reg(*sreg))];
                if let Some(d) = dreg {
                    a.push(Lookup::DestinationRegister(reg(*d)));
                }
                a.push(Lookup::Set(set.clone()));
                if let Some(id) = set_id {
                    a.push(Lookup::SetId(*id));
                }
                if *invert {
                    a.push(Lookup::Flags(NFT_LOOKUP_F_INV));
                }
                Expressions::Lookup(a)
            }
            Insn::CtState { dreg } => other(
                "ct",
                vec![
                    u32_attr(NFTA_CT_KEY, NFT_CT_STATE),
                    u32_attr(NFTA_CT_DREG, *dreg),
                ],
            ),
            Insn::FibAddrType { saddr, dreg } => other(
                "fib",
                vec![
                    u32_attr(
                        NFTA_FIB_FLAGS,
                        if *saddr {
                            NFTA_FIB_F_SADDR
                        } else {
                            NFTA_FIB_F_DADDR
                        },
                    ),
                    u32_attr(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE),
                    u32_attr(NFTA_FIB_DREG, *dreg),
                ],
            ),
            Insn::NumgenRandom { modulus, dreg } => other(
                "numgen",
                vec![
                    u32_attr(NFTA_NG_DREG, *dreg),
                    u32_attr(NFTA_NG_MODULUS, *modulus),
                    u32_attr(NFTA_NG_TYPE, NFT_NG_RANDOM),
                    u32_attr(NFTA_NG_OFFSET, 0),
                ],
            ),
            Insn::Dnat {
                family,
                addr_reg,
                proto_reg,
                flags,
            } => other(
                "nat",
                vec![
                    u32_attr(NFTA_NAT_TYPE, NFT_NAT_DNAT),
                    u32_attr(NFTA_NAT_FAMILY, u32::from(*family)),
                    u32_attr(NFTA_NAT_REG_ADDR_MIN, *addr_reg),
                    u32_attr(NFTA_NAT_REG_PROTO_MIN, *proto_reg),
                    u32_attr(NFTA_NAT_FLAGS, *flags),
                ],
            ),
            Insn::Masq { flags } => other("masq", vec![u32_attr(NFTA_MASQ_FLAGS, *flags)]),
            Insn::Reject { kind, code } => other(
                "reject",
                vec![
                    u32_attr(NFTA_REJECT_TYPE, *kind),
                    DefaultNla::new(NFTA_REJECT_ICMP_CODE, vec![*code]),
                ],
            ),
            Insn::DynsetUpdate { set, set_id, sreg } => {
                let mut a = vec![
                    u32_attr(NFTA_DYNSET_SREG_KEY, *sreg),
                    u32_attr(NFTA_DYNSET_OP, NFT_DYNSET_OP_UPDATE),
                    str_attr(NFTA_DYNSET_SET_NAME, set),
                ];
                if let Some(id) = set_id {
                    a.push(u32_attr(NFTA_DYNSET_SET_ID, *id));
                }
                other("dynset", a)
            }
            Insn::Counter => other("counter", vec![]),
            Insn::Other { name, data } => other(
                name,
                attrs_with_flags(data)
                    .map_while(Result::ok)
                    .map(|(kind, v)| DefaultNla::new(kind, v.to_vec()))
                    .collect(),
            ),
        };
        ListAttribute::from(ex)
    }

    /// Reads an expression of a rule dump back. Expressions (or attribute combinations)
    /// podnet does not write come back as [`Insn::Other`]; `None` only for a list element
    /// that is no expression (no name).
    pub fn decode(expr: &ListAttribute<ExpressionAttribute>) -> Option<Insn> {
        let ListAttribute::Element(attrs) = expr else {
            return None;
        };
        let mut name = None;
        let mut data = Vec::new();
        for a in attrs {
            match a {
                ExpressionAttribute::Name(n) => name = Some(n.as_str()),
                ExpressionAttribute::Data(d) => {
                    data = vec![0u8; d.buffer_len()];
                    d.emit(&mut data);
                }
                _ => {}
            }
        }
        let name = name?;
        Some(decode_raw(name, &data).unwrap_or_else(|| Insn::Other {
            name: name.to_owned(),
            data,
        }))
    }

    /// Whether podnet decoded the expression (it is not [`Insn::Other`]).
    pub fn is_decoded(&self) -> bool {
        !matches!(self, Insn::Other { .. })
    }
}

/// The attributes of a nest: `(kind without flags, value)`, up to the first malformed one.
pub(crate) fn tlvs(b: &[u8]) -> Vec<(u16, &[u8])> {
    attrs(b).map_while(Result::ok).collect()
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn get<'a>(a: &[(u16, &'a [u8])], k: u16) -> Option<&'a [u8]> {
    a.iter().find(|(kind, _)| *kind == k).map(|(_, v)| *v)
}

fn get32(a: &[(u16, &[u8])], k: u16) -> Option<u32> {
    get(a, k).and_then(be32)
}

/// The value of an `NFTA_DATA_VALUE` inside a data nest.
fn data_value(v: &[u8]) -> Option<Vec<u8>> {
    find(v, NFTA_DATA_VALUE).map(<[u8]>::to_vec)
}

/// A verdict from the body of an `NFTA_DATA_VERDICT` nest.
pub(crate) fn decode_verdict(v: &[u8]) -> Option<Verdict> {
    let a = tlvs(v);
    let code = get32(&a, NFTA_VERDICT_CODE)?;
    let chain = get(&a, NFTA_VERDICT_CHAIN).map(cstr);
    Some(match code {
        NF_DROP => Verdict::Drop,
        NF_ACCEPT => Verdict::Accept,
        NFT_RETURN => Verdict::Return,
        NFT_JUMP => Verdict::Jump(chain?),
        NFT_GOTO => Verdict::Goto(chain?),
        _ => return None,
    })
}

fn meta_kind(k: u32) -> Option<MetaKind> {
    Some(match k {
        3 => MetaKind::Mark,
        6 => MetaKind::Iifname,
        16 => MetaKind::L4Proto,
        _ => return None,
    })
}

fn decode_raw(name: &str, data: &[u8]) -> Option<Insn> {
    let a = tlvs(data);
    Some(match name {
        "payload" => Insn::Payload {
            base: match get32(&a, NFTA_PAYLOAD_BASE)? {
                1 => PayloadBase::Network,
                2 => PayloadBase::Transport,
                _ => return None,
            },
            offset: get32(&a, NFTA_PAYLOAD_OFFSET)?,
            len: get32(&a, NFTA_PAYLOAD_LEN)?,
            dreg: get32(&a, NFTA_PAYLOAD_DREG)?,
        },
        "meta" => {
            let key = meta_kind(get32(&a, NFTA_META_KEY)?)?;
            match (get32(&a, NFTA_META_DREG), get32(&a, NFTA_META_SREG)) {
                (Some(dreg), None) => Insn::MetaLoad { key, dreg },
                (None, Some(sreg)) => Insn::MetaSet { key, sreg },
                _ => return None,
            }
        }
        "cmp" => Insn::Cmp {
            sreg: get32(&a, NFTA_CMP_SREG)?,
            neq: match get32(&a, NFTA_CMP_OP)? {
                0 => false,
                1 => true,
                _ => return None,
            },
            data: data_value(get(&a, NFTA_CMP_DATA)?)?,
        },
        "bitwise" => Insn::Bitwise {
            sreg: get32(&a, NFTA_BITWISE_SREG)?,
            dreg: get32(&a, NFTA_BITWISE_DREG)?,
            mask: data_value(get(&a, NFTA_BITWISE_MASK)?)?,
            xor: data_value(get(&a, NFTA_BITWISE_XOR)?)?,
        },
        "immediate" => {
            let dreg = get32(&a, NFTA_IMMEDIATE_DREG)?;
            let d = get(&a, NFTA_IMMEDIATE_DATA)?;
            if dreg == 0 {
                Insn::Verdict(decode_verdict(get(&tlvs(d), NFTA_DATA_VERDICT)?)?)
            } else {
                Insn::Immediate {
                    dreg,
                    data: data_value(d)?,
                }
            }
        }
        "lookup" => Insn::Lookup {
            set: cstr(get(&a, NFTA_LOOKUP_SET)?),
            set_id: get32(&a, NFTA_LOOKUP_SET_ID),
            sreg: get32(&a, NFTA_LOOKUP_SREG)?,
            dreg: get32(&a, NFTA_LOOKUP_DREG),
            invert: get32(&a, NFTA_LOOKUP_FLAGS).unwrap_or(0) & NFT_LOOKUP_F_INV != 0,
        },
        "ct" if get32(&a, NFTA_CT_KEY)? == NFT_CT_STATE => Insn::CtState {
            dreg: get32(&a, NFTA_CT_DREG)?,
        },
        "fib" if get32(&a, NFTA_FIB_RESULT)? == NFT_FIB_RESULT_ADDRTYPE => Insn::FibAddrType {
            saddr: get32(&a, NFTA_FIB_FLAGS)? == NFTA_FIB_F_SADDR,
            dreg: get32(&a, NFTA_FIB_DREG)?,
        },
        "numgen"
            if get32(&a, NFTA_NG_TYPE)? == NFT_NG_RANDOM
                && get32(&a, NFTA_NG_OFFSET).unwrap_or(0) == 0 =>
        {
            Insn::NumgenRandom {
                modulus: get32(&a, NFTA_NG_MODULUS)?,
                dreg: get32(&a, NFTA_NG_DREG)?,
            }
        }
        "nat" if get32(&a, NFTA_NAT_TYPE)? == NFT_NAT_DNAT => Insn::Dnat {
            family: u8::try_from(get32(&a, NFTA_NAT_FAMILY)?).ok()?,
            addr_reg: get32(&a, NFTA_NAT_REG_ADDR_MIN)?,
            proto_reg: get32(&a, NFTA_NAT_REG_PROTO_MIN)?,
            flags: get32(&a, NFTA_NAT_FLAGS).unwrap_or(0),
        },
        "masq" => Insn::Masq {
            flags: get32(&a, NFTA_MASQ_FLAGS).unwrap_or(0),
        },
        "reject" => Insn::Reject {
            kind: get32(&a, NFTA_REJECT_TYPE)?,
            code: *get(&a, NFTA_REJECT_ICMP_CODE)?.first()?,
        },
        // Only the plain form podnet writes for kube-proxy's layout (no data, no timeout of
        // its own: the kernel dumps a zero one); the maps layout's dynsets stay `Other`.
        "dynset"
            if get32(&a, NFTA_DYNSET_OP)? == NFT_DYNSET_OP_UPDATE
                && get(&a, 5).is_none()
                && get(&a, 6).is_none_or(|t| t.iter().all(|b| *b == 0)) =>
        {
            Insn::DynsetUpdate {
                set: cstr(get(&a, NFTA_DYNSET_SET_NAME)?),
                set_id: get32(&a, NFTA_DYNSET_SET_ID),
                sreg: get32(&a, NFTA_DYNSET_SREG_KEY)?,
            }
        }
        "counter" => Insn::Counter,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(i: Insn) {
        let enc = i.encode();
        assert_eq!(Insn::decode(&enc), Some(i.clone()), "{i:?}");
    }

    #[test]
    fn every_expression_decodes_back_to_itself() {
        roundtrip(Insn::Payload {
            base: PayloadBase::Network,
            offset: 16,
            len: 4,
            dreg: 1,
        });
        roundtrip(Insn::MetaLoad {
            key: MetaKind::L4Proto,
            dreg: 9,
        });
        roundtrip(Insn::MetaSet {
            key: MetaKind::Mark,
            sreg: 1,
        });
        roundtrip(Insn::Cmp {
            sreg: 1,
            neq: true,
            data: vec![10],
        });
        roundtrip(Insn::Bitwise {
            sreg: 1,
            dreg: 1,
            mask: vec![0xff, 0xbf, 0xff, 0xff],
            xor: vec![0, 0x40, 0, 0],
        });
        roundtrip(Insn::Immediate {
            dreg: 2,
            data: vec![0, 80],
        });
        roundtrip(Insn::Verdict(Verdict::Goto("svc".into())));
        roundtrip(Insn::Verdict(Verdict::Drop));
        roundtrip(Insn::Verdict(Verdict::Return));
        roundtrip(Insn::Lookup {
            set: "__map%d".into(),
            set_id: Some(3),
            sreg: 1,
            dreg: Some(0),
            invert: false,
        });
        roundtrip(Insn::Lookup {
            set: "s".into(),
            set_id: None,
            sreg: 1,
            dreg: None,
            invert: true,
        });
        roundtrip(Insn::CtState { dreg: 1 });
        roundtrip(Insn::FibAddrType {
            saddr: true,
            dreg: 1,
        });
        roundtrip(Insn::NumgenRandom {
            modulus: 3,
            dreg: 1,
        });
        roundtrip(Insn::Dnat {
            family: 2,
            addr_reg: 1,
            proto_reg: 2,
            flags: 2,
        });
        roundtrip(Insn::Masq { flags: 0x10 });
        roundtrip(Insn::Reject { kind: 0, code: 3 });
        roundtrip(Insn::DynsetUpdate {
            set: "aff".into(),
            set_id: None,
            sreg: 1,
        });
        roundtrip(Insn::Counter);
    }

    /// Bytes of one `NFTA_LIST_ELEM` expression as the kernel sends it: name, then data.
    fn raw_expression(name: &str, data: &[u8]) -> Vec<u8> {
        let mut w = podnet_links::nlattr::AttrWriter::new();
        w.string(1, name);
        w.bytes(2 | 0x8000, data);
        let mut outer = podnet_links::nlattr::AttrWriter::new();
        outer.bytes(1 | 0x8000, &w.into_bytes());
        outer.into_bytes()
    }

    fn parse_expression(bytes: &[u8]) -> ListAttribute<ExpressionAttribute> {
        use netlink_packet_core::{NlaBuffer, Parseable};
        ListAttribute::parse(&NlaBuffer::new_checked(bytes).unwrap()).unwrap()
    }

    #[test]
    fn expressions_podnet_does_not_decode_are_kept_and_written_back_unchanged() {
        // `log prefix "x" group 2` (no typed form here) and a `ct` load of another key
        // (NFT_CT_MARK): both kept whole, flags of nested attributes included.
        let mut log = podnet_links::nlattr::AttrWriter::new();
        log.string(2, "x"); // NFTA_LOG_PREFIX
        log.bytes(1, &2u16.to_be_bytes()); // NFTA_LOG_GROUP
        log.nested(9, |w| w.u32_ne(1, 5)); // some nest
        let mut ct = podnet_links::nlattr::AttrWriter::new();
        ct.bytes(NFTA_CT_KEY, &3u32.to_be_bytes());
        ct.bytes(NFTA_CT_DREG, &1u32.to_be_bytes());
        for (name, data) in [("log", log.into_bytes()), ("ct", ct.into_bytes())] {
            let bytes = raw_expression(name, &data);
            let insn = Insn::decode(&parse_expression(&bytes)).unwrap();
            assert_eq!(
                insn,
                Insn::Other {
                    name: name.into(),
                    data: data.clone()
                }
            );
            assert!(!insn.is_decoded());
            let enc = insn.encode();
            let mut out = vec![0u8; enc.buffer_len()];
            enc.emit(&mut out);
            assert_eq!(out, bytes, "{name} is written back byte for byte");
            assert_eq!(Insn::decode(&enc), Some(insn));
        }
    }

    #[test]
    fn garbage_does_not_decode_or_panic() {
        assert_eq!(decode_raw("payload", &[1, 2, 3]), None);
        assert_eq!(decode_raw("cmp", &[255, 255, 0, 0, 1]), None);
        assert_eq!(decode_raw("nonesuch", &[]), None);
        assert!(tlvs(&[8, 0, 1]).is_empty());
    }
}
