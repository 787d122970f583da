//! The simulated cluster in a test VM: what `proxy_vm.rs` and `explain_vm.rs` both put in the
//! guest.
#![allow(dead_code, unreachable_pub)]

use crate::kube_proxy_cluster::PROGRAM_DIR_VAR;
use crate::vm::Vm;
use std::path::Path;

/// The links the cluster builds and the netfilter pieces of flanneld's and podnet-cni's
/// rules, besides what [`Vm::ipvs_mode_tools`] adds for kube-proxy's ipvs mode.
pub const CLUSTER_MODULES: &[&str] = &[
    "veth",
    "bridge",
    "br_netfilter",
    "vxlan",
    "iptable_mangle",
    "xt_nat",
    "xt_multiport",
];

/// Where the guest has the package's programs.
pub const GUEST_PROGRAM_DIR: &str = "/test/bin";

/// Prepares `vm` for the cluster: 1 GiB of memory (the programs, the pods' namespaces and
/// kube-proxy's ipsets live in guest memory), [`CLUSTER_MODULES`] and `more_modules`, ipvs
/// mode's tools, this machine's `tools` at `/bin` and `/sbin`, and the cluster's programs at
/// [`GUEST_PROGRAM_DIR`] (named in the guest's [`PROGRAM_DIR_VAR`]).
pub fn setup(vm: &mut Vm, more_modules: &[&str], tools: &[&str]) -> Result<(), String> {
    vm.memory_mb = 1024;
    vm.modules(CLUSTER_MODULES)?;
    vm.modules(more_modules)?;
    vm.ipvs_mode_tools()?;
    for (name, built) in [
        ("flanneld", env!("CARGO_BIN_EXE_flanneld")),
        ("podnet-cni", env!("CARGO_BIN_EXE_podnet-cni")),
        ("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy")),
    ] {
        vm.host_program(Path::new(built), &format!("{GUEST_PROGRAM_DIR}/{name}"))?;
    }
    vm.host_tools(tools)?;
    vm.env(PROGRAM_DIR_VAR, GUEST_PROGRAM_DIR);
    Ok(())
}
