//! kube-proxy's nftables mode on podnet-nat's netlink syncer (table `kube-proxy`, verdict maps,
//! `numgen random mod N vmap`, incremental transactions).

use super::{Mode, SyncOutcome};
use podnet_nat::kube::ClusterState;
use podnet_nat::kube_proxy::nftables_maps::NftLayout;
use podnet_nat::kube_proxy::nftables_mode::{NftProxySettings, compile};
use podnet_nat::nftables::sync::{NftablesSyncer, Planner};
use podnet_netns::NetNs;
use std::time::Instant;

/// The nftables mode.
pub struct NftablesMode {
    syncer: NftablesSyncer,
    settings: NftProxySettings,
    ns: NetNs,
    layout: NftLayout,
}

impl NftablesMode {
    /// The nftables mode for `settings`, applying inside `ns`.
    pub fn new(ns: NetNs, settings: NftProxySettings) -> NftablesMode {
        NftablesMode::with_layout(ns, settings, NftLayout::KubeProxy)
    }

    /// The nftables mode writing its table in `layout` (`--nftables-layout`).
    pub fn with_layout(ns: NetNs, settings: NftProxySettings, layout: NftLayout) -> NftablesMode {
        NftablesMode {
            syncer: NftablesSyncer::with_layout(ns.clone(), settings.clone(), layout),
            settings,
            ns,
            layout,
        }
    }
}

impl Mode for NftablesMode {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn sync(&mut self, state: &ClusterState, full: bool) -> Result<SyncOutcome, String> {
        if full {
            self.syncer.planner_mut().force_full();
        }
        let start = Instant::now();
        let r = self.syncer.sync(state).map_err(|e| e.to_string())?;
        Ok(SyncOutcome {
            full: r.full,
            duration: start.elapsed(),
            rules: r.operations,
            conntrack_deleted: r.conntrack_deleted,
        })
    }

    fn dry_run(&self, state: &ClusterState) -> String {
        match self.layout {
            NftLayout::KubeProxy => compile(state, &self.settings).full_transaction().render(),
            NftLayout::Maps => Planner::with_layout(self.settings.clone(), self.layout)
                .plan_full(state, &[], &[])
                .tx
                .render(),
        }
    }

    fn set_node_ips(&mut self, ips: Vec<std::net::IpAddr>) {
        self.settings.node.node_ips = ips;
        self.syncer
            .planner_mut()
            .set_settings(self.settings.clone());
    }

    fn set_service_cidrs(&mut self, cidrs: Vec<ipnet::IpNet>) {
        let family = self.settings.node.family;
        self.settings.service_cidrs = cidrs
            .into_iter()
            .filter(|c| podnet_nat::kube::IpFamily::of(&c.addr()) == family)
            .collect();
        self.syncer
            .planner_mut()
            .set_settings(self.settings.clone());
    }

    /// Deletes the `kube-proxy` tables of both families (upstream's nftables
    /// `CleanupLeftovers`), and no other table.
    fn cleanup(&mut self) -> Result<Vec<String>, String> {
        for family in ["ip", "ip6"] {
            let out = self
                .ns
                .command("nft")
                .args([
                    "delete",
                    "table",
                    family,
                    podnet_nat::kube_proxy::nftables_mode::TABLE,
                ])
                .output()
                .map_err(|e| format!("nft: {e}"))?;
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !err.contains("No such file") {
                return Err(format!(
                    "nft delete table {family} kube-proxy: {}",
                    err.trim()
                ));
            }
        }
        Ok(Vec::new())
    }
}
