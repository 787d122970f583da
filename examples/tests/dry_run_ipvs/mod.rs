//! The cases of `ipvs_dry_run_matches_kube_proxys_expectations`: what kube-proxy's ipvs
//! unit tests (pkg/proxy/ipvs/proxier_test.go) state about the state after `syncProxyRules`,
//! each with the objects and flags that reproduce it.

use std::collections::BTreeSet;

/// A virtual service as kube-proxy's fake IPVS holds it (`utilipvs.VirtualServer` keyed by
/// `ipvstest.ServiceKey`) with its real servers (address:port, all with weight 1).
pub(crate) struct Vs {
    pub(crate) proto: &'static str,
    pub(crate) addr: &'static str,
    /// Session affinity timeout (`Flags: FlagPersistent, Timeout: ...`).
    pub(crate) persistent: Option<u32>,
    pub(crate) rs: &'static [&'static str],
}

const fn vs(proto: &'static str, addr: &'static str, rs: &'static [&'static str]) -> Vs {
    Vs {
        proto,
        addr,
        persistent: None,
        rs,
    }
}

/// kube-proxy's fake VirtualServer in `ipvsadm-save -n` form, what the binary prints: the
/// protocol as ipvsadm's service option, scheduler `rr` (the fake's `defaultScheduler`, the
/// binary's default `--ipvs-scheduler`), persistence as `-p`, real servers with the kernel's
/// default forwarding method (masquerading, `-m`; kube-proxy sets none) and weight 1.
fn ipvsadm_id(proto: &str, addr: &str) -> String {
    let flag = match proto {
        "TCP" => "-t",
        "UDP" => "-u",
        "SCTP" => "--sctp-service",
        _ => panic!("{proto}"),
    };
    format!("{flag} {addr}")
}

impl Vs {
    /// Its id, and its service line with its real-server lines.
    pub(crate) fn lines(&self) -> (String, (String, BTreeSet<String>)) {
        let id = ipvsadm_id(self.proto, self.addr);
        let mut head = format!("-A {id} -s rr");
        if let Some(t) = self.persistent {
            head.push_str(&format!(" -p {t}"));
        }
        let rs = self
            .rs
            .iter()
            .map(|r| format!("-a {id} -r {r} -m -w 1"))
            .collect();
        (id, (head, rs))
    }
}

/// One thing a kube-proxy ipvs test states about the state after `syncProxyRules`.
pub(crate) enum Expect {
    /// `reflect.DeepEqual(ipvs, test.expectedIPVS)`: exactly these virtual services and real
    /// servers.
    Ipvs(Vec<Vs>),
    /// `checkIPVS`: this many virtual services; the given one (when it exists, as in
    /// kube-proxy's check) has exactly these real servers.
    CheckIpvs(usize, Option<Vs>),
    /// Every virtual service is persistent with this timeout (TestSessionAffinity).
    AllPersistent(u32),
    /// `checkIPSet`: the set holds exactly these entries (`utilipset.Entry.String()`).
    IpSet(&'static str, &'static [&'static str]),
    /// `checkIptables`/`hasJump`: the chain (in any table) has a rule jumping to the target,
    /// matching the set when one is named; or with `-s` when the "set" is an address.
    Jump(&'static str, &'static str, &'static str),
    /// The chains declared in the `iptables-restore` input, per table, in order
    /// (TestCreateAndLinkKubeChain).
    Chains(&'static str, &'static [&'static str]),
    /// The addresses bound to kube-ipvs0 (`netlinkHandle.ListBindAddress`).
    Bound(&'static [&'static str]),
}

/// One kube-proxy ipvs test.
pub(crate) struct IpvsCase {
    /// kube-proxy's test (and sub-test).
    pub(crate) name: &'static str,
    /// Its Services and EndpointSlices, as `kubectl get -o yaml` prints them.
    pub(crate) objects: &'static str,
    /// The fake proxier's node, as flags (see `ipvs_dry_run_matches_kube_proxys_expectations`).
    pub(crate) flags: &'static [&'static str],
    /// What it states.
    pub(crate) expect: Vec<Expect>,
}

/// No usable node address: kube-proxy's fake netlink handle has none (`nodeIPs` nil), the
/// binary would read the host's `eth*` addresses without `--node-ip`; a loopback address is
/// never a node-port address, in kube-proxy (`GetAllLocalAddresses` skips loopback) as in
/// podnet.
const NO_NODE_IPS: &[&str] = &["--node-ip", "127.0.0.1"];

const SVC1_NODEPORT_TCP: &str = "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
";

/// TestIPv4Proxier, TestNodePortIPv4.
fn cases_1() -> Vec<IpvsCase> {
    use Expect::*;
    vec![
        IpvsCase {
            name: "TestIPv4Proxier/2 services with Cluster IP, each with endpoints",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: TCP}]
---
kind: Service
apiVersion: v1
metadata: {name: svc2, namespace: ns2}
spec:
  clusterIP: 1002:ab8::2:1
  ports: [{name: p8080, port: 8080, protocol: TCP}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: TCP}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc2-1, namespace: ns2, labels: {kubernetes.io/service-name: svc2}}
addressType: IPv6
endpoints: [{addresses: ['1009:ab8::5:6']}]
ports: [{name: p8080, port: 8080, protocol: TCP}]
",
            flags: NO_NODE_IPS,
            expect: vec![Ipvs(vec![vs("TCP", "10.20.30.41:80", &["10.180.0.1:80"])])],
        },
        IpvsCase {
            name: "TestIPv4Proxier/cluster IP service with no endpoints",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: TCP}]
",
            flags: NO_NODE_IPS,
            expect: vec![Ipvs(vec![vs("TCP", "10.20.30.41:80", &[])])],
        },
        IpvsCase {
            name: "TestNodePortIPv4/1 service with node port, has 2 endpoints",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: TCP}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-2, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv6
endpoints: [{addresses: ['1002:ab8::2:10']}]
ports: [{name: p80, port: 80, protocol: TCP}]
",
            flags: &["--node-ip", "100.101.102.103,2001:db8::1:1"],
            expect: vec![Ipvs(vec![
                vs("TCP", "10.20.30.41:80", &["10.180.0.1:80"]),
                vs("TCP", "100.101.102.103:3001", &["10.180.0.1:80"]),
            ])],
        },
        IpvsCase {
            name: "TestNodePortIPv4/1 UDP service with node port, has endpoints",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: UDP, nodePort: 3001}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: UDP}]
",
            flags: &[
                "--node-ip",
                "100.101.102.103",
                "--nodeport-addresses",
                "0.0.0.0/0",
            ],
            expect: vec![
                Ipvs(vec![
                    vs("UDP", "10.20.30.41:80", &["10.180.0.1:80"]),
                    vs("UDP", "100.101.102.103:3001", &["10.180.0.1:80"]),
                ]),
                IpSet("KUBE-NODE-PORT-UDP", &["3001"]),
                Jump("KUBE-NODE-PORT", "KUBE-MARK-MASQ", "KUBE-NODE-PORT-UDP"),
                Jump("KUBE-NODE-PORT", "ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
                Jump("KUBE-SERVICES", "RETURN", "127.0.0.0/8"),
                Jump("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "KUBE-NODE-PORT", ""),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-CLUSTER-IP"),
            ],
        },
        IpvsCase {
            name: "TestNodePortIPv4/service has node port but no endpoints",
            objects: SVC1_NODEPORT_TCP,
            flags: &["--node-ip", "100.101.102.103"],
            expect: vec![Ipvs(vec![
                vs("TCP", "10.20.30.41:80", &[]),
                vs("TCP", "100.101.102.103:3001", &[]),
            ])],
        },
    ]
}

/// TestNodePortIPv4, TestExternalIPsNoEndpoint, TestExternalIPs.
fn cases_2() -> Vec<IpvsCase> {
    use Expect::*;
    vec![
        IpvsCase {
            name: "TestNodePortIPv4/node port service with protocol sctp on a node with multiple nodeIPs",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: SCTP, nodePort: 3001}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: SCTP}]
",
            flags: &[
                "--node-ip",
                "100.101.102.103,100.101.102.104,100.101.102.105,2001:db8::1:1,2001:db8::1:2,2001:db8::1:3",
            ],
            expect: vec![
                Ipvs(vec![
                    vs("SCTP", "10.20.30.41:80", &["10.180.0.1:80"]),
                    vs("SCTP", "100.101.102.103:3001", &["10.180.0.1:80"]),
                    vs("SCTP", "100.101.102.104:3001", &["10.180.0.1:80"]),
                    vs("SCTP", "100.101.102.105:3001", &["10.180.0.1:80"]),
                ]),
                IpSet(
                    "KUBE-NODE-PORT-SCTP-HASH",
                    &[
                        "100.101.102.103,sctp:3001",
                        "100.101.102.104,sctp:3001",
                        "100.101.102.105,sctp:3001",
                    ],
                ),
            ],
        },
        IpvsCase {
            name: "TestNodePortIPv4/node port service with protocol sctp and externalTrafficPolicy local",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{name: p80, port: 80, protocol: SCTP, nodePort: 3001}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.1], nodeName: test-node}
- {addresses: [10.180.1.1], nodeName: other-node}
ports: [{name: p80, port: 80, protocol: SCTP}]
",
            flags: &["--node-ip", "100.101.102.103"],
            expect: vec![
                Ipvs(vec![
                    vs(
                        "SCTP",
                        "10.20.30.41:80",
                        &["10.180.0.1:80", "10.180.1.1:80"],
                    ),
                    vs("SCTP", "100.101.102.103:3001", &["10.180.0.1:80"]),
                ]),
                IpSet("KUBE-NODE-PORT-SCTP-HASH", &["100.101.102.103,sctp:3001"]),
                IpSet(
                    "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
                    &["100.101.102.103,sctp:3001"],
                ),
                Jump("KUBE-NODE-PORT", "RETURN", "KUBE-NODE-PORT-LOCAL-SCTP-HASH"),
                Jump(
                    "KUBE-NODE-PORT",
                    "KUBE-MARK-MASQ",
                    "KUBE-NODE-PORT-SCTP-HASH",
                ),
                Jump("KUBE-NODE-PORT", "ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
            ],
        },
        IpvsCase {
            name: "TestExternalIPsNoEndpoint",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: ClusterIP
  clusterIP: 10.20.30.41
  externalIPs: [50.60.70.81]
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 80}]
",
            flags: NO_NODE_IPS,
            expect: vec![CheckIpvs(2, Some(vs("TCP", "50.60.70.81:80", &[])))],
        },
        IpvsCase {
            // The slice's port is UDP, the Service's TCP: no endpoints for it.
            name: "TestExternalIPs",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: ClusterIP
  clusterIP: 10.20.30.41
  externalIPs: [50.60.70.81, '2012::51', 127.0.0.1]
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 80}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: UDP}]
",
            flags: NO_NODE_IPS,
            expect: vec![
                // "ipvs filters out by ipfamily": the cluster IP and the two IPv4 external IPs.
                CheckIpvs(3, Some(vs("TCP", "50.60.70.81:80", &[]))),
                CheckIpvs(3, Some(vs("TCP", "127.0.0.1:80", &[]))),
            ],
        },
    ]
}

/// TestOnlyLocalExternalIPs, TestLoadBalancer, TestOnlyLocalNodePorts.
fn cases_3() -> Vec<IpvsCase> {
    use Expect::*;
    vec![
        IpvsCase {
            name: "TestOnlyLocalExternalIPs",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalIPs: [50.60.70.81, '2012::51', 127.0.0.1]
  externalTrafficPolicy: Local
  ports: [{name: p80, port: 80, protocol: TCP, targetPort: 80}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.1], nodeName: test-node}
- {addresses: [10.180.1.1], nodeName: other-node}
ports: [{name: p80, port: 80, protocol: TCP}]
",
            flags: NO_NODE_IPS,
            expect: vec![
                // Only the local endpoint behind an external IP (kube-proxy checks whichever
                // external-IP virtual service its map yields first: both must pass).
                CheckIpvs(3, Some(vs("TCP", "50.60.70.81:80", &["10.180.0.1:80"]))),
                CheckIpvs(3, Some(vs("TCP", "127.0.0.1:80", &["10.180.0.1:80"]))),
            ],
        },
        IpvsCase {
            // The slice's port is UDP, the Service's TCP: no endpoints for it. kube-proxy's
            // checkIPVS looks for the node port on the LB IP, finds no such virtual service
            // and checks only the count.
            name: "TestLoadBalancer",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: UDP}]
",
            flags: NO_NODE_IPS,
            expect: vec![
                CheckIpvs(2, None),
                IpSet("KUBE-LOAD-BALANCER", &["1.2.3.4,tcp:80"]),
                Jump("KUBE-SERVICES", "RETURN", "127.0.0.0/8"),
                Jump("KUBE-SERVICES", "KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
                Jump("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "KUBE-NODE-PORT", ""),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-LOAD-BALANCER"),
                Jump("KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ", ""),
            ],
        },
        IpvsCase {
            name: "TestOnlyLocalNodePorts",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.1], nodeName: test-node}
- {addresses: [10.180.1.1], nodeName: other-node}
ports: [{name: p80, port: 80, protocol: TCP}]
",
            // eth0 100.101.102.103/24, eth1 2001:db8::/64, --nodeport-addresses 100.101.102.0/24.
            flags: &[
                "--node-ip",
                "100.101.102.103,2001:db8::",
                "--nodeport-addresses",
                "100.101.102.0/24",
            ],
            expect: vec![
                CheckIpvs(
                    2,
                    Some(vs("TCP", "100.101.102.103:3001", &["10.180.0.1:80"])),
                ),
                IpSet("KUBE-NODE-PORT-TCP", &["3001"]),
                IpSet("KUBE-NODE-PORT-LOCAL-TCP", &["3001"]),
                Jump("KUBE-SERVICES", "RETURN", "127.0.0.0/8"),
                Jump("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "KUBE-NODE-PORT", ""),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-CLUSTER-IP"),
                Jump("KUBE-NODE-PORT", "RETURN", "KUBE-NODE-PORT-LOCAL-TCP"),
                Jump("KUBE-NODE-PORT", "KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
                Jump("KUBE-NODE-PORT", "ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
            ],
        },
    ]
}

/// TestHealthCheckNodePort, TestLoadBalancerSourceRanges, TestOnlyLocalLoadBalancing.
fn cases_4() -> Vec<IpvsCase> {
    use Expect::*;
    vec![
        IpvsCase {
            // Three LoadBalancer Services from one template (same cluster IP and node port);
            // the third has policy Cluster, so its health check node port is not used.
            name: "TestHealthCheckNodePort",
            objects: "
kind: List
apiVersion: v1
items:
- kind: Service
  apiVersion: v1
  metadata: {name: valid-svc1, namespace: ns1}
  spec:
    type: LoadBalancer
    clusterIP: 10.20.30.41
    externalTrafficPolicy: Local
    healthCheckNodePort: 30000
    ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3000}]
- kind: Service
  apiVersion: v1
  metadata: {name: valid-svc2, namespace: ns1}
  spec:
    type: LoadBalancer
    clusterIP: 10.20.30.41
    externalTrafficPolicy: Local
    healthCheckNodePort: 30001
    ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3000}]
- kind: Service
  apiVersion: v1
  metadata: {name: invalid-svc3, namespace: ns1}
  spec:
    type: LoadBalancer
    clusterIP: 10.20.30.41
    externalTrafficPolicy: Cluster
    healthCheckNodePort: 30002
    ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3000}]
",
            flags: &[
                "--node-ip",
                "100.101.102.103,2001:db8::",
                "--nodeport-addresses",
                "100.101.102.0/24",
            ],
            expect: vec![
                IpSet("KUBE-HEALTH-CHECK-NODE-PORT", &["30000", "30001"]),
                Jump("KUBE-NODE-PORT", "RETURN", "KUBE-NODE-PORT-LOCAL-TCP"),
                Jump("KUBE-NODE-PORT", "KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
                Jump("KUBE-NODE-PORT", "ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT"),
            ],
        },
        IpvsCase {
            name: "TestLoadBalancerSourceRanges",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  loadBalancerSourceRanges: [10.0.0.0/8]
  ports: [{name: p80, port: 80, protocol: TCP}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints: [{addresses: [10.180.0.1]}]
ports: [{name: p80, port: 80, protocol: TCP}]
",
            flags: NO_NODE_IPS,
            expect: vec![
                CheckIpvs(2, Some(vs("TCP", "1.2.3.4:80", &["10.180.0.1:80"]))),
                IpSet("KUBE-LOAD-BALANCER", &["1.2.3.4,tcp:80"]),
                IpSet("KUBE-LOAD-BALANCER-FW", &["1.2.3.4,tcp:80"]),
                IpSet(
                    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
                    &["1.2.3.4,tcp:80,10.0.0.0/8"],
                ),
                Jump("KUBE-SERVICES", "RETURN", "127.0.0.0/8"),
                Jump("KUBE-SERVICES", "KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
                Jump("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "KUBE-NODE-PORT", ""),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-LOAD-BALANCER"),
                Jump(
                    "KUBE-PROXY-FIREWALL",
                    "KUBE-SOURCE-RANGES-FIREWALL",
                    "KUBE-LOAD-BALANCER-FW",
                ),
                Jump(
                    "KUBE-SOURCE-RANGES-FIREWALL",
                    "RETURN",
                    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
                ),
                Jump("KUBE-SOURCE-RANGES-FIREWALL", "DROP", ""),
            ],
        },
        IpvsCase {
            name: "TestOnlyLocalLoadBalancing",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.20.30.41
  externalTrafficPolicy: Local
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
---
kind: EndpointSlice
apiVersion: discovery.k8s.io/v1
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
endpoints:
- {addresses: [10.180.0.1], nodeName: test-node}
- {addresses: [10.180.1.1], nodeName: other-node}
ports: [{name: p80, port: 80, protocol: TCP}]
",
            flags: NO_NODE_IPS,
            expect: vec![
                CheckIpvs(2, Some(vs("TCP", "1.2.3.4:80", &["10.180.0.1:80"]))),
                IpSet("KUBE-LOAD-BALANCER", &["1.2.3.4,tcp:80"]),
                IpSet("KUBE-LOAD-BALANCER-LOCAL", &["1.2.3.4,tcp:80"]),
                Jump("KUBE-SERVICES", "RETURN", "127.0.0.0/8"),
                Jump("KUBE-SERVICES", "KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
                Jump("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "KUBE-NODE-PORT", ""),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-CLUSTER-IP"),
                Jump("KUBE-SERVICES", "ACCEPT", "KUBE-LOAD-BALANCER"),
                Jump("KUBE-LOAD-BALANCER", "RETURN", "KUBE-LOAD-BALANCER-LOCAL"),
                Jump("KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ", ""),
            ],
        },
    ]
}

/// TestSessionAffinity, TestMultiPortServiceBindAddr, TestCreateAndLinkKubeChain.
fn cases_5() -> Vec<IpvsCase> {
    use Expect::*;
    vec![
        IpvsCase {
            // No endpoints. kube-proxy checks the timeout of every virtual service; which ones
            // exist follows TestNodePortIPv4 and TestExternalIPsNoEndpoint.
            name: "TestSessionAffinity",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.20.30.41
  externalIPs: [50.60.70.81]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
",
            flags: &["--node-ip", "100.101.102.103"],
            expect: vec![
                AllPersistent(10800),
                Ipvs(vec![
                    Vs {
                        persistent: Some(10800),
                        ..vs("TCP", "10.20.30.41:80", &[])
                    },
                    Vs {
                        persistent: Some(10800),
                        ..vs("TCP", "50.60.70.81:80", &[])
                    },
                    Vs {
                        persistent: Some(10800),
                        ..vs("TCP", "100.101.102.103:3001", &[])
                    },
                ]),
            ],
        },
        IpvsCase {
            // The first step: a two-port Service binds its cluster IP once.
            name: "TestMultiPortServiceBindAddr",
            objects: "
kind: Service
apiVersion: v1
metadata: {name: svc1, namespace: ns1}
spec:
  type: ClusterIP
  clusterIP: 172.16.55.4
  ports:
  - {name: port1, port: 1234, protocol: TCP}
  - {name: port2, port: 1235, protocol: TCP}
",
            flags: NO_NODE_IPS,
            expect: vec![Bound(&["172.16.55.4"])],
        },
        IpvsCase {
            name: "TestCreateAndLinkKubeChain",
            objects: "",
            flags: NO_NODE_IPS,
            expect: vec![
                Chains(
                    "nat",
                    &[
                        "KUBE-SERVICES",
                        "KUBE-POSTROUTING",
                        "KUBE-NODE-PORT",
                        "KUBE-LOAD-BALANCER",
                        "KUBE-MARK-MASQ",
                    ],
                ),
                Chains(
                    "filter",
                    &[
                        "KUBE-FORWARD",
                        "KUBE-NODE-PORT",
                        "KUBE-PROXY-FIREWALL",
                        "KUBE-SOURCE-RANGES-FIREWALL",
                        "KUBE-IPVS-FILTER",
                        "KUBE-IPVS-OUT-FILTER",
                    ],
                ),
                Bound(&[]),
            ],
        },
    ]
}

/// Every case, in the order kube-proxy's tests state them.
pub(crate) fn ipvs_cases() -> Vec<IpvsCase> {
    [cases_1(), cases_2(), cases_3(), cases_4(), cases_5()]
        .into_iter()
        .flatten()
        .collect()
}
