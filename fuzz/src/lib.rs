//! The bodies of podnet's fuzz targets, one function per target, each fed arbitrary bytes by
//! `fuzz_targets/<name>.rs`. A panic anywhere (arithmetic overflow included: the targets are
//! built with debug assertions) is a finding.
//!
//! - [`encap`]: the wire codecs and decapsulation.
//! - [`links`]: rtnetlink replies and notifications.
//! - [`nat`]: nftables dumps and batch answers, IPVS answers, conntrack dumps, iptables-save
//!   text, Kubernetes objects through every proxy mode's compiler.
//! - [`ipam`]: net-conf.json, lease attributes and keys, subnet.env, host-local's config and
//!   lease files.
//! - [`cni`]: podnet-cni's network config, prevResult, CNI_* environment and CNI_ARGS;
//!   kube-proxy's flag values.
//! - [`explain`]: what `podnet-cluster explain` reads: `nft -j` output, `iptables-save` output
//!   and nftables trace messages, each evaluated or correlated as explain does.
//!
//! Netlink targets build well-formed datagrams from part of their inputs ([`nl`]), so that the
//! fuzzer gets past the first length check.

pub mod cni;
pub mod encap;
pub mod explain;
pub mod ipam;
pub mod links;
pub mod nat;
pub mod nl;

pub use encap::*;

/// The body of a fuzz target: arbitrary bytes in, a panic on a finding.
pub type Body = fn(&[u8]);

/// Every target: its name (the file in `fuzz_targets/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("ethernet", encap::ethernet),
    ("arp", encap::arp),
    ("ipv4", encap::ipv4),
    ("ipv6", encap::ipv6),
    ("udp", encap::udp),
    ("icmpv4", encap::icmpv4),
    ("vxlan", encap::vxlan),
    ("flannel", encap::flannel),
    ("decap", encap::decap),
    ("rtnetlink", links::rtnetlink),
    ("nftables", nat::nftables),
    ("ipvs", nat::ipvs),
    ("conntrack", nat::conntrack),
    ("iptables_save", nat::iptables_save),
    ("kube_objects", nat::kube_objects),
    ("net_conf", ipam::net_conf),
    ("flannel_lease", ipam::flannel_lease),
    ("subnet_env", ipam::subnet_env),
    ("host_local_config", ipam::host_local_config),
    ("host_local_lease", ipam::host_local_lease),
    ("cni_config", cni::cni_config),
    ("cni_prev_result", cni::cni_prev_result),
    ("cni_args", cni::cni_args),
    ("kube_proxy_flags", cni::kube_proxy_flags),
    ("explain_nft_json", explain::explain_nft_json),
    ("explain_iptables", explain::explain_iptables),
    ("explain_trace", explain::explain_trace),
];

/// Valid inputs for the targets, to start their corpora from.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = encap::seeds();
    out.extend(links::seeds());
    out.extend(nat::seeds());
    out.extend(ipam::seeds());
    out.extend(cni::seeds());
    out.extend(explain::seeds());
    out
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every seed runs through its target without a panic; with `PODNET_FUZZ_SEEDS=DIR` the
    /// seeds are also written to `DIR/<target>/seed-<n>` (what `run.sh` does).
    #[test]
    fn seeds_pass_their_targets() {
        let dir = std::env::var_os("PODNET_FUZZ_SEEDS");
        for (n, (target, bytes)) in super::seeds().into_iter().enumerate() {
            let Some((_, body)) = TARGETS.iter().find(|(t, _)| *t == target) else {
                panic!("unknown target {target}");
            };
            body(&bytes);
            if target == "decap" && bytes[0] == 0 {
                let rest = &bytes[1..];
                assert!(
                    podnet_encap::decapsulate_vxlan(rest, 4789).is_ok()
                        || podnet_encap::decapsulate_flannel(rest, 8285).is_ok()
                );
            }
            if let Some(dir) = &dir {
                let d = std::path::Path::new(dir).join(target);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("seed-{n}")), &bytes).unwrap();
            }
        }
    }

    /// The netlink seeds decode to what they were made of, in both encodings: the harness
    /// reaches podnet's conversions.
    #[test]
    fn netlink_seeds_reach_the_conversions() {
        use crate::nl;
        let seeds = super::seeds();
        let of = |t: &'static str| seeds.iter().filter(move |(s, _)| *s == t).map(|(_, b)| b);
        for (i, seed) in of("rtnetlink").take(2).enumerate() {
            let (buf, seq) = nl::datagram(seed, &crate::links::TYPES);
            let d = podnet_links::parse_dump_datagram(&buf, seq).unwrap();
            assert_eq!(
                (
                    d.links.len(),
                    d.addresses.len(),
                    d.routes.len(),
                    d.neighbours.len(),
                    d.fdb.len()
                ),
                (5, 2, 2, 1, 2),
                "seed {i}"
            );
            assert!(d.links.iter().any(|l| l.to_string().contains("vxlan id 1")));
            let mut events = Vec::new();
            podnet_links::parse_events(&buf, &mut events).unwrap();
            assert_eq!(events.len(), 13, "seed {i}");
        }
        let (mut chains, mut sets, mut elements, mut rules, mut insns) = (0, 0, 0, 0, 0);
        for seed in of("nftables") {
            let (buf, seq) = nl::datagram(seed, &crate::nat::NFT_TYPES);
            let d = podnet_nat::nftables::netlink::parse_dump_datagram(&buf, seq, "kube-proxy")
                .unwrap();
            chains += d.chains.len();
            sets += d.sets.len();
            elements += d.elements.len();
            rules += d.rules.len();
            insns += d.rules.iter().map(|r| r.insns.len()).sum::<usize>();
        }
        assert!(chains > 10 && sets > 3 && elements > 3 && rules > 10 && insns > 50);
        let ipvs: Vec<_> = of("ipvs").collect();
        for seed in &ipvs[..2] {
            let (buf, seq) = nl::datagram(seed, &crate::nat::IPVS_TYPES);
            let id = podnet_nat::ipvs::ServiceId::tcp("10.96.0.10:80".parse().unwrap());
            let r = podnet_nat::ipvs::parse_reply_datagram(&buf, seq, &id).unwrap();
            assert_eq!(r.services.unwrap().len(), 2);
            assert_eq!(r.destinations.unwrap().len(), 1);
            assert_eq!(r.info.unwrap().version, (1, 2, 1));
        }
        for seed in &ipvs[2..4] {
            let (buf, seq) = nl::datagram(seed, &crate::nat::IPVS_TYPES);
            assert_eq!(
                podnet_nat::ipvs::parse_family_reply(&buf, seq).unwrap(),
                0x24
            );
        }
        let explain =
            |t: &'static str, f: fn(&[u8]) -> usize| of(t).map(|b| f(b)).max().unwrap_or(0);
        assert!(
            explain("explain_nft_json", |b| {
                podnet_examples::explain::nft_ruleset(std::str::from_utf8(b).unwrap())
            }) > 0
        );
        assert!(
            explain("explain_iptables", |b| {
                podnet_examples::explain::iptables_rules(std::str::from_utf8(b).unwrap())
            }) > 0
        );
        assert!(
            explain("explain_trace", |b| {
                podnet_examples::explain::nft_trace(
                    &nl::datagram(b, &crate::explain::TRACE_TYPES).0,
                )
            }) > 0
        );
        for seed in of("conntrack") {
            let (buf, seq) = nl::datagram(seed, &crate::nat::CT_TYPES);
            let flows = podnet_nat::conntrack::parse_dump_datagram(&buf, seq).unwrap();
            assert_eq!(flows.len(), 2);
        }
    }

    /// Every target has a seed and a file in `fuzz_targets/` (and so a `[[bin]]`).
    #[test]
    fn every_target_has_seeds_and_a_binary() {
        let seeds = super::seeds();
        for (t, _) in TARGETS {
            assert!(seeds.iter().any(|(s, _)| s == t), "no seed for {t}");
            let file = format!("{}/fuzz_targets/{t}.rs", env!("CARGO_MANIFEST_DIR"));
            assert!(std::path::Path::new(&file).exists(), "no {file}");
        }
    }
}
