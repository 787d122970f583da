//! `ipMasq`: the reference plugin's masquerade rules, byte for byte (same chain name, comment
//! and rules), applied with one `iptables-restore --noflush` per address family.
//!
//! For a container address A in subnet S, in table nat:
//! `-A POSTROUTING -s A -m comment --comment C -j CNI-xxx`, and in chain CNI-xxx
//! `-d S -j ACCEPT` then `! -d 224.0.0.0/4 -j MASQUERADE` (ff00::/8 for IPv6).

use super::error::{CniError, EXTERNAL_PROGRAM};
use ipnet::IpNet;
use sha2::{Digest, Sha512};
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The reference plugins' chain name: `CNI-` and 24 hex digits of sha512(name + id).
pub(crate) fn chain_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    // 24 hex digits: the first 12 bytes.
    digest[..12].iter().fold(String::from("CNI-"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The reference plugins' rule comment (Go's `%q` quoting).
pub(crate) fn comment(network: &str, container_id: &str) -> String {
    format!("name: {network:?} id: {container_id:?}")
}

/// Quotes a comment for iptables-restore's line parser.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn restore(v6: bool, input: &str) -> Result<(), String> {
    let prog = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    let mut child = Command::new(prog)
        .args(["--noflush", "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{prog}: {e} (install iptables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("{prog}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Adds the masquerade rules for the container's addresses.
pub(crate) fn setup(network: &str, container_id: &str, addrs: &[IpNet]) -> Result<(), CniError> {
    let chain = chain_name(network, container_id);
    let c = quoted(&comment(network, container_id));
    for v6 in [false, true] {
        let mine: Vec<&IpNet> = addrs.iter().filter(|a| a.addr().is_ipv6() == v6).collect();
        if mine.is_empty() {
            continue;
        }
        let multicast = if v6 { "ff00::/8" } else { "224.0.0.0/4" };
        let mut input = format!("*nat\n:{chain} - [0:0]\n");
        for a in &mine {
            input.push_str(&format!(
                "-A {chain} -d {} -m comment --comment {c} -j ACCEPT\n",
                a.trunc()
            ));
        }
        input.push_str(&format!(
            "-A {chain} ! -d {multicast} -m comment --comment {c} -j MASQUERADE\n"
        ));
        for a in &mine {
            input.push_str(&format!(
                "-A POSTROUTING -s {} -m comment --comment {c} -j {chain}\n",
                a.addr()
            ));
        }
        input.push_str("COMMIT\n");
        restore(v6, &input).map_err(|e| {
            CniError::new(
                EXTERNAL_PROGRAM,
                format!("ipMasq: adding the masquerade rules failed: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Removes the masquerade rules of the container; rules already gone are not an error.
pub(crate) fn teardown(
    network: &str,
    container_id: &str,
    addrs: &[IpAddr],
) -> Result<(), CniError> {
    let chain = chain_name(network, container_id);
    let c = quoted(&comment(network, container_id));
    for v6 in [false, true] {
        let mine: Vec<&IpAddr> = addrs.iter().filter(|a| a.is_ipv6() == v6).collect();
        // Without any address (all gone already) only the IPv4 chain is worth a look.
        if mine.is_empty() && (v6 || !addrs.is_empty()) {
            continue;
        }
        // One transaction that removes the jumps and the chain; when a jump is already gone
        // the whole transaction is refused, so then remove jump by jump and the chain alone.
        let mut input = String::from("*nat\n");
        for a in &mine {
            input.push_str(&format!(
                "-D POSTROUTING -s {a} -m comment --comment {c} -j {chain}\n"
            ));
        }
        input.push_str(&format!("-F {chain}\n-X {chain}\nCOMMIT\n"));
        if restore(v6, &input).is_ok() {
            continue;
        }
        for a in &mine {
            let _ = restore(
                v6,
                &format!(
                    "*nat\n-D POSTROUTING -s {a} -m comment --comment {c} -j {chain}\nCOMMIT\n"
                ),
            );
        }
        // Declaring the chain creates or flushes it, so this works whether it exists or not;
        // it fails only while some other rule still jumps to it.
        restore(v6, &format!("*nat\n:{chain} - [0:0]\n-X {chain}\nCOMMIT\n")).map_err(|e| {
            CniError::new(
                EXTERNAL_PROGRAM,
                format!("ipMasq: removing chain {chain} failed: {e}"),
            )
        })?;
    }
    Ok(())
}

/// The container ids and source addresses of the POSTROUTING jumps this network's
/// masquerade rules made, read from `iptables-save -t nat` output.
fn jumps(network: &str, save: &str) -> Vec<(String, IpAddr)> {
    // iptables-save prints the comment quoted, with its inner quotes escaped.
    let marker = format!("--comment \"name: \\\"{network}\\\" id: \\\"");
    save.lines()
        .filter(|l| l.starts_with("-A POSTROUTING "))
        .filter_map(|l| {
            let rest = &l[l.find(&marker)? + marker.len()..];
            let id = &rest[..rest.find("\\\"")?];
            let src = l.split_whitespace().skip_while(|w| *w != "-s").nth(1)?;
            let ip = src.split('/').next()?.parse().ok()?;
            Some((id.to_owned(), ip))
        })
        .collect()
}

/// GC: removes the masquerade rules of this network's containers whose ids are not in
/// `live`. Returns the ids whose rules were removed.
pub(crate) fn gc(network: &str, live: &[&str]) -> Result<Vec<String>, CniError> {
    let mut removed = Vec::new();
    for prog in ["iptables-save", "ip6tables-save"] {
        let Ok(out) = Command::new(prog).args(["-t", "nat"]).output() else {
            continue;
        };
        let save = String::from_utf8_lossy(&out.stdout);
        for (id, ip) in jumps(network, &save) {
            if live.contains(&id.as_str()) {
                continue;
            }
            teardown(network, &id, &[ip])?;
            removed.push(id);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names() {
        // The reference plugins' names for these (the kernel tests compare whole rule sets).
        assert_eq!(chain_name("xnet", "abc123"), "CNI-5bff413c06dae74685539e16");
        assert_eq!(comment("xnet", "abc123"), r#"name: "xnet" id: "abc123""#);
        assert_eq!(quoted(r#"a "b""#), r#""a \"b\"""#);
    }

    #[test]
    fn jumps_from_iptables_save() {
        let save = concat!(
            "*nat\n",
            ":POSTROUTING ACCEPT [0:0]\n",
            "-A POSTROUTING -s 10.244.7.2/32 -m comment --comment \"name: \\\"xnet\\\" id: \\\"abc123\\\"\" -j CNI-5bff413c06dae74685539e16\n",
            "-A POSTROUTING -s 10.244.7.3/32 -m comment --comment \"name: \\\"other\\\" id: \\\"zz\\\"\" -j CNI-x\n",
            "-A CNI-5bff413c06dae74685539e16 -d 10.244.7.0/24 -m comment --comment \"name: \\\"xnet\\\" id: \\\"abc123\\\"\" -j ACCEPT\n",
            "COMMIT\n",
        );
        assert_eq!(
            jumps("xnet", save),
            vec![("abc123".to_owned(), "10.244.7.2".parse().unwrap())]
        );
    }
}
