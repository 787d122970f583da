//! Policy routing rules: add, del, list, like `ip rule` and `ip -6 rule`.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::route::{TABLE_LOCAL, TABLE_MAIN};
use crate::types::validate_ifname;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleHeader, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::fmt;

/// The default table (`ip rule`'s lowest-priority lookup).
pub const TABLE_DEFAULT: u32 = 253;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`ip -4`).
    Inet,
    /// IPv6 (`ip -6`).
    Inet6,
}

impl Family {
    fn to_nl(self) -> AddressFamily {
        match self {
            Family::Inet => AddressFamily::Inet,
            Family::Inet6 => AddressFamily::Inet6,
        }
    }

    fn of(net: &IpNet) -> Family {
        if net.addr().is_ipv4() {
            Family::Inet
        } else {
            Family::Inet6
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RuleKind {
    /// `lookup TABLE`: look the route up in the rule's table.
    #[default]
    Lookup,
    /// `goto PRIORITY`: continue with the rule of that priority.
    Goto(u32),
    /// `nop`.
    Nop,
    /// `blackhole`: drop silently.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
    /// Any other action number.
    Other(u8),
}

/// A policy routing rule (`ip rule add [not] from SRC to DST iif DEV oif DEV fwmark M/MASK
/// priority P lookup TABLE`), in one family.
///
/// ```
/// use podnet_links::Rule;
/// let r = Rule::new_v4()
///     .from("10.244.1.0/24".parse().unwrap())
///     .fwmark(0x4000, Some(0x4000))
///     .priority(100)
///     .table(100);
/// assert_eq!(r.to_string(), "100:\tfrom 10.244.1.0/24 fwmark 0x4000/0x4000 lookup 100");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    /// The family (`ip -4 rule` or `ip -6 rule`).
    pub family: Family,
    /// `priority P` (`pref`); the kernel picks one below the lowest when unset.
    pub priority: Option<u32>,
    /// `not`: the rule matches what the selectors do not.
    pub invert: bool,
    /// `from PREFIX`.
    pub from: Option<IpNet>,
    /// `to PREFIX`.
    pub to: Option<IpNet>,
    /// `iif DEV`: packets received on that device (`lo` for locally sent ones).
    pub iif: Option<String>,
    /// `oif DEV`: packets sent from sockets bound to that device.
    pub oif: Option<String>,
    /// `fwmark M`.
    pub fwmark: Option<u32>,
    /// `/MASK` of the fwmark (all bits when unset).
    pub fwmask: Option<u32>,
    /// `lookup TABLE`.
    pub table: u32,
    /// The action.
    pub kind: RuleKind,
    /// Who installed the rule (`proto`), read back: `kernel` for the three default rules, 0
    /// for rules added without one (as `ip rule add` and [`Rules::add`] add them).
    pub protocol: u8,
}

impl Rule {
    fn new(family: Family) -> Rule {
        Rule {
            family,
            priority: None,
            invert: false,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            fwmask: None,
            table: TABLE_MAIN,
            kind: RuleKind::Lookup,
            protocol: 0,
        }
    }

    /// An IPv4 rule that matches everything and looks up the main table.
    pub fn new_v4() -> Rule {
        Rule::new(Family::Inet)
    }

    /// An IPv6 rule that matches everything and looks up the main table.
    pub fn new_v6() -> Rule {
        Rule::new(Family::Inet6)
    }

    /// `priority P`.
    pub fn priority(mut self, p: u32) -> Rule {
        self.priority = Some(p);
        self
    }

    /// `not`.
    pub fn invert(mut self) -> Rule {
        self.invert = true;
        self
    }

    /// `from PREFIX`.
    pub fn from(mut self, net: IpNet) -> Rule {
        self.from = Some(net.trunc());
        self
    }

    /// `to PREFIX`.
    pub fn to(mut self, net: IpNet) -> Rule {
        self.to = Some(net.trunc());
        self
    }

    /// `iif DEV`.
    pub fn iif(mut self, dev: impl Into<String>) -> Rule {
        self.iif = Some(dev.into());
        self
    }

    /// `oif DEV`.
    pub fn oif(mut self, dev: impl Into<String>) -> Rule {
        self.oif = Some(dev.into());
        self
    }

    /// `fwmark MARK[/MASK]`.
    pub fn fwmark(mut self, mark: u32, mask: Option<u32>) -> Rule {
        self.fwmark = Some(mark);
        self.fwmask = mask;
        self
    }

    /// `lookup TABLE`.
    pub fn table(mut self, table: u32) -> Rule {
        self.table = table;
        self.kind = RuleKind::Lookup;
        self
    }

    /// The action (`blackhole`, `goto P`, ...).
    pub fn kind(mut self, kind: RuleKind) -> Rule {
        self.kind = kind;
        self
    }

    fn check(&self) -> Result<()> {
        for net in [self.from, self.to].into_iter().flatten() {
            if Family::of(&net) != self.family {
                return Err(Error::InvalidArgument {
                    what: format!("rule {self}"),
                    reason: format!("{net} is not of the rule's family"),
                });
            }
        }
        for dev in [&self.iif, &self.oif].into_iter().flatten() {
            validate_ifname(dev)?;
        }
        Ok(())
    }

    pub(crate) fn to_message(&self) -> Result<RuleMessage> {
        self.check()?;
        let mut msg = RuleMessage::default();
        let h: &mut RuleHeader = &mut msg.header;
        h.family = self.family.to_nl();
        h.action = match self.kind {
            RuleKind::Lookup => RuleAction::ToTable,
            RuleKind::Goto(_) => RuleAction::Goto,
            RuleKind::Nop => RuleAction::Nop,
            RuleKind::Blackhole => RuleAction::Blackhole,
            RuleKind::Unreachable => RuleAction::Unreachable,
            RuleKind::Prohibit => RuleAction::Prohibit,
            RuleKind::Other(n) => RuleAction::from(n),
        };
        if self.invert {
            h.flags |= RuleFlags::Invert;
        }
        let lookup = self.kind == RuleKind::Lookup;
        if lookup {
            // RT_TABLE_UNSPEC in the header for tables above 255 (FRA_TABLE carries them).
            h.table = u8::try_from(self.table).unwrap_or(0);
        }
        if let Some(net) = self.from {
            h.src_len = net.prefix_len();
            msg.attributes.push(RuleAttribute::Source(net.addr()));
        }
        if let Some(net) = self.to {
            h.dst_len = net.prefix_len();
            msg.attributes.push(RuleAttribute::Destination(net.addr()));
        }
        if let Some(dev) = &self.iif {
            msg.attributes.push(RuleAttribute::Iifname(dev.clone()));
        }
        if let Some(dev) = &self.oif {
            msg.attributes.push(RuleAttribute::Oifname(dev.clone()));
        }
        if let Some(m) = self.fwmark {
            msg.attributes.push(RuleAttribute::FwMark(m));
            if let Some(mask) = self.fwmask {
                msg.attributes.push(RuleAttribute::FwMask(mask));
            }
        }
        // A table above 255 does not fit the header (as `ip rule` sends it).
        if lookup && self.table > 255 {
            msg.attributes.push(RuleAttribute::Table(self.table));
        }
        if let Some(p) = self.priority {
            msg.attributes.push(RuleAttribute::Priority(p));
        }
        if let RuleKind::Goto(p) = self.kind {
            msg.attributes.push(RuleAttribute::Goto(p));
        }
        Ok(msg)
    }

    pub(crate) fn from_message(m: &RuleMessage) -> Option<Rule> {
        let family = match m.header.family {
            AddressFamily::Inet => Family::Inet,
            AddressFamily::Inet6 => Family::Inet6,
            _ => return None,
        };
        let mut r = Rule::new(family);
        // The kernel leaves out FRA_PRIORITY when it is 0.
        r.priority = Some(0);
        r.invert = m.header.flags.contains(RuleFlags::Invert);
        r.table = u32::from(m.header.table);
        r.protocol = 0;
        r.kind = match m.header.action {
            RuleAction::ToTable => RuleKind::Lookup,
            RuleAction::Goto => RuleKind::Goto(0),
            RuleAction::Nop => RuleKind::Nop,
            RuleAction::Blackhole => RuleKind::Blackhole,
            RuleAction::Unreachable => RuleKind::Unreachable,
            RuleAction::Prohibit => RuleKind::Prohibit,
            other => RuleKind::Other(u8::from(other)),
        };
        for a in &m.attributes {
            match a {
                RuleAttribute::Source(ip) => r.from = IpNet::new(*ip, m.header.src_len).ok(),
                RuleAttribute::Destination(ip) => r.to = IpNet::new(*ip, m.header.dst_len).ok(),
                RuleAttribute::Priority(p) => r.priority = Some(*p),
                RuleAttribute::Iifname(d) => r.iif = Some(d.clone()),
                RuleAttribute::Oifname(d) => r.oif = Some(d.clone()),
                RuleAttribute::FwMark(v) => r.fwmark = Some(*v),
                RuleAttribute::FwMask(v) => r.fwmask = Some(*v),
                RuleAttribute::Table(t) => r.table = *t,
                RuleAttribute::Goto(p) => r.kind = RuleKind::Goto(*p),
                RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
                _ => {}
            }
        }
        // The kernel reports a mark's mask even when it is all ones (the default).
        if r.fwmask == Some(u32::MAX) {
            r.fwmask = None;
        }
        Some(r)
    }
}

impl fmt::Display for Rule {
    /// Like one line of `ip rule`: `100:\tfrom all fwmark 0x1 lookup 100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.priority {
            write!(f, "{p}:\t")?;
        }
        if self.invert {
            f.write_str("not ")?;
        }
        match self.from {
            Some(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "from {}", n.addr())?,
            Some(n) if n.prefix_len() > 0 => write!(f, "from {n}")?,
            _ => f.write_str("from all")?,
        }
        match self.to {
            Some(n) if n.prefix_len() == n.max_prefix_len() => write!(f, " to {}", n.addr())?,
            Some(n) if n.prefix_len() > 0 => write!(f, " to {n}")?,
            _ => {}
        }
        if let Some(m) = self.fwmark {
            write!(f, " fwmark {m:#x}")?;
            if let Some(mask) = self.fwmask {
                write!(f, "/{mask:#x}")?;
            }
        }
        if let Some(d) = &self.iif {
            write!(f, " iif {d}")?;
        }
        if let Some(d) = &self.oif {
            write!(f, " oif {d}")?;
        }
        match self.kind {
            RuleKind::Lookup => match self.table {
                TABLE_MAIN => f.write_str(" lookup main"),
                TABLE_LOCAL => f.write_str(" lookup local"),
                TABLE_DEFAULT => f.write_str(" lookup default"),
                t => write!(f, " lookup {t}"),
            },
            RuleKind::Goto(p) => write!(f, " goto {p}"),
            RuleKind::Nop => f.write_str(" nop"),
            RuleKind::Blackhole => f.write_str(" blackhole"),
            RuleKind::Unreachable => f.write_str(" unreachable"),
            RuleKind::Prohibit => f.write_str(" prohibit"),
            RuleKind::Other(n) => write!(f, " action {n}"),
        }
    }
}

/// Rule operations of one [`Handle`]: `h.rule().add(&rule)`, like `ip rule`.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'h> {
    pub(crate) h: &'h Handle,
}

impl Rules<'_> {
    /// `ip rule add`; [`Error::Exists`] if an equal rule is there.
    pub fn add(&self, rule: &Rule) -> Result<()> {
        let msg = rule.to_message()?;
        self.h
            .request(RouteNetlinkMessage::NewRule(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(|e| Error::from_netlink("rule add", rule.to_string(), e))?;
        Ok(())
    }

    /// `ip rule del`: the first rule whose set fields match; [`Error::NotFound`] if none.
    pub fn del(&self, rule: &Rule) -> Result<()> {
        let msg = rule.to_message()?;
        self.h
            .request(RouteNetlinkMessage::DelRule(msg), 0)
            .map_err(|e| Error::from_netlink("rule del", rule.to_string(), e))?;
        Ok(())
    }

    /// The rules of one family (`ip -4 rule` / `ip -6 rule`), or of both, in priority order.
    pub fn list(&self, family: Option<Family>) -> Result<Vec<Rule>> {
        let mut msg = RuleMessage::default();
        msg.header.family = family.map_or(AddressFamily::Unspec, Family::to_nl);
        let replies = self
            .h
            .request(RouteNetlinkMessage::GetRule(msg), NLM_F_DUMP)
            .map_err(|e| Error::from_netlink("rule show", "all", e))?;
        let mut rules: Vec<Rule> = rules_of(&replies)
            .into_iter()
            .filter(|r| family.is_none_or(|f| f == r.family))
            .collect();
        rules.sort_by_key(|r| (r.family == Family::Inet6, r.priority));
        Ok(rules)
    }
}

/// The rules of a rule dump's replies.
pub(crate) fn rules_of(replies: &[RouteNetlinkMessage]) -> Vec<Rule> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewRule(m) => Rule::from_message(m),
            _ => None,
        })
        .collect()
}
