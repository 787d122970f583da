//! Small filesystem helpers: advisory file locks (flock) and atomic replace-by-rename.
//!
//! The only unsafe code of the crate lives here: one `flock(2)` call.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An exclusive `flock(2)` held on an open file; released on drop (and by the kernel when the
/// process dies, which is what makes it safe against kill -9).
#[derive(Debug)]
pub(crate) struct FlockGuard<'a> {
    file: &'a File,
}

impl<'a> FlockGuard<'a> {
    /// Blocks until the exclusive lock on `file` is ours.
    pub(crate) fn lock(file: &'a File) -> io::Result<Self> {
        loop {
            if flock(file, libc::LOCK_EX) == 0 {
                return Ok(FlockGuard { file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        let _ = flock(self.file, libc::LOCK_UN);
    }
}

#[allow(unsafe_code)]
fn flock(file: &File, op: libc::c_int) -> libc::c_int {
    // SAFETY: flock only reads the descriptor number, which `file` keeps open for this call.
    unsafe { libc::flock(file.as_raw_fd(), op) }
}

/// Opens (creating if needed) a lock file with the mode host-local's file mutex uses.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o750)
        .open(path)
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Prefix of every temporary file this crate creates in a data directory.
pub(crate) const TEMP_PREFIX: &str = ".podnet-tmp-";

/// A fresh temporary file name in `dir`, unique within this machine while this process lives.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{seq}", std::process::id()))
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, optionally
/// fsynced, then renamed over `path`. Readers see the old or the new content, never a mix.
/// Keeps the permissions of an existing file, else uses `mode`.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => mode,
    };
    let tmp = temp_path(&dir);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A random number in `0..n` (`n` > 0) from the operating system (`getrandom`), to spread
/// subnet picks between nodes. Should the system refuse (it does not on Linux), 0: the
/// search then starts at the first subnet, which costs contention, not correctness.
pub(crate) fn random_below(n: u128) -> u128 {
    let mut b = [0u8; 16];
    match getrandom::fill(&mut b) {
        Ok(()) => u128::from_ne_bytes(b) % n.max(1),
        Err(_) => 0,
    }
}
