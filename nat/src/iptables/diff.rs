//! Comparing wanted rules with the live ones read back from `iptables-save`.
//!
//! `iptables-save` prints rules in its own spelling: matches reordered (`-p tcp -m comment ...
//! -m tcp --dport 80`), addresses with `/32`, marks as `--set-xmark VALUE/MASK`, `recent` with
//! its defaults spelled out. [`Rule::canonical`] maps both spellings to one form so a rule can
//! be compared with its read-back copy, and [`diff_tables`] lists the chains that differ.

use super::{Line, Match, Rule, TableRules, Target};
use std::collections::BTreeMap;

fn parse_num(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn norm_num(s: &str) -> String {
    parse_num(s)
        .map(|v| format!("{v:#x}"))
        .unwrap_or_else(|| s.to_owned())
}

fn rank(m: &Match) -> u8 {
    match m {
        Match::Source { .. } => 0,
        Match::Destination { .. } => 1,
        Match::InInterface { .. } => 2,
        Match::OutInterface { .. } => 3,
        Match::Protocol(_) => 4,
        Match::ProtocolModule(_) => 5,
        Match::DestinationPort(_) => 6,
        Match::SourcePort(_) => 7,
        Match::Comment(_) => 8,
        Match::SrcType(_) => 9,
        Match::DstType(_) => 10,
        Match::Mark { .. } => 11,
        Match::CtState { .. } => 12,
        Match::Probability(_) => 13,
        Match::RecentSet { .. } => 14,
        Match::RecentCheck { .. } => 15,
        Match::Nfacct(_) => 16,
    }
}

impl Rule {
    /// This rule in a canonical spelling: matches in a fixed order, numbers normalised, MARK
    /// targets as `--set-xmark`, probabilities rounded to 10 decimals. Two rules the kernel
    /// treats the same (one as written, one as `iptables-save` prints it) have equal
    /// canonical forms.
    pub fn canonical(&self) -> Rule {
        let mut matches: Vec<Match> = self
            .matches
            .iter()
            .map(|m| match m {
                Match::Mark {
                    value,
                    mask,
                    negate,
                } => Match::Mark {
                    value: norm_num(value),
                    mask: mask.as_deref().map(norm_num),
                    negate: *negate,
                },
                Match::Probability(p) => Match::Probability((p * 1e10).round() / 1e10),
                Match::CtState { states, negate } => {
                    let mut states = states.clone();
                    states.sort_by_key(|s| *s as u8);
                    Match::CtState {
                        states,
                        negate: *negate,
                    }
                }
                other => other.clone(),
            })
            .collect();
        matches.sort_by_key(rank);
        let target = self.target.as_ref().map(|t| match t {
            Target::MarkOr(v) => Target::MarkSetX {
                value: *v,
                mask: *v,
            },
            Target::MarkOrText(v) => {
                let v = parse_num(v).unwrap_or(0);
                Target::MarkSetX { value: v, mask: v }
            }
            Target::MarkXorText(v) => Target::MarkSetX {
                value: parse_num(v).unwrap_or(0),
                mask: 0,
            },
            other => other.clone(),
        });
        Rule {
            chain: self.chain.clone(),
            matches,
            target,
        }
    }
}

/// How one chain differs between wanted and live rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainDiff {
    /// The chain.
    pub chain: String,
    /// The wanted rules (canonical), empty if the chain should not exist.
    pub wanted: Vec<Rule>,
    /// The live rules (canonical), empty if the chain does not exist.
    pub live: Vec<Rule>,
}

fn by_chain(t: &TableRules) -> BTreeMap<String, Vec<Rule>> {
    let mut m: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for c in &t.chains {
        m.entry(c.name.clone()).or_default();
    }
    for l in &t.lines {
        if let Line::Append(r) = l {
            m.entry(r.chain.to_string())
                .or_default()
                .push(r.canonical());
        }
    }
    m
}

/// The chains of `wanted` whose rules differ from those in `live` (chains only in `live` are
/// ignored: other programs own them).
pub fn diff_tables(wanted: &TableRules, live: &TableRules) -> Vec<ChainDiff> {
    let w = by_chain(wanted);
    let l = by_chain(live);
    w.into_iter()
        .filter_map(|(chain, rules)| {
            let live_rules = l.get(&chain).cloned().unwrap_or_default();
            (live_rules != rules).then_some(ChainDiff {
                chain,
                wanted: rules,
                live: live_rules,
            })
        })
        .collect()
}
