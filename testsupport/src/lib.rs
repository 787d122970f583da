//! Test harness for podnet's kernel tests.
//!
//! Every kernel test works inside namespaces made by [`TestNs`], which deletes its namespace when
//! dropped, including while a failing test unwinds. Names carry the test process id, so
//! namespaces left by a test run that was killed outright are swept by the next run. Nothing here
//! touches the machine's root namespace.
//!
//! Tests that need root start with [`require_root!`]: without root they fail with a clear message,
//! unless `PODNET_SKIP_ROOT_TESTS=1` is set, in which case they skip.
//!
//! A test that cannot run here calls [`skip`] (never a bare `return`): the reason goes to the
//! real stderr (past the test harness's capture, so `cargo test` shows it), to the file named by
//! `PODNET_SKIP_LOG` (one line per skip, which `scripts/test.sh` lists and judges at the end),
//! and with `PODNET_NO_SKIPS=1` (`.ci/run`) the skip fails the test instead.
//!
//! ```no_run
//! use podnet_testsupport::{require_root, TestNs};
//!
//! #[test]
//! fn pings_across_a_veth() {
//!     require_root!();
//!     let pair = podnet_testsupport::linked_pair("ping", "198.18.0.1/24", "198.18.0.2/24");
//!     pair.a.exec("ping", &["-c1", "-W1", "198.18.0.2"]);
//! }
//! ```
//!
//! # Handles
//!
//! [`TestNs::new`] makes (and on drop deletes) a namespace; [`TestNs::ns`] is the
//! [`NetNs`](podnet_netns::NetNs) to pass to the libraries' `in_ns` constructors, which follow
//! podnet's one handle convention (the top README's "Architecture").

pub mod foreign;
pub mod initramfs;
#[cfg(feature = "kube-api")]
pub mod kube_api;

use podnet_netns::NetNs;
use std::ops::Deref;
use std::process::Output;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix of every namespace made by the test harness.
pub const PREFIX: &str = "ptest-";

/// Returns early from a test that needs root, when the environment asks to skip such tests.
///
/// Without root and without `PODNET_SKIP_ROOT_TESTS=1`, the test fails with a message saying so.
#[macro_export]
macro_rules! require_root {
    () => {{
        fn __podnet_here() {}
        let here = ::std::any::type_name_of_val(&__podnet_here);
        let test = here.strip_suffix("::__podnet_here").unwrap_or(here);
        if $crate::skip_root_test(test) {
            return;
        }
    }};
}

/// `true` when a root test should be skipped (and says so); panics when root is missing and
/// skipping was not asked for. Used by [`require_root!`].
pub fn skip_root_test(test: &str) -> bool {
    // SAFETY-free: geteuid has no preconditions; libc exposes it as a safe-to-call extern.
    #[allow(unsafe_code)]
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return false;
    }
    if std::env::var("PODNET_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        skip(
            test,
            SkipCause::Avoidable,
            "needs root (PODNET_SKIP_ROOT_TESTS=1)",
        );
        return true;
    }
    panic!(
        "{test} needs root (it creates network namespaces); run the tests as root, \
         or set PODNET_SKIP_ROOT_TESTS=1 to skip tests that need root"
    );
}

/// Why a test could not run: whether the test command could have removed the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipCause {
    /// The test command could have removed it: a tool or package it can install, a Debian
    /// kernel it can download, root it runs as. `scripts/test.sh` fails on such a skip.
    Avoidable,
    /// Nothing the test command can do: the machine lacks what the test needs (another
    /// architecture, no package archive reachable). `scripts/test.sh` lists it; `.ci/run`
    /// (`PODNET_NO_SKIPS=1`) fails on it all the same.
    Machine,
}

impl SkipCause {
    fn word(self) -> &'static str {
        match self {
            SkipCause::Avoidable => "avoidable",
            SkipCause::Machine => "machine",
        }
    }
}

/// Records that `test` did not run, and why; the caller then returns.
///
/// Writes `SKIP <test>: <reason>` to the process's real stderr (a plain `eprintln!` is
/// swallowed by the test harness when the test passes) and appends
/// `<cause>\t<test>\t<reason>` to the file `PODNET_SKIP_LOG` names, if set. With
/// `PODNET_NO_SKIPS=1` it panics instead, so the skip fails the test.
///
/// ```no_run
/// use podnet_testsupport::{skip, SkipCause};
/// if std::process::Command::new("tshark").arg("-v").output().is_err() {
///     return skip("tshark_dissects", SkipCause::Avoidable, "tshark is not installed");
/// }
/// ```
pub fn skip(test: &str, cause: SkipCause, reason: &str) {
    use std::io::Write;
    let reason = reason.replace(['\n', '\t'], " ");
    if std::env::var("PODNET_NO_SKIPS").as_deref() == Ok("1") {
        panic!("{test} would skip ({reason}), and PODNET_NO_SKIPS=1 allows no skips");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
    if let Some(path) = std::env::var_os("PODNET_SKIP_LOG") {
        let line = format!("{}\t{test}\t{reason}\n", cause.word());
        // One write of one short line to a file opened for appending: lines from parallel
        // tests do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            let _ = writeln!(
                std::io::stderr(),
                "could not record the skip in {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}

/// A uniquely named network namespace that is deleted when dropped.
///
/// The loopback device is up. Derefs to [`NetNs`].
#[derive(Debug)]
pub struct TestNs {
    ns: NetNs,
    name: String,
}

static SWEEP: Once = Once::new();
static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestNs {
    /// Creates `ptest-<pid>-<n>-<tag>`. Panics (failing the test) when it cannot.
    pub fn new(tag: &str) -> TestNs {
        SWEEP.call_once(sweep_stale);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        let ns =
            NetNs::add(&name).unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        let t = TestNs { ns, name };
        t.exec("ip", &["link", "set", "lo", "up"]);
        t
    }

    /// The namespace's name under /run/netns.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace handle.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Runs a program inside the namespace and returns its output, whatever its exit status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.ns
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// Runs a program inside the namespace, panics with its stderr unless it succeeds, and
    /// returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let out = self.output(program, args);
        if !out.status.success() {
            panic!(
                "`{program} {}` in {} failed ({}): {}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a program inside the namespace with `input` on its stdin; panics with its stderr
    /// unless it succeeds, and returns its stdout.
    pub fn exec_input(&self, program: &str, args: &[&str], input: &str) -> String {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .ns
            .command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name));
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write shows up as the program's own error below.
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {program} in {}: {e}", self.name));
        if !out.status.success() {
            panic!(
                "`{program} {}` in {} failed ({}): {}\ninput:\n{input}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `true` when `ping -c1` from this namespace to `addr` is answered within `wait_s` seconds.
    pub fn ping(&self, addr: &str, wait_s: u32) -> bool {
        let wait = wait_s.to_string();
        self.output("ping", &["-c1", "-W", &wait, addr])
            .status
            .success()
    }

    /// Adds a veth pair with iproute2 (an oracle independent of podnet-links): `name` in this
    /// namespace, `peer_name` in `peer`. Both ends stay down, without addresses.
    pub fn add_veth(&self, name: &str, peer: &TestNs, peer_name: &str) {
        let args = [
            "link", "add", name, "type", "veth", "peer", "name", peer_name,
        ];
        self.exec("ip", &[&args[..], &["netns", peer.name()]].concat());
    }
}

impl Deref for TestNs {
    type Target = NetNs;
    fn deref(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = NetNs::del(&self.name) {
            eprintln!("warning: deleting test namespace {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair named `eth0` on both sides, up, with the given
/// addresses (CIDR notation).
#[derive(Debug)]
pub struct LinkedPair {
    /// The first namespace.
    pub a: TestNs,
    /// The second namespace.
    pub b: TestNs,
}

/// Makes a [`LinkedPair`] (with iproute2, an oracle independent of podnet-links).
pub fn linked_pair(tag: &str, a_addr: &str, b_addr: &str) -> LinkedPair {
    let a = TestNs::new(&format!("{tag}-a"));
    let b = TestNs::new(&format!("{tag}-b"));
    a.add_veth("eth0", &b, "eth0");
    for (ns, addr) in [(&a, a_addr), (&b, b_addr)] {
        ns.exec("ip", &["addr", "add", addr, "dev", "eth0"]);
        ns.exec("ip", &["link", "set", "eth0", "up"]);
    }
    LinkedPair { a, b }
}

/// Deletes test namespaces whose creating process no longer exists (a run killed by SIGKILL).
fn sweep_stale() {
    let Ok(names) = NetNs::list() else { return };
    for name in names {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = NetNs::del(&name);
        }
    }
}
