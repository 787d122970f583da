//! One namespace as one walk sees it: the tables read once, on first use, through
//! [`KernelReads`] (a live namespace or a recorded one), and the questions the walk derives from
//! them (who owns an address, which port of a bridge has a MAC, ...). Every answer the view got
//! is kept, so the walk's reads can be written down as a [`RecordedNs`].

use super::ipset::IpSets;
use super::ipvs::IpvsService;
use super::model::{Addr, Dev, DevKind, Fdb, KernelReads, Neigh, RecordedNs, RecordedRoute};
use super::nft::NftRuleset;
use super::state::{RouteAnswer, RouteQuery, Rules, read_rules};
use ipnet::IpNet;
use podnet_links::MacAddr;
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// A namespace of the topology, with its state read on first use.
#[derive(Debug)]
pub(crate) struct NsView {
    /// Short name shown in the story (`node1-pod1`).
    pub(crate) label: String,
    /// The namespace's name under /run/netns.
    pub(crate) name: String,
    reader: Box<dyn KernelReads>,
    links: OnceCell<Vec<Dev>>,
    addrs: OnceCell<Vec<Addr>>,
    neigh: OnceCell<Vec<Neigh>>,
    fdb: OnceCell<Vec<Fdb>>,
    iptables_text: OnceCell<Result<String, String>>,
    nft_text: OnceCell<Result<String, String>>,
    rules: OnceCell<Rules>,
    nft: OnceCell<NftRuleset>,
    ipvs: OnceCell<Result<Vec<IpvsService>, String>>,
    ipset_text: OnceCell<Result<String, String>>,
    ipsets: OnceCell<IpSets>,
    sysctls: RefCell<BTreeMap<String, Option<String>>>,
    proc_net: RefCell<BTreeMap<String, String>>,
    nsids: RefCell<BTreeMap<String, Option<i32>>>,
    routes: RefCell<Vec<RecordedRoute>>,
}

impl NsView {
    pub(crate) fn new(label: String, name: String, reader: Box<dyn KernelReads>) -> NsView {
        NsView {
            label,
            name,
            reader,
            links: OnceCell::new(),
            addrs: OnceCell::new(),
            neigh: OnceCell::new(),
            fdb: OnceCell::new(),
            iptables_text: OnceCell::new(),
            nft_text: OnceCell::new(),
            rules: OnceCell::new(),
            nft: OnceCell::new(),
            ipvs: OnceCell::new(),
            ipset_text: OnceCell::new(),
            ipsets: OnceCell::new(),
            sysctls: RefCell::default(),
            proc_net: RefCell::default(),
            nsids: RefCell::default(),
            routes: RefCell::default(),
        }
    }

    /// The live namespace, when the view reads one.
    pub(crate) fn netns(&self) -> Option<&podnet_netns::NetNs> {
        self.reader.netns()
    }

    pub(crate) fn links(&self) -> &[Dev] {
        self.links.get_or_init(|| self.reader.links())
    }

    pub(crate) fn link(&self, index: u32) -> Option<&Dev> {
        self.links().iter().find(|l| l.index == index)
    }

    pub(crate) fn link_named(&self, name: &str) -> Option<&Dev> {
        self.links().iter().find(|l| l.name == name)
    }

    /// The device's name, or `ifN`.
    pub(crate) fn dev_name(&self, index: u32) -> String {
        self.link(index)
            .map_or_else(|| format!("if{index}"), |l| l.name.clone())
    }

    pub(crate) fn addrs(&self) -> &[Addr] {
        self.addrs.get_or_init(|| self.reader.addrs())
    }

    /// The IPv4 addresses of one device.
    pub(crate) fn v4_addrs_of(&self, index: u32) -> Vec<(Ipv4Addr, u8)> {
        self.addrs()
            .iter()
            .filter(|a| a.index == index)
            .filter_map(|a| match a.addr {
                IpNet::V4(n) => Some((n.addr(), n.prefix_len())),
                IpNet::V6(_) => None,
            })
            .collect()
    }

    /// The first global IPv4 address of the namespace.
    pub(crate) fn first_global_v4(&self) -> Option<Ipv4Addr> {
        self.addrs()
            .iter()
            .filter(|a| a.global)
            .find_map(|a| match a.addr {
                IpNet::V4(n) => Some(n.addr()),
                IpNet::V6(_) => None,
            })
    }

    /// An address of this namespace (what `-m addrtype --dst-type LOCAL` means).
    pub(crate) fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.addrs().iter().any(|a| a.addr.addr() == IpAddr::V4(ip))
    }

    /// The device that holds `ip`, if any.
    pub(crate) fn owner_of(&self, ip: Ipv4Addr) -> Option<&Dev> {
        let a = self
            .addrs()
            .iter()
            .find(|a| a.addr.addr() == IpAddr::V4(ip))?;
        self.link(a.index)
    }

    pub(crate) fn neighbours(&self) -> &[Neigh] {
        self.neigh.get_or_init(|| self.reader.neighbours())
    }

    /// The neighbour entry for `ip` on device `dev`.
    pub(crate) fn neighbour(&self, dev: &str, ip: Ipv4Addr) -> Option<&Neigh> {
        self.neighbours()
            .iter()
            .find(|n| n.ip == IpAddr::V4(ip) && n.dev == dev && !n.proxy)
    }

    pub(crate) fn fdb(&self) -> &[Fdb] {
        self.fdb.get_or_init(|| self.reader.fdb())
    }

    /// The bridge ports (devices whose master is `bridge`).
    pub(crate) fn ports_of(&self, bridge: u32) -> Vec<&Dev> {
        self.links()
            .iter()
            .filter(|l| l.master == Some(bridge))
            .collect()
    }

    /// The FDB entries of `dev`'s own table (a VXLAN device's `self` entries) for `mac`.
    pub(crate) fn own_fdb(&self, dev: &str, mac: MacAddr) -> Vec<&Fdb> {
        self.fdb()
            .iter()
            .filter(|e| e.dev == dev && !e.master && e.mac == mac)
            .collect()
    }

    /// The bridge table's entry for `mac` on bridge `bridge` (index).
    pub(crate) fn bridge_fdb(&self, bridge: u32, mac: MacAddr) -> Option<&Fdb> {
        let name = self.dev_name(bridge);
        self.fdb().iter().find(|e| {
            e.mac == mac
                && e.vlan.is_none()
                && (e.master_index == Some(bridge) || (e.dev == name && e.master))
        })
    }

    fn iptables_text(&self) -> &Result<String, String> {
        self.iptables_text
            .get_or_init(|| self.reader.iptables_save())
    }

    fn nft_text(&self) -> &Result<String, String> {
        self.nft_text.get_or_init(|| self.reader.nft_ruleset())
    }

    /// The iptables rule set (read once with `iptables-save`).
    pub(crate) fn rules(&self) -> &Rules {
        self.rules
            .get_or_init(|| read_rules(self.iptables_text().clone()))
    }

    /// The native nftables tables (read once with `nft -j list ruleset`).
    pub(crate) fn nft_rules(&self) -> &NftRuleset {
        self.nft.get_or_init(|| match self.nft_text() {
            Ok(text) => super::nft::parse(text),
            Err(e) => NftRuleset::failed(e.clone()),
        })
    }

    /// The IPVS table (read once), or why it could not be read.
    pub(crate) fn ipvs(&self) -> &Result<Vec<IpvsService>, String> {
        self.ipvs.get_or_init(|| self.reader.ipvs())
    }

    fn ipset_text(&self) -> &Result<String, String> {
        self.ipset_text.get_or_init(|| self.reader.ipset_save())
    }

    /// The ipsets (read once with `ipset save`).
    pub(crate) fn ipsets(&self) -> &IpSets {
        self.ipsets.get_or_init(|| IpSets::parse(self.ipset_text()))
    }

    /// A sysctl's value, `None` when it does not exist.
    pub(crate) fn sysctl(&self, key: &str) -> Option<String> {
        if let Some(v) = self.sysctls.borrow().get(key) {
            return v.clone();
        }
        let v = self.reader.sysctl(key);
        self.sysctls.borrow_mut().insert(key.to_owned(), v.clone());
        v
    }

    /// Whether IPv4 frames forwarded by a bridge cross the iptables hooks (br_netfilter's
    /// `bridge-nf-call-iptables`, per namespace).
    pub(crate) fn bridge_calls_iptables(&self) -> bool {
        self.sysctl("net.bridge.bridge-nf-call-iptables")
            .is_some_and(|v| v.trim() == "1")
    }

    /// The kernel's route lookup (every answer is kept for the recording).
    pub(crate) fn route_get(&self, q: &RouteQuery) -> Result<RouteAnswer, (i32, String)> {
        if let Some(r) = self.routes.borrow().iter().find(|r| r.query == *q) {
            return r.answer.clone();
        }
        let answer = self.reader.route_get(q);
        self.routes.borrow_mut().push(RecordedRoute {
            query: q.clone(),
            answer: answer.clone(),
        });
        answer
    }

    /// The id this namespace gives `other` (what `link-netnsid` shows), if it assigned one.
    pub(crate) fn nsid_of(&self, other: &NsView) -> Option<i32> {
        if let Some(id) = self.nsids.borrow().get(&other.name) {
            return *id;
        }
        let id = self.reader.nsid_of(other.reader.as_ref(), &other.name);
        self.nsids.borrow_mut().insert(other.name.clone(), id);
        id
    }

    /// A TUN device of this namespace.
    pub(crate) fn tun_device(&self) -> Option<&Dev> {
        self.links().iter().find(|l| l.kind == Some(DevKind::Tun))
    }

    /// Whether a bound UDP socket has local port `port`.
    pub(crate) fn udp_listening(&self, port: u16) -> bool {
        self.sockets("udp", port)
    }

    fn proc_net(&self, proto: &str) -> String {
        if let Some(t) = self.proc_net.borrow().get(proto) {
            return t.clone();
        }
        let t = self.reader.proc_net(proto);
        self.proc_net
            .borrow_mut()
            .insert(proto.to_owned(), t.clone());
        t
    }

    /// Whether a socket listens on `port` for `proto` (`tcp`: state LISTEN; `udp`: bound):
    /// an IPv4 socket, or an IPv6 one bound to `::` (which takes IPv4 too, unless it was made
    /// `IPV6_V6ONLY`, which /proc does not show; the default `bindv6only=0` is assumed).
    pub(crate) fn sockets(&self, proto: &str, port: u16) -> bool {
        let listens = |table: &str, wildcard_only: bool| {
            self.proc_net(table).lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                    return false;
                };
                let Some((addr, p)) = local.rsplit_once(':') else {
                    return false;
                };
                u16::from_str_radix(p, 16).ok() == Some(port)
                    && (proto != "tcp" || *state == "0A")
                    && (!wildcard_only || addr.bytes().all(|b| b == b'0'))
            })
        };
        listens(proto, false) || listens(&format!("{proto}6"), true)
    }

    /// Everything this view read, with every table read now if the walk had not needed it, so
    /// the recording can also draw the namespace.
    pub(crate) fn record(&self) -> RecordedNs {
        for proto in ["tcp", "udp", "tcp6", "udp6"] {
            self.proc_net(proto);
        }
        for key in ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"] {
            self.sysctl(key);
        }
        RecordedNs {
            label: self.label.clone(),
            name: self.name.clone(),
            links: self.links().to_vec(),
            addrs: self.addrs().to_vec(),
            neighbours: self.neighbours().to_vec(),
            fdb: self.fdb().to_vec(),
            iptables_save: self.iptables_text().clone(),
            nft_ruleset: self.nft_text().clone(),
            sysctls: self.sysctls.borrow().clone(),
            proc_net: self.proc_net.borrow().clone(),
            nsids: self.nsids.borrow().clone(),
            routes: self.routes.borrow().clone(),
            ipvs: self.ipvs().clone().unwrap_or_default(),
            ipvs_error: self.ipvs().clone().err(),
            ipsets: Some(self.ipset_text().clone()),
        }
    }
}
