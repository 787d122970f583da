//! The leaf types of nftables: address families, hooks, chain types, set key types and
//! values, and verdicts. They depend on nothing else of [`super`], so the object model
//! ([`super::model`]), the rule language ([`super::rule`]) and the register-machine expressions
//! ([`super::expr`]) all build on them without importing each other in a circle.

use crate::iptables::Protocol;
use crate::kube::IpFamily;
use std::fmt;
use std::net::IpAddr;

/// An nftables address family. kube-proxy uses one `ip` and one `ip6` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// `ip` (IPv4).
    #[default]
    Ip,
    /// `ip6` (IPv6).
    Ip6,
}

impl Family {
    /// The family for an IP family.
    pub fn of(f: IpFamily) -> Family {
        match f {
            IpFamily::V4 => Family::Ip,
            IpFamily::V6 => Family::Ip6,
        }
    }

    /// The name nft uses (`ip`, `ip6`), also the address keyword in rules.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// The address key type of this family.
    pub fn addr_type(self) -> KeyType {
        match self {
            Family::Ip => KeyType::Ipv4Addr,
            Family::Ip6 => KeyType::Ipv6Addr,
        }
    }

    /// NFPROTO_IPV4 or NFPROTO_IPV6.
    pub(crate) fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,
            Family::Ip6 => 10,
        }
    }

    /// Bytes of an address.
    pub(crate) fn addr_len(self) -> u32 {
        match self {
            Family::Ip => 4,
            Family::Ip6 => 16,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

impl Hook {
    /// The nft keyword.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    /// NF_INET_* number.
    pub(crate) fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }

    pub(crate) fn from_number(n: u32) -> Option<Hook> {
        Some(match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// `filter`.
    Filter,
    /// `nat`.
    Nat,
}

impl ChainType {
    /// The nft keyword.
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// What makes a chain a base chain: its type, hook and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// `filter` or `nat`.
    pub kind: ChainType,
    /// The hook.
    pub hook: Hook,
    /// The priority (e.g. -100 for `dstnat`).
    pub priority: i32,
}

/// The data type of one part of a set key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `ipv6_addr`.
    Ipv6Addr,
    /// `inet_proto`.
    InetProto,
    /// `inet_service`.
    InetService,
    /// A 32-bit host-order integer (the key of `numgen` maps).
    Integer,
    /// `mark`: a 32-bit host-order number nft prints in hex (the maps layout's slot and group
    /// numbers; unlike `integer` it has a size nft knows inside concatenations).
    Mark,
}

impl KeyType {
    /// The nft type name.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetProto => "inet_proto",
            KeyType::InetService => "inet_service",
            KeyType::Integer => "integer",
            KeyType::Mark => "mark",
        }
    }

    /// nft's datatype number (`TYPE_*`), 6 bits per part of a concatenation.
    pub(crate) fn type_id(self) -> u32 {
        match self {
            KeyType::Integer => 4,
            KeyType::Mark => 19,
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::InetProto => 12,
            KeyType::InetService => 13,
        }
    }

    /// Bytes of a value of this type.
    pub(crate) fn len(self) -> u32 {
        match self {
            KeyType::Ipv4Addr | KeyType::Integer | KeyType::Mark => 4,
            KeyType::Ipv6Addr => 16,
            KeyType::InetProto => 1,
            KeyType::InetService => 2,
        }
    }
}

/// One value of a set key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    /// An address.
    Addr(IpAddr),
    /// A transport protocol.
    Proto(Protocol),
    /// A port.
    Port(u16),
    /// An integer.
    Int(u32),
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Addr(a) => write!(f, "{a}"),
            KeyPart::Proto(p) => f.write_str(p.as_str()),
            KeyPart::Port(p) => write!(f, "{p}"),
            KeyPart::Int(i) => write!(f, "{i}"),
        }
    }
}

/// A verdict: the value of a verdict map element or the end of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

impl Verdict {
    /// The chain a jump or goto leads to.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// The IP protocol number of a transport protocol.
pub(crate) fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}
