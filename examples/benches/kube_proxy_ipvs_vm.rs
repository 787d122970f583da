//! kube-proxy's ipvs-mode sync duration against the system tools, inside a VM: this machine's
//! kernel has no IPVS, so Debian's kernel boots under qemu (TCG emulation, so every absolute
//! time is slow; the ratio compares both sides on the same emulated machine).
//!
//! Per size: the objects of `bench/kube-proxy-objects.awk` (ClusterIP Services with one TCP
//! port and one EndpointSlice of 5 ready endpoints each), this build's kube-proxy (with the
//! host's shared libraries), and `bench/kube-proxy-ipvs-guest.sh` driving each round in fresh
//! namespaces of the guest: kube-proxy's first (full) sync and a one-endpoint change, as it
//! reports them in /metrics, and the peer: `ipset restore` + `iptables-legacy-restore` + the
//! jumps (`iptables -I`) + `ipvsadm -R` of kube-proxy's `--dry-run` sections (the peer does
//! not bind the Service addresses to kube-ipvs0, which kube-proxy's sync does). Prints one row
//! per size (medians); `bench/kube-proxy-sync.sh` runs it.
//!
//! `cargo bench -p podnet-examples --bench kube_proxy_ipvs_vm` (as root: qemu is installed
//! when missing; when no VM can be had, it says why through `podnet_testsupport::skip`).
//! `KP_BENCH_SIZES` (default "1000 10000"), `KP_BENCH_REPEAT` (default 3), `KP_BENCH_VM_MB`
//! (guest memory, default 2048). The inputs go into the guest at fixed paths under `/bench`,
//! so the checkout and target directory can be anywhere.

#[path = "../../nat/tests/support/vm.rs"]
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use vm::{Vm, VmError, workspace_root};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The objects for `n` Services under `dir/cfg`, svc0's changed slice as `dir/slice-0.bump`,
/// and kube-proxy's `--dry-run` split into `dir/{ipvs,ipsets,iptables,jumps}.txt`.
fn inputs(dir: &Path, n: usize, kube_proxy: &Path) -> Result<(), String> {
    let awk = workspace_root().join("bench/kube-proxy-objects.awk");
    let cfg = dir.join("cfg");
    let bump = dir.join("bump");
    for d in [&cfg, &bump] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let objects = |d: &Path, bump: u8| {
        run(Command::new("awk")
            .arg("-v")
            .arg(format!("dir={}", d.display()))
            .arg("-v")
            .arg(format!("n={n}"))
            .arg("-v")
            .arg(format!("bump={bump}"))
            .arg("-f")
            .arg(&awk))
    };
    objects(&cfg, 0)?;
    objects(&bump, 1)?;
    std::fs::rename(bump.join("slice-0.json"), dir.join("slice-0.bump"))
        .map_err(|e| e.to_string())?;
    let dry = run(Command::new(kube_proxy)
        .args(["--proxy-mode", "ipvs", "--dry-run", "--hostname-override"])
        .args(["bench-node", "--node-ip", "198.18.0.1", "--config-dir"])
        .arg(&cfg))?;
    let dry = String::from_utf8_lossy(&dry);
    // Sections start with "# IPVS ...", "# ipsets ...", "# iptables ...", "# jumps ...",
    // "# addresses ..." (the addresses are not used: the peer binds none).
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in dry.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            let name = title.split_whitespace().next().unwrap_or("").to_lowercase();
            sections.push((name, String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    for name in ["ipvs", "ipsets", "iptables", "jumps"] {
        let text = sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| {
                format!("kube-proxy --dry-run in ipvs mode printed no {name} section")
            })?;
        let f = dir.join(format!("{name}.txt"));
        std::fs::write(&f, text).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(())
}

struct Row {
    full_ms: f64,
    change_ms: f64,
    peer_ms: f64,
    /// The peer's parts: ipset restore, iptables-legacy-restore, the jumps, ipvsadm -R.
    parts_ms: [f64; 4],
    seconds: f64,
}

fn measure(base: &Vm, kube_proxy: &Path, n: usize, repeat: usize) -> Result<Row, String> {
    let dir = std::env::temp_dir().join(format!("ptest-bench-ipvs-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| {
        inputs(&dir, n, kube_proxy)?;
        let mut vm = base.clone();
        vm.host_program(kube_proxy, "/bench/kube-proxy")?;
        vm.file(
            &workspace_root().join("bench/kube-proxy-ipvs-guest.sh"),
            "/bench/run.sh",
        );
        for f in ["services.json", "slices.json", "slice-0.json"] {
            vm.file(&dir.join("cfg").join(f), &format!("/bench/cfg/{f}"));
        }
        for f in [
            "slice-0.bump",
            "ipvs.txt",
            "ipsets.txt",
            "iptables.txt",
            "jumps.txt",
        ] {
            vm.file(&dir.join(f), &format!("/bench/{f}"));
        }
        let run = vm.run(&["/bench/run.sh", "main", &repeat.to_string()])?;
        if !run.success() {
            return Err(format!(
                "the guest failed (status {:?}, timed out: {}); its console:\n{}",
                run.status, run.timed_out, run.log
            ));
        }
        let (mut full, mut change, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        let mut parts: [Vec<f64>; 4] = Default::default();
        for line in run.log.lines() {
            let Some(rest) = line.trim().strip_prefix("ROUND ") else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| -> Result<f64, String> {
                f.get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad ROUND line: {line}"))
            };
            if f.get(3) != f.get(4) {
                return Err(format!(
                    "kube-proxy and the peer loaded different IPVS tables ({line})"
                ));
            }
            full.push(num(0)? * 1e3);
            change.push(num(1)? * 1e3);
            peer.push(num(2)? / 1e6);
            for (i, p) in parts.iter_mut().enumerate() {
                p.push(num(5 + i)? / 1e6);
            }
        }
        if full.len() != repeat {
            return Err(format!(
                "expected {repeat} rounds, got {}; console:\n{}",
                full.len(),
                run.log
            ));
        }
        Ok(Row {
            full_ms: median(full),
            change_ms: median(change),
            peer_ms: median(peer),
            parts_ms: parts.map(median),
            seconds: run.elapsed.as_secs_f64(),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    let sizes: Vec<usize> = env_or("KP_BENCH_SIZES", "1000 10000")
        .split_whitespace()
        .map(|s| s.parse().expect("KP_BENCH_SIZES: numbers"))
        .collect();
    let repeat: usize = env_or("KP_BENCH_REPEAT", "3")
        .parse()
        .expect("KP_BENCH_REPEAT: a number");
    let mut vm = match Vm::prepare() {
        Ok(vm) => vm,
        Err(VmError::Unavailable { cause, reason }) => {
            println!("ipvs: skipped, no VM ({reason})");
            return podnet_testsupport::skip("kube_proxy_ipvs_vm", cause, &reason);
        }
        Err(VmError::Failed(why)) => panic!("preparing the VM: {why}"),
    };
    vm.memory_mb = env_or("KP_BENCH_VM_MB", "2048")
        .parse()
        .expect("KP_BENCH_VM_MB: a number");
    vm.timeout = std::time::Duration::from_secs(3 * 3600);
    let kube_proxy = PathBuf::from(env!("CARGO_BIN_EXE_kube-proxy"));
    if let Err(why) = vm.ipvs_mode_tools() {
        panic!("preparing the VM: {why}");
    }
    for n in sizes {
        match measure(&vm, &kube_proxy, n, repeat) {
            Ok(r) => println!(
                "{:<16} {:>8} {:>12.1} {:>12.1} {:>12.1} {:>7.2}x {:>13.1}%  (peer: ipset {:.0} + \
                 iptables {:.0} + jumps {:.0} + ipvsadm {:.0} ms; VM ran {:.0} s)",
                "ipvs (VM)",
                n,
                r.full_ms,
                r.change_ms,
                r.peer_ms,
                r.full_ms / r.peer_ms,
                100.0 * r.change_ms / r.full_ms,
                r.parts_ms[0],
                r.parts_ms[1],
                r.parts_ms[2],
                r.parts_ms[3],
                r.seconds
            ),
            Err(e) => panic!("ipvs at {n} services: {e}"),
        }
    }
}
