//! The raw system calls podnet-links needs that netlink-sys does not offer: the TUN ioctls,
//! poll and recvmmsg (socket buffer sizes: [`crate::nlattr::set_buffer_force`]).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// `struct ifreq` as the TUN ioctls use it: a name and a flags word, padded to 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// TUNSETIFF: attaches the /dev/net/tun file `fd` to (creating if needed) device `name` with
/// IFF_* `flags`; returns the device's name (the kernel fills in patterns such as `tun%d`).
pub(crate) fn tun_set_iff(
    fd: &impl AsRawFd,
    name: &str,
    flags: libc::c_short,
) -> io::Result<String> {
    let mut req = IfReqFlags {
        name: [0; 16],
        flags,
        _pad: [0; 22],
    };
    let bytes = name.as_bytes();
    if bytes.len() > 15 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; `req` is a properly sized, initialised
    // ifreq (name + flags + padding to 40 bytes) that lives across the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) })?;
    let end = req.name.iter().position(|b| *b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&req.name[..end]).into_owned())
}

/// TUNSETPERSIST.
pub(crate) fn tun_set_persist(fd: &impl AsRawFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value; no memory is passed.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    })
}

/// TUNSETOFFLOAD with TUN_F_* flags.
pub(crate) fn tun_set_offload(fd: &impl AsRawFd, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    })
}

/// TUNSETVNETHDRSZ.
pub(crate) fn tun_set_vnet_hdr_size(fd: &impl AsRawFd, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which points at a live local.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETHDRSZ,
            &size as *const libc::c_int,
        )
    })
}

/// poll(2) for readability with a timeout (`None` waits forever); `true` when readable.
pub(crate) fn poll_readable(
    fd: &impl AsRawFd,
    timeout: Option<std::time::Duration>,
) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = match timeout {
        None => -1,
        Some(t) => libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX),
    };
    loop {
        // SAFETY: one pollfd that lives across the call, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(n > 0);
    }
}

/// Size of each receive slot of [`recv_many`]: acknowledgements are far smaller.
pub(crate) const SLOT: usize = 8192;

/// recvmmsg(2): receives up to `bufs.len()` datagrams in one call, without waiting for more
/// than are queued (`MSG_DONTWAIT`). Returns how many arrived, with each length in `lens` (a
/// length above [`SLOT`] means the datagram was truncated).
pub(crate) fn recv_many(
    sock: &impl AsRawFd,
    bufs: &mut [[u8; SLOT]],
    lens: &mut [usize],
) -> io::Result<usize> {
    let n = bufs.len().min(lens.len());
    let mut iovs: Vec<libc::iovec> = bufs[..n]
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SLOT,
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value (null name, no control).
    let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs` holds `n` initialised headers whose single iovec each points at a live
    // SLOT-byte buffer in `bufs`; all of them outlive the call.
    let got = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as _,
            (libc::MSG_DONTWAIT | libc::MSG_TRUNC) as _,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    for (len, m) in lens.iter_mut().zip(&msgs).take(got) {
        *len = m.msg_len as usize;
    }
    Ok(got)
}
