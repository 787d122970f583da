//! Rendering of the rule model as `iptables-restore` input, written straight into a `String`.

use super::{Line, Match, Rule, TableRules, Target};
use ipnet::IpNet;
use std::fmt::Write;

pub(super) fn write_table(out: &mut String, t: &TableRules) {
    out.push('*');
    out.push_str(t.table.as_str());
    out.push('\n');
    for c in &t.chains {
        out.push(':');
        out.push_str(&c.name);
        out.push(' ');
        out.push_str(c.policy.as_deref().unwrap_or("-"));
        out.push_str(" [0:0]\n");
    }
    for l in &t.lines {
        match l {
            Line::Append(r) => {
                write_rule(out, r);
                out.push('\n');
            }
            Line::DeleteChain(c) => {
                out.push_str("-X ");
                out.push_str(c);
                out.push('\n');
            }
        }
    }
    out.push_str("COMMIT\n");
}

fn write_net(out: &mut String, net: &IpNet) {
    if net.prefix_len() == net.max_prefix_len() {
        let _ = write!(out, "{}", net.addr());
    } else {
        let _ = write!(out, "{net}");
    }
}

fn neg(out: &mut String, negate: bool) {
    if negate {
        out.push_str(" !");
    }
}

/// Writes `text` as one iptables-restore word: quoted when it has spaces (as kube-proxy does).
fn write_word(out: &mut String, text: &str) {
    if text.is_empty() || text.contains(char::is_whitespace) {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(text);
    }
}

pub(super) fn write_rule(out: &mut String, r: &Rule) {
    out.push_str("-A ");
    out.push_str(&r.chain);
    for m in &r.matches {
        match m {
            Match::Comment(c) => {
                out.push_str(" -m comment --comment ");
                write_word(out, c);
            }
            Match::Protocol(p) => {
                out.push_str(" -p ");
                out.push_str(p.as_str());
            }
            Match::ProtocolModule(p) => {
                out.push_str(" -m ");
                out.push_str(p.as_str());
            }
            Match::DestinationPort(p) => {
                let _ = write!(out, " --dport {p}");
            }
            Match::SourcePort(p) => {
                let _ = write!(out, " --sport {p}");
            }
            Match::Source { net, negate } => {
                neg(out, *negate);
                out.push_str(" -s ");
                write_net(out, net);
            }
            Match::Destination { net, negate } => {
                neg(out, *negate);
                out.push_str(" -d ");
                write_net(out, net);
            }
            Match::InInterface { name, negate } => {
                neg(out, *negate);
                out.push_str(" -i ");
                out.push_str(name);
            }
            Match::OutInterface { name, negate } => {
                neg(out, *negate);
                out.push_str(" -o ");
                out.push_str(name);
            }
            Match::SrcType(t) => {
                out.push_str(" -m addrtype --src-type ");
                out.push_str(t.as_str());
            }
            Match::DstType(t) => {
                out.push_str(" -m addrtype --dst-type ");
                out.push_str(t.as_str());
            }
            Match::Mark {
                value,
                mask,
                negate,
            } => {
                out.push_str(" -m mark");
                neg(out, *negate);
                out.push_str(" --mark ");
                out.push_str(value);
                if let Some(m) = mask {
                    out.push('/');
                    out.push_str(m);
                }
            }
            Match::CtState { states, negate } => {
                out.push_str(" -m conntrack");
                neg(out, *negate);
                out.push_str(" --ctstate ");
                for (i, s) in states.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(s.as_str());
                }
            }
            Match::Probability(p) => {
                let _ = write!(out, " -m statistic --mode random --probability {p:.10}");
            }
            Match::RecentSet { name } => {
                out.push_str(" -m recent --name ");
                out.push_str(name);
                out.push_str(" --set");
            }
            Match::RecentCheck {
                name,
                seconds,
                reap,
            } => {
                let _ = write!(out, " -m recent --name {name} --rcheck --seconds {seconds}");
                if *reap {
                    out.push_str(" --reap");
                }
            }
            Match::Nfacct(n) => {
                out.push_str(" -m nfacct --nfacct-name ");
                out.push_str(n);
            }
        }
    }
    if let Some(t) = &r.target {
        out.push_str(" -j ");
        match t {
            Target::Jump(c) => out.push_str(c),
            Target::Accept => out.push_str("ACCEPT"),
            Target::Drop => out.push_str("DROP"),
            Target::Return => out.push_str("RETURN"),
            Target::Reject => out.push_str("REJECT"),
            Target::Masquerade { random_fully } => {
                out.push_str("MASQUERADE");
                if *random_fully {
                    out.push_str(" --random-fully");
                }
            }
            Target::Dnat(to) => {
                let _ = write!(out, "DNAT --to-destination {to}");
            }
            Target::Snat { to, random_fully } => {
                let _ = write!(out, "SNAT --to-source {to}");
                if *random_fully {
                    out.push_str(" --random-fully");
                }
            }
            Target::MarkOr(v) => {
                let _ = write!(out, "MARK --or-mark {v:#x}");
            }
            Target::MarkOrText(v) => {
                out.push_str("MARK --or-mark ");
                out.push_str(v);
            }
            Target::MarkXorText(v) => {
                out.push_str("MARK --xor-mark ");
                out.push_str(v);
            }
            Target::MarkSetX { value, mask } => {
                let _ = write!(out, "MARK --set-xmark {value:#x}/{mask:#x}");
            }
        }
    }
}
