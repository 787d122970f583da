//! What the walk reads from one namespace: links, addresses, neighbours, FDB, the iptables rule
//! set, and, through podnet-links, the kernel's own route lookup (`ip route get` with an input
//! interface and a mark) and namespace ids (`ip netns list-id`, to find a veth's peer).
//!
//! Everything but the route lookup is read once, on first use, so one walk sees one snapshot.

use super::ExplainError;
use ipnet::IpNet;
use podnet_links::{FdbEntry, Handle, Link, LinkKind, MacAddr, Neighbour, RouteGet, RouteKind};
use podnet_nat::iptables::{SavedRule, TableRules, parse_save_tolerant};
use podnet_netns::NetNs;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// The kind of route the kernel chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteType {
    /// Forward or send through a device.
    Unicast,
    /// Deliver to this namespace.
    Local,
    /// Broadcast.
    Broadcast,
    /// A blackhole, unreachable or prohibit route, or anything else that does not forward.
    Other(u8),
}

/// The kernel's answer to a route lookup.
#[derive(Debug, Clone)]
pub(crate) struct RouteAnswer {
    pub(crate) kind: RouteType,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
    pub(crate) prefsrc: Option<IpAddr>,
    pub(crate) table: u32,
    /// The matched prefix (with [`RouteQuery::fib_match`]).
    pub(crate) prefix: Option<ipnet::Ipv4Net>,
    pub(crate) onlink: bool,
}

/// One route lookup: `ip route get DST [from SRC] [iif DEV] [oif DEV] [mark M] [ipproto P
/// dport D]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteQuery {
    pub(crate) dst: Option<Ipv4Addr>,
    pub(crate) src: Option<Ipv4Addr>,
    pub(crate) iif: Option<u32>,
    pub(crate) oif: Option<u32>,
    pub(crate) mark: u32,
    pub(crate) proto: Option<u8>,
    pub(crate) dport: Option<u16>,
    /// Ask for the matching route entry (RTM_F_FIB_MATCH) rather than the resulting route.
    pub(crate) fib_match: bool,
}

impl RouteQuery {
    /// `ip route get` in words, for the story.
    pub(crate) fn describe(&self, names: &dyn Fn(u32) -> String) -> String {
        let mut s = String::from("ip route get");
        if let Some(d) = self.dst {
            s += &format!(" {d}");
        }
        if let Some(src) = self.src {
            s += &format!(" from {src}");
        }
        if let Some(i) = self.iif {
            s += &format!(" iif {}", names(i));
        }
        if let Some(o) = self.oif {
            s += &format!(" oif {}", names(o));
        }
        if self.mark != 0 {
            s += &format!(" mark {:#x}", self.mark);
        }
        s
    }
}

/// A namespace of the topology, with its state read on first use.
#[derive(Debug)]
pub(crate) struct NsView {
    /// Short name shown in the story (`node1-pod1`).
    pub(crate) label: String,
    /// The namespace's name under /run/netns.
    pub(crate) name: String,
    pub(crate) ns: NetNs,
    handle: Handle,
    links: OnceCell<Vec<Link>>,
    addrs: OnceCell<Vec<podnet_links::Address>>,
    neigh: OnceCell<Vec<Neighbour>>,
    fdb: OnceCell<Vec<FdbEntry>>,
    rules: OnceCell<Rules>,
    nft: OnceCell<super::nft::NftRuleset>,
    nsids: Mutex<HashMap<String, Option<i32>>>,
}

/// The iptables rule set of a namespace (from `iptables-save`), and the lines the model could
/// not read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rules {
    pub(crate) tables: Vec<TableRules>,
    pub(crate) skipped: Vec<String>,
    pub(crate) error: Option<String>,
}

impl NsView {
    pub(crate) fn open(label: String, name: String, ns: NetNs) -> Result<NsView, ExplainError> {
        let handle = Handle::in_ns(&ns).map_err(|e| ExplainError::ns(&label, e))?;
        Ok(NsView {
            label,
            name,
            ns,
            handle,
            links: OnceCell::new(),
            addrs: OnceCell::new(),
            neigh: OnceCell::new(),
            fdb: OnceCell::new(),
            rules: OnceCell::new(),
            nft: OnceCell::new(),
            nsids: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn links(&self) -> &[Link] {
        self.links
            .get_or_init(|| self.handle.link().list().unwrap_or_default())
    }

    pub(crate) fn link(&self, index: u32) -> Option<&Link> {
        self.links().iter().find(|l| l.index == index)
    }

    pub(crate) fn link_named(&self, name: &str) -> Option<&Link> {
        self.links().iter().find(|l| l.name == name)
    }

    /// The device's name, or `ifN`.
    pub(crate) fn dev_name(&self, index: u32) -> String {
        self.link(index)
            .map_or_else(|| format!("if{index}"), |l| l.name.clone())
    }

    pub(crate) fn addrs(&self) -> &[podnet_links::Address] {
        self.addrs
            .get_or_init(|| self.handle.addr().list(None).unwrap_or_default())
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

    /// An address of this namespace (what `-m addrtype --dst-type LOCAL` means).
    pub(crate) fn is_local(&self, ip: Ipv4Addr) -> bool {
        ip.is_loopback() || self.addrs().iter().any(|a| a.addr.addr() == IpAddr::V4(ip))
    }

    /// The device that holds `ip`, if any.
    pub(crate) fn owner_of(&self, ip: Ipv4Addr) -> Option<&Link> {
        let a = self
            .addrs()
            .iter()
            .find(|a| a.addr.addr() == IpAddr::V4(ip))?;
        self.link(a.index)
    }

    pub(crate) fn neighbours(&self) -> &[Neighbour] {
        self.neigh
            .get_or_init(|| self.handle.neigh().list(None).unwrap_or_default())
    }

    /// The neighbour entry for `ip` on device `dev`.
    pub(crate) fn neighbour(&self, dev: &str, ip: Ipv4Addr) -> Option<&Neighbour> {
        self.neighbours()
            .iter()
            .find(|n| n.ip == IpAddr::V4(ip) && n.dev.to_string() == dev && !n.proxy)
    }

    pub(crate) fn fdb(&self) -> &[FdbEntry] {
        self.fdb
            .get_or_init(|| self.handle.fdb().list(None).unwrap_or_default())
    }

    /// The bridge ports (devices whose master is `bridge`).
    pub(crate) fn ports_of(&self, bridge: u32) -> Vec<&Link> {
        self.links()
            .iter()
            .filter(|l| l.master == Some(bridge))
            .collect()
    }

    /// The FDB entries of `dev`'s own table (a VXLAN device's `self` entries) for `mac`.
    pub(crate) fn own_fdb(&self, dev: &str, mac: MacAddr) -> Vec<&FdbEntry> {
        self.fdb()
            .iter()
            .filter(|e| e.dev.to_string() == dev && !e.master && e.mac == mac)
            .collect()
    }

    /// The bridge table's entry for `mac` on bridge `bridge` (index).
    pub(crate) fn bridge_fdb(&self, bridge: u32, mac: MacAddr) -> Option<&FdbEntry> {
        let name = self.dev_name(bridge);
        self.fdb().iter().find(|e| {
            e.mac == mac
                && e.vlan.is_none()
                && (e.master_index == Some(bridge) || (e.dev.to_string() == name && e.master))
        })
    }

    /// The iptables rule set (read once with `iptables-save`).
    pub(crate) fn rules(&self) -> &Rules {
        self.rules.get_or_init(|| read_rules(&self.ns))
    }

    /// The native nftables tables (read once with `nft -j list ruleset`).
    pub(crate) fn nft_rules(&self) -> &super::nft::NftRuleset {
        self.nft.get_or_init(|| {
            match self
                .ns
                .command("nft")
                .args(["-j", "list", "ruleset"])
                .output()
            {
                Ok(o) if o.status.success() => {
                    super::nft::parse(&String::from_utf8_lossy(&o.stdout))
                }
                Ok(o) => super::nft::NftRuleset::failed(format!(
                    "nft -j list ruleset failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => super::nft::NftRuleset::failed(format!("nft: {e}")),
            }
        })
    }

    /// A sysctl's value, `None` when it does not exist.
    pub(crate) fn sysctl(&self, key: &str) -> Option<String> {
        self.ns.sysctl_get(key).ok()
    }

    /// Whether IPv4 frames forwarded by bridge `bridge` cross the iptables hooks
    /// (br_netfilter's `bridge-nf-call-iptables`, per namespace, or the bridge's own option).
    pub(crate) fn bridge_calls_iptables(&self) -> bool {
        self.sysctl("net.bridge.bridge-nf-call-iptables")
            .is_some_and(|v| v.trim() == "1")
    }

    /// The kernel's route lookup.
    pub(crate) fn route_get(&self, q: &RouteQuery) -> Result<RouteAnswer, (i32, String)> {
        let Some(dst) = q.dst else {
            return Err((libc::EINVAL, "a route lookup needs a destination".into()));
        };
        let mut get = RouteGet::new(IpAddr::V4(dst));
        if q.fib_match {
            get = get.fibmatch();
        }
        if let Some(s) = q.src {
            get = get.from(IpAddr::V4(s));
        }
        if let Some(i) = q.iif {
            get = get.iif(i);
        }
        if let Some(o) = q.oif {
            get = get.oif(o);
        }
        if q.mark != 0 {
            get = get.mark(q.mark);
        }
        if let Some(p) = q.proto {
            get = get.ipproto(p, None, q.dport);
        }
        let route = self.handle.route().get_with(&get).map_err(|e| {
            let errno = e.errno().unwrap_or(libc::EIO);
            let text = match e.kernel_message() {
                Some(m) => m.to_owned(),
                None => {
                    let t = std::io::Error::from_raw_os_error(errno).to_string();
                    match t.find(" (os error") {
                        Some(i) => t[..i].to_owned(),
                        None => t,
                    }
                }
            };
            (errno, text)
        })?;
        let prefix = match route.dst {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        };
        Ok(RouteAnswer {
            kind: match route.kind {
                RouteKind::Unicast => RouteType::Unicast,
                RouteKind::Local => RouteType::Local,
                RouteKind::Broadcast => RouteType::Broadcast,
                RouteKind::Anycast => RouteType::Other(4),
                RouteKind::Multicast => RouteType::Other(5),
                RouteKind::Blackhole => RouteType::Other(6),
                RouteKind::Unreachable => RouteType::Other(7),
                RouteKind::Prohibit => RouteType::Other(8),
                RouteKind::Throw => RouteType::Other(9),
                RouteKind::Other(n) => RouteType::Other(n),
                _ => RouteType::Other(0),
            },
            gateway: route.gateway.filter(|g| g.is_ipv4()),
            oif: route.oif,
            prefsrc: route.src.filter(|s| s.is_ipv4()),
            table: route.table,
            prefix,
            onlink: route.onlink,
        })
    }

    /// The id this namespace gives `other` (what `link-netnsid` shows), if it assigned one.
    pub(crate) fn nsid_of(&self, other: &NsView) -> Option<i32> {
        if let Some(id) = self
            .nsids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&other.name)
        {
            return *id;
        }
        let id = self.handle.nsid_of(&other.ns).ok().flatten();
        self.nsids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(other.name.clone(), id);
        id
    }

    /// A TUN device of this namespace.
    pub(crate) fn tun_device(&self) -> Option<&Link> {
        self.links().iter().find(|l| l.kind == Some(LinkKind::Tun))
    }

    /// Local UDP ports with a bound socket (from /proc/net/udp read inside the namespace).
    pub(crate) fn udp_listening(&self, port: u16) -> bool {
        self.sockets("udp", port, None)
    }

    /// Whether a socket listens on `port` for `proto` (`tcp`: state LISTEN; `udp`: bound).
    pub(crate) fn sockets(&self, proto: &str, port: u16, _addr: Option<Ipv4Addr>) -> bool {
        let path = format!("/proc/thread-self/net/{proto}");
        let text = self
            .ns
            .run(move || std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
        text.lines().skip(1).any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                return false;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            p == Some(port) && (proto != "tcp" || *state == "0A")
        })
    }
}

/// Runs `iptables-save` in `ns` and parses it with podnet-nat's parser. Lines the model cannot
/// represent are set aside one by one (and reported), so one exotic rule does not hide the
/// others.
fn read_rules(ns: &NetNs) -> Rules {
    let out = match ns.command("iptables-save").output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return Rules {
                error: Some(format!(
                    "iptables-save failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                ..Rules::default()
            };
        }
        Err(e) => {
            return Rules {
                error: Some(format!("iptables-save: {e}")),
                ..Rules::default()
            };
        }
    };
    parse_lenient(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `iptables-save` text, dropping the lines the rule model cannot represent (in one
/// pass, with the tolerant parser kube-proxy reads the built-in chains with).
pub(crate) fn parse_lenient(text: &str) -> Rules {
    match parse_save_tolerant(text) {
        Ok(saved) => {
            let mut skipped = Vec::new();
            let tables = saved
                .into_iter()
                .map(|t| {
                    let mut rules = TableRules::new(t.table);
                    rules.chains = t.chains;
                    for r in t.rules {
                        match r {
                            SavedRule::Known(r) => rules.append(r),
                            SavedRule::Opaque(o) => skipped.push(o.text),
                        }
                    }
                    rules
                })
                .collect();
            Rules {
                tables,
                skipped,
                error: None,
            }
        }
        Err(e) => Rules {
            tables: Vec::new(),
            skipped: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parse_sets_unknown_rules_aside() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p icmp -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -j DROP\nCOMMIT\n";
        let r = parse_lenient(text);
        assert_eq!(r.skipped, vec!["-A INPUT -p icmp -j ACCEPT".to_string()]);
        assert_eq!(r.tables.len(), 1);
        assert_eq!(r.tables[0].rule_count(), 1);
        assert!(r.error.is_none());
    }

    /// Any number of rules the model cannot read is set aside, in one pass: the
    /// `explain_iptables` fuzz target found each one cost a parse of the whole text (a few
    /// thousand foreign rules took seconds, and more than 1000 were an error).
    #[test]
    fn many_unknown_rules_are_set_aside_in_one_pass() {
        let mut text = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
        for i in 0..3000 {
            text.push_str(&format!(
                "-A INPUT -p icmp -m comment --comment r{i} -j ACCEPT\n"
            ));
        }
        text.push_str("-A INPUT -s 10.0.0.0/8 -j DROP\nCOMMIT\n");
        let start = std::time::Instant::now();
        let r = parse_lenient(&text);
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(r.skipped.len(), 3000);
        assert_eq!(r.tables[0].rule_count(), 1);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
