//! The nftables objects podnet writes: tables, chains, sets and maps, elements, rules, and the
//! transactions that add, flush and delete them.
//!
//! The same [`Transaction`] is sent to the kernel as one netlink batch
//! ([`super::netlink`]), written as an `nft -f` script ([`Transaction::render`]) or applied to
//! an in-memory table ([`super::fake::FakeTable`]).

use super::rule::Expr;
pub use super::types::{BaseChain, ChainType, Family, Hook, KeyPart, KeyType, Verdict};
use std::fmt::Write as _;

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// Set for base chains.
    pub base: Option<BaseChain>,
    /// A comment.
    pub comment: Option<String>,
}

impl Chain {
    /// A regular chain.
    pub fn regular(name: impl Into<String>) -> Chain {
        Chain {
            name: name.into(),
            base: None,
            comment: None,
        }
    }
}

/// A named set, or a verdict map when `verdict_map` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Its name.
    pub name: String,
    /// The key: one type, or a concatenation.
    pub key: Vec<KeyType>,
    /// A map from the key to a verdict (`type K : verdict`).
    pub verdict_map: bool,
    /// A map from the key to data of these types (`type K : ipv4_addr . inet_service`);
    /// empty for sets and verdict maps. Elements of such a data map never hold a verdict, so
    /// adding or deleting them asks the kernel for no validation of the table.
    pub data: Vec<KeyType>,
    /// Updated from the packet path (`flags dynamic`).
    pub dynamic: bool,
    /// Default element timeout in seconds (`flags timeout`, `timeout Ns`).
    pub timeout: Option<u32>,
    /// A comment.
    pub comment: Option<String>,
}

impl Set {
    /// The `type` clause: `ipv4_addr . inet_proto . inet_service : verdict`.
    pub fn type_text(&self) -> String {
        let mut s = self
            .key
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(" . ");
        if self.verdict_map {
            s.push_str(" : verdict");
        } else if !self.data.is_empty() {
            s.push_str(" : ");
            s.push_str(
                &self
                    .data
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(" . "),
            );
        }
        s
    }

    /// `set` or `map`.
    pub fn keyword(&self) -> &'static str {
        if self.is_map() { "map" } else { "set" }
    }

    /// A verdict map or a data map.
    pub fn is_map(&self) -> bool {
        self.verdict_map || !self.data.is_empty()
    }
}

/// An element of a named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element {
    /// The set or map.
    pub set: String,
    /// The key (one part per key type of the set).
    pub key: Vec<KeyPart>,
    /// The verdict, for verdict maps.
    pub value: Option<Verdict>,
    /// The data, for data maps (one part per data type of the map); empty otherwise.
    pub data: Vec<KeyPart>,
    /// A comment.
    pub comment: Option<String>,
}

impl Element {
    /// The key as nft writes it: `172.30.0.41 . tcp . 80`.
    pub fn key_text(&self) -> String {
        let mut s = String::new();
        for (i, k) in self.key.iter().enumerate() {
            if i > 0 {
                s.push_str(" . ");
            }
            let _ = write!(s, "{k}");
        }
        s
    }
}

/// A rule: expressions appended to a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The chain.
    pub chain: String,
    /// The expressions, matches first and a statement or verdict last.
    pub exprs: Vec<Expr>,
    /// A comment.
    pub comment: Option<String>,
}

impl Rule {
    /// A rule without comment.
    pub fn new(chain: impl Into<String>, exprs: Vec<Expr>) -> Rule {
        Rule {
            chain: chain.into(),
            exprs,
            comment: None,
        }
    }

    /// The same rule with a comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Rule {
        self.comment = Some(comment.into());
        self
    }

    /// The rule's body as nft writes it (without chain and comment).
    pub fn body(&self, family: Family) -> String {
        let mut s = String::new();
        for (i, e) in self.exprs.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            e.render(family, &mut s);
        }
        s
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// `add table` (with a comment).
    AddTable {
        /// The table's comment.
        comment: Option<String>,
    },
    /// `add chain`: creates it if missing, keeps its rules otherwise.
    AddChain(Chain),
    /// `flush chain`: deletes its rules.
    FlushChain(String),
    /// `delete chain`.
    DeleteChain(String),
    /// `add rule`: appends a rule.
    AddRule(Rule),
    /// `add set` / `add map`.
    AddSet(Set),
    /// `flush set` / `flush map` (name, is a map).
    FlushSet(String, bool),
    /// `delete set` / `delete map` (name, is a map).
    DeleteSet(String, bool),
    /// `add element`.
    AddElement(Element),
    /// `delete element` (only the key matters).
    DeleteElement(Element),
}

/// Operations on one table, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The table's family.
    pub family: Family,
    /// The table's name.
    pub table: String,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

impl Transaction {
    /// An empty transaction on `family table`.
    pub fn new(family: Family, table: impl Into<String>) -> Transaction {
        Transaction {
            family,
            table: table.into(),
            ops: Vec::new(),
        }
    }

    /// Appends an operation.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Number of operations (what knftables calls `NumOperations`).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Writes one operation as an nft command line (no newline).
    pub fn render_op(&self, op: &Op, out: &mut String) {
        let (fam, table) = (self.family, &self.table);
        match op {
            Op::AddTable { comment } => {
                let _ = write!(out, "add table {fam} {table}");
                if let Some(c) = comment {
                    let _ = write!(out, " {{ comment {} ; }}", quote(c));
                }
            }
            Op::AddChain(c) => {
                let _ = write!(out, "add chain {fam} {table} {}", c.name);
                if c.base.is_some() || c.comment.is_some() {
                    out.push_str(" {");
                    if let Some(b) = &c.base {
                        let _ = write!(
                            out,
                            " type {} hook {} priority {} ;",
                            b.kind.name(),
                            b.hook.name(),
                            b.priority
                        );
                    }
                    if let Some(cm) = &c.comment {
                        let _ = write!(out, " comment {} ;", quote(cm));
                    }
                    out.push_str(" }");
                }
            }
            Op::FlushChain(n) => {
                let _ = write!(out, "flush chain {fam} {table} {n}");
            }
            Op::DeleteChain(n) => {
                let _ = write!(out, "delete chain {fam} {table} {n}");
            }
            Op::AddRule(r) => {
                let _ = write!(out, "add rule {fam} {table} {} {}", r.chain, r.body(fam));
                if let Some(c) = &r.comment {
                    let _ = write!(out, " comment {}", quote(c));
                }
            }
            Op::AddSet(s) => {
                let _ = write!(
                    out,
                    "add {} {fam} {table} {} {{ type {} ;",
                    s.keyword(),
                    s.name,
                    s.type_text()
                );
                let mut flags = Vec::new();
                if s.dynamic {
                    flags.push("dynamic");
                }
                if s.timeout.is_some() {
                    flags.push("timeout");
                }
                if !flags.is_empty() {
                    let _ = write!(out, " flags {} ;", flags.join(","));
                }
                if let Some(t) = s.timeout {
                    let _ = write!(out, " timeout {t}s ;");
                }
                if let Some(c) = &s.comment {
                    let _ = write!(out, " comment {} ;", quote(c));
                }
                out.push_str(" }");
            }
            Op::FlushSet(n, map) => {
                let kw = if *map { "map" } else { "set" };
                let _ = write!(out, "flush {kw} {fam} {table} {n}");
            }
            Op::DeleteSet(n, map) => {
                let kw = if *map { "map" } else { "set" };
                let _ = write!(out, "delete {kw} {fam} {table} {n}");
            }
            Op::AddElement(e) => {
                let _ = write!(
                    out,
                    "add element {fam} {table} {} {{ {}",
                    e.set,
                    e.key_text()
                );
                if let Some(c) = &e.comment {
                    let _ = write!(out, " comment {}", quote(c));
                }
                if let Some(v) = &e.value {
                    let _ = write!(out, " : {v}");
                } else if !e.data.is_empty() {
                    let data: Vec<String> = e.data.iter().map(ToString::to_string).collect();
                    let _ = write!(out, " : {}", data.join(" . "));
                }
                out.push_str(" }");
            }
            Op::DeleteElement(e) => {
                let _ = write!(
                    out,
                    "delete element {fam} {table} {} {{ {} }}",
                    e.set,
                    e.key_text()
                );
            }
        }
    }

    /// The transaction as an `nft -f` script, one command per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            self.render_op(op, &mut out);
            out.push('\n');
        }
        out
    }
}
