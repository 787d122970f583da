//! The rule language: the matches and statements kube-proxy's nftables rules (and flannel's,
//! [`crate::flannel_nft`]) are made of, each written as nft text and lowered to the
//! register-machine expressions nft itself would send.
//!
//! Lowering follows nft 1.0.6 byte for byte where it matters for reading the rules back: a
//! prefix on a byte boundary loads only its bytes, a one-element anonymous set becomes a plain
//! comparison, and concatenations use nft's register numbering.

use super::expr::{Insn, MetaKind, PayloadBase};
use super::model::{Family, Verdict};
use crate::iptables::Protocol;
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Which address of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrField {
    /// `saddr`.
    Src,
    /// `daddr`.
    Dst,
}

impl AddrField {
    fn name(self) -> &'static str {
        match self {
            AddrField::Src => "saddr",
            AddrField::Dst => "daddr",
        }
    }

    fn offset(self, family: Family) -> u32 {
        match (family, self) {
            (Family::Ip, AddrField::Src) => 12,
            (Family::Ip, AddrField::Dst) => 16,
            (Family::Ip6, AddrField::Src) => 8,
            (Family::Ip6, AddrField::Dst) => 24,
        }
    }

    /// nft's header field number, kept in the userdata of anonymous interval sets.
    fn nft_field(self, family: Family) -> u8 {
        match (family, self) {
            (Family::Ip, AddrField::Src) => 11,
            (Family::Ip, AddrField::Dst) => 12,
            (Family::Ip6, AddrField::Src) => 8,
            (Family::Ip6, AddrField::Dst) => 9,
        }
    }
}

/// An address or a network, written as given (`10.0.0.1`, `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrItem {
    /// One address.
    Ip(IpAddr),
    /// A network.
    Net(IpNet),
}

impl AddrItem {
    fn net(self) -> IpNet {
        match self {
            AddrItem::Ip(ip) => IpNet::from(ip),
            AddrItem::Net(n) => n.trunc(),
        }
    }

    fn write(self, out: &mut String) {
        let _ = match self {
            AddrItem::Ip(ip) => write!(out, "{ip}"),
            AddrItem::Net(n) => write!(out, "{n}"),
        };
    }
}

/// The key of a verdict-map lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmapKey {
    /// `ip daddr . meta l4proto . th dport`.
    DaddrProtoPort,
    /// `meta l4proto . th dport`.
    ProtoPort,
}

/// One piece of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `ip daddr [!=] ADDR` or `ip saddr [!=] NET`.
    Addr {
        /// Source or destination.
        field: AddrField,
        /// `!=`.
        neg: bool,
        /// What is compared with.
        item: AddrItem,
    },
    /// `ip saddr [!=] { A , B }`: an anonymous set (a plain comparison when it has one item).
    AddrSet {
        /// Source or destination.
        field: AddrField,
        /// `!=`.
        neg: bool,
        /// The items.
        items: Vec<AddrItem>,
        /// Items separated by `" , "` (else by `","`), as the text was written.
        spaced: bool,
    },
    /// `ip daddr @SET`.
    AddrInSet {
        /// Source or destination.
        field: AddrField,
        /// The named set.
        set: String,
    },
    /// `fib saddr|daddr type local`.
    FibLocal(AddrField),
    /// `ct state new`.
    CtStateNew,
    /// `meta l4proto PROTO`.
    L4Proto(Protocol),
    /// `iifname [!=] "NAME"` (a trailing `*` matches a prefix).
    IifName {
        /// `!=`.
        neg: bool,
        /// The name.
        name: String,
    },
    /// `meta mark MARK`: the packet mark equals MARK.
    MarkEq {
        /// The mark.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `meta mark & MARK == MARK`: every bit of MARK is set in the packet mark, whatever the
    /// other bits are (iptables' `-m mark --mark MARK/MARK`).
    MarkBitsSet {
        /// The mark bits.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `mark and MARK == 0`.
    MarkAndZero {
        /// The mark bits.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `mark set mark or MARK`.
    MarkSetOr {
        /// The mark bits.
        mark: u32,
        /// The mark as written.
        text: String,
    },
    /// `mark set mark xor MARK`.
    MarkSetXor {
        /// The mark bits.
        mark: u32,
        /// The mark as written.
        text: String,
    },
    /// `KEY vmap @MAP`.
    Vmap {
        /// The key.
        key: VmapKey,
        /// The verdict map.
        map: String,
    },
    /// `numgen random mod N vmap { 0 : goto A , 1 : goto B }`.
    Numgen {
        /// The chains, one per value.
        targets: Vec<String>,
    },
    /// `update @SET { ip saddr }`.
    Update {
        /// The dynamic set.
        set: String,
        /// The address added.
        field: AddrField,
    },
    /// `masquerade [fully-random]`.
    Masquerade {
        /// `fully-random`.
        fully_random: bool,
    },
    /// `dnat to ADDR:PORT`.
    Dnat(SocketAddr),
    /// `reject` (ICMP port unreachable).
    Reject,
    /// A verdict.
    Verdict(Verdict),
}

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

/// nft's register for the `slot`th 32-bit word of a concatenation.
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

impl Expr {
    /// Writes the expression as nft text.
    pub fn render(&self, family: Family, out: &mut String) {
        let ipx = family.name();
        match self {
            Expr::Addr { field, neg, item } => {
                let _ = write!(
                    out,
                    "{ipx} {} {}",
                    field.name(),
                    if *neg { "!= " } else { "" }
                );
                item.write(out);
            }
            Expr::AddrSet {
                field,
                neg,
                items,
                spaced,
            } => {
                let _ = write!(
                    out,
                    "{ipx} {} {}{{ ",
                    field.name(),
                    if *neg { "!= " } else { "" }
                );
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if *spaced { " , " } else { "," });
                    }
                    it.write(out);
                }
                out.push_str(" }");
            }
            Expr::AddrInSet { field, set } => {
                let _ = write!(out, "{ipx} {} @{set}", field.name());
            }
            Expr::FibLocal(f) => {
                let _ = write!(out, "fib {} type local", f.name());
            }
            Expr::CtStateNew => out.push_str("ct state new"),
            Expr::L4Proto(p) => {
                let _ = write!(out, "meta l4proto {}", p.as_str());
            }
            Expr::IifName { neg, name } => {
                let _ = write!(out, "iifname {}\"{name}\"", if *neg { "!= " } else { "" });
            }
            Expr::MarkEq { text, .. } => {
                let _ = write!(out, "meta mark {text}");
            }
            Expr::MarkBitsSet { text, .. } => {
                let _ = write!(out, "meta mark & {text} == {text}");
            }
            Expr::MarkAndZero { text, .. } => {
                let _ = write!(out, "mark and {text} == 0");
            }
            Expr::MarkSetOr { text, .. } => {
                let _ = write!(out, "mark set mark or {text}");
            }
            Expr::MarkSetXor { text, .. } => {
                let _ = write!(out, "mark set mark xor {text}");
            }
            Expr::Vmap { key, map } => {
                match key {
                    VmapKey::DaddrProtoPort => {
                        let _ = write!(out, "{ipx} daddr . meta l4proto . th dport");
                    }
                    VmapKey::ProtoPort => out.push_str("meta l4proto . th dport"),
                }
                let _ = write!(out, " vmap @{map}");
            }
            Expr::Numgen { targets } => {
                let _ = write!(out, "numgen random mod {} vmap {{ ", targets.len());
                for (i, t) in targets.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    let _ = write!(out, "{i} : goto {t}");
                }
                out.push_str(" }");
            }
            Expr::Update { set, field } => {
                let _ = write!(out, "update @{set} {{ {ipx} {} }}", field.name());
            }
            Expr::Masquerade { fully_random } => {
                out.push_str("masquerade");
                if *fully_random {
                    out.push_str(" fully-random");
                }
            }
            Expr::Dnat(sa) => {
                let _ = write!(out, "dnat to {sa}");
            }
            Expr::Reject => out.push_str("reject"),
            Expr::Verdict(v) => {
                let _ = write!(out, "{v}");
            }
        }
    }

    /// Appends the expression's register-machine form to `insns`; anonymous sets it needs go
    /// to `low.anon`.
    pub(crate) fn lower(&self, family: Family, low: &mut Lowering, insns: &mut Vec<Insn>) {
        let alen = family.addr_len();
        match self {
            Expr::Addr { field, neg, item } => {
                lower_prefix(family, *field, *neg, item.net(), insns);
            }
            Expr::AddrSet {
                field, neg, items, ..
            } => {
                if items.len() == 1 {
                    lower_prefix(family, *field, *neg, items[0].net(), insns);
                    return;
                }
                let id = low.next_set_id;
                low.next_set_id += 1;
                low.anon.push(interval_set(family, *field, id, items));
                insns.push(Insn::Payload {
                    base: PayloadBase::Network,
                    offset: field.offset(family),
                    len: alen,
                    dreg: 1,
                });
                insns.push(Insn::Lookup {
                    set: "__set%d".into(),
                    set_id: Some(id),
                    sreg: 1,
                    dreg: None,
                    invert: *neg,
                });
            }
            Expr::AddrInSet { field, set } => {
                insns.push(Insn::Payload {
                    base: PayloadBase::Network,
                    offset: field.offset(family),
                    len: alen,
                    dreg: 1,
                });
                insns.push(Insn::Lookup {
                    set: set.clone(),
                    set_id: None,
                    sreg: 1,
                    dreg: None,
                    invert: false,
                });
            }
            Expr::FibLocal(f) => {
                insns.push(Insn::FibAddrType {
                    saddr: *f == AddrField::Src,
                    dreg: 1,
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: false,
                    data: 2u32.to_ne_bytes().to_vec(), // RTN_LOCAL
                });
            }
            Expr::CtStateNew => {
                insns.push(Insn::CtState { dreg: 1 });
                insns.push(Insn::Bitwise {
                    sreg: 1,
                    dreg: 1,
                    mask: 8u32.to_ne_bytes().to_vec(), // IP_CT_NEW bit
                    xor: vec![0; 4],
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: true,
                    data: vec![0; 4],
                });
            }
            Expr::L4Proto(p) => {
                insns.push(Insn::MetaLoad {
                    key: MetaKind::L4Proto,
                    dreg: 1,
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: false,
                    data: vec![proto_number(*p)],
                });
            }
            Expr::IifName { neg, name } => {
                insns.push(Insn::MetaLoad {
                    key: MetaKind::Iifname,
                    dreg: 1,
                });
                let data = match name.strip_suffix('*') {
                    Some(prefix) => prefix.as_bytes().to_vec(),
                    None => {
                        let mut d = name.as_bytes().to_vec();
                        d.resize(16, 0);
                        d
                    }
                };
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: *neg,
                    data,
                });
            }
            Expr::MarkEq { mark, .. } => {
                insns.push(Insn::MetaLoad {
                    key: MetaKind::Mark,
                    dreg: 1,
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: false,
                    data: mark.to_ne_bytes().to_vec(),
                });
            }
            Expr::MarkBitsSet { mark, .. } => {
                insns.push(Insn::MetaLoad {
                    key: MetaKind::Mark,
                    dreg: 1,
                });
                insns.push(Insn::Bitwise {
                    sreg: 1,
                    dreg: 1,
                    mask: mark.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: false,
                    data: mark.to_ne_bytes().to_vec(),
                });
            }
            Expr::MarkAndZero { mark, .. } => {
                insns.push(Insn::MetaLoad {
                    key: MetaKind::Mark,
                    dreg: 1,
                });
                insns.push(Insn::Bitwise {
                    sreg: 1,
                    dreg: 1,
                    mask: mark.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                });
                insns.push(Insn::Cmp {
                    sreg: 1,
                    neq: false,
                    data: vec![0; 4],
                });
            }
            Expr::MarkSetOr { mark, .. } | Expr::MarkSetXor { mark, .. } => {
                let mask = if matches!(self, Expr::MarkSetOr { .. }) {
                    !mark
                } else {
                    u32::MAX
                };
                insns.push(Insn::MetaLoad {
                    key: MetaKind::Mark,
                    dreg: 1,
                });
                insns.push(Insn::Bitwise {
                    sreg: 1,
                    dreg: 1,
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: mark.to_ne_bytes().to_vec(),
                });
                insns.push(Insn::MetaSet {
                    key: MetaKind::Mark,
                    sreg: 1,
                });
            }
            Expr::Vmap { key, map } => {
                let mut slot = 0;
                if *key == VmapKey::DaddrProtoPort {
                    insns.push(Insn::Payload {
                        base: PayloadBase::Network,
                        offset: AddrField::Dst.offset(family),
                        len: alen,
                        dreg: 1,
                    });
                    slot = alen / 4;
                }
                insns.push(Insn::MetaLoad {
                    key: MetaKind::L4Proto,
                    dreg: reg32(slot),
                });
                insns.push(Insn::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: reg32(slot + 1),
                });
                insns.push(Insn::Lookup {
                    set: map.clone(),
                    set_id: None,
                    sreg: 1,
                    dreg: Some(0),
                    invert: false,
                });
            }
            Expr::Numgen { targets } => {
                let id = low.next_set_id;
                low.next_set_id += 1;
                low.anon.push(AnonSet {
                    name: "__map%d",
                    id,
                    flags: 0x1 | 0x2 | 0x8, // anonymous, constant, map
                    key_type: 4,
                    key_len: 4,
                    verdict_map: true,
                    udata: vec![
                        0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 4, 8, 0, 4, 1, 0, 0, 0, 1, 0, 6, 4, 0,
                        0, 0, 0,
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
            Expr::Update { set, field } => {
                insns.push(Insn::Payload {
                    base: PayloadBase::Network,
                    offset: field.offset(family),
                    len: alen,
                    dreg: 1,
                });
                insns.push(Insn::DynsetUpdate {
                    set: set.clone(),
                    set_id: None,
                    sreg: 1,
                });
            }
            Expr::Masquerade { fully_random } => insns.push(Insn::Masq {
                flags: if *fully_random { 0x10 } else { 0 },
            }),
            Expr::Dnat(sa) => {
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
            Expr::Reject => insns.push(Insn::Reject {
                kind: 0, // NFT_REJECT_ICMP_UNREACH
                code: match family {
                    Family::Ip => 3,  // port unreachable
                    Family::Ip6 => 4, // port unreachable
                },
            }),
            Expr::Verdict(v) => insns.push(Insn::Verdict(v.clone())),
        }
    }
}

/// The IP protocol number.
pub(crate) fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// A comparison with an address or prefix, as nft encodes it: whole bytes of a byte-aligned
/// prefix, else the whole address masked.
fn lower_prefix(family: Family, field: AddrField, neg: bool, net: IpNet, insns: &mut Vec<Insn>) {
    let alen = family.addr_len();
    let bits = u32::from(net.prefix_len());
    let addr = octets(net.network());
    if bits % 8 == 0 {
        let n = bits / 8;
        insns.push(Insn::Payload {
            base: PayloadBase::Network,
            offset: field.offset(family),
            len: n,
            dreg: 1,
        });
        insns.push(Insn::Cmp {
            sreg: 1,
            neq: neg,
            data: addr[..n as usize].to_vec(),
        });
    } else {
        insns.push(Insn::Payload {
            base: PayloadBase::Network,
            offset: field.offset(family),
            len: alen,
            dreg: 1,
        });
        insns.push(Insn::Bitwise {
            sreg: 1,
            dreg: 1,
            mask: octets(net.netmask()),
            xor: vec![0; alen as usize],
        });
        insns.push(Insn::Cmp {
            sreg: 1,
            neq: neg,
            data: addr,
        });
    }
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

    fn text(e: &Expr, f: Family) -> String {
        let mut s = String::new();
        e.render(f, &mut s);
        s
    }

    #[test]
    fn renders_like_kube_proxy() {
        let e = Expr::AddrSet {
            field: AddrField::Src,
            neg: true,
            items: vec![AddrItem::Net("203.0.113.0/25".parse().unwrap())],
            spaced: true,
        };
        assert_eq!(text(&e, Family::Ip), "ip saddr != { 203.0.113.0/25 }");
        let e = Expr::Numgen {
            targets: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            text(&e, Family::Ip),
            "numgen random mod 2 vmap { 0 : goto a , 1 : goto b }"
        );
        let e = Expr::Dnat("[fd00::1]:80".parse().unwrap());
        assert_eq!(text(&e, Family::Ip6), "dnat to [fd00::1]:80");
        let e = Expr::Vmap {
            key: VmapKey::DaddrProtoPort,
            map: "service-ips".into(),
        };
        assert_eq!(
            text(&e, Family::Ip6),
            "ip6 daddr . meta l4proto . th dport vmap @service-ips"
        );
    }

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
