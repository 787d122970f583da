//! kube-proxy's ipvs mode end to end on the simulated cluster, inside a virtual machine: this
//! machine's kernel has no IPVS, so Debian's kernel is booted under qemu (the harness of
//! `nat/tests/support/vm.rs`) and this very test program runs its `ipvs_mode_on_the_cluster`
//! test there (with the package's binaries and the host's C library; no second build): two
//! nodes with flanneld (vxlan), pods attached with podnet-cni, kube-proxy in ipvs mode on every
//! node, and the checks the iptables and nftables modes get in `proxy.rs` (ClusterIP from a
//! pod on another node, NodePort from the fabric, session affinity, externalTrafficPolicy
//! Local, a Service without endpoints, an EndpointSlice edit applied within the minimum sync
//! period plus a sync, /metrics).
//!
//! Skips, saying why, only when the VM cannot be had (no qemu and no way to install it, no
//! Debian archive for the kernel). A failure inside the guest fails this test and prints the
//! guest's console.

mod kube_proxy_cluster;
#[path = "../../nat/tests/support/vm.rs"]
mod vm;

use kube_proxy_cluster::{services_behave, up_mode};
use podnet_testsupport::require_root;
use std::path::Path;
use vm::Vm;

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

#[test]
fn ipvs_mode_runs_on_the_cluster_in_a_vm() {
    let mut vm = match Vm::prepare() {
        Ok(vm) => vm,
        Err(why) => {
            eprintln!("skipped ipvs_mode_runs_on_the_cluster_in_a_vm: no VM ({why})");
            return;
        }
    };
    // Four programs, the pods' namespaces and kube-proxy's ipsets live in guest memory.
    vm.memory_mb = 1024;
    vm.modules(MODULES).expect("kernel modules");
    // ipvsadm too, for the failure dump: the IPVS table as the kernel has it.
    vm.ipvs_mode_tools()
        .expect("ipvsadm, ipset and iptables for the guest");
    // This program, and the binaries it runs the cluster with, where it expects them.
    let me = std::env::current_exe().expect("the test's own path");
    vm.host_program(&me, "/test/proxy_vm")
        .expect("the test program");
    for bin in [
        env!("CARGO_BIN_EXE_flanneld"),
        env!("CARGO_BIN_EXE_podnet-cni"),
        env!("CARGO_BIN_EXE_kube-proxy"),
    ] {
        vm.host_program(Path::new(bin), bin)
            .expect("a cluster binary");
    }
    vm.env("PODNET_REQUIRE_IPVS", "1")
        .env("RUST_BACKTRACE", "1");
    let run = vm
        .run(&[
            "/test/proxy_vm",
            "ipvs_mode_on_the_cluster",
            "--exact",
            "--nocapture",
        ])
        .expect("qemu runs");
    eprintln!(
        "--- guest console ({:.1} s) ---\n{}\n--- end of guest console ---",
        run.elapsed.as_secs_f64(),
        run.log
    );
    assert!(!run.timed_out, "the VM timed out");
    assert_eq!(
        run.status,
        Some(0),
        "the ipvs-mode test failed inside the VM"
    );
    assert!(
        run.log.contains("test result: ok. 1 passed; 0 failed"),
        "expected the one test to pass"
    );
    assert!(
        !run.log.contains("skipped"),
        "the test skipped inside the VM"
    );
}

/// The guest's side: runs where the kernel has IPVS (inside the VM above; skips elsewhere).
#[test]
fn ipvs_mode_on_the_cluster() {
    require_root!();
    // ip_vs makes /proc/net/ip_vs in every namespace once it is loaded (or built in).
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        assert!(
            std::env::var_os("PODNET_REQUIRE_IPVS").is_none(),
            "PODNET_REQUIRE_IPVS is set, but this kernel has no IPVS"
        );
        eprintln!(
            "skipped ipvs_mode_on_the_cluster: this kernel has no IPVS (the test above runs it in a VM)"
        );
        return;
    }
    services_behave(up_mode("kpipvs", "ipvs"), "ipvs");
}
