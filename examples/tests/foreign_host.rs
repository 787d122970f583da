//! The binaries on a host that other agents already wrote to, in iptables and nftables modes
//! (see `foreign_node`; ipvs mode runs in `proxy_vm.rs`, in a VM whose kernel has IPVS).

mod foreign_node;
mod kube_proxy_cluster;

use podnet_testsupport::require_root;

#[test]
fn vxlan_flanneld_iptables_kube_proxy_and_podnet_cni() {
    require_root!();
    foreign_node::every_binary_keeps_the_foreign_host_intact("fh-vxlan", "vxlan", "iptables");
}

#[test]
fn host_gw_flanneld_nftables_kube_proxy_and_podnet_cni() {
    require_root!();
    foreign_node::every_binary_keeps_the_foreign_host_intact("fh-hostgw", "host-gw", "nftables");
}

#[test]
fn udp_flanneld_iptables_kube_proxy_and_podnet_cni() {
    require_root!();
    foreign_node::every_binary_keeps_the_foreign_host_intact("fh-udp", "udp", "iptables");
}

#[test]
fn nftables_kube_proxy_with_udp_flanneld() {
    require_root!();
    foreign_node::every_binary_keeps_the_foreign_host_intact("fh-udp-nft", "udp", "nftables");
}
