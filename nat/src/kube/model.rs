//! The service model every proxy mode compiles from: service ports and their endpoints, for one
//! IP family, validated.
//!
//! It follows kube-proxy's `BaseServicePortInfo`, `BaseEndpointInfo` and `CategorizeEndpoints`,
//! so the iptables, nftables and IPVS compilers all see the same services the same way.

use super::objects::{EndpointSlice, KubeObject, Service, ServicePortSpec, Warning};
use crate::iptables::Protocol;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// An IP family: each proxier instance handles one; IPVS ids carry one (ordered IPv4 first, so
/// ids sort as `ipvsadm` lists them). The one address-family type of this crate (the
/// nftables table family, [`crate::nftables::Family`], also names `inet`-style tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum IpFamily {
    /// IPv4.
    #[default]
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> IpFamily {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
}

/// A Service's namespaced name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl ServiceKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: kube-proxy's `ServicePortName`. Displays as `ns/name:port` (or
/// `ns/name` for an unnamed port), the string kube-proxy hashes into chain names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    /// The Service.
    pub service: ServiceKey,
    /// The port's name (may be empty).
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// Session affinity of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionAffinity {
    /// No affinity.
    #[default]
    None,
    /// Client-IP affinity with a timeout.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800).
        timeout_seconds: u32,
    },
}

/// One service port for one IP family, with every field a proxy needs, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// Its name.
    pub name: ServicePortName,
    /// The cluster IP of this family.
    pub cluster_ip: IpAddr,
    /// The service port.
    pub port: u16,
    /// The node port, if any.
    pub node_port: Option<u16>,
    /// External IPs of this family.
    pub external_ips: Vec<IpAddr>,
    /// VIP-mode load-balancer ingress IPs of this family.
    pub load_balancer_vips: Vec<IpAddr>,
    /// `loadBalancerSourceRanges` of this family.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// Session affinity.
    pub session_affinity: SessionAffinity,
    /// The health-check node port (only for LoadBalancer services with Local external policy).
    pub health_check_node_port: Option<u16>,
    /// `externalTrafficPolicy: Local` on an externally reachable service.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// The Service's type.
    pub service_type: ServiceType,
    /// `targetPort` as written (endpoints carry the resolved port; this is for display and
    /// for proxies that need it).
    pub target_port: TargetPort,
}

/// A Service's `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    #[default]
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
}

/// A service port's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TargetPort {
    /// Not given (the service port is used).
    #[default]
    Unset,
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

impl ServicePort {
    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.name.protocol
    }

    /// Reachable other than by cluster IP (node port, external IP or load balancer).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.load_balancer_vips.is_empty()
            || !self.external_ips.is_empty()
    }

    /// The port ever sends traffic to endpoints chosen by the Cluster policy.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// The port ever sends traffic to endpoints chosen by the Local policy.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address and port.
    pub addr: SocketAddr,
    /// The node it runs on.
    pub node_name: Option<String>,
    /// The zone it runs in.
    pub zone: Option<String>,
    /// `conditions.ready` (unset means true).
    pub ready: bool,
    /// `conditions.serving` (unset means true).
    pub serving: bool,
    /// `conditions.terminating` (unset means false).
    pub terminating: bool,
    /// Its topology hints, and whether topology leaves it out here.
    pub topology: EndpointTopology,
}

/// An endpoint's topology: its `hints` and what [`super::topology`] made of them on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EndpointTopology {
    /// `hints.forZones` names: the zones whose nodes should use it.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes` names: the nodes that should use it.
    pub node_hints: Vec<String>,
    /// Topology leaves it out of the Cluster policy's endpoints on this node (set by
    /// [`super::topology::apply`]; never for an endpoint whose hints are unused).
    pub excluded: bool,
}

impl Endpoint {
    /// The endpoint's IP.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// Runs on `node`.
    pub fn is_local(&self, node: &str) -> bool {
        !node.is_empty() && self.node_name.as_deref() == Some(node)
    }
}

/// The endpoints of one service port as the traffic policies see them (kube-proxy's
/// `CategorizeEndpoints`; topology as [`super::topology::apply`] marked the endpoints).
#[derive(Debug, Clone, Default)]
pub struct Categorized<'a> {
    /// Usable endpoints for Cluster policy (empty if the port never uses it).
    pub cluster: Vec<&'a Endpoint>,
    /// Usable endpoints for Local policy (empty if the port never uses it).
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint reachable from this node (the union of the two), sorted.
    pub all_reachable: Vec<&'a Endpoint>,
    /// The service has a usable endpoint anywhere in the cluster.
    pub has_any: bool,
}

/// Sorts endpoints for Cluster and Local traffic policy: ready endpoints, or, when there are
/// none, serving-and-terminating ones. The Cluster policy's ready endpoints leave out those
/// topology excluded ([`EndpointTopology::excluded`]); the Local policy's and the
/// serving-and-terminating fallback do not look at topology, as upstream's.
pub fn categorize_endpoints<'a>(
    endpoints: &'a [Endpoint],
    svc: &ServicePort,
    node: &str,
) -> Categorized<'a> {
    let mut c = Categorized::default();
    if endpoints.is_empty() {
        return c;
    }
    if svc.uses_cluster_endpoints() {
        c.cluster = endpoints
            .iter()
            .filter(|e| e.ready && !e.topology.excluded)
            .collect();
        if c.cluster.is_empty() {
            c.cluster = endpoints
                .iter()
                .filter(|e| e.serving && e.terminating)
                .collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let mut local_ready = false;
    let mut local_serving_terminating = false;
    for e in endpoints {
        if e.ready {
            c.has_any = true;
            local_ready |= e.is_local(node);
        } else if e.serving && e.terminating {
            c.has_any = true;
            local_serving_terminating |= e.is_local(node);
        }
    }
    let mut use_terminating = false;
    if local_ready {
        c.local = endpoints
            .iter()
            .filter(|e| e.is_local(node) && e.ready)
            .collect();
    } else if local_serving_terminating {
        use_terminating = true;
        c.local = endpoints
            .iter()
            .filter(|e| e.is_local(node) && e.serving && e.terminating)
            .collect();
    }
    if !svc.uses_cluster_endpoints() {
        c.all_reachable = c.local.clone();
        return c;
    }
    // With topology, the Cluster endpoints may leave out a local one the Local policy uses.
    let topology = endpoints.iter().any(|e| e.topology.excluded);
    if !use_terminating && !topology {
        c.all_reachable = c.cluster.clone();
        return c;
    }
    let mut all: Vec<&Endpoint> = c.cluster.iter().chain(c.local.iter()).copied().collect();
    all.sort_by_key(|e| e.addr.to_string());
    all.dedup_by(|a, b| a.addr == b.addr);
    c.all_reachable = all;
    c
}

/// Parses an IP as kube-proxy's `ParseIPSloppy` does: IPv4 octets may have leading zeros
/// (read as decimal), so `172.30.0.041` is `172.30.0.41`.
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Parses a CIDR sloppily (leading zeros allowed, like `203.0.113.000/025`) and masks it.
pub fn parse_cidr_sloppy(s: &str) -> Option<IpNet> {
    let (ip, len) = s.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

/// All service ports and their endpoints, for one IP family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// The IP family.
    pub family: IpFamily,
    /// Service ports by name.
    pub services: BTreeMap<ServicePortName, ServicePort>,
    /// Endpoints by service port name, each list sorted by `ip:port` text as kube-proxy sorts it.
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

fn bad(object: String, message: String) -> Warning {
    Warning { object, message }
}

/// An address field, read sloppily; a [`Warning`] naming `object` and `what` when invalid.
fn ip_field(object: &str, what: &str, text: &str) -> Result<IpAddr, Warning> {
    parse_ip_sloppy(text).ok_or_else(|| {
        bad(
            object.to_owned(),
            format!("invalid {what} {text:?}; skipped"),
        )
    })
}

/// A `protocol` field (TCP when unset).
fn protocol_field(object: &str, text: Option<&str>) -> Result<Protocol, Warning> {
    let text = text.unwrap_or("TCP");
    Protocol::from_name(text).ok_or_else(|| {
        bad(
            object.to_owned(),
            format!("unsupported protocol {text:?}; skipped"),
        )
    })
}

fn port_u16(v: i64) -> Option<u16> {
    u16::try_from(v).ok().filter(|p| *p != 0)
}

impl ClusterState {
    /// Builds the state from Services and EndpointSlices.
    ///
    /// A Service with an invalid IP, CIDR or port is skipped whole, with a [`Warning`] naming
    /// it; so is an EndpointSlice for a Service that is not among `objects` (or was skipped), and
    /// a slice with an invalid address or port. Headless and ExternalName Services, Services
    /// without a cluster IP of this family and FQDN slices are ignored silently, as kube-proxy
    /// ignores them.
    pub fn from_objects(objects: &[KubeObject], family: IpFamily) -> (ClusterState, Vec<Warning>) {
        let mut state = ClusterState {
            family,
            ..ClusterState::default()
        };
        let mut warnings = Vec::new();
        // Services that exist (valid or not), and those we proxy.
        let mut known: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut proxied: BTreeSet<ServiceKey> = BTreeSet::new();
        // Services with a `trafficDistribution` and what it asks for.
        let mut distribution: BTreeMap<ServiceKey, super::topology::Distribution> = BTreeMap::new();
        for obj in objects {
            if let KubeObject::Service(svc) = obj {
                let key = ServiceKey::new(svc.metadata.namespace(), svc.metadata.name.as_str());
                known.insert(key.clone());
                if let Some(d) = svc
                    .spec
                    .traffic_distribution
                    .as_deref()
                    .and_then(super::topology::Distribution::parse)
                {
                    distribution.insert(key.clone(), d);
                }
                match service_ports(svc, &key, family) {
                    Ok(ports) => {
                        if !ports.is_empty() {
                            proxied.insert(key);
                        }
                        for p in ports {
                            state.services.insert(p.name.clone(), p);
                        }
                    }
                    Err(w) => warnings.push(w),
                }
            }
        }
        let mut sets: BTreeMap<ServicePortName, BTreeMap<String, Endpoint>> = BTreeMap::new();
        for obj in objects {
            if let KubeObject::EndpointSlice(slice) = obj {
                let object = format!(
                    "EndpointSlice {}/{}",
                    slice.metadata.namespace(),
                    slice.metadata.name
                );
                let Some(svc_name) = slice.service_name() else {
                    warnings.push(bad(
                        object,
                        "no kubernetes.io/service-name label; skipped".into(),
                    ));
                    continue;
                };
                let key = ServiceKey::new(slice.metadata.namespace(), svc_name);
                if !known.contains(&key) {
                    warnings.push(bad(object, format!("for unknown Service {key}; skipped")));
                    continue;
                }
                if !proxied.contains(&key) {
                    continue;
                }
                match slice_endpoints(slice, &key, family, &object) {
                    Ok(entries) => {
                        for (spn, mut ep) in entries {
                            if let Some(d) = distribution.get(&key) {
                                d.fill_hints(&mut ep);
                            }
                            let set = sets.entry(spn).or_default();
                            let text = ep.addr.to_string();
                            // Deduplicate; a local copy wins, as in kube-proxy.
                            match set.get(&text) {
                                Some(old) if old.node_name.is_some() && ep.node_name.is_none() => {}
                                _ => {
                                    set.insert(text, ep);
                                }
                            }
                        }
                    }
                    Err(w) => warnings.push(w),
                }
            }
        }
        for (spn, set) in sets {
            if state.services.contains_key(&spn) {
                state.endpoints.insert(spn, set.into_values().collect());
            }
        }
        (state, warnings)
    }

    /// The ports of one Service.
    pub fn ports_of<'a>(
        &'a self,
        key: &'a ServiceKey,
    ) -> impl Iterator<Item = &'a ServicePort> + 'a {
        self.services
            .values()
            .filter(move |p| &p.name.service == key)
    }

    /// The endpoints of one port (empty if none).
    pub fn endpoints_of(&self, spn: &ServicePortName) -> &[Endpoint] {
        self.endpoints.get(spn).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn service_ports(
    svc: &Service,
    key: &ServiceKey,
    family: IpFamily,
) -> Result<Vec<ServicePort>, Warning> {
    let object = format!("Service {key}");
    let spec = &svc.spec;
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    let service_type = match ty {
        "ExternalName" => return Ok(Vec::new()),
        "ClusterIP" | "" => ServiceType::ClusterIp,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        other => {
            return Err(bad(
                object.clone(),
                format!("unknown type {other:?}; skipped"),
            ));
        }
    };
    let mut ips: Vec<&str> = Vec::new();
    if let Some(list) = &spec.cluster_ips {
        ips.extend(list.iter().map(String::as_str));
    }
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.as_deref());
    }
    if ips.is_empty() || ips.iter().any(|ip| ip.is_empty() || *ip == "None") {
        return Ok(Vec::new()); // headless
    }
    let mut cluster_ip = None;
    for ip in &ips {
        let parsed = ip_field(&object, "clusterIP", ip)?;
        if IpFamily::of(&parsed) == family && cluster_ip.is_none() {
            cluster_ip = Some(parsed);
        }
    }
    let Some(cluster_ip) = cluster_ip else {
        return Ok(Vec::new());
    };
    let externally_reachable_type = ty == "LoadBalancer"
        || ty == "NodePort"
        || (ty == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()));
    let external_policy_local =
        externally_reachable_type && spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut external_ips = Vec::new();
    for ip in spec.external_ips.iter().flatten() {
        let parsed = ip_field(&object, "externalIP", ip.trim())?;
        if IpFamily::of(&parsed) == family {
            external_ips.push(parsed);
        }
    }
    let mut source_ranges = Vec::new();
    for r in spec.load_balancer_source_ranges.iter().flatten() {
        let net = parse_cidr_sloppy(r.trim()).ok_or_else(|| {
            bad(
                object.clone(),
                format!("invalid loadBalancerSourceRange {r:?}; skipped"),
            )
        })?;
        if IpFamily::of(&net.addr()) == family {
            source_ranges.push(net);
        }
    }
    let vips = load_balancer_vips(svc, &object, family)?;
    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800);
            let t = u32::try_from(t)
                .ok()
                .filter(|t| (1..=86400).contains(t))
                .ok_or_else(|| {
                    bad(
                        object.clone(),
                        format!("invalid session affinity timeout {t}; skipped"),
                    )
                })?;
            SessionAffinity::ClientIp { timeout_seconds: t }
        }
        _ => SessionAffinity::None,
    };
    let health_check_node_port = if ty == "LoadBalancer" && external_policy_local {
        match spec.health_check_node_port {
            None | Some(0) => None,
            Some(p) => Some(port_u16(p).ok_or_else(|| {
                bad(
                    object.clone(),
                    format!("invalid healthCheckNodePort {p}; skipped"),
                )
            })?),
        }
    } else {
        None
    };
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let (protocol, port, target_port, node_port) = port_spec(p, &object)?;
        out.push(ServicePort {
            name: ServicePortName {
                service: key.clone(),
                port: p.name.clone().unwrap_or_default(),
                protocol,
            },
            cluster_ip,
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_vips: vips.clone(),
            load_balancer_source_ranges: source_ranges.clone(),
            session_affinity,
            health_check_node_port,
            external_policy_local,
            internal_policy_local,
            service_type,
            target_port,
        });
    }
    Ok(out)
}

/// The VIP-mode load-balancer ingress IPs of `family` (`ipMode: Proxy` ones are not).
fn load_balancer_vips(
    svc: &Service,
    object: &str,
    family: IpFamily,
) -> Result<Vec<IpAddr>, Warning> {
    let mut vips = Vec::new();
    if let Some(ingress) = svc
        .status
        .load_balancer
        .as_ref()
        .and_then(|l| l.ingress.as_ref())
    {
        for ing in ingress {
            let Some(ip) = ing.ip.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            if ing.ip_mode.as_deref() == Some("Proxy") {
                continue;
            }
            let parsed = ip_field(object, "load-balancer ingress IP", ip)?;
            if IpFamily::of(&parsed) == family {
                vips.push(parsed);
            }
        }
    }
    Ok(vips)
}

/// One entry of `spec.ports`: protocol, port, target port and node port, validated.
fn port_spec(
    p: &ServicePortSpec,
    object: &str,
) -> Result<(Protocol, u16, TargetPort, Option<u16>), Warning> {
    let protocol = protocol_field(object, p.protocol.as_deref())?;
    let port = port_u16(p.port).ok_or_else(|| {
        bad(
            object.to_owned(),
            format!("invalid port {}; skipped", p.port),
        )
    })?;
    let target_port = match &p.target_port {
        None | Some(serde_json::Value::Null) => TargetPort::Unset,
        Some(serde_json::Value::Number(n)) => {
            TargetPort::Number(n.as_i64().and_then(port_u16).ok_or_else(|| {
                bad(
                    object.to_owned(),
                    format!("invalid targetPort {n}; skipped"),
                )
            })?)
        }
        Some(serde_json::Value::String(name)) => match name.parse::<i64>() {
            Ok(n) => TargetPort::Number(port_u16(n).ok_or_else(|| {
                bad(
                    object.to_owned(),
                    format!("invalid targetPort {n}; skipped"),
                )
            })?),
            Err(_) => TargetPort::Name(name.clone()),
        },
        Some(other) => {
            return Err(bad(
                object.to_owned(),
                format!("invalid targetPort {other}; skipped"),
            ));
        }
    };
    let node_port = match p.node_port {
        None | Some(0) => None,
        Some(n) => Some(
            port_u16(n)
                .ok_or_else(|| bad(object.to_owned(), format!("invalid nodePort {n}; skipped")))?,
        ),
    };
    Ok((protocol, port, target_port, node_port))
}

fn slice_endpoints(
    slice: &EndpointSlice,
    key: &ServiceKey,
    family: IpFamily,
    object: &str,
) -> Result<Vec<(ServicePortName, Endpoint)>, Warning> {
    let want = match family {
        IpFamily::V4 => "IPv4",
        IpFamily::V6 => "IPv6",
    };
    if slice.address_type != want {
        if slice.address_type != "IPv4"
            && slice.address_type != "IPv6"
            && slice.address_type != "FQDN"
        {
            return Err(bad(
                object.to_owned(),
                format!("unknown addressType {:?}; skipped", slice.address_type),
            ));
        }
        return Ok(Vec::new());
    }
    let mut ports = Vec::new();
    for p in slice.ports.iter().flatten() {
        let Some(name) = &p.name else { continue };
        let Some(num) = p.port else { continue };
        let port = port_u16(num)
            .ok_or_else(|| bad(object.to_owned(), format!("invalid port {num}; skipped")))?;
        let protocol = protocol_field(object, p.protocol.as_deref())?;
        ports.push((
            ServicePortName {
                service: key.clone(),
                port: name.clone(),
                protocol,
            },
            port,
        ));
    }
    let mut endpoints = Vec::new();
    for e in slice.endpoints.iter().flatten() {
        let Some(first) = e.addresses.first() else {
            continue;
        };
        let ip = ip_field(object, "endpoint address", first)?;
        if IpFamily::of(&ip) != family {
            continue;
        }
        let ready = e.conditions.ready.unwrap_or(true);
        endpoints.push((ip, e, ready));
    }
    let mut out = Vec::new();
    for (spn, port) in &ports {
        for (ip, e, ready) in &endpoints {
            out.push((
                spn.clone(),
                Endpoint {
                    addr: SocketAddr::new(*ip, *port),
                    node_name: e.node_name.clone(),
                    zone: e.zone.clone(),
                    ready: *ready,
                    serving: e.conditions.serving.unwrap_or(true),
                    terminating: e.conditions.terminating.unwrap_or(false),
                    topology: hints_of(e),
                },
            ));
        }
    }
    Ok(out)
}

/// The hints an EndpointSlice gives one endpoint.
fn hints_of(e: &super::objects::EndpointSpec) -> EndpointTopology {
    let names = |v: Option<&Vec<super::objects::HintName>>| -> Vec<String> {
        v.into_iter()
            .flatten()
            .map(|h| h.name.clone())
            .filter(|n| !n.is_empty())
            .collect()
    };
    let h = e.hints.as_ref();
    EndpointTopology {
        zone_hints: names(h.and_then(|h| h.for_zones.as_ref())),
        node_hints: names(h.and_then(|h| h.for_nodes.as_ref())),
        excluded: false,
    }
}
