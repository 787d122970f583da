//! flannel's masquerade and forward rules: the FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter)
//! chains exactly as flanneld's iptables traffic manager installs them, applied atomically.
//!
//! flanneld rebuilds these chains on restart and so leaves a window without them (its issue
//! #2237). Here a chain is declared and refilled inside one `iptables-restore --noflush` commit,
//! so the kernel swaps the old rules for the new ones in one step; only the jump from the
//! built-in chain is added with `iptables -C`/`-A`, and only when missing.
//!
//! The nftables form (tables `flannel-ipv4` and `flannel-ipv6`) is in [`crate::flannel_nft`].
//!
//! ```
//! use podnet_nat::flannel::FlannelNetwork;
//!
//! let net = FlannelNetwork {
//!     cluster_cidr: "10.244.0.0/16".parse().unwrap(),
//!     pod_cidr: "10.244.1.0/24".parse().unwrap(),
//!     random_fully: true,
//! };
//! let text = net.masq_table().render();
//! assert!(text.contains("-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 \
//!     -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"));
//! ```

use crate::iptables::{Match, Rule, Table, TableRules, Target};
use crate::kube_proxy::iptables_sync::{SyncError, run_with_input};
use ipnet::IpNet;
use podnet_netns::NetNs;
use std::process::Stdio;

/// flannel's nat chain.
pub const POSTRTG_CHAIN: &str = "FLANNEL-POSTRTG";
/// flannel's filter chain.
pub const FWD_CHAIN: &str = "FLANNEL-FWD";
/// The kube-proxy masquerade mark flannel leaves alone.
pub const KUBE_PROXY_MARK: &str = "0x4000/0x4000";

/// One address family of a flannel network on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlannelNetwork {
    /// The whole flannel network (e.g. 10.244.0.0/16).
    pub cluster_cidr: IpNet,
    /// This node's lease (e.g. 10.244.1.0/24).
    pub pod_cidr: IpNet,
    /// `MASQUERADE --random-fully` (flannel uses it when iptables supports it, unless
    /// `--ip-masq-random-fully-disable`).
    pub random_fully: bool,
}

fn comment(c: &str) -> Match {
    Match::comment(c)
}

impl FlannelNetwork {
    /// The multicast range of the cluster's family, which flannel does not masquerade.
    pub(crate) fn multicast(&self) -> IpNet {
        match self.cluster_cidr {
            IpNet::V4(_) => "224.0.0.0/4".parse().expect("literal"),
            IpNet::V6(_) => "ff00::/8".parse().expect("literal"),
        }
    }

    /// `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`.
    pub fn masq_jump() -> Rule {
        Rule::new("POSTROUTING")
            .with(comment("flanneld masq"))
            .jump(POSTRTG_CHAIN)
    }

    /// The FLANNEL-POSTRTG rules, in flannel's order.
    pub fn masq_rules(&self) -> Vec<Rule> {
        let (cluster, pod) = (self.cluster_cidr, self.pod_cidr);
        let c = || comment("flanneld masq");
        let masq = Target::Masquerade {
            random_fully: self.random_fully,
        };
        let r = || Rule::new(POSTRTG_CHAIN);
        vec![
            r().with(Match::Mark {
                value: "0x4000".into(),
                mask: Some("0x4000".into()),
                negate: false,
            })
            .with(c())
            .target(Target::Return),
            r().with(Match::source(pod))
                .with(Match::destination(cluster))
                .with(c())
                .target(Target::Return),
            r().with(Match::source(cluster))
                .with(Match::destination(pod))
                .with(c())
                .target(Target::Return),
            r().with(Match::not_source(cluster))
                .with(Match::destination(pod))
                .with(c())
                .target(Target::Return),
            r().with(Match::source(cluster))
                .with(Match::not_destination(self.multicast()))
                .with(c())
                .target(masq.clone()),
            r().with(Match::not_source(cluster))
                .with(Match::destination(cluster))
                .with(c())
                .target(masq),
        ]
    }

    /// The nat table block that replaces FLANNEL-POSTRTG in one commit.
    pub fn masq_table(&self) -> TableRules {
        let mut t = TableRules::new(Table::Nat);
        t.declare(POSTRTG_CHAIN);
        for r in self.masq_rules() {
            t.append(r);
        }
        t
    }

    /// `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`.
    pub fn forward_jump() -> Rule {
        Rule::new("FORWARD")
            .with(comment("flanneld forward"))
            .jump(FWD_CHAIN)
    }

    /// The FLANNEL-FWD rules: accept traffic from and to the flannel network.
    pub fn forward_rules(&self) -> Vec<Rule> {
        vec![
            Rule::new(FWD_CHAIN)
                .with(Match::source(self.cluster_cidr))
                .with(comment("flanneld forward"))
                .target(Target::Accept),
            Rule::new(FWD_CHAIN)
                .with(Match::destination(self.cluster_cidr))
                .with(comment("flanneld forward"))
                .target(Target::Accept),
        ]
    }

    /// The filter table block that replaces FLANNEL-FWD in one commit.
    pub fn forward_table(&self) -> TableRules {
        let mut t = TableRules::new(Table::Filter);
        t.declare(FWD_CHAIN);
        for r in self.forward_rules() {
            t.append(r);
        }
        t
    }

    /// Installs (or replaces) both chains in `ns` and makes sure the jumps to them exist.
    ///
    /// Each chain is flushed and refilled inside one `iptables-restore` commit, so there is no
    /// moment without rules; the jumps are only appended when `iptables -C` does not find them.
    pub fn apply(&self, ns: &NetNs) -> Result<(), SyncError> {
        self.apply_parts(ns, true, true)
    }

    /// As [`apply`](Self::apply), for the masquerade chain (flanneld's `--ip-masq`), the
    /// forward chain (`--iptables-forward-rules`), or both; a part not asked for is left as it
    /// is.
    pub fn apply_parts(&self, ns: &NetNs, masq: bool, forward: bool) -> Result<(), SyncError> {
        let (restore, iptables) = match self.cluster_cidr {
            IpNet::V4(_) => ("iptables-restore", "iptables"),
            IpNet::V6(_) => ("ip6tables-restore", "ip6tables"),
        };
        let mut input = String::new();
        let mut jumps = Vec::new();
        if masq {
            self.masq_table().render_into(&mut input);
            jumps.push((Table::Nat, Self::masq_jump()));
        }
        if forward {
            self.forward_table().render_into(&mut input);
            jumps.push((Table::Filter, Self::forward_jump()));
        }
        if input.is_empty() {
            return Ok(());
        }
        run_with_input(ns, restore, &["-w", "5", "--noflush"], input.as_bytes())?;
        for (table, jump) in jumps {
            let words = crate::iptables::split_rule_words(&jump.render());
            let (chain, args) = (&words[1], &words[2..]);
            let exists = ns
                .command(iptables)
                .args(["-w", "5", "-t", table.as_str(), "-C", chain])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !exists {
                run_with_input(
                    ns,
                    iptables,
                    &[
                        &["-w", "5", "-t", table.as_str(), "-A", chain.as_str()][..],
                        &args.iter().map(String::as_str).collect::<Vec<_>>(),
                    ]
                    .concat(),
                    b"",
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_flanneld() {
        let net = FlannelNetwork {
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            random_fully: false,
        };
        let got: Vec<String> = net.masq_rules().iter().map(Rule::render).collect();
        assert_eq!(
            got,
            [
                "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE",
                "-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE",
            ]
        );
        assert_eq!(
            FlannelNetwork::masq_jump().render(),
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG"
        );
        let fwd: Vec<String> = net.forward_rules().iter().map(Rule::render).collect();
        assert_eq!(
            fwd,
            [
                "-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
                "-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
            ]
        );
        let v6 = FlannelNetwork {
            cluster_cidr: "fd10::/56".parse().unwrap(),
            pod_cidr: "fd10:0:0:1::/64".parse().unwrap(),
            random_fully: true,
        };
        assert!(v6.masq_table().render().contains(
            "! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully"
        ));
    }
}
