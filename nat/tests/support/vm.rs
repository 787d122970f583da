//! A virtual machine for tests that need kernel features this machine's kernel lacks (IPVS,
//! dummy links): Debian's kernel booted under qemu (TCG) with a small initramfs.
//!
//! Everything is fetched with Debian's own tools and cached under the cargo target directory
//! (`<target>/podnet-vm/`), never installed: the kernel package (`apt-get download`, the one
//! `linux-image-amd64` depends on) unpacked with `dpkg-deb -x`, `busybox-static` for the
//! guest's shell and tools, and any Debian program a test wants in the guest (with its shared
//! libraries). The initramfs is written here (newc cpio, uncompressed), so `cpio` is not needed.
//! Only `qemu-system-x86_64` must be installed (package `qemu-system-x86`); when it is missing
//! and we are root, [`Vm::prepare`] installs it with `apt-get`.
//!
//! The guest runs `/init` (busybox sh): mounts proc, sys, devtmpfs, and tmpfs on /run and /tmp,
//! brings `lo` up, loads the asked-for kernel modules with `insmod` in dependency order
//! (read from each module's `depends=` and `softdep=` in `.modinfo`), runs the command with
//! the asked-for environment, prints `PODNET-VM-EXIT <status>` and powers off. qemu exits 0
//! whatever happens inside, so [`Vm::run`] reads that marker from the serial console.
//!
//! Files go into the guest at guest paths chosen by the caller, never at the host path of a
//! checkout or target directory: those can be anywhere (under /tmp, which the guest's tmpfs
//! would hide, or with spaces in their names). Guest paths under the directories the init
//! mounts over (/proc, /sys, /dev, /run, /tmp) are refused. Only the host's shared libraries
//! (the C library and loader, at `/lib`, `/usr/lib`, `/lib64`) keep their host paths.
//!
//! A program for the guest is one cargo already built for this machine, put in with
//! [`Vm::host_program`] (a copy without debug information, plus the host's shared libraries
//! it loads; the tests run their own executable this way, so nothing is built twice).
//! Debian programs run in the guest with the host's C library and loader (the same Debian
//! release) and what [`Vm::debian_program`] downloads; [`Vm::debian_dir`] adds plugin
//! directories (iptables' extensions). The guest has a minimal `/etc/protocols`.
//!
//! This file uses only the standard library and `podnet-testsupport` (a dev-dependency of every
//! crate that includes it), so other crates' tests can include it with
//! `#[path = "../../nat/tests/support/vm.rs"] mod vm;`. Test programs normally do not use it
//! directly but through `vm_tests.rs`, which runs kernel tests natively or in one VM.
//!
//! ```ignore
//! let mut vm = match Vm::prepare() {
//!     Ok(vm) => vm,
//!     Err(VmError::Unavailable { cause, reason }) => return podnet_testsupport::skip(test, cause, &reason),
//!     Err(VmError::Failed(why)) => panic!("{why}"),
//! };
//! vm.modules(&["ip_vs", "ip_vs_rr", "dummy", "veth"])?;
//! vm.debian_program("ipvsadm", "sbin/ipvsadm", &["libnl-3-200", "libnl-genl-3-200", "libpopt0"])?;
//! vm.host_program(&std::env::current_exe()?, "/test/me")?;
//! let run = vm.run(&["/test/me", "--some-flag"])?;
//! assert_eq!(run.status, Some(0), "{}", run.log);
//! ```
#![allow(dead_code, unreachable_pub)]

use podnet_testsupport::SkipCause;
use podnet_testsupport::initramfs::{Cpio, modinfo_deps, module_name};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The marker the guest's init prints with the command's exit status.
pub const EXIT_MARKER: &str = "PODNET-VM-EXIT";

/// The guest directories the init mounts a file system over: files put there by the
/// initramfs would be hidden, so [`Vm::run`] refuses them.
pub const MOUNTED_IN_GUEST: &[&str] = &["/proc", "/sys", "/dev", "/run", "/tmp"];

/// Why there is no VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmError {
    /// The VM cannot be had on this machine as it is (no qemu and no way to install it, no
    /// Debian package archive): the tests that need it skip with this cause and reason.
    Unavailable {
        /// Whether the test command could have removed the cause (e.g. by running as root,
        /// which installs qemu) or the machine lacks it.
        cause: SkipCause,
        /// What is missing, and what would provide it.
        reason: String,
    },
    /// Something that should have worked did not (a broken kernel package, an unwritable
    /// cache): the tests that need the VM fail with it.
    Failed(String),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Unavailable { reason, .. } => write!(f, "no VM: {reason}"),
            VmError::Failed(why) => write!(f, "the VM could not be prepared: {why}"),
        }
    }
}

impl From<String> for VmError {
    fn from(why: String) -> VmError {
        VmError::Failed(why)
    }
}

fn unavailable(cause: SkipCause, reason: impl Into<String>) -> VmError {
    VmError::Unavailable {
        cause,
        reason: reason.into(),
    }
}

/// The cause of a failed download from Debian's archive: as root, apt-get could update its
/// package lists, so the archive is out of reach (the machine); otherwise running as root
/// might have fixed it.
fn fetch_cause() -> SkipCause {
    if is_root() {
        SkipCause::Machine
    } else {
        SkipCause::Avoidable
    }
}

/// The kernel modules of kube-proxy's ipvs mode: IPVS with the rr scheduler, the `kube-ipvs0`
/// dummy device, ipsets, and the legacy iptables tables, matches and targets its rules use.
pub const IPVS_MODE_MODULES: &[&str] = &[
    "ip_vs",
    "ip_vs_rr",
    "dummy",
    "nf_conntrack_netlink",
    "ip_tables",
    "iptable_nat",
    "iptable_filter",
    "xt_tcpudp",
    "xt_set",
    "ip_set_hash_ip",
    "ip_set_hash_ipport",
    "ip_set_hash_ipportip",
    "ip_set_hash_ipportnet",
    "ip_set_hash_net",
    "ip_set_bitmap_port",
    "xt_comment",
    "xt_mark",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_conntrack",
    "xt_physdev",
    "xt_ipvs",
    "ipt_REJECT",
];

/// A prepared virtual machine: a kernel, its modules, busybox, and what a test adds.
#[derive(Debug, Clone)]
pub struct Vm {
    work: PathBuf,
    qemu: PathBuf,
    kernel: PathBuf,
    /// `<unpacked kernel package>/lib/modules/<version>`.
    module_root: PathBuf,
    busybox: PathBuf,
    /// Guest path -> host file.
    files: BTreeMap<String, PathBuf>,
    /// Module files in load order.
    modules: Vec<PathBuf>,
    env: Vec<(String, String)>,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// How long a run may take before qemu is killed.
    pub timeout: Duration,
}

/// What a run printed on the serial console, and the command's exit status.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// The command's exit status, from the marker; `None` when the guest never printed it
    /// (a kernel panic, an init failure, a timeout).
    pub status: Option<i32>,
    /// Everything the guest printed.
    pub log: String,
    /// How long qemu ran.
    pub elapsed: Duration,
    /// qemu was killed at the timeout.
    pub timed_out: bool,
}

impl VmRun {
    /// `true` when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// The cargo target directory of the running test or benchmark (where the VM cache lives):
/// the one its executable is in (`<target>/<profile>/deps/<name>`), else `CARGO_TARGET_DIR`
/// when absolute, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        if deps.file_name()? != "deps" {
            return None;
        }
        Some(deps.parent()?.parent()?.to_path_buf())
    });
    if let Some(dir) = from_exe {
        return dir;
    }
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => workspace_root().join("target"),
    }
}

/// The workspace root (the directory above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn run_cmd(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `true` when this process runs as root.
pub fn is_root() -> bool {
    // The owner of /proc/self is the effective user.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Installs Debian packages with apt (as root only), updating the package lists if the first
/// attempt fails. Waits up to two minutes for another apt or dpkg to finish.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !is_root() || which("apt-get").is_none() {
        return Err(format!(
            "not root or no apt-get: install {} by hand",
            packages.join(" ")
        ));
    }
    let install = || {
        run_cmd(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(["-o", "DPkg::Lock::Timeout=120"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_ok() {
        return Ok(());
    }
    run_cmd(Command::new("apt-get").args(["update", "-qq", "-o", "DPkg::Lock::Timeout=120"]))?;
    install().map(drop)
}

/// Finds `qemu-system-x86_64`, installing Debian's `qemu-system-x86` when we are root.
fn find_qemu() -> Result<PathBuf, VmError> {
    const PROGRAM: &str = "qemu-system-x86_64";
    if let Some(q) = which(PROGRAM) {
        return Ok(q);
    }
    if which("apt-get").is_none() {
        return Err(unavailable(
            SkipCause::Machine,
            format!("{PROGRAM} is not installed, and there is no apt-get to install it"),
        ));
    }
    if !is_root() {
        return Err(unavailable(
            SkipCause::Avoidable,
            format!(
                "{PROGRAM} is not installed; run the tests as root (they install it) or \
                 `apt-get install qemu-system-x86`"
            ),
        ));
    }
    apt_install(&["qemu-system-x86"]).map_err(|e| {
        unavailable(
            SkipCause::Machine,
            format!(
                "{PROGRAM} is not installed, and `apt-get install qemu-system-x86` failed \
                 (no Debian archive reachable?): {e}"
            ),
        )
    })?;
    which(PROGRAM).ok_or_else(|| {
        VmError::Failed(format!(
            "{PROGRAM} not found after installing qemu-system-x86"
        ))
    })
}

/// Downloads and unpacks a Debian package into `<work>/pkgs/<name>/` (once), returns that
/// directory.
fn debian_package(work: &Path, name: &str) -> Result<PathBuf, String> {
    let dest = work.join("pkgs").join(name);
    if dest.join(".complete").exists() {
        return Ok(dest);
    }
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = work.join(format!(
        "tmp-{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    let result = (|| {
        let download = || {
            run_cmd(
                Command::new("apt-get")
                    .args(["download", name])
                    .current_dir(&tmp),
            )
        };
        if download().is_err() {
            // Fresh machines may have no package lists yet.
            if is_root() {
                let _ = run_cmd(Command::new("apt-get").args(["update", "-qq"]));
            }
            download()?;
        }
        let deb = fs::read_dir(&tmp)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| format!("apt-get download {name} left no .deb"))?;
        let root = tmp.join("root");
        run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        let _ = fs::remove_file(&deb);
        fs::write(root.join(".complete"), name).map_err(|e| e.to_string())?;
        fs::create_dir_all(dest.parent().unwrap_or(work)).map_err(|e| e.to_string())?;
        // Atomic: a concurrent run that got there first wins, and ours is dropped.
        if fs::rename(&root, &dest).is_err() && !dest.join(".complete").exists() {
            return Err(format!("could not move {} into place", root.display()));
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&tmp);
    result.map(|()| dest)
}

/// The versioned kernel package `linux-image-amd64` depends on now.
fn kernel_package_name() -> Result<String, String> {
    let parse = |text: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
            .map(str::to_owned)
    };
    let first = run_cmd(Command::new("apt-cache").args(["depends", "linux-image-amd64"]));
    if let Some(name) = first.as_deref().ok().and_then(parse) {
        return Ok(name);
    }
    if is_root() {
        let _ = run_cmd(Command::new("apt-get").args(["update", "-qq"]));
    }
    let text = run_cmd(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    parse(&text).ok_or_else(|| "apt-cache depends linux-image-amd64 names no kernel".into())
}

impl Vm {
    /// Finds qemu (installing it when root) and fetches the kernel and busybox (cached).
    /// [`VmError::Unavailable`] says what is missing and whether the test command could have
    /// provided it: tests skip with it. [`VmError::Failed`] is an error: tests fail with it.
    pub fn prepare() -> Result<Vm, VmError> {
        if std::env::consts::ARCH != "x86_64" {
            return Err(unavailable(
                SkipCause::Machine,
                format!(
                    "the VM harness runs x86_64 guests on x86_64 hosts only, not on {}",
                    std::env::consts::ARCH
                ),
            ));
        }
        let qemu = find_qemu()?;
        if which("apt-get").is_none() || which("dpkg-deb").is_none() {
            return Err(unavailable(
                SkipCause::Machine,
                "apt-get and dpkg-deb are needed to fetch Debian's kernel",
            ));
        }
        let work = target_dir().join("podnet-vm");
        fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
        let kpkg = kernel_package_name().map_err(|e| {
            unavailable(
                fetch_cause(),
                format!("no Debian kernel package to boot (no Debian archive reachable?): {e}"),
            )
        })?;
        let kroot = debian_package(&work, &kpkg).map_err(|e| {
            unavailable(
                fetch_cause(),
                format!("fetching kernel package {kpkg} (no Debian archive reachable?): {e}"),
            )
        })?;
        let kernel = fs::read_dir(kroot.join("boot"))
            .map_err(|e| format!("{kpkg} has no /boot: {e}"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .ok_or_else(|| format!("{kpkg} has no vmlinuz"))?;
        let module_root = fs::read_dir(kroot.join("lib/modules"))
            .map_err(|e| format!("{kpkg} has no modules: {e}"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .ok_or_else(|| format!("{kpkg} has no module directory"))?;
        let bb = debian_package(&work, "busybox-static")
            .map_err(|e| unavailable(fetch_cause(), format!("fetching busybox-static: {e}")))?;
        let busybox = bb.join("bin/busybox");
        if !busybox.is_file() {
            return Err(VmError::Failed("busybox-static has no bin/busybox".into()));
        }
        Ok(Vm {
            work,
            qemu,
            kernel,
            module_root,
            busybox,
            files: BTreeMap::new(),
            modules: Vec::new(),
            env: Vec::new(),
            memory_mb: 256,
            timeout: Duration::from_secs(600),
        })
    }

    /// The kernel image booted.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The cache directory (`<target>/podnet-vm`): downloaded packages, initramfs images,
    /// copies of host programs, logs.
    pub fn cache_dir(&self) -> &Path {
        &self.work
    }

    /// Adds kernel modules (by name, e.g. `ip_vs_rr`) and everything they depend on, to be
    /// loaded in dependency order. Names use `_`; files with `-` are found too.
    pub fn modules(&mut self, names: &[&str]) -> Result<&mut Vm, String> {
        let index = self.module_index()?;
        let mut seen: BTreeSet<String> =
            self.modules.iter().filter_map(|p| module_name(p)).collect();
        for name in names {
            let name = name.replace('-', "_");
            self.add_module(&index, &name, &mut seen, 0)?;
        }
        Ok(self)
    }

    fn module_index(&self) -> Result<BTreeMap<String, PathBuf>, String> {
        let mut index = BTreeMap::new();
        let mut stack = vec![self.module_root.join("kernel")];
        while let Some(dir) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for e in entries.filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(n) = module_name(&p) {
                    index.insert(n, p);
                }
            }
        }
        Ok(index)
    }

    /// Modules built into the kernel (`modules.builtin`): nothing to load.
    fn builtin(&self) -> BTreeSet<String> {
        fs::read_to_string(self.module_root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .collect()
    }

    fn add_module(
        &mut self,
        index: &BTreeMap<String, PathBuf>,
        name: &str,
        seen: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<(), String> {
        if seen.contains(name) {
            return Ok(());
        }
        if !index.contains_key(name) && self.builtin().contains(name) {
            seen.insert(name.to_owned());
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module dependencies too deep at {name}"));
        }
        let path = index.get(name).ok_or_else(|| {
            format!(
                "no module {name} in {} (built into the kernel?)",
                self.module_root.display()
            )
        })?;
        let (depends, soft_pre) = modinfo_deps(path)?;
        seen.insert(name.to_owned());
        // Soft dependencies first (libcrc32c wants a crc32c implementation), when present.
        for s in soft_pre {
            for candidate in [s.clone(), format!("{s}_generic")] {
                if index.contains_key(&candidate) {
                    self.add_module(index, &candidate, seen, depth + 1)?;
                    break;
                }
            }
        }
        for d in depends {
            self.add_module(index, &d, seen, depth + 1)?;
        }
        self.modules.push(path.clone());
        Ok(())
    }

    /// Puts a host file into the guest at `guest_path` (absolute), executable.
    pub fn file(&mut self, host: &Path, guest_path: &str) -> &mut Vm {
        self.files.insert(guest_path.to_owned(), host.to_path_buf());
        self
    }

    /// Sets an environment variable for the guest command.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Vm {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Puts a program from a Debian package into the guest at `/<path>` (e.g. `sbin/ipvsadm`
    /// of package `ipvsadm`), with the shared libraries it needs: those of `lib_packages`
    /// (downloaded too) and, for the C library and loader, the host's (Debian's, the same
    /// release).
    pub fn debian_program(
        &mut self,
        package: &str,
        path: &str,
        lib_packages: &[&str],
    ) -> Result<&mut Vm, String> {
        let root = debian_package(&self.work, package)?;
        let bin = root.join(path);
        if !bin.is_file() {
            return Err(format!("package {package} has no {path}"));
        }
        let mut lib_dirs: Vec<(PathBuf, PathBuf)> = Vec::new(); // (pkg root, lib dir)
        for lp in lib_packages {
            let r = debian_package(&self.work, lp)?;
            for sub in [
                "lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu",
                "lib",
                "usr/lib",
            ] {
                if r.join(sub).is_dir() {
                    lib_dirs.push((r.clone(), r.join(sub)));
                }
            }
        }
        let dirs: Vec<String> = lib_dirs
            .iter()
            .map(|(_, d)| d.display().to_string())
            .collect();
        if let Some(d) = dirs.iter().find(|d| d.contains(':')) {
            return Err(format!(
                "{d} contains ':', which LD_LIBRARY_PATH cannot hold: use a target directory \
                 without ':' in its path"
            ));
        }
        let ld_path = dirs.join(":");
        for host in ldd_libraries(&bin, &ld_path)? {
            let guest = match lib_dirs.iter().find(|(_, d)| host.starts_with(d)) {
                Some((r, _)) => format!("/{}", host.strip_prefix(r).unwrap_or(&host).display()),
                None => host.display().to_string(),
            };
            self.files.insert(guest, host);
        }
        self.files.insert(format!("/{path}"), bin);
        Ok(self)
    }

    /// Puts a program built on this machine (a cargo test or binary, dynamically linked) into
    /// the guest at `guest_path`, with the host's shared libraries it needs at their host paths
    /// (the C library and loader included, so no static build is needed). The guest gets a copy
    /// without debug information when `strip` is there (debug builds are mostly debuginfo, and
    /// the guest holds its initramfs in memory).
    pub fn host_program(&mut self, host: &Path, guest_path: &str) -> Result<&mut Vm, String> {
        if !host.is_file() {
            return Err(format!("{} does not exist", host.display()));
        }
        for lib in ldd_libraries(host, "")? {
            let guest = lib.display().to_string();
            self.files.insert(guest, lib);
        }
        // Copies live in host-programs/<pid>/ (one directory per test process; those of
        // processes that are gone are removed here).
        let root = self.work.join("host-programs");
        for e in fs::read_dir(&root).into_iter().flatten().flatten() {
            let gone = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if gone {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let dir = root.join(std::process::id().to_string());
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let stripped = dir.join(format!(
            "{}-{}",
            SEQ.fetch_add(1, Ordering::Relaxed),
            host.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("program")
        ));
        let strip = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(host)
            .output();
        let file = match strip {
            Ok(out) if out.status.success() => stripped,
            _ => host.to_path_buf(),
        };
        self.files.insert(guest_path.to_owned(), file);
        Ok(self)
    }

    /// Puts this machine's `tools` (found on its `PATH`, with their libraries) into the guest
    /// at `/bin` and `/sbin`, before busybox's applets of the same name.
    pub fn host_tools(&mut self, tools: &[&str]) -> Result<&mut Vm, String> {
        for tool in tools {
            let host =
                which(tool).ok_or_else(|| format!("{tool} is not installed on this machine"))?;
            for dir in ["/bin", "/sbin"] {
                self.host_program(&host, &format!("{dir}/{tool}"))?;
            }
        }
        Ok(self)
    }

    /// What kube-proxy's ipvs mode needs besides IPVS in the guest: the modules of
    /// [`IPVS_MODE_MODULES`], `ipvsadm`, `ipset`, and legacy iptables with its extensions, also
    /// under the plain names `iptables`, `iptables-restore` and `iptables-save` (it is
    /// xtables-legacy-multi, which picks its program by the name it is run as).
    pub fn ipvs_mode_tools(&mut self) -> Result<&mut Vm, String> {
        self.modules(IPVS_MODE_MODULES)?;
        self.debian_program(
            "ipvsadm",
            "sbin/ipvsadm",
            &["libnl-3-200", "libnl-genl-3-200", "libpopt0"],
        )?;
        for (tool, plain) in [
            ("usr/sbin/iptables-legacy", "iptables"),
            ("usr/sbin/iptables-legacy-restore", "iptables-restore"),
            ("usr/sbin/iptables-legacy-save", "iptables-save"),
        ] {
            self.debian_program(
                "iptables",
                tool,
                &["libxtables12", "libip4tc2", "libip6tc2"],
            )?;
            let host = self.program_path("iptables", tool)?;
            self.file(&host, &format!("/usr/sbin/{plain}"));
        }
        self.debian_dir("iptables", "usr/lib/x86_64-linux-gnu/xtables")?;
        self.debian_program("ipset", "usr/sbin/ipset", &["libipset13", "libmnl0"])?;
        Ok(self)
    }

    /// The host path of file `path` of Debian package `package` (downloaded and unpacked
    /// once), e.g. to put a multi-call program into the guest under another name as well.
    pub fn program_path(&self, package: &str, path: &str) -> Result<PathBuf, String> {
        let file = debian_package(&self.work, package)?.join(path);
        if file.is_file() {
            Ok(file)
        } else {
            Err(format!("package {package} has no {path}"))
        }
    }

    /// The guest's `/init`. Every word that comes from outside is single-quoted for the shell;
    /// environment names must be names.
    fn init_script(&self, command: &[&str]) -> Result<String, String> {
        let mut s = String::from(
            "#!/bin/busybox sh\n\
             /bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin\n\
             /bin/busybox --install -s /bin\n\
             export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n\
             export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t devtmpfs dev /dev\n\
             mount -t tmpfs run /run\n\
             mount -t tmpfs tmp /tmp\n\
             ip link set lo up\n",
        );
        for m in &self.modules {
            let file = format!("/modules/{}", module_file_name(m)?);
            s.push_str(&format!(
                "insmod {} || echo {}\n",
                shell_quote(&file),
                shell_quote(&format!("PODNET-VM: insmod {file} failed"))
            ));
        }
        for (k, v) in &self.env {
            let is_name = k
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !is_name {
                return Err(format!(
                    "guest environment variable {k:?} is not a shell name"
                ));
            }
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        s.push_str("echo PODNET-VM-START\ncd /tmp\n");
        let cmd: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
        s.push_str(&cmd.join(" "));
        s.push_str(&format!(
            "\nrc=$?\necho \"{EXIT_MARKER} $rc\"\nsync\npoweroff -f\n"
        ));
        Ok(s)
    }

    /// Puts every file under `dir` of a Debian package into the guest at the same path (e.g.
    /// iptables' extensions, `usr/lib/x86_64-linux-gnu/xtables`).
    pub fn debian_dir(&mut self, package: &str, dir: &str) -> Result<&mut Vm, String> {
        let root = debian_package(&self.work, package)?;
        let base = root.join(dir);
        let entries =
            fs::read_dir(&base).map_err(|e| format!("package {package} has no {dir}: {e}"))?;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_file() {
                let rel = p.strip_prefix(&root).unwrap_or(&p);
                self.files.insert(format!("/{}", rel.display()), p.clone());
            }
        }
        Ok(self)
    }

    /// Builds the initramfs (written under the cache directory, removed afterwards).
    fn initramfs(&self, command: &[&str], out: &Path) -> Result<(), String> {
        let mut c = Cpio::default();
        for d in [
            "bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib64", "etc", "dev", "proc",
            "sys", "run", "tmp", "modules", "root",
        ] {
            c.dir(d);
        }
        c.char_device("dev/console", 5, 1);
        c.file("bin/busybox", &read(&self.busybox)?, 0o755);
        c.file("init", self.init_script(command)?.as_bytes(), 0o755);
        c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
        // Protocol names, for tools that look them up (ipset's `tcp:80`).
        c.file(
            "etc/protocols",
            b"ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nipv6-icmp 58 IPv6-ICMP\nsctp 132 SCTP\n",
            0o644,
        );
        for m in &self.modules {
            c.file(
                &format!("modules/{}", module_file_name(m)?),
                &read(m)?,
                0o644,
            );
        }
        for (guest, host) in &self.files {
            check_guest_path(guest)?;
            let rel = guest.trim_start_matches('/');
            let mut parent = Path::new(rel).parent();
            let mut parents = Vec::new();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                parents.push(p.display().to_string());
                parent = p.parent();
            }
            for p in parents.iter().rev() {
                c.dir(p);
            }
            c.file(rel, &read(host)?, 0o755);
        }
        fs::write(out, c.finish()).map_err(|e| format!("writing {}: {e}", out.display()))
    }

    /// Boots the VM, runs `command` (absolute path first) and returns its status and the
    /// console log. `Err` only when qemu could not be started or the image not built.
    pub fn run(&self, command: &[&str]) -> Result<VmRun, String> {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let image = self.work.join(format!(
            "initramfs-{}-{}.cpio",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        self.initramfs(command, &image)?;
        let start = Instant::now();
        let child = Command::new(&self.qemu)
            .args(["-accel", "tcg", "-cpu", "max", "-m"])
            .arg(self.memory_mb.to_string())
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-kernel",
            ])
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&image)
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&image);
                return Err(format!("starting {}: {e}", self.qemu.display()));
            }
        };
        let log = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            readers.push(std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => log
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend_from_slice(&buf[..n]),
                    }
                }
            }));
        }
        let mut timed_out = false;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if start.elapsed() > self.timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = fs::remove_file(&image);
                    return Err(format!("waiting for qemu: {e}"));
                }
            }
        }
        for r in readers {
            let _ = r.join();
        }
        let _ = fs::remove_file(&image);
        let bytes = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let log = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        let status = log.lines().rev().find_map(|l| {
            l.trim()
                .strip_prefix(EXIT_MARKER)
                .and_then(|rest| rest.trim().parse::<i32>().ok())
        });
        Ok(VmRun {
            status,
            log,
            elapsed: start.elapsed(),
            timed_out,
        })
    }
}

/// The shared libraries `bin` loads (with `ld_path` as LD_LIBRARY_PATH), loader included, as
/// `ldd` resolves them. Paths may contain spaces (a target directory under "/tmp/my dir").
fn ldd_libraries(bin: &Path, ld_path: &str) -> Result<Vec<PathBuf>, String> {
    let ldd = run_cmd(Command::new("ldd").arg(bin).env("LD_LIBRARY_PATH", ld_path))?;
    parse_ldd(&ldd).map_err(|line| format!("{} needs a library not found: {line}", bin.display()))
}

/// The absolute library paths of `ldd` output; `Err(line)` for a library not found.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        // "libx.so => /path/libx.so (0x...)", "libx.so => not found",
        // "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
        let path = match line.split_once(" => ") {
            Some((_, rhs)) => rhs,
            None => line,
        };
        if path == "not found" {
            return Err(line.to_owned());
        }
        // Drop the load address, the only part after the path.
        let path = match path.rfind(" (0x") {
            Some(i) if path.ends_with(')') => &path[..i],
            _ => path,
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// `s` as one word for a POSIX shell: single-quoted, with `'` written as `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A module's file name, which becomes a guest path: plain names only.
fn module_file_name(m: &Path) -> Result<&str, String> {
    m.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| format!("module file {} has no usable name", m.display()))
}

/// Refuses a guest path the guest would not see: relative, `..`, or under a directory the
/// init mounts over ([`MOUNTED_IN_GUEST`]).
fn check_guest_path(guest: &str) -> Result<(), String> {
    let p = Path::new(guest);
    if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!(
            "guest path {guest:?} must be absolute, without `..`"
        ));
    }
    if let Some(m) = MOUNTED_IN_GUEST.iter().find(|m| p.starts_with(m)) {
        return Err(format!(
            "guest path {guest:?} is under {m}, which the guest's init mounts over: choose a \
             fixed guest path elsewhere (e.g. /test/...) and tell the guest program where"
        ));
    }
    Ok(())
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
}
