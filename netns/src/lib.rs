//! Linux network namespaces, safe to use from multi-threaded programs.
//!
//! A [`NetNs`] owns a file descriptor that refers to a network namespace. Namespaces created with
//! [`NetNs::add`] are persisted exactly as `ip netns add` persists them (a bind mount under
//! `/run/netns`), so `ip netns exec NAME ...` sees ours and [`NetNs::open`] opens theirs.
//!
//! The calling thread never changes namespace. Code that must run inside one does so on a
//! dedicated thread ([`NetNs::run`]); programs run inside one enter it between fork and exec
//! ([`NetNs::command`]). The class of bugs where a runtime moves work between threads while one of
//! them is switched into another namespace (Go's `ns.Do`) cannot happen.
//!
//! ```no_run
//! use podnet_netns::NetNs;
//!
//! # fn main() -> Result<(), podnet_netns::NetNsError> {
//! let ns = NetNs::add("blue")?;
//! ns.sysctl_set("net.ipv4.ip_forward", "1")?;
//! let out = ns.command("ip").args(["-br", "link"]).output().expect("ip runs");
//! println!("{}", String::from_utf8_lossy(&out.stdout));
//! let inode = ns.run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| {
//!     use std::os::unix::fs::MetadataExt;
//!     m.ino()
//! }))?;
//! assert_eq!(inode.ok(), Some(ns.inode()?));
//! NetNs::del("blue")?;
//! # Ok(())
//! # }
//! ```
//!
//! # Handles
//!
//! A [`NetNs`] is the namespace, not a kernel handle: [`NetNs::add`], [`NetNs::del`] and
//! [`NetNs::list`] are `ip netns`'s verbs, [`NetNs::open`] opens one that exists by name and
//! [`NetNs::current`] is the caller's. The other crates' handles take a `&NetNs` in their
//! `in_ns` constructors and stay bound to it, following podnet's one handle convention (the
//! top README's "Architecture": `new`/`in_ns`/`connect`/`open`, `&self` for shared handles,
//! `&mut self` for one-owner sockets, the verbs add/del/replace/list/get).

mod error;
mod sys;

pub use error::{NetNsError, Result};

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The directory where `ip netns` keeps its namespace bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A handle on one network namespace.
///
/// Cloning is cheap: clones share the descriptor, which is closed when the last one is dropped.
/// Dropping a `NetNs` never deletes a persisted namespace; use [`NetNs::del`] for that.
#[derive(Debug, Clone)]
pub struct NetNs {
    fd: Arc<OwnedFd>,
    name: Option<String>,
    path: Option<PathBuf>,
}

impl NetNs {
    /// The network namespace of the calling thread.
    pub fn current() -> Result<NetNs> {
        Self::open_path("/proc/thread-self/ns/net")
    }

    /// Creates a new namespace and persists it as `/run/netns/NAME`, exactly like `ip netns add`.
    ///
    /// Fails with [`NetNsError::Exists`] when the name is taken. On failure nothing is
    /// left behind.
    pub fn add(name: &str) -> Result<NetNs> {
        validate_name(name)?;
        let dir = Path::new(NETNS_RUN_DIR);
        ensure_run_dir(dir)?;
        let path = dir.join(name);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
        {
            Ok(f) => drop(f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetNsError::Exists { name: name.into() });
            }
            Err(e) => return Err(NetNsError::from_io("create", Some(path), e)),
        }
        let mounted = std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                sys::unshare_net().map_err(|e| NetNsError::from_io("unshare", None, e))?;
                sys::mount(
                    Some(Path::new("/proc/thread-self/ns/net")),
                    &path,
                    libc::MS_BIND,
                )
                .map_err(|e| NetNsError::from_io("mount", Some(path.clone()), e))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetNsError::Panicked {
                    message: "namespace creation thread".into(),
                })
            })
        });
        if let Err(e) = mounted {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        match Self::open(name) {
            Ok(ns) => Ok(ns),
            Err(e) => {
                let _ = sys::umount_detach(&path);
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Opens the persisted namespace `/run/netns/NAME` (ours or one made by `ip netns add`).
    pub fn open(name: &str) -> Result<NetNs> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        let mut ns = Self::open_path(&path).map_err(|e| match e {
            NetNsError::NotFound { .. } => NetNsError::NotFound { name: name.into() },
            other => other,
        })?;
        ns.name = Some(name.into());
        Ok(ns)
    }

    /// Opens a namespace by any path that refers to one, e.g. `/proc/PID/ns/net`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => NetNsError::NotFound {
                    name: path.display().to_string(),
                },
                _ => NetNsError::from_io("open", Some(path.into()), e),
            })?;
        // A bind-mount target that lost its mount is an ordinary empty file: refuse it.
        let st = file
            .metadata()
            .map_err(|e| NetNsError::from_io("stat", Some(path.into()), e))?;
        if st.dev() != nsfs_dev()? {
            return Err(NetNsError::NotFound {
                name: path.display().to_string(),
            });
        }
        Ok(NetNs {
            fd: Arc::new(OwnedFd::from(file)),
            name: None,
            path: Some(path.into()),
        })
    }

    /// Creates a new namespace that is not persisted: it lives as long as this handle (and any
    /// socket or process inside it).
    pub fn new_anonymous() -> Result<NetNs> {
        std::thread::scope(|s| {
            s.spawn(|| -> Result<NetNs> {
                sys::unshare_net().map_err(|e| NetNsError::from_io("unshare", None, e))?;
                let mut ns = Self::current()?;
                ns.path = None;
                Ok(ns)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetNsError::Panicked {
                    message: "namespace creation thread".into(),
                })
            })
        })
    }

    /// Deletes the persisted namespace NAME, like `ip netns del`.
    ///
    /// The namespace itself lives on while anything (a handle, a socket, a process) still holds
    /// it; only the name goes away.
    pub fn del(name: &str) -> Result<()> {
        validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        if !path.exists() {
            return Err(NetNsError::NotFound { name: name.into() });
        }
        match sys::umount_detach(&path) {
            Ok(()) => {}
            // Not a mount point (a leftover file): still remove the name.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(NetNsError::from_io("umount", Some(path), e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(NetNsError::NotFound { name: name.into() })
            }
            Err(e) => Err(NetNsError::from_io("unlink", Some(path), e)),
        }
    }

    /// The old name of [`NetNs::add`] (podnet's kernel-facing verbs are iproute2's: `add`,
    /// `del`, `replace`, `list`, `get`).
    #[deprecated(since = "0.1.0", note = "renamed to `NetNs::add`, like `ip netns add`")]
    pub fn create(name: &str) -> Result<NetNs> {
        Self::add(name)
    }

    /// The old name of [`NetNs::del`].
    #[deprecated(since = "0.1.0", note = "renamed to `NetNs::del`, like `ip netns del`")]
    pub fn delete(name: &str) -> Result<()> {
        Self::del(name)
    }

    /// The names of the persisted namespaces, sorted (what `ip netns list` shows).
    pub fn list() -> Result<Vec<String>> {
        let dir = Path::new(NETNS_RUN_DIR);
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NetNsError::from_io("readdir", Some(dir.into()), e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| NetNsError::from_io("readdir", Some(dir.into()), e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The name under `/run/netns`, for namespaces made by [`add`](Self::add) or
    /// [`open`](Self::open).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The path this namespace was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The namespace's inode number: two handles refer to the same namespace exactly when their
    /// inodes are equal.
    pub fn inode(&self) -> Result<u64> {
        let st = File::from(
            self.fd
                .try_clone()
                .map_err(|e| NetNsError::from_io("dup", None, e))?,
        )
        .metadata()
        .map_err(|e| NetNsError::from_io("fstat", None, e))?;
        Ok(st.ino())
    }

    /// Runs `f` on a new OS thread that is switched into this namespace, and returns its result.
    ///
    /// The calling thread's namespace never changes. Sockets opened inside `f` stay bound to this
    /// namespace after `f` returns, so the usual pattern is to open sockets here and use them
    /// anywhere. A panic inside `f` is returned as [`NetNsError::Panicked`].
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("podnet-netns".into())
                .spawn_scoped(s, || -> Result<T> {
                    sys::setns_net(self.fd.as_fd())
                        .map_err(|e| NetNsError::from_io("setns", self.path.clone(), e))?;
                    Ok(f())
                })
                .map_err(|e| NetNsError::from_io("spawn thread", None, e))?;
            match handle.join() {
                Ok(result) => result,
                Err(payload) => Err(NetNsError::Panicked {
                    message: panic_message(payload.as_ref()),
                }),
            }
        })
    }

    /// A [`Command`] that enters this namespace between fork and exec, for tools such as
    /// `iptables-restore`, `nft`, `ping` or `iperf3`.
    ///
    /// Only the network namespace changes: the program sees the host's mount namespace (so
    /// `/sys/class/net` is the host's; use netlink or `ip` to look at links).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        sys::enter_before_exec(&mut cmd, Arc::clone(&self.fd));
        cmd
    }

    /// Sets a sysctl inside this namespace, e.g. `sysctl_set("net.ipv4.ip_forward", "1")`.
    ///
    /// Keys use dots or slashes as separators (`net/ipv4/conf/eth0.100/forwarding` for names with
    /// dots), like sysctl(8).
    pub fn sysctl_set(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        self.run(|| fs::write(&path, value.as_bytes()))?
            .map_err(|source| NetNsError::Sysctl {
                key: key.into(),
                source,
            })
    }

    /// Reads a sysctl inside this namespace, without the trailing newline.
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let value =
            self.run(|| fs::read_to_string(&path))?
                .map_err(|source| NetNsError::Sysctl {
                    key: key.into(),
                    source,
                })?;
        Ok(value.trim_end_matches('\n').to_owned())
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// Checks a namespace name before any system call.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(NetNsError::InvalidName {
        name: name.into(),
        reason,
    })
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
    let bad = |reason: &str| NetNsError::Sysctl {
        key: key.into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, reason.to_owned()),
    };
    if key.is_empty() || key.contains('\0') {
        return Err(bad("empty key"));
    }
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("malformed key"));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

/// `/run/netns` must exist and be a shared mount point, as `ip netns add` arranges, so that
/// bind mounts made here appear in every mount namespace (and theirs in ours).
fn ensure_run_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| NetNsError::from_io("mkdir", Some(dir.into()), e))?;
    let shared = libc::MS_SHARED | libc::MS_REC;
    match sys::mount(None, dir, shared) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared.
            sys::mount(Some(dir), dir, libc::MS_BIND | libc::MS_REC)
                .and_then(|()| sys::mount(None, dir, shared))
                .map_err(|e| NetNsError::from_io("mount", Some(dir.into()), e))
        }
        Err(e) => Err(NetNsError::from_io("mount", Some(dir.into()), e)),
    }
}

/// The device number of nsfs, the filesystem behind namespace files.
fn nsfs_dev() -> Result<u64> {
    static DEV: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(d) = DEV.get() {
        return Ok(*d);
    }
    let d = fs::metadata("/proc/self/ns/net")
        .map_err(|e| NetNsError::from_io("stat", Some("/proc/self/ns/net".into()), e))?
        .dev();
    Ok(*DEV.get_or_init(|| d))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[doc(hidden)]
/// The calling thread's kernel id (used by tests to show which thread ran what).
pub fn current_tid() -> i64 {
    sys::gettid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        for bad in ["", ".", "..", "a/b", "x\0y"] {
            assert!(matches!(
                validate_name(bad),
                Err(NetNsError::InvalidName { .. })
            ));
        }
        assert!(validate_name("blue-1").is_ok());
        assert!(matches!(
            NetNs::open("a/b"),
            Err(NetNsError::InvalidName { .. })
        ));
    }

    #[test]
    fn sysctl_keys_map_to_proc_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert!(sysctl_path("net..x").is_err());
        assert!(sysctl_path("net/../../etc").is_err());
        assert!(sysctl_path("").is_err());
    }
}
