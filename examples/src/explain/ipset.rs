//! The ipsets of a namespace (`ipset save`) and the `-m set --match-set NAME DIRS` match of
//! iptables rules, which kube-proxy's ipvs mode uses for every Service (`KUBE-CLUSTER-IP`,
//! `KUBE-NODE-PORT-TCP`, `KUBE-LOOP-BACK`, ...).
//!
//! podnet-nat's rule model has no set match, so before `iptables-save`'s text is parsed each
//! set match is carried as a comment match of a form no rule writes ([`lift`]); the evaluator
//! asks [`IpSets::matches`] when it meets one, and the rule is shown with its set match again
//! ([`lower`]).

use super::Flow;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The comment that stands for a set match: `podnet-explain-set [!]NAME DIRS`.
pub(crate) const MARK: &str = "podnet-explain-set ";

/// `iptables-save` text with each `-m set [!] --match-set NAME DIRS` turned into a comment
/// match the rule model reads (and [`IpSets::matches`] evaluates).
pub(crate) fn lift(text: &str) -> String {
    if !text.contains("--match-set") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&lift_line(line));
        out.push('\n');
    }
    out
}

fn lift_line(line: &str) -> String {
    if !line.starts_with("-A ") || !line.contains("--match-set") {
        return line.to_owned();
    }
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if words[i] == "-m" && words.get(i + 1) == Some(&"set") {
            let (neg, at) = match words.get(i + 2) {
                Some(&"!") => ("!", i + 3),
                _ => ("", i + 2),
            };
            if let (Some(&"--match-set"), Some(name), Some(dirs)) =
                (words.get(at), words.get(at + 1), words.get(at + 2))
            {
                out.push(format!("-m comment --comment \"{MARK}{neg}{name} {dirs}\""));
                i = at + 3;
                continue;
            }
        }
        out.push(words[i].to_owned());
        i += 1;
    }
    out.join(" ")
}

/// A rule's text with its set matches as `iptables-save` prints them.
pub(crate) fn lower(rule: &str) -> String {
    let mut s = rule.to_owned();
    let open = format!("-m comment --comment \"{MARK}");
    while let Some(at) = s.find(&open) {
        let rest = &s[at + open.len()..];
        let Some(end) = rest.find('"') else { break };
        let spec = &rest[..end];
        let (neg, spec) = match spec.strip_prefix('!') {
            Some(s) => ("! ", s),
            None => ("", spec),
        };
        let set = format!("-m set {neg}--match-set {spec}");
        s = format!("{}{set}{}", &s[..at], &rest[end + 1..]);
    }
    s
}

/// One set: its type's dimensions and its members, each as its dimensions' texts.
#[derive(Debug, Clone, Default)]
struct Set {
    /// `ip`, `port`, `net`, ... from the type (`hash:ip,port` -> `[ip, port]`).
    dims: Vec<String>,
    members: Vec<Vec<String>>,
}

/// The ipsets of a namespace, from `ipset save`.
#[derive(Debug, Clone, Default)]
pub(crate) struct IpSets {
    sets: BTreeMap<String, Set>,
}

impl IpSets {
    /// Parses `ipset save`'s output (`create NAME TYPE ...`, `add NAME MEMBER ...`); none
    /// when it could not be read (a set match then says so in the walk's caveats).
    pub(crate) fn parse(saved: &Result<String, String>) -> IpSets {
        let Ok(text) = saved else {
            return IpSets::default();
        };
        let mut sets: BTreeMap<String, Set> = BTreeMap::new();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("create"), Some(name), Some(kind)) => {
                    let dims = kind
                        .split_once(':')
                        .map_or(kind, |(_, d)| d)
                        .split(',')
                        .map(str::to_owned)
                        .collect();
                    sets.entry(name.to_owned()).or_default().dims = dims;
                }
                (Some("add"), Some(name), Some(member)) => sets
                    .entry(name.to_owned())
                    .or_default()
                    .members
                    .push(member.split(',').map(str::to_owned).collect()),
                _ => {}
            }
        }
        IpSets { sets }
    }

    /// Whether `flow` matches the set match `spec` (`[!]NAME DIRS`, from the comment that
    /// stands for it); `None` when there is no such set.
    pub(crate) fn matches(&self, spec: &str, flow: &Flow) -> Option<bool> {
        let (negate, spec) = match spec.strip_prefix('!') {
            Some(s) => (true, s),
            None => (false, spec),
        };
        let (name, dirs) = spec.split_once(' ')?;
        let set = self.sets.get(name)?;
        let dirs: Vec<&str> = dirs.split(',').collect();
        let hit = set.members.iter().any(|m| {
            m.len() == set.dims.len()
                && set.dims.iter().zip(m).enumerate().all(|(i, (dim, value))| {
                    let src = dirs.get(i).copied() == Some("src");
                    dim_matches(dim, value, flow, src)
                })
        });
        Some(hit != negate)
    }
}

/// One dimension of a member against the flow's source or destination.
fn dim_matches(dim: &str, value: &str, flow: &Flow, src: bool) -> bool {
    let addr = if src { flow.src } else { flow.dst };
    match dim {
        "ip" => value.parse::<Ipv4Addr>().is_ok_and(|a| a == addr),
        "net" => value
            .parse::<Ipv4Net>()
            .map(|n| n.contains(&addr))
            .or_else(|_| value.parse::<Ipv4Addr>().map(|a| a == addr))
            .unwrap_or(false),
        "port" => {
            let port = if src { flow.sport } else { flow.dport };
            let (proto, num) = value.split_once(':').unwrap_or(("tcp", value));
            proto.eq_ignore_ascii_case(&flow.proto.to_string())
                && num.parse::<u16>().ok() == port
                && port.is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::Proto;

    const LINE: &str = "-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ";

    #[test]
    fn set_matches_ride_as_comments_and_come_back() {
        let lifted = lift(LINE);
        assert!(lifted.contains("--comment \"podnet-explain-set KUBE-CLUSTER-IP dst,dst\""));
        assert!(!lifted.contains("--match-set"));
        assert_eq!(lower(lifted.trim_end()), LINE);
        let neg = "-A X -m set ! --match-set S dst -j RETURN";
        assert_eq!(lower(lift(neg).trim_end()), neg);
        assert_eq!(lift("*nat\nCOMMIT\n"), "*nat\nCOMMIT\n");
    }

    #[test]
    fn members_match_by_the_set_type_and_directions() {
        let sets = IpSets::parse(&Ok(
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024\n\
             add KUBE-CLUSTER-IP 10.96.0.10,tcp:80\n\
             create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\n\
             add KUBE-NODE-PORT-TCP 30080\n\
             create KUBE-LOOP-BACK hash:ip,port,ip family inet\n\
             add KUBE-LOOP-BACK 10.244.1.2,tcp:7777,10.244.1.2\n"
                .into(),
        ));
        let flow = |src: &str, dst: &str, port: u16| Flow {
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: None,
            dport: Some(port),
            mark: 0,
            dnat: false,
        };
        let f = flow("10.244.1.2", "10.96.0.10", 80);
        assert_eq!(sets.matches("KUBE-CLUSTER-IP dst,dst", &f), Some(true));
        assert_eq!(sets.matches("!KUBE-CLUSTER-IP dst,dst", &f), Some(false));
        assert_eq!(
            sets.matches(
                "KUBE-CLUSTER-IP dst,dst",
                &flow("10.244.1.2", "10.96.0.10", 81)
            ),
            Some(false)
        );
        assert_eq!(
            sets.matches(
                "KUBE-NODE-PORT-TCP dst",
                &flow("1.2.3.4", "198.18.0.1", 30080)
            ),
            Some(true)
        );
        let hairpin = flow("10.244.1.2", "10.244.1.2", 7777);
        assert_eq!(
            sets.matches("KUBE-LOOP-BACK dst,dst,src", &hairpin),
            Some(true)
        );
        let other = flow("10.244.1.3", "10.244.1.2", 7777);
        assert_eq!(
            sets.matches("KUBE-LOOP-BACK dst,dst,src", &other),
            Some(false)
        );
        assert_eq!(sets.matches("NO-SUCH dst", &f), None);
    }
}
