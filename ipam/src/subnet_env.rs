//! `subnet.env`, the file flanneld leaves for the CNI plugin and for its own restarts:
//!
//! ```text
//! FLANNEL_NETWORK=10.5.0.0/16
//! FLANNEL_SUBNET=10.5.52.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=true
//! ```
//!
//! with `FLANNEL_IPV6_NETWORK` and `FLANNEL_IPV6_SUBNET` after the IPv4 pair when IPv6 is on.
//! `FLANNEL_SUBNET` is the lease's first address with the lease's prefix length.

use std::fs;
use std::io;
use std::path::Path;
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::config::NetworkConfig;
use crate::error::SubnetEnvError;
use crate::lease::{Lease, LeaseSubnets};
use crate::sys;

/// The contents of a subnet.env file.
///
/// ```
/// use podnet_ipam::SubnetEnv;
/// let env = SubnetEnv::parse("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")?;
/// assert_eq!(env.previous_subnets().unwrap().key_name(), "10.5.52.0-24");
/// assert_eq!(env.to_string(), "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
/// # Ok::<(), podnet_ipam::SubnetEnvError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`.
    pub network: Option<Ipv4Net>,
    /// `FLANNEL_SUBNET`: the lease's first address and prefix length (e.g. `10.5.52.1/24`).
    pub subnet: Option<Ipv4Net>,
    /// `FLANNEL_IPV6_NETWORK`.
    pub ipv6_network: Option<Ipv6Net>,
    /// `FLANNEL_IPV6_SUBNET`.
    pub ipv6_subnet: Option<Ipv6Net>,
    /// `FLANNEL_MTU`.
    pub mtu: u32,
    /// `FLANNEL_IPMASQ`.
    pub ipmasq: bool,
}

fn first_v4(n: Ipv4Net) -> Ipv4Net {
    let a = u32::from(n.network()).wrapping_add(1);
    Ipv4Net::new(a.into(), n.prefix_len()).unwrap_or(n)
}

fn first_v6(n: Ipv6Net) -> Ipv6Net {
    let a = u128::from(n.network()).wrapping_add(1);
    Ipv6Net::new(a.into(), n.prefix_len()).unwrap_or(n)
}

impl SubnetEnv {
    /// What flanneld writes for a lease.
    pub fn from_lease(config: &NetworkConfig, lease: &Lease, mtu: u32, ipmasq: bool) -> Self {
        SubnetEnv {
            network: config.network.filter(|_| config.enable_ipv4),
            subnet: lease
                .subnets
                .ipv4
                .filter(|_| config.enable_ipv4)
                .map(first_v4),
            ipv6_network: config.ipv6_network.filter(|_| config.enable_ipv6),
            ipv6_subnet: lease
                .subnets
                .ipv6
                .filter(|_| config.enable_ipv6)
                .map(first_v6),
            mtu,
            ipmasq,
        }
    }

    /// The subnets of the lease this file was written for, to ask for them again after a
    /// restart (flannel's "previous subnet").
    pub fn previous_subnets(&self) -> Option<LeaseSubnets> {
        let s = LeaseSubnets {
            ipv4: self.subnet.map(|n| n.trunc()),
            ipv6: self.ipv6_subnet.map(|n| n.trunc()),
        };
        (s.ipv4.is_some() || s.ipv6.is_some()).then_some(s)
    }

    /// Parses the file's text. Unknown variables, blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, SubnetEnvError> {
        Self::parse_at(text, Path::new("subnet.env"))
    }

    fn parse_at(text: &str, path: &Path) -> Result<Self, SubnetEnvError> {
        fn val<T: FromStr>(path: &Path, key: &str, value: &str) -> Result<T, SubnetEnvError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse::<T>().map_err(|e| SubnetEnvError::Invalid {
                path: path.to_path_buf(),
                key: key.to_string(),
                value: value.to_string(),
                reason: e.to_string(),
            })
        }
        let mut env = SubnetEnv::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            match key {
                "FLANNEL_NETWORK" => env.network = Some(val(path, key, value)?),
                "FLANNEL_SUBNET" => env.subnet = Some(val(path, key, value)?),
                "FLANNEL_IPV6_NETWORK" => env.ipv6_network = Some(val(path, key, value)?),
                "FLANNEL_IPV6_SUBNET" => env.ipv6_subnet = Some(val(path, key, value)?),
                "FLANNEL_MTU" => env.mtu = val(path, key, value)?,
                "FLANNEL_IPMASQ" => env.ipmasq = val(path, key, value)?,
                _ => {}
            }
        }
        Ok(env)
    }

    /// Reads a subnet.env file; `Ok(None)` when it does not exist.
    pub fn read(path: impl AsRef<Path>) -> Result<Option<Self>, SubnetEnvError> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse_at(&text, path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SubnetEnvError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file atomically (temporary file, fsync, rename), creating its directory;
    /// keeps the permissions of an existing file, else 0644.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), SubnetEnvError> {
        let path = path.as_ref();
        let io_err = |source| SubnetEnvError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        sys::write_atomic(path, self.to_string().as_bytes(), 0o644, true).map_err(io_err)
    }
}

impl std::fmt::Display for SubnetEnv {
    /// The file's text, in flannel's order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(n), Some(s)) = (self.network, self.subnet) {
            writeln!(f, "FLANNEL_NETWORK={n}")?;
            writeln!(f, "FLANNEL_SUBNET={s}")?;
        }
        if let (Some(n), Some(s)) = (self.ipv6_network, self.ipv6_subnet) {
            writeln!(f, "FLANNEL_IPV6_NETWORK={n}")?;
            writeln!(f, "FLANNEL_IPV6_SUBNET={s}")?;
        }
        writeln!(f, "FLANNEL_MTU={}", self.mtu)?;
        writeln!(f, "FLANNEL_IPMASQ={}", self.ipmasq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_order_and_roundtrip() {
        let text = "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:34::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";
        let env = SubnetEnv::parse(text).unwrap();
        assert_eq!(env.to_string(), text);
        let prev = env.previous_subnets().unwrap();
        assert_eq!(prev.key_name(), "10.5.52.0-24&fc00:0:0:34::-64");
    }

    #[test]
    fn bad_value_names_the_key() {
        match SubnetEnv::parse("FLANNEL_MTU=big\n").unwrap_err() {
            SubnetEnvError::Invalid { key, .. } => assert_eq!(key, "FLANNEL_MTU"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn write_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/flannel/subnet.env");
        let env = SubnetEnv::parse("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.52.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n").unwrap();
        env.write(&path).unwrap();
        assert_eq!(SubnetEnv::read(&path).unwrap(), Some(env));
        assert_eq!(SubnetEnv::read(dir.path().join("nope")).unwrap(), None);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
