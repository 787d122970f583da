//! kube-proxy's ipvs mode on podnet-nat's IPVS syncer (virtual services over generic netlink,
//! the kube-ipvs0 device, ipsets and the iptables rules ipvs mode keeps).

use super::{Mode, SyncOutcome};
use podnet_nat::ipvs::sync::IpvsSyncer;
use podnet_nat::kube::ClusterState;
use podnet_nat::kube_proxy::NodeSettings;
use podnet_nat::kube_proxy::ipvs_mode::{IpvsModeSettings, compile};
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

    fn sync(&mut self, state: &ClusterState, full: bool) -> Result<SyncOutcome, String> {
        let start = Instant::now();
        let rules = compile(state, &self.node, &self.settings);
        let syncer = self.syncer()?;
        if full {
            syncer.force_full_sync();
        }
        // A partial sync (the syncer's default after a successful one) writes only what
        // changed: ipset entries, the iptables rules when they changed, addresses and the
        // virtual services whose destinations changed.
        let r = syncer.apply(&rules).map_err(|e| e.to_string())?;
        if !r.failures.is_empty() {
            return Err(r.failures.join("; "));
        }
        // As in the other modes: once the kernel is in step, UDP clients of real servers that
        // went away get a fresh connection.
        let conntrack_deleted = syncer.delete_stale_udp(state).map_err(|e| e.to_string())?;
        Ok(SyncOutcome {
            full: r.full,
            duration: start.elapsed(),
            rules: rules.services.len(),
            conntrack_deleted,
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
        // What a sync applies besides: the jumps from the built-in chains (each checked with
        // -C and inserted when missing, in this order) and the addresses on kube-ipvs0.
        let iptables = match rules.family {
            podnet_nat::kube::IpFamily::V4 => "iptables",
            podnet_nat::kube::IpFamily::V6 => "ip6tables",
        };
        out.push_str("# jumps from the built-in chains (inserted when missing)\n");
        for j in podnet_nat::kube_proxy::ipvs_mode::JUMP_RULES {
            out.push_str(&format!(
                "{iptables} -t {} -I {} -m comment --comment \"{}\" -j {}\n",
                j.table.as_str(),
                j.from,
                j.comment,
                j.to
            ));
        }
        out.push_str(&format!(
            "# addresses bound to {}\n",
            podnet_nat::kube_proxy::ipvs_mode::DUMMY_DEVICE
        ));
        for ip in &rules.bind_addrs {
            out.push_str(&format!("{}\n", ipnet::IpNet::from(*ip)));
        }
        out
    }

    fn set_node_ips(&mut self, ips: Vec<std::net::IpAddr>) {
        self.node.node_ips = ips;
        if let Some(s) = self.syncer.as_mut() {
            s.set_node(self.node.clone());
        }
    }

    fn cleanup(&mut self) -> Result<Vec<String>, String> {
        let family = self.node.family;
        self.syncer()?
            .cleanup(family)
            .map(|r| r.kept)
            .map_err(|e| e.to_string())
    }
}
