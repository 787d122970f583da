//! podnet-cluster explain: `nft -j list ruleset` output (parsed, then every base chain
//! evaluated), `iptables-save` output (read leniently, then every table evaluated) and the
//! kernel's nftables trace messages.

use crate::nl::{self, MsgType};
use std::hint::black_box;

/// `nft -j list ruleset` output.
pub fn explain_nft_json(data: &[u8]) {
    black_box(podnet_examples::explain::nft_ruleset(
        &String::from_utf8_lossy(data),
    ));
}

/// `iptables-save` output as explain reads it.
pub fn explain_iptables(data: &[u8]) {
    black_box(podnet_examples::explain::iptables_rules(
        &String::from_utf8_lossy(data),
    ));
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE` with the nfgenmsg header, and a control message.
pub const TRACE_TYPES: [MsgType; 2] = [(0x0a11, 4), nl::CONTROL[2]];

/// A datagram of nftables trace messages.
pub fn explain_trace(data: &[u8]) {
    let (buf, _) = nl::datagram(data, &TRACE_TYPES);
    black_box(podnet_examples::explain::nft_trace(&buf));
}

fn nla(out: &mut Vec<u8>, kind: u16, v: &[u8]) {
    out.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(v);
    out.resize((out.len() + 3) & !3, 0);
}

/// The rule set of explain's own tests, the golden iptables rules, and trace messages of a
/// probe packet through a bridge chain and a kube-proxy rule.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let src = include_str!("../../examples/src/explain/nft.rs");
    let start = src
        .find("const JSON: &str = r#\"")
        .expect("explain's test rule set")
        + 22;
    let json = &src[start..start + src[start..].find("\"#;").expect("its end")];
    let mut out = vec![
        ("explain_nft_json", json.as_bytes().to_vec()),
        (
            "explain_iptables",
            include_bytes!("../../nat/tests/fixtures/overall.expected").to_vec(),
        ),
    ];
    let mut d = Vec::new();
    for (family, table, chain, kind, verdict) in [
        (7u8, "t", "t_pre", 3u32, None),
        (2, "kube-proxy", "services", 1, Some((-3i32, "service-A"))),
        (2, "kube-proxy", "filter-forward", 2, None),
    ] {
        let mut body = vec![family, 0, 0, 0];
        nla(&mut body, 1, format!("{table}\0").as_bytes());
        nla(&mut body, 2, format!("{chain}\0").as_bytes());
        nla(&mut body, 4, &kind.to_be_bytes());
        if let Some((code, target)) = verdict {
            let mut v = Vec::new();
            nla(&mut v, 1, &code.to_be_bytes());
            nla(&mut v, 2, format!("{target}\0").as_bytes());
            nla(&mut body, 0x8005, &v);
        }
        nla(&mut body, 6, &7u32.to_be_bytes());
        nla(
            &mut body,
            8,
            &[0x45, 13 << 2, 0, 84, 0, 0, 0, 0, 64, 6, 0, 0, 10, 244, 1, 2],
        );
        nla(&mut body, 10, &5u32.to_be_bytes());
        nla(&mut body, 16, &0u32.to_be_bytes());
        nl::push_message(&mut d, 0x0a11, 0, 0, &body);
    }
    out.extend(nl::seeds(&d, &TRACE_TYPES).map(|s| ("explain_trace", s)));
    out
}
