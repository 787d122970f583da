//! flannel's nftables rules (tables `flannel-ipv4` / `flannel-ipv6`, chains `postrtg` and
//! `forward`) as a [`Transaction`] of podnet's own nftables model, sent as one netlink batch
//! inside a network namespace by [`crate::nftables::NftSocket`]: no C library, no unsafe code.
//!
//! The transaction adds the table and chains (a no-op when they exist), flushes the chains and
//! adds the rules: the kernel applies it as one batch, so an update never leaves a moment
//! without rules, and applying it again leaves the same table. The rules are those of
//! flannel's `pkg/trafficmngr/nftables`, except the first: flannel's nftables manager writes
//! `meta mark 0x4000 return` (the mark equals 0x4000, marked there as a TODO), which misses a
//! packet whose mark carries kube-proxy's bit among others and masquerades it a second time.
//! Here it tests the bit, as flannel's iptables rule `-m mark --mark 0x4000/0x4000` does, so
//! both backends treat every packet alike:
//!
//! ```text
//! table ip flannel-ipv4 {
//!   chain postrtg { type nat hook postrouting priority srcnat;
//!     meta mark & 0x4000 == 0x4000 return
//!     ip saddr POD ip daddr CLUSTER return
//!     ip saddr CLUSTER ip daddr POD return
//!     ip saddr != POD ip daddr CLUSTER return
//!     ip saddr CLUSTER ip daddr != 224.0.0.0/4 masquerade fully-random
//!     ip saddr != CLUSTER ip daddr CLUSTER masquerade fully-random }
//!   chain forward { type filter hook forward priority filter;
//!     ip saddr CLUSTER accept
//!     ip daddr CLUSTER accept } }
//! ```
//!
//! ```
//! use podnet_nat::flannel::FlannelNetwork;
//! use podnet_nat::flannel_nft;
//!
//! let net = FlannelNetwork {
//!     cluster_cidr: "10.244.0.0/16".parse().unwrap(),
//!     pod_cidr: "10.244.1.0/24".parse().unwrap(),
//!     random_fully: true,
//! };
//! let tx = flannel_nft::batch(&net);
//! assert_eq!(tx.table, flannel_nft::IPV4_TABLE);
//! // The same transaction as an `nft -f` script:
//! assert!(tx.render().contains(
//!     "add rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 \
//!      masquerade fully-random"
//! ));
//! // flannel_nft::apply(&netns, &net)? sends it as one batch inside a namespace.
//! ```

use crate::flannel::FlannelNetwork;
use crate::nftables::{
    AddrField, AddrItem, BaseChain, Chain, ChainType, Expr, Family, Hook, NftError, NftSocket, Op,
    Rule, Transaction, Verdict,
};
use ipnet::IpNet;
use podnet_netns::NetNs;
use std::net::IpAddr;

/// The IPv4 table name.
pub const IPV4_TABLE: &str = "flannel-ipv4";
/// The IPv6 table name.
pub const IPV6_TABLE: &str = "flannel-ipv6";
/// The nat chain (hook postrouting, priority srcnat).
pub const POSTRTG_CHAIN: &str = "postrtg";
/// The filter chain (hook forward, priority filter).
pub const FORWARD_CHAIN: &str = "forward";
/// kube-proxy's masquerade bit: packets carrying it are left alone (flannel's `KubeProxyMark`,
/// `0x4000/0x4000`).
const KUBE_PROXY_MARK: u32 = 0x4000;

/// `ip saddr|daddr [!=] NET`.
fn addr(field: AddrField, neg: bool, net: IpNet) -> Expr {
    Expr::Addr {
        field,
        neg,
        item: AddrItem::Net(net.trunc()),
    }
}

fn base_chain(name: &str, kind: ChainType, hook: Hook, priority: i32) -> Op {
    Op::AddChain(Chain {
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
        ..Chain::regular(name)
    })
}

/// The transaction that installs (or replaces) flannel's nftables rules for `net`, in the
/// table of the cluster CIDR's family (`pod_cidr` is expected to be of the same family).
pub fn batch(net: &FlannelNetwork) -> Transaction {
    batch_parts(net, true, true)
}

/// As [`batch`], with the masquerade chain (flanneld's `--ip-masq`), the forward chain
/// (`--iptables-forward-rules`) or both, as flannel's nftables manager sets them up apart.
pub fn batch_parts(net: &FlannelNetwork, masq: bool, forward: bool) -> Transaction {
    use AddrField::{Dst, Src};
    let (family, table) = match net.cluster_cidr {
        IpNet::V4(_) => (Family::Ip, IPV4_TABLE),
        IpNet::V6(_) => (Family::Ip6, IPV6_TABLE),
    };
    let cluster = net.cluster_cidr;
    let mut tx = Transaction::new(family, table);
    tx.push(Op::AddTable { comment: None });
    if masq {
        masq_chain(&mut tx, net);
    }
    if forward {
        tx.push(base_chain(
            FORWARD_CHAIN,
            ChainType::Filter,
            Hook::Forward,
            0,
        )); // filter
        tx.push(Op::FlushChain(FORWARD_CHAIN.into()));
        for field in [Src, Dst] {
            tx.push(Op::AddRule(Rule::new(
                FORWARD_CHAIN,
                vec![addr(field, false, cluster), Expr::Verdict(Verdict::Accept)],
            )));
        }
    }
    tx
}

/// The postrouting chain, flushed and filled.
fn masq_chain(tx: &mut Transaction, net: &FlannelNetwork) {
    use AddrField::{Dst, Src};
    let (cluster, pod) = (net.cluster_cidr, net.pod_cidr);
    let masq = Expr::Masquerade {
        fully_random: net.random_fully,
    };
    let ret = Expr::Verdict(Verdict::Return);
    tx.push(base_chain(
        POSTRTG_CHAIN,
        ChainType::Nat,
        Hook::Postrouting,
        100, // srcnat
    ));
    tx.push(Op::FlushChain(POSTRTG_CHAIN.into()));
    let post = [
        vec![
            Expr::MarkBitsSet {
                mark: KUBE_PROXY_MARK,
                text: format!("{KUBE_PROXY_MARK:#x}"),
            },
            ret.clone(),
        ],
        vec![
            addr(Src, false, pod),
            addr(Dst, false, cluster),
            ret.clone(),
        ],
        vec![
            addr(Src, false, cluster),
            addr(Dst, false, pod),
            ret.clone(),
        ],
        vec![addr(Src, true, pod), addr(Dst, false, cluster), ret],
        vec![
            addr(Src, false, cluster),
            addr(Dst, true, net.multicast()),
            masq.clone(),
        ],
        vec![addr(Src, true, cluster), addr(Dst, false, cluster), masq],
    ];
    for exprs in post {
        tx.push(Op::AddRule(Rule::new(POSTRTG_CHAIN, exprs)));
    }
}

/// Sends `tx` to netfilter from inside `ns` as one batch (all of it or, on error, none of it)
/// and waits for the kernel's answer.
pub fn send(ns: &NetNs, tx: &Transaction) -> Result<(), NftError> {
    NftSocket::open_in(ns)?.apply(tx).map(drop)
}

/// Installs or replaces flannel's nftables rules for `net` in `ns`, atomically.
pub fn apply(ns: &NetNs, net: &FlannelNetwork) -> Result<(), NftError> {
    send(ns, &batch(net))
}

/// As [`apply`], for the parts of [`batch_parts`].
pub fn apply_parts(
    ns: &NetNs,
    net: &FlannelNetwork,
    masq: bool,
    forward: bool,
) -> Result<(), NftError> {
    send(ns, &batch_parts(net, masq, forward))
}

/// The address family of `ip` as flannel's table name.
pub fn table_for(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { IPV4_TABLE } else { IPV6_TABLE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::FakeTable;
    use crate::nftables::expr::{Insn, MetaKind, PayloadBase};
    use crate::nftables::netlink::{Batch, lowered};

    fn net(cluster: &str, pod: &str, random_fully: bool) -> FlannelNetwork {
        FlannelNetwork {
            cluster_cidr: cluster.parse().unwrap(),
            pod_cidr: pod.parse().unwrap(),
            random_fully,
        }
    }

    #[test]
    fn ipv4_script() {
        let tx = batch(&net("10.244.0.0/16", "10.244.1.0/24", true));
        assert_eq!(
            tx.render(),
            "add table ip flannel-ipv4
add chain ip flannel-ipv4 postrtg { type nat hook postrouting priority 100 ; }
flush chain ip flannel-ipv4 postrtg
add rule ip flannel-ipv4 postrtg meta mark & 0x4000 == 0x4000 return
add rule ip flannel-ipv4 postrtg ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
add rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
add rule ip flannel-ipv4 postrtg ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return
add rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
add rule ip flannel-ipv4 postrtg ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
add chain ip flannel-ipv4 forward { type filter hook forward priority 0 ; }
flush chain ip flannel-ipv4 forward
add rule ip flannel-ipv4 forward ip saddr 10.244.0.0/16 accept
add rule ip flannel-ipv4 forward ip daddr 10.244.0.0/16 accept
"
        );
    }

    #[test]
    fn ipv6_script_without_fully_random() {
        // Host bits of the leases are dropped, as the kernel compares only the prefix.
        let tx = batch(&net("fd10:244::1/56", "fd10:244:0:1::1/64", false));
        assert_eq!(tx.family, Family::Ip6);
        assert_eq!(
            tx.render(),
            "add table ip6 flannel-ipv6
add chain ip6 flannel-ipv6 postrtg { type nat hook postrouting priority 100 ; }
flush chain ip6 flannel-ipv6 postrtg
add rule ip6 flannel-ipv6 postrtg meta mark & 0x4000 == 0x4000 return
add rule ip6 flannel-ipv6 postrtg ip6 saddr fd10:244:0:1::/64 ip6 daddr fd10:244::/56 return
add rule ip6 flannel-ipv6 postrtg ip6 saddr fd10:244::/56 ip6 daddr fd10:244:0:1::/64 return
add rule ip6 flannel-ipv6 postrtg ip6 saddr != fd10:244:0:1::/64 ip6 daddr fd10:244::/56 return
add rule ip6 flannel-ipv6 postrtg ip6 saddr fd10:244::/56 ip6 daddr != ff00::/8 masquerade
add rule ip6 flannel-ipv6 postrtg ip6 saddr != fd10:244::/56 ip6 daddr fd10:244::/56 masquerade
add chain ip6 flannel-ipv6 forward { type filter hook forward priority 0 ; }
flush chain ip6 flannel-ipv6 forward
add rule ip6 flannel-ipv6 forward ip6 saddr fd10:244::/56 accept
add rule ip6 flannel-ipv6 forward ip6 daddr fd10:244::/56 accept
"
        );
    }

    #[test]
    fn lowers_to_nfts_register_code() {
        let tx = batch(&net("10.240.0.0/12", "10.240.3.128/25", true));
        let insns = lowered(&tx);
        let load = |offset, len| Insn::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: 1,
        };
        let cmp = |neq, data: &[u8]| Insn::Cmp {
            sreg: 1,
            neq,
            data: data.to_vec(),
        };
        let mask = |m: &[u8]| Insn::Bitwise {
            sreg: 1,
            dreg: 1,
            mask: m.to_vec(),
            xor: vec![0; 4],
        };
        // meta mark & 0x4000 == 0x4000 return
        assert_eq!(
            insns[..4],
            [
                Insn::MetaLoad {
                    key: MetaKind::Mark,
                    dreg: 1
                },
                mask(&0x4000u32.to_ne_bytes()),
                cmp(false, &0x4000u32.to_ne_bytes()),
                Insn::Verdict(Verdict::Return),
            ]
        );
        // ip saddr 10.240.0.0/12 ip daddr != 224.0.0.0/4 masquerade fully-random
        let masq_rule = [
            load(12, 4),
            mask(&[255, 240, 0, 0]),
            cmp(false, &[10, 240, 0, 0]),
            load(16, 4),
            mask(&[240, 0, 0, 0]),
            cmp(true, &[224, 0, 0, 0]),
            Insn::Masq { flags: 0x10 },
        ];
        assert!(
            insns.windows(7).any(|w| w == masq_rule),
            "no masquerade rule in {insns:?}"
        );
        // A /16 (byte boundary) loads and compares two bytes, as nft does.
        let tx = batch(&net("10.244.0.0/16", "10.244.1.0/24", false));
        let fwd = &lowered(&tx)[..];
        assert_eq!(
            fwd[fwd.len() - 3..],
            [
                load(16, 2),
                cmp(false, &[10, 244]),
                Insn::Verdict(Verdict::Accept)
            ]
        );
        assert!(fwd.contains(&Insn::Masq { flags: 0 }));
    }

    #[test]
    fn one_batch_of_thirteen_messages() {
        let tx = batch(&net("10.244.0.0/16", "10.244.1.0/24", true));
        // table, 2 chains, 2 flushes, 8 rules; no anonymous sets.
        assert_eq!(Batch::encode(&tx, 1).messages(), 13);
    }

    #[test]
    fn reapplying_leaves_the_same_table() {
        let a = batch(&net("10.244.0.0/16", "10.244.1.0/24", true));
        let b = batch(&net("10.244.0.0/16", "10.244.2.0/24", true));
        let mut t = FakeTable::new(Family::Ip, IPV4_TABLE);
        t.apply(&a).unwrap();
        let first = t.dump();
        assert_eq!(t.rules(POSTRTG_CHAIN).map(<[_]>::len), Some(6));
        assert_eq!(t.rules(FORWARD_CHAIN).map(<[_]>::len), Some(2));
        t.apply(&a).unwrap();
        assert_eq!(t.dump(), first);
        t.apply(&b).unwrap();
        assert_ne!(t.dump(), first);
        t.apply(&a).unwrap();
        assert_eq!(t.dump(), first);
    }

    #[test]
    fn table_names() {
        assert_eq!(table_for(&"10.0.0.1".parse().unwrap()), IPV4_TABLE);
        assert_eq!(table_for(&"fd00::1".parse().unwrap()), IPV6_TABLE);
    }
}
