//! TUN and TAP devices, created through /dev/net/tun (the kernel does not create them over
//! rtnetlink), inside the namespace of the handle that asks.

use crate::error::{Error, Result};
use crate::sys;
use crate::types::validate_ifname;
use netlink_packet_core::{DefaultNla, Nla};
use std::fmt;
use std::fs::File;
use std::ops::BitOr;
use std::os::fd::AsRawFd;

// TUNSETIFF's flags travel in the c_short `ifr_flags`; libc declares them as c_int. Every one
// fits: the conversion is checked at compile time.
const IFF_TUN: libc::c_short = short(libc::IFF_TUN);
const IFF_TAP: libc::c_short = short(libc::IFF_TAP);
const IFF_MULTI_QUEUE: libc::c_short = short(libc::IFF_MULTI_QUEUE);
const IFF_NO_PI: libc::c_short = short(libc::IFF_NO_PI);
const IFF_VNET_HDR: libc::c_short = short(libc::IFF_VNET_HDR);

const fn short(flag: libc::c_int) -> libc::c_short {
    assert!(flag >= 0 && flag <= libc::c_short::MAX as libc::c_int);
    flag as libc::c_short
}

/// Offloads a TUN/TAP device accepts from userspace (TUNSETOFFLOAD). They need
/// [`Tun::vnet_hdr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offload(pub u32);

impl Offload {
    /// No offloads.
    pub const NONE: Offload = Offload(0);
    /// Checksum offload (TUN_F_CSUM).
    pub const CSUM: Offload = Offload(libc::TUN_F_CSUM);
    /// TCP segmentation over IPv4 (TUN_F_TSO4).
    pub const TSO4: Offload = Offload(libc::TUN_F_TSO4);
    /// TCP segmentation over IPv6 (TUN_F_TSO6).
    pub const TSO6: Offload = Offload(libc::TUN_F_TSO6);
    /// TSO with ECN (TUN_F_TSO_ECN).
    pub const TSO_ECN: Offload = Offload(libc::TUN_F_TSO_ECN);
    /// UDP segmentation over IPv4 (TUN_F_USO4).
    pub const USO4: Offload = Offload(libc::TUN_F_USO4);
    /// UDP segmentation over IPv6 (TUN_F_USO6).
    pub const USO6: Offload = Offload(libc::TUN_F_USO6);

    /// `true` when every flag of `other` is set.
    pub fn contains(self, other: Offload) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Offload {
    type Output = Offload;
    fn bitor(self, rhs: Offload) -> Offload {
        Offload(self.0 | rhs.0)
    }
}

/// A TUN (layer 3) or TAP (layer 2) device to create.
///
/// ```no_run
/// # fn main() -> Result<(), podnet_links::Error> {
/// use podnet_links::{Handle, Offload, Tun};
/// let h = Handle::new()?;
/// let dev = h.link().add(
///     &Tun::new("flannel0").queues(2).vnet_hdr(true).offload(Offload::CSUM | Offload::TSO4),
/// )?;
/// assert_eq!(dev.queues().len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Tun {
    name: String,
    tap: bool,
    packet_info: bool,
    queues: u32,
    multi_queue: bool,
    vnet_hdr: bool,
    vnet_hdr_size: Option<i32>,
    offload: Offload,
    persist: bool,
}

impl Tun {
    /// A TUN device (IFF_TUN, IFF_NO_PI, one queue, owned by the returned files).
    pub fn new(name: impl Into<String>) -> Tun {
        Tun {
            name: name.into(),
            tap: false,
            packet_info: false,
            queues: 1,
            multi_queue: false,
            vnet_hdr: false,
            vnet_hdr_size: None,
            offload: Offload::NONE,
            persist: false,
        }
    }

    /// A TAP device (IFF_TAP).
    pub fn tap(name: impl Into<String>) -> Tun {
        Tun {
            tap: true,
            ..Tun::new(name)
        }
    }

    /// Prefix each packet with the 4-byte packet information header (clears IFF_NO_PI).
    pub fn packet_info(mut self, on: bool) -> Tun {
        self.packet_info = on;
        self
    }

    /// Open `n` queues (IFF_MULTI_QUEUE when more than one); `n` must be at least 1.
    pub fn queues(mut self, n: u32) -> Tun {
        self.queues = n;
        self
    }

    /// IFF_MULTI_QUEUE even with one queue (so more can be attached later).
    pub fn multi_queue(mut self, on: bool) -> Tun {
        self.multi_queue = on;
        self
    }

    /// IFF_VNET_HDR: each packet carries a virtio-net header (needed for offloads).
    pub fn vnet_hdr(mut self, on: bool) -> Tun {
        self.vnet_hdr = on;
        self
    }

    /// TUNSETVNETHDRSZ (10 by default in the kernel; 12 with the mergeable-buffers field).
    pub fn vnet_hdr_size(mut self, size: i32) -> Tun {
        self.vnet_hdr_size = Some(size);
        self
    }

    /// TUNSETOFFLOAD flags.
    pub fn offload(mut self, offload: Offload) -> Tun {
        self.offload = offload;
        self
    }

    /// Keep the device after the files close (TUNSETPERSIST).
    pub fn persist(mut self, on: bool) -> Tun {
        self.persist = on;
        self
    }

    fn check(&self) -> Result<()> {
        validate_ifname(&self.name)?;
        if self.queues == 0 {
            return Err(Error::InvalidArgument {
                what: format!("tun {} queues", self.name),
                reason: "queue count 0: at least one queue is needed".into(),
            });
        }
        if self.offload != Offload::NONE && !self.vnet_hdr {
            return Err(Error::InvalidArgument {
                what: format!("tun {} offload", self.name),
                reason: "offloads need vnet_hdr".into(),
            });
        }
        Ok(())
    }

    fn flags(&self) -> libc::c_short {
        let mut f = if self.tap { IFF_TAP } else { IFF_TUN };
        if !self.packet_info {
            f |= IFF_NO_PI;
        }
        if self.multi_queue || self.queues > 1 {
            f |= IFF_MULTI_QUEUE;
        }
        if self.vnet_hdr {
            f |= IFF_VNET_HDR;
        }
        f
    }

    /// Opens the queues and configures the device; runs in the target namespace.
    fn open(&self) -> std::io::Result<(String, Vec<File>)> {
        let mut files = Vec::with_capacity(self.queues as usize);
        let mut name = self.name.clone();
        for _ in 0..self.queues {
            let f = File::options()
                .read(true)
                .write(true)
                .open("/dev/net/tun")?;
            name = sys::tun_set_iff(&f, &name, self.flags())?;
            files.push(f);
        }
        let first = &files[0];
        if let Some(sz) = self.vnet_hdr_size {
            for f in &files {
                sys::tun_set_vnet_hdr_size(f, sz)?;
            }
        }
        if self.offload != Offload::NONE {
            sys::tun_set_offload(first, self.offload.0)?;
        }
        if self.persist {
            sys::tun_set_persist(first, true)?;
        }
        Ok((name, files))
    }
}

/// A created TUN/TAP device and its queue files.
#[derive(Debug)]
pub struct TunDevice {
    name: String,
    index: u32,
    queues: Vec<File>,
}

impl TunDevice {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The queue files: read a packet from one, write a packet to one.
    pub fn queues(&self) -> &[File] {
        &self.queues
    }

    /// Takes the queue files (for one worker per queue).
    pub fn into_queues(self) -> Vec<File> {
        self.queues
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.queues[0].as_raw_fd()
    }
}

impl crate::link::LinkAdd for Tun {
    type Added = TunDevice;

    /// Creates the TUN/TAP device inside the handle's namespace and returns its queue files.
    /// Without [`Tun::persist`] the device disappears when the last file closes.
    #[allow(private_interfaces)]
    fn add_with(&self, links: &crate::link::Links<'_>) -> Result<TunDevice> {
        let spec = self;
        spec.check()?;
        let opened = match links.h.netns() {
            Some(ns) => ns.run(|| spec.open())?,
            None => spec.open(),
        };
        let (name, queues) = opened.map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            Error::from_kernel(
                "tun add",
                spec.name.clone(),
                crate::netlink::KernelError {
                    errno,
                    message: None,
                },
            )
        })?;
        let index = links.index(name.as_str())?;
        Ok(TunDevice {
            name,
            index,
            queues,
        })
    }
}

impl crate::link::Links<'_> {
    #[deprecated(note = "use add, which returns the TunDevice for a Tun")]
    #[doc(hidden)]
    pub fn add_tun(&self, spec: &Tun) -> Result<TunDevice> {
        self.add(spec)
    }
}

/// A TUN/TAP device's settings as the kernel reports them (`ip -d link show`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TunInfo {
    /// TAP (layer 2) rather than TUN.
    pub tap: bool,
    /// Packet information header on.
    pub packet_info: bool,
    /// virtio-net header on.
    pub vnet_hdr: bool,
    /// Kept after its files close.
    pub persist: bool,
    /// IFF_MULTI_QUEUE.
    pub multi_queue: bool,
    /// Attached queues.
    pub queues: u32,
    /// Detached queues.
    pub disabled_queues: u32,
}

impl TunInfo {
    pub(crate) fn from_nlas(nlas: &[DefaultNla]) -> TunInfo {
        let mut t = TunInfo::default();
        for nla in nlas {
            let mut v = vec![0u8; nla.value_len()];
            nla.emit_value(&mut v);
            let u8v = v.first().copied().unwrap_or(0);
            let u32v = v
                .get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0);
            match nla.kind() {
                3 => t.tap = u8v == 2,
                4 => t.packet_info = u8v != 0,
                5 => t.vnet_hdr = u8v != 0,
                6 => t.persist = u8v != 0,
                7 => t.multi_queue = u8v != 0,
                8 => t.queues = u32v,
                9 => t.disabled_queues = u32v,
                _ => {}
            }
        }
        t
    }
}

impl fmt::Display for TunInfo {
    /// Like `ip -d link`: `tun type tun pi off vnet_hdr on multi_queue numqueues 2 ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let onoff = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "tun type {} pi {} vnet_hdr {} persist {}",
            if self.tap { "tap" } else { "tun" },
            onoff(self.packet_info),
            onoff(self.vnet_hdr),
            onoff(self.persist)
        )?;
        if self.multi_queue {
            write!(
                f,
                " multi_queue numqueues {} numdisabled {}",
                self.queues, self.disabled_queues
            )?;
        }
        Ok(())
    }
}
