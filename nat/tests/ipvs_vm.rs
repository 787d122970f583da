//! IPVS on a real kernel: the `ipvs_kernel` tests run inside a virtual machine with Debian's
//! kernel (this machine's kernel has no IPVS and no dummy links). They are compiled into this
//! program too (module `ipvs_kernel`, where they skip on this kernel), so the guest runs this
//! very program, with the host's C library: no second build.
//!
//! Skips, saying why, only when the VM cannot be had: no qemu (and no way to install it), or
//! no Debian package archive to fetch the kernel from. A failure inside the guest fails this
//! test and prints the guest's console.

#[path = "ipvs_kernel.rs"]
mod ipvs_kernel;
mod support;

use support::vm::Vm;

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

#[test]
fn ipvs_kernel_tests_pass_in_a_vm() {
    let mut vm = match Vm::prepare() {
        Ok(vm) => vm,
        Err(why) => {
            eprintln!("skipped ipvs_kernel_tests_pass_in_a_vm: no VM ({why})");
            return;
        }
    };
    vm.modules(MODULES).expect("kernel modules");
    vm.ipvs_mode_tools()
        .expect("ipvsadm, ipset and iptables for the guest");
    let me = std::env::current_exe().expect("the test's own path");
    vm.host_program(&me, "/test/ipvs_vm")
        .expect("the test program");
    vm.env("PODNET_REQUIRE_IPVS", "1")
        .env("PODNET_REQUIRE_IPVSADM", "1")
        .env("RUST_BACKTRACE", "1");
    let run = vm
        .run(&[
            "/test/ipvs_vm",
            "ipvs_kernel::",
            "--test-threads=1",
            "--nocapture",
        ])
        .expect("qemu runs");
    eprintln!(
        "--- guest console ({:.1} s) ---\n{}\n--- end of guest console ---",
        run.elapsed.as_secs_f64(),
        run.log
    );
    assert!(!run.timed_out, "the VM timed out");
    assert_eq!(run.status, Some(0), "ipvs_kernel failed inside the VM");
    // Every kernel test ran (none skipped for want of IPVS), and none was filtered out.
    assert!(
        run.log.contains("test result: ok. 4 passed; 0 failed"),
        "expected 4 passing tests"
    );
    assert!(!run.log.contains("skipped"), "a test skipped inside the VM");
}
