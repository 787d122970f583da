//! The few raw system calls podnet-netns needs: unshare, setns, mount, umount2.
//!
//! Each wrapper checks its arguments' lifetimes and converts the return value into
//! `io::Result`; the unsafe lives here and nowhere else in the crate.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling thread into a new, empty network namespace.
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes a flag word and touches no memory of ours.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })
}

/// Moves the calling thread into the network namespace behind `fd`.
pub(crate) fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    setns_raw(fd.as_raw_fd())
}

/// Like [`setns_net`] on a raw descriptor; async-signal-safe, for use between fork and exec.
pub(crate) fn setns_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag word and touches no memory of ours; an invalid
    // descriptor is reported as EBADF/EINVAL.
    check(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })
}

/// `mount(src, target, NULL, flags, NULL)`: bind mounts and propagation changes.
pub(crate) fn mount(src: Option<&Path>, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let none = CString::from(c"none");
    let src = match src {
        Some(p) => cstr(p)?,
        None => none,
    };
    let target = cstr(target)?;
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; fstype and data
    // may be NULL for bind mounts and propagation changes.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
}

/// `umount2(target, MNT_DETACH)`.
pub(crate) fn umount_detach(target: &Path) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: the pointer is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
}

/// The calling thread's kernel id, for messages and tests.
pub(crate) fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    i64::from(unsafe { libc::gettid() })
}

/// Arranges for `cmd`'s child to enter the namespace behind `fd` between fork and exec.
pub(crate) fn enter_before_exec(
    cmd: &mut std::process::Command,
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec; it only reads an integer from the
    // Arc (no allocation, no locks) and calls setns, which is async-signal-safe. The Arc keeps
    // the descriptor open for as long as the Command exists.
    unsafe {
        cmd.pre_exec(move || setns_raw(fd.as_raw_fd()));
    }
}
