//! A host other agents already wrote to: their iptables rules and nftables tables, loaded into
//! a test namespace, and the checks that podnet's binaries left every one of them intact.
//!
//! The fixture is what those agents write on a real node, in their own spelling:
//!
//! - [`DOCKER`]: the Docker daemon with one published port (nat `DOCKER` chain and the
//!   MASQUERADE of 172.17.0.0/16; filter `DOCKER`, `DOCKER-USER`,
//!   `DOCKER-ISOLATION-STAGE-1/2`, the FORWARD jumps and FORWARD's DROP policy);
//! - [`KUBELET`]: kubelet's chains (`KUBE-KUBELET-CANARY` in three tables,
//!   `KUBE-IPTABLES-HINT`, `KUBE-MARK-DROP`, and `KUBE-FIREWALL` with its `-m mark` rule and
//!   its jumps from INPUT and OUTPUT), as kubelets before 1.27 write them;
//! - [`DISTRIBUTION`]: a distribution's INPUT rules (`-m state`, `-i lo`, `-p icmp
//!   --icmp-type`, `-m multiport --dports`, the node-port range `--dport 30000:32767`,
//!   `REJECT --reject-with tcp-reset`);
//! - [`FIREWALLD`]: a firewalld-style `table inet firewalld` with base chains, zone chains and
//!   a set.
//!
//! [`HostState::read`] takes a snapshot of every iptables table and of the fixture's nftables
//! tables (counters stripped); [`HostState::foreign_intact`] says whether a later snapshot still
//! holds every foreign chain, policy and rule byte for byte, with nothing added to foreign
//! chains other than the built-in ones and nothing of ours duplicated.
//!
//! ```no_run
//! use podnet_testsupport::TestNs;
//! use podnet_testsupport::foreign::{self, HostState};
//!
//! let node = TestNs::new("foreign");
//! foreign::load(&node, &foreign::ALL);
//! let before = HostState::read(&node);
//! // ... run a binary in `node` ...
//! let after = HostState::read(&node);
//! if let Err(why) = before.foreign_intact(&after) {
//!     panic!("{why}");
//! }
//! ```

use crate::TestNs;
use std::collections::{BTreeMap, BTreeSet};

/// What one agent writes: `iptables-restore --noflush` input and `nft -f` input (either may
/// be empty).
#[derive(Debug, Clone, Copy)]
pub struct Agent {
    /// Who writes it.
    pub name: &'static str,
    /// Its iptables rules, as `iptables-save` prints them.
    pub iptables: &'static str,
    /// Its nftables tables, as `nft list` prints them.
    pub nft: &'static str,
    /// The nftables tables it owns (`family name`), checked whole.
    pub nft_tables: &'static [&'static str],
}

/// The Docker daemon (one container, 172.17.0.2, port 8080 published to its port 80).
pub const DOCKER: Agent = Agent {
    name: "docker",
    iptables: "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
",
    nft: "",
    nft_tables: &[],
};

/// kubelet (before 1.27): canaries, the iptables hint, `KUBE-MARK-DROP` and `KUBE-FIREWALL`.
pub const KUBELET: Agent = Agent {
    name: "kubelet",
    iptables: "*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-DROP - [0:0]
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
",
    nft: "",
    nft_tables: &[],
};

/// A distribution's firewall: INPUT rules with matches and targets podnet's rule model does
/// not represent.
pub const DISTRIBUTION: Agent = Agent {
    name: "distribution",
    iptables: "*filter
:INPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 22,80,443 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 30000:32767 -j ACCEPT
-A INPUT -p udp -m udp --dport 30000:32767 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
COMMIT
",
    nft: "",
    nft_tables: &[],
};

/// firewalld with its nftables backend (policies accept, so traffic the tests send passes).
pub const FIREWALLD: Agent = Agent {
    name: "firewalld",
    iptables: "",
    nft: "table inet firewalld {
	set allowed_tcp {
		type inet_service
		flags interval
		elements = { 22, 80, 443, 30000-32767 }
	}

	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		ct state established,related accept
		iifname \"lo\" accept
		jump filter_INPUT_ZONES
	}

	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		ct status dnat accept
	}

	chain filter_INPUT_ZONES {
		iifname \"eth0\" goto filter_IN_public
		goto filter_IN_public
	}

	chain filter_IN_public {
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport @allowed_tcp accept
	}

	chain nat_PREROUTING {
		type nat hook prerouting priority dstnat + 10; policy accept;
	}
}
",
    nft_tables: &["inet firewalld"],
};

/// Every agent above.
pub const ALL: [Agent; 4] = [DOCKER, KUBELET, DISTRIBUTION, FIREWALLD];

/// Loads `agents`' rules and tables into `ns` (iptables-nft, as on the hosts they come from).
pub fn load(ns: &TestNs, agents: &[Agent]) {
    for a in agents {
        if !a.iptables.is_empty() {
            ns.exec_input("iptables-restore", &["--noflush"], a.iptables);
        }
        if !a.nft.is_empty() {
            ns.exec_input("nft", &["-f", "-"], a.nft);
        }
    }
}

/// One chain of an `iptables-save` snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Chain {
    /// `ACCEPT`/`DROP` for a built-in chain, `-` for a user chain.
    policy: String,
    /// The rule lines, in order.
    rules: Vec<String>,
}

/// What the host holds: every iptables table (counters stripped) and the fixture's nftables
/// tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// table -> chain -> chain.
    iptables: BTreeMap<String, BTreeMap<String, Chain>>,
    /// The text of `iptables-save`, counters and comment lines stripped.
    save: String,
    /// `family name` -> `nft list table` text (counters stripped).
    nft: BTreeMap<String, String>,
}

/// `iptables-save` without the counters in chain declarations and without `#` lines.
fn strip_save(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(':') {
            // ":NAME POLICY [p:b]"
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap_or("");
            let policy = parts.next().unwrap_or("");
            out.push_str(&format!("{name} {policy}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `counter packets N bytes M` becomes `counter`.
fn strip_nft_counters(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let mut kept = Vec::with_capacity(words.len());
        let mut i = 0;
        while let Some(w) = words.get(i) {
            kept.push(*w);
            let counted = *w == "counter"
                && words.get(i + 1) == Some(&"packets")
                && words.get(i + 3) == Some(&"bytes");
            i += if counted { 5 } else { 1 };
        }
        out.push_str(&kept.join(" "));
        out.push('\n');
    }
    out
}

impl HostState {
    /// Reads `ns`'s iptables tables (all of them, through the system's `iptables-save`) and
    /// the nftables tables of every agent in [`ALL`] that exist.
    pub fn read(ns: &TestNs) -> HostState {
        let save = strip_save(&ns.exec("iptables-save", &[]));
        let mut iptables: BTreeMap<String, BTreeMap<String, Chain>> = BTreeMap::new();
        let mut table = String::new();
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_owned();
                iptables.entry(table.clone()).or_default();
            } else if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                let name = parts.next().unwrap_or("").to_owned();
                let policy = parts.next().unwrap_or("").to_owned();
                iptables
                    .entry(table.clone())
                    .or_default()
                    .entry(name)
                    .or_default()
                    .policy = policy;
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or("").to_owned();
                iptables
                    .entry(table.clone())
                    .or_default()
                    .entry(chain)
                    .or_default()
                    .rules
                    .push(line.to_owned());
            }
        }
        let mut nft = BTreeMap::new();
        for t in ALL.iter().flat_map(|a| a.nft_tables) {
            let mut args = vec!["list", "table"];
            args.extend(t.split(' '));
            let out = ns.output("nft", &args);
            if out.status.success() {
                nft.insert(
                    (*t).to_owned(),
                    strip_nft_counters(&String::from_utf8_lossy(&out.stdout)),
                );
            }
        }
        HostState {
            iptables,
            save,
            nft,
        }
    }

    /// The `iptables-save` text of the snapshot (counters and comments stripped).
    pub fn iptables_save(&self) -> &str {
        &self.save
    }

    /// The user chains of `table` in this snapshot.
    pub fn chains(&self, table: &str) -> BTreeSet<String> {
        self.iptables
            .get(table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every difference that breaks what `self` (the snapshot taken right after loading the
    /// fixture) held, in `later`: a foreign chain gone, its policy changed, a rule of a user
    /// chain added, removed or changed, a foreign rule of a built-in chain gone or moved, a
    /// foreign nftables table changed; and any rule line appearing twice in a chain (ours
    /// duplicated). Rules added to built-in chains (our jumps) and chains added (ours) are
    /// allowed.
    pub fn foreign_intact(&self, later: &HostState) -> Result<(), String> {
        let mut problems = Vec::new();
        for (table, chains) in &self.iptables {
            let after = later.iptables.get(table);
            for (name, before) in chains {
                let Some(now) = after.and_then(|t| t.get(name)) else {
                    problems.push(format!("{table} chain {name} is gone"));
                    continue;
                };
                if now.policy != before.policy {
                    problems.push(format!(
                        "{table} {name}: policy {} became {}",
                        before.policy, now.policy
                    ));
                }
                if before.policy == "-" {
                    if now.rules != before.rules {
                        problems.push(format!(
                            "{table} user chain {name} changed:\n  was: {:#?}\n  now: {:#?}",
                            before.rules, now.rules
                        ));
                    }
                    continue;
                }
                // A built-in chain: the foreign rules, in their order, among others.
                let mut rest = now.rules.iter();
                for r in &before.rules {
                    if !rest.any(|n| n == r) {
                        problems.push(format!(
                            "{table} {name}: foreign rule gone or moved: {r}\n  now: {:#?}",
                            now.rules
                        ));
                        break;
                    }
                }
            }
        }
        for (table, chains) in &later.iptables {
            for (name, chain) in chains {
                let mut seen = BTreeSet::new();
                for r in &chain.rules {
                    if !seen.insert(r) {
                        problems.push(format!("{table} {name}: rule appears twice: {r}"));
                    }
                }
            }
        }
        for (t, text) in &self.nft {
            match later.nft.get(t) {
                None => problems.push(format!("nftables table {t} is gone")),
                Some(now) if now != text => problems.push(format!(
                    "nftables table {t} changed:\n--- was\n{text}--- now\n{now}"
                )),
                Some(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// `Ok` when `later` is exactly this snapshot (nothing of ours left, nothing foreign
    /// changed); else a line diff of the iptables text and the nftables tables that differ.
    pub fn same_as(&self, later: &HostState) -> Result<(), String> {
        if self == later {
            return Ok(());
        }
        let mut out = String::new();
        // Each line with its table, so that a chain of the same name in another table does
        // not hide a change.
        let with_table = |text: &str| -> Vec<String> {
            let mut table = "";
            let mut v = Vec::new();
            for l in text.lines() {
                if let Some(t) = l.strip_prefix('*') {
                    table = t;
                }
                v.push(format!("{table}: {l}"));
            }
            v
        };
        let before = with_table(&self.save);
        let after = with_table(&later.save);
        for l in &before {
            if !after.contains(l) {
                out.push_str(&format!("- {l}\n"));
            }
        }
        for l in &after {
            if !before.contains(l) {
                out.push_str(&format!("+ {l}\n"));
            }
        }
        if out.is_empty() && before != after {
            out.push_str("the iptables rules are the same but in another order\n");
        }
        for (t, text) in &self.nft {
            if later.nft.get(t) != Some(text) {
                out.push_str(&format!("nftables table {t} differs\n"));
            }
        }
        for t in later.nft.keys() {
            if !self.nft.contains_key(t) {
                out.push_str(&format!("nftables table {t} appeared\n"));
            }
        }
        Err(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_loads_and_a_change_is_seen() {
        crate::require_root!();
        let ns = TestNs::new("foreign-fixture");
        load(&ns, &ALL);
        let before = HostState::read(&ns);
        assert!(before.chains("filter").contains("DOCKER-ISOLATION-STAGE-2"));
        assert!(before.chains("mangle").contains("KUBE-IPTABLES-HINT"));
        assert!(before.iptables_save().contains(":FORWARD DROP\n"));
        assert!(before.nft["inet firewalld"].contains("@allowed_tcp"));
        assert_eq!(before.foreign_intact(&before), Ok(()));
        assert_eq!(before.same_as(&HostState::read(&ns)), Ok(()));
        // An added jump in a built-in chain is allowed, twice is not; a change to a user
        // chain or a foreign rule is not.
        ns.exec("iptables", &["-N", "OURS"]);
        ns.exec("iptables", &["-I", "INPUT", "-j", "OURS"]);
        let later = HostState::read(&ns);
        assert_eq!(before.foreign_intact(&later), Ok(()));
        assert!(before.same_as(&later).is_err());
        ns.exec("iptables", &["-I", "INPUT", "-j", "OURS"]);
        assert!(before.foreign_intact(&HostState::read(&ns)).is_err());
        ns.exec("iptables", &["-D", "INPUT", "-j", "OURS"]);
        ns.exec("iptables", &["-A", "DOCKER-USER", "-j", "RETURN"]);
        assert!(before.foreign_intact(&HostState::read(&ns)).is_err());
        ns.exec("iptables", &["-D", "DOCKER-USER", "-j", "RETURN"]);
        ns.exec("iptables", &["-D", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
        assert!(before.foreign_intact(&HostState::read(&ns)).is_err());
        ns.exec(
            "iptables",
            &["-I", "INPUT", "2", "-i", "lo", "-j", "ACCEPT"],
        );
        ns.exec(
            "nft",
            &[
                "add",
                "element",
                "inet",
                "firewalld",
                "allowed_tcp",
                "{ 8080 }",
            ],
        );
        assert!(before.foreign_intact(&HostState::read(&ns)).is_err());
    }

    #[test]
    fn counters_are_stripped() {
        assert_eq!(
            strip_save("# Generated\n*nat\n:PREROUTING ACCEPT [3:180]\n-A X -j Y\nCOMMIT\n"),
            "*nat\n:PREROUTING ACCEPT\n-A X -j Y\nCOMMIT\n"
        );
        assert_eq!(
            strip_nft_counters("\t\tip saddr 1.2.3.4 counter packets 10 bytes 600 accept"),
            "\t\tip saddr 1.2.3.4 counter accept\n"
        );
    }
}
