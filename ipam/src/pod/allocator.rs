//! Pod-address leases in host-local's on-disk layout.
//!
//! `<dataDir>/<network>/<ip>` holds `<container id>\r\n<ifname>` (no trailing newline: the
//! bytes the reference plugin writes), `last_reserved_ip.<range set>` holds the last address
//! handed out from each range set (round-robin resumes after it), and `lock` is the `flock`ed
//! file both host-local and podnet take before changing anything. So host-local and podnet can
//! take turns on the same directory.
//!
//! A lease file appears complete or not at all: its content is written to a temporary file
//! that is then hard-linked to the address's name (which fails if the address is taken, like
//! host-local's `O_EXCL`). A process killed at any point leaves no half-written lease; a
//! leftover temporary file is removed by the next lock holder.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::IpNet;

use super::config::{IpamConfig, Range, from_u128, set_string, to_u128};
use crate::error::AllocError;
use crate::sys::{self, FlockGuard};

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";

/// One address handed to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The range set it came from (index into `ranges`).
    pub range_set: usize,
    /// The address with its subnet's prefix length.
    pub address: IpNet,
    /// The range's gateway.
    pub gateway: IpAddr,
}

/// A lease file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLease {
    /// The leased address (the file's name).
    pub ip: IpAddr,
    /// The container id.
    pub container_id: String,
    /// The interface name; `None` for the old format that stored only the id.
    pub ifname: Option<String>,
}

/// What [`PodAllocator::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Leases removed because their container is gone.
    pub removed: Vec<IpAddr>,
    /// Lease files removed because they were empty (left by a writer that died).
    pub removed_empty: Vec<IpAddr>,
    /// Leases kept.
    pub kept: usize,
}

/// Allocates pod addresses from a network's range sets, host-local style.
///
/// ```
/// use podnet_ipam::{IpamConfig, PodAllocator};
/// let dir = tempfile::tempdir()?;
/// let conf = format!(r#"{{"name":"pods","ipam":{{"dataDir":{:?},"subnet":"10.244.1.0/24"}}}}"#, dir.path());
/// let alloc = PodAllocator::open(IpamConfig::parse(&conf)?)?;
/// let a = alloc.allocate("c1", "eth0")?;
/// assert_eq!(a[0].address.to_string(), "10.244.1.2/24"); // .1 is the gateway
/// assert_eq!(std::fs::read(dir.path().join("pods/10.244.1.2"))?, b"c1\r\neth0");
/// alloc.release("c1", "eth0")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PodAllocator {
    config: IpamConfig,
    dir: PathBuf,
    lock_path: PathBuf,
    // flock excludes other processes; the mutex excludes threads sharing this open file and
    // guards what this process remembers of the directory.
    lock: Mutex<Locked>,
}

#[derive(Debug)]
struct Locked {
    file: File,
    /// The parsed content of each lease file by name, with the file's inode number. Reused
    /// only while a fresh directory listing shows the same name with the same inode (lease
    /// files are never changed in place, only created and removed), and a lease about to be
    /// returned or removed is read again first.
    cache: HashMap<String, (u64, Content)>,
}

#[derive(Debug, Clone)]
enum Content {
    Lease { id: String, ifname: Option<String> },
    Empty,
    Corrupt(String),
}

fn parse_content(data: &[u8]) -> Content {
    let Ok(text) = std::str::from_utf8(data) else {
        return Content::Corrupt("not UTF-8".to_string());
    };
    let text = text.trim();
    if text.is_empty() {
        return Content::Empty;
    }
    let (id, ifname) = match text.split_once("\r\n").or_else(|| text.split_once('\n')) {
        Some((id, ifname)) => (id.trim(), Some(ifname.trim())),
        None => (text, None),
    };
    if id.is_empty()
        || id.contains(['\r', '\n'])
        || ifname.is_some_and(|i| i.contains(['\r', '\n']))
    {
        return Content::Corrupt("not `<container id>\\r\\n<ifname>`".to_string());
    }
    Content::Lease {
        id: id.to_string(),
        ifname: ifname.map(str::to_string),
    }
}

/// Reads a host-local lease file (`<container id>\r\n<ifname>`) as the allocator does:
/// `Ok(None)` for an empty file, the container id and interface name otherwise, and why not
/// for a file the allocator skips as corrupt. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn parse_lease_file(data: &[u8]) -> Result<Option<(String, Option<String>)>, String> {
    match parse_content(data) {
        Content::Lease { id, ifname } => Ok(Some((id, ifname))),
        Content::Empty => Ok(None),
        Content::Corrupt(why) => Err(why),
    }
}

struct Scan {
    leases: Vec<PodLease>,
    empty: Vec<IpAddr>,
    /// Every address that has a file, readable or not.
    taken: HashSet<IpAddr>,
}

impl PodAllocator {
    /// Opens the network's lease directory, creating it (0755) and its lock file.
    pub fn open(config: IpamConfig) -> Result<Self, AllocError> {
        let dir = config.lease_dir();
        fs::create_dir_all(&dir).map_err(|e| AllocError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = sys::open_lock_file(&lock_path).map_err(|e| AllocError::io(&lock_path, e))?;
        Ok(PodAllocator {
            config,
            dir,
            lock_path,
            lock: Mutex::new(Locked {
                file: lock,
                cache: HashMap::new(),
            }),
        })
    }

    /// The config.
    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    /// The lease directory, `<dataDir>/<name>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn locked<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, (u64, Content)>) -> Result<R, AllocError>,
    ) -> Result<R, AllocError> {
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Locked { file, cache } = &mut *guard;
        let _fl = FlockGuard::lock(file).map_err(|e| AllocError::io(&self.lock_path, e))?;
        f(cache)
    }

    /// Reads one lease file: open, one read, close.
    fn read_lease(path: &Path) -> io::Result<Content> {
        let mut f = File::open(path)?;
        let mut buf = [0u8; 512];
        let n = f.read(&mut buf)?;
        if n < buf.len() {
            return Ok(parse_content(&buf[..n]));
        }
        let mut data = buf.to_vec();
        f.read_to_end(&mut data)?;
        Ok(parse_content(&data))
    }

    /// Whether the file for `ip` still holds `id`'s lease (on `ifname`, or in the old format).
    fn confirm(&self, ip: IpAddr, id: &str, ifname: Option<&str>) -> bool {
        match Self::read_lease(&self.dir.join(ip.to_string())) {
            Ok(Content::Lease { id: i, ifname: f }) => {
                i == id && (f.is_none() || ifname.is_none() || f.as_deref() == ifname)
            }
            _ => false,
        }
    }

    /// Lists the directory and parses every lease file (reusing `cache` where the name and
    /// inode are unchanged). Unreadable files are skipped with a warning naming them. With
    /// `clean`, stale temporary files are removed (only valid under the lock).
    fn scan(
        &self,
        mut cache: Option<&mut HashMap<String, (u64, Content)>>,
        clean: bool,
    ) -> Result<Scan, AllocError> {
        let mut scan = Scan {
            leases: Vec::new(),
            empty: Vec::new(),
            taken: HashSet::new(),
        };
        let mut seen: HashSet<String> = HashSet::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| AllocError::io(&self.dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| AllocError::io(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(sys::TEMP_PREFIX) {
                if clean {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            scan.taken.insert(ip);
            let ino = entry.ino();
            let cached = cache
                .as_deref()
                .and_then(|c| c.get(name.as_ref()))
                .filter(|(i, _)| *i == ino)
                .map(|(_, c)| c.clone());
            let content = match cached {
                Some(c) => c,
                None => {
                    let path = entry.path();
                    let content = match Self::read_lease(&path) {
                        Ok(c) => c,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "skipping unreadable lease file");
                            continue;
                        }
                    };
                    match &content {
                        Content::Empty => {
                            tracing::warn!(path = %path.display(), "skipping empty lease file (a writer died?)")
                        }
                        Content::Corrupt(reason) => {
                            tracing::warn!(path = %path.display(), reason, "skipping corrupt lease file")
                        }
                        Content::Lease { .. } => {}
                    }
                    if let Some(c) = cache.as_deref_mut() {
                        c.insert(name.to_string(), (ino, content.clone()));
                    }
                    content
                }
            };
            if cache.is_some() {
                seen.insert(name.to_string());
            }
            match content {
                Content::Lease { id, ifname } => scan.leases.push(PodLease {
                    ip,
                    container_id: id,
                    ifname,
                }),
                Content::Empty => scan.empty.push(ip),
                Content::Corrupt(_) => {}
            }
        }
        if let Some(c) = cache {
            c.retain(|k, _| seen.contains(k));
        }
        Ok(scan)
    }

    /// Every lease in the directory (corrupt files are skipped with a warning).
    pub fn leases(&self) -> Result<Vec<PodLease>, AllocError> {
        let mut l = self.scan(None, false)?.leases;
        l.sort_by_key(|l| (to_u128(l.ip), l.ip.is_ipv6()));
        Ok(l)
    }

    fn check_args(id: &str, ifname: &str) -> Result<(), AllocError> {
        if id.trim().is_empty() {
            return Err(AllocError::BadArgument {
                field: "container_id",
                reason: "empty",
            });
        }
        if id.contains(['\r', '\n']) {
            return Err(AllocError::BadArgument {
                field: "container_id",
                reason: "contains a line break",
            });
        }
        if ifname.contains(['\r', '\n']) {
            return Err(AllocError::BadArgument {
                field: "ifname",
                reason: "contains a line break",
            });
        }
        Ok(())
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        let text = fs::read_to_string(&path).ok()?;
        match text.trim().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable last reserved address");
                None
            }
        }
    }

    fn excluded(&self, ip: IpAddr) -> bool {
        self.config.exclude.iter().any(|n| n.contains(&ip))
    }

    /// Allocates one address from every range set to `(container_id, ifname)`.
    ///
    /// Idempotent: a container that already holds an address in a range set gets that address
    /// again. If any range set is full, the addresses taken by this call are given back.
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<Allocation>, AllocError> {
        self.allocate_with(container_id, ifname, &[])
    }

    /// Like [`allocate`](Self::allocate), taking the `requested` addresses in the range sets
    /// that contain them.
    pub fn allocate_with(
        &self,
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocation>, AllocError> {
        Self::check_args(container_id, ifname)?;
        let id = container_id.trim();
        for ip in requested {
            if !self
                .config
                .ranges
                .iter()
                .any(|s| s.iter().any(|r| r.contains(*ip)))
            {
                return Err(AllocError::Unavailable {
                    ip: *ip,
                    reason: "not in any range set".to_string(),
                });
            }
        }
        self.locked(|cache| {
            let mut scan = self.scan(Some(&mut *cache), true)?;
            let stale = scan.leases.iter().any(|l| {
                l.container_id == id
                    && l.ifname.as_deref().is_none_or(|i| i == ifname)
                    && !self.confirm(l.ip, id, Some(ifname))
            });
            if stale {
                cache.clear();
                scan = self.scan(Some(&mut *cache), true)?;
            }
            let content = format!("{id}\r\n{ifname}");
            let mut tmp: Option<PathBuf> = None;
            let mut made: Vec<PathBuf> = Vec::new();
            let mut out = Vec::new();
            let result = (|| {
                for (idx, set) in self.config.ranges.iter().enumerate() {
                    let existing = scan.leases.iter().find(|l| {
                        l.container_id == id
                            && l.ifname.as_deref().is_none_or(|i| i == ifname)
                            && set.iter().any(|r| r.contains(l.ip))
                    });
                    if let Some(l) = existing {
                        let r = set.iter().find(|r| r.contains(l.ip)).copied();
                        if let Some(r) = r {
                            out.push(alloc_of(idx, &r, l.ip));
                            continue;
                        }
                    }
                    let want = requested
                        .iter()
                        .copied()
                        .find(|ip| set.iter().any(|r| r.contains(*ip)));
                    let tmp_path = match &tmp {
                        Some(p) => p.clone(),
                        None => {
                            let p = self.write_temp(&content)?;
                            tmp = Some(p.clone());
                            p
                        }
                    };
                    let (ip, range) = match want {
                        Some(ip) => self.take_requested(idx, set, ip, &tmp_path, &scan)?,
                        None => self.take_next(idx, set, &tmp_path, &scan)?,
                    };
                    if let Ok(meta) = fs::metadata(&tmp_path) {
                        cache.insert(
                            ip.to_string(),
                            (
                                meta.ino(),
                                Content::Lease {
                                    id: id.to_string(),
                                    ifname: Some(ifname.to_string()),
                                },
                            ),
                        );
                    }
                    scan.taken.insert(ip);
                    made.push(self.dir.join(ip.to_string()));
                    // One file per lease: never share an inode between two addresses.
                    if let Some(t) = tmp.take() {
                        let _ = fs::remove_file(t);
                    }
                    out.push(alloc_of(idx, &range, ip));
                }
                Ok(())
            })();
            if let Some(t) = &tmp {
                let _ = fs::remove_file(t);
            }
            match result {
                Ok(()) => Ok(out),
                Err(e) => {
                    for p in made {
                        let _ = fs::remove_file(p);
                    }
                    cache.clear();
                    Err(e)
                }
            }
        })
    }

    fn write_temp(&self, content: &str) -> Result<PathBuf, AllocError> {
        let path = sys::temp_path(&self.dir);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| AllocError::io(&path, e))?;
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(AllocError::io(&path, e));
        }
        Ok(path)
    }

    /// Links the prepared lease file to `ip`'s name; `false` when the address is taken.
    fn try_take(&self, set: usize, ip: IpAddr, tmp: &Path) -> Result<bool, AllocError> {
        let path = self.dir.join(ip.to_string());
        match fs::hard_link(tmp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(AllocError::io(&path, e)),
        }
        let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        if let Err(e) = Self::write_last_reserved(&last, ip) {
            let _ = fs::remove_file(&path);
            return Err(AllocError::io(&last, e));
        }
        Ok(true)
    }

    /// Rewrites `last_reserved_ip.<n>` in place, as host-local does (creating a file per
    /// allocation costs more than the allocation). A process killed mid-way can only leave a
    /// wrong or unreadable round-robin hint, which costs round-robin order, never a lease.
    fn write_last_reserved(path: &Path, ip: IpAddr) -> io::Result<()> {
        let text = ip.to_string();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        f.set_len(text.len() as u64)
    }

    fn take_requested(
        &self,
        idx: usize,
        set: &[Range],
        ip: IpAddr,
        tmp: &Path,
        scan: &Scan,
    ) -> Result<(IpAddr, Range), AllocError> {
        let Some(range) = set.iter().find(|r| r.contains(ip)).copied() else {
            return Err(AllocError::Unavailable {
                ip,
                reason: "not in the range set".into(),
            });
        };
        if ip == range.gateway {
            return Err(AllocError::Unavailable {
                ip,
                reason: "it is the subnet's gateway".into(),
            });
        }
        if self.excluded(ip) {
            return Err(AllocError::Unavailable {
                ip,
                reason: "excluded".into(),
            });
        }
        if scan.taken.contains(&ip) || !self.try_take(idx, ip, tmp)? {
            return Err(AllocError::Unavailable {
                ip,
                reason: "already leased".into(),
            });
        }
        Ok((ip, range))
    }

    /// Round-robin: from the address after `last_reserved_ip.<idx>` through every range of the
    /// set, wrapping, skipping gateways and exclusions (host-local's `RangeIter`).
    fn take_next(
        &self,
        idx: usize,
        set: &[Range],
        tmp: &Path,
        scan: &Scan,
    ) -> Result<(IpAddr, Range), AllocError> {
        let total: u128 = set.iter().map(Range::len).fold(0, u128::saturating_add);
        // Position of a flat index in the set.
        let locate = |mut p: u128| -> Option<(IpAddr, &Range)> {
            for r in set {
                if p < r.len() {
                    return Some((from_u128(to_u128(r.range_start) + p, r.range_start), r));
                }
                p -= r.len();
            }
            None
        };
        let start = self.last_reserved(idx).and_then(|last| {
            let mut off = 0u128;
            for r in set {
                if r.contains(last) {
                    return Some(
                        off.saturating_add(to_u128(last) - to_u128(r.range_start))
                            .saturating_add(1),
                    );
                }
                off = off.saturating_add(r.len());
            }
            None
        });
        let start = start.unwrap_or(0) % total.max(1);
        let mut k: u128 = 0;
        while k < total {
            // (start + k) mod total, without overflowing.
            let p = if k < total - start {
                start + k
            } else {
                k - (total - start)
            };
            k += 1;
            let Some((ip, r)) = locate(p) else { break };
            if ip == r.gateway || scan.taken.contains(&ip) || self.excluded(ip) {
                continue;
            }
            if self.try_take(idx, ip, tmp)? {
                return Ok((ip, *r));
            }
        }
        Err(AllocError::Exhausted {
            index: idx,
            ranges: set_string(set),
        })
    }

    /// Gives back every address of `(container_id, ifname)`; returns them. Files in the old
    /// id-only format are matched by id when no exact match exists (host-local's rule).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, AllocError> {
        let id = container_id.trim();
        self.locked(|cache| {
            let victims_of = |scan: &Scan| -> Vec<(IpAddr, Option<String>)> {
                let exact: Vec<(IpAddr, Option<String>)> = scan
                    .leases
                    .iter()
                    .filter(|l| l.container_id == id && l.ifname.as_deref() == Some(ifname))
                    .map(|l| (l.ip, l.ifname.clone()))
                    .collect();
                if !exact.is_empty() {
                    return exact;
                }
                scan.leases
                    .iter()
                    .filter(|l| l.container_id == id && l.ifname.is_none())
                    .map(|l| (l.ip, None))
                    .collect()
            };
            let mut victims = victims_of(&self.scan(Some(&mut *cache), true)?);
            // Read again before removing: never trust memory to delete a lease.
            if victims
                .iter()
                .any(|(ip, f)| !self.confirm(*ip, id, f.as_deref()))
            {
                cache.clear();
                victims = victims_of(&self.scan(Some(&mut *cache), true)?);
            }
            let mut released = Vec::with_capacity(victims.len());
            for (ip, _) in victims {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => released.push(ip),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(AllocError::io(&path, e)),
                }
                cache.remove(&ip.to_string());
            }
            Ok(released)
        })
    }

    /// CNI STATUS: fails with [`AllocError::Exhausted`] naming the first range set without a
    /// free address (its gateway, exclusions and leases counted). Reads only; changes nothing.
    pub fn check_free(&self) -> Result<(), AllocError> {
        let taken = self.scan(None, false)?.taken;
        for (index, set) in self.config.ranges.iter().enumerate() {
            if !set.iter().any(|r| self.first_free(r, &taken).is_some()) {
                return Err(AllocError::Exhausted {
                    index,
                    ranges: set_string(set),
                });
            }
        }
        Ok(())
    }

    /// The lowest address of `r` that is neither its gateway, excluded nor `taken`. Skips an
    /// exclusion in one step, so the work is bounded by the leases and exclusions, not by the
    /// size of the range.
    fn first_free(&self, r: &Range, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
        let end = to_u128(r.range_end);
        let mut v = to_u128(r.range_start);
        while v <= end {
            let ip = from_u128(v, r.range_start);
            if let Some(n) = self.config.exclude.iter().find(|n| n.contains(&ip)) {
                v = to_u128(n.broadcast()).checked_add(1)?;
                continue;
            }
            if ip != r.gateway && !taken.contains(&ip) {
                return Some(ip);
            }
            v = v.checked_add(1)?;
        }
        None
    }

    /// Removes the leases of containers that are not in `live` (pairs of container id and
    /// interface name; an old-format lease survives if its id is live with any interface),
    /// and empty lease files left by writers that died.
    pub fn gc<I, A, B>(&self, live: I) -> Result<GcReport, AllocError>
    where
        I: IntoIterator<Item = (A, B)>,
        A: AsRef<str>,
        B: AsRef<str>,
    {
        let live: HashSet<(String, String)> = live
            .into_iter()
            .map(|(a, b)| (a.as_ref().trim().to_string(), b.as_ref().to_string()))
            .collect();
        let live_ids: HashSet<&str> = live.iter().map(|(a, _)| a.as_str()).collect();
        self.locked(|cache| {
            cache.clear();
            let scan = self.scan(None, true)?;
            let mut report = GcReport::default();
            for l in &scan.leases {
                let alive = match &l.ifname {
                    Some(i) => live.contains(&(l.container_id.clone(), i.clone())),
                    None => live_ids.contains(l.container_id.as_str()),
                };
                if alive {
                    report.kept += 1;
                    continue;
                }
                let path = self.dir.join(l.ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => report.removed.push(l.ip),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(AllocError::io(&path, e)),
                }
            }
            for ip in &scan.empty {
                // Under the lock nobody is writing, so an empty lease file is a dead writer's.
                let path = self.dir.join(ip.to_string());
                if fs::remove_file(&path).is_ok() {
                    report.removed_empty.push(*ip);
                }
            }
            Ok(report)
        })
    }
}

fn alloc_of(idx: usize, r: &Range, ip: IpAddr) -> Allocation {
    Allocation {
        range_set: idx,
        address: IpNet::new(ip, r.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(ip)),
        gateway: r.gateway,
    }
}
