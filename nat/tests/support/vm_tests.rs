//! Kernel tests that need a kernel feature this machine may lack (IPVS): run natively where the
//! kernel has it, otherwise all in one VM ([`super::vm`]), and reported on the host either way
//! as ordinary tests, each under its own name, with libtest's output (`test x ... ok`, `test
//! result: ok. N passed; 0 failed; ...`).
//!
//! A test program that uses this is a `harness = false` test target whose `main` calls
//! [`main`] with its [`KernelTests`]. Its kernel tests are plain functions that panic on
//! failure, like `#[test]` functions. When one of them is to run (not `--list`, not filtered
//! out), the program decides once:
//!
//! - **natively** when [`KernelTests::native`] says this kernel has the feature (and
//!   `PODNET_VM=1` does not ask for the VM): each test runs in this process, as libtest would;
//! - **in the VM** otherwise: it prepares the VM ([`KernelTests::setup`] adds modules and
//!   tools), puts its own executable in, boots once and runs itself there with [`GUEST_FLAG`]
//!   and the names of the selected tests. The guest runs each test in turn, catching its panic,
//!   with `PODNET_NO_SKIPS=1` (a test that would skip in the guest fails), and prints a marker
//!   line per test. Each test on the host then passes or fails with its guest result (a failure
//!   shows that test's guest output); one that did not report (a kernel panic, a timeout)
//!   fails. The guest's console is kept in `<target>/podnet-vm/logs/<program>.log` and printed
//!   when anything failed.
//!
//! When the VM cannot be had ([`VmError::Unavailable`]: no qemu and no way to install it, no
//! Debian archive), each selected test calls [`podnet_testsupport::skip`] with the cause and is
//! reported as ignored: the skip is listed, counted and, with `PODNET_NO_SKIPS=1`, a failure.
#![allow(dead_code, unreachable_pub)]

use super::vm::{Vm, VmError};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use podnet_testsupport::{SkipCause, skip};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;

/// The first argument that makes the test program run as the guest side.
pub const GUEST_FLAG: &str = "--podnet-vm-guest";
/// The marker of the guest's per-test lines: `PODNET-VM-TEST <start|ok|FAILED> <name>`.
const MARK: &str = "PODNET-VM-TEST";

/// One kernel test: the name it is reported under, and its body (panics on failure).
#[derive(Debug, Clone, Copy)]
pub struct KernelTest {
    /// The test's name, e.g. `ipvs_kernel::namespaces_have_their_own_tables`.
    pub name: &'static str,
    /// The test.
    pub run: fn(),
}

/// A test program's kernel tests and what they need.
#[derive(Debug)]
pub struct KernelTests {
    /// The test target's name (`ipvs_vm`): the program's name in the guest and its log's.
    pub program: &'static str,
    /// What the tests need of the kernel, for messages (`IPVS`).
    pub feature: &'static str,
    /// The tests.
    pub tests: &'static [KernelTest],
    /// `true` when this machine's kernel has the feature, so the tests run natively. Called
    /// once, and only when a test is to run.
    pub native: fn() -> bool,
    /// Adds to the VM what the tests need besides this program (kernel modules, tools, other
    /// programs and the environment that tells the guest where they are).
    pub setup: fn(&mut Vm) -> Result<(), String>,
}

/// How the selected tests run, decided by the first one to run.
enum Plan {
    Native,
    Vm(Result<GuestRun, NoRun>),
}

/// Why the tests did not run in the VM.
enum NoRun {
    Skip(SkipCause, String),
    Fail(String),
}

/// What the guest reported.
struct GuestRun {
    /// Test name -> passed, and its section of the console.
    results: BTreeMap<String, (bool, String)>,
    /// Where the console is, and why a test without a result has none.
    about: String,
}

static PLAN: OnceLock<Plan> = OnceLock::new();

/// The test program's `main`: the guest side when run with [`GUEST_FLAG`], otherwise a
/// libtest-like runner of `spec.tests`. Exits the process.
pub fn main(spec: &'static KernelTests) -> ! {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(GUEST_FLAG) {
        guest(spec, &argv[2..]);
    }
    let args = Arguments::from_args();
    // The tests that will run, so that the VM runs these and no others.
    let selected: Vec<&'static str> = spec
        .tests
        .iter()
        .filter(|t| {
            let trial = Trial::test(t.name, || Ok(()));
            !args.is_filtered_out(&trial) && !args.is_ignored(&trial)
        })
        .map(|t| t.name)
        .collect();
    let _ = SELECTED.set(selected);
    let trials = spec
        .tests
        .iter()
        .map(|t| Trial::ignorable_test(t.name, move || run_trial(spec, t)))
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

static SELECTED: OnceLock<Vec<&'static str>> = OnceLock::new();

fn run_trial(spec: &'static KernelTests, test: &KernelTest) -> Result<Completion, Failed> {
    let plan = PLAN.get_or_init(|| {
        let why_vm = if std::env::var("PODNET_VM").as_deref() == Ok("1") {
            "PODNET_VM=1 asks for the VM".to_owned()
        } else if (spec.native)() {
            return Plan::Native;
        } else {
            format!("this kernel has no {}", spec.feature)
        };
        let selected = SELECTED.get().map_or(&[][..], Vec::as_slice);
        Plan::Vm(in_vm(spec, &why_vm, selected))
    });
    match plan {
        Plan::Native => {
            (test.run)();
            Ok(Completion::Completed)
        }
        Plan::Vm(Err(NoRun::Skip(cause, reason))) => {
            skip(test.name, *cause, reason);
            Ok(Completion::ignored_with(reason))
        }
        Plan::Vm(Err(NoRun::Fail(why))) => Err(why.into()),
        Plan::Vm(Ok(run)) => match run.results.get(test.name) {
            Some((true, _)) => Ok(Completion::Completed),
            Some((false, output)) => Err(format!(
                "failed in the VM; its output there:\n{output}\n({})",
                run.about
            )
            .into()),
            None => Err(format!("did not report a result from the VM: {}", run.about).into()),
        },
    }
}

/// Boots the VM once and runs the `selected` tests in it (`why_vm`: why not natively).
fn in_vm(spec: &KernelTests, why_vm: &str, selected: &[&str]) -> Result<GuestRun, NoRun> {
    let mut vm = Vm::prepare().map_err(|e| match e {
        VmError::Unavailable { cause, reason } => NoRun::Skip(
            cause,
            format!("{why_vm}, and there is no VM to run the test in: {reason}"),
        ),
        VmError::Failed(why) => NoRun::Fail(format!("the VM could not be prepared: {why}")),
    })?;
    let fail = |what: &str, e: String| NoRun::Fail(format!("{what}: {e}"));
    (spec.setup)(&mut vm).map_err(|e| fail("preparing the VM", e))?;
    let me = std::env::current_exe().map_err(|e| fail("this program's path", e.to_string()))?;
    let guest_me = format!("/test/{}", spec.program);
    vm.host_program(&me, &guest_me)
        .map_err(|e| fail("putting this program into the VM", e))?;
    vm.env("PODNET_NO_SKIPS", "1").env("RUST_BACKTRACE", "1");
    let mut command = vec![guest_me.as_str(), GUEST_FLAG];
    command.extend_from_slice(selected);
    let run = vm.run(&command).map_err(|e| fail("running qemu", e))?;

    let log_path = vm
        .cache_dir()
        .join("logs")
        .join(format!("{}.log", spec.program));
    let saved = std::fs::create_dir_all(log_path.parent().unwrap_or(vm.cache_dir()))
        .and_then(|()| std::fs::write(&log_path, &run.log));
    let where_log = match saved {
        Ok(()) => format!("{}", log_path.display()),
        Err(e) => format!("not saved: {}: {e}", log_path.display()),
    };
    let results = guest_results(&run.log);
    let all_passed = selected
        .iter()
        .all(|t| results.get(*t).is_some_and(|(ok, _)| *ok));
    let about = if run.timed_out {
        format!(
            "the VM timed out after {:.0} s; console in {where_log}",
            run.elapsed.as_secs_f64()
        )
    } else if run.status.is_none() {
        format!(
            "the guest ended without an exit status (a kernel panic or an init failure); \
             console in {where_log}"
        )
    } else {
        format!("console in {where_log}")
    };
    let mut err = std::io::stderr().lock();
    if all_passed && run.status == Some(0) {
        let _ = writeln!(
            err,
            "{}: {why_vm}: {} test(s) ran in a VM ({}, qemu TCG) in {:.1} s; console in \
             {where_log}",
            spec.program,
            selected.len(),
            vm.kernel()
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            run.elapsed.as_secs_f64()
        );
    } else {
        let _ = writeln!(
            err,
            "--- {}: guest console ({:.1} s, exit status {:?}) ---\n{}\n--- end of guest console ---",
            spec.program,
            run.elapsed.as_secs_f64(),
            run.status,
            run.log
        );
    }
    Ok(GuestRun { results, about })
}

/// The guest's per-test results from its console: name -> (passed, the test's section).
/// A test that printed a `SKIP` line counts as failed (the guest allows no skips).
fn guest_results(log: &str) -> BTreeMap<String, (bool, String)> {
    let mut results = BTreeMap::new();
    let mut section: Option<(String, String)> = None;
    for line in log.lines() {
        let marker = line.find(MARK).and_then(|i| {
            let mut words = line[i + MARK.len()..].split_whitespace();
            Some((words.next()?, words.next()?))
        });
        match marker {
            Some(("start", name)) => section = Some((name.to_owned(), String::new())),
            Some((verdict @ ("ok" | "FAILED"), name)) => {
                let text = match section.take() {
                    Some((n, text)) if n == name => text,
                    _ => String::new(),
                };
                let skipped = text.lines().any(|l| l.trim_start().starts_with("SKIP "));
                results.insert(name.to_owned(), (verdict == "ok" && !skipped, text));
            }
            _ => {
                if let Some((_, text)) = section.as_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    results
}

/// The guest side: runs the named tests in turn (each in this process, its panic caught) and
/// prints `PODNET-VM-TEST start|ok|FAILED <name>` lines. Exits 0 when every test passed.
fn guest(spec: &KernelTests, names: &[String]) -> ! {
    let mut failed = 0;
    for name in names {
        let Some(test) = spec.tests.iter().find(|t| t.name == name) else {
            println!("\n{MARK} FAILED {name}");
            eprintln!("no kernel test is named {name}");
            failed += 1;
            continue;
        };
        println!("\n{MARK} start {name}");
        let _ = std::io::stdout().flush();
        let passed = std::panic::catch_unwind(test.run).is_ok();
        let _ = std::io::stderr().flush();
        println!("\n{MARK} {} {name}", if passed { "ok" } else { "FAILED" });
        let _ = std::io::stdout().flush();
        if !passed {
            failed += 1;
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 })
}
