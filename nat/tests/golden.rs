//! Golden tests: the compiled rules equal kube-proxy's expected output from its own unit tests
//! (pkg/proxy/iptables/proxier_test.go), compared after kube-proxy's own sort.

mod common;

use common::*;
use podnet_nat::kube_proxy::iptables_mode::compile;
use podnet_nat::kube_proxy::iptables_sync::{Applied, plan};

#[test]
fn overall_iptables_rules() {
    let state = state_from_yaml(include_str!("fixtures/overall.yaml"));
    let rules = compile(&state, &fake_proxier_settings()).render();
    assert_rules_eq(include_str!("fixtures/overall.expected"), &rules);
}

/// A ClusterIP service with one TCP port and, optionally, its endpoints.
fn svc(ns: &str, name: &str, ip: &str, port_name: &str, port: u16, eps: &[&str]) -> String {
    let mut y = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  clusterIP: {ip}\n  ports:\n  - {{name: {port_name}, port: {port}, protocol: TCP}}\n"
    );
    if !eps.is_empty() {
        y.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports:\n- {{name: {port_name}, port: {port}, protocol: TCP}}\nendpoints:\n"
        ));
        for e in eps {
            y.push_str(&format!("- addresses: [{e}]\n"));
        }
    }
    y
}

const FILTER_NO_SERVICES: &str = r#"*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"#;

const NAT_TAIL: &str = r#"-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
"#;

/// The KUBE-SERVICES jump of svc1 to svc4 of [`repeated_partial_syncs`].
const JUMPS: [&str; 4] = [
    r#"-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
"#,
    r#"-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
"#,
    r#"-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
"#,
    r#"-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
"#,
];

/// What one sync of [`repeated_partial_syncs`] writes, in kube-proxy's order: the filter
/// table, then the nat table's top-level chains, the chains it writes, the KUBE-SERVICES
/// jumps, the fixed tail, and the rules and deletions of the chains it writes.
struct Expected<'a> {
    filter: &'a str,
    chains: &'a str,
    /// The services (1 to 4) whose jump is written.
    jumps: &'a [usize],
    rules: &'a str,
}

impl Expected<'_> {
    fn text(&self) -> String {
        let nat_head = ":KUBE-NODEPORTS - [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n";
        let jumps: String = self.jumps.iter().map(|&n| JUMPS[n - 1]).collect();
        format!(
            "{}*nat\n{nat_head}{}{jumps}{NAT_TAIL}{}COMMIT\n",
            self.filter, self.chains, self.rules
        )
    }
}

/// One sync of [`repeated_partial_syncs`]: plans the Services of `yaml` after `applied` (a
/// full sync when `full`), checks the restore input, and returns what the sync applied.
fn partial_sync(applied: Option<&Applied>, full: bool, yaml: &str, want: Expected<'_>) -> Applied {
    let compiled = compile(&state_from_yaml(yaml), &fake_proxier_settings());
    let p = plan(applied, full, compiled, &Default::default());
    assert_rules_eq(&want.text(), &p.input);
    p.into_applied()
}

/// kube-proxy's TestSyncProxyRulesRepeated: the partial syncs (KEP-3453) write exactly the
/// chains kube-proxy writes.
#[test]
fn repeated_partial_syncs() {
    let svc1 = svc("ns1", "svc1", "172.30.0.41", "p80", 80, &["10.0.1.1"]);
    let applied = services_come_and_go(&svc1);
    endpoints_come_and_go(&svc1, &applied);
}

/// The first syncs of [`repeated_partial_syncs`]: Services added and deleted.
fn services_come_and_go(svc1: &str) -> Applied {
    let svc2 = svc("ns2", "svc2", "172.30.0.42", "p8080", 8080, &["10.0.2.1"]);

    // Initial full sync.
    let applied = partial_sync(
        None,
        true,
        &(svc1.to_owned() + &svc2),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
:KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
:KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
"#,
            jumps: &[1, 2],
            rules: r#"-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
"#,
        },
    );

    let svc3 = svc("ns3", "svc3", "172.30.0.43", "p80", 80, &["10.0.3.1"]);
    // Add svc3 with an endpoint: only its chains are written.
    let applied = partial_sync(
        Some(&applied),
        false,
        &(svc1.to_owned() + &svc2 + &svc3),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-BSWRHOQ77KEXZLNL - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
"#,
            jumps: &[1, 2, 3],
            rules: r#"-A KUBE-SEP-BSWRHOQ77KEXZLNL -m comment --comment ns3/svc3:p80 -s 10.0.3.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-BSWRHOQ77KEXZLNL -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.1:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.1:80" -j KUBE-SEP-BSWRHOQ77KEXZLNL
"#,
        },
    );

    // Delete svc2: its chains are flushed and deleted; nothing else is rewritten.
    let applied = partial_sync(
        Some(&applied),
        false,
        &(svc1.to_owned() + &svc3),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
:KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
"#,
            jumps: &[1, 3],
            rules: r#"-X KUBE-SEP-UHEGFW77JX3KXTOV
-X KUBE-SVC-2VJB64SDSIJUP5T6
"#,
        },
    );

    let svc4_bare = svc("ns4", "svc4", "172.30.0.44", "p80", 80, &[]);
    let reject = "-A KUBE-SERVICES -m comment --comment \"ns4/svc4:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT\n";
    let filter_with_reject =
        FILTER_NO_SERVICES.replacen("-A KUBE-FIREWALL", &format!("{reject}-A KUBE-FIREWALL"), 1);
    // Add svc4 without endpoints: only a REJECT rule.
    partial_sync(
        Some(&applied),
        false,
        &(svc1.to_owned() + &svc3 + &svc4_bare),
        Expected {
            filter: &filter_with_reject,
            chains: "",
            jumps: &[1, 3],
            rules: "",
        },
    )
}

/// The last syncs of [`repeated_partial_syncs`]: endpoints added, changed and emptied.
fn endpoints_come_and_go(svc1: &str, applied: &Applied) {
    let svc3 = svc("ns3", "svc3", "172.30.0.43", "p80", 80, &["10.0.3.1"]);
    let svc4 = svc("ns4", "svc4", "172.30.0.44", "p80", 80, &["10.0.4.1"]);

    // svc4's endpoints arrive.
    let applied = partial_sync(
        Some(applied),
        false,
        &(svc1.to_owned() + &svc3 + &svc4),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-AYCN5HPXMIRJNJXU - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
"#,
            jumps: &[1, 3, 4],
            rules: r#"-A KUBE-SEP-AYCN5HPXMIRJNJXU -m comment --comment ns4/svc4:p80 -s 10.0.4.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-AYCN5HPXMIRJNJXU -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.4.1:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.0.4.1:80" -j KUBE-SEP-AYCN5HPXMIRJNJXU
"#,
        },
    );

    let svc3b = svc("ns3", "svc3", "172.30.0.43", "p80", 80, &["10.0.3.2"]);
    // svc3's endpoint changes: its SVC and SEP chains are rewritten, the old SEP deleted.
    let applied = partial_sync(
        Some(&applied),
        false,
        &(svc1.to_owned() + &svc3b + &svc4),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-BSWRHOQ77KEXZLNL - [0:0]
:KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
"#,
            jumps: &[1, 3, 4],
            rules: r#"-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -j KUBE-SEP-DKCFIS26GWF2WLWC
-X KUBE-SEP-BSWRHOQ77KEXZLNL
"#,
        },
    );

    let svc3c = svc(
        "ns3",
        "svc3",
        "172.30.0.43",
        "p80",
        80,
        &["10.0.3.2", "10.0.3.3"],
    );
    let all = svc1.to_owned() + &svc3c + &svc4;
    // Another endpoint for svc3.
    let applied = partial_sync(
        Some(&applied),
        false,
        &all,
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]
:KUBE-SEP-JVVZVJ7BSEPPRNBS - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
"#,
            jumps: &[1, 3, 4],
            rules: r#"-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -s 10.0.3.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.3:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-DKCFIS26GWF2WLWC
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.3:80" -j KUBE-SEP-JVVZVJ7BSEPPRNBS
"#,
        },
    );

    // No change: only the top-level chains.
    partial_sync(
        Some(&applied),
        false,
        &all,
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: "",
            jumps: &[1, 3, 4],
            rules: "",
        },
    );

    // svc4 deleted after a failed partial sync: the full sync rewrites everything and deletes
    // svc4's chains.
    partial_sync(
        Some(&applied),
        true,
        &(svc1.to_owned() + &svc3c),
        Expected {
            filter: FILTER_NO_SERVICES,
            chains: r#":KUBE-SEP-AYCN5HPXMIRJNJXU - [0:0]
:KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]
:KUBE-SEP-JVVZVJ7BSEPPRNBS - [0:0]
:KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
"#,
            jumps: &[1, 3],
            rules: r#"-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -s 10.0.3.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.3:80
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-DKCFIS26GWF2WLWC
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.3:80" -j KUBE-SEP-JVVZVJ7BSEPPRNBS
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
-X KUBE-SEP-AYCN5HPXMIRJNJXU
-X KUBE-SVC-4SW47YFZTEDKD3PK
"#,
        },
    );
}

/// kube-proxy's TestBadIPs: IPs and CIDRs with leading zeros are written in canonical form.
#[test]
fn bad_ips_are_canonicalised() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.041
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
  externalIPs: [192.168.099.022]
  loadBalancerSourceRanges: [203.0.113.000/025]
status:
  loadBalancer:
    ingress: [{ip: 1.2.3.004}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.00.001]}]
ports: [{name: p80, port: 80, protocol: TCP}]
"#;
    let expected = r#"*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-FW-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"#;
    let rules = compile(&state_from_yaml(yaml), &fake_proxier_settings()).render();
    assert_rules_eq(expected, &rules);
}

/// kube-proxy's TestMasqueradeRule and TestDropInvalidRule variants.
#[test]
fn masquerade_and_invalid_rules() {
    let state = state_from_yaml("");
    let mut s = fake_proxier_settings();
    s.masquerade_random_fully = true;
    s.nfacct_counters = false;
    let text = compile(&state, &s).render();
    assert!(text.contains("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"));
    assert!(text.contains("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"));
    s.conntrack_tcp_liberal = true;
    assert!(!compile(&state, &s).render().contains("INVALID"));
}

/// The minimal partial mode writes only what changed: an endpoint change touches just that
/// Service's chains, with no filter table and no top-level chain.
#[test]
fn minimal_partial_sync_writes_only_the_changed_service() {
    use podnet_nat::kube_proxy::iptables_sync::{PartialMode, plan, plan_with};
    let settings = fake_proxier_settings();
    let a = svc("ns1", "svc1", "172.30.0.41", "p80", 80, &["10.0.1.1"]);
    let b = svc("ns3", "svc3", "172.30.0.43", "p80", 80, &["10.0.3.1"]);
    let applied = plan(
        None,
        true,
        compile(&state_from_yaml(&(a.clone() + &b)), &settings),
        &Default::default(),
    )
    .into_applied();
    let b2 = svc("ns3", "svc3", "172.30.0.43", "p80", 80, &["10.0.3.2"]);
    let p = plan_with(
        PartialMode::Minimal,
        Some(&applied),
        false,
        compile(&state_from_yaml(&(a.clone() + &b2)), &settings),
        &Default::default(),
    );
    assert_eq!(
        p.input,
        "*nat\n\
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]\n\
:KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]\n\
:KUBE-SEP-BSWRHOQ77KEXZLNL - [0:0]\n\
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment \"ns3/svc3:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n\
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment \"ns3/svc3:p80 -> 10.0.3.2:80\" -j KUBE-SEP-DKCFIS26GWF2WLWC\n\
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ\n\
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80\n\
-X KUBE-SEP-BSWRHOQ77KEXZLNL\n\
COMMIT\n"
    );
    // Removing a Service rewrites KUBE-SERVICES (its rule goes) and deletes its chains.
    let p = plan_with(
        PartialMode::Minimal,
        Some(&applied),
        false,
        compile(&state_from_yaml(&a), &settings),
        &Default::default(),
    );
    assert!(!p.input.contains("*filter"));
    assert!(
        p.input.contains(":KUBE-SERVICES - [0:0]\n")
            && p.input.contains("-X KUBE-SVC-X27LE4BHSL4DOUIK\n"),
        "{}",
        p.input
    );
}
