//! Rendering of the rule model as `iptables-restore` input, written straight into a `String`.

use super::{Line, Match, Rule, TableRules, Target};
use ipnet::IpNet;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

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
                write_word(out, c);
                out.push('\n');
            }
        }
    }
    out.push_str("COMMIT\n");
}

/// Appends a number in decimal, without the formatting machinery.
pub(crate) fn push_u32(out: &mut String, mut v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

/// Appends an address as `Display` would (IPv4 without the formatting machinery).
pub(crate) fn push_ip(out: &mut String, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u32(out, u32::from(*o));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `ip:port` (`[ip]:port` for IPv6), as `SocketAddr`'s `Display` does.
pub(crate) fn push_socket(out: &mut String, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(_) => push_ip(out, &addr.ip()),
        SocketAddr::V6(_) => {
            out.push('[');
            push_ip(out, &addr.ip());
            out.push(']');
        }
    }
    out.push(':');
    push_u32(out, u32::from(addr.port()));
}

/// `%0.10f` of `p`, from a table for the common `1/n` values.
fn push_probability(out: &mut String, p: f64) {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..=1024u32)
            .map(|n| {
                if n == 0 {
                    String::new()
                } else {
                    format!("{:.10}", 1.0 / f64::from(n))
                }
            })
            .collect()
    });
    let n = (1.0 / p).round();
    if (1.0..=1024.0).contains(&n) && 1.0 / n == p {
        out.push_str(&table[n as usize]);
    } else {
        let _ = write!(out, "{p:.10}");
    }
}

fn write_net(out: &mut String, net: &IpNet) {
    push_ip(out, &net.addr());
    if net.prefix_len() != net.max_prefix_len() {
        out.push('/');
        push_u32(out, u32::from(net.prefix_len()));
    }
}

fn neg(out: &mut String, negate: bool) {
    if negate {
        out.push_str(" !");
    }
}

/// Writes `text` as one iptables-restore word: quoted when it is empty or has spaces (as
/// kube-proxy does) or quotes, with `"` and `\` escaped inside the quotes (as iptables-save
/// does), so that it reads back the same.
fn write_word(out: &mut String, text: &str) {
    if !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c == '"') {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

pub(super) fn write_rule(out: &mut String, r: &Rule) {
    out.push_str("-A ");
    write_word(out, &r.chain);
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
                out.push_str(" --dport ");
                push_u32(out, u32::from(*p));
            }
            Match::SourcePort(p) => {
                out.push_str(" --sport ");
                push_u32(out, u32::from(*p));
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
                write_word(out, name);
            }
            Match::OutInterface { name, negate } => {
                neg(out, *negate);
                out.push_str(" -o ");
                write_word(out, name);
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
                match mask {
                    Some(m) => write_word(out, &format!("{value}/{m}")),
                    None => write_word(out, value),
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
                out.push_str(" -m statistic --mode random --probability ");
                push_probability(out, *p);
            }
            Match::RecentSet { name } => {
                out.push_str(" -m recent --name ");
                write_word(out, name);
                out.push_str(" --set");
            }
            Match::RecentCheck {
                name,
                seconds,
                reap,
            } => {
                out.push_str(" -m recent --name ");
                write_word(out, name);
                let _ = write!(out, " --rcheck --seconds {seconds}");
                if *reap {
                    out.push_str(" --reap");
                }
            }
            Match::Nfacct(n) => {
                out.push_str(" -m nfacct --nfacct-name ");
                write_word(out, n);
            }
        }
    }
    if let Some(t) = &r.target {
        out.push_str(" -j ");
        match t {
            Target::Jump(c) => write_word(out, c),
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
                out.push_str("DNAT --to-destination ");
                push_socket(out, to);
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
                write_word(out, v);
            }
            Target::MarkXorText(v) => {
                out.push_str("MARK --xor-mark ");
                write_word(out, v);
            }
            Target::MarkSetX { value, mask } => {
                let _ = write!(out, "MARK --set-xmark {value:#x}/{mask:#x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::iptables::parse_save;

    /// Words with spaces, quotes or backslashes (in foreign rules read from `iptables-save`)
    /// are written so that they read back the same: found by the `iptables_save` fuzz target,
    /// a chain name with a space was written bare and a comment's quote was not escaped.
    #[test]
    fn free_form_words_read_back_the_same() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n\
            -A \"my chain\" -i \"a b\" -m comment --comment \"say \\\"hi\\\" \\\\o/\" -j \"other chain\"\n\
            -A INPUT -m comment --comment \"\" -m mark --mark \"1 2\" -m recent --name \"x y\" --set -j ACCEPT\n\
            -X \"old chain\"\n\
            COMMIT\n";
        let tables = parse_save(text).unwrap();
        let rendered = tables[0].render();
        assert_eq!(parse_save(&rendered).unwrap(), tables, "{rendered}");
        let r = tables[0].chain_rules("my chain").next().unwrap();
        assert_eq!(r.to_string().matches('"').count(), 10, "{r}");
    }
}
