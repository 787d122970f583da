//! Which interface flanneld sends over, and from which address: flannel's rules
//! (`pkg/ipmatch` and `main.go`), for the IPv4 stack.
//!
//! - `--iface` (repeatable): each value in turn, by name or, when it parses as an address, the
//!   interface that holds it (and that address); the first that exists wins.
//! - `--iface-regex` (repeatable), tried when no `--iface` matched: each pattern in turn,
//!   first against every interface's IPv4 addresses (the matching address is used), then
//!   against the interface names.
//! - `--iface-can-reach ADDR`, tried last: the interface (and source address) of the route the
//!   kernel would take to ADDR.
//! - None of these: the interface that holds `--public-ip` when it is given, else the
//!   default route's interface.
//!
//! The interface's address is the one found above or its first IPv4 address; the public
//! address peers send to is `--public-ip`, else that address. The choice itself is a pure
//! function of what the host has ([`HostView`]); [`LiveHost`] reads it over rtnetlink.

use super::backend::Underlay;
use podnet_links::{Handle, LinkRef};
use std::net::{IpAddr, Ipv4Addr};

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
}

/// What the choice reads from the host.
pub trait HostView {
    /// Every interface.
    fn interfaces(&self) -> Result<Vec<Iface>, String>;
    /// The index of the IPv4 default route's interface, if there is a default route.
    fn default_route_index(&self) -> Result<Option<u32>, String>;
    /// The interface index and preferred source address of the route to `dst`.
    fn route_to(&self, dst: IpAddr) -> Result<(u32, Option<IpAddr>), String>;
}

/// The interface and addresses to use, or why none fits (every attempt, named).
pub fn choose(choice: &IfaceChoice, host: &dyn HostView) -> Result<Underlay, String> {
    let ifaces = host.interfaces()?;
    let explicit = !choice.iface.is_empty()
        || !choice.iface_regex.is_empty()
        || choice.iface_can_reach.is_some();
    if !explicit {
        let found = match choice.public_ip {
            Some(ip) => by_address(&ifaces, ip),
            None => default_interface(&ifaces, host),
        };
        return found.and_then(|f| finish(f, choice.public_ip));
    }
    let mut tried = Vec::new();
    for name in &choice.iface {
        let found = match name.parse::<Ipv4Addr>() {
            Ok(ip) => by_address(&ifaces, ip),
            Err(_) => by_name(&ifaces, name),
        };
        match found.and_then(|f| finish(f, choice.public_ip)) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface {name}: {e}")),
        }
    }
    for pattern in &choice.iface_regex {
        match by_regex(&ifaces, pattern).and_then(|f| finish(f, choice.public_ip)) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface-regex {pattern}: {e}")),
        }
    }
    if let Some(dst) = choice.iface_can_reach {
        let found = host.route_to(dst).and_then(|(index, src)| {
            let iface = ifaces.iter().find(|i| i.index == index).ok_or_else(|| {
                format!("the route to {dst} leaves by interface {index}, which is gone")
            })?;
            let addr = match src {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            };
            Ok((iface.clone(), addr))
        });
        match found.and_then(|f| finish(f, choice.public_ip)) {
            Ok(u) => return Ok(u),
            Err(e) => tried.push(format!("--iface-can-reach {dst}: {e}")),
        }
    }
    Err(format!(
        "no interface matches the interfaces and patterns given ({})",
        tried.join("; ")
    ))
}

/// An interface, and the address found with it (if the lookup was by address).
type Found = (Iface, Option<Ipv4Addr>);

fn by_name(ifaces: &[Iface], name: &str) -> Result<Found, String> {
    ifaces
        .iter()
        .find(|i| i.name == name)
        .map(|i| (i.clone(), None))
        .ok_or_else(|| format!("no interface named {name}"))
}

fn by_address(ifaces: &[Iface], ip: Ipv4Addr) -> Result<Found, String> {
    ifaces
        .iter()
        .find(|i| i.v4.contains(&ip))
        .map(|i| (i.clone(), Some(ip)))
        .ok_or_else(|| format!("no interface has the address {ip}"))
}

fn by_regex(ifaces: &[Iface], pattern: &str) -> Result<Found, String> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("not a regular expression: {e}"))?;
    for i in ifaces {
        if let Some(a) = i.v4.iter().find(|a| re.is_match(&a.to_string())) {
            return Ok((i.clone(), Some(*a)));
        }
    }
    if let Some(i) = ifaces.iter().find(|i| re.is_match(&i.name)) {
        return Ok((i.clone(), None));
    }
    let available: Vec<String> = ifaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = i.v4.iter().map(Ipv4Addr::to_string).collect();
            format!("{}:[{}]", i.name, addrs.join(" "))
        })
        .collect();
    Err(format!(
        "matches none of the interfaces ({})",
        available.join(", ")
    ))
}

fn default_interface(ifaces: &[Iface], host: &dyn HostView) -> Result<Found, String> {
    let index = host
        .default_route_index()?
        .ok_or("no --iface given and no IPv4 default route")?;
    ifaces
        .iter()
        .find(|i| i.index == index)
        .map(|i| (i.clone(), None))
        .ok_or_else(|| format!("the default route's interface {index} is gone"))
}

/// The interface's address (the one found, else its first IPv4 one) and the public address.
fn finish((iface, addr): Found, public_ip: Option<Ipv4Addr>) -> Result<Underlay, String> {
    let iface_addr = match addr.or_else(|| iface.v4.first().copied()) {
        Some(a) => a,
        None => return Err(format!("{} has no IPv4 address", iface.name)),
    };
    if iface.mtu == 0 {
        return Err(format!("{} has no MTU", iface.name));
    }
    Ok(Underlay {
        name: iface.name,
        index: iface.index,
        mtu: iface.mtu,
        iface_addr,
        public_ip: public_ip.unwrap_or(iface_addr),
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
                name: l.name,
                index: l.index,
                mtu: l.mtu,
            })
            .collect())
    }

    fn default_route_index(&self) -> Result<Option<u32>, String> {
        let routes = self.0.route().list().map_err(|e| e.to_string())?;
        Ok(routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4())
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
        routes: BTreeMap<IpAddr, (u32, Option<IpAddr>)>,
    }

    impl HostView for Fake {
        fn interfaces(&self) -> Result<Vec<Iface>, String> {
            Ok(self.ifaces.clone())
        }
        fn default_route_index(&self) -> Result<Option<u32>, String> {
            Ok(self.default)
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
}
