//! The rule language: the matches and statements kube-proxy's nftables rules (and flannel's,
//! [`crate::flannel_nft`]) are made of, each written as nft text here and lowered to the
//! register-machine expressions nft itself would send in the `lower` module.

use super::types::{Family, Verdict};
use crate::iptables::Protocol;
use ipnet::IpNet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// Which address of the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrField {
    /// `saddr`.
    Src,
    /// `daddr`.
    Dst,
}

impl AddrField {
    fn name(self) -> &'static str {
        match self {
            AddrField::Src => "saddr",
            AddrField::Dst => "daddr",
        }
    }

    pub(super) fn offset(self, family: Family) -> u32 {
        match (family, self) {
            (Family::Ip, AddrField::Src) => 12,
            (Family::Ip, AddrField::Dst) => 16,
            (Family::Ip6, AddrField::Src) => 8,
            (Family::Ip6, AddrField::Dst) => 24,
        }
    }

    /// nft's header field number, kept in the userdata of anonymous interval sets.
    pub(super) fn nft_field(self, family: Family) -> u8 {
        match (family, self) {
            (Family::Ip, AddrField::Src) => 11,
            (Family::Ip, AddrField::Dst) => 12,
            (Family::Ip6, AddrField::Src) => 8,
            (Family::Ip6, AddrField::Dst) => 9,
        }
    }
}

/// An address or a network, written as given (`10.0.0.1`, `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrItem {
    /// One address.
    Ip(IpAddr),
    /// A network.
    Net(IpNet),
}

impl AddrItem {
    pub(super) fn net(self) -> IpNet {
        match self {
            AddrItem::Ip(ip) => IpNet::from(ip),
            AddrItem::Net(n) => n.trunc(),
        }
    }

    fn write(self, out: &mut String) {
        let _ = match self {
            AddrItem::Ip(ip) => write!(out, "{ip}"),
            AddrItem::Net(n) => write!(out, "{n}"),
        };
    }
}

/// The key of a verdict-map lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmapKey {
    /// `ip daddr . meta l4proto . th dport`.
    DaddrProtoPort,
    /// `meta l4proto . th dport`.
    ProtoPort,
}

/// ClientIP affinity of the maps layout (kube-proxy layout: one dynamic set per endpoint): a
/// dynamic map from `group . client address` to the endpoint chosen for that client, shared
/// by the Services of one shard, each Service port policy told apart by its `group` number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Affinity {
    /// The dynamic map (`integer . ADDR : ADDR . inet_service`, flags dynamic,timeout).
    pub map: String,
    /// The endpoint group (a Service port's Cluster or Local endpoints).
    pub group: u32,
    /// Seconds a remembered choice lasts after the client's last new connection.
    pub timeout: u32,
}

/// One piece of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `ip daddr [!=] ADDR` or `ip saddr [!=] NET`.
    Addr {
        /// Source or destination.
        field: AddrField,
        /// `!=`.
        neg: bool,
        /// What is compared with.
        item: AddrItem,
    },
    /// `ip saddr [!=] { A , B }`: an anonymous set (a plain comparison when it has one item).
    AddrSet {
        /// Source or destination.
        field: AddrField,
        /// `!=`.
        neg: bool,
        /// The items.
        items: Vec<AddrItem>,
        /// Items separated by `" , "` (else by `","`), as the text was written.
        spaced: bool,
    },
    /// `ip daddr @SET`.
    AddrInSet {
        /// Source or destination.
        field: AddrField,
        /// The named set.
        set: String,
    },
    /// `fib saddr|daddr type local`.
    FibLocal(AddrField),
    /// `ct state new`.
    CtStateNew,
    /// `meta l4proto PROTO`.
    L4Proto(Protocol),
    /// `iifname [!=] "NAME"` (a trailing `*` matches a prefix).
    IifName {
        /// `!=`.
        neg: bool,
        /// The name.
        name: String,
    },
    /// `meta mark MARK`: the packet mark equals MARK.
    MarkEq {
        /// The mark.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `meta mark & MARK == MARK`: every bit of MARK is set in the packet mark, whatever the
    /// other bits are (iptables' `-m mark --mark MARK/MARK`).
    MarkBitsSet {
        /// The mark bits.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `mark and MARK == 0`.
    MarkAndZero {
        /// The mark bits.
        mark: u32,
        /// The mark as written (`0x4000`).
        text: String,
    },
    /// `mark set mark or MARK`.
    MarkSetOr {
        /// The mark bits.
        mark: u32,
        /// The mark as written.
        text: String,
    },
    /// `mark set mark xor MARK`.
    MarkSetXor {
        /// The mark bits.
        mark: u32,
        /// The mark as written.
        text: String,
    },
    /// `KEY vmap @MAP`.
    Vmap {
        /// The key.
        key: VmapKey,
        /// The verdict map.
        map: String,
    },
    /// `numgen random mod N vmap { 0 : goto A , 1 : goto B }`.
    Numgen {
        /// The chains, one per value.
        targets: Vec<String>,
    },
    /// `update @SET { ip saddr }`.
    Update {
        /// The dynamic set.
        set: String,
        /// The address added.
        field: AddrField,
    },
    /// `masquerade [fully-random]`.
    Masquerade {
        /// `fully-random`.
        fully_random: bool,
    },
    /// `dnat to ADDR:PORT`.
    Dnat(SocketAddr),
    /// `reject` (ICMP port unreachable).
    Reject,
    /// The maps layout's endpoint choice: `dnat to numgen random mod MODULUS offset OFFSET map
    /// @MAP`, the map holding `slot : ADDR . port` elements, and with `affinity` the choice
    /// remembered for the client first. The rule never changes when the endpoints do; only the
    /// map's elements do.
    SlotDnat {
        /// The data map of slots.
        map: String,
        /// Number of slots of the group.
        modulus: u32,
        /// The group's first slot.
        offset: u32,
        /// Remember the choice for ClientIP affinity.
        affinity: Option<Affinity>,
    },
    /// The maps layout's ClientIP affinity: the endpoint remembered for this client, when
    /// `group . ADDR . port` is still in the set `live`, refreshed and DNATed to. (No nft
    /// syntax writes this rule; its text is descriptive.)
    AffinityDnat {
        /// The affinity map.
        affinity: Affinity,
        /// The set of live endpoints (`integer . ADDR . inet_service`).
        live: String,
    },
    /// The maps layout's ClientIP affinity: forgets the endpoint remembered for this client
    /// when it is no longer in `live` (no verdict: the rule falls through). (No nft syntax
    /// writes this rule; its text is descriptive.)
    AffinityForget {
        /// The affinity map.
        affinity: Affinity,
        /// The set of live endpoints.
        live: String,
    },
    /// `ip saddr . ip daddr @SET`.
    AddrPairInSet {
        /// The set of `ADDR . ADDR` pairs.
        set: String,
    },
    /// A verdict.
    Verdict(Verdict),
}

impl Expr {
    /// Writes the expression as nft text.
    pub fn render(&self, family: Family, out: &mut String) {
        let ipx = family.name();
        match self {
            Expr::Addr { field, neg, item } => {
                let _ = write!(
                    out,
                    "{ipx} {} {}",
                    field.name(),
                    if *neg { "!= " } else { "" }
                );
                item.write(out);
            }
            Expr::AddrSet {
                field,
                neg,
                items,
                spaced,
            } => {
                let _ = write!(
                    out,
                    "{ipx} {} {}{{ ",
                    field.name(),
                    if *neg { "!= " } else { "" }
                );
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(if *spaced { " , " } else { "," });
                    }
                    it.write(out);
                }
                out.push_str(" }");
            }
            Expr::AddrInSet { field, set } => {
                let _ = write!(out, "{ipx} {} @{set}", field.name());
            }
            Expr::FibLocal(f) => {
                let _ = write!(out, "fib {} type local", f.name());
            }
            Expr::CtStateNew => out.push_str("ct state new"),
            Expr::L4Proto(p) => {
                let _ = write!(out, "meta l4proto {}", p.as_str());
            }
            Expr::IifName { neg, name } => {
                let _ = write!(out, "iifname {}\"{name}\"", if *neg { "!= " } else { "" });
            }
            Expr::MarkEq { text, .. } => {
                let _ = write!(out, "meta mark {text}");
            }
            Expr::MarkBitsSet { text, .. } => {
                let _ = write!(out, "meta mark & {text} == {text}");
            }
            Expr::MarkAndZero { text, .. } => {
                let _ = write!(out, "mark and {text} == 0");
            }
            Expr::MarkSetOr { text, .. } => {
                let _ = write!(out, "mark set mark or {text}");
            }
            Expr::MarkSetXor { text, .. } => {
                let _ = write!(out, "mark set mark xor {text}");
            }
            Expr::Vmap { key, map } => {
                match key {
                    VmapKey::DaddrProtoPort => {
                        let _ = write!(out, "{ipx} daddr . meta l4proto . th dport");
                    }
                    VmapKey::ProtoPort => out.push_str("meta l4proto . th dport"),
                }
                let _ = write!(out, " vmap @{map}");
            }
            Expr::Numgen { targets } => {
                let _ = write!(out, "numgen random mod {} vmap {{ ", targets.len());
                for (i, t) in targets.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    let _ = write!(out, "{i} : goto {t}");
                }
                out.push_str(" }");
            }
            Expr::Update { set, field } => {
                let _ = write!(out, "update @{set} {{ {ipx} {} }}", field.name());
            }
            Expr::Masquerade { fully_random } => {
                out.push_str("masquerade");
                if *fully_random {
                    out.push_str(" fully-random");
                }
            }
            Expr::Dnat(sa) => {
                let _ = write!(out, "dnat to {sa}");
            }
            Expr::Reject => out.push_str("reject"),
            Expr::SlotDnat {
                map,
                modulus,
                offset,
                affinity,
            } => {
                let choice = format!("numgen random mod {modulus} offset {offset} map @{map}");
                if let Some(a) = affinity {
                    let _ = write!(
                        out,
                        "update @{} {{ {} . {ipx} saddr timeout {}s : {choice} }} ",
                        a.map, a.group, a.timeout
                    );
                }
                let _ = write!(out, "dnat to {choice}");
            }
            Expr::AffinityDnat { affinity: a, live } => {
                let _ = write!(
                    out,
                    "{g} . ({g} . {ipx} saddr map @{m}) @{live} update @{m} {{ {g} . {ipx} saddr timeout {t}s }} dnat to {g} . {ipx} saddr map @{m}",
                    g = a.group,
                    m = a.map,
                    t = a.timeout
                );
            }
            Expr::AffinityForget { affinity: a, live } => {
                let _ = write!(
                    out,
                    "{g} . ({g} . {ipx} saddr map @{m}) != @{live} delete @{m} {{ {g} . {ipx} saddr }}",
                    g = a.group,
                    m = a.map
                );
            }
            Expr::AddrPairInSet { set } => {
                let _ = write!(out, "{ipx} saddr . {ipx} daddr @{set}");
            }
            Expr::Verdict(v) => {
                let _ = write!(out, "{v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: &Expr, f: Family) -> String {
        let mut s = String::new();
        e.render(f, &mut s);
        s
    }

    #[test]
    fn renders_like_kube_proxy() {
        let e = Expr::AddrSet {
            field: AddrField::Src,
            neg: true,
            items: vec![AddrItem::Net("203.0.113.0/25".parse().unwrap())],
            spaced: true,
        };
        assert_eq!(text(&e, Family::Ip), "ip saddr != { 203.0.113.0/25 }");
        let e = Expr::Numgen {
            targets: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            text(&e, Family::Ip),
            "numgen random mod 2 vmap { 0 : goto a , 1 : goto b }"
        );
        let e = Expr::Dnat("[fd00::1]:80".parse().unwrap());
        assert_eq!(text(&e, Family::Ip6), "dnat to [fd00::1]:80");
        let e = Expr::Vmap {
            key: VmapKey::DaddrProtoPort,
            map: "service-ips".into(),
        };
        assert_eq!(
            text(&e, Family::Ip6),
            "ip6 daddr . meta l4proto . th dport vmap @service-ips"
        );
    }
}
