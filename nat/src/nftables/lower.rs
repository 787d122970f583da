//! Lowering: each [`Expr`] of a rule turned into the register-machine expressions ([`Insn`])
//! nft 1.0.6 would send for the same text, and the anonymous sets some of them need.
//!
//! The kernel evaluates a rule as a little program over registers: loads (`payload`, `meta`,
//! `ct`, `fib`, `numgen`) fill a register, `bitwise` masks it, `cmp` and `lookup` end the rule
//! when the register does not match, and statements (`nat`, `masq`, `reject`, `dynset`, an
//! `immediate` verdict) act on the packet. Every match below loads into register 1 (nft's first
//! 128-bit register) unless it builds a concatenation, which takes nft's numbering of 32-bit
//! words ([`reg32`]).
//!
//! Lowering follows nft byte for byte where it matters for reading the rules back: a prefix on a
//! byte boundary loads only its bytes, a one-element anonymous set becomes a plain comparison,
//! and the userdata of anonymous sets is what nft records.

use super::expr::{Insn, MetaKind, PayloadBase};
use super::rule::{AddrField, AddrItem, Affinity, Expr, VmapKey};
use super::types::{Family, Verdict, proto_number};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// An anonymous set a rule needs, sent right before the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnonSet {
    /// `__map%d` or `__set%d`: the kernel picks the number.
    pub name: &'static str,
    /// Transaction id the rule refers to it by.
    pub id: u32,
    /// NFT_SET_* flags.
    pub flags: u32,
    /// nft's key datatype.
    pub key_type: u32,
    /// Key bytes.
    pub key_len: u32,
    /// A verdict map.
    pub verdict_map: bool,
    /// nft's userdata.
    pub udata: Vec<u8>,
    /// Elements: key bytes, interval-end flag, verdict.
    pub elements: Vec<(Vec<u8>, bool, Option<Verdict>)>,
}

/// Builds rules: numbers anonymous sets within one batch.
#[derive(Debug, Default)]
pub(crate) struct Lowering {
    /// The next set id.
    pub next_set_id: u32,
    /// Anonymous sets made for the rules lowered so far (taken by the caller).
    pub anon: Vec<AnonSet>,
}

impl Lowering {
    /// Lowering for one batch: set ids start at 1 (the kernel refuses id 0 as "no id").
    pub(crate) fn for_batch() -> Lowering {
        Lowering {
            next_set_id: 1,
            anon: Vec::new(),
        }
    }

    /// Takes the next set id of the batch and records `set` (made with that id) to be sent
    /// before the rule.
    fn add_anon(&mut self, set: impl FnOnce(u32) -> AnonSet) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        self.anon.push(set(id));
        id
    }
}

/// nft's register for the `slot`th 32-bit word of a concatenation: words on a 16-byte boundary
/// start a 128-bit register (1-4), the others use the 32-bit registers (8-23) of the same bytes.
fn reg32(slot: u32) -> u32 {
    if slot % 4 == 0 {
        1 + slot / 4
    } else {
        8 + slot
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn net_bounds(n: IpNet) -> (u128, u128) {
    match n {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn value_bytes(v: u128, family: Family) -> Vec<u8> {
    match family {
        Family::Ip => (v as u32).to_be_bytes().to_vec(),
        Family::Ip6 => v.to_be_bytes().to_vec(),
    }
}

/// `payload load LEN @ network header + offset of FIELD => reg 1`.
fn load_addr(family: Family, field: AddrField, len: u32) -> Insn {
    Insn::Payload {
        base: PayloadBase::Network,
        offset: field.offset(family),
        len,
        dreg: 1,
    }
}

/// `meta load KEY => reg 1`.
fn load_meta(key: MetaKind) -> Insn {
    Insn::MetaLoad { key, dreg: 1 }
}

/// `cmp eq|neq reg 1 DATA`.
fn cmp(neq: bool, data: Vec<u8>) -> Insn {
    Insn::Cmp { sreg: 1, neq, data }
}

/// `bitwise reg 1 = (reg 1 & MASK) ^ XOR`.
fn mask(mask: Vec<u8>, xor: Vec<u8>) -> Insn {
    Insn::Bitwise {
        sreg: 1,
        dreg: 1,
        mask,
        xor,
    }
}

impl Expr {
    /// Appends the expression's register-machine form to `insns`; anonymous sets it needs go
    /// to `low.anon`.
    pub(crate) fn lower(&self, family: Family, low: &mut Lowering, insns: &mut Vec<Insn>) {
        match self {
            Expr::Addr { field, neg, item } => {
                lower_prefix(family, *field, *neg, item.net(), insns);
            }
            Expr::AddrSet {
                field, neg, items, ..
            } => lower_addr_set(family, *field, *neg, items, low, insns),
            Expr::AddrInSet { field, set } => {
                // Load the address, then "lookup reg 1 set NAME" (no dreg: a plain membership
                // test).
                insns.push(load_addr(family, *field, family.addr_len()));
                insns.push(Insn::Lookup {
                    set: set.clone(),
                    set_id: None,
                    sreg: 1,
                    dreg: None,
                    invert: false,
                });
            }
            Expr::FibLocal(f) => {
                // fib's address-type result is an RTN_* number in host order; RTN_LOCAL is 2.
                insns.push(Insn::FibAddrType {
                    saddr: *f == AddrField::Src,
                    dreg: 1,
                });
                insns.push(cmp(false, 2u32.to_ne_bytes().to_vec()));
            }
            Expr::CtStateNew => {
                // ct state is a bit field: "new" is "state & NEW bit != 0", as nft writes it.
                insns.push(Insn::CtState { dreg: 1 });
                insns.push(mask(8u32.to_ne_bytes().to_vec(), vec![0; 4])); // IP_CT_NEW bit
                insns.push(cmp(true, vec![0; 4]));
            }
            Expr::L4Proto(p) => {
                insns.push(load_meta(MetaKind::L4Proto));
                insns.push(cmp(false, vec![proto_number(*p)]));
            }
            Expr::IifName { neg, name } => lower_iifname(*neg, name, insns),
            Expr::MarkEq { .. }
            | Expr::MarkBitsSet { .. }
            | Expr::MarkAndZero { .. }
            | Expr::MarkSetOr { .. }
            | Expr::MarkSetXor { .. } => lower_mark(self, insns),
            Expr::Vmap { key, map } => lower_vmap(family, *key, map, insns),
            Expr::Numgen { targets } => lower_numgen(targets, low, insns),
            Expr::Update { set, field } => {
                // Load the address and add it to (or refresh it in) the dynamic set.
                insns.push(load_addr(family, *field, family.addr_len()));
                insns.push(Insn::DynsetUpdate {
                    set: set.clone(),
                    set_id: None,
                    sreg: 1,
                });
            }
            Expr::Masquerade { fully_random } => insns.push(Insn::Masq {
                flags: if *fully_random { 0x10 } else { 0 }, // NF_NAT_RANGE_PROTO_RANDOM_FULLY
            }),
            Expr::Dnat(sa) => lower_dnat(family, *sa, insns),
            Expr::Reject => insns.push(Insn::Reject {
                kind: 0, // NFT_REJECT_ICMP_UNREACH
                code: match family {
                    Family::Ip => 3,  // port unreachable
                    Family::Ip6 => 4, // port unreachable
                },
            }),
            Expr::Verdict(v) => insns.push(Insn::Verdict(v.clone())),
            Expr::SlotDnat {
                map,
                modulus,
                offset,
                affinity,
            } => lower_slot_dnat(family, map, *modulus, *offset, affinity.as_ref(), insns),
            Expr::AffinityDnat { affinity, live } => {
                lower_affinity(family, affinity, live, false, insns);
            }
            Expr::AffinityForget { affinity, live } => {
                lower_affinity(family, affinity, live, true, insns);
            }
            Expr::AddrPairInSet { set } => {
                let a = family.addr_len() / 4;
                insns.push(Insn::Payload {
                    base: PayloadBase::Network,
                    offset: AddrField::Src.offset(family),
                    len: family.addr_len(),
                    dreg: word(0),
                });
                insns.push(Insn::Payload {
                    base: PayloadBase::Network,
                    offset: AddrField::Dst.offset(family),
                    len: family.addr_len(),
                    dreg: word(a),
                });
                insns.push(Insn::Lookup {
                    set: set.clone(),
                    set_id: None,
                    sreg: word(0),
                    dreg: None,
                    invert: false,
                });
            }
        }
    }
}

/// The 32-bit register of word `w` of the register file (`NFT_REG32_00 + w`).
fn word(w: u32) -> u32 {
    8 + w
}

/// The attributes of an expression nft-podnet has no typed form for, as the bytes of its
/// `NFTA_EXPR_DATA` nest.
fn raw_expr(name: &str, attrs: &[(u16, Vec<u8>)]) -> Insn {
    let mut data = Vec::new();
    for (kind, v) in attrs {
        let len = 4 + v.len();
        data.extend_from_slice(&(len as u16).to_ne_bytes());
        data.extend_from_slice(&kind.to_ne_bytes());
        data.extend_from_slice(v);
        data.resize(data.len().div_ceil(4) * 4, 0);
    }
    Insn::Other {
        name: name.to_owned(),
        data,
    }
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

// nft_dynset attributes and operations.
const NFTA_DYNSET_SET_NAME: u16 = 1;
const NFTA_DYNSET_OP: u16 = 3;
const NFTA_DYNSET_SREG_KEY: u16 = 4;
const NFTA_DYNSET_SREG_DATA: u16 = 5;
const NFTA_DYNSET_TIMEOUT: u16 = 6;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_DYNSET_OP_DELETE: u32 = 2;

/// `dynset update|delete @MAP { reg KEY : reg DATA }` with the affinity's timeout.
fn dynset(a: &Affinity, delete: bool, key: u32, data: u32) -> Insn {
    let mut attrs = vec![
        (NFTA_DYNSET_SET_NAME, cstring(&a.map)),
        (
            NFTA_DYNSET_OP,
            be32(if delete {
                NFT_DYNSET_OP_DELETE
            } else {
                NFT_DYNSET_OP_UPDATE
            }),
        ),
        (NFTA_DYNSET_SREG_KEY, be32(key)),
        (NFTA_DYNSET_SREG_DATA, be32(data)),
    ];
    if !delete {
        attrs.push((
            NFTA_DYNSET_TIMEOUT,
            (u64::from(a.timeout) * 1000).to_be_bytes().to_vec(),
        ));
    }
    raw_expr("dynset", &attrs)
}

/// `group . saddr` into words `w` and `w + 1..`.
fn load_group_saddr(family: Family, group: u32, w: u32, insns: &mut Vec<Insn>) {
    insns.push(Insn::Immediate {
        dreg: word(w),
        data: group.to_ne_bytes().to_vec(),
    });
    insns.push(Insn::Payload {
        base: PayloadBase::Network,
        offset: AddrField::Src.offset(family),
        len: family.addr_len(),
        dreg: word(w + 1),
    });
}

/// DNAT to the address in word 1 and the port in the word after it.
fn dnat_from_words(family: Family, insns: &mut Vec<Insn>) {
    let a = family.addr_len() / 4;
    insns.push(Insn::Dnat {
        family: family.nfproto(),
        addr_reg: word(1),
        proto_reg: word(1 + a),
        flags: 0x2, // NF_NAT_RANGE_PROTO_SPECIFIED
    });
}

/// The maps layout's endpoint choice. Registers (32-bit words): the slot number in word 0,
/// the endpoint's address and port from the slot map in words 1.., and for affinity the key
/// `group . saddr` after them, written with the endpoint as data into the affinity map.
fn lower_slot_dnat(
    family: Family,
    map: &str,
    modulus: u32,
    offset: u32,
    affinity: Option<&Affinity>,
    insns: &mut Vec<Insn>,
) {
    const NFTA_NG_DREG: u16 = 1;
    const NFTA_NG_MODULUS: u16 = 2;
    const NFTA_NG_TYPE: u16 = 3;
    const NFTA_NG_OFFSET: u16 = 4;
    insns.push(raw_expr(
        "numgen",
        &[
            (NFTA_NG_DREG, be32(word(0))),
            (NFTA_NG_MODULUS, be32(modulus)),
            (NFTA_NG_TYPE, be32(1)), // NFT_NG_RANDOM
            (NFTA_NG_OFFSET, be32(offset)),
        ],
    ));
    insns.push(Insn::Lookup {
        set: map.to_owned(),
        set_id: None,
        sreg: word(0),
        dreg: Some(word(1)),
        invert: false,
    });
    if let Some(a) = affinity {
        let key = 2 + family.addr_len() / 4;
        load_group_saddr(family, a.group, key, insns);
        insns.push(dynset(a, false, word(key), word(1)));
    }
    dnat_from_words(family, insns);
}

/// The maps layout's affinity rules: `group . saddr` (words 0..) looked up in the affinity
/// map, the endpoint it gives (words 1..) checked against the live endpoints (`group . ADDR .
/// port`, words 0..); then either (hit) the entry refreshed and the packet DNATed to it, or
/// (`forget`, the endpoint is gone) the entry deleted.
fn lower_affinity(family: Family, a: &Affinity, live: &str, forget: bool, insns: &mut Vec<Insn>) {
    load_group_saddr(family, a.group, 0, insns);
    insns.push(Insn::Lookup {
        set: a.map.clone(),
        set_id: None,
        sreg: word(0),
        dreg: Some(word(1)),
        invert: false,
    });
    insns.push(Insn::Lookup {
        set: live.to_owned(),
        set_id: None,
        sreg: word(0),
        dreg: None,
        invert: forget,
    });
    let key = 2 + family.addr_len() / 4;
    load_group_saddr(family, a.group, key, insns);
    insns.push(dynset(a, forget, word(key), word(1)));
    if !forget {
        dnat_from_words(family, insns);
    }
}

/// A comparison with an address or prefix, as nft encodes it: whole bytes of a byte-aligned
/// prefix, else the whole address masked.
fn lower_prefix(family: Family, field: AddrField, neg: bool, net: IpNet, insns: &mut Vec<Insn>) {
    let bits = u32::from(net.prefix_len());
    let addr = octets(net.network());
    if bits % 8 == 0 {
        // Byte-aligned (a /32, /24, /8, ...): load just the prefix's bytes and compare them.
        let n = bits / 8;
        insns.push(load_addr(family, field, n));
        insns.push(cmp(neg, addr[..n as usize].to_vec()));
    } else {
        // Otherwise load the whole address, clear the host bits, compare with the network.
        let alen = family.addr_len();
        insns.push(load_addr(family, field, alen));
        insns.push(mask(octets(net.netmask()), vec![0; alen as usize]));
        insns.push(cmp(neg, addr));
    }
}

/// `ip saddr [!=] { A , B }`: one item is a plain comparison (as nft folds it); more become an
/// anonymous interval set made in the same batch and a lookup in it (inverted for `!=`).
fn lower_addr_set(
    family: Family,
    field: AddrField,
    neg: bool,
    items: &[AddrItem],
    low: &mut Lowering,
    insns: &mut Vec<Insn>,
) {
    if let [item] = items {
        lower_prefix(family, field, neg, item.net(), insns);
        return;
    }
    let id = low.add_anon(|id| interval_set(family, field, id, items));
    insns.push(load_addr(family, field, family.addr_len()));
    insns.push(Insn::Lookup {
        set: "__set%d".into(),
        set_id: Some(id),
        sreg: 1,
        dreg: None,
        invert: neg,
    });
}

/// `iifname [!=] "NAME"`: the name register holds IFNAMSIZ (16) bytes; an exact name is
/// compared NUL-padded to all 16, a `prefix*` wildcard compares only the prefix's bytes.
fn lower_iifname(neg: bool, name: &str, insns: &mut Vec<Insn>) {
    insns.push(load_meta(MetaKind::Iifname));
    let data = match name.strip_suffix('*') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut d = name.as_bytes().to_vec();
            d.resize(16, 0);
            d
        }
    };
    insns.push(cmp(neg, data));
}

/// The packet-mark matches and statements. The mark is a host-order u32 in `meta mark`.
fn lower_mark(e: &Expr, insns: &mut Vec<Insn>) {
    insns.push(load_meta(MetaKind::Mark));
    match *e {
        // `meta mark M`: compare the whole mark.
        Expr::MarkEq { mark, .. } => insns.push(cmp(false, mark.to_ne_bytes().to_vec())),
        // `meta mark & M == M`: keep M's bits, they must all be set.
        Expr::MarkBitsSet { mark, .. } => {
            insns.push(mask(mark.to_ne_bytes().to_vec(), vec![0; 4]));
            insns.push(cmp(false, mark.to_ne_bytes().to_vec()));
        }
        // `mark and M == 0`: keep M's bits, none may be set.
        Expr::MarkAndZero { mark, .. } => {
            insns.push(mask(mark.to_ne_bytes().to_vec(), vec![0; 4]));
            insns.push(cmp(false, vec![0; 4]));
        }
        // `mark set mark or M` is (mark & !M) ^ M; `mark set mark xor M` is (mark & ~0) ^ M.
        // Both write the register back into the packet mark.
        Expr::MarkSetOr { mark, .. } | Expr::MarkSetXor { mark, .. } => {
            let keep = if matches!(e, Expr::MarkSetOr { .. }) {
                !mark
            } else {
                u32::MAX
            };
            insns.push(mask(
                keep.to_ne_bytes().to_vec(),
                mark.to_ne_bytes().to_vec(),
            ));
            insns.push(Insn::MetaSet {
                key: MetaKind::Mark,
                sreg: 1,
            });
        }
        _ => unreachable!("lower_mark is called for mark expressions only"),
    }
}

/// `[ip daddr .] meta l4proto . th dport vmap @MAP`: the key's parts are loaded into
/// consecutive 32-bit words (the address fills one 128-bit register or one word, the protocol
/// and the port take a word each), then one lookup from register 1 writes the verdict
/// register (dreg 0).
fn lower_vmap(family: Family, key: VmapKey, map: &str, insns: &mut Vec<Insn>) {
    let mut slot = 0;
    if key == VmapKey::DaddrProtoPort {
        let alen = family.addr_len();
        insns.push(load_addr(family, AddrField::Dst, alen));
        slot = alen / 4;
    }
    insns.push(Insn::MetaLoad {
        key: MetaKind::L4Proto,
        dreg: reg32(slot),
    });
    // th dport: two bytes at offset 2 of the transport header (TCP, UDP and SCTP alike).
    insns.push(Insn::Payload {
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
        dreg: reg32(slot + 1),
    });
    insns.push(Insn::Lookup {
        set: map.to_owned(),
        set_id: None,
        sreg: 1,
        dreg: Some(0),
        invert: false,
    });
}

/// `numgen random mod N vmap { 0 : goto A , ... }`: an anonymous constant verdict map from
/// 0..N to the targets, made in the same batch; a random number below N is looked up in it.
fn lower_numgen(targets: &[String], low: &mut Lowering, insns: &mut Vec<Insn>) {
    let id = low.add_anon(|id| AnonSet {
        name: "__map%d",
        id,
        flags: 0x1 | 0x2 | 0x8, // anonymous, constant, map
        key_type: 4,            // integer
        key_len: 4,
        verdict_map: true,
        // nft's userdata: key byte order host, "typeof numgen random mod N".
        udata: vec![
            0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 4, 8, 0, 4, 1, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
        ],
        elements: targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    (i as u32).to_ne_bytes().to_vec(),
                    false,
                    Some(Verdict::Goto(t.clone())),
                )
            })
            .collect(),
    });
    insns.push(Insn::NumgenRandom {
        modulus: targets.len() as u32,
        dreg: 1,
    });
    insns.push(Insn::Lookup {
        set: "__map%d".into(),
        set_id: Some(id),
        sreg: 1,
        dreg: Some(0),
        invert: false,
    });
}

/// `dnat to ADDR:PORT`: the address goes to register 1 and the port (network order) to
/// register 2 as immediates; the nat expression reads them, with the port range flagged as
/// given.
fn lower_dnat(family: Family, sa: SocketAddr, insns: &mut Vec<Insn>) {
    insns.push(Insn::Immediate {
        dreg: 1,
        data: octets(sa.ip()),
    });
    insns.push(Insn::Immediate {
        dreg: 2,
        data: sa.port().to_be_bytes().to_vec(),
    });
    insns.push(Insn::Dnat {
        family: family.nfproto(),
        addr_reg: 1,
        proto_reg: 2,
        flags: 0x2, // NF_NAT_RANGE_PROTO_SPECIFIED
    });
}

/// An anonymous interval set of addresses, as nft builds it: ranges sorted and merged, each a
/// start element and an end-flagged element one past its end, and an end-flagged zero first
/// when the first range does not start at zero.
fn interval_set(family: Family, field: AddrField, id: u32, items: &[AddrItem]) -> AnonSet {
    let max = match family {
        Family::Ip => u128::from(u32::MAX),
        Family::Ip6 => u128::MAX,
    };
    let mut ranges: Vec<(u128, u128)> = items.iter().map(|i| net_bounds(i.net())).collect();
    ranges.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut elements = Vec::new();
    if merged.first().is_some_and(|r| r.0 != 0) {
        elements.push((value_bytes(0, family), true, None));
    }
    for (s, e) in merged {
        elements.push((value_bytes(s, family), false, None));
        if e != max {
            elements.push((value_bytes(e + 1, family), true, None));
        }
    }
    let proto_desc = match family {
        Family::Ip => 12,
        Family::Ip6 => 13,
    };
    // Key byte order big endian; auto-merge; "typeof ip saddr": payload of the IP header's
    // field, as nft records them.
    let mut udata = vec![
        0, 4, 2, 0, 0, 0, 2, 4, 1, 0, 0, 0, 3, 0x14, 0, 4, 7, 0, 0, 0, 1, 0x0c, 0, 4, 0, 0, 0, 0,
        1, 4, 0, 0, 0, 0,
    ];
    udata[24] = proto_desc;
    udata[30] = field.nft_field(family);
    AnonSet {
        name: "__set%d",
        id,
        flags: 0x1 | 0x2 | 0x4, // anonymous, constant, interval
        key_type: family.addr_type().type_id(),
        key_len: family.addr_len(),
        verdict_map: false,
        udata,
        elements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_lower_like_nft() {
        let mut low = Lowering::default();
        let mut v = Vec::new();
        Expr::Addr {
            field: AddrField::Src,
            neg: true,
            item: AddrItem::Net("10.0.0.0/8".parse().unwrap()),
        }
        .lower(Family::Ip, &mut low, &mut v);
        assert_eq!(
            v,
            vec![
                Insn::Payload {
                    base: PayloadBase::Network,
                    offset: 12,
                    len: 1,
                    dreg: 1
                },
                Insn::Cmp {
                    sreg: 1,
                    neq: true,
                    data: vec![10]
                }
            ]
        );
        let mut v = Vec::new();
        Expr::Addr {
            field: AddrField::Src,
            neg: true,
            item: AddrItem::Net("203.0.113.0/25".parse().unwrap()),
        }
        .lower(Family::Ip, &mut low, &mut v);
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[1],
            Insn::Bitwise {
                sreg: 1,
                dreg: 1,
                mask: vec![255, 255, 255, 128],
                xor: vec![0; 4]
            }
        );
    }

    #[test]
    fn marks_lower_like_nft() {
        let mut low = Lowering::default();
        let mut v = Vec::new();
        Expr::MarkSetOr {
            mark: 0x4000,
            text: "0x4000".into(),
        }
        .lower(Family::Ip, &mut low, &mut v);
        assert_eq!(
            v,
            vec![
                load_meta(MetaKind::Mark),
                mask(
                    (!0x4000u32).to_ne_bytes().to_vec(),
                    0x4000u32.to_ne_bytes().to_vec()
                ),
                Insn::MetaSet {
                    key: MetaKind::Mark,
                    sreg: 1
                },
            ]
        );
        let mut v = Vec::new();
        Expr::MarkAndZero {
            mark: 0x4000,
            text: "0x4000".into(),
        }
        .lower(Family::Ip, &mut low, &mut v);
        assert_eq!(v[2], cmp(false, vec![0; 4]));
        assert!(low.anon.is_empty());
    }

    #[test]
    fn address_sets_and_numgen_make_anonymous_sets_with_batch_ids() {
        let mut low = Lowering::for_batch();
        let mut v = Vec::new();
        Expr::AddrSet {
            field: AddrField::Src,
            neg: true,
            items: vec![
                AddrItem::Ip("1.2.3.4".parse().unwrap()),
                AddrItem::Ip("5.6.7.8".parse().unwrap()),
            ],
            spaced: true,
        }
        .lower(Family::Ip, &mut low, &mut v);
        Expr::Numgen {
            targets: vec!["a".into(), "b".into()],
        }
        .lower(Family::Ip, &mut low, &mut v);
        let ids: Vec<(&str, u32)> = low.anon.iter().map(|s| (s.name, s.id)).collect();
        assert_eq!(ids, vec![("__set%d", 1), ("__map%d", 2)]);
        assert!(matches!(
            &v[1],
            Insn::Lookup {
                set_id: Some(1),
                invert: true,
                dreg: None,
                ..
            }
        ));
        assert!(matches!(
            &v[3],
            Insn::Lookup {
                set_id: Some(2),
                dreg: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn interval_sets_are_sorted_merged_and_bounded() {
        let items = [
            AddrItem::Net("192.168.0.0/24".parse().unwrap()),
            AddrItem::Ip("1.2.3.4".parse().unwrap()),
            AddrItem::Net("203.0.113.0/25".parse().unwrap()),
            AddrItem::Ip("5.6.7.8".parse().unwrap()),
        ];
        let s = interval_set(Family::Ip, AddrField::Src, 4, &items);
        let keys: Vec<(Vec<u8>, bool)> = s.elements.iter().map(|e| (e.0.clone(), e.1)).collect();
        assert_eq!(
            keys,
            vec![
                (vec![0, 0, 0, 0], true),
                (vec![1, 2, 3, 4], false),
                (vec![1, 2, 3, 5], true),
                (vec![5, 6, 7, 8], false),
                (vec![5, 6, 7, 9], true),
                (vec![192, 168, 0, 0], false),
                (vec![192, 168, 1, 0], true),
                (vec![203, 0, 113, 0], false),
                (vec![203, 0, 113, 128], true),
            ]
        );
        assert_eq!(reg32(0), 1);
        assert_eq!(reg32(1), 9);
        assert_eq!(reg32(4), 2);
        assert_eq!(reg32(5), 13);
    }
}
