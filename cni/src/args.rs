//! The CNI_* environment variables: which command, which container, which namespace.

use crate::error::{CniError, INVALID_ENVIRONMENT};

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Check an attachment against its `prevResult`.
    Check,
    /// Report the supported spec versions.
    Version,
    /// Report whether ADD can be serviced.
    Status,
    /// Remove what belongs to attachments that are no longer valid.
    Gc,
}

impl Command {
    /// Reads a `CNI_COMMAND` value.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// The variables the spec requires for this command, after `CNI_COMMAND`.
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Version | Command::Status | Command::Gc => &[],
        }
    }
}

/// The invocation's parameters, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty when the command does not need it).
    pub container_id: String,
    /// `CNI_NETNS`: the path of the container's network namespace (empty when not given).
    pub netns: String,
    /// `CNI_IFNAME`: the interface to create inside the container.
    pub ifname: String,
    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
    pub cni_args: String,
    /// `CNI_PATH`: the directories to look for plugins in (delegation), `:`-separated.
    pub path: String,
}

impl Args {
    /// Reads and checks the variables through `get` (e.g. `|k| std::env::var(k).ok()`).
    ///
    /// Missing variables are one error (code 4) that names all of them; so are a container id
    /// or interface name the spec does not allow.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Args, CniError> {
        let var = |k: &str| get(k).unwrap_or_default();
        let cmd = var("CNI_COMMAND");
        if cmd.is_empty() {
            return Err(CniError::new(
                INVALID_ENVIRONMENT,
                "required environment variable CNI_COMMAND is missing: set it to ADD, DEL, CHECK, \
                 STATUS, GC or VERSION",
            ));
        }
        let command = Command::parse(&cmd).ok_or_else(|| {
            CniError::new(
                INVALID_ENVIRONMENT,
                format!(
                    "CNI_COMMAND={cmd:?} is not a CNI command: use ADD, DEL, CHECK, STATUS, GC or VERSION"
                ),
            )
        })?;
        let missing: Vec<&str> = command
            .required()
            .iter()
            .copied()
            .filter(|k| var(k).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                INVALID_ENVIRONMENT,
                format!(
                    "required environment variables missing for {cmd}: {}",
                    missing.join(", ")
                ),
            ));
        }
        let args = Args {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            cni_args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        };
        if !args.container_id.is_empty() {
            check_container_id(&args.container_id)?;
        }
        if !args.ifname.is_empty() {
            validate_ifname(&args.ifname).map_err(|why| {
                CniError::new(
                    INVALID_ENVIRONMENT,
                    format!(
                        "CNI_IFNAME: invalid interface name {:?}: {why}: use a Linux interface \
                         name such as eth0",
                        args.ifname
                    ),
                )
            })?;
        }
        Ok(args)
    }

    /// The directories of `CNI_PATH`, in order.
    pub fn path_dirs(&self) -> impl Iterator<Item = &str> {
        self.path.split(':').filter(|d| !d.is_empty())
    }

    /// The value of `KEY` in `CNI_ARGS`.
    pub fn cni_arg(&self, key: &str) -> Option<&str> {
        self.cni_args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Checks a Linux interface name as the kernel does (`dev_valid_name`): 1 to 15 bytes, not
/// `.` or `..`, no `/`, `:`, white space or NUL. The error says why.
///
/// ```
/// assert!(podnet_cni::args::validate_ifname("eth0").is_ok());
/// assert_eq!(podnet_cni::args::validate_ifname("a/b"), Err("contains '/'"));
/// ```
pub fn validate_ifname(name: &str) -> Result<(), &'static str> {
    Err(if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains(':') {
        "contains ':'"
    } else if name.chars().any(|c| c.is_whitespace() || c == '\0') {
        "contains white space or NUL"
    } else {
        return Ok(());
    })
}

/// The spec's rule: an alphanumeric character, then alphanumerics, `_`, `.` or `-`.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_ENVIRONMENT,
            format!(
                "CNI_CONTAINERID={id:?} is not a valid container id: it must start with a letter \
                 or digit, followed by letters, digits, '_', '.' or '-'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Args, CniError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Args::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn missing_variables_are_named() {
        let e = parse(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(e.code, INVALID_ENVIRONMENT);
        assert!(e.msg.contains("CNI_CONTAINERID, CNI_NETNS"), "{}", e.msg);
        let e = parse(&[]).unwrap_err();
        assert!(e.msg.contains("CNI_COMMAND"));
        let e = parse(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.code, INVALID_ENVIRONMENT);
    }

    #[test]
    fn del_needs_no_netns_and_version_nothing() {
        let a = parse(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(a.command, Command::Del);
        assert_eq!(a.netns, "");
        assert_eq!(
            parse(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
    }

    #[test]
    fn ids_and_names_are_checked() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        for bad in ["-abc", "a/b", "a b", "ä"] {
            let mut v = base.to_vec();
            v.push(("CNI_CONTAINERID", bad));
            assert_eq!(parse(&v).unwrap_err().code, INVALID_ENVIRONMENT, "{bad}");
        }
        let mut v = base.to_vec();
        v[2] = ("CNI_IFNAME", "a-very-long-interface-name");
        v.push(("CNI_CONTAINERID", "c1"));
        assert!(parse(&v).unwrap_err().msg.contains("CNI_IFNAME"));
    }

    #[test]
    fn cni_args() {
        let a = parse(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;IP=10.244.0.9;K8S_POD_NAME=x"),
        ])
        .unwrap();
        assert_eq!(a.cni_arg("IP"), Some("10.244.0.9"));
        assert_eq!(a.cni_arg("MAC"), None);
    }
}
