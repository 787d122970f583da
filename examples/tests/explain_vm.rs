//! The ipvs-mode recording of `explain`, made where IPVS exists: this machine's kernel has none,
//! so the test boots Debian's kernel under qemu (the harness of `nat/tests/support/vm.rs`, as
//! `proxy_vm.rs` uses it), runs this very program there, and in the guest brings up the
//! simulated cluster (two nodes, vxlan, two pods each, kube-proxy in ipvs mode on every node,
//! the Services of `kube_proxy_cluster::SERVICES`), walks it with `explain` and records the
//! walks. The recording comes back on the serial console (in marked lines) and is checked on
//! the host with the same checks `explain_recorded.rs` runs on the committed fixture
//! (`fixtures/explain/vxlan-ipvs.json`); with `PODNET_EXPLAIN_RECORD=1` it is written over that
//! fixture.
//!
//! When the VM cannot be had (no qemu and no way to install it, no Debian archive), the test
//! skips through `podnet_testsupport::skip`, saying why; a failure in the guest fails it and
//! prints the guest's console.

mod explain_ipvs;
mod kube_proxy_cluster;
#[path = "../../nat/tests/support/vm.rs"]
mod vm;
mod vm_cluster;

use podnet_examples::explain::{Choice, Packet, Proto, Recording, Topology};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vm::{Vm, VmError};

/// Set in the guest: this program records there.
const GUEST_VAR: &str = "PODNET_EXPLAIN_VM_GUEST";
/// The marker of the console lines that carry the recording (JSON, in pieces).
const REC_MARK: &str = "PODNET-EXPLAIN-REC ";
/// The modules besides the cluster's and ipvs mode's: nftables, for the recording's `nft`.
const MODULES: &[&str] = &["nf_tables"];

#[test]
fn ipvs_mode_recording() {
    if std::env::var(GUEST_VAR).as_deref() == Ok("1") {
        return guest();
    }
    let test = "ipvs_mode_recording";
    let mut vm = match Vm::prepare() {
        Ok(vm) => vm,
        Err(VmError::Unavailable { cause, reason }) => {
            return podnet_testsupport::skip(test, cause, &reason);
        }
        Err(VmError::Failed(why)) => panic!("the VM could not be prepared: {why}"),
    };
    setup(&mut vm).expect("preparing the VM");
    let run = vm
        .run(&[
            "/test/explain_vm",
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .expect("running qemu");
    assert!(
        run.success(),
        "the guest failed (status {:?}, {:.0} s):\n{}",
        run.status,
        run.elapsed.as_secs_f64(),
        run.log
    );
    let json: String = run
        .log
        .lines()
        .filter_map(|l| l.strip_prefix(REC_MARK))
        .collect();
    let rec: Recording = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the recording from the guest: {e}\n{}", run.log));
    explain_ipvs::check(&rec);
    if std::env::var("PODNET_EXPLAIN_RECORD").as_deref() == Ok("1") {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(explain_ipvs::FIXTURE);
        rec.save(&path).expect("writing the fixture");
        eprintln!("recorded {}", path.display());
    }
}

/// The cluster's setup with `ip` and `nft` from this machine, and this program.
fn setup(vm: &mut Vm) -> Result<(), String> {
    vm_cluster::setup(vm, MODULES, &["ip", "nft"])?;
    vm.timeout = Duration::from_secs(900);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    vm.host_program(&me, "/test/explain_vm")?;
    vm.env(GUEST_VAR, "1").env("RUST_BACKTRACE", "1");
    Ok(())
}

/// In the guest: the cluster up in ipvs mode, echo servers in every pod, the walks recorded
/// and printed.
fn guest() {
    podnet_testsupport::require_root!();
    let g = kube_proxy_cluster::up_mode("xipvs", "ipvs");
    let c = g.0.as_ref().expect("cluster");
    let _servers: Vec<_> = c
        .pods
        .iter()
        .map(|p| {
            podnet_examples::cluster::EchoServer::start_named(&p.ns, 7777, &p.label()).unwrap()
        })
        .collect();
    let prefix = c.opts.prefix.clone();
    let topo = Topology::cluster(&prefix).expect("topology");
    wait_for_real_servers(&topo);
    let node2_pod = topo.resolve("node2-pod1").expect("node2-pod1's address");
    let node1 = c.nodes[0].ip;
    let tcp = |dst: Ipv4Addr, port: u16| Packet::new(Proto::Tcp, dst).port(port);
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let walks = [
        (
            "node1-pod1",
            tcp(vip, 80),
            Choice::Prefer(vec![node2_pod.to_string()]),
        ),
        ("node1-pod1", tcp(vip, 80), Choice::First),
        (
            "node1-pod1",
            tcp(Ipv4Addr::new(10, 96, 0, 13), 80),
            Choice::First,
        ),
        (
            "fabric",
            tcp(node1, 30080),
            Choice::Prefer(vec![node2_pod.to_string()]),
        ),
        (
            "node1",
            tcp(vip, 80),
            Choice::Prefer(vec![node2_pod.to_string()]),
        ),
        (
            "node1-pod1",
            Packet::new(Proto::Icmp, node2_pod),
            Choice::First,
        ),
    ];
    let rec = topo.record(&walks).expect("recording");
    explain_ipvs::check(&rec);
    let json = serde_json::to_string(&rec).expect("json");
    let chars: Vec<char> = json.chars().collect();
    let mut out = String::new();
    for piece in chars.chunks(512) {
        out.push_str(REC_MARK);
        out.extend(piece);
        out.push('\n');
    }
    print!("{out}");
}

/// kube-proxy's first sync can come after `up`: wait until node1 has the echo Service's real
/// servers on both nodes.
fn wait_for_real_servers(topo: &Topology) {
    let start = Instant::now();
    loop {
        let rec = topo.record(&[]).expect("reading the cluster");
        let node1 = rec.namespaces.iter().find(|n| n.label == "node1");
        let n = node1
            .and_then(|n| {
                n.ipvs
                    .iter()
                    .find(|s| s.addr.is_some_and(|a| a.to_string() == "10.96.0.10:80"))
            })
            .map_or(0, |s| s.dests.len());
        if n >= 4 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node1 has {n} real servers for 10.96.0.10:80 after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
