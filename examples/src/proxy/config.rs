//! kube-proxy's configuration file (`--config`): a `KubeProxyConfiguration` of
//! `kubeproxy.config.k8s.io/v1alpha1`, as kubeadm writes it into the `kube-proxy` ConfigMap.
//!
//! Decoded strictly, as upstream decodes it: an unknown field is an error naming it. Zero
//! values (`0s`, `""`, `null`, `false`) mean "the default", as upstream's defaulting does. A
//! field podnet does not implement is refused by name when it holds anything but its zero
//! value (see [`FileSettings::from_config`]); it is never silently ignored.
//!
//! ```
//! use podnet_examples::proxy::config::{FileSettings, KubeProxyConfiguration};
//! let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
//!             mode: ipvs\nclusterCIDR: 10.244.0.0/16\nipvs: {syncPeriod: 1m0s}\n";
//! let cfg = KubeProxyConfiguration::parse(text).unwrap();
//! let s = FileSettings::from_config(&cfg).unwrap();
//! assert_eq!(s.mode.as_deref(), Some("ipvs"));
//! assert_eq!(s.sync_period, Some(std::time::Duration::from_secs(60)));
//! ```

use super::flags::parse_duration;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The `apiVersion` accepted.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The `kind` accepted.
pub const KIND: &str = "KubeProxyConfiguration";

/// `clientConnection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    /// `kubeconfig`: the API server's kubeconfig.
    pub kubeconfig: Option<String>,
    /// `acceptContentTypes`.
    pub accept_content_types: Option<String>,
    /// `contentType`.
    pub content_type: Option<String>,
    /// `qps`.
    pub qps: Option<f64>,
    /// `burst`.
    pub burst: Option<i64>,
}

/// `iptables` (also the shape of `nftables`, which has no `localhostNodePorts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IptablesConfig {
    /// `masqueradeAll`.
    pub masquerade_all: Option<bool>,
    /// `masqueradeBit`.
    pub masquerade_bit: Option<i64>,
    /// `localhostNodePorts`.
    pub localhost_node_ports: Option<bool>,
    /// `syncPeriod`.
    pub sync_period: Option<String>,
    /// `minSyncPeriod`.
    pub min_sync_period: Option<String>,
}

/// `ipvs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpvsConfig {
    /// `syncPeriod`.
    pub sync_period: Option<String>,
    /// `minSyncPeriod`.
    pub min_sync_period: Option<String>,
    /// `scheduler`.
    pub scheduler: Option<String>,
    /// `excludeCIDRs`.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// `strictARP`.
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    /// `tcpTimeout`.
    pub tcp_timeout: Option<String>,
    /// `tcpFinTimeout`.
    pub tcp_fin_timeout: Option<String>,
    /// `udpTimeout`.
    pub udp_timeout: Option<String>,
}

/// `detectLocal`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectLocal {
    /// `bridgeInterface`.
    pub bridge_interface: Option<String>,
    /// `interfaceNamePrefix`.
    pub interface_name_prefix: Option<String>,
    /// `clusterCIDRs` (newer releases).
    #[serde(rename = "clusterCIDRs")]
    pub cluster_cidrs: Option<Vec<String>>,
}

/// `conntrack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conntrack {
    /// `maxPerCore`.
    pub max_per_core: Option<i64>,
    /// `min`.
    pub min: Option<i64>,
    /// `tcpEstablishedTimeout`.
    pub tcp_established_timeout: Option<String>,
    /// `tcpCloseWaitTimeout`.
    pub tcp_close_wait_timeout: Option<String>,
    /// `tcpBeLiberal`.
    pub tcp_be_liberal: Option<bool>,
    /// `udpTimeout`.
    pub udp_timeout: Option<String>,
    /// `udpStreamTimeout`.
    pub udp_stream_timeout: Option<String>,
}

/// A `KubeProxyConfiguration` as written (every field optional, `null` allowed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeProxyConfiguration {
    /// `apiVersion`.
    pub api_version: Option<String>,
    /// `kind`.
    pub kind: Option<String>,
    /// `featureGates`.
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// `clientConnection`.
    pub client_connection: Option<ClientConnection>,
    /// `hostnameOverride`.
    pub hostname_override: Option<String>,
    /// `bindAddress`.
    pub bind_address: Option<String>,
    /// `healthzBindAddress`.
    pub healthz_bind_address: Option<String>,
    /// `metricsBindAddress`.
    pub metrics_bind_address: Option<String>,
    /// `bindAddressHardFail`.
    pub bind_address_hard_fail: Option<bool>,
    /// `enableProfiling`.
    pub enable_profiling: Option<bool>,
    /// `showHiddenMetricsForVersion`.
    pub show_hidden_metrics_for_version: Option<String>,
    /// `mode`.
    pub mode: Option<String>,
    /// `iptables`.
    pub iptables: Option<IptablesConfig>,
    /// `ipvs`.
    pub ipvs: Option<IpvsConfig>,
    /// `nftables`.
    pub nftables: Option<IptablesConfig>,
    /// `winkernel` (Windows only: must hold zero values).
    pub winkernel: Option<BTreeMap<String, yaml_serde::Value>>,
    /// `detectLocalMode`.
    pub detect_local_mode: Option<String>,
    /// `detectLocal`.
    pub detect_local: Option<DetectLocal>,
    /// `clusterCIDR`.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// `nodePortAddresses`.
    pub node_port_addresses: Option<Vec<String>>,
    /// `oomScoreAdj`.
    pub oom_score_adj: Option<i64>,
    /// `conntrack`.
    pub conntrack: Option<Conntrack>,
    /// `configSyncPeriod`.
    pub config_sync_period: Option<String>,
    /// `portRange`.
    pub port_range: Option<String>,
    /// `logging`.
    pub logging: Option<yaml_serde::Value>,
    /// `windowsRunAsService`.
    pub windows_run_as_service: Option<bool>,
}

impl KubeProxyConfiguration {
    /// Decodes `text` strictly, checking `apiVersion` and `kind`.
    pub fn parse(text: &str) -> Result<KubeProxyConfiguration, String> {
        let cfg: KubeProxyConfiguration =
            yaml_serde::from_str(text).map_err(|e| format!("strict decoding error: {e}"))?;
        match cfg.api_version.as_deref() {
            Some(API_VERSION) => {}
            other => {
                return Err(format!(
                    "apiVersion {other:?}: only {API_VERSION} is supported"
                ));
            }
        }
        match cfg.kind.as_deref() {
            Some(KIND) => {}
            other => return Err(format!("kind {other:?}: expected {KIND}")),
        }
        Ok(cfg)
    }

    /// Reads and decodes the file `path`.
    pub fn load(path: &std::path::Path) -> Result<KubeProxyConfiguration, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("--config {}: {e}", path.display()))
    }
}

/// How local traffic is recognised (`--detect-local-mode` and its companions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectLocalMode {
    /// `ClusterCIDR`: sources in `--cluster-cidr`.
    ClusterCidr,
    /// `NodeCIDR`: sources in the node's `podCIDR` (from the Node object).
    NodeCidr,
    /// `BridgeInterface`: arriving through `--pod-bridge-interface`.
    BridgeInterface,
    /// `InterfaceNamePrefix`: arriving through interfaces named `--pod-interface-name-prefix`*.
    InterfaceNamePrefix,
}

impl DetectLocalMode {
    /// Upstream's spelling; empty is `None` (the default, ClusterCIDR).
    pub fn parse(text: &str) -> Result<Option<DetectLocalMode>, String> {
        Ok(Some(match text {
            "" => return Ok(None),
            "ClusterCIDR" => DetectLocalMode::ClusterCidr,
            "NodeCIDR" => DetectLocalMode::NodeCidr,
            "BridgeInterface" => DetectLocalMode::BridgeInterface,
            "InterfaceNamePrefix" => DetectLocalMode::InterfaceNamePrefix,
            other => {
                return Err(format!(
                    "--detect-local-mode {other:?}: one of ClusterCIDR, NodeCIDR, \
                     BridgeInterface, InterfaceNamePrefix"
                ));
            }
        }))
    }
}

/// `--nodeport-addresses`: CIDRs, or the node's primary IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Node IPs within these networks (empty: every local address).
    Cidrs(Vec<IpNet>),
    /// `primary`: the node's primary IPs only.
    Primary,
}

impl NodePortAddresses {
    /// Parses the list as upstream's validation does: `primary` alone, or CIDRs.
    pub fn parse(items: &[String]) -> Result<NodePortAddresses, String> {
        let items: Vec<&str> = items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if items == ["primary"] {
            return Ok(NodePortAddresses::Primary);
        }
        items
            .iter()
            .map(|s| {
                s.parse::<IpNet>().map_err(|_| {
                    format!(
                        "--nodeport-addresses {s:?}: must be a CIDR, or 'primary' as the only value"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(NodePortAddresses::Cidrs)
    }
}

/// What a config file sets, typed and checked (`None`: not set, the default or the command
/// line applies).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSettings {
    /// `clientConnection.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `hostnameOverride`.
    pub hostname_override: Option<String>,
    /// `bindAddress`.
    pub bind_address: Option<IpAddr>,
    /// `healthzBindAddress` (empty: not served).
    pub healthz_bind_address: Option<Option<SocketAddr>>,
    /// `metricsBindAddress` (empty: not served).
    pub metrics_bind_address: Option<Option<SocketAddr>>,
    /// `mode`.
    pub mode: Option<String>,
    /// The masquerade bit of the mode in use (`iptables.masqueradeBit`, or
    /// `nftables.masqueradeBit` in nftables mode).
    pub masquerade_bit: Option<u8>,
    /// `masqueradeAll` of the mode in use.
    pub masquerade_all: Option<bool>,
    /// `iptables.localhostNodePorts`.
    pub localhost_nodeports: Option<bool>,
    /// The sync period of the mode in use.
    pub sync_period: Option<Duration>,
    /// The minimum sync period of the mode in use.
    pub min_sync_period: Option<Duration>,
    /// `ipvs.scheduler`.
    pub ipvs_scheduler: Option<String>,
    /// `ipvs.excludeCIDRs`.
    pub ipvs_exclude_cidrs: Option<Vec<IpNet>>,
    /// `ipvs.strictARP`.
    pub ipvs_strict_arp: Option<bool>,
    /// `ipvs.tcpTimeout`, `tcpFinTimeout`, `udpTimeout`.
    pub ipvs_timeouts: [Option<Duration>; 3],
    /// `detectLocalMode`.
    pub detect_local_mode: Option<DetectLocalMode>,
    /// `detectLocal.bridgeInterface`.
    pub pod_bridge_interface: Option<String>,
    /// `detectLocal.interfaceNamePrefix`.
    pub pod_interface_name_prefix: Option<String>,
    /// `clusterCIDR` (or `detectLocal.clusterCIDRs`).
    pub cluster_cidr: Option<Vec<IpNet>>,
    /// `nodePortAddresses`.
    pub nodeport_addresses: Option<NodePortAddresses>,
    /// `oomScoreAdj`.
    pub oom_score_adj: Option<i32>,
    /// `conntrack.maxPerCore`.
    pub conntrack_max_per_core: Option<u32>,
    /// `conntrack.min`.
    pub conntrack_min: Option<u32>,
    /// `conntrack.tcpEstablishedTimeout`.
    pub conntrack_tcp_established: Option<Duration>,
    /// `conntrack.tcpCloseWaitTimeout`.
    pub conntrack_tcp_close_wait: Option<Duration>,
    /// `conntrack.tcpBeLiberal`.
    pub conntrack_tcp_be_liberal: Option<bool>,
    /// `conntrack.udpTimeout`.
    pub conntrack_udp_timeout: Option<Duration>,
    /// `conntrack.udpStreamTimeout`.
    pub conntrack_udp_stream_timeout: Option<Duration>,
}

/// A duration field: `None` when unset or zero (upstream's default then applies).
fn duration(field: &str, v: &Option<String>) -> Result<Option<Duration>, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => {
            let d = parse_duration(t).map_err(|e| format!("{field}: {e}"))?;
            Ok(Some(d).filter(|d| !d.is_zero()))
        }
    }
}

/// A string field: `None` when unset or empty.
fn text(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A zero value (`null`, `false`, `0`, `""`, `0s`, or a map or list of them).
fn is_zero(v: &yaml_serde::Value) -> bool {
    use yaml_serde::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            s.is_empty() || s == "0" || parse_duration(s).is_ok_and(|d| d.is_zero())
        }
        Value::Sequence(s) => s.iter().all(is_zero),
        Value::Mapping(m) => m.values().all(is_zero),
        Value::Tagged(t) => is_zero(&t.value),
    }
}

impl FileSettings {
    /// The settings of `cfg`. Refused, by field name: values that do not parse, and non-zero
    /// values of the fields podnet does not implement (`featureGates`, `enableProfiling`,
    /// `showHiddenMetricsForVersion`, `portRange`, `winkernel`, `windowsRunAsService`,
    /// `clientConnection` tuning, `configSyncPeriod`, `logging` beyond `verbosity` and
    /// `format: text`).
    pub fn from_config(cfg: &KubeProxyConfiguration) -> Result<FileSettings, String> {
        refuse_unsupported(cfg)?;
        let cc = cfg.client_connection.clone().unwrap_or_default();
        let mut s = FileSettings {
            kubeconfig: text(&cc.kubeconfig).map(PathBuf::from),
            hostname_override: text(&cfg.hostname_override),
            mode: text(&cfg.mode),
            ..FileSettings::default()
        };
        if let Some(b) = text(&cfg.bind_address) {
            s.bind_address = Some(
                b.parse()
                    .map_err(|_| format!("bindAddress {b:?}: not an IP address"))?,
            );
        }
        // An empty address string is "the default" for healthz and metrics, as upstream's
        // defaulting fills them in.
        type Addr = Result<Option<Option<SocketAddr>>, String>;
        let addr = |field: &str, v: &Option<String>, port: u16| -> Addr {
            match text(v) {
                None => Ok(None),
                Some(a) => parse_bind_address(&a, port)
                    .map(Some)
                    .map_err(|e| format!("{field}: {e}")),
            }
        };
        s.healthz_bind_address = addr(
            "healthzBindAddress",
            &cfg.healthz_bind_address,
            HEALTHZ_PORT,
        )?;
        s.metrics_bind_address = addr(
            "metricsBindAddress",
            &cfg.metrics_bind_address,
            METRICS_PORT,
        )?;
        // The mode's own section: nftables mode reads `nftables`, the others `iptables` (and
        // ipvs mode its periods from `ipvs`).
        let nft = s.mode.as_deref() == Some("nftables");
        let table = if nft {
            cfg.nftables.clone()
        } else {
            cfg.iptables.clone()
        }
        .unwrap_or_default();
        let section = if nft { "nftables" } else { "iptables" };
        if let Some(bit) = table.masquerade_bit {
            s.masquerade_bit = Some(
                u8::try_from(bit)
                    .ok()
                    .filter(|b| *b <= 31)
                    .ok_or_else(|| format!("{section}.masqueradeBit {bit}: must be 0 to 31"))?,
            );
        }
        s.masquerade_all = table.masquerade_all.filter(|m| *m);
        s.localhost_nodeports = cfg.iptables.as_ref().and_then(|t| t.localhost_node_ports);
        let ipvs = cfg.ipvs.clone().unwrap_or_default();
        if s.mode.as_deref() == Some("ipvs") {
            s.sync_period = duration("ipvs.syncPeriod", &ipvs.sync_period)?;
            s.min_sync_period = duration("ipvs.minSyncPeriod", &ipvs.min_sync_period)?;
        } else {
            s.sync_period = duration(&format!("{section}.syncPeriod"), &table.sync_period)?;
            s.min_sync_period =
                duration(&format!("{section}.minSyncPeriod"), &table.min_sync_period)?;
        }
        s.ipvs_scheduler = text(&ipvs.scheduler);
        if let Some(list) = &ipvs.exclude_cidrs {
            s.ipvs_exclude_cidrs = Some(parse_cidrs("ipvs.excludeCIDRs", list)?);
        }
        s.ipvs_strict_arp = ipvs.strict_arp.filter(|b| *b);
        s.ipvs_timeouts = [
            duration("ipvs.tcpTimeout", &ipvs.tcp_timeout)?,
            duration("ipvs.tcpFinTimeout", &ipvs.tcp_fin_timeout)?,
            duration("ipvs.udpTimeout", &ipvs.udp_timeout)?,
        ];
        s.detect_local_mode =
            DetectLocalMode::parse(cfg.detect_local_mode.as_deref().unwrap_or("").trim())
                .map_err(|e| e.replace("--detect-local-mode", "detectLocalMode"))?;
        let dl = cfg.detect_local.clone().unwrap_or_default();
        s.pod_bridge_interface = text(&dl.bridge_interface);
        s.pod_interface_name_prefix = text(&dl.interface_name_prefix);
        if let Some(c) = text(&cfg.cluster_cidr) {
            let list: Vec<String> = c.split(',').map(str::to_owned).collect();
            s.cluster_cidr = Some(parse_cidrs("clusterCIDR", &list)?);
        } else if let Some(list) = dl.cluster_cidrs.as_ref().filter(|l| !l.is_empty()) {
            s.cluster_cidr = Some(parse_cidrs("detectLocal.clusterCIDRs", list)?);
        }
        if let Some(list) = cfg.node_port_addresses.as_ref().filter(|l| !l.is_empty()) {
            s.nodeport_addresses = Some(
                NodePortAddresses::parse(list)
                    .map_err(|e| e.replace("--nodeport-addresses", "nodePortAddresses"))?,
            );
        }
        if let Some(adj) = cfg.oom_score_adj {
            s.oom_score_adj = Some(
                i32::try_from(adj)
                    .ok()
                    .filter(|a| (-1000..=1000).contains(a))
                    .ok_or_else(|| format!("oomScoreAdj {adj}: must be -1000 to 1000"))?,
            );
        }
        s.read_conntrack(cfg)?;
        Ok(s)
    }

    /// The `conntrack` section.
    fn read_conntrack(&mut self, cfg: &KubeProxyConfiguration) -> Result<(), String> {
        let s = self;
        let ct = cfg.conntrack.clone().unwrap_or_default();
        let count = |field: &str, v: Option<i64>| -> Result<Option<u32>, String> {
            v.map(|n| {
                u32::try_from(n).map_err(|_| format!("conntrack.{field} {n}: must be 0 or more"))
            })
            .transpose()
        };
        s.conntrack_max_per_core = count("maxPerCore", ct.max_per_core)?;
        s.conntrack_min = count("min", ct.min)?;
        s.conntrack_tcp_established = duration(
            "conntrack.tcpEstablishedTimeout",
            &ct.tcp_established_timeout,
        )?;
        s.conntrack_tcp_close_wait =
            duration("conntrack.tcpCloseWaitTimeout", &ct.tcp_close_wait_timeout)?;
        s.conntrack_tcp_be_liberal = ct.tcp_be_liberal.filter(|b| *b);
        s.conntrack_udp_timeout = duration("conntrack.udpTimeout", &ct.udp_timeout)?;
        s.conntrack_udp_stream_timeout =
            duration("conntrack.udpStreamTimeout", &ct.udp_stream_timeout)?;
        Ok(())
    }
}

/// Refuses, by field name, non-zero values of the fields podnet does not implement.
fn refuse_unsupported(cfg: &KubeProxyConfiguration) -> Result<(), String> {
    let mut unsupported = Vec::new();
    if cfg.feature_gates.as_ref().is_some_and(|g| !g.is_empty()) {
        unsupported.push("featureGates");
    }
    if cfg.enable_profiling == Some(true) {
        unsupported.push("enableProfiling");
    }
    if text(&cfg.show_hidden_metrics_for_version).is_some() {
        unsupported.push("showHiddenMetricsForVersion");
    }
    if text(&cfg.port_range).is_some() {
        unsupported.push("portRange (the userspace proxy's)");
    }
    if cfg
        .winkernel
        .as_ref()
        .is_some_and(|w| !w.values().all(is_zero))
    {
        unsupported.push("winkernel (Windows only)");
    }
    if cfg.windows_run_as_service == Some(true) {
        unsupported.push("windowsRunAsService (Windows only)");
    }
    if duration("configSyncPeriod", &cfg.config_sync_period)?.is_some() {
        unsupported.push("configSyncPeriod (API server informers)");
    }
    let cc = cfg.client_connection.clone().unwrap_or_default();
    if text(&cc.accept_content_types).is_some()
        || text(&cc.content_type).is_some()
        || cc.qps.is_some_and(|q| q != 0.0)
        || cc.burst.is_some_and(|b| b != 0)
    {
        unsupported.push("clientConnection (acceptContentTypes, contentType, qps, burst)");
    }
    if let Some(yaml_serde::Value::Mapping(m)) = &cfg.logging {
        for (k, v) in m {
            let key = k.as_str().unwrap_or("");
            let ok = match key {
                "verbosity" => true,
                "format" => v.as_str().is_none_or(|f| f.is_empty() || f == "text"),
                _ => is_zero(v),
            };
            if !ok {
                unsupported.push("logging (only verbosity and format: text)");
                break;
            }
        }
    }
    if !unsupported.is_empty() {
        return Err(format!(
            "not supported by podnet's kube-proxy: {}",
            unsupported.join(", ")
        ));
    }

    Ok(())
}

/// A list of CIDRs, each checked.
pub fn parse_cidrs(field: &str, list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|_| format!("{field} {s:?}: not a CIDR"))
        })
        .collect()
}

/// The healthz server's port when an address gives none.
pub const HEALTHZ_PORT: u16 = 10256;
/// The metrics server's port when an address gives none.
pub const METRICS_PORT: u16 = 10249;

/// A bind address as upstream takes it: `IP:port`, or an IP alone (then `default_port`); an
/// empty string disables the server.
pub fn parse_bind_address(text: &str, default_port: u16) -> Result<Option<SocketAddr>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(Some(SocketAddr::new(ip, default_port)));
    }
    t.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("{t:?}: expected IP:port or IP (e.g. 0.0.0.0:10256)"))
}

/// The configuration `--write-config-to` writes: upstream's defaults for this build, as a
/// `KubeProxyConfiguration` file.
pub fn default_config_yaml() -> String {
    let cfg = KubeProxyConfiguration {
        api_version: Some(API_VERSION.into()),
        kind: Some(KIND.into()),
        bind_address: Some("0.0.0.0".into()),
        healthz_bind_address: Some("0.0.0.0:10256".into()),
        metrics_bind_address: Some("127.0.0.1:10249".into()),
        bind_address_hard_fail: Some(false),
        enable_profiling: Some(false),
        mode: Some("iptables".into()),
        cluster_cidr: Some(String::new()),
        hostname_override: Some(String::new()),
        iptables: Some(IptablesConfig {
            masquerade_all: Some(false),
            masquerade_bit: Some(14),
            localhost_node_ports: Some(true),
            sync_period: Some("30s".into()),
            min_sync_period: Some("1s".into()),
        }),
        ipvs: Some(IpvsConfig {
            sync_period: Some("30s".into()),
            min_sync_period: Some("0s".into()),
            scheduler: Some(String::new()),
            exclude_cidrs: None,
            strict_arp: Some(false),
            tcp_timeout: Some("0s".into()),
            tcp_fin_timeout: Some("0s".into()),
            udp_timeout: Some("0s".into()),
        }),
        nftables: Some(IptablesConfig {
            masquerade_all: Some(false),
            masquerade_bit: Some(14),
            localhost_node_ports: None,
            sync_period: Some("30s".into()),
            min_sync_period: Some("1s".into()),
        }),
        detect_local_mode: Some(String::new()),
        detect_local: Some(DetectLocal {
            bridge_interface: Some(String::new()),
            interface_name_prefix: Some(String::new()),
            cluster_cidrs: None,
        }),
        node_port_addresses: None,
        conntrack: Some(Conntrack {
            max_per_core: Some(0),
            min: Some(0),
            tcp_established_timeout: Some("0s".into()),
            tcp_close_wait_timeout: Some("0s".into()),
            tcp_be_liberal: Some(false),
            udp_timeout: Some("0s".into()),
            udp_stream_timeout: Some("0s".into()),
        }),
        ..KubeProxyConfiguration::default()
    };
    yaml_serde::to_string(&cfg).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubeadm (v1.31) writes into the kube-proxy ConfigMap's `config.conf`.
    pub(crate) const KUBEADM: &str = r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
"#;

    #[test]
    fn kubeadms_file_reads_as_defaults_plus_its_cluster_cidr() {
        let cfg = KubeProxyConfiguration::parse(KUBEADM).unwrap();
        let s = FileSettings::from_config(&cfg).unwrap();
        assert_eq!(
            s,
            FileSettings {
                kubeconfig: Some("/var/lib/kube-proxy/kubeconfig.conf".into()),
                bind_address: Some("0.0.0.0".parse().unwrap()),
                cluster_cidr: Some(vec!["10.244.0.0/16".parse().unwrap()]),
                ..FileSettings::default()
            }
        );
    }

    #[test]
    fn every_setting_podnet_implements() {
        let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
            mode: ipvs\nhostnameOverride: node7\nhealthzBindAddress: 0.0.0.0:10300\n\
            metricsBindAddress: '[::1]:10249'\n\
            iptables: {masqueradeBit: 15, masqueradeAll: true, localhostNodePorts: false}\n\
            ipvs: {syncPeriod: 1m0s, minSyncPeriod: 2s, scheduler: lc, strictARP: true,\n\
                   excludeCIDRs: [10.1.0.0/16], tcpTimeout: 15m, udpTimeout: 30s}\n\
            detectLocalMode: InterfaceNamePrefix\ndetectLocal: {interfaceNamePrefix: veth}\n\
            nodePortAddresses: [primary]\noomScoreAdj: -999\n\
            conntrack: {maxPerCore: 32768, min: 131072, tcpEstablishedTimeout: 24h0m0s,\n\
                        tcpCloseWaitTimeout: 1h0m0s}\n";
        let s = FileSettings::from_config(&KubeProxyConfiguration::parse(text).unwrap()).unwrap();
        assert_eq!(s.mode.as_deref(), Some("ipvs"));
        assert_eq!(s.hostname_override.as_deref(), Some("node7"));
        assert_eq!(
            s.healthz_bind_address,
            Some(Some("0.0.0.0:10300".parse().unwrap()))
        );
        assert_eq!(
            s.metrics_bind_address,
            Some(Some("[::1]:10249".parse().unwrap()))
        );
        assert_eq!(s.masquerade_bit, Some(15));
        assert_eq!(s.masquerade_all, Some(true));
        assert_eq!(s.localhost_nodeports, Some(false));
        assert_eq!(s.sync_period, Some(Duration::from_secs(60)));
        assert_eq!(s.min_sync_period, Some(Duration::from_secs(2)));
        assert_eq!(s.ipvs_scheduler.as_deref(), Some("lc"));
        assert_eq!(s.ipvs_strict_arp, Some(true));
        assert_eq!(
            s.ipvs_exclude_cidrs,
            Some(vec!["10.1.0.0/16".parse().unwrap()])
        );
        assert_eq!(
            s.ipvs_timeouts,
            [
                Some(Duration::from_secs(900)),
                None,
                Some(Duration::from_secs(30))
            ]
        );
        assert_eq!(
            s.detect_local_mode,
            Some(DetectLocalMode::InterfaceNamePrefix)
        );
        assert_eq!(s.pod_interface_name_prefix.as_deref(), Some("veth"));
        assert_eq!(s.nodeport_addresses, Some(NodePortAddresses::Primary));
        assert_eq!(s.oom_score_adj, Some(-999));
        assert_eq!(s.conntrack_max_per_core, Some(32768));
        assert_eq!(s.conntrack_min, Some(131_072));
        assert_eq!(
            s.conntrack_tcp_established,
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(s.conntrack_tcp_close_wait, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn nftables_mode_reads_its_own_section() {
        let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n\
            mode: nftables\niptables: {masqueradeBit: 3, syncPeriod: 10s}\n\
            nftables: {masqueradeBit: 5, syncPeriod: 20s}\n";
        let s = FileSettings::from_config(&KubeProxyConfiguration::parse(text).unwrap()).unwrap();
        assert_eq!(s.masquerade_bit, Some(5));
        assert_eq!(s.sync_period, Some(Duration::from_secs(20)));
    }

    #[test]
    fn unknown_and_unsupported_fields_are_refused_by_name() {
        let head = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";
        let err = KubeProxyConfiguration::parse(&format!("{head}bogusField: 1\n")).unwrap_err();
        assert!(err.contains("bogusField"), "{err}");
        let err = KubeProxyConfiguration::parse(&format!("{head}ipvs: {{strictArp: true}}\n"))
            .unwrap_err();
        assert!(err.contains("strictArp"), "{err}");
        for (field, text) in [
            ("featureGates", "featureGates: {Foo: true}"),
            ("enableProfiling", "enableProfiling: true"),
            ("portRange", "portRange: 30000-30010"),
            ("winkernel", "winkernel: {enableDSR: true}"),
            ("configSyncPeriod", "configSyncPeriod: 15m"),
            ("clientConnection", "clientConnection: {qps: 5}"),
            ("logging", "logging: {format: json}"),
            (
                "showHiddenMetricsForVersion",
                "showHiddenMetricsForVersion: '1.30'",
            ),
        ] {
            let cfg = KubeProxyConfiguration::parse(&format!("{head}{text}\n")).unwrap();
            let err = FileSettings::from_config(&cfg).unwrap_err();
            assert!(err.contains(field), "{text}: {err}");
        }
        for (field, text) in [
            ("iptables.masqueradeBit", "iptables: {masqueradeBit: 32}"),
            ("iptables.syncPeriod", "iptables: {syncPeriod: 5x}"),
            ("clusterCIDR", "clusterCIDR: 10.0.0.0/33"),
            ("detectLocalMode", "detectLocalMode: Magic"),
            (
                "nodePortAddresses",
                "nodePortAddresses: [primary, 10.0.0.0/8]",
            ),
            ("oomScoreAdj", "oomScoreAdj: 5000"),
            ("conntrack.min", "conntrack: {min: -1}"),
            ("healthzBindAddress", "healthzBindAddress: nonsense"),
        ] {
            let cfg = KubeProxyConfiguration::parse(&format!("{head}{text}\n")).unwrap();
            let err = FileSettings::from_config(&cfg).unwrap_err();
            assert!(err.contains(field), "{text}: {err}");
        }
        assert!(KubeProxyConfiguration::parse("kind: KubeProxyConfiguration\n").is_err());
        assert!(
            KubeProxyConfiguration::parse(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n"
            )
            .is_err()
        );
    }

    #[test]
    fn bind_addresses_with_or_without_a_port() {
        let sa = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            parse_bind_address("0.0.0.0", 10256),
            Ok(sa("0.0.0.0:10256"))
        );
        assert_eq!(parse_bind_address("::", 10249), Ok(sa("[::]:10249")));
        assert_eq!(parse_bind_address("[::1]", 10249), Ok(sa("[::1]:10249")));
        assert_eq!(
            parse_bind_address("127.0.0.1:9", 10249),
            Ok(sa("127.0.0.1:9"))
        );
        assert_eq!(parse_bind_address(" ", 10249), Ok(None));
        assert!(parse_bind_address("localhost:1", 10249).is_err());
        assert!(parse_bind_address("1.2.3.4:99999", 10249).is_err());
    }

    #[test]
    fn the_written_defaults_read_back() {
        let text = default_config_yaml();
        let cfg = KubeProxyConfiguration::parse(&text).unwrap();
        let s = FileSettings::from_config(&cfg).unwrap();
        assert_eq!(s.mode.as_deref(), Some("iptables"));
        assert_eq!(s.masquerade_bit, Some(14));
        assert_eq!(s.sync_period, Some(Duration::from_secs(30)));
        assert_eq!(
            s.healthz_bind_address,
            Some(Some("0.0.0.0:10256".parse().unwrap()))
        );
    }
}
