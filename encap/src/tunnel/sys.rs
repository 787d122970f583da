//! The tunnel's system calls: batched UDP I/O (recvmmsg/sendmmsg with UDP_GRO and
//! UDP_SEGMENT), poll, socket options and TUN queries.
//!
//! This is the only module of podnet-encap with unsafe code. Every function here has a safe
//! signature: buffers come in as slices, results go out as plain values, and the raw
//! `msghdr`/`iovec` arrays live on the stack for the duration of one call. After quinn-udp's
//! `unix.rs`.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The most messages one [`recv_batch`] or [`send_batch`] call moves.
pub(crate) const MAX_MSGS: usize = 64;

/// The most segments the kernel accepts in one UDP_SEGMENT send (`UDP_MAX_SEGMENTS`, 64 in
/// kernels before 6.10; later kernels allow 128).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

/// The most UDP payload bytes in one datagram (or one GSO batch) over IPv4.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65535 - 20 - 8;

/// Room for one control message carrying an `int` (UDP_GRO) or a `u16` (UDP_SEGMENT):
/// `CMSG_SPACE(sizeof(int))` is 24 on 64-bit Linux; 32 leaves room to spare.
const CMSG_BUF: usize = 32;

/// A control-message buffer aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF]);

const TUN_IFF_VNET_HDR: libc::c_int = 0x4000;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value points to a live c_int and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(|_| ())
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr_in(sa: &libc::sockaddr_in) -> Option<SocketAddrV4> {
    (libc::c_int::from(sa.sin_family) == libc::AF_INET).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(sa.sin_addr.s_addr.to_ne_bytes()),
            u16::from_be(sa.sin_port),
        )
    })
}

/// A UDP socket bound to `addr` with SO_REUSEPORT, so that several workers can each hold one
/// socket on the same port and the kernel spreads the peers' flows over them.
pub(crate) fn udp_socket_reuseport(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    // SAFETY: socket() takes no pointers; a non-negative result is a new descriptor we own.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    })?;
    // SAFETY: fd was just returned by socket() and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(owned.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let sa = sockaddr_in(addr);
    // SAFETY: sa is a valid sockaddr_in and its exact size is passed.
    cvt(unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(UdpSocket::from(owned))
}

/// Turns on UDP_GRO (the kernel hands over coalesced datagrams with their segment size).
pub(crate) fn enable_gro(sock: &UdpSocket) -> bool {
    setsockopt_int(sock.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 1).is_ok()
}

/// `true` when the kernel accepts UDP_SEGMENT on this socket (the option is set and cleared
/// again; each send asks for segmentation with a control message).
pub(crate) fn gso_supported(sock: &UdpSocket) -> bool {
    let ok = setsockopt_int(sock.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 1400).is_ok();
    if ok {
        let _ = setsockopt_int(sock.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 0);
    }
    ok
}

/// Sets the socket's receive and send buffers to `bytes`, beyond `rmem_max` when allowed
/// (SO_RCVBUFFORCE needs CAP_NET_ADMIN), otherwise as far as the limit allows.
pub(crate) fn set_buffers(sock: &UdpSocket, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let fd = sock.as_fd();
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v);
    }
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, v);
    }
}

/// Puts a descriptor (a TUN queue) in non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer argument.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Whether a TUN queue carries a virtio-net header, and its size (TUNGETIFF,
/// TUNGETVNETHDRSZ). `None` when the descriptor is not a TUN device.
pub(crate) fn tun_vnet_hdr(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    let mut ifr = [0u8; 40]; // struct ifreq: 16-byte name, then the flags (short)
    // SAFETY: TUNGETIFF writes a struct ifreq (40 bytes) into the buffer passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, ifr.as_mut_ptr()) })?;
    let flags = libc::c_int::from(i16::from_ne_bytes([ifr[16], ifr[17]]));
    if flags & TUN_IFF_VNET_HDR == 0 {
        return Ok(None);
    }
    let mut size: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one int into the pointer passed.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETVNETHDRSZ, &mut size) })?;
    Ok(Some(usize::try_from(size).unwrap_or(0)))
}

/// Waits until one of `fds` is readable (or in error), or `timeout_ms` passes.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<()> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    let n = fds.len().min(pfds.len());
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    // SAFETY: pfds holds n initialised pollfd entries.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// One received datagram (possibly several coalesced by GRO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecvMeta {
    /// Bytes received.
    pub(crate) len: usize,
    /// The sender, when it is an IPv4 address.
    pub(crate) src: Option<SocketAddrV4>,
    /// The size of each coalesced datagram (the last may be shorter); `len` without GRO.
    pub(crate) stride: usize,
    /// The datagram did not fit its slot (MSG_TRUNC).
    pub(crate) truncated: bool,
}

/// Receives up to `metas.len()` datagrams without blocking (recvmmsg, MSG_DONTWAIT) into
/// consecutive `slot`-byte slots of `buf`. Returns how many arrived; `WouldBlock` when none.
pub(crate) fn recv_batch(
    sock: &UdpSocket,
    buf: &mut [u8],
    slot: usize,
    metas: &mut [RecvMeta],
) -> io::Result<usize> {
    let n = metas.len().min(MAX_MSGS).min(buf.len() / slot.max(1));
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero bytes are a valid value for these plain C structs.
    let mut hdrs: [libc::mmsghdr; MAX_MSGS] = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_in; MAX_MSGS] = unsafe { mem::zeroed() };
    let mut iovs = [MaybeUninit::<libc::iovec>::uninit(); MAX_MSGS];
    let mut ctrls = [CmsgBuf([0; CMSG_BUF]); MAX_MSGS];
    for (i, chunk) in buf.chunks_exact_mut(slot).take(n).enumerate() {
        iovs[i].write(libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        });
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        h.msg_control = ctrls[i].0.as_mut_ptr().cast();
        h.msg_controllen = CMSG_BUF as _;
    }
    let got = loop {
        // SAFETY: the first n headers point at live, disjoint buffers (names, iovecs over
        // disjoint chunks of buf, control buffers) that outlive the call.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    for i in 0..got {
        let h = &hdrs[i].msg_hdr;
        let len = hdrs[i].msg_len as usize;
        let mut stride = len;
        // SAFETY: h is a msghdr the kernel filled in; its control buffer is ctrls[i] with
        // msg_controllen set by the kernel, so the CMSG_* walk stays inside it.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(h) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points at a complete cmsghdr inside ctrls[i] (CMSG_FIRSTHDR and
            // CMSG_NXTHDR return null otherwise).
            let c = unsafe { &*cmsg };
            if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == libc::UDP_GRO {
                // SAFETY: a UDP_GRO message carries one int; CMSG_DATA may be unaligned.
                let v = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>()) };
                if v > 0 {
                    stride = v as usize;
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(h, cmsg) };
        }
        metas[i] = RecvMeta {
            len: len.min(slot),
            src: from_sockaddr_in(&names[i]),
            stride,
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(got)
}

/// Receives one datagram without blocking (recvfrom, MSG_DONTWAIT): the one-packet-per-call
/// path. Returns its length, sender and whether it was truncated.
pub(crate) fn recv_one(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SocketAddrV4>, bool)> {
    // SAFETY: all-zero bytes are a valid sockaddr_in.
    let mut name: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    loop {
        // SAFETY: buf and name are live and writable for the lengths passed.
        let r = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut name as *mut libc::sockaddr_in).cast(),
                &mut namelen,
            )
        };
        if r >= 0 {
            let n = r as usize;
            return Ok((n.min(buf.len()), from_sockaddr_in(&name), n > buf.len()));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One datagram to send: `iov_len` slices starting at `iov_start` of the batch's slices,
/// sent to `dst`; with `segment > 0` the kernel splits it into datagrams of `segment` bytes
/// (UDP_SEGMENT; the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendMsg {
    pub(crate) dst: SocketAddrV4,
    pub(crate) iov_start: usize,
    pub(crate) iov_len: usize,
    pub(crate) segment: u16,
}

impl Default for SendMsg {
    fn default() -> SendMsg {
        SendMsg {
            dst: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            iov_start: 0,
            iov_len: 0,
            segment: 0,
        }
    }
}

/// Sends the messages with one sendmmsg call. Returns how many the kernel took (the rest
/// were not sent), or the error of the first message.
///
/// Messages whose slices fall outside `iovs` are sent empty-handed as errors
/// (`InvalidInput`) rather than read out of bounds.
pub(crate) fn send_batch(
    sock: &UdpSocket,
    iovs: &[IoSlice<'_>],
    msgs: &[SendMsg],
) -> io::Result<usize> {
    let n = msgs.len().min(MAX_MSGS);
    if n == 0 {
        return Ok(0);
    }
    if msgs[..n].iter().any(|m| {
        m.iov_start
            .checked_add(m.iov_len)
            .is_none_or(|e| e > iovs.len())
    }) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: all-zero bytes are a valid value for these plain C structs.
    let mut hdrs: [libc::mmsghdr; MAX_MSGS] = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_in; MAX_MSGS] = unsafe { mem::zeroed() };
    let mut ctrls = [CmsgBuf([0; CMSG_BUF]); MAX_MSGS];
    for (i, m) in msgs[..n].iter().enumerate() {
        names[i] = sockaddr_in(m.dst);
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // IoSlice is guaranteed ABI-compatible with struct iovec on Unix; sendmmsg only
        // reads through the pointer.
        h.msg_iov = iovs[m.iov_start..].as_ptr() as *mut libc::iovec;
        h.msg_iovlen = m.iov_len as _;
        if m.segment > 0 {
            h.msg_control = ctrls[i].0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE only computes a size.
            h.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
            // SAFETY: the control buffer is CMSG_BUF bytes, more than CMSG_SPACE(2), so the
            // first header and its 2 data bytes lie inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.segment);
            }
        }
    }
    loop {
        // SAFETY: the first n headers point at live buffers (names, the caller's slices,
        // control buffers) that outlive the call; sendmmsg only reads them.
        let r =
            unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
