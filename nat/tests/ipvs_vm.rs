//! IPVS on a real kernel: the `ipvs_kernel` tests, each reported under its own name
//! (`ipvs_kernel::...`). This machine's kernel has no IPVS and no dummy links, so they run
//! inside a virtual machine with Debian's kernel (`support/vm.rs`), all in one boot, this very
//! program running there with the host's C library: no second build. On a host whose kernel
//! has IPVS they run natively (`PODNET_VM=1` asks for the VM anyway). See
//! `support/vm_tests.rs` for how the guest's results are reported here.
//!
//! A `harness = false` test target (`Cargo.toml`), so it takes libtest's arguments
//! (`cargo test -p podnet-nat --test ipvs_vm -- namespaces`). When the VM cannot be had (no
//! qemu and no way to install it, no Debian archive for the kernel) each test skips through
//! `podnet_testsupport::skip`, saying why; a failure inside the guest fails that test and
//! prints the guest's console.

mod ipvs_kernel;
mod support;

use support::vm::{self, Vm};
use support::vm_tests::KernelTests;

/// The other IPVS schedulers (the tests use them all) and veth, besides what
/// [`Vm::ipvs_mode_tools`] adds.
const MODULES: &[&str] = &[
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_sh",
    "ip_vs_dh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_mh",
    "veth",
];

static TESTS: KernelTests = KernelTests {
    program: "ipvs_vm",
    feature: "IPVS",
    tests: ipvs_kernel::TESTS,
    native: kernel_has_ipvs,
    setup,
};

/// The modules and ipvs mode's tools (ipvsadm, ipset, legacy iptables) in the guest.
fn setup(vm: &mut Vm) -> Result<(), String> {
    vm.modules(MODULES)?;
    vm.ipvs_mode_tools()?;
    Ok(())
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
    support::vm_tests::main(&TESTS)
}
