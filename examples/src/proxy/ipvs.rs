//! kube-proxy's ipvs mode on podnet-nat's IPVS syncer (virtual services over generic netlink,
//! the kube-ipvs0 device, ipsets and the iptables rules ipvs mode keeps).

use super::{Mode, SyncOutcome};
use podnet_nat::ipvs::kube_proxy::{IpvsModeSettings, compile};
use podnet_nat::ipvs::sync::IpvsSyncer;
use podnet_nat::kube::ClusterState;
use podnet_nat::proxy::NodeSettings;
use podnet_netns::NetNs;
use std::time::Instant;

/// The ipvs mode. The IPVS family is opened at the first sync, so `--dry-run` works on
/// kernels without IPVS.
pub struct IpvsMode {
    ns: NetNs,
    node: NodeSettings,
    settings: IpvsModeSettings,
    syncer: Option<IpvsSyncer>,
}

impl IpvsMode {
    /// The ipvs mode for `node` with `settings`, applying inside `ns`.
    pub fn new(ns: NetNs, node: NodeSettings, settings: IpvsModeSettings) -> IpvsMode {
        IpvsMode {
            ns,
            node,
            settings,
            syncer: None,
        }
    }

    fn syncer(&mut self) -> Result<&mut IpvsSyncer, String> {
        if self.syncer.is_none() {
            let s = IpvsSyncer::new(self.ns.clone(), self.node.clone(), self.settings.clone())
                .map_err(|e| format!("opening IPVS: {e} (is ip_vs loaded?)"))?;
            self.syncer = Some(s);
        }
        self.syncer
            .as_mut()
            .ok_or_else(|| "no IPVS syncer".to_owned())
    }
}

impl Mode for IpvsMode {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn sync(&mut self, state: &ClusterState, _full: bool) -> Result<SyncOutcome, String> {
        let start = Instant::now();
        let r = self.syncer()?.sync(state).map_err(|e| e.to_string())?;
        if !r.failures.is_empty() {
            return Err(r.failures.join("; "));
        }
        Ok(SyncOutcome {
            full: true,
            duration: start.elapsed(),
            rules: compile(state, &self.node, &self.settings).services.len(),
            conntrack_deleted: 0,
        })
    }

    fn dry_run(&self, state: &ClusterState) -> String {
        let rules = compile(state, &self.node, &self.settings);
        let mut out = String::from("# IPVS virtual services (ipvsadm-save form)\n");
        out.push_str(&rules.render_ipvs());
        out.push_str("# ipsets (ipset restore input)\n");
        out.push_str(&rules.render_ipsets());
        out.push_str("# iptables rules (iptables-restore input)\n");
        out.push_str(&rules.iptables.render());
        out
    }

    fn cleanup(&mut self) -> Result<(), String> {
        let family = self.node.family;
        self.syncer()?.cleanup(family).map_err(|e| e.to_string())
    }
}
