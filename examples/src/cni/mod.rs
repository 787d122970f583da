//! `podnet-cni`: a CNI plugin (spec 1.1) that does what the reference `bridge` plugin does, with
//! host-local's IPAM done in process by podnet-ipam (same config, same on-disk leases).
//!
//! ADD, DEL, CHECK, VERSION, STATUS and GC, configured with the reference plugin's fields
//! (`bridge`, `isGateway`, `isDefaultGateway`, `forceAddress`, `ipMasq`, `mtu`, `hairpinMode`,
//! `promiscMode`, `enabledad`) and an `ipam` section in host-local's format. Results are printed
//! field for field as the reference prints them for the requested version; errors are CNI
//! error JSON with the spec's codes (podnet-cni's own from 100, see [`error`]) and a message
//! that says what to fix.
//!
//! Unlike the reference, ADD undoes everything it did when it fails (veth pair, lease,
//! masquerade rules), and checks what it can before it changes anything.
//!
//! ```no_run
//! // The binary's whole main: environment and stdin in, JSON out.
//! std::process::exit(podnet_examples::cni::main());
//! ```

mod args;
mod bridge;
mod check;
mod config;
pub mod error;
mod ipam;
mod masq;
mod result;

pub use args::{Args, Command};
pub use config::{LATEST_VERSION, NetConf, SUPPORTED_VERSIONS};
pub use error::CniError;
#[doc(hidden)]
pub use ipam::requested;
pub use result::{CniResult, Dns, Interface, IpCfg, RouteCfg};

use std::io::Read;

/// What one invocation prints on stdout, and whether it succeeded (exit status 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result, the version report, or the error JSON; empty for DEL, CHECK, GC, STATUS.
    pub stdout: String,
    /// `true` for exit status 0.
    pub success: bool,
}

/// Runs one CNI invocation: `env` reads the CNI_* variables, `stdin` is the network config.
///
/// The process must run in the host's network namespace (where the bridge is); the container's
/// is `CNI_NETNS`.
pub fn run(env: impl Fn(&str) -> Option<String>, stdin: std::io::Result<Vec<u8>>) -> Outcome {
    let input = stdin.as_deref().unwrap_or_default();
    // Errors speak the config's version when podnet-cni knows it.
    let version = config::peek_version(input)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_owned());
    match dispatch(env, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            success: true,
        },
        Err(e) => Outcome {
            stdout: e.to_json(&version),
            success: false,
        },
    }
}

fn dispatch(
    env: impl Fn(&str) -> Option<String>,
    stdin: std::io::Result<Vec<u8>>,
) -> Result<String, CniError> {
    let args = Args::from_env(env)?;
    let stdin = stdin.map_err(|e| {
        CniError::new(
            error::IO_FAILURE,
            format!("reading the network config from stdin: {e}"),
        )
    })?;
    if args.command == Command::Version {
        let version = config::peek_version(&stdin)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| LATEST_VERSION.to_owned());
        let v = serde_json::json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS});
        return Ok(v.to_string());
    }
    let conf = NetConf::parse(&stdin, &args.cni_args)?;
    let needs = |min: &str, what: &str| -> Result<(), CniError> {
        if config::version_at_least(&conf.cni_version, min) {
            Ok(())
        } else {
            Err(CniError::new(
                error::INCOMPATIBLE_VERSION,
                format!(
                    "{what} needs cniVersion {min} or later, the config says {}",
                    conf.cni_version
                ),
            ))
        }
    };
    match args.command {
        Command::Add => Ok(bridge::add(&args, &conf, &stdin)?.to_json(&conf.cni_version)),
        Command::Del => bridge::del(&args, &conf, &stdin).map(|()| String::new()),
        Command::Check => {
            needs("0.4.0", "CHECK")?;
            check::check(&args, &conf, &stdin).map(|()| String::new())
        }
        Command::Status => {
            needs("1.1.0", "STATUS")?;
            if conf.has_ipam {
                ipam::status(&stdin)?;
            }
            Ok(String::new())
        }
        Command::Gc => {
            needs("1.1.0", "GC")?;
            if conf.has_ipam {
                let report = ipam::open(&stdin)?.gc(conf.valid_attachments.iter().cloned())?;
                for ip in report.removed.iter().chain(&report.removed_empty) {
                    eprintln!("podnet-cni: GC released {ip}");
                }
            }
            if conf.ip_masq {
                let live: Vec<&str> = conf
                    .valid_attachments
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect();
                for id in masq::gc(&conf.name, &live)? {
                    eprintln!("podnet-cni: GC removed the masquerade rules of {id}");
                }
            }
            Ok(String::new())
        }
        Command::Version => Ok(String::new()),
    }
}

/// The binary's main: reads the environment and stdin, prints the outcome, and returns the exit
/// status (0 on success, 1 on error).
pub fn main() -> i32 {
    let mut buf = Vec::new();
    let stdin = std::io::stdin().read_to_end(&mut buf).map(|_| buf);
    let out = run(|k| std::env::var(k).ok(), stdin);
    if !out.stdout.is_empty() {
        println!("{}", out.stdout);
    }
    if out.success { 0 } else { 1 }
}
