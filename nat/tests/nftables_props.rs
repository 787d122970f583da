//! Property tests of the nftables layer: decoding never panics on arbitrary attributes, and
//! every rule podnet can build encodes into expressions that decode back to themselves.

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{ExpressionAttribute, Expressions, ListAttribute};
use podnet_nat::iptables::Protocol;
use podnet_nat::nftables::expr::Insn;
use podnet_nat::nftables::netlink::Batch;
use podnet_nat::nftables::{
    AddrField, AddrItem, Expr, Family, Op, Rule, Transaction, Verdict, VmapKey,
};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const NAMES: &[&str] = &[
    "payload",
    "meta",
    "cmp",
    "bitwise",
    "immediate",
    "lookup",
    "ct",
    "fib",
    "numgen",
    "nat",
    "masq",
    "reject",
    "dynset",
    "counter",
    "other",
];

fn expression(name: &str, attrs: Vec<(u16, Vec<u8>)>) -> ListAttribute<ExpressionAttribute> {
    ListAttribute::Element(vec![
        ExpressionAttribute::Name(name.to_owned()),
        ExpressionAttribute::Data(Expressions::Other {
            expression_type: name.to_owned(),
            attributes: attrs
                .into_iter()
                .map(|(k, v)| DefaultNla::new(k % 12, v))
                .collect(),
        }),
    ])
}

fn addr(v6: bool) -> impl Strategy<Value = IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

fn item(v6: bool) -> impl Strategy<Value = AddrItem> {
    let max = if v6 { 128u8 } else { 32 };
    (addr(v6), 0..=max).prop_map(|(a, p)| match ipnet::IpNet::new(a, p) {
        Ok(n) if p % 3 == 0 => AddrItem::Net(n),
        _ => AddrItem::Ip(a),
    })
}

fn field() -> impl Strategy<Value = AddrField> {
    prop_oneof![Just(AddrField::Src), Just(AddrField::Dst)]
}

fn chain() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9/._-]{0,30}"
}

fn expr(v6: bool) -> impl Strategy<Value = Expr> {
    let port = any::<u16>();
    prop_oneof![
        (field(), any::<bool>(), item(v6)).prop_map(|(field, neg, item)| Expr::Addr {
            field,
            neg,
            item
        }),
        (
            field(),
            any::<bool>(),
            prop::collection::vec(item(v6), 1..6),
            any::<bool>()
        )
            .prop_map(|(field, neg, items, spaced)| Expr::AddrSet {
                field,
                neg,
                items,
                spaced
            }),
        (field(), chain()).prop_map(|(field, set)| Expr::AddrInSet { field, set }),
        field().prop_map(Expr::FibLocal),
        Just(Expr::CtStateNew),
        prop_oneof![
            Just(Protocol::Tcp),
            Just(Protocol::Udp),
            Just(Protocol::Sctp)
        ]
        .prop_map(Expr::L4Proto),
        (any::<bool>(), "[a-z0-9]{1,14}\\*?").prop_map(|(neg, name)| Expr::IifName { neg, name }),
        any::<u32>().prop_map(|m| Expr::MarkSetOr {
            mark: m,
            text: format!("{m:#x}")
        }),
        any::<u32>().prop_map(|m| Expr::MarkEq {
            mark: m,
            text: format!("{m:#x}")
        }),
        any::<u32>().prop_map(|m| Expr::MarkBitsSet {
            mark: m,
            text: format!("{m:#x}")
        }),
        any::<u32>().prop_map(|m| Expr::MarkAndZero {
            mark: m,
            text: format!("{m:#x}")
        }),
        (any::<bool>(), chain()).prop_map(|(a, map)| Expr::Vmap {
            key: if a {
                VmapKey::DaddrProtoPort
            } else {
                VmapKey::ProtoPort
            },
            map
        }),
        prop::collection::vec(chain(), 1..8).prop_map(|targets| Expr::Numgen { targets }),
        (chain(), field()).prop_map(|(set, field)| Expr::Update { set, field }),
        any::<bool>().prop_map(|fully_random| Expr::Masquerade { fully_random }),
        (addr(v6), port).prop_map(|(a, p)| Expr::Dnat(SocketAddr::new(a, p))),
        Just(Expr::Reject),
        chain().prop_map(|c| Expr::Verdict(Verdict::Goto(c))),
        Just(Expr::Verdict(Verdict::Drop)),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_expressions_never_panics(
        name in prop::sample::select(NAMES),
        attrs in prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), 0..24)), 0..8),
    ) {
        let _ = Insn::decode(&expression(name, attrs));
    }

    #[test]
    fn rules_render_encode_and_decode_back(exprs in prop::collection::vec(expr(false), 1..6)) {
        let family = Family::Ip;
        let rule = Rule::new("c", exprs);
        prop_assert!(!rule.body(family).is_empty());
        let mut tx = Transaction::new(family, "t");
        tx.push(Op::AddRule(rule));
        let b = Batch::encode(&tx, 1);
        prop_assert!(b.messages() >= 1);
        // Each expression of the rule message decodes back to what was encoded.
        for i in podnet_nat::nftables::netlink::lowered(&tx) {
            prop_assert_eq!(Insn::decode(&i.encode()), Some(i.clone()));
        }
    }

    #[test]
    fn v6_rules_encode(exprs in prop::collection::vec(expr(true), 1..6)) {
        let mut tx = Transaction::new(Family::Ip6, "t");
        tx.push(Op::AddRule(Rule::new("c", exprs)));
        for i in podnet_nat::nftables::netlink::lowered(&tx) {
            prop_assert_eq!(Insn::decode(&i.encode()), Some(i.clone()));
        }
        prop_assert!(!tx.render().is_empty());
    }
}
