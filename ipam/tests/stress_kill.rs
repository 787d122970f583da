//! Stress: 16 processes x 100 allocations on one range, with random SIGKILLs. No address may
//! ever be handed to two containers, and after GC no lease may be left for a dead container.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podnet_ipam::{IpamConfig, PodAllocator};

const PROCS: usize = 16;
const PER_PROC: usize = 100;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

type Seen = Arc<Mutex<HashMap<String, HashSet<String>>>>;

fn spawn(slot: usize, conf: &std::path::Path, seen: &Seen) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet-host-local"))
        .arg("alloc-loop")
        .arg(conf)
        .arg(format!("s{slot}"))
        .arg(PER_PROC.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn podnet-host-local");
    let out = child.stdout.take().unwrap();
    let seen = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let Some((id, ips)) = line.split_once(' ') else {
                continue;
            };
            for ip in ips.split(',') {
                seen.lock()
                    .unwrap()
                    .entry(ip.to_string())
                    .or_default()
                    .insert(id.to_string());
            }
        }
    });
    child
}

/// Kills the children when dropped, also when the test panics.
struct Kids(Vec<Option<Child>>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn sixteen_processes_with_random_sigkills() {
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("net.json");
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"stress","ipam":{{"type":"host-local","dataDir":{:?},"subnet":"10.40.0.0/21"}}}}"#,
        d.path().display().to_string()
    );
    std::fs::write(&conf, &text).unwrap();
    let seen: Seen = Arc::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut kids = Kids((0..PROCS).map(|s| Some(spawn(s, &conf, &seen))).collect());
    let children = &mut kids.0;
    let mut kills = 0;
    let start = Instant::now();
    loop {
        // Reap finished children.
        let mut running = Vec::new();
        for (slot, c) in children.iter_mut().enumerate() {
            if let Some(child) = c {
                match child.try_wait().unwrap() {
                    Some(status) => {
                        assert!(status.success(), "slot {slot} failed: {status}");
                        *c = None;
                    }
                    None => running.push(slot),
                }
            }
        }
        if running.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "stress test took too long"
        );
        std::thread::sleep(Duration::from_millis(2 + rng.next() % 25));
        if kills < 60 {
            let slot = running[(rng.next() % running.len() as u64) as usize];
            let mut child = children[slot].take().unwrap();
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            kills += 1;
            children[slot] = Some(spawn(slot, &conf, &seen));
        }
    }
    std::thread::sleep(Duration::from_millis(100)); // let the readers drain
    eprintln!("{kills} SIGKILLs in {:?}", start.elapsed());
    assert!(kills >= 20, "only {kills} kills happened");

    // No address was ever reported to two containers.
    let seen = seen.lock().unwrap();
    for (ip, ids) in seen.iter() {
        assert_eq!(ids.len(), 1, "{ip} handed to {ids:?}");
    }
    // Every container holds exactly one address, the one it was told.
    let alloc = PodAllocator::open(IpamConfig::parse(&text).unwrap()).unwrap();
    let leases = alloc.leases().unwrap();
    let mut by_id: HashMap<&str, Vec<String>> = HashMap::new();
    for l in &leases {
        by_id
            .entry(&l.container_id)
            .or_default()
            .push(l.ip.to_string());
    }
    assert_eq!(by_id.len(), PROCS * PER_PROC);
    for (id, ips) in &by_id {
        assert_eq!(ips.len(), 1, "{id} holds {ips:?}");
        assert!(
            seen.get(&ips[0]).is_some_and(|s| s.contains(*id)),
            "{id} was not told {}",
            ips[0]
        );
    }

    // GC with half the containers alive: only theirs remain, and nothing else is left over.
    let live: Vec<(String, &str)> = (0..PROCS)
        .flat_map(|s| {
            (0..PER_PROC)
                .filter(|i| i % 2 == 0)
                .map(move |i| (format!("s{s}-{i}"), "eth0"))
        })
        .collect();
    let report = alloc
        .gc(live.iter().map(|(a, b)| (a.as_str(), *b)))
        .unwrap();
    assert_eq!(report.kept, live.len());
    let left: HashSet<String> = alloc
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| l.container_id)
        .collect();
    let want: HashSet<String> = live.iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(left, want);
    let stray: Vec<String> = std::fs::read_dir(alloc.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.parse::<std::net::IpAddr>().is_err()
                && n != "lock"
                && !n.starts_with("last_reserved_ip.")
        })
        .collect();
    assert!(stray.is_empty(), "left over: {stray:?}");
    alloc.gc(std::iter::empty::<(&str, &str)>()).unwrap();
    assert!(alloc.leases().unwrap().is_empty());
}
