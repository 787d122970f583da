//! Property tests: parsers never panic, and rendered rules parse back to themselves.

use podnet_nat::iptables::{
    AddrType, CtState, Match, Protocol, Rule, SavedRule, Table, TableRules, Target, parse_save,
    parse_save_tolerant,
};
use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn ip() -> impl Strategy<Value = IpAddr> {
    any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v)))
}

fn net() -> impl Strategy<Value = ipnet::IpNet> {
    (any::<u32>(), 8u8..=32).prop_map(|(v, l)| {
        ipnet::IpNet::new(IpAddr::V4(Ipv4Addr::from(v)), l)
            .unwrap()
            .trunc()
    })
}

fn matches() -> impl Strategy<Value = Match> {
    let proto = prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ];
    prop_oneof![
        "[a-z0-9/:. >-]{1,30}".prop_map(|c| Match::Comment(c.into())),
        proto.clone().prop_map(Match::Protocol),
        proto.prop_map(Match::ProtocolModule),
        any::<u16>().prop_map(Match::DestinationPort),
        (net(), any::<bool>()).prop_map(|(net, negate)| Match::Source { net, negate }),
        (net(), any::<bool>()).prop_map(|(net, negate)| Match::Destination { net, negate }),
        Just(Match::DstType(AddrType::Local)),
        Just(Match::SrcType(AddrType::Local)),
        (any::<bool>()).prop_map(|negate| Match::Mark {
            value: "0x4000".into(),
            mask: Some("0x4000".into()),
            negate
        }),
        Just(Match::CtState {
            states: vec![CtState::Related, CtState::Established],
            negate: false
        }),
        (1u32..1000).prop_map(|n| Match::Probability(1.0 / n as f64)),
        "KUBE-SEP-[A-Z2-7]{16}".prop_map(|name| Match::RecentSet { name }),
        ("KUBE-SEP-[A-Z2-7]{16}", 1u32..86400).prop_map(|(name, seconds)| Match::RecentCheck {
            name,
            seconds,
            reap: true
        }),
    ]
}

fn target() -> impl Strategy<Value = Option<Target>> {
    prop_oneof![
        Just(None),
        Just(Some(Target::Accept)),
        Just(Some(Target::Drop)),
        Just(Some(Target::Return)),
        Just(Some(Target::Reject)),
        any::<bool>().prop_map(|random_fully| Some(Target::Masquerade { random_fully })),
        (ip(), any::<u16>()).prop_map(|(i, p)| Some(Target::Dnat(SocketAddr::new(i, p)))),
        "KUBE-SVC-[A-Z2-7]{16}".prop_map(|c| Some(Target::Jump(c.into()))),
        Just(Some(Target::MarkOrText("0x4000".into()))),
    ]
}

proptest! {
    #[test]
    fn parse_save_never_panics(text in "\\PC{0,400}") {
        let _ = parse_save(&text);
    }

    #[test]
    fn parse_save_never_panics_on_rule_like_lines(words in prop::collection::vec(
        prop_oneof![Just("-A".to_string()), Just("-m".to_string()), Just("!".to_string()), Just("--comment".to_string()),
            Just("-j".to_string()), Just("recent".to_string()), Just("--name".to_string()), Just("\"".to_string()),
            Just("-s".to_string()), Just("mark".to_string()), Just("--mark".to_string()), "[A-Za-z0-9./:-]{0,8}"], 0..20)) {
        let _ = parse_save(&format!("*nat\n{}\nCOMMIT\n", words.join(" ")));
    }

    #[test]
    fn tolerant_parse_never_panics_and_agrees_with_the_strict_one(words in prop::collection::vec(
        prop_oneof![Just("-A".to_string()), Just("-m".to_string()), Just("!".to_string()), Just("--comment".to_string()),
            Just("-j".to_string()), Just("state".to_string()), Just("--state".to_string()), Just("multiport".to_string()),
            Just("-p".to_string()), Just("icmp".to_string()), Just("\"".to_string()), Just("\n".to_string()),
            Just("COMMIT".to_string()), "[A-Za-z0-9./:,-]{0,8}"], 0..24)) {
        let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{}\nCOMMIT\n", words.join(" "));
        let tolerant = parse_save_tolerant(&text);
        match parse_save(&text) {
            // Whatever the strict parse reads, the tolerant one reads the same, all modelled.
            Ok(strict) => {
                let tolerant = tolerant.expect("the tolerant parse reads what the strict one does");
                prop_assert_eq!(strict.len(), tolerant.len());
                for (s, t) in strict.iter().zip(&tolerant) {
                    let known: Vec<&Rule> = t.rules.iter().filter_map(|r| match r {
                        SavedRule::Known(r) => Some(r),
                        SavedRule::Opaque(_) => None,
                    }).collect();
                    prop_assert_eq!(known.len(), t.rules.len());
                    prop_assert_eq!(s.rule_count(), known.len());
                }
            }
            // Where it refuses a rule, the tolerant one keeps it as text or refuses too.
            Err(_) => {
                if let Ok(t) = tolerant {
                    let rules: usize = t.iter().map(|t| t.rules.len()).sum();
                    let lines = text.lines().filter(|l| l.trim_start().starts_with("-A")).count();
                    prop_assert_eq!(rules, lines);
                }
            }
        }
    }

    #[test]
    fn rules_roundtrip(ms in prop::collection::vec(matches(), 0..8), t in target()) {
        let mut table = TableRules::new(Table::Nat);
        table.declare("KUBE-TEST");
        table.append(Rule { chain: "KUBE-TEST".into(), matches: ms, target: t });
        let text = table.render();
        let back = parse_save(&text).expect("our own output parses");
        prop_assert_eq!(back.len(), 1);
        prop_assert_eq!(back[0].render(), text);
    }

    #[test]
    fn kube_input_never_panics(text in "\\PC{0,300}") {
        let (objects, _) = parse_objects(&text, "prop");
        let _ = ClusterState::from_objects(&objects, IpFamily::V4);
    }
}
