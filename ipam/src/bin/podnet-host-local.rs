//! `podnet-host-local`: a drop-in for the CNI host-local IPAM plugin, backed by podnet-ipam.
//!
//! As a CNI plugin it reads the network config on stdin and `CNI_COMMAND`, `CNI_CONTAINERID`,
//! `CNI_IFNAME` (and `IP=` in `CNI_ARGS`) from the environment, like host-local: ADD, DEL,
//! CHECK, VERSION, and CNI 1.1's STATUS and GC (`cni.dev/valid-attachments`).
//!
//! Two more modes serve the crate's tests and benchmark:
//! - `podnet-host-local alloc-loop <config.json> <id-prefix> <count>`: allocates to containers
//!   `<id-prefix>-0` .. `<id-prefix>-<count-1>` (interface `eth0`), printing `<id> <ips>` per
//!   allocation once it is on disk.
//! - `podnet-host-local bench <config.json> <count>`: allocates `count` addresses in-process
//!   and prints the rate.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Instant;

use podnet_ipam::{AllocError, IpamConfig, PodAllocator};
use serde_json::json;

const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("alloc-loop") if args.len() == 5 => alloc_loop(&args[2], &args[3], &args[4]),
        Some("bench") if args.len() == 4 => bench(&args[2], &args[3]),
        Some("--version") | Some("version") => {
            println!("podnet-host-local {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!(
                "unknown mode {other:?}; run as a CNI plugin (CNI_COMMAND=...), or: alloc-loop <config> <id-prefix> <count> | bench <config> <count>"
            );
            ExitCode::from(2)
        }
        None => cni(),
    }
}

fn open(path: &str) -> Result<PodAllocator, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let config = IpamConfig::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    PodAllocator::open(config).map_err(|e| e.to_string())
}

fn alloc_loop(config: &str, prefix: &str, count: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let alloc = open(config)?;
        let count: usize = count.parse().map_err(|_| format!("bad count {count:?}"))?;
        let stdout = io::stdout();
        for i in 0..count {
            let id = format!("{prefix}-{i}");
            let got = alloc.allocate(&id, "eth0").map_err(|e| e.to_string())?;
            let ips: Vec<String> = got.iter().map(|a| a.address.addr().to_string()).collect();
            let mut out = stdout.lock();
            writeln!(out, "{id} {}", ips.join(",")).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alloc-loop: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(config: &str, count: &str) -> ExitCode {
    let run = || -> Result<(), String> {
        let alloc = open(config)?;
        let count: usize = count.parse().map_err(|_| format!("bad count {count:?}"))?;
        let t = Instant::now();
        for i in 0..count {
            alloc
                .allocate(&format!("bench-{i}"), "eth0")
                .map_err(|e| e.to_string())?;
        }
        let alloc_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..count {
            alloc
                .release(&format!("bench-{i}"), "eth0")
                .map_err(|e| e.to_string())?;
        }
        let release_s = t.elapsed().as_secs_f64();
        println!(
            "in-process: {count} allocations in {alloc_s:.3} s = {:.0} allocations/s; {count} releases in {release_s:.3} s = {:.0} releases/s",
            count as f64 / alloc_s,
            count as f64 / release_s
        );
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct CniError {
    code: u32,
    msg: String,
}

impl From<AllocError> for CniError {
    fn from(e: AllocError) -> Self {
        let code = match e {
            AllocError::Config(podnet_ipam::ConfigError::NotJson { .. }) => 6,
            AllocError::Config(_) => 7,
            _ => 999,
        };
        CniError {
            code,
            msg: e.to_string(),
        }
    }
}

fn env(name: &str) -> Result<String, CniError> {
    std::env::var(name).map_err(|_| CniError {
        code: 4,
        msg: format!("required env variable {name} missing"),
    })
}

fn cni() -> ExitCode {
    let mut stdin = String::new();
    let _ = io::stdin().read_to_string(&mut stdin);
    let version = serde_json::from_str::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "1.0.0".to_string());
    match cni_run(&stdin, &version) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!(
                "{}",
                json!({"cniVersion": version, "code": e.code, "msg": e.msg})
            );
            ExitCode::FAILURE
        }
    }
}

fn cni_run(stdin: &str, version: &str) -> Result<Option<String>, CniError> {
    let command = env("CNI_COMMAND")?;
    if command == "VERSION" {
        return Ok(Some(
            json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED}).to_string(),
        ));
    }
    let config = IpamConfig::parse(stdin).map_err(AllocError::from)?;
    match command.as_str() {
        // CNI 1.1: no container; GC keeps the leases of the attachments still valid.
        "STATUS" => return Ok(None),
        "GC" => {
            let live: Vec<(String, String)> = serde_json::from_str::<serde_json::Value>(stdin)
                .ok()
                .and_then(|v| v.get("cni.dev/valid-attachments").cloned())
                .and_then(|a| a.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|a| {
                    let id = a.get("containerID")?.as_str()?;
                    let ifname = a.get("ifname")?.as_str()?;
                    Some((id.to_string(), ifname.to_string()))
                })
                .collect();
            PodAllocator::open(config)?.gc(live)?;
            return Ok(None);
        }
        _ => {}
    }
    let id = env("CNI_CONTAINERID")?;
    let ifname = env("CNI_IFNAME")?;
    let alloc = PodAllocator::open(config)?;
    match command.as_str() {
        "ADD" => {
            let requested: Vec<IpAddr> = std::env::var("CNI_ARGS")
                .unwrap_or_default()
                .split(';')
                .filter_map(|kv| kv.strip_prefix("IP="))
                .filter_map(|v| v.parse().ok())
                .collect();
            let got = alloc.allocate_with(&id, &ifname, &requested)?;
            let old = !version.starts_with('1');
            let ips: Vec<serde_json::Value> = got
                .iter()
                .map(|a| {
                    let mut v =
                        json!({"address": a.address.to_string(), "gateway": a.gateway.to_string()});
                    if old {
                        v["version"] = json!(if a.address.addr().is_ipv4() { "4" } else { "6" });
                    }
                    v
                })
                .collect();
            let mut result = json!({"cniVersion": version, "ips": ips, "dns": {}});
            if !alloc.config().routes.is_empty() {
                result["routes"] = json!(alloc.config().routes);
            }
            Ok(Some(
                serde_json::to_string_pretty(&result).unwrap_or_default(),
            ))
        }
        "DEL" => {
            alloc.release(&id, &ifname)?;
            Ok(None)
        }
        "CHECK" => {
            let found = alloc.leases()?.iter().any(|l| {
                l.container_id == id.trim() && l.ifname.as_deref().is_none_or(|i| i == ifname)
            });
            if found {
                Ok(None)
            } else {
                Err(CniError {
                    code: 999,
                    msg: format!(
                        "podnet-host-local: failed to find address added by container {id}"
                    ),
                })
            }
        }
        other => Err(CniError {
            code: 4,
            msg: format!("unknown CNI_COMMAND {other:?}"),
        }),
    }
}
