//! `podnet-host-local` as a CNI plugin, as the spec (1.1) and the reference host-local answer:
//! GC refuses malformed `cni.dev/valid-attachments` and releases nothing, STATUS reports an
//! exhausted range set (code 50), GC and STATUS need cniVersion 1.1.0, VERSION speaks the
//! config's version. Files only: no namespace, no root.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// Runs the plugin with `command` and `stdin`; returns (exit success, stdout as JSON or Null).
fn plugin(command: &str, id: &str, stdin: &str) -> (bool, Value) {
    plugin_with_args(command, id, "", stdin)
}

fn plugin_with_args(command: &str, id: &str, cni_args: &str, stdin: &str) -> (bool, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet-host-local"))
        .env("CNI_COMMAND", command)
        .env("CNI_ARGS", cni_args)
        .env("CNI_CONTAINERID", id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", "/run/netns/unused")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podnet-host-local");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    (out.status.success(), v)
}

/// A network of `subnet` in `dir`, with extra top-level fields.
fn conf(dir: &Path, version: &str, subnet: &str, extra: Value) -> String {
    let mut v = json!({
        "cniVersion": version,
        "name": "hl",
        "type": "podnet-host-local",
        "ipam": {"type": "host-local", "dataDir": dir, "ranges": [[{"subnet": subnet}]]},
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string()
}

fn leases(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("hl"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn gc_refuses_malformed_valid_attachments_and_releases_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = conf(dir.path(), "1.1.0", "10.40.0.0/24", json!({}));
    for id in ["c1", "c2"] {
        let (ok, v) = plugin("ADD", id, &base);
        assert!(ok, "ADD {id}: {v}");
    }
    assert_eq!(leases(dir.path()).len(), 2);

    // Entries the spec does not allow: a number for containerID, a missing ifname, not a list.
    for bad in [
        json!([{"containerID": "c1", "ifname": "eth0"}, {"containerID": 2, "ifname": "eth0"}]),
        json!([{"containerID": "c1"}]),
        json!({"containerID": "c1", "ifname": "eth0"}),
        json!(["c1"]),
    ] {
        let text = conf(
            dir.path(),
            "1.1.0",
            "10.40.0.0/24",
            json!({"cni.dev/valid-attachments": bad}),
        );
        let (ok, v) = plugin("GC", "", &text);
        assert!(!ok, "GC accepted {bad}");
        assert_eq!(v["code"], 7, "{v}");
        assert!(
            v["msg"]
                .as_str()
                .unwrap()
                .contains("cni.dev/valid-attachments"),
            "{v}"
        );
        assert_eq!(leases(dir.path()).len(), 2, "GC released leases on {bad}");
    }

    // A well-formed list: c2 is gone, c1 stays.
    let text = conf(
        dir.path(),
        "1.1.0",
        "10.40.0.0/24",
        json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}),
    );
    let (ok, v) = plugin("GC", "", &text);
    assert!(ok, "{v}");
    assert_eq!(leases(dir.path()).len(), 1);
}

#[test]
fn status_reports_an_exhausted_range_set() {
    let dir = tempfile::tempdir().unwrap();
    // A /30 has two usable addresses after the network address... .1 is the gateway: one left.
    let text = conf(dir.path(), "1.1.0", "10.41.0.0/30", json!({}));
    let (ok, v) = plugin("STATUS", "", &text);
    assert!(ok, "STATUS before anything was allocated: {v}");
    let (ok, v) = plugin("ADD", "c1", &text);
    assert!(ok, "{v}");
    let (ok, v) = plugin("STATUS", "", &text);
    assert!(!ok, "STATUS said available with no free address");
    assert_eq!(v["code"], 50, "{v}");
    assert_eq!(v["cniVersion"], "1.1.0", "{v}");
    let (ok, v) = plugin("DEL", "c1", &text);
    assert!(ok, "{v}");
    let (ok, v) = plugin("STATUS", "", &text);
    assert!(ok, "{v}");
    // A data directory that cannot be a directory: not available either.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let text = conf(&file, "1.1.0", "10.41.0.0/24", json!({}));
    let (ok, v) = plugin("STATUS", "", &text);
    assert!(!ok, "STATUS with an unusable dataDir");
    assert_eq!(v["code"], 50, "{v}");
}

#[test]
fn gc_and_status_need_cni_1_1_and_versions_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let old = conf(dir.path(), "1.0.0", "10.42.0.0/24", json!({}));
    for cmd in ["GC", "STATUS"] {
        let (ok, v) = plugin(cmd, "", &old);
        assert!(!ok, "{cmd} with cniVersion 1.0.0");
        assert_eq!(v["code"], 1, "{cmd}: {v}");
        assert_eq!(v["cniVersion"], "1.0.0", "{cmd}: {v}");
    }
    let unknown = conf(dir.path(), "9.9.9", "10.42.0.0/24", json!({}));
    let (ok, v) = plugin("ADD", "c1", &unknown);
    assert!(!ok);
    assert_eq!(v["code"], 1, "{v}");
    assert!(leases(dir.path()).is_empty());
}

#[test]
fn version_speaks_the_configs_version() {
    for (input, want) in [
        (r#"{"cniVersion":"1.0.0"}"#, "1.0.0"),
        (r#"{"cniVersion":"0.4.0"}"#, "0.4.0"),
        ("", "1.1.0"),
        ("{}", "1.1.0"),
    ] {
        let (ok, v) = plugin("VERSION", "", input);
        assert!(ok, "{v}");
        assert_eq!(v["cniVersion"], want, "VERSION with {input:?}: {v}");
        let supported: Vec<&str> = v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(supported.contains(&"1.1.0") && supported.contains(&"0.3.1"));
    }
}

/// An address asked for with `IP=` that does not parse is refused (code 4), not replaced by
/// another address; a valid one is honoured.
#[test]
fn a_malformed_requested_ip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = conf(dir.path(), "1.1.0", "10.43.0.0/24", json!({}));
    let (ok, v) = plugin_with_args("ADD", "c1", "K8S_POD_NAME=a;IP=10.43.0.300", &text);
    assert!(!ok, "ADD allocated despite IP=10.43.0.300: {v}");
    assert_eq!(v["code"], 4, "{v}");
    assert!(leases(dir.path()).is_empty());
    let (ok, v) = plugin_with_args("ADD", "c1", "IP=10.43.0.77", &text);
    assert!(ok, "{v}");
    assert_eq!(v["ips"][0]["address"], "10.43.0.77/24", "{v}");
}
