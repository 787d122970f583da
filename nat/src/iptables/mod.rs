//! The iptables rule model: tables, chains and rules as types, rendered as `iptables-restore`
//! input and parsed back from `iptables-save` output.
//!
//! The model covers the matches and targets that kube-proxy's iptables mode and flannel use. A
//! [`Rule`] keeps its matches in order, because `iptables-restore` input written by kube-proxy is
//! compared byte for byte in tests and order is part of that text.
//!
//! ```
//! use podnet_nat::iptables::{Match, Protocol, Rule, Table, TableRules, Target};
//!
//! let mut nat = TableRules::new(Table::Nat);
//! nat.declare("KUBE-MARK-MASQ");
//! nat.append(Rule::new("KUBE-MARK-MASQ").target(Target::MarkOr(0x4000)));
//! nat.append(
//!     Rule::new("KUBE-SERVICES")
//!         .with(Match::comment("ns1/svc1:p80 cluster IP"))
//!         .with(Match::ProtocolModule(Protocol::Tcp))
//!         .with(Match::Protocol(Protocol::Tcp))
//!         .with(Match::destination_ip("172.30.0.41".parse().unwrap()))
//!         .with(Match::DestinationPort(80))
//!         .jump("KUBE-SVC-XPGD46QRK7WJZT7O"),
//! );
//! let text = nat.render();
//! assert!(text.contains(
//!     "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp \
//!      -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O\n"
//! ));
//! ```

mod diff;
mod parse;
mod render;

pub(crate) use render::push_socket;

pub use diff::{ChainDiff, diff_tables};
pub use parse::{OpaqueRule, ParseError, SavedRule, SavedTable, parse_save, parse_save_tolerant};

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `filter`.
    Filter,
    /// `nat`.
    Nat,
    /// `mangle`.
    Mangle,
    /// `raw`.
    Raw,
}

impl Table {
    /// The table's name as iptables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
            Table::Raw => "raw",
        }
    }

    /// The table named `name`, if it is one of the four.
    pub fn from_name(name: &str) -> Option<Table> {
        Some(match name {
            "filter" => Table::Filter,
            "nat" => Table::Nat,
            "mangle" => Table::Mangle,
            "raw" => Table::Raw,
            _ => return None,
        })
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport protocol, as `-p` and `-m tcp|udp|sctp` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lower-case name iptables uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses a protocol name in any case (`TCP`, `tcp`).
    pub fn from_name(name: &str) -> Option<Protocol> {
        if name.eq_ignore_ascii_case("tcp") {
            Some(Protocol::Tcp)
        } else if name.eq_ignore_ascii_case("udp") {
            Some(Protocol::Udp)
        } else if name.eq_ignore_ascii_case("sctp") {
            Some(Protocol::Sctp)
        } else {
            None
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address type for `-m addrtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// `LOCAL`: an address of this host.
    Local,
}

impl AddrType {
    fn as_str(self) -> &'static str {
        match self {
            AddrType::Local => "LOCAL",
        }
    }
}

/// A conntrack state for `-m conntrack --ctstate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    /// `NEW`.
    New,
    /// `ESTABLISHED`.
    Established,
    /// `RELATED`.
    Related,
    /// `INVALID`.
    Invalid,
    /// `DNAT`.
    Dnat,
    /// `SNAT`.
    Snat,
    /// `UNTRACKED`.
    Untracked,
}

impl CtState {
    fn as_str(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Dnat => "DNAT",
            CtState::Snat => "SNAT",
            CtState::Untracked => "UNTRACKED",
        }
    }

    fn from_name(s: &str) -> Option<CtState> {
        Some(match s {
            "NEW" => CtState::New,
            "ESTABLISHED" => CtState::Established,
            "RELATED" => CtState::Related,
            "INVALID" => CtState::Invalid,
            "DNAT" => CtState::Dnat,
            "SNAT" => CtState::Snat,
            "UNTRACKED" => CtState::Untracked,
            _ => return None,
        })
    }
}

/// One match of a rule. Matches render in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `-m comment --comment TEXT` (quoted when it contains a space). Shared text: many
    /// rules of one Service carry the same comment.
    Comment(Arc<str>),
    /// `[!] -p PROTO`.
    Protocol(Protocol),
    /// `-m PROTO`: loads the protocol's match so that `--dport` can follow.
    ProtocolModule(Protocol),
    /// `--dport PORT` (after [`Match::ProtocolModule`]).
    DestinationPort(u16),
    /// `--sport PORT` (after [`Match::ProtocolModule`]).
    SourcePort(u16),
    /// `[!] -s NET`.
    Source {
        /// The network (a single address is a /32 or /128).
        net: IpNet,
        /// `!` in front.
        negate: bool,
    },
    /// `[!] -d NET`.
    Destination {
        /// The network (a single address is a /32 or /128).
        net: IpNet,
        /// `!` in front.
        negate: bool,
    },
    /// `[!] -i NAME` (a trailing `+` matches a prefix).
    InInterface {
        /// Interface name.
        name: String,
        /// `!` in front.
        negate: bool,
    },
    /// `[!] -o NAME`.
    OutInterface {
        /// Interface name.
        name: String,
        /// `!` in front.
        negate: bool,
    },
    /// `-m addrtype --src-type TYPE`.
    SrcType(AddrType),
    /// `-m addrtype --dst-type TYPE`.
    DstType(AddrType),
    /// `-m mark [!] --mark VALUE[/MASK]`.
    Mark {
        /// The value, as written (kube-proxy writes `0x4000` or `0x00004000`).
        value: String,
        /// The mask, if any.
        mask: Option<String>,
        /// `!` before `--mark`.
        negate: bool,
    },
    /// `-m conntrack [!] --ctstate S1,S2`.
    CtState {
        /// The states, in order.
        states: Vec<CtState>,
        /// `!` before `--ctstate`.
        negate: bool,
    },
    /// `-m statistic --mode random --probability P` (P written with 10 decimals, like
    /// kube-proxy's `%0.10f`).
    Probability(f64),
    /// `-m recent --name NAME --set`.
    RecentSet {
        /// The list name.
        name: String,
    },
    /// `-m recent --name NAME --rcheck --seconds S --reap`.
    RecentCheck {
        /// The list name.
        name: String,
        /// `--seconds`.
        seconds: u32,
        /// `--reap`.
        reap: bool,
    },
    /// `-m nfacct --nfacct-name NAME`.
    Nfacct(String),
}

impl Match {
    /// `-m comment --comment TEXT`.
    pub fn comment(text: impl Into<Arc<str>>) -> Match {
        Match::Comment(text.into())
    }

    /// `-s ADDR` for a single address or network.
    pub fn source(net: IpNet) -> Match {
        Match::Source { net, negate: false }
    }

    /// `! -s NET`.
    pub fn not_source(net: IpNet) -> Match {
        Match::Source { net, negate: true }
    }

    /// `-d ADDR` for a single address or network.
    pub fn destination(net: IpNet) -> Match {
        Match::Destination { net, negate: false }
    }

    /// `! -d NET`.
    pub fn not_destination(net: IpNet) -> Match {
        Match::Destination { net, negate: true }
    }

    /// `-s IP/32` (or /128).
    pub fn source_ip(ip: IpAddr) -> Match {
        Match::source(IpNet::from(ip))
    }

    /// `-d IP/32` (or /128).
    pub fn destination_ip(ip: IpAddr) -> Match {
        Match::destination(IpNet::from(ip))
    }
}

/// What a rule does with a matching packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-j CHAIN`: a user chain.
    Jump(Arc<str>),
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j REJECT`.
    Reject,
    /// `-j MASQUERADE [--random-fully]`.
    Masquerade {
        /// `--random-fully`.
        random_fully: bool,
    },
    /// `-j DNAT --to-destination ADDR:PORT`.
    Dnat(SocketAddr),
    /// `-j SNAT --to-source ADDR [--random-fully]`.
    Snat {
        /// The new source address.
        to: IpAddr,
        /// `--random-fully`.
        random_fully: bool,
    },
    /// `-j MARK --or-mark VALUE` (the value is rendered as written by [`Target::MarkOrText`]
    /// when that form is used).
    MarkOr(u32),
    /// `-j MARK --or-mark TEXT`, keeping kube-proxy's spelling of the value.
    MarkOrText(String),
    /// `-j MARK --xor-mark TEXT`.
    MarkXorText(String),
    /// `-j MARK --set-xmark VALUE/MASK` (how iptables-save prints every MARK target).
    MarkSetX {
        /// Value.
        value: u32,
        /// Mask.
        mask: u32,
    },
}

impl Target {
    /// `-j CHAIN`.
    pub fn jump(chain: impl Into<Arc<str>>) -> Target {
        Target::Jump(chain.into())
    }
}

/// One `-A CHAIN ...` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The chain the rule is appended to (shared: a chain's rules all name it).
    pub chain: Arc<str>,
    /// The matches, in order.
    pub matches: Vec<Match>,
    /// The target; `None` for a rule that only counts (kube-proxy's KUBE-FW tail rule).
    pub target: Option<Target>,
}

impl Rule {
    /// An empty rule in `chain`.
    pub fn new(chain: impl Into<Arc<str>>) -> Rule {
        Rule {
            chain: chain.into(),
            matches: Vec::new(),
            target: None,
        }
    }

    /// Adds a match (builder style).
    pub fn with(mut self, m: Match) -> Rule {
        self.matches.push(m);
        self
    }

    /// Adds several matches.
    pub fn with_all(mut self, ms: impl IntoIterator<Item = Match>) -> Rule {
        self.matches.extend(ms);
        self
    }

    /// Sets the target.
    pub fn target(mut self, t: Target) -> Rule {
        self.target = Some(t);
        self
    }

    /// Sets a `-j CHAIN` target.
    pub fn jump(self, chain: impl Into<Arc<str>>) -> Rule {
        self.target(Target::Jump(chain.into()))
    }

    /// Appends the rule's `iptables-restore` line (without newline) to `out`.
    pub fn render_into(&self, out: &mut String) {
        render::write_rule(out, self);
    }

    /// The rule as one `iptables-restore` line, without the trailing newline.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(128);
        render::write_rule(&mut s, self);
        s
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// A chain declaration line: `:NAME POLICY [packets:bytes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecl {
    /// The chain name.
    pub name: String,
    /// The policy of a built-in chain (`ACCEPT`, `DROP`); `None` (written `-`) for user chains.
    pub policy: Option<String>,
}

/// A line of a table in `iptables-restore` input, after the chain declarations.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `-A CHAIN ...`.
    Append(Rule),
    /// `-X CHAIN`: delete a (flushed) chain.
    DeleteChain(String),
}

/// One table's part of `iptables-restore` input: `*table`, chain declarations, rules, `COMMIT`.
///
/// With `--noflush`, every declared chain is flushed and then refilled by the rules that follow;
/// chains that are not declared keep their rules. That is what makes partial syncs possible.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRules {
    /// The table.
    pub table: Table,
    /// Declared chains, in order.
    pub chains: Vec<ChainDecl>,
    /// Rules and chain deletions, in order.
    pub lines: Vec<Line>,
}

impl TableRules {
    /// An empty table block.
    pub fn new(table: Table) -> TableRules {
        TableRules {
            table,
            chains: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Declares (and so flushes) a user chain.
    pub fn declare(&mut self, chain: impl Into<String>) {
        self.chains.push(ChainDecl {
            name: chain.into(),
            policy: None,
        });
    }

    /// Appends a rule.
    pub fn append(&mut self, rule: Rule) {
        self.lines.push(Line::Append(rule));
    }

    /// Appends a `-X CHAIN` line.
    pub fn delete_chain(&mut self, chain: impl Into<String>) {
        self.lines.push(Line::DeleteChain(chain.into()));
    }

    /// The rules of one chain, in order.
    pub fn chain_rules<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.lines.iter().filter_map(move |l| match l {
            Line::Append(r) if &*r.chain == chain => Some(r),
            _ => None,
        })
    }

    /// Number of `-A` lines.
    pub fn rule_count(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l, Line::Append(_)))
            .count()
    }

    /// Renders `*table ... COMMIT\n`.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(64 + self.lines.len() * 100);
        render::write_table(&mut s, self);
        s
    }

    /// Appends the rendering to `out`.
    pub fn render_into(&self, out: &mut String) {
        render::write_table(out, self);
    }
}

/// Several tables, rendered one after another (one `iptables-restore` input).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ruleset {
    /// The tables, in order.
    pub tables: Vec<TableRules>,
}

impl Ruleset {
    /// The block for `table`, if present.
    pub fn table(&self, table: Table) -> Option<&TableRules> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// Renders all tables.
    pub fn render(&self) -> String {
        let cap = self
            .tables
            .iter()
            .map(|t| 64 + t.lines.len() * 110 + t.chains.len() * 32)
            .sum();
        let mut s = String::with_capacity(cap);
        for t in &self.tables {
            render::write_table(&mut s, t);
        }
        s
    }
}

/// Splits one rule line into words the way `iptables-restore` does (double quotes group words).
/// An unterminated quote yields the words before it.
pub fn split_rule_words(line: &str) -> Vec<String> {
    parse::split_words(line).unwrap_or_default()
}
