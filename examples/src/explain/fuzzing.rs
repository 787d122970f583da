//! What `podnet-cluster explain` reads from tools and the kernel, from raw text and bytes, for
//! the fuzz targets: `nft -j list ruleset` (parsed, and every base chain evaluated for a few
//! flows), `iptables-save` (read leniently, and every hook evaluated), and the kernel's
//! nftables trace messages. Hidden from the documentation.

use super::nft;
use super::rules::{self, Ctx, HookOutcome};
use super::{Choice, Flow, Hook, Proto};
use std::net::Ipv4Addr;

const HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];

/// The flows every chain is evaluated for: a pod to a ClusterIP over TCP, to a node port over
/// UDP, and a ping.
fn flows() -> [Flow; 3] {
    let flow = |proto, dst: [u8; 4], dport| Flow {
        proto,
        src: Ipv4Addr::new(10, 244, 1, 2),
        dst: dst.into(),
        sport: Some(40000),
        dport,
        mark: 0,
        dnat: false,
    };
    [
        flow(Proto::Tcp, [10, 96, 0, 10], Some(80)),
        flow(Proto::Udp, [198, 18, 0, 2], Some(30053)),
        flow(Proto::Icmp, [10, 244, 2, 3], None),
    ]
}

fn each_context(mut f: impl FnMut(&Ctx<'_>, &mut Flow)) {
    let local = |a: Ipv4Addr| a.octets()[0] == 198;
    let choices = [
        Choice::First,
        Choice::Prefer(vec!["10.244.2.2".into(), "KUBE-SEP-X".into()]),
    ];
    for hook in HOOKS {
        for choice in &choices {
            let ctx = Ctx {
                hook,
                iif: Some("cni0"),
                oif: Some("eth0"),
                is_local: &local,
                masq_addr: Some(Ipv4Addr::new(198, 18, 0, 1)),
                choice,
                sets: None,
            };
            for mut flow in flows() {
                f(&ctx, &mut flow);
            }
        }
    }
}

/// Parses `nft -j list ruleset` output and evaluates every base chain of every table. Returns
/// how many evaluations ran.
#[doc(hidden)]
pub fn nft_ruleset(json: &str) -> usize {
    let rs = nft::parse(json);
    let mut n = 0;
    each_context(|ctx, flow| {
        for t in &rs.tables {
            for (chain, _) in t.base_chains(ctx.hook) {
                let mut out = HookOutcome::default();
                std::hint::black_box(nft::eval_base(t, &chain, flow, ctx, &mut out));
                n += 1;
            }
        }
    });
    n
}

/// Parses `iptables-save` output as explain does (lines the model cannot represent dropped)
/// and evaluates every table at every hook. Returns how many evaluations ran.
#[doc(hidden)]
pub fn iptables_rules(text: &str) -> usize {
    let r = super::state::parse_lenient(text);
    let mut n = 0;
    each_context(|ctx, flow| {
        for t in &r.tables {
            if rules::iptables_priority(t.table, ctx.hook).is_some() {
                let mut out = HookOutcome::default();
                std::hint::black_box(rules::eval_table(t, flow, ctx, &mut out));
                n += 1;
            }
        }
    });
    n
}

/// Reads one datagram of nftables trace messages as the probe does. Returns how many trace
/// events it held.
#[doc(hidden)]
pub fn nft_trace(datagram: &[u8]) -> usize {
    super::trace::parse_datagram(datagram)
}
