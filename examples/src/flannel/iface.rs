//! Which interface flanneld sends over, and from which addresses: flannel's rules
//! (`pkg/ipmatch` and `main.go`), for the IPv4 stack, the IPv6 stack (`EnableIPv4: false`)
//! and both (`EnableIPv6`).
//!
//! - `--iface` (repeatable): each value in turn, by name or, when it parses as an address, the
//!   interface that holds it (and that address); the first that exists wins.
//! - `--iface-regex` (repeatable), tried when no `--iface` matched: each pattern in turn,
//!   first against every interface's addresses of the stack (IPv4, or IPv6 for an IPv6-only
//!   network; dual-stack: an interface whose IPv4 and IPv6 addresses both match, as flannel),
//!   then against the interface names.
//! - `--iface-can-reach ADDR`, tried last: the interface (and source address) of the route the
//!   kernel would take to ADDR.
//! - None of these: the interface that holds `--public-ip` (`--public-ipv6` on an IPv6-only
//!   network) when it is given, else the default route's interface (the IPv6 default route's
//!   for an IPv6-only network; dual-stack: both default routes, which must leave by the same
//!   interface).
//!
//! The interface's addresses are the ones found above, else its first IPv4 address and its
//! first global IPv6 address (for the families of the stack); the public addresses peers send
//! to are `--public-ip` and `--public-ipv6`, else those. The choice itself is a pure function
//! of what the host has ([`HostView`]); [`LiveHost`] reads it over rtnetlink.

use super::backend::Underlay;
use podnet_links::{Handle, LinkRef};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// flanneld's interface flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceChoice {
    /// `--iface`: names or addresses, in order.
    pub iface: Vec<String>,
    /// `--iface-regex`: patterns, in order.
    pub iface_regex: Vec<String>,
    /// `--iface-can-reach`.
    pub iface_can_reach: Option<IpAddr>,
    /// `--public-ip`.
    pub public_ip: Option<Ipv4Addr>,
    /// `--public-ipv6`.
    pub public_ipv6: Option<Ipv6Addr>,
}

/// The address families the network uses (net-conf.json's `EnableIPv4`/`EnableIPv6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 only (flannel's default).
    #[default]
    V4,
    /// IPv6 only (`EnableIPv4: false`, `EnableIPv6: true`).
    V6,
    /// Both.
    Dual,
}

impl Stack {
    /// The stack of a network config.
    pub fn of(enable_ipv4: bool, enable_ipv6: bool) -> Stack {
        match (enable_ipv4, enable_ipv6) {
            (_, false) => Stack::V4,
            (false, true) => Stack::V6,
            (true, true) => Stack::Dual,
        }
    }

    fn has_v4(self) -> bool {
        self != Stack::V6
    }

    fn has_v6(self) -> bool {
        self != Stack::V4
    }
}

/// One interface as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// Its MTU.
    pub mtu: u32,
    /// Its IPv4 addresses, in the kernel's order.
    pub v4: Vec<Ipv4Addr>,
    /// Its global IPv6 addresses (no link-local ones), in the kernel's order.
    pub v6: Vec<Ipv6Addr>,
}

/// What the choice reads from the host.
pub trait HostView {
    /// Every interface.
    fn interfaces(&self) -> Result<Vec<Iface>, String>;
    /// The index of the default route's interface (IPv6's with `v6`), if there is a default
    /// route.
    fn default_route_index(&self, v6: bool) -> Result<Option<u32>, String>;
    /// The interface index and preferred source address of the route to `dst`.
    fn route_to(&self, dst: IpAddr) -> Result<(u32, Option<IpAddr>), String>;
}

/// The interface and IPv4 address to use (flannel's IPv4 stack), or why none fits (every
/// attempt, named).
pub fn choose(choice: &IfaceChoice, host: &dyn HostView) -> Result<Underlay, String> {
    choose_for(choice, host, Stack::V4)
}

/// The interface and the addresses of `stack` to use, or why none fits (every attempt, named).
pub fn choose_for(
    choice: &IfaceChoice,
    host: &dyn HostView,
    stack: Stack,
) -> Result<Underlay, String> {
    let ifaces = host.interfaces()?;
    let explicit = !choice.iface.is_empty()
        || !choice.iface_regex.is_empty()
        || choice.iface_can_reach.is_some();
    let done = |f: Found| finish(f, choice, stack);
    if !explicit {
        let found = match (stack, choice.public_ip, choice.public_ipv6) {
            (Stack::V4 | Stack::Dual, Some(ip), _) => by_address(&ifaces, ip.into()),
            (Stack::V6, _, Some(ip)) => by_address(&ifaces, ip.into()),
            _ => default_interface(&ifaces, host, stack),
        };
        return found.and_then(done);
    }
    let mut tried = Vec::new();
    for name in &choice.iface {
        let found = match name.parse::<IpAddr>() {
            Ok(ip) => by_address(&ifaces, ip),
            Err(_) => by_name(&ifaces, name),
        };
        match found.and_then(done) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface {name}: {e}")),
        }
    }
    for pattern in &choice.iface_regex {
        match by_regex(&ifaces, pattern, stack).and_then(done) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface-regex {pattern}: {e}")),
        }
    }
    if let Some(dst) = choice.iface_can_reach {
        let found = host.route_to(dst).and_then(|(index, src)| {
            let iface = ifaces.iter().find(|i| i.index == index).ok_or_else(|| {
                format!("the route to {dst} leaves by interface {index}, which is gone")
            })?;
            Ok(Found::with(iface.clone(), src))
        });
        match found.and_then(done) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface-can-reach {dst}: {e}")),
        }
    }
    Err(format!(
        "no interface matches the interfaces and patterns given ({})",
        tried.join("; ")
    ))
}

/// An interface, and the addresses found with it (if the lookup was by address).
struct Found {
    iface: Iface,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl Found {
    fn with(iface: Iface, addr: Option<IpAddr>) -> Found {
        let (v4, v6) = match addr {
            Some(IpAddr::V4(a)) => (Some(a), None),
            Some(IpAddr::V6(a)) => (None, Some(a)),
            None => (None, None),
        };
        Found { iface, v4, v6 }
    }
}

fn by_name(ifaces: &[Iface], name: &str) -> Result<Found, String> {
    ifaces
        .iter()
        .find(|i| i.name == name)
        .map(|i| Found::with(i.clone(), None))
        .ok_or_else(|| format!("no interface named {name}"))
}

fn by_address(ifaces: &[Iface], ip: IpAddr) -> Result<Found, String> {
    ifaces
        .iter()
        .find(|i| match ip {
            IpAddr::V4(a) => i.v4.contains(&a),
            IpAddr::V6(a) => i.v6.contains(&a),
        })
        .map(|i| Found::with(i.clone(), Some(ip)))
        .ok_or_else(|| format!("no interface has the address {ip}"))
}

fn by_regex(ifaces: &[Iface], pattern: &str, stack: Stack) -> Result<Found, String> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("not a regular expression: {e}"))?;
    let v4 = |i: &Iface| i.v4.iter().copied().find(|a| re.is_match(&a.to_string()));
    let v6 = |i: &Iface| i.v6.iter().copied().find(|a| re.is_match(&a.to_string()));
    for i in ifaces {
        let found = match stack {
            Stack::V4 => v4(i).map(|a| (Some(a), None)),
            Stack::V6 => v6(i).map(|a| (None, Some(a))),
            // flannel: dual-stack takes an interface whose addresses of both families match.
            Stack::Dual => v4(i).zip(v6(i)).map(|(a, b)| (Some(a), Some(b))),
        };
        if let Some((v4, v6)) = found {
            return Ok(Found {
                iface: i.clone(),
                v4,
                v6,
            });
        }
    }
    if let Some(i) = ifaces.iter().find(|i| re.is_match(&i.name)) {
        return Ok(Found::with(i.clone(), None));
    }
    let available: Vec<String> = ifaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = if stack == Stack::V6 {
                i.v6.iter().map(Ipv6Addr::to_string).collect()
            } else {
                i.v4.iter().map(Ipv4Addr::to_string).collect()
            };
            format!("{}:[{}]", i.name, addrs.join(" "))
        })
        .collect();
    Err(format!(
        "matches none of the interfaces ({})",
        available.join(", ")
    ))
}

fn default_interface(ifaces: &[Iface], host: &dyn HostView, stack: Stack) -> Result<Found, String> {
    let find = |index: u32| {
        ifaces
            .iter()
            .find(|i| i.index == index)
            .ok_or_else(|| format!("the default route's interface {index} is gone"))
    };
    let v4 = if stack.has_v4() {
        let index = host
            .default_route_index(false)?
            .ok_or("no --iface given and no IPv4 default route")?;
        Some(find(index)?)
    } else {
        None
    };
    let v6 = if stack.has_v6() {
        let index = host
            .default_route_index(true)?
            .ok_or("no --iface given and no IPv6 default route")?;
        Some(find(index)?)
    } else {
        None
    };
    match (v4, v6) {
        (Some(a), Some(b)) if a.index != b.index => Err(format!(
            "the IPv6 default route leaves by {}, the IPv4 one by {}: flannel needs one \
             interface for both (choose it with --iface)",
            b.name, a.name
        )),
        (Some(i), _) | (None, Some(i)) => Ok(Found::with(i.clone(), None)),
        (None, None) => Err("no address family enabled".into()),
    }
}

/// The interface's addresses (the ones found, else its first ones of each family the stack
/// uses) and the public addresses.
fn finish(found: Found, choice: &IfaceChoice, stack: Stack) -> Result<Underlay, String> {
    let iface = found.iface;
    let iface_addr = if stack.has_v4() {
        match found.v4.or_else(|| iface.v4.first().copied()) {
            Some(a) => a,
            None => return Err(format!("{} has no IPv4 address", iface.name)),
        }
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let iface_addr6 = if stack.has_v6() {
        match found.v6.or_else(|| iface.v6.first().copied()) {
            Some(a) => Some(a),
            None => return Err(format!("{} has no global IPv6 address", iface.name)),
        }
    } else {
        None
    };
    if iface.mtu == 0 {
        return Err(format!("{} has no MTU", iface.name));
    }
    Ok(Underlay {
        name: iface.name,
        index: iface.index,
        mtu: iface.mtu,
        iface_addr,
        public_ip: if stack.has_v4() {
            choice.public_ip.unwrap_or(iface_addr)
        } else {
            Ipv4Addr::UNSPECIFIED
        },
        iface_addr6,
        public_ipv6: iface_addr6.map(|a| choice.public_ipv6.unwrap_or(a)),
    })
}

/// The host as the handle's namespace has it, over rtnetlink.
pub struct LiveHost<'h>(pub &'h Handle);

impl HostView for LiveHost<'_> {
    fn interfaces(&self) -> Result<Vec<Iface>, String> {
        let links = self.0.link().list().map_err(|e| e.to_string())?;
        let addrs = self.0.addr().list(None).map_err(|e| e.to_string())?;
        Ok(links
            .into_iter()
            .map(|l| Iface {
                v4: addrs
                    .iter()
                    .filter(|a| a.index == l.index)
                    .filter_map(|a| match a.addr {
                        ipnet::IpNet::V4(n) => Some(n.addr()),
                        ipnet::IpNet::V6(_) => None,
                    })
                    .collect(),
                v6: addrs
                    .iter()
                    .filter(|a| a.index == l.index && a.scope == podnet_links::Scope::Universe)
                    .filter_map(|a| match a.addr {
                        ipnet::IpNet::V6(n) => Some(n.addr()),
                        ipnet::IpNet::V4(_) => None,
                    })
                    .collect(),
                name: l.name,
                index: l.index,
                mtu: l.mtu,
            })
            .collect())
    }

    fn default_route_index(&self, v6: bool) -> Result<Option<u32>, String> {
        let routes = self.0.route().list().map_err(|e| e.to_string())?;
        Ok(routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6)
            .min_by_key(|r| r.metric.unwrap_or(0))
            .and_then(|r| self.index_of(r.oif, r.dev.as_ref())))
    }

    fn route_to(&self, dst: IpAddr) -> Result<(u32, Option<IpAddr>), String> {
        // `ip route get`: the kernel's answer, policy rules included.
        let route = self
            .0
            .route()
            .get(dst)
            .map_err(|e| format!("no route to {dst}: {e}"))?;
        let index = self
            .index_of(route.oif, route.dev.as_ref())
            .ok_or_else(|| format!("the route to {dst} names no interface"))?;
        Ok((index, route.src))
    }
}

impl LiveHost<'_> {
    fn index_of(&self, oif: Option<u32>, dev: Option<&LinkRef>) -> Option<u32> {
        if oif.is_some() {
            return oif;
        }
        match dev? {
            LinkRef::Index(i) => Some(*i),
            LinkRef::Name(n) => self.0.link().get(n.as_str()).ok().map(|l| l.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Fake {
        ifaces: Vec<Iface>,
        default: Option<u32>,
        default6: Option<u32>,
        routes: BTreeMap<IpAddr, (u32, Option<IpAddr>)>,
    }

    impl HostView for Fake {
        fn interfaces(&self) -> Result<Vec<Iface>, String> {
            Ok(self.ifaces.clone())
        }
        fn default_route_index(&self, v6: bool) -> Result<Option<u32>, String> {
            Ok(if v6 { self.default6 } else { self.default })
        }
        fn route_to(&self, dst: IpAddr) -> Result<(u32, Option<IpAddr>), String> {
            self.routes
                .get(&dst)
                .copied()
                .ok_or(format!("no route to {dst}"))
        }
    }

    fn iface(name: &str, index: u32, v4: &[&str]) -> Iface {
        Iface {
            name: name.into(),
            index,
            mtu: 1500,
            v4: v4.iter().map(|a| a.parse().unwrap()).collect(),
            v6: Vec::new(),
        }
    }

    fn host() -> Fake {
        Fake {
            ifaces: vec![
                iface("lo", 1, &["127.0.0.1"]),
                iface("eth0", 2, &["192.0.2.10", "192.0.2.11"]),
                iface("eth1", 3, &["198.51.100.7"]),
                iface("bond0", 4, &[]),
            ],
            default: Some(2),
            default6: None,
            routes: [(
                "203.0.113.1".parse().unwrap(),
                (3, Some("198.51.100.7".parse().unwrap())),
            )]
            .into(),
        }
    }

    fn pick(choice: IfaceChoice) -> Result<(String, Ipv4Addr, Ipv4Addr), String> {
        choose(&choice, &host()).map(|u| (u.name, u.iface_addr, u.public_ip))
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn default_route_interface_and_its_first_address() {
        assert_eq!(
            pick(IfaceChoice::default()),
            Ok(("eth0".into(), ip("192.0.2.10"), ip("192.0.2.10")))
        );
    }

    #[test]
    fn public_ip_alone_picks_the_interface_that_holds_it() {
        let c = IfaceChoice {
            public_ip: Some(ip("198.51.100.7")),
            ..Default::default()
        };
        assert_eq!(
            pick(c),
            Ok(("eth1".into(), ip("198.51.100.7"), ip("198.51.100.7")))
        );
        let c = IfaceChoice {
            public_ip: Some(ip("203.0.113.50")),
            ..Default::default()
        };
        assert!(
            pick(c)
                .unwrap_err()
                .contains("no interface has the address 203.0.113.50")
        );
    }

    #[test]
    fn iface_by_name_or_address_first_that_exists() {
        let c = IfaceChoice {
            iface: vec!["wlan0".into(), "192.0.2.11".into(), "eth1".into()],
            public_ip: Some(ip("203.0.113.9")),
            ..Default::default()
        };
        // wlan0 does not exist; the address picks eth0 with that address; public IP kept.
        assert_eq!(
            pick(c),
            Ok(("eth0".into(), ip("192.0.2.11"), ip("203.0.113.9")))
        );
    }

    #[test]
    fn regex_matches_addresses_before_names() {
        let c = IfaceChoice {
            iface: vec!["nope".into()],
            iface_regex: vec!["^198\\.51\\.".into()],
            ..Default::default()
        };
        assert_eq!(
            pick(c),
            Ok(("eth1".into(), ip("198.51.100.7"), ip("198.51.100.7")))
        );
        let c = IfaceChoice {
            iface_regex: vec!["^eth".into()],
            ..Default::default()
        };
        // No address matches "^eth": the first interface whose name does.
        assert_eq!(
            pick(c),
            Ok(("eth0".into(), ip("192.0.2.10"), ip("192.0.2.10")))
        );
    }

    #[test]
    fn can_reach_uses_the_route_and_its_source() {
        let c = IfaceChoice {
            iface_can_reach: Some("203.0.113.1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            pick(c),
            Ok(("eth1".into(), ip("198.51.100.7"), ip("198.51.100.7")))
        );
    }

    #[test]
    fn nothing_matches_every_attempt_is_named() {
        let c = IfaceChoice {
            iface: vec!["wlan0".into(), "bond0".into()],
            iface_regex: vec!["(".into(), "^zz".into()],
            iface_can_reach: Some("203.0.113.99".parse().unwrap()),
            ..Default::default()
        };
        let e = pick(c).unwrap_err();
        for part in [
            "--iface wlan0: no interface named wlan0",
            "--iface bond0: bond0 has no IPv4 address",
            "--iface-regex (: not a regular expression",
            "--iface-regex ^zz: matches none of the interfaces (lo:[127.0.0.1], eth0:[192.0.2.10 192.0.2.11]",
            "--iface-can-reach 203.0.113.99: no route to 203.0.113.99",
        ] {
            assert!(e.contains(part), "{part:?} missing in {e}");
        }
    }

    #[test]
    fn no_default_route_says_so() {
        let mut h = host();
        h.default = None;
        let e = choose(&IfaceChoice::default(), &h).unwrap_err();
        assert!(e.contains("no IPv4 default route"), "{e}");
    }

    fn dual_host() -> Fake {
        let mut h = host();
        h.ifaces[1].v6 = vec!["2001:db8::10".parse().unwrap()];
        h.ifaces[2].v6 = vec![
            "2001:db8:7::7".parse().unwrap(),
            "2001:db8:7::8".parse().unwrap(),
        ];
        h.default6 = Some(3);
        h
    }

    fn pick6(
        choice: IfaceChoice,
        host: &Fake,
        stack: Stack,
    ) -> Result<(String, Ipv4Addr, Option<Ipv6Addr>, Option<Ipv6Addr>), String> {
        choose_for(&choice, host, stack)
            .map(|u| (u.name, u.iface_addr, u.iface_addr6, u.public_ipv6))
    }

    fn ip6(s: &str) -> Option<Ipv6Addr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn ipv6_only_uses_the_v6_default_route_and_first_global_address() {
        let got = pick6(IfaceChoice::default(), &dual_host(), Stack::V6);
        assert_eq!(
            got,
            Ok((
                "eth1".into(),
                Ipv4Addr::UNSPECIFIED,
                ip6("2001:db8:7::7"),
                ip6("2001:db8:7::7")
            ))
        );
        let u = choose_for(&IfaceChoice::default(), &dual_host(), Stack::V6).unwrap();
        assert_eq!(u.public_ip, Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn dual_stack_needs_one_default_interface_for_both() {
        let e = pick6(IfaceChoice::default(), &dual_host(), Stack::Dual).unwrap_err();
        assert!(
            e.contains("IPv6 default route leaves by eth1, the IPv4 one by eth0"),
            "{e}"
        );
        let mut h = dual_host();
        h.default6 = Some(2);
        assert_eq!(
            pick6(IfaceChoice::default(), &h, Stack::Dual),
            Ok((
                "eth0".into(),
                ip("192.0.2.10"),
                ip6("2001:db8::10"),
                ip6("2001:db8::10")
            ))
        );
    }

    #[test]
    fn dual_stack_by_name_address_or_regex_with_public_ipv6() {
        let h = dual_host();
        let c = IfaceChoice {
            iface: vec!["2001:db8:7::8".into()],
            public_ipv6: ip6("2001:db8:ff::1"),
            ..Default::default()
        };
        assert_eq!(
            pick6(c, &h, Stack::V6),
            Ok((
                "eth1".into(),
                Ipv4Addr::UNSPECIFIED,
                ip6("2001:db8:7::8"),
                ip6("2001:db8:ff::1")
            ))
        );
        let c = IfaceChoice {
            iface: vec!["eth1".into()],
            ..Default::default()
        };
        assert_eq!(
            pick6(c, &h, Stack::Dual),
            Ok((
                "eth1".into(),
                ip("198.51.100.7"),
                ip6("2001:db8:7::7"),
                ip6("2001:db8:7::7")
            ))
        );
        let c = IfaceChoice {
            iface_regex: vec!["^(198|2001:db8:7:)".into()],
            ..Default::default()
        };
        assert_eq!(
            pick6(c, &h, Stack::Dual),
            Ok((
                "eth1".into(),
                ip("198.51.100.7"),
                ip6("2001:db8:7::7"),
                ip6("2001:db8:7::7")
            ))
        );
        // bond0 has no IPv6 address: named as such.
        let c = IfaceChoice {
            iface: vec!["bond0".into()],
            ..Default::default()
        };
        let e = pick6(c, &h, Stack::V6).unwrap_err();
        assert!(e.contains("bond0 has no global IPv6 address"), "{e}");
    }
}
