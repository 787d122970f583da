//! The one raw socket option the nftables batch sender needs: SO_SNDBUFFORCE, so that a full
//! sync's batch (megabytes at tens of thousands of Services) fits in one `send`, as the kernel
//! requires of a batch.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Sets SO_SNDBUFFORCE (root only), which may exceed `net.core.wmem_max`.
pub(crate) fn set_sndbuf_force(sock: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value points at a c_int that lives across the call, and the length
    // passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
