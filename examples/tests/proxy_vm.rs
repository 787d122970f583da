//! kube-proxy's ipvs mode in a VM whose kernel has IPVS, as two tests:
//!
//! - `ipvs_mode_on_the_cluster`, end to end on the simulated cluster: two nodes with flanneld
//!   (vxlan), pods attached with podnet-cni, kube-proxy in ipvs mode on every node, and the checks the iptables and nftables modes get
//!   in `proxy.rs` (ClusterIP from a pod on another node, NodePort from the fabric, session
//!   affinity, externalTrafficPolicy Local, a Service without endpoints, an EndpointSlice edit
//!   applied within the minimum sync period plus a sync, /metrics);
//! - `ipvs_kube_proxy_on_a_foreign_host`: the foreign-host run of `foreign_host.rs` (see
//!   `foreign_node`) with kube-proxy in ipvs mode: other agents' iptables rules and nftables
//!   table stay byte for byte through flanneld, podnet-cni, kube-proxy syncs, restarts and
//!   `--cleanup`, which leaves no IPVS virtual server, ipset or `kube-ipvs0` behind.
//!
//! This machine's kernel has no IPVS, so the test runs inside a virtual machine with Debian's
//! kernel (the harness of `nat/tests/support/vm.rs` and `vm_tests.rs`): this very program runs
//! there, with the package's binaries at fixed guest paths (`/test/bin`, named to the test by
//! `PODNET_TEST_PROGRAM_DIR`) and the host's C library; no second build. On a host whose kernel
//! has IPVS it runs natively (`PODNET_VM=1` asks for the VM anyway).
//!
//! A `harness = false` test target (`Cargo.toml`). When the VM cannot be had (no qemu and no
//! way to install it, no Debian archive for the kernel) the test skips through
//! `podnet_testsupport::skip`, saying why; a failure inside the guest fails it and prints the
//! guest's console.

mod foreign_node;
mod kube_proxy_cluster;
#[path = "../../nat/tests/support/vm.rs"]
mod vm;
mod vm_cluster;
#[path = "../../nat/tests/support/vm_tests.rs"]
mod vm_tests;

use kube_proxy_cluster::{services_behave, up_mode};
use podnet_testsupport::require_root;
use vm::Vm;
use vm_tests::{KernelTest, KernelTests};

/// The modules besides the cluster's and ipvs mode's ([`vm_cluster::setup`]).
const MODULES: &[&str] = &[
    // The foreign host's rules: a distribution's INPUT rules (`-m state`) and firewalld's
    // nftables table (`ct state`, a nat chain).
    "xt_state",
    "nf_tables",
    "nft_ct",
    "nft_chain_nat",
];

/// Programs the foreign-host test runs that busybox lacks or has only in part (`ip link add
/// ... netns`, `nft`), taken from this machine with their libraries.
const HOST_TOOLS: &[&str] = &["ip", "nft"];

static TESTS: KernelTests = KernelTests {
    program: "proxy_vm",
    feature: "IPVS",
    tests: &[
        KernelTest {
            name: "ipvs_mode_on_the_cluster",
            run: ipvs_mode_on_the_cluster,
        },
        KernelTest {
            name: "ipvs_kube_proxy_on_a_foreign_host",
            run: ipvs_kube_proxy_on_a_foreign_host,
        },
    ],
    native: kernel_has_ipvs,
    setup,
};

/// The modules, ipvs mode's tools (ipvsadm too, for the failure dump: the IPVS table as the
/// kernel has it), [`HOST_TOOLS`] and the cluster's programs.
fn setup(vm: &mut Vm) -> Result<(), String> {
    vm_cluster::setup(vm, MODULES, HOST_TOOLS)
}

/// The cluster with kube-proxy in ipvs mode passes every check.
fn ipvs_mode_on_the_cluster() {
    require_root!();
    services_behave(up_mode("kpipvs", "ipvs"), "ipvs");
}

/// Other agents' rules survive kube-proxy's ipvs mode, and its `--cleanup` leaves none of its
/// own.
fn ipvs_kube_proxy_on_a_foreign_host() {
    require_root!();
    foreign_node::every_binary_keeps_the_foreign_host_intact("fh-ipvs", "vxlan", "ipvs");
}

/// `true` when this kernel has IPVS (a namespace of our own can open it; asking loads the
/// module where IPVS is one). Needs root; without it, `false` (the VM needs no root).
fn kernel_has_ipvs() -> bool {
    if !vm::is_root() {
        return false;
    }
    let ns = podnet_testsupport::TestNs::new("ipvs-probe");
    podnet_nat::ipvs::Ipvs::in_ns(&ns).is_ok()
}

fn main() {
    vm_tests::main(&TESTS)
}
