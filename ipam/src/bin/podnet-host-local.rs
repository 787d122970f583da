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

/// The CNI spec versions this plugin speaks, as the reference host-local lists them.
const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
/// The newest of them: what VERSION answers when the input names no version.
const LATEST: &str = "1.1.0";

/// CNI's well-known error codes this plugin returns.
mod code {
    /// Incompatible CNI version.
    pub(crate) const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables.
    pub(crate) const INVALID_ENVIRONMENT: u32 = 4;
    /// Failed to decode content.
    pub(crate) const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub(crate) const INVALID_CONFIG: u32 = 7;
    /// STATUS: the plugin cannot service ADD requests.
    pub(crate) const NOT_AVAILABLE: u32 = 50;
    /// Anything else (host-local's generic error).
    pub(crate) const OTHER: u32 = 999;
}

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
            AllocError::Config(podnet_ipam::ConfigError::NotJson { .. }) => code::DECODING_FAILURE,
            AllocError::Config(_) => code::INVALID_CONFIG,
            _ => code::OTHER,
        };
        CniError {
            code,
            msg: e.to_string(),
        }
    }
}

fn env(name: &str) -> Result<String, CniError> {
    std::env::var(name).map_err(|_| CniError {
        code: code::INVALID_ENVIRONMENT,
        msg: format!("required env variable {name} missing"),
    })
}

/// The input's `cniVersion`: `None` when the input is not JSON or names none (the reference
/// then assumes 0.1.0 for a config, and VERSION answers with its newest version).
fn input_version(stdin: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(stdin)
        .ok()?
        .get("cniVersion")?
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn cni() -> ExitCode {
    let mut stdin = String::new();
    let _ = io::stdin().read_to_string(&mut stdin);
    // Errors speak the config's version when this plugin knows it.
    let version = input_version(&stdin)
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string());
    match cni_run(&stdin) {
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

/// `true` when CNI version `v` (x.y.z) is at least `min`.
fn at_least(v: &str, min: &str) -> bool {
    let parts = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(v) >= parts(min)
}

fn cni_run(stdin: &str) -> Result<Option<String>, CniError> {
    let command = env("CNI_COMMAND")?;
    if command == "VERSION" {
        // CNI 1.0: the answer carries the input's cniVersion.
        let version = input_version(stdin).unwrap_or_else(|| LATEST.to_string());
        return Ok(Some(
            json!({"cniVersion": version, "supportedVersions": SUPPORTED}).to_string(),
        ));
    }
    let config = IpamConfig::parse(stdin).map_err(AllocError::from)?;
    // A config without cniVersion is 0.1.0 (as libcni decodes it).
    let version = if config.cni_version.is_empty() {
        "0.1.0".to_string()
    } else {
        config.cni_version.clone()
    };
    let version = version.as_str();
    if !SUPPORTED.contains(&version) {
        return Err(CniError {
            code: code::INCOMPATIBLE_VERSION,
            msg: format!(
                "incompatible CNI versions: config is {version:?}, plugin supports {SUPPORTED:?}"
            ),
        });
    }
    let needs_1_1 = |what: &str| -> Result<(), CniError> {
        if at_least(version, "1.1.0") {
            Ok(())
        } else {
            Err(CniError {
                code: code::INCOMPATIBLE_VERSION,
                msg: format!("config version {version} does not allow {what}: it needs 1.1.0"),
            })
        }
    };
    match command.as_str() {
        // CNI 1.1: no container. STATUS says whether an ADD could succeed now.
        "STATUS" => {
            needs_1_1("STATUS")?;
            return status(config).map(|()| None);
        }
        // GC keeps the leases of the attachments still valid and releases the rest; a
        // malformed list releases nothing.
        "GC" => {
            needs_1_1("GC")?;
            let live = podnet_ipam::valid_attachments(stdin).map_err(AllocError::from)?;
            let report = PodAllocator::open(config)?.gc(live)?;
            for ip in report.removed.iter().chain(&report.removed_empty) {
                eprintln!("podnet-host-local: GC released {ip}");
            }
            return Ok(None);
        }
        _ => {}
    }
    let id = env("CNI_CONTAINERID")?;
    let ifname = env("CNI_IFNAME")?;
    let alloc = PodAllocator::open(config)?;
    match command.as_str() {
        "ADD" => {
            let requested = requested_ips(&std::env::var("CNI_ARGS").unwrap_or_default())?;
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
                    code: code::OTHER,
                    msg: format!(
                        "podnet-host-local: failed to find address added by container {id}"
                    ),
                })
            }
        }
        other => Err(CniError {
            code: code::INVALID_ENVIRONMENT,
            msg: format!("unknown CNI_COMMAND {other:?}"),
        }),
    }
}

/// STATUS: not available (code 50) when the data directory cannot hold leases or a range set
/// has no free address left. Creates nothing.
fn status(config: IpamConfig) -> Result<(), CniError> {
    let not_available = |msg: String| CniError {
        code: code::NOT_AVAILABLE,
        msg,
    };
    let dir = config.lease_dir();
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(not_available(format!(
                "{} is not a directory: no lease can be written",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The first ADD creates it, if its parent lets it.
            return match std::fs::metadata(&config.data_dir) {
                Ok(m) if !m.is_dir() => Err(not_available(format!(
                    "dataDir {} is not a directory",
                    config.data_dir.display()
                ))),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(not_available(format!("{}: {e}", dir.display()))),
    }
    let name = config.name.clone();
    let alloc = PodAllocator::open(config).map_err(|e| not_available(e.to_string()))?;
    match alloc.check_free() {
        Ok(()) => Ok(()),
        Err(e @ AllocError::Exhausted { .. }) => Err(not_available(format!(
            "network {name:?}: {e}; free addresses with DEL or GC, or widen ipam.ranges"
        ))),
        Err(e) => Err(not_available(e.to_string())),
    }
}

/// Addresses asked for with `IP=` in CNI_ARGS (comma separated). One that does not parse is an
/// error: allocating some other address instead would hand the container an address it did
/// not ask for.
fn requested_ips(cni_args: &str) -> Result<Vec<IpAddr>, CniError> {
    let Some(list) = cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "IP")
        .map(|(_, v)| v)
    else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|s| {
            s.trim().parse().map_err(|_| CniError {
                code: code::INVALID_ENVIRONMENT,
                msg: format!("CNI_ARGS: IP={s:?} is not an IP address"),
            })
        })
        .collect()
}
