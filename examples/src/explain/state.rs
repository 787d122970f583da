//! The live side of the walk's kernel reads ([`LiveNs`], one namespace's netlink sockets and
//! commands): links, addresses, neighbours, FDB, the iptables and nftables rule sets, and,
//! through podnet-links, the kernel's own route lookup (`ip route get` with an input interface
//! and a mark) and namespace ids (`ip netns list-id`, to find a veth's peer). The walk reads
//! them through [`KernelReads`], cached per walk by `view::NsView`.

use super::ExplainError;
use super::ipvs::IpvsService;
use super::model::{self, Addr, Dev, Fdb, KernelReads, Neigh};
use podnet_links::{Handle, RouteGet, RouteKind};
use podnet_nat::iptables::{SavedRule, TableRules, parse_save_tolerant};
use podnet_netns::NetNs;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// The kind of route the kernel chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteType {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteAnswer {
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteQuery {
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

/// One live namespace: a podnet-links handle inside it.
#[derive(Debug)]
pub(crate) struct LiveNs {
    pub(crate) ns: NetNs,
    handle: Handle,
}

/// The iptables rule set of a namespace (from `iptables-save`), and the lines the model could
/// not read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rules {
    pub(crate) tables: Vec<TableRules>,
    pub(crate) skipped: Vec<String>,
    pub(crate) error: Option<String>,
}

impl LiveNs {
    pub(crate) fn open(label: &str, ns: NetNs) -> Result<LiveNs, ExplainError> {
        let handle = Handle::in_ns(&ns).map_err(|e| ExplainError::ns(label, e))?;
        Ok(LiveNs { ns, handle })
    }

    /// Runs a command in the namespace; its stdout, or why it failed.
    fn output(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        match self.ns.command(cmd).args(args).output() {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            Ok(o) => Err(format!(
                "{cmd}{} failed: {}",
                args.iter().map(|a| format!(" {a}")).collect::<String>(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("{cmd}: {e}")),
        }
    }
}

impl KernelReads for LiveNs {
    fn links(&self) -> Vec<Dev> {
        model::devs(&self.handle.link().list().unwrap_or_default())
    }

    fn addrs(&self) -> Vec<Addr> {
        model::addrs(&self.handle.addr().list(None).unwrap_or_default())
    }

    fn neighbours(&self) -> Vec<Neigh> {
        model::neighs(&self.handle.neigh().list(None).unwrap_or_default())
    }

    fn fdb(&self) -> Vec<Fdb> {
        model::fdbs(&self.handle.fdb().list(None).unwrap_or_default())
    }

    fn iptables_save(&self) -> Result<String, String> {
        self.output("iptables-save", &[])
    }

    fn nft_ruleset(&self) -> Result<String, String> {
        self.output("nft", &["-j", "list", "ruleset"])
    }

    fn sysctl(&self, key: &str) -> Option<String> {
        self.ns.sysctl_get(key).ok()
    }

    fn proc_net(&self, proto: &str) -> String {
        let path = format!("/proc/thread-self/net/{proto}");
        self.ns
            .run(move || std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default()
    }

    fn netns(&self) -> Option<&NetNs> {
        Some(&self.ns)
    }

    fn ipvs(&self) -> Result<Vec<IpvsService>, String> {
        super::ipvs::read_live(&self.ns)
    }

    fn ipset_save(&self) -> Result<String, String> {
        self.output("ipset", &["save"])
    }

    /// The kernel's route lookup.
    fn route_get(&self, q: &RouteQuery) -> Result<RouteAnswer, (i32, String)> {
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
        let route = self.handle.route().get(&get).map_err(|e| {
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
            ipnet::IpNet::V4(n) => Some(n),
            ipnet::IpNet::V6(_) => None,
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
    fn nsid_of(&self, other: &dyn KernelReads, _other_name: &str) -> Option<i32> {
        let other = other.netns()?;
        self.handle.nsid_of(other).ok().flatten()
    }
}

/// Parses `iptables-save`'s output (or keeps why it could not be read). Lines the model
/// cannot represent are set aside one by one (and reported), so one exotic rule does not hide
/// the others.
pub(crate) fn read_rules(saved: Result<String, String>) -> Rules {
    match saved {
        Ok(text) => parse_lenient(&text),
        Err(e) => Rules {
            error: Some(e),
            ..Rules::default()
        },
    }
}

/// Parses `iptables-save` text, dropping the lines the rule model cannot represent (in one
/// pass, with the tolerant parser kube-proxy reads the built-in chains with).
pub(crate) fn parse_lenient(text: &str) -> Rules {
    match parse_save_tolerant(&super::ipset::lift(text)) {
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
                            SavedRule::Opaque(o) => skipped.push(super::ipset::lower(&o.text)),
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
