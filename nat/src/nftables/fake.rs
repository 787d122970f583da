//! An in-memory nftables table: transactions applied with the kernel's rules (all or nothing,
//! objects must exist before they are used, chains in use cannot be deleted), and dumped as
//! the `add` commands that would rebuild it. Dry runs and tests use it; so can a reader who
//! wants to see what a sync would leave behind.

use super::model::{Chain, Element, Family, KeyPart, Op, Rule, Set, Transaction, Verdict};
use super::rule::Expr;
use std::collections::BTreeMap;

/// Why a transaction does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{op}`: {reason}")]
pub struct FakeError {
    /// The operation, as an nft command.
    pub op: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeSet {
    set: Set,
    elements: BTreeMap<Vec<KeyPart>, Element>,
}

/// One table, in memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeTable {
    family: Family,
    name: String,
    exists: bool,
    comment: Option<String>,
    chains: BTreeMap<String, (Chain, Vec<Rule>)>,
    sets: BTreeMap<String, FakeSet>,
}

fn rule_targets(r: &Rule) -> Vec<&str> {
    let mut v = Vec::new();
    for e in &r.exprs {
        match e {
            Expr::Verdict(vd) => v.extend(vd.chain()),
            Expr::Numgen { targets } => v.extend(targets.iter().map(String::as_str)),
            _ => {}
        }
    }
    v
}

fn rule_sets(r: &Rule) -> Vec<&str> {
    let mut v = Vec::new();
    for e in &r.exprs {
        match e {
            Expr::AddrInSet { set, .. } | Expr::Update { set, .. } => v.push(set.as_str()),
            Expr::Vmap { map, .. } => v.push(map.as_str()),
            Expr::AddrPairInSet { set } => v.push(set.as_str()),
            Expr::SlotDnat { map, affinity, .. } => {
                v.push(map.as_str());
                v.extend(affinity.iter().map(|a| a.map.as_str()));
            }
            Expr::AffinityDnat { affinity, live } | Expr::AffinityForget { affinity, live } => {
                v.push(affinity.map.as_str());
                v.push(live.as_str());
            }
            _ => {}
        }
    }
    v
}

impl FakeTable {
    /// An empty (not yet created) table.
    pub fn new(family: Family, name: impl Into<String>) -> FakeTable {
        FakeTable {
            family,
            name: name.into(),
            ..FakeTable::default()
        }
    }

    /// Applies `tx` entirely, or not at all.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), FakeError> {
        let mut next = self.clone();
        for op in &tx.ops {
            next.apply_op(op).map_err(|reason| {
                let mut text = String::new();
                tx.render_op(op, &mut text);
                FakeError { op: text, reason }
            })?;
        }
        *self = next;
        Ok(())
    }

    fn chain_used(&self, name: &str) -> bool {
        self.chains
            .values()
            .any(|(_, rules)| rules.iter().any(|r| rule_targets(r).contains(&name)))
            || self.sets.values().any(|s| {
                s.elements
                    .values()
                    .any(|e| e.value.as_ref().and_then(Verdict::chain) == Some(name))
            })
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), String> {
        if !self.exists && !matches!(op, Op::AddTable { .. }) {
            return Err("no such table".into());
        }
        match op {
            Op::AddTable { comment } => {
                if !self.exists {
                    self.exists = true;
                    self.comment = comment.clone();
                }
            }
            Op::AddChain(c) => match self.chains.get(&c.name) {
                Some((old, _)) if c.base.is_some() && old.base != c.base => {
                    return Err("chain exists with another hook".into());
                }
                Some(_) => {}
                None => {
                    self.chains.insert(c.name.clone(), (c.clone(), Vec::new()));
                }
            },
            Op::FlushChain(n) => {
                self.chains.get_mut(n).ok_or("no such chain")?.1.clear();
            }
            Op::DeleteChain(n) => {
                if !self.chains.contains_key(n) {
                    return Err("no such chain".into());
                }
                if self.chain_used(n) {
                    return Err("chain is in use".into());
                }
                self.chains.remove(n);
            }
            Op::AddRule(r) => {
                for t in rule_targets(r) {
                    if !self.chains.contains_key(t) {
                        return Err(format!("no such chain {t}"));
                    }
                }
                for s in rule_sets(r) {
                    if !self.sets.contains_key(s) {
                        return Err(format!("no such set {s}"));
                    }
                }
                self.chains
                    .get_mut(&r.chain)
                    .ok_or("no such chain")?
                    .1
                    .push(r.clone());
            }
            Op::AddSet(s) => match self.sets.get(&s.name) {
                Some(old)
                    if old.set.key != s.key
                        || old.set.verdict_map != s.verdict_map
                        || old.set.data != s.data =>
                {
                    return Err("set exists with another type".into());
                }
                Some(_) => {}
                None => {
                    self.sets.insert(
                        s.name.clone(),
                        FakeSet {
                            set: s.clone(),
                            elements: BTreeMap::new(),
                        },
                    );
                }
            },
            Op::FlushSet(n, _) => {
                self.sets.get_mut(n).ok_or("no such set")?.elements.clear();
            }
            Op::DeleteSet(n, _) => {
                if !self.sets.contains_key(n) {
                    return Err("no such set".into());
                }
                let used = self
                    .chains
                    .values()
                    .any(|(_, rules)| rules.iter().any(|r| rule_sets(r).contains(&n.as_str())));
                if used {
                    return Err("set is in use".into());
                }
                self.sets.remove(n);
            }
            Op::AddElement(e) => {
                if let Some(c) = e.value.as_ref().and_then(Verdict::chain) {
                    if !self.chains.contains_key(c) {
                        return Err(format!("no such chain {c}"));
                    }
                }
                let s = self.sets.get_mut(&e.set).ok_or("no such set")?;
                if s.set.key.len() != e.key.len()
                    || s.set.verdict_map != e.value.is_some()
                    || s.set.data.len() != e.data.len()
                {
                    return Err("element does not fit the set".into());
                }
                match s.elements.get(&e.key) {
                    Some(old) if old.value != e.value || old.data != e.data => {
                        return Err("element exists with another value".into());
                    }
                    Some(_) => {}
                    None => {
                        s.elements.insert(e.key.clone(), e.clone());
                    }
                }
            }
            Op::DeleteElement(e) => {
                let s = self.sets.get_mut(&e.set).ok_or("no such set")?;
                s.elements.remove(&e.key).ok_or("no such element")?;
            }
        }
        Ok(())
    }

    /// The table as `add` commands (tables, chains, sets, rules, elements), in the order
    /// knftables' fake writes them.
    pub fn dump(&self) -> String {
        let mut tx = Transaction::new(self.family, self.name.clone());
        if !self.exists {
            return String::new();
        }
        tx.push(Op::AddTable {
            comment: self.comment.clone(),
        });
        for (c, _) in self.chains.values() {
            tx.push(Op::AddChain(c.clone()));
        }
        for s in self.sets.values() {
            tx.push(Op::AddSet(s.set.clone()));
        }
        for (_, rules) in self.chains.values() {
            for r in rules {
                tx.push(Op::AddRule(r.clone()));
            }
        }
        for s in self.sets.values() {
            for e in s.elements.values() {
                tx.push(Op::AddElement(e.clone()));
            }
        }
        tx.render()
    }

    /// The chain's rules, if it exists.
    pub fn rules(&self, chain: &str) -> Option<&[Rule]> {
        self.chains.get(chain).map(|(_, r)| r.as_slice())
    }

    /// Names of the chains.
    pub fn chain_names(&self) -> impl Iterator<Item = &str> {
        self.chains.keys().map(String::as_str)
    }

    /// Names of the sets and maps.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The elements of a set, if it exists.
    pub fn elements(&self, set: &str) -> Option<impl Iterator<Item = &Element>> {
        self.sets.get(set).map(|s| s.elements.values())
    }
}
