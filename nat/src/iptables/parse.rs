//! Parsing of `iptables-save` output (and of `iptables-restore` input, which has the same
//! syntax) into the rule model.

use super::{AddrType, ChainDecl, CtState, Line, Match, Protocol, Rule, Table, TableRules, Target};
use ipnet::IpNet;
use std::net::IpAddr;

/// A line of `iptables-save` output that the model cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iptables-save line {line}: {message}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The line's text.
    pub text: String,
}

/// Parses `iptables-save` output (or `iptables-restore` input) into tables.
///
/// Comment lines (`# ...`) and blank lines are skipped. Every rule must be representable by
/// [`Match`] and [`Target`]; anything else is an error naming the line. To read what other
/// programs wrote, use [`parse_save_tolerant`].
pub fn parse_save(text: &str) -> Result<Vec<TableRules>, ParseError> {
    parse_blocks(text, false)?
        .into_iter()
        .map(|b| {
            let mut t = TableRules::new(b.table);
            t.chains = b.chains;
            for l in b.lines {
                match l {
                    RawLine::Rule(r) => t.lines.push(Line::Append(r)),
                    RawLine::Delete(c, _) => t.lines.push(Line::DeleteChain(c)),
                    // Only the tolerant parse keeps rules as text.
                    RawLine::Opaque(o) => {
                        return Err(ParseError {
                            line: o.line,
                            message: o.reason,
                            text: o.text,
                        });
                    }
                }
            }
            Ok(t)
        })
        .collect()
}

/// A rule of `iptables-save` output that the rule model does not represent (a match or target
/// of another program: `-m state`, `-m multiport`, `-p icmp --icmp-type`, port ranges, ...),
/// kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueRule {
    /// The chain it is appended to.
    pub chain: String,
    /// The line as `iptables-save` printed it.
    pub text: String,
    /// Why the model does not represent it.
    pub reason: String,
    /// 1-based line number in the text parsed.
    pub line: usize,
}

/// One rule of a [`SavedTable`].
#[derive(Debug, Clone, PartialEq)]
pub enum SavedRule {
    /// A rule the model represents.
    Known(Rule),
    /// A rule it does not, as text.
    Opaque(OpaqueRule),
}

impl SavedRule {
    /// The chain the rule is appended to.
    pub fn chain(&self) -> &str {
        match self {
            SavedRule::Known(r) => &r.chain,
            SavedRule::Opaque(o) => &o.chain,
        }
    }
}

/// One table of `iptables-save` output as [`parse_save_tolerant`] reads it: chain declarations
/// and every rule, in order, modelled or kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTable {
    /// The table.
    pub table: Table,
    /// Declared chains, in order.
    pub chains: Vec<ChainDecl>,
    /// The rules, in order.
    pub rules: Vec<SavedRule>,
}

impl SavedTable {
    /// `true` when the table declares `chain`.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c.name == chain)
    }

    /// The rules of `chain` that the model represents, in order.
    pub fn known_rules<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter_map(move |r| match r {
            SavedRule::Known(r) if &*r.chain == chain => Some(r),
            _ => None,
        })
    }
}

/// Parses `iptables-save` output that other programs contributed to: a rule the model cannot
/// represent is kept as an [`OpaqueRule`] instead of failing the whole parse.
///
/// The structure must still be sound (tables opened and committed, chain declarations, `-A`
/// lines with a chain, balanced quotes): output that is not `iptables-save`'s is an error,
/// never an empty result.
///
/// ```
/// use podnet_nat::iptables::{SavedRule, parse_save_tolerant};
///
/// let text = "*filter\n:INPUT ACCEPT [0:0]\n\
///             -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
///             -A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
///             COMMIT\n";
/// let t = &parse_save_tolerant(text).unwrap()[0];
/// assert!(matches!(&t.rules[0], SavedRule::Opaque(o) if o.chain == "INPUT"));
/// assert_eq!(t.known_rules("INPUT").count(), 1);
/// ```
pub fn parse_save_tolerant(text: &str) -> Result<Vec<SavedTable>, ParseError> {
    parse_blocks(text, true)?
        .into_iter()
        .map(|b| {
            let mut rules = Vec::with_capacity(b.lines.len());
            for l in b.lines {
                rules.push(match l {
                    RawLine::Rule(r) => SavedRule::Known(r),
                    RawLine::Opaque(o) => SavedRule::Opaque(o),
                    RawLine::Delete(c, line) => {
                        return Err(ParseError {
                            line,
                            message: "iptables-save output has no -X lines".into(),
                            text: format!("-X {c}"),
                        });
                    }
                });
            }
            Ok(SavedTable {
                table: b.table,
                chains: b.chains,
                rules,
            })
        })
        .collect()
}

/// A table block before it becomes a [`TableRules`] or a [`SavedTable`].
struct Block {
    table: Table,
    chains: Vec<ChainDecl>,
    lines: Vec<RawLine>,
}

enum RawLine {
    Rule(Rule),
    Opaque(OpaqueRule),
    /// `-X CHAIN`, with its line number.
    Delete(String, usize),
}

/// The parse shared by [`parse_save`] and [`parse_save_tolerant`]: with `tolerant`, a rule the
/// model cannot represent becomes [`RawLine::Opaque`] instead of an error.
fn parse_blocks(text: &str, tolerant: bool) -> Result<Vec<Block>, ParseError> {
    let mut tables = Vec::new();
    let mut current: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        let err = |message: &str| ParseError {
            line: line_no,
            message: message.to_owned(),
            text: raw.to_owned(),
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if current.is_some() {
                return Err(err("table started before COMMIT"));
            }
            let table = Table::from_name(name).ok_or_else(|| err("unknown table"))?;
            current = Some(Block {
                table,
                chains: Vec::new(),
                lines: Vec::new(),
            });
            continue;
        }
        if line == "COMMIT" {
            let t = current
                .take()
                .ok_or_else(|| err("COMMIT outside a table"))?;
            tables.push(t);
            continue;
        }
        let t = current
            .as_mut()
            .ok_or_else(|| err("line outside a table"))?;
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts.next().ok_or_else(|| err("empty chain declaration"))?;
            let policy = parts
                .next()
                .ok_or_else(|| err("chain declaration without policy"))?;
            t.chains.push(ChainDecl {
                name: name.to_owned(),
                policy: (policy != "-").then(|| policy.to_owned()),
            });
            continue;
        }
        let words = split_words(line).map_err(&err)?;
        let mut words: &[String] = &words;
        // iptables-save -c puts counters first.
        if words.first().is_some_and(|w| w.starts_with('[')) {
            words = &words[1..];
        }
        match words.first().map(String::as_str) {
            Some("-A") | Some("--append") => {
                let chain = words.get(1).ok_or_else(|| err("-A without chain"))?;
                match parse_rule(chain, &words[2..]) {
                    Ok(rule) => t.lines.push(RawLine::Rule(rule)),
                    Err(m) if tolerant => t.lines.push(RawLine::Opaque(OpaqueRule {
                        chain: chain.clone(),
                        text: line.to_owned(),
                        reason: m,
                        line: line_no,
                    })),
                    Err(m) => return Err(err(&m)),
                }
            }
            Some("-X") | Some("--delete-chain") => {
                let chain = words.get(1).ok_or_else(|| err("-X without chain"))?;
                t.lines.push(RawLine::Delete(chain.clone(), line_no));
            }
            _ => return Err(err("unsupported command")),
        }
    }
    if current.is_some() {
        return Err(ParseError {
            line: text.lines().count(),
            message: "missing COMMIT".into(),
            text: String::new(),
        });
    }
    Ok(tables)
}

/// Splits a line into words, honouring double quotes and `\"` inside them.
pub(super) fn split_words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote");
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("bad address {s:?}"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| format!("bad number {s:?}"))
}

fn parse_rule(chain: &str, words: &[String]) -> Result<Rule, String> {
    let mut rule = Rule::new(chain);
    let mut negate = false;
    let mut i = 0;
    let next = |i: &mut usize| -> Result<&str, String> {
        *i += 1;
        words
            .get(*i)
            .map(String::as_str)
            .ok_or_else(|| "missing argument".to_owned())
    };
    while i < words.len() {
        let w = words[i].as_str();
        match w {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-p" | "--protocol" => {
                let p = next(&mut i)?;
                let p =
                    Protocol::from_name(p).ok_or_else(|| format!("unsupported protocol {p}"))?;
                if negate {
                    return Err("negated protocol".into());
                }
                rule.matches.push(Match::Protocol(p));
            }
            "-s" | "--source" | "--src" => {
                let net = parse_net(next(&mut i)?)?;
                rule.matches.push(Match::Source { net, negate });
            }
            "-d" | "--destination" | "--dst" => {
                let net = parse_net(next(&mut i)?)?;
                rule.matches.push(Match::Destination { net, negate });
            }
            "-i" | "--in-interface" => {
                let name = next(&mut i)?.to_owned();
                rule.matches.push(Match::InInterface { name, negate });
            }
            "-o" | "--out-interface" => {
                let name = next(&mut i)?.to_owned();
                rule.matches.push(Match::OutInterface { name, negate });
            }
            "--dport" | "--destination-port" => {
                let p = next(&mut i)?;
                let p = p.parse().map_err(|_| format!("bad port {p}"))?;
                rule.matches.push(Match::DestinationPort(p));
            }
            "--sport" | "--source-port" => {
                let p = next(&mut i)?;
                let p = p.parse().map_err(|_| format!("bad port {p}"))?;
                rule.matches.push(Match::SourcePort(p));
            }
            "-m" | "--match" => {
                let module = next(&mut i)?;
                match module {
                    "tcp" | "udp" | "sctp" => {
                        rule.matches.push(Match::ProtocolModule(
                            Protocol::from_name(module).unwrap_or(Protocol::Tcp),
                        ));
                    }
                    "comment" | "addrtype" | "mark" | "conntrack" | "statistic" | "recent"
                    | "nfacct" => {
                        i = parse_module(module, words, i + 1, &mut rule)?;
                        negate = false;
                        continue;
                    }
                    other => return Err(format!("unsupported match module {other}")),
                }
            }
            "-g" | "--goto" => return Err("goto (-g) is not modelled".into()),
            "-j" | "--jump" => {
                let t = next(&mut i)?;
                let rest = &words[i + 1..];
                rule.target = Some(parse_target(t, rest)?);
                return Ok(rule);
            }
            other => return Err(format!("unsupported option {other}")),
        }
        negate = false;
        i += 1;
    }
    Ok(rule)
}

/// Parses the options of `-m module` starting at `i`; returns the index after them.
fn parse_module(
    module: &str,
    words: &[String],
    mut i: usize,
    rule: &mut Rule,
) -> Result<usize, String> {
    let get = |i: usize| words.get(i).map(String::as_str);
    let mut negate = false;
    let mut recent_name: Option<String> = None;
    let mut recent_set = false;
    let mut recent_check = false;
    let mut seconds = 0u32;
    let mut reap = false;
    let mut probability: Option<f64> = None;
    while let Some(w) = get(i) {
        if w == "!" {
            // A "!" that belongs to this module's next option.
            if get(i + 1).is_some_and(|n| n.starts_with("--") && module_option(module, n)) {
                negate = true;
                i += 1;
                continue;
            }
            break;
        }
        if !module_option(module, w) {
            break;
        }
        let arg = get(i + 1);
        let need = || {
            arg.map(str::to_owned)
                .ok_or_else(|| format!("{w} needs an argument"))
        };
        match (module, w) {
            ("comment", "--comment") => {
                rule.matches.push(Match::Comment(need()?.into()));
                i += 2;
            }
            ("addrtype", "--src-type") | ("addrtype", "--dst-type") => {
                let t = need()?;
                if t != "LOCAL" || negate {
                    return Err(format!("unsupported address type {t}"));
                }
                rule.matches.push(if w == "--src-type" {
                    Match::SrcType(AddrType::Local)
                } else {
                    Match::DstType(AddrType::Local)
                });
                i += 2;
            }
            ("addrtype", "--limit-iface-in") | ("addrtype", "--limit-iface-out") => i += 1,
            ("mark", "--mark") => {
                let v = need()?;
                let (value, mask) = match v.split_once('/') {
                    Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
                    None => (v, None),
                };
                rule.matches.push(Match::Mark {
                    value,
                    mask,
                    negate,
                });
                i += 2;
            }
            ("conntrack", "--ctstate") => {
                let v = need()?;
                let states = v
                    .split(',')
                    .map(|s| CtState::from_name(s).ok_or_else(|| format!("unknown ctstate {s}")))
                    .collect::<Result<Vec<_>, _>>()?;
                rule.matches.push(Match::CtState { states, negate });
                i += 2;
            }
            ("statistic", "--mode") => {
                if arg != Some("random") {
                    return Err("only statistic --mode random is supported".into());
                }
                i += 2;
            }
            ("statistic", "--probability") => {
                let v = need()?;
                probability = Some(v.parse().map_err(|_| format!("bad probability {v}"))?);
                i += 2;
            }
            ("recent", "--name") => {
                recent_name = Some(need()?);
                i += 2;
            }
            ("recent", "--set") => {
                recent_set = true;
                i += 1;
            }
            ("recent", "--rcheck") => {
                recent_check = true;
                i += 1;
            }
            ("recent", "--seconds") => {
                let v = need()?;
                seconds = v.parse().map_err(|_| format!("bad seconds {v}"))?;
                i += 2;
            }
            ("recent", "--reap") => {
                reap = true;
                i += 1;
            }
            ("recent", "--mask") => i += 2,
            ("recent", "--rsource") => i += 1,
            ("nfacct", "--nfacct-name") => {
                rule.matches.push(Match::Nfacct(need()?));
                i += 2;
            }
            _ => return Err(format!("unsupported option {w} of -m {module}")),
        }
        negate = false;
    }
    if let Some(p) = probability {
        rule.matches.push(Match::Probability(p));
    }
    if module == "recent" {
        let name = recent_name.unwrap_or_else(|| "DEFAULT".to_owned());
        if recent_set {
            rule.matches.push(Match::RecentSet { name });
        } else if recent_check {
            rule.matches.push(Match::RecentCheck {
                name,
                seconds,
                reap,
            });
        } else {
            return Err("-m recent without --set or --rcheck".into());
        }
    }
    Ok(i)
}

fn module_option(module: &str, w: &str) -> bool {
    let opts: &[&str] = match module {
        "comment" => &["--comment"],
        "addrtype" => &[
            "--src-type",
            "--dst-type",
            "--limit-iface-in",
            "--limit-iface-out",
        ],
        "mark" => &["--mark"],
        "conntrack" => &["--ctstate"],
        "statistic" => &["--mode", "--probability"],
        "recent" => &[
            "--name",
            "--set",
            "--rcheck",
            "--seconds",
            "--reap",
            "--mask",
            "--rsource",
        ],
        "nfacct" => &["--nfacct-name"],
        _ => &[],
    };
    opts.contains(&w)
}

fn parse_target(t: &str, rest: &[String]) -> Result<Target, String> {
    let opt = |name: &str| -> Option<&str> {
        rest.iter()
            .position(|w| w == name)
            .and_then(|p| rest.get(p + 1))
            .map(String::as_str)
    };
    let flag = |name: &str| rest.iter().any(|w| w == name);
    // Every option after the target must be one the model keeps, or the rule would be read
    // as something else (`REDIRECT --to-ports 3128` as a jump to a chain named REDIRECT,
    // `MASQUERADE --to-ports ...` or `REJECT --reject-with tcp-reset` without their option).
    let allowed: &[(&str, bool)] = match t {
        "REJECT" => &[("--reject-with", true)],
        "MASQUERADE" => &[("--random-fully", false)],
        "DNAT" => &[("--to-destination", true)],
        "SNAT" => &[("--to-source", true), ("--random-fully", false)],
        "MARK" => &[
            ("--or-mark", true),
            ("--xor-mark", true),
            ("--set-xmark", true),
            ("--set-mark", true),
        ],
        _ => &[],
    };
    let mut i = 0;
    while let Some(w) = rest.get(i) {
        match allowed.iter().find(|(o, _)| o == w) {
            Some((_, true)) if i + 1 < rest.len() => i += 2,
            Some((_, true)) => return Err(format!("{w} needs an argument")),
            Some((_, false)) => i += 1,
            None => return Err(format!("unsupported option {w} of -j {t}")),
        }
    }
    Ok(match t {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "RETURN" => Target::Return,
        "REJECT" => match opt("--reject-with") {
            // The default, which iptables-save spells out.
            None | Some("icmp-port-unreachable") | Some("icmp6-port-unreachable") => Target::Reject,
            Some(other) => return Err(format!("unsupported REJECT --reject-with {other}")),
        },
        "MASQUERADE" => Target::Masquerade {
            random_fully: flag("--random-fully"),
        },
        "DNAT" => {
            let to = opt("--to-destination").ok_or("DNAT without --to-destination")?;
            Target::Dnat(
                to.parse()
                    .map_err(|_| format!("bad DNAT destination {to}"))?,
            )
        }
        "SNAT" => {
            let to = opt("--to-source").ok_or("SNAT without --to-source")?;
            Target::Snat {
                to: to.parse().map_err(|_| format!("bad SNAT source {to}"))?,
                random_fully: flag("--random-fully"),
            }
        }
        "MARK" => {
            if let Some(v) = opt("--or-mark") {
                Target::MarkOrText(v.to_owned())
            } else if let Some(v) = opt("--xor-mark") {
                Target::MarkXorText(v.to_owned())
            } else if let Some(v) = opt("--set-xmark").or_else(|| opt("--set-mark")) {
                let (a, b) = v.split_once('/').unwrap_or((v, "0xffffffff"));
                Target::MarkSetX {
                    value: parse_u32(a)?,
                    mask: parse_u32(b)?,
                }
            } else {
                return Err("MARK without a mark option".into());
            }
        }
        chain => {
            if chain.starts_with('-') || chain.is_empty() {
                return Err(format!("bad target {chain}"));
            }
            Target::Jump(chain.into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_kube_proxy_lines() {
        let text = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-X - [0:0]\n\
            -A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O\n\
            -A KUBE-SVC-X -m comment --comment \"ns5/svc5:p80 -> 10.180.0.3:80\" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN\n\
            -A KUBE-SEP-X -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80\n\
            -A KUBE-SVC-4 -m comment --comment \"ns4/svc4:p80 -> 10.180.0.4:80\" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-U\n\
            -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
            -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
            -A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n\
            -A KUBE-FW-X -m comment --comment \"other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL\"\n\
            -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT\n\
            -X KUBE-SEP-OLD\n\
            COMMIT\n";
        let tables = parse_save(text).unwrap();
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].render(), text);
    }

    #[test]
    fn parses_iptables_save_spelling() {
        let text = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SEP-X - [0:0]\n\
            -A KUBE-SEP-X -s 10.180.0.3/32 -m comment --comment \"ns5/svc5:p80\" -j KUBE-MARK-MASQ\n\
            -A KUBE-SEP-X -p tcp -m comment --comment \"ns5/svc5:p80\" -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.3:80\n\
            -A KUBE-SVC-X -m comment --comment \"a -> b\" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X\n\
            -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
            -A KUBE-SVC-Y -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-Z\n\
            -A KUBE-EXT -j REJECT --reject-with icmp-port-unreachable\n\
            COMMIT\n";
        let t = &parse_save(text).unwrap()[0];
        assert_eq!(t.chains[0].policy.as_deref(), Some("ACCEPT"));
        let rules: Vec<_> = t.chain_rules("KUBE-SEP-X").collect();
        assert_eq!(
            rules[1].matches[2],
            Match::RecentSet {
                name: "KUBE-SEP-X".into()
            }
        );
        assert_eq!(
            t.chain_rules("KUBE-MARK-MASQ").next().unwrap().target,
            Some(Target::MarkSetX {
                value: 0x4000,
                mask: 0x4000
            })
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "-A X",
            "*nat\n-A X -m bogus -j ACCEPT\nCOMMIT\n",
            "*nat\n-A X -m comment --comment \"open\nCOMMIT\n",
            "*nat\n-A\nCOMMIT\n",
            "*nat\n-A X -j DNAT --to-destination nope\nCOMMIT\n",
            "*nat\n-A X -p tcp -j REDIRECT --to-ports 3128\nCOMMIT\n",
            "*nat\n-A X -j MASQUERADE --to-ports 1024-65535\nCOMMIT\n",
            "*filter\n-A X -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n",
            "*filter\n-A X -g OTHER\nCOMMIT\n",
            "*filter\n-A X -j OTHER --with-option\nCOMMIT\n",
            "*nat\n",
            "*foo\nCOMMIT\n",
        ] {
            assert!(parse_save(bad).is_err(), "{bad:?}");
        }
    }

    /// What Docker, firewalld and distributions write, in iptables-save's spelling.
    const FOREIGN: &str = "# Generated by iptables-save v1.8.9
*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
:KUBE-NODEPORTS - [0:0]
[5:300] -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
";

    #[test]
    fn tolerant_parse_keeps_foreign_rules_as_text() {
        assert!(parse_save(FOREIGN).is_err());
        let tables = parse_save_tolerant(FOREIGN).unwrap();
        assert_eq!(tables.len(), 1);
        let t = &tables[0];
        assert!(t.has_chain("DOCKER-USER") && t.has_chain("KUBE-NODEPORTS"));
        let opaque: Vec<&OpaqueRule> = t
            .rules
            .iter()
            .filter_map(|r| match r {
                SavedRule::Opaque(o) => Some(o),
                SavedRule::Known(_) => None,
            })
            .collect();
        assert_eq!(opaque.len(), 5, "{opaque:#?}");
        assert!(opaque.iter().all(|o| o.chain == "INPUT"));
        assert_eq!(
            opaque[0].text,
            "[5:300] -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT"
        );
        assert_eq!(opaque[0].line, 8);
        let known: Vec<String> = t.known_rules("INPUT").map(Rule::render).collect();
        assert_eq!(
            known,
            [
                "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"
            ]
        );
        assert_eq!(t.known_rules("FORWARD").count(), 1);
        assert_eq!(t.rules.len(), 8);
    }

    #[test]
    fn tolerant_parse_still_refuses_what_is_not_iptables_save() {
        for bad in [
            "-A INPUT -j ACCEPT\n",
            "*filter\n-A INPUT -j ACCEPT\n",
            "*filter\n-A\nCOMMIT\n",
            "*filter\n-A INPUT -m comment --comment \"open\nCOMMIT\n",
            "*bogus\nCOMMIT\n",
            "*filter\n-X OLD\nCOMMIT\n",
            "*filter\n-Z INPUT\nCOMMIT\n",
        ] {
            assert!(parse_save_tolerant(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_save_tolerant("").unwrap(), Vec::new());
    }
}
