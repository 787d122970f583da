//! Running another plugin found on `CNI_PATH`: IPAM delegation (`ipam.type`) and meta plugins
//! that delegate to a main plugin, as the reference library's `pkg/invoke` and `pkg/ipam` do.

use crate::args::{Args, Command};
use crate::error::CniError;
use crate::result::CniResult;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

/// Code the reference library gives errors that are not CNI errors (a plugin not found, one
/// that printed no error JSON).
pub const INTERNAL: u32 = 999;

/// The first `CNI_PATH` directory that holds an executable file named `plugin`.
pub fn find(plugin: &str, args: &Args) -> Result<PathBuf, CniError> {
    if plugin.is_empty() || plugin.contains('/') {
        return Err(CniError::invalid(
            "type",
            format!("{plugin:?} is not a plugin name"),
        ));
    }
    let dirs: Vec<&str> = args.path_dirs().collect();
    dirs.iter()
        .map(|d| PathBuf::from(d).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                INTERNAL,
                format!("failed to find plugin {plugin:?} in path {dirs:?}"),
            )
        })
}

/// Runs `plugin` for `command` with the invocation's `CNI_*` variables and `stdin`; its stdout
/// on success, its error (the error JSON it printed, else code 999 with its stderr) on failure.
pub fn exec(plugin: &str, command: Command, args: &Args, stdin: &[u8]) -> Result<String, CniError> {
    let path = find(plugin, args)?;
    let mut child = Process::new(&path)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &args.container_id)
        .env("CNI_NETNS", &args.netns)
        .env("CNI_IFNAME", &args.ifname)
        .env("CNI_ARGS", &args.cni_args)
        .env("CNI_PATH", &args.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::new(INTERNAL, format!("running {}: {e}", path.display())))?;
    let written = child.stdin.take().map(|mut s| s.write_all(stdin));
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(INTERNAL, format!("running {}: {e}", path.display())))?;
    if let Some(Err(e)) = written {
        return Err(CniError::new(
            INTERNAL,
            format!("writing the config to {}: {e}", path.display()),
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let printed = serde_json::from_str(&stdout)
        .ok()
        .and_then(|v| CniError::from_json(&v));
    Err(printed.unwrap_or_else(|| {
        CniError::new(
            INTERNAL,
            format!(
                "plugin {plugin} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
    }))
}

/// ADD through `plugin` (e.g. the IPAM plugin): its result parsed.
pub fn exec_add(plugin: &str, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
    let out = exec(plugin, Command::Add, args, stdin)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
        CniError::new(
            crate::error::DECODING_FAILURE,
            format!("plugin {plugin} printed no JSON result: {e}"),
        )
    })?;
    CniResult::from_prev(&v)
}

/// DEL through `plugin`.
pub fn exec_del(plugin: &str, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
    exec(plugin, Command::Del, args, stdin).map(drop)
}

/// CHECK through `plugin`.
pub fn exec_check(plugin: &str, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
    exec(plugin, Command::Check, args, stdin).map(drop)
}
