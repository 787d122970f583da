//! kube-proxy's ipvs mode, compiled from the service model.
//!
//! - The node-port cases of kube-proxy's own `TestNodePortIPv4` (pkg/proxy/ipvs/proxier_test.go):
//!   the virtual services, destinations and ipset entries it expects.
//! - The services of the iptables golden test (`fixtures/overall.yaml`) in ipvs mode: the
//!   complete `iptables-restore` input, `ipvsadm-save` form and ipset entries, derived line by
//!   line from kube-proxy's `syncProxyRules`/`writeIptablesRules` (kube-proxy's ipvs tests
//!   check rules one chain at a time, not as one text), plus podnet's one addition: svc2 has
//!   externalTrafficPolicy Local and no local endpoint, so `KUBE-PROXY-FIREWALL` drops new
//!   connections from outside the node to its node port, external IP and load-balancer IP
//!   (see `podnet_nat::kube_proxy::ipvs_mode`).
//! - As root: the ipsets and rules load into a namespace (`ipset restore`, `iptables-restore`).

mod common;

use common::{fake_proxier_settings, state_from_yaml};
use podnet_nat::ipvs::ipset::{self, IpSet};
use podnet_nat::ipvs::{Destination, Scheduler, ServiceFlags, ServiceId, VirtualService};
use podnet_nat::kube::{ClusterState, IpFamily};
use podnet_nat::kube_proxy::ipvs_mode::{IpvsModeSettings, IpvsRules, compile};
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use podnet_testsupport::{TestNs, require_root};
use std::collections::BTreeSet;
use std::net::SocketAddr;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn entries(rules: &IpvsRules, base: &str) -> Vec<String> {
    rules
        .ipset(base)
        .map(|s| s.entries.iter().cloned().collect())
        .unwrap_or_default()
}

/// The (virtual service, destinations) pairs, as kube-proxy's fake IPVS holds them.
fn ipvs_state(rules: &IpvsRules) -> Vec<(VirtualService, Vec<Destination>)> {
    rules
        .services
        .values()
        .map(|c| (c.service.clone(), c.destinations.clone()))
        .collect()
}

fn vs(proto: &str, addr: &str) -> VirtualService {
    let addr = sa(addr);
    VirtualService::new(match proto {
        "TCP" => ServiceId::tcp(addr),
        "UDP" => ServiceId::udp(addr),
        _ => ServiceId::sctp(addr),
    })
}

fn dests(addrs: &[&str]) -> Vec<Destination> {
    addrs.iter().map(|a| Destination::new(sa(a))).collect()
}

/// kube-proxy's fake proxier for the ipvs tests: host name `testHostname`, given node IPs.
fn node(ips: &[&str]) -> NodeSettings {
    let mut n = NodeSettings::new("testHostname", IpFamily::V4);
    n.node_ips = ips.iter().map(|s| s.parse().unwrap()).collect();
    n
}

fn node_port_service(proto: &str, local: bool) -> String {
    format!(
        "kind: Service\nmetadata: {{name: svc1, namespace: ns1}}\n\
         spec:\n  type: NodePort\n  clusterIP: 10.20.30.41\n{}  \
         ports: [{{name: p80, port: 80, protocol: {proto}, nodePort: 3001}}]\n",
        if local {
            "  externalTrafficPolicy: Local\n"
        } else {
            ""
        }
    )
}

fn slice(proto: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}\n\
         addressType: IPv4\nendpoints: {endpoints}\n\
         ports: [{{name: p80, port: 80, protocol: {proto}}}]\n"
    )
}

#[test]
fn node_port_tcp_with_endpoints() {
    // "1 service with node port, has 2 endpoints" (the IPv6 slice is another family's).
    let yaml = node_port_service("TCP", false)
        + &slice("TCP", "[{addresses: [10.180.0.1]}]")
        + "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
           metadata: {name: svc1-2, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}\n\
           addressType: IPv6\nendpoints: [{addresses: ['1002:ab8::2:10']}]\n\
           ports: [{name: p80, port: 80, protocol: TCP}]\n";
    let rules = compile(
        &state_from_yaml(&yaml),
        &node(&["100.101.102.103", "2001:db8::1:1"]),
        &IpvsModeSettings::default(),
    );
    assert_eq!(
        ipvs_state(&rules),
        vec![
            (vs("TCP", "10.20.30.41:80"), dests(&["10.180.0.1:80"])),
            (vs("TCP", "100.101.102.103:3001"), dests(&["10.180.0.1:80"])),
        ]
    );
}

#[test]
fn node_port_udp_with_endpoints() {
    let yaml = node_port_service("UDP", false) + &slice("UDP", "[{addresses: [10.180.0.1]}]");
    let mut n = node(&["100.101.102.103"]);
    n.nodeport_addresses = vec!["0.0.0.0/0".parse().unwrap()];
    let rules = compile(&state_from_yaml(&yaml), &n, &IpvsModeSettings::default());
    assert_eq!(
        ipvs_state(&rules),
        vec![
            (vs("UDP", "10.20.30.41:80"), dests(&["10.180.0.1:80"])),
            (vs("UDP", "100.101.102.103:3001"), dests(&["10.180.0.1:80"])),
        ]
    );
    assert_eq!(entries(&rules, ipset::NODE_PORT_UDP), ["3001"]);
    // expectedIptablesChains: KUBE-NODE-PORT jumps to KUBE-MARK-MASQ on KUBE-NODE-PORT-UDP (nat)
    // and accepts health-check ports (filter); KUBE-SERVICES marks cluster IPs, jumps to
    // KUBE-NODE-PORT, accepts cluster IPs.
    let nat = &rules.iptables.nat_rules;
    let pos = |needle: &str| {
        nat.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle}: {nat:#?}"))
    };
    assert!(pos("--match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ") < pos("-j KUBE-NODE-PORT"));
    assert!(
        pos("--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ") < pos("-j KUBE-NODE-PORT")
    );
    assert!(pos("-j KUBE-NODE-PORT") < pos("--match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"));
    assert!(rules.iptables.filter_rules.iter().any(|l| l
        == "-A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" \
            -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT"));
}

#[test]
fn node_port_without_endpoints_has_services_without_destinations() {
    let rules = compile(
        &state_from_yaml(&node_port_service("TCP", false)),
        &node(&["100.101.102.103"]),
        &IpvsModeSettings::default(),
    );
    assert_eq!(
        ipvs_state(&rules),
        vec![
            (vs("TCP", "10.20.30.41:80"), vec![]),
            (vs("TCP", "100.101.102.103:3001"), vec![]),
        ]
    );
}

#[test]
fn node_port_sctp_on_several_node_ips() {
    let yaml = node_port_service("SCTP", false) + &slice("SCTP", "[{addresses: [10.180.0.1]}]");
    let rules = compile(
        &state_from_yaml(&yaml),
        &node(&[
            "100.101.102.103",
            "100.101.102.104",
            "100.101.102.105",
            "2001:db8::1:1",
            "2001:db8::1:2",
            "2001:db8::1:3",
        ]),
        &IpvsModeSettings::default(),
    );
    let one = dests(&["10.180.0.1:80"]);
    assert_eq!(
        ipvs_state(&rules),
        vec![
            (vs("SCTP", "10.20.30.41:80"), one.clone()),
            (vs("SCTP", "100.101.102.103:3001"), one.clone()),
            (vs("SCTP", "100.101.102.104:3001"), one.clone()),
            (vs("SCTP", "100.101.102.105:3001"), one),
        ]
    );
    assert_eq!(
        entries(&rules, ipset::NODE_PORT_SCTP),
        [
            "100.101.102.103,sctp:3001",
            "100.101.102.104,sctp:3001",
            "100.101.102.105,sctp:3001"
        ]
    );
}

#[test]
fn node_port_sctp_with_local_traffic_policy() {
    let yaml = node_port_service("SCTP", true)
        + &slice(
            "SCTP",
            "[{addresses: [10.180.0.1], nodeName: testHostname}, \
              {addresses: [10.180.1.1], nodeName: otherHost}]",
        );
    let rules = compile(
        &state_from_yaml(&yaml),
        &node(&["100.101.102.103"]),
        &IpvsModeSettings::default(),
    );
    assert_eq!(
        ipvs_state(&rules),
        vec![
            (
                vs("SCTP", "10.20.30.41:80"),
                dests(&["10.180.0.1:80", "10.180.1.1:80"])
            ),
            (
                vs("SCTP", "100.101.102.103:3001"),
                dests(&["10.180.0.1:80"])
            ),
        ]
    );
    assert_eq!(
        entries(&rules, ipset::NODE_PORT_SCTP),
        ["100.101.102.103,sctp:3001"]
    );
    assert_eq!(
        entries(&rules, ipset::NODE_PORT_LOCAL_SCTP),
        ["100.101.102.103,sctp:3001"]
    );
    let nat = rules.iptables.render();
    let ret = nat
        .find("--match-set KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN")
        .unwrap();
    let masq = nat
        .find("--match-set KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ")
        .unwrap();
    assert!(
        ret < masq,
        "local node ports return before the masquerade mark"
    );
    // The local endpoint hairpins.
    assert_eq!(
        entries(&rules, ipset::LOOP_BACK),
        ["10.180.0.1,sctp:80,10.180.0.1"]
    );
}

const OVERALL_IPTABLES: &str = r#"*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "Kubernetes service lb portal" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER
-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port with externalTrafficPolicy=local" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL
-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-PROXY-FIREWALL -m comment --comment "ns2/svc2:p80 has no local endpoints" -m conntrack --ctstate NEW ! -s 10.0.0.0/8 -m addrtype ! --src-type LOCAL -d 192.168.99.22/32 -p tcp -m tcp --dport 80 -j DROP
-A KUBE-PROXY-FIREWALL -m comment --comment "ns2/svc2:p80 has no local endpoints" -m conntrack --ctstate NEW ! -s 10.0.0.0/8 -m addrtype ! --src-type LOCAL -d 1.2.3.4/32 -p tcp -m tcp --dport 80 -j DROP
-A KUBE-PROXY-FIREWALL -m comment --comment "ns2/svc2:p80 has no local endpoints" -m conntrack --ctstate NEW ! -s 10.0.0.0/8 -m addrtype ! --src-type LOCAL -d 192.168.0.2/32 -p tcp -m tcp --dport 3001 -j DROP
-A KUBE-IPVS-OUT-FILTER -s 5.6.7.8 -m ipvs --vaddr 5.6.7.8 --vproto tcp --vport 80 -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
"#;

const OVERALL_IPVS: &str = "\
-A -t 1.2.3.4:80 -s rr
-a -t 1.2.3.4:80 -r 10.180.0.2:80 -m -w 1
-A -t 5.6.7.8:80 -s rr -p 10800
-a -t 5.6.7.8:80 -r 10.180.0.3:80 -m -w 1
-A -t 172.30.0.41:80 -s rr
-a -t 172.30.0.41:80 -r 10.180.0.1:80 -m -w 1
-A -t 172.30.0.42:80 -s rr
-a -t 172.30.0.42:80 -r 10.180.0.2:80 -m -w 1
-A -t 172.30.0.43:80 -s rr
-a -t 172.30.0.43:80 -r 10.180.0.3:80 -m -w 1
-A -t 172.30.0.44:80 -s rr
-a -t 172.30.0.44:80 -r 10.180.0.4:80 -m -w 1
-a -t 172.30.0.44:80 -r 10.180.0.5:80 -m -w 1
-A -t 172.30.0.45:80 -s rr -p 10800
-a -t 172.30.0.45:80 -r 10.180.0.3:80 -m -w 1
-A -t 172.30.0.46:80 -s rr
-A -t 192.168.0.2:3001 -s rr
-a -t 192.168.0.2:3001 -r 10.180.0.2:80 -m -w 1
-A -t 192.168.0.2:3002 -s rr -p 10800
-a -t 192.168.0.2:3002 -r 10.180.0.3:80 -m -w 1
-A -t 192.168.0.2:3003 -s rr
-a -t 192.168.0.2:3003 -r 10.180.0.3:80 -m -w 1
-A -t 192.168.99.22:80 -s rr
-a -t 192.168.99.22:80 -r 10.180.0.2:80 -m -w 1
-A -t 192.168.99.33:80 -s rr
-a -t 192.168.99.33:80 -r 10.180.0.4:80 -m -w 1
-a -t 192.168.99.33:80 -r 10.180.0.5:80 -m -w 1
";

fn overall() -> ClusterState {
    state_from_yaml(include_str!("fixtures/overall.yaml"))
}

#[test]
fn overall_services_in_ipvs_mode() {
    let rules = compile(
        &overall(),
        &fake_proxier_settings(),
        &IpvsModeSettings::default(),
    );
    let text = rules.iptables.render();
    for (i, (got, want)) in text.lines().zip(OVERALL_IPTABLES.lines()).enumerate() {
        assert_eq!(got, want, "iptables line {}", i + 1);
    }
    assert_eq!(text, OVERALL_IPTABLES);
    assert_eq!(rules.render_ipvs(), OVERALL_IPVS);

    let set = |base| entries(&rules, base);
    assert_eq!(
        set(ipset::CLUSTER_IP),
        [
            "172.30.0.41,tcp:80",
            "172.30.0.42,tcp:80",
            "172.30.0.43,tcp:80",
            "172.30.0.44,tcp:80",
            "172.30.0.45,tcp:80",
            "172.30.0.46,tcp:80"
        ]
    );
    assert_eq!(set(ipset::LOOP_BACK), ["10.180.0.5,tcp:80,10.180.0.5"]);
    assert_eq!(set(ipset::EXTERNAL_IP), ["192.168.99.33,tcp:80"]);
    assert_eq!(set(ipset::EXTERNAL_IP_LOCAL), ["192.168.99.22,tcp:80"]);
    assert_eq!(
        set(ipset::LOAD_BALANCER),
        ["1.2.3.4,tcp:80", "5.6.7.8,tcp:80"]
    );
    assert_eq!(set(ipset::LOAD_BALANCER_LOCAL), ["1.2.3.4,tcp:80"]);
    assert_eq!(set(ipset::LOAD_BALANCER_FW), ["5.6.7.8,tcp:80"]);
    assert_eq!(
        set(ipset::LOAD_BALANCER_SOURCE_CIDR),
        ["5.6.7.8,tcp:80,203.0.113.0/25"]
    );
    assert!(set(ipset::LOAD_BALANCER_SOURCE_IP).is_empty());
    assert_eq!(set(ipset::NODE_PORT_TCP), ["3001", "3002", "3003"]);
    assert_eq!(set(ipset::NODE_PORT_LOCAL_TCP), ["3001"]);
    assert_eq!(set(ipset::HEALTH_CHECK_NODE_PORT), ["30000"]);
    let bound: BTreeSet<String> = rules.bind_addrs.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        set(ipset::IPVS_IPS),
        bound.iter().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        bound,
        [
            "1.2.3.4",
            "172.30.0.41",
            "172.30.0.42",
            "172.30.0.43",
            "172.30.0.44",
            "172.30.0.45",
            "172.30.0.46",
            "192.168.99.22",
            "192.168.99.33",
            "5.6.7.8"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(rules.ipsets.len(), ipset::SETS.len());
}

#[test]
fn source_range_covering_the_node_lets_the_node_in() {
    let yaml = "kind: Service\nmetadata: {name: lb, namespace: ns}\n\
                spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.20\n  \
                loadBalancerSourceRanges: [192.168.0.0/16]\n  \
                ports: [{name: p, port: 443, protocol: TCP, nodePort: 30443}]\n\
                status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}\n";
    let rules = compile(
        &state_from_yaml(yaml),
        &fake_proxier_settings(),
        &IpvsModeSettings::default(),
    );
    assert_eq!(
        entries(&rules, ipset::LOAD_BALANCER_SOURCE_IP),
        ["203.0.113.9,tcp:443,203.0.113.9"]
    );
    assert!(!rules.iptables.render().contains("-m ipvs"));
}

#[test]
fn scheduler_masquerade_all_and_detectors() {
    let state = overall();
    let mut n = fake_proxier_settings();
    n.masquerade_all = true;
    n.masquerade_random_fully = true;
    let mh = IpvsModeSettings {
        scheduler: Scheduler::MaglevHashing,
        ..IpvsModeSettings::default()
    };
    let rules = compile(&state, &n, &mh);
    let text = rules.iptables.render();
    assert!(text.contains("--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"));
    assert!(text.contains("-j MASQUERADE --random-fully\n"));
    let svc = &rules.services[&ServiceId::tcp(sa("172.30.0.41:80"))].service;
    assert_eq!(svc.scheduler, Scheduler::MaglevHashing);
    assert!(svc.flags.contains(ServiceFlags::SCHED2));
    assert!(
        rules
            .render_ipvs()
            .contains("-A -t 172.30.0.41:80 -s mh -b mh-port\n")
    );

    n.masquerade_all = false;
    n.local_detector = LocalDetector::InterfaceNamePrefix("veth".into());
    let text = compile(&state, &n, &IpvsModeSettings::default())
        .iptables
        .render();
    assert!(text.contains("KUBE-CLUSTER-IP dst,dst ! -i veth+ -j KUBE-MARK-MASQ\n"));
}

#[test]
fn ipv6_sets_and_rules() {
    let yaml = "kind: Service\nmetadata: {name: v6, namespace: ns}\n\
                spec:\n  type: NodePort\n  clusterIP: fd00:10:96::a\n  ipFamilies: [IPv6]\n  \
                ports: [{name: p, port: 80, protocol: TCP, nodePort: 30080}]\n\
                ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                metadata: {name: v6-1, namespace: ns, labels: {kubernetes.io/service-name: v6}}\n\
                addressType: IPv6\nendpoints: [{addresses: ['fd00:244::2']}]\n\
                ports: [{name: p, port: 8080, protocol: TCP}]\n";
    let (objects, w) = podnet_nat::kube::parse_objects(yaml, "v6");
    assert!(w.is_empty(), "{w:?}");
    let (state, w) = ClusterState::from_objects(&objects, IpFamily::V6);
    assert!(w.is_empty(), "{w:?}");
    let mut n = NodeSettings::new("n", IpFamily::V6);
    n.node_ips = vec!["fd00:1::2".parse().unwrap(), "::1".parse().unwrap()];
    let rules = compile(&state, &n, &IpvsModeSettings::default());
    assert_eq!(
        rules.render_ipvs(),
        "-A -t [fd00:1::2]:30080 -s rr\n-a -t [fd00:1::2]:30080 -r [fd00:244::2]:8080 -m -w 1\n\
         -A -t [fd00:10:96::a]:80 -s rr\n-a -t [fd00:10:96::a]:80 -r [fd00:244::2]:8080 -m -w 1\n"
    );
    let cluster: &IpSet = rules.ipset(ipset::CLUSTER_IP).unwrap();
    assert_eq!(cluster.name, "KUBE-6-CLUSTER-IP");
    assert!(cluster.entries.contains("fd00:10:96::a,tcp:80"));
    let text = rules.iptables.render();
    assert!(text.contains("-A KUBE-SERVICES -s ::1/128 -j RETURN\n"));
    assert!(text.contains("--match-set KUBE-6-IPVS-IPS dst -j REJECT\n"));
    assert!(
        rules
            .render_ipsets()
            .contains("create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535\n")
    );
}

/// The ipsets and rules of ipvs mode load into a namespace, twice (the second time replacing
/// the first), and iptables-save reads the rules back.
#[test]
fn ipsets_and_rules_load_into_a_namespace() {
    require_root!();
    let mut state = overall();
    // This kernel has no IPVS, hence no `-m ipvs` match: leave out the service whose source
    // ranges exclude the node (the VM test loads that rule).
    state.services.retain(|k, _| &*k.service.namespace != "ns5");
    state
        .endpoints
        .retain(|k, _| &*k.service.namespace != "ns5");
    let rules = compile(
        &state,
        &fake_proxier_settings(),
        &IpvsModeSettings::default(),
    );
    let ns = TestNs::new("ipvs-rules");
    for _ in 0..2 {
        podnet_nat::kube_proxy::iptables_sync::run_with_input(
            &ns,
            "ipset",
            &["-exist", "restore"],
            rules.render_ipsets().as_bytes(),
        )
        .unwrap();
        podnet_nat::kube_proxy::iptables_sync::run_with_input(
            &ns,
            "iptables-restore",
            &["--noflush", "--counters"],
            rules.iptables.render().as_bytes(),
        )
        .unwrap();
    }
    let list = ns.exec("ipset", &["list", "KUBE-CLUSTER-IP"]);
    assert!(list.contains("172.30.0.41,tcp:80"), "{list}");
    assert!(!list.contains("172.30.0.45"), "{list}");
    let names = ns.exec("ipset", &["list", "-n"]);
    assert_eq!(
        names.lines().count(),
        ipset::SETS.len(),
        "no scratch set left: {names}"
    );
    let saved = ns.exec("iptables-save", &[]);
    for line in [
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
        "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT",
        "-A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ",
    ] {
        assert!(saved.contains(line), "iptables-save lacks {line}:\n{saved}");
    }
}
