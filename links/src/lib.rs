//! A typed, synchronous rtnetlink client bound to one network namespace.
//!
//! A [`Handle`] owns one netlink socket opened inside a namespace; its operations are grouped
//! and named like iproute2's: `h.link().add(..)`, `h.addr().replace(..)`, `h.route().get(..)`.
//! Every error says what was asked and keeps the kernel's errno and extended-ack message;
//! names and arguments are checked before any system call. [`Handle::batch`] pipelines bulk
//! changes, many requests per system call.
//!
//! Devices: veth, bridge, VXLAN, TUN/TAP (through /dev/net/tun), dummy, ifb, macvlan, macvtap,
//! ipvlan, VLAN, and their settings ([`LinkSet`]: promisc, txqueuelen, alias, group,
//! addrgenmode, bridge port flags) and counters. Tables: addresses ([`AddressSpec`] for
//! broadcast, label, lifetimes, noprefixroute), routes (multipath, [`RouteGet`] lookups),
//! policy rules ([`Rule`]), neighbours (ARP/NDP), bridge FDB; traffic control ([`Qdisc`],
//! [`Filter`]); per-link sysctls ([`LinkSysctl`]). [`Monitor`] turns the kernel's change
//! notifications into typed [`Event`]s.
//!
//! ```no_run
//! use podnet_links::{Bridge, Handle, IpNet, Route, Veth};
//! use podnet_netns::NetNs;
//! use std::net::IpAddr;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = NetNs::add("node1")?;
//! let pod = NetNs::add("pod1")?;
//! let h = Handle::in_ns(&node)?;
//! h.link().add(&Bridge::new("cni0"))?;
//! h.link().add(&Veth::new("veth-pod1").peer("eth0").peer_netns(&pod))?;
//! h.link().set("veth-pod1").master("cni0").up().apply()?;
//! h.link().set("cni0").up().apply()?;
//! // An IpNet, or an AddressSpec for brd, label, lifetimes...
//! h.addr().add("cni0", "10.244.1.1/24".parse::<IpNet>()?)?;
//!
//! let p = Handle::in_ns(&pod)?;
//! p.addr().add("eth0", "10.244.1.2/24".parse::<IpNet>()?)?;
//! p.link().set("eth0").up().apply()?;
//! p.route().add(&Route::new("0.0.0.0/0".parse()?).via("10.244.1.1".parse()?))?;
//! // A destination, or a RouteGet with from, iif, oif, mark...
//! println!("{}", p.route().get("10.244.1.1".parse::<IpAddr>()?)?);
//! # Ok(())
//! # }
//! ```
//!
//! # Handles
//!
//! podnet's one handle convention (the top README's "Architecture"): [`Handle::new`] opens
//! the socket in the caller's namespace and [`Handle::in_ns`] inside another one; a `Handle`
//! is shared, locks inside and takes `&self`. [`Monitor`] (`new`, `in_ns`) is one socket
//! read by one owner and takes `&mut self`. Every object's verbs are iproute2's: `add`,
//! `del`, `replace` (the idempotent ensure), `list`, `get`; earlier names stay as
//! `#[deprecated] #[doc(hidden)]` aliases.

mod addr;
mod batch;
mod dump;
mod error;
mod fdb;
mod handle;
mod kinds;
mod link;
mod mac;
mod monitor;
mod neigh;
pub mod netlink;
mod nl_enum;
#[doc(hidden)]
pub mod nlattr;
mod route;
mod rule;
mod scope;
mod settings;
mod sys;
mod sysctl;
mod tc;
mod tun;
mod types;
mod vni;
mod vxlan;
#[cfg(test)]
mod wire_tests;

pub use addr::{Address, AddressSpec, Addresses};
pub use batch::{
    Batch, BatchAddresses, BatchFdb, BatchLinks, BatchNeighbours, BatchReport, BatchRoutes,
};
#[doc(hidden)]
pub use dump::{DumpDatagram, parse_dump_datagram};
pub use error::{Error, Result};
pub use fdb::{Fdb, FdbEntry};
pub use handle::Handle;
pub use kinds::{
    Ipvlan, IpvlanMode, Macvlan, MacvlanMode, Macvtap, StackedInfo, VLAN_ID_MAX, Vlan, VlanInfo,
    VlanProtocol,
};
pub use link::{Bridge, Dummy, Ifb, Link, LinkAdd, LinkKind, LinkSet, LinkSpec, Links, Veth};
#[doc(hidden)]
pub use monitor::parse_events;
pub use monitor::{Event, Group, Monitor};
pub use neigh::{NeighState, Neighbour, Neighbours};
pub use route::{NextHop, Protocol, Route, RouteGet, RouteKind, Routes, TABLE_LOCAL, TABLE_MAIN};
pub use rule::{Family, Rule, RuleKind, Rules, TABLE_DEFAULT};
pub use scope::Scope;
pub use settings::{AddrGenMode, BridgePort, LinkStats};
pub use sysctl::{LinkSysctl, Sysctls};
pub use tc::{Filter, Filters, Htb, Qdisc, QdiscKind, Qdiscs, Tbf, TcId};
pub use tun::{Offload, Tun, TunDevice, TunInfo};
pub use types::{IFNAME_MAX, LinkRef, MacAddr, validate_ifname};
pub use vni::Vni;
pub use vxlan::{Df, PORT_IANA, PORT_LINUX, VNI_MAX, Vxlan, VxlanInfo};

pub use ipnet::IpNet;
pub use podnet_netns::NetNs;
