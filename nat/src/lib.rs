//! Rule models and their backends for container NAT.
//!
//! - [`iptables`]: tables, chains and rules as types; `iptables-restore` input out,
//!   `iptables-save` output in.
//! - [`kube`]: Services and EndpointSlices read from YAML or JSON, and the validated service
//!   model every proxy mode compiles from.
//! - [`flannel`]: flannel's FLANNEL-POSTRTG and FLANNEL-FWD rules, replaced atomically; their
//!   nftables form (tables `flannel-ipv4` / `flannel-ipv6`) is [`flannel_nft`].
//! - [`conntrack`]: list and delete conntrack flows over netlink (stale UDP flows).
//! - [`kube_proxy`]: kube-proxy's three proxy modes. The node settings they share, and one
//!   compiler per mode, each writing out the same [`kube::plan`] of every service port:
//!   [`kube_proxy::iptables_mode`] (rules of the [`iptables`] model; applied by
//!   [`kube_proxy::iptables_sync`], full and partial syncs), [`kube_proxy::nftables_mode`]
//!   (applied by [`nftables::sync`]) and [`kube_proxy::ipvs_mode`] (applied by
//!   [`ipvs::sync`]); [`kube_proxy::cleanup`] removes what a mode left.
//! - [`ipvs`]: IPVS over generic netlink (virtual services and their destinations), ipsets,
//!   and the syncer of kube-proxy's ipvs mode (`kube-ipvs0`, ipsets, iptables rules).
//! - [`nftables`]: nftables over netlink (batches, dumps), and the syncer of kube-proxy's
//!   nftables mode, with full and incremental syncs.
//!
//! `iptables` is the rule model (tables, chains, rules, `iptables-save` text);
//! `kube_proxy::iptables_mode` is kube-proxy's compiler to it. The modules were `proxy`,
//! `proxy::iptables`, `proxy::sync`, `nftables::kube_proxy` and `ipvs::kube_proxy` before.
//!
//! ```
//! use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
//! use podnet_nat::kube_proxy::{NodeSettings, iptables_mode::compile};
//!
//! let yaml = r#"
//! apiVersion: v1
//! kind: Service
//! metadata: {name: web, namespace: demo}
//! spec:
//!   clusterIP: 10.96.0.10
//!   ports: [{name: http, port: 80, protocol: TCP}]
//! "#;
//! let (objects, warnings) = parse_objects(yaml, "inline");
//! assert!(warnings.is_empty());
//! let (state, _) = ClusterState::from_objects(&objects, IpFamily::V4);
//! let rules = compile(&state, &NodeSettings::new("node-1", IpFamily::V4)).render();
//! assert!(rules.contains("\"demo/web:http has no endpoints\""));
//! ```
//!
//! # Handles
//!
//! podnet's one handle convention (the top README's "Architecture"): kernel sockets open with
//! `new()` (the caller's namespace) or `in_ns(&NetNs)` ([`conntrack::Conntrack::in_ns`],
//! [`ipvs::Ipvs::in_ns`]); each is one socket with one owner and takes `&mut self`. Verbs are
//! `add`, `del`, `replace`, `list`, `get` where the object is one kernel object
//! ([`conntrack::Conntrack::del`]); the syncers own their sockets, take `&mut self` and have
//! one verb, `sync`. [`nftables::NftSocket`] still opens with `open`/`open_in`.

#![deny(unsafe_code)]

pub mod conntrack;
pub mod flannel;
pub mod flannel_nft;
mod hash;
pub mod iptables;
pub mod ipvs;
pub mod kube;
pub mod kube_proxy;
pub mod nftables;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
