//! flannel's nftables rules (tables `flannel-ipv4` / `flannel-ipv6`, chains `postrtg` and
//! `forward`) built with libnftnl through the `nftnl` crate, and sent as one netlink batch
//! inside a network namespace.
//!
//! The batch adds the table and chains (a no-op when they exist), flushes the chains and adds
//! the rules: the kernel applies it as one transaction, so an update never leaves a moment
//! without rules. The rules are those of flannel's `pkg/trafficmngr/nftables`:
//!
//! ```text
//! table ip flannel-ipv4 {
//!   chain postrtg { type nat hook postrouting priority srcnat;
//!     meta mark 0x4000 return
//!     ip saddr POD ip daddr CLUSTER return
//!     ip saddr CLUSTER ip daddr POD return
//!     ip saddr != POD ip daddr CLUSTER return
//!     ip saddr CLUSTER ip daddr != 224.0.0.0/4 masquerade fully-random
//!     ip saddr != CLUSTER ip daddr CLUSTER masquerade fully-random }
//!   chain forward { type filter hook forward priority filter;
//!     ip saddr CLUSTER accept
//!     ip daddr CLUSTER accept } }
//! ```

use crate::flannel::FlannelNetwork;
use ipnet::IpNet;
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_NETFILTER};
use nftnl::expr::{
    Bitwise, Cmp, CmpOp, Expression, Ipv4HeaderField, Ipv6HeaderField, NetworkHeaderField, Payload,
};
use nftnl::{
    Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, ProtoFamily, Rule, Table, nft_expr,
};
use podnet_netns::NetNs;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// The IPv4 table name.
pub const IPV4_TABLE: &str = "flannel-ipv4";
/// The IPv6 table name.
pub const IPV6_TABLE: &str = "flannel-ipv6";

/// `masquerade fully-random`, which the `nftnl` crate's `Masquerade` cannot express.
struct MasqueradeFullyRandom;

/// `NF_NAT_RANGE_PROTO_RANDOM_FULLY` from linux/netfilter/nf_nat.h.
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 1 << 4;
/// `NFTNL_EXPR_MASQ_FLAGS` from libnftnl/expr.h.
const NFTNL_EXPR_MASQ_FLAGS: u16 = nftnl::nftnl_sys::NFTNL_EXPR_MASQ_FLAGS as u16;

impl Expression for MasqueradeFullyRandom {
    fn to_expr(&self, _rule: &Rule) -> NonNull<nftnl::nftnl_sys::nftnl_expr> {
        // SAFETY: nftnl_expr_alloc takes a NUL-terminated name and returns an owned expression
        // or NULL (checked); nftnl_expr_set_u32 copies the value into that expression.
        unsafe {
            let expr = nftnl::nftnl_sys::nftnl_expr_alloc(c"masq".as_ptr());
            let expr = NonNull::new(expr).expect("libnftnl out of memory allocating an expression");
            nftnl::nftnl_sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                NFTNL_EXPR_MASQ_FLAGS,
                NF_NAT_RANGE_PROTO_RANDOM_FULLY,
            );
            expr
        }
    }
}

fn match_net(rule: &mut Rule, net: IpNet, source: bool, negate: bool) {
    let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
    match net {
        IpNet::V4(n) => {
            let field = if source {
                Ipv4HeaderField::Saddr
            } else {
                Ipv4HeaderField::Daddr
            };
            rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv4(field)));
            if n.prefix_len() < 32 {
                rule.add_expr(&Bitwise::new(n.netmask(), 0u32));
            }
            rule.add_expr(&Cmp::new(op, n.network()));
        }
        IpNet::V6(n) => {
            let field = if source {
                Ipv6HeaderField::Saddr
            } else {
                Ipv6HeaderField::Daddr
            };
            rule.add_expr(&Payload::Network(NetworkHeaderField::Ipv6(field)));
            if n.prefix_len() < 128 {
                rule.add_expr(&Bitwise::new(n.netmask(), std::net::Ipv6Addr::UNSPECIFIED));
            }
            rule.add_expr(&Cmp::new(op, n.network()));
        }
    }
}

/// Builds the batch that installs (or replaces) flannel's nftables rules for `net`.
pub fn batch(net: &FlannelNetwork) -> FinalizedBatch {
    let (family, name, multicast): (ProtoFamily, &str, IpNet) = match net.cluster_cidr {
        IpNet::V4(_) => (
            ProtoFamily::Ipv4,
            IPV4_TABLE,
            "224.0.0.0/4".parse().expect("literal"),
        ),
        IpNet::V6(_) => (
            ProtoFamily::Ipv6,
            IPV6_TABLE,
            "ff00::/8".parse().expect("literal"),
        ),
    };
    let (cluster, pod) = (net.cluster_cidr, net.pod_cidr);
    let tname = CString::new(name).expect("no NUL");
    let mut b = Batch::new();
    let table = Table::new(&tname, family);
    b.add(&table, MsgType::Add);

    let mut post = Chain::new(c"postrtg", &table);
    post.set_type(ChainType::Nat);
    post.set_hook(Hook::PostRouting, 100);
    b.add(&post, MsgType::Add);
    b.add(&Rule::new(&post), MsgType::Del); // flush the chain, in the same transaction
    let masq = |r: &mut Rule| {
        if net.random_fully {
            r.add_expr(&MasqueradeFullyRandom);
        } else {
            r.add_expr(&nft_expr!(masquerade));
        }
    };
    // meta mark 0x4000 return
    let mut r = Rule::new(&post);
    r.add_expr(&nft_expr!(meta mark));
    r.add_expr(&nft_expr!(cmp == 0x4000u32));
    r.add_expr(&nft_expr!(verdict return));
    b.add(&r, MsgType::Add);
    for (s, sneg, d, dneg) in [
        (pod, false, cluster, false),
        (cluster, false, pod, false),
        (pod, true, cluster, false),
    ] {
        let mut r = Rule::new(&post);
        match_net(&mut r, s, true, sneg);
        match_net(&mut r, d, false, dneg);
        r.add_expr(&nft_expr!(verdict return));
        b.add(&r, MsgType::Add);
    }
    let mut r = Rule::new(&post);
    match_net(&mut r, cluster, true, false);
    match_net(&mut r, multicast, false, true);
    masq(&mut r);
    b.add(&r, MsgType::Add);
    let mut r = Rule::new(&post);
    match_net(&mut r, cluster, true, true);
    match_net(&mut r, cluster, false, false);
    masq(&mut r);
    b.add(&r, MsgType::Add);

    let mut fwd = Chain::new(c"forward", &table);
    fwd.set_type(ChainType::Filter);
    fwd.set_hook(Hook::Forward, 0);
    b.add(&fwd, MsgType::Add);
    b.add(&Rule::new(&fwd), MsgType::Del);
    for source in [true, false] {
        let mut r = Rule::new(&fwd);
        match_net(&mut r, cluster, source, false);
        r.add_expr(&nft_expr!(verdict accept));
        b.add(&r, MsgType::Add);
    }
    b.finalize()
}

/// Sends `batch` to netfilter from inside `ns` and waits for every acknowledgement.
pub fn send(ns: &NetNs, batch: &FinalizedBatch) -> io::Result<()> {
    let socket = ns
        .run(|| -> io::Result<Socket> {
            let mut s = Socket::new(NETLINK_NETFILTER)?;
            s.bind_auto()?;
            s.connect(&NlAddr::new(0, 0))?;
            Ok(s)
        })
        .map_err(io::Error::other)??;
    let mut bytes = Vec::new();
    for part in batch.iter() {
        bytes.extend_from_slice(part);
    }
    socket.send(&bytes, 0)?;
    socket.set_non_blocking(true)?;
    let mut pending: Vec<u32> = batch.sequence_numbers().collect();
    let first = pending.first().copied().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 1 << 16];
    while !pending.is_empty() {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nftables batch not acknowledged",
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4 bytes"));
            if len < 16 || off + len > n {
                break;
            }
            if ty == 2 && len >= 20 {
                let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4 bytes"));
                if code != 0 {
                    let e = io::Error::from_raw_os_error(-code);
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "nftables batch message {} refused: {e}",
                            seq.wrapping_sub(first)
                        ),
                    ));
                }
                pending.retain(|s| *s != seq);
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}

/// Installs or replaces flannel's nftables rules for `net` in `ns`, atomically.
pub fn apply(ns: &NetNs, net: &FlannelNetwork) -> io::Result<()> {
    send(ns, &batch(net))
}

/// The address family of `ip` as flannel's table name.
pub fn table_for(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { IPV4_TABLE } else { IPV6_TABLE }
}
