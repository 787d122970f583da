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

mod bandwidth;
mod bridge;
mod check;
mod config;
pub mod error;
mod flannel;
mod host_device;
mod hostlocal;
mod ipam;
mod ipvlan;
mod loopback;
mod macvlan;
mod masq;
mod portmap;
mod ptp;
mod static_ipam;
mod tuning;

pub use config::NetConf;
pub use error::CniError;
#[doc(hidden)]
pub use ipam::requested;
pub use podnet_cni::{
    Args, CniResult, Command, Dns, Interface, IpCfg, LATEST_VERSION, Outcome, RouteCfg,
    SUPPORTED_VERSIONS,
};

use podnet_cni::Plugin;
use std::path::{Path, PathBuf};

pub use bandwidth::Bandwidth;
pub use flannel::Flannel;
pub use host_device::HostDevice;
pub use hostlocal::HostLocal;
pub use ipvlan::Ipvlan;
pub use loopback::Loopback;
pub use macvlan::Macvlan;
pub use portmap::Portmap;
pub use ptp::Ptp;
pub use static_ipam::Static;
pub use tuning::Tuning;

/// The plugin types the multi-call binary answers to (its file name, or a link's), besides
/// `podnet-cni` itself (the bridge); sorted.
pub const PLUGINS: &[&str] = &[
    "bandwidth",
    "bridge",
    "flannel",
    "host-device",
    "host-local",
    "ipvlan",
    "loopback",
    "macvlan",
    "portmap",
    "ptp",
    "static",
    "tuning",
];

/// The plugin of a type name (`bridge`, `loopback`, ...; `podnet-cni` is the bridge).
pub fn plugin(name: &str) -> Option<&'static dyn Plugin> {
    Some(match name {
        "bridge" | "podnet-cni" => &Bridge,
        "loopback" => &Loopback,
        "host-local" => &HostLocal,
        "static" => &Static,
        "ptp" => &Ptp,
        "tuning" => &Tuning,
        "flannel" => &Flannel,
        "macvlan" => &Macvlan,
        "host-device" => &HostDevice,
        "ipvlan" => &Ipvlan,
        "portmap" => &Portmap,
        "bandwidth" => &Bandwidth,
        _ => return None,
    })
}

/// Lays out a `CNI_PATH` directory: a symbolic link named after each of [`PLUGINS`] to
/// `binary` (the multi-call `podnet-cni`), replacing links of those names already there.
/// Returns the links made.
pub fn install_links(binary: &Path, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut made = Vec::new();
    for name in PLUGINS {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)?,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a link: not replacing it",
                        link.display()
                    ),
                ));
            }
            Err(_) => {}
        }
        std::os::unix::fs::symlink(binary, &link)?;
        made.push(link);
    }
    Ok(made)
}

/// The `bridge` plugin (also installed as `podnet-cni`).
pub struct Bridge;

impl Plugin for Bridge {
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let conf = NetConf::parse(stdin, &args.cni_args)?;
        bridge::add(args, &conf, stdin)
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = NetConf::parse(stdin, &args.cni_args)?;
        bridge::del(args, &conf, stdin)
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = NetConf::parse(stdin, &args.cni_args)?;
        check::check(args, &conf, stdin)
    }

    fn status(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = NetConf::parse(stdin, &args.cni_args)?;
        if conf.has_ipam {
            ipam::status(stdin)?;
        }
        if let Some(t) = &conf.ipam_delegate {
            podnet_cni::invoke::exec(t, Command::Status, args, stdin)?;
        }
        Ok(())
    }

    fn gc(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let conf = NetConf::parse(stdin, &args.cni_args)?;
        if conf.has_ipam {
            let report = ipam::open(stdin)?
                .gc(conf.valid_attachments.iter().cloned())
                .map_err(error::alloc)?;
            for ip in report.removed.iter().chain(&report.removed_empty) {
                eprintln!("podnet-cni: GC released {ip}");
            }
        }
        if let Some(t) = &conf.ipam_delegate {
            podnet_cni::invoke::exec(t, Command::Gc, args, stdin)?;
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
        Ok(())
    }
}

/// Runs one invocation of the bridge plugin: `env` reads the CNI_* variables, `stdin` is the
/// network config.
///
/// The process must run in the host's network namespace (where the bridge is); the container's
/// is `CNI_NETNS`.
pub fn run(env: impl Fn(&str) -> Option<String>, stdin: std::io::Result<Vec<u8>>) -> Outcome {
    podnet_cni::skel::run(&Bridge, env, stdin)
}

/// The multi-call binary's main: runs the plugin named by the file name it was started as
/// (`argv[0]`: `bridge`, `loopback`, `host-local`, ...; `podnet-cni` is the bridge), and returns
/// the exit status (0 on success, 1 on error).
///
/// `podnet-cni install-links DIR` makes DIR a `CNI_PATH` directory of links to this binary
/// (see [`install_links`]).
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("podnet-cni")
        .to_owned();
    if argv.get(1).map(String::as_str) == Some("install-links") {
        let (Some(dir), Ok(me)) = (argv.get(2), std::env::current_exe()) else {
            eprintln!("usage: podnet-cni install-links DIR");
            return 2;
        };
        return match install_links(&me, Path::new(dir)) {
            Ok(links) => {
                for l in links {
                    println!("{}", l.display());
                }
                0
            }
            Err(e) => {
                eprintln!("podnet-cni install-links {dir}: {e}");
                1
            }
        };
    }
    match plugin(&name) {
        Some(p) => podnet_cni::skel::main(p),
        None => {
            // Not a plugin this binary has: say so as a CNI error.
            let e = CniError::new(
                podnet_cni::invoke::INTERNAL,
                format!(
                    "podnet-cni was started as {name:?}, which is none of its plugins ({}): \
                     link it under one of those names",
                    PLUGINS.join(", ")
                ),
            );
            println!("{}", e.to_json(LATEST_VERSION));
            1
        }
    }
}
