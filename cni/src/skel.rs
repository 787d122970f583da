//! The dispatcher a plugin's `main` calls: environment and stdin in, command run, result or
//! error JSON out with the exit status — what the reference library's `pkg/skel` does.
//!
//! The plugin implements [`Plugin`]; [`main`] (or [`run`], which takes the environment and
//! stdin as arguments, for tests) checks the `CNI_*` variables, answers VERSION itself,
//! checks the config's `cniVersion` against [`Plugin::supported_versions`] and the commands'
//! minimum versions (CHECK 0.4.0, STATUS and GC 1.1.0), calls the plugin, and prints what it
//! returns in the config's version.

use crate::args::{Args, Command};
use crate::error::{CniError, DECODING_FAILURE, IO_FAILURE};
use crate::result::CniResult;
use crate::version::{self, LATEST_VERSION, SUPPORTED_VERSIONS};
use std::io::Read;

/// A CNI plugin: one function per command. `stdin` is the network config as given.
pub trait Plugin {
    /// The spec versions the plugin speaks (default: all of [`SUPPORTED_VERSIONS`]).
    fn supported_versions(&self) -> &[&str] {
        SUPPORTED_VERSIONS
    }

    /// ADD: attach the container; the result is printed in the config's version.
    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError>;

    /// DEL: detach the container; must succeed when there is nothing left to remove.
    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError>;

    /// CHECK: compare the container's network with `prevResult`.
    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError>;

    /// STATUS: whether ADD can be serviced (default: yes).
    fn status(&self, _args: &Args, _stdin: &[u8]) -> Result<(), CniError> {
        Ok(())
    }

    /// GC: remove what belongs to attachments not in `cni.dev/valid-attachments` (default:
    /// nothing to do).
    fn gc(&self, _args: &Args, _stdin: &[u8]) -> Result<(), CniError> {
        Ok(())
    }
}

/// What one invocation prints on stdout, and whether it succeeded (exit status 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result, the version report, or the error JSON; empty for DEL, CHECK, GC, STATUS.
    pub stdout: String,
    /// `true` for exit status 0.
    pub success: bool,
}

/// Runs one invocation: `env` reads the `CNI_*` variables, `stdin` is the network config.
pub fn run(
    plugin: &dyn Plugin,
    env: impl Fn(&str) -> Option<String>,
    stdin: std::io::Result<Vec<u8>>,
) -> Outcome {
    let supported = plugin.supported_versions();
    let input = stdin.as_deref().unwrap_or_default();
    // Errors speak the config's version when the plugin knows it.
    let version = version::peek(input)
        .filter(|v| supported.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST_VERSION.to_owned());
    match dispatch(plugin, env, stdin) {
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
    plugin: &dyn Plugin,
    env: impl Fn(&str) -> Option<String>,
    stdin: std::io::Result<Vec<u8>>,
) -> Result<String, CniError> {
    let args = Args::from_env(env)?;
    let stdin = stdin.map_err(|e| {
        CniError::new(
            IO_FAILURE,
            format!("reading the network config from stdin: {e}"),
        )
    })?;
    let supported = plugin.supported_versions();
    if args.command == Command::Version {
        return Ok(version::reply(&stdin, supported));
    }
    let v: serde_json::Value = serde_json::from_slice(&stdin).map_err(|e| {
        CniError::new(
            DECODING_FAILURE,
            format!("the network config on stdin is not valid JSON: {e}"),
        )
    })?;
    let Some(o) = v.as_object() else {
        return Err(CniError::new(
            DECODING_FAILURE,
            "the network config on stdin must be a JSON object",
        ));
    };
    let cni_version = version::of_config(o, supported)?;
    match args.command {
        Command::Add => Ok(plugin.add(&args, &stdin)?.to_json(&cni_version)),
        Command::Del => plugin.del(&args, &stdin).map(|()| String::new()),
        Command::Check => {
            version::require(&cni_version, "0.4.0", "CHECK")?;
            plugin.check(&args, &stdin).map(|()| String::new())
        }
        Command::Status => {
            version::require(&cni_version, "1.1.0", "STATUS")?;
            plugin.status(&args, &stdin).map(|()| String::new())
        }
        Command::Gc => {
            version::require(&cni_version, "1.1.0", "GC")?;
            plugin.gc(&args, &stdin).map(|()| String::new())
        }
        Command::Version => Ok(String::new()),
    }
}

/// A plugin binary's whole `main`: reads the process environment and stdin, prints the
/// outcome, and returns the exit status (0 on success, 1 on error).
pub fn main(plugin: &dyn Plugin) -> i32 {
    let mut buf = Vec::new();
    let stdin = std::io::stdin().read_to_end(&mut buf).map(|_| buf);
    let out = run(plugin, |k| std::env::var(k).ok(), stdin);
    if !out.stdout.is_empty() {
        println!("{}", out.stdout);
    }
    if out.success { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{INCOMPATIBLE_VERSION, INVALID_ENVIRONMENT};
    use std::collections::HashMap;

    struct Nop;
    impl Plugin for Nop {
        fn add(&self, _: &Args, _: &[u8]) -> Result<CniResult, CniError> {
            Ok(CniResult::default())
        }
        fn del(&self, _: &Args, _: &[u8]) -> Result<(), CniError> {
            Ok(())
        }
        fn check(&self, _: &Args, _: &[u8]) -> Result<(), CniError> {
            Ok(())
        }
    }

    fn go(cmd: &str, conf: &str) -> (bool, serde_json::Value) {
        let env: HashMap<&str, &str> = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ]
        .into();
        let out = run(&Nop, |k| env.get(k).map(|v| v.to_string()), Ok(conf.into()));
        let v = if out.stdout.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&out.stdout).unwrap()
        };
        (out.success, v)
    }

    #[test]
    fn commands_and_versions() {
        let (ok, v) = go("ADD", r#"{"cniVersion":"0.4.0","name":"n"}"#);
        assert!(ok);
        assert_eq!(v["cniVersion"], "0.4.0");
        let (ok, v) = go("CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#);
        assert!(!ok);
        assert_eq!(v["code"], INCOMPATIBLE_VERSION);
        assert_eq!(v["cniVersion"], "0.3.1");
        let (ok, v) = go("STATUS", r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert!(!ok && v["code"] == INCOMPATIBLE_VERSION);
        assert!(go("GC", r#"{"cniVersion":"1.1.0","name":"n"}"#).0);
        let (ok, v) = go("VERSION", r#"{"cniVersion":"1.0.0"}"#);
        assert!(ok);
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
        let (ok, v) = go("ADD", "nope");
        assert!(!ok && v["code"] == DECODING_FAILURE);
        let (ok, v) = go("FROB", "{}");
        assert!(!ok && v["code"] == INVALID_ENVIRONMENT);
    }
}
