//! The CNI protocol (spec 0.1.0 to 1.1.0) for plugin authors, without any plugin in it.
//!
//! - [`args`]: the `CNI_*` environment variables, checked ([`Args`], [`Command`]).
//! - [`conf`]: the network config's shared keys and typed readers for a plugin's own
//!   ([`PluginConf`]), including `prevResult` in any version's shape.
//! - [`result`]: the ADD result ([`CniResult`]) printed in the shape of each spec version
//!   (1.x; 0.3.x/0.4.0 with `version` per IP; 0.1.0/0.2.0 with `ip4`/`ip6`).
//! - [`error`]: error results ([`CniError`]) and the spec's codes.
//! - [`version`]: supported versions, ordering, the VERSION reply.
//! - [`skel`]: the dispatcher a plugin's `main` calls with its [`Plugin`] implementation.
//! - [`invoke`]: running another plugin from `CNI_PATH` (IPAM delegation, meta plugins).
//!
//! A whole plugin (it attaches nothing, and reports the config's DNS):
//!
//! ```no_run
//! use podnet_cni::{Args, CniError, CniResult, Plugin, PluginConf};
//!
//! struct Dns;
//!
//! impl Plugin for Dns {
//!     fn add(&self, _args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
//!         let conf = PluginConf::parse(stdin, self.supported_versions())?;
//!         conf.refuse("dns-only", &["mtu"], "remove it")?;
//!         let mut result = conf.prev_result()?.unwrap_or_default();
//!         result.dns = conf.dns;
//!         Ok(result)
//!     }
//!     fn del(&self, _args: &Args, _stdin: &[u8]) -> Result<(), CniError> {
//!         Ok(())
//!     }
//!     fn check(&self, _args: &Args, _stdin: &[u8]) -> Result<(), CniError> {
//!         Ok(())
//!     }
//! }
//!
//! fn main() {
//!     std::process::exit(podnet_cni::skel::main(&Dns));
//! }
//! ```
//!
//! # Handles
//!
//! This crate is the protocol only and opens no kernel handle; plugins built on it use
//! `podnet_links` and `podnet_ipam`, which follow podnet's one handle convention (the top
//! README's "Architecture").

pub mod args;
pub mod conf;
pub mod error;
pub mod invoke;
pub mod result;
pub mod skel;
pub mod version;

pub use args::{Args, Command};
pub use conf::PluginConf;
pub use error::CniError;
pub use result::{CniResult, Dns, Interface, IpCfg, RouteCfg};
pub use skel::{Outcome, Plugin};
pub use version::{LATEST_VERSION, SUPPORTED_VERSIONS};

// The README's example is compiled (not run) as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
