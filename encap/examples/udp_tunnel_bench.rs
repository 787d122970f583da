//! The UDP tunnel's benchmark (run it with `bench/udp-tunnel.sh`, as root): iperf3 TCP, one
//! stream, pod to pod across two nodes, in one run over
//!
//! - (a) a plain routed veth path, no encapsulation (the limit),
//! - (b) kernel VXLAN programmed by podnet-links (flannel's vxlan backend),
//! - (c) podnet's `UdpTunnel`, every optimisation on,
//! - (d) `UdpTunnel` one packet per system call without offloads (flannel's C proxy's way),
//!
//! and prints Gbit/s for each and the ratios c/b (goal >= 0.9, issue 23) and c/d, with the
//! 1-minute load average before and after each run (the machine is shared: compare within one
//! run). Every path is built in fresh namespaces (see `tests/common/twonodes.rs`); nothing
//! touches the root namespace.
//!
//! Options: `--seconds N` (default 10), `--queues N` for (c) (default 1: one TCP stream uses
//! one queue), `--only abcd`, `--repeat N` (runs the set N times, interleaved), `--verbose`
//! (the TUN devices' and UDP sockets' kernel counters after each tunnel run), `--no-verify`
//! (no TCP checksum check before coalescing). For (c) and (d) it also prints, for each node's
//! worker thread, its CPU time per GB moved (softirq work the kernel runs in its system calls
//! included), how often it slept in poll and how often the scheduler preempted it (a worker
//! preempted more often than it sleeps is short of CPU).

#[path = "../tests/common/twonodes.rs"]
mod twonodes;

use podnet_encap::tunnel::{Counters, Mode, UdpTunnel};
use std::time::Duration;
use twonodes::{POD_IP, TwoNodes, UNDERLAY_MTU};

struct Opts {
    seconds: u32,
    queues: u32,
    only: String,
    repeat: u32,
    verbose: bool,
    no_verify: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 10,
        queues: 1,
        only: "abcd".into(),
        repeat: 1,
        verbose: false,
        no_verify: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = v.parse().expect("--seconds N"),
            "--queues" => o.queues = v.parse().expect("--queues N"),
            "--only" => o.only = v,
            "--repeat" => o.repeat = v.parse().expect("--repeat N"),
            "--no-verify" => {
                o.no_verify = true;
                i += 1;
                continue;
            }
            "--verbose" => {
                o.verbose = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}; see the file's documentation"),
        }
        i += 2;
    }
    o
}

/// Runs iperf3 from pod 1 to pod 2 and returns the receiver's Gbit/s.
fn iperf(n: &TwoNodes, seconds: u32) -> f64 {
    let server_ip = POD_IP[1].to_string();
    let mut server = n.pods[1]
        .command("iperf3")
        .args(["-s", "-1", "-B", &server_ip])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    // Wait for the server to listen.
    std::thread::sleep(Duration::from_millis(300));
    let out = n.pods[0]
        .command("iperf3")
        .args([
            "-c",
            &server_ip,
            "-t",
            &seconds.to_string(),
            "-f",
            "g",
            "--connect-timeout",
            "3000",
        ])
        .output()
        .expect("run iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("receiver"))
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "Gbits/sec")?;
            words.get(at.checked_sub(1)?)?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no iperf3 result: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// One tunnel worker thread's CPU time (user and system, seconds) and context switches
/// (voluntary: it slept in poll; involuntary: the scheduler preempted it).
#[derive(Debug, Clone, Copy, Default)]
struct ThreadStat {
    tid: u64,
    cpu: f64,
    voluntary: u64,
    involuntary: u64,
}

/// The tunnel's worker threads in this process, by thread id (node 1's tunnel starts first).
fn worker_threads() -> Vec<ThreadStat> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with("podnet-tunnel") {
            continue;
        }
        let tid = e.file_name().to_string_lossy().parse().unwrap_or(0);
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the name: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
            .sum();
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        v.push(ThreadStat {
            tid,
            cpu: ticks as f64 / 100.0,
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        });
    }
    v.sort_by_key(|t| t.tid);
    v
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What each worker thread did between `before` and `after`, one line each.
fn threads_report(before: &[ThreadStat], after: &[ThreadStat], gbytes: f64) -> String {
    after
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let b = before
                .iter()
                .find(|b| b.tid == a.tid)
                .copied()
                .unwrap_or_default();
            format!(
                "   worker {} (node{}): CPU {:.2} s ({:.3} CPU-s per GB), {} sleeps, {} preemptions",
                a.tid,
                i + 1,
                a.cpu - b.cpu,
                (a.cpu - b.cpu) / gbytes.max(1e-9),
                a.voluntary - b.voluntary,
                a.involuntary - b.involuntary
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tunnel_report(t: &[UdpTunnel; 2]) -> String {
    let c: [Counters; 2] = [t[0].counters(), t[1].counters()];
    format!(
        "sender {} packets in {} sends ({:.1}/call), {} TUN reads; receiver {} packets in {} \
         receives, {} TUN writes; drops {} / {}",
        c[0].tx_packets,
        c[0].tx_syscalls,
        c[0].tx_packets as f64 / c[0].tx_syscalls.max(1) as f64,
        c[0].tun_reads,
        c[1].rx_packets,
        c[1].rx_syscalls,
        c[1].tun_writes,
        c[0].total_dropped(),
        c[1].total_dropped()
    )
}

fn run(which: char, o: &Opts) -> f64 {
    match which {
        'a' => {
            let n = TwoNodes::new("bench-veth", UNDERLAY_MTU);
            n.plain_routes();
            iperf(&n, o.seconds)
        }
        'b' => {
            let n = TwoNodes::new("bench-vxlan", UNDERLAY_MTU - 50);
            n.vxlan();
            iperf(&n, o.seconds)
        }
        'c' | 'd' => {
            let (mode, queues, tag) = if which == 'c' {
                (Mode::Fast, o.queues, "bench-tun")
            } else {
                (Mode::OnePacketPerSyscall, 1, "bench-tun1")
            };
            let n = TwoNodes::new(tag, UNDERLAY_MTU - 28);
            let t = n.udp_tunnels_with(mode, queues, !o.no_verify);
            let before = worker_threads();
            let g = iperf(&n, o.seconds);
            let after = worker_threads();
            let cpu: f64 = after.iter().map(|t| t.cpu).sum::<f64>()
                - before.iter().map(|t| t.cpu).sum::<f64>();
            let gbytes = g * f64::from(o.seconds) / 8.0;
            eprintln!(
                "   ({which}) {}; workers' CPU {cpu:.2} s, {:.3} CPU-s per GB\n{}",
                tunnel_report(&t),
                cpu / gbytes,
                threads_report(&before, &after, gbytes)
            );
            if o.verbose {
                for (i, node) in n.nodes.iter().enumerate() {
                    let link = node.exec("ip", &["-s", "link", "show", "flannel0"]);
                    let snmp = node.exec("cat", &["/proc/net/snmp"]);
                    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
                    eprintln!(
                        "   node{}: {}\n   {}",
                        i + 1,
                        link.trim(),
                        udp.join("\n   ")
                    );
                }
                let tcp = n.pods[0].exec("cat", &["/proc/net/snmp"]);
                let t: Vec<&str> = tcp.lines().filter(|l| l.starts_with("Tcp:")).collect();
                eprintln!("   pod1 {}", t.join("\n   pod1 "));
            }
            let [x, y] = t;
            x.stop().expect("stop tunnel");
            y.stop().expect("stop tunnel");
            g
        }
        other => panic!("unknown path {other}"),
    }
}

fn main() {
    let o = opts();
    let names = [
        ('a', "plain veth (the limit)"),
        ('b', "kernel VXLAN (podnet-links)"),
        ('c', "UdpTunnel, all optimisations"),
        ('d', "UdpTunnel, 1 packet/syscall, no offloads"),
    ];
    let mut results: Vec<(char, Vec<f64>)> = names
        .iter()
        .filter(|(c, _)| o.only.contains(*c))
        .map(|(c, _)| (*c, Vec::new()))
        .collect();
    let mut loads = vec![loadavg()];
    for round in 0..o.repeat {
        for (which, list) in results.iter_mut() {
            eprintln!(
                "== round {} ({which}) iperf3 -t {} ...",
                round + 1,
                o.seconds
            );
            let load0 = loadavg();
            let g = run(*which, &o);
            let load1 = loadavg();
            loads.extend([load0, load1]);
            eprintln!(
                "   ({which}) {g:.2} Gbit/s (load average {load0:.1} before, {load1:.1} after)"
            );
            list.push(g);
        }
    }
    println!(
        "iperf3 TCP, 1 stream, {} s, pod to pod across two nodes (median of {} run{}):",
        o.seconds,
        o.repeat,
        if o.repeat == 1 { "" } else { "s" }
    );
    let (lo, hi) = loads
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
    println!("  (1-minute load average between {lo:.1} and {hi:.1} during the run)");
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut m = std::collections::BTreeMap::new();
    for (c, list) in &results {
        let g = median(list);
        m.insert(*c, g);
        let name = names
            .iter()
            .find(|(x, _)| x == c)
            .map(|x| x.1)
            .unwrap_or("");
        println!("  ({c}) {name:<42} {g:>7.2} Gbit/s");
    }
    if let (Some(c), Some(b)) = (m.get(&'c'), m.get(&'b')) {
        let r = c / b;
        println!(
            "  c/b = {r:.2}  (goal >= 0.90: {})",
            if r >= 0.9 { "met" } else { "NOT met" }
        );
    }
    if let (Some(c), Some(d)) = (m.get(&'c'), m.get(&'d')) {
        println!("  c/d = {:.2}", c / d);
    }
}
