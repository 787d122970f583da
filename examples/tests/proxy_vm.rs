//! kube-proxy's ipvs mode end to end on the simulated cluster, reported as the test
//! `ipvs_mode_on_the_cluster`: two nodes with flanneld (vxlan), pods attached with podnet-cni,
//! kube-proxy in ipvs mode on every node, and the checks the iptables and nftables modes get
//! in `proxy.rs` (ClusterIP from a pod on another node, NodePort from the fabric, session
//! affinity, externalTrafficPolicy Local, a Service without endpoints, an EndpointSlice edit
//! applied within the minimum sync period plus a sync, /metrics).
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

mod kube_proxy_cluster;
#[path = "../../nat/tests/support/vm.rs"]
mod vm;
#[path = "../../nat/tests/support/vm_tests.rs"]
mod vm_tests;

use kube_proxy_cluster::{PROGRAM_DIR_VAR, services_behave, up_mode};
use podnet_testsupport::require_root;
use std::path::Path;
use vm::Vm;
use vm_tests::{KernelTest, KernelTests};

/// The links the cluster builds and the netfilter pieces of flanneld's and podnet-cni's
/// rules, besides what [`Vm::ipvs_mode_tools`] adds for kube-proxy's ipvs mode.
const MODULES: &[&str] = &[
    "veth",
    "bridge",
    "br_netfilter",
    "vxlan",
    "iptable_mangle",
    "xt_nat",
    "xt_multiport",
];

/// Where the guest has the package's programs.
const GUEST_PROGRAM_DIR: &str = "/test/bin";

static TESTS: KernelTests = KernelTests {
    program: "proxy_vm",
    feature: "IPVS",
    tests: &[KernelTest {
        name: "ipvs_mode_on_the_cluster",
        run: ipvs_mode_on_the_cluster,
    }],
    native: kernel_has_ipvs,
    setup,
};

/// The modules, ipvs mode's tools (ipvsadm too, for the failure dump: the IPVS table as the
/// kernel has it), and the cluster's programs at [`GUEST_PROGRAM_DIR`].
fn setup(vm: &mut Vm) -> Result<(), String> {
    // Four programs, the pods' namespaces and kube-proxy's ipsets live in guest memory.
    vm.memory_mb = 1024;
    vm.modules(MODULES)?;
    vm.ipvs_mode_tools()?;
    for (name, built) in [
        ("flanneld", env!("CARGO_BIN_EXE_flanneld")),
        ("podnet-cni", env!("CARGO_BIN_EXE_podnet-cni")),
        ("kube-proxy", env!("CARGO_BIN_EXE_kube-proxy")),
    ] {
        vm.host_program(Path::new(built), &format!("{GUEST_PROGRAM_DIR}/{name}"))?;
    }
    vm.env(PROGRAM_DIR_VAR, GUEST_PROGRAM_DIR);
    Ok(())
}

/// The cluster with kube-proxy in ipvs mode passes every check.
fn ipvs_mode_on_the_cluster() {
    require_root!();
    services_behave(up_mode("kpipvs", "ipvs"), "ipvs");
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
