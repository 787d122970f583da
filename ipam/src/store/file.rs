//! The embedded store: one directory, one state file replaced atomically, one lock file.
//!
//! Every change takes an exclusive `flock` on `<dir>/lock`, reads `<dir>/state.json`, applies
//! the change, and writes the whole state to a temporary file that is fsynced and renamed over
//! the old one. A process killed at any point leaves either the old or the new state, and the
//! kernel drops its lock. Readers take no lock. The state keeps a bounded history of changes so
//! that watches (which poll the file) can resume from a revision; older history is compacted.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{KeyValue, Listing, Store, StoreEvent, StoreWatch};
use crate::error::StoreError;
use crate::sys::{self, FlockGuard};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

/// Tuning of a [`FileStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileStoreOptions {
    /// How many changes the history keeps for watches before it is compacted (default 1000).
    pub history: usize,
    /// How often a watch looks at the state file (default 50 ms).
    pub poll_interval: Duration,
    /// Whether each change is fsynced before it is visible (default true).
    pub durable: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            history: 1000,
            poll_interval: Duration::from_millis(50),
            durable: true,
        }
    }
}

/// The embedded key-value store: a directory shared by every process that opens it.
///
/// ```
/// use podnet_ipam::{FileStore, Store};
/// let dir = tempfile::tempdir()?;
/// let store = FileStore::open(dir.path())?;
/// let rev = store.add("/a", b"1", None)?.expect("new key");
/// assert_eq!(store.add("/a", b"2", None)?, None); // compare-and-swap: already there
/// assert_eq!(store.get("/a")?.unwrap().mod_revision, rev);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state_path: PathBuf,
    lock_path: PathBuf,
    // flock excludes other open files; the mutex excludes threads sharing this one.
    lock: Mutex<File>,
    options: FileStoreOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum Bytes {
    Text(String),
    Hex { hex: String },
}

impl Bytes {
    fn from_slice(b: &[u8]) -> Self {
        match std::str::from_utf8(b) {
            Ok(s) => Bytes::Text(s.to_string()),
            Err(_) => Bytes::Hex {
                hex: b.iter().map(|x| format!("{x:02x}")).collect(),
            },
        }
    }

    fn to_vec(&self) -> Option<Vec<u8>> {
        match self {
            Bytes::Text(s) => Some(s.as_bytes().to_vec()),
            Bytes::Hex { hex } => {
                if hex.len() % 2 != 0 {
                    return None;
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect()
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    value: Bytes,
    mod_revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    rev: u64,
    key: String,
    /// `None` for a deletion.
    #[serde(default)]
    value: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    revision: u64,
    compacted: u64,
    entries: BTreeMap<String, Entry>,
    history: Vec<Change>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn expiry(ttl: Option<Duration>, now: u64) -> Option<u64> {
    ttl.map(|t| now.saturating_add(t.as_millis().min(u128::from(u64::MAX)) as u64))
}

impl State {
    fn live(&self, key: &str, now: u64) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.expires_ms.is_none_or(|x| x > now))
    }

    fn set(&mut self, key: &str, value: &[u8], expires_ms: Option<u64>) -> u64 {
        self.revision += 1;
        let value = Bytes::from_slice(value);
        self.entries.insert(
            key.to_string(),
            Entry {
                value: value.clone(),
                mod_revision: self.revision,
                expires_ms,
            },
        );
        self.history.push(Change {
            rev: self.revision,
            key: key.to_string(),
            value: Some(value),
            expires_ms,
        });
        self.revision
    }

    fn remove(&mut self, key: &str) -> bool {
        if self.entries.remove(key).is_none() {
            return false;
        }
        self.revision += 1;
        self.history.push(Change {
            rev: self.revision,
            key: key.to_string(),
            value: None,
            expires_ms: None,
        });
        true
    }

    fn sweep(&mut self, now: u64) {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires_ms.is_some_and(|x| x <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
    }

    fn compact_to(&mut self, revision: u64) {
        let revision = revision.min(self.revision);
        if revision > self.compacted {
            self.compacted = revision;
        }
        let c = self.compacted;
        self.history.retain(|ch| ch.rev > c);
    }

    fn kv(key: &str, e: &Entry) -> Option<KeyValue> {
        Some(KeyValue {
            key: key.to_string(),
            value: e.value.to_vec()?,
            mod_revision: e.mod_revision,
            expires: e.expires_ms.map(ms_to_time),
        })
    }
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, FileStoreOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`.
    pub fn open_with(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = sys::open_lock_file(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        let store = FileStore {
            inner: Arc::new(Inner {
                state_path: dir.join(STATE_FILE),
                dir,
                lock_path,
                lock: Mutex::new(lock),
                options,
            }),
        };
        store.remove_stale_temp_files()?;
        // Fail early on a state file we cannot read.
        store.read_state()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        let guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _fl = FlockGuard::lock(&guard).map_err(|e| StoreError::io(&self.inner.lock_path, e))?;
        // Only a lock holder writes temporary files, so any left now are from a dead process.
        let rd = fs::read_dir(&self.inner.dir).map_err(|e| StoreError::io(&self.inner.dir, e))?;
        for entry in rd.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(sys::TEMP_PREFIX)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn read_state(&self) -> Result<State, StoreError> {
        let path = &self.inner.state_path;
        match fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    fn mutate<R>(&self, f: impl FnOnce(&mut State, u64) -> R) -> Result<R, StoreError> {
        let guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _fl = FlockGuard::lock(&guard).map_err(|e| StoreError::io(&self.inner.lock_path, e))?;
        let mut state = self.read_state()?;
        let before = (state.revision, state.compacted);
        let now = now_ms();
        state.sweep(now);
        let result = f(&mut state, now);
        if state.history.len() > self.inner.options.history {
            let drop_n = state.history.len() - self.inner.options.history;
            let upto = state.history[drop_n - 1].rev;
            state.compact_to(upto);
        }
        if (state.revision, state.compacted) != before {
            let data = serde_json::to_vec(&state).map_err(|e| StoreError::Corrupt {
                path: self.inner.state_path.clone(),
                reason: e.to_string(),
            })?;
            sys::write_atomic(
                &self.inner.state_path,
                &data,
                0o600,
                self.inner.options.durable,
            )
            .map_err(|e| StoreError::io(&self.inner.state_path, e))?;
        }
        Ok(result)
    }

    /// Deletes expired keys now (watches do this by themselves when a TTL runs out).
    pub fn sweep(&self) -> Result<(), StoreError> {
        self.mutate(|_, _| ())
    }

    fn signature(&self) -> Option<(u64, u64, i64, i64, u64)> {
        let m = fs::metadata(&self.inner.state_path).ok()?;
        Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
    }
}

impl Store for FileStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let state = self.read_state()?;
        Ok(state.live(key, now_ms()).and_then(|e| State::kv(key, e)))
    }

    fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let state = self.read_state()?;
        let now = now_ms();
        let kvs = state
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.expires_ms.is_none_or(|x| x > now))
            .filter_map(|(k, e)| State::kv(k, e))
            .collect();
        Ok(Listing {
            kvs,
            revision: state.revision,
        })
    }

    fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        self.mutate(|st, now| {
            if st.entries.contains_key(key) {
                None
            } else {
                Some(st.set(key, value, expiry(ttl, now)))
            }
        })
    }

    fn replace_if(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.mutate(|st, now| match st.entries.get(key) {
            Some(e) if e.mod_revision == revision => Some(st.set(key, value, expiry(ttl, now))),
            _ => None,
        })
    }

    fn replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.mutate(|st, now| st.set(key, value, expiry(ttl, now)))
    }

    fn del(&self, key: &str) -> Result<bool, StoreError> {
        self.mutate(|st, _| st.remove(key))
    }

    fn watch(&self, prefix: &str, start_revision: u64) -> Result<Box<dyn StoreWatch>, StoreError> {
        Ok(Box::new(FileWatch {
            store: self.clone(),
            prefix: prefix.to_string(),
            next_rev: start_revision.max(1),
            signature: None,
            pending: VecDeque::new(),
            next_expiry: None,
        }))
    }

    fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.mutate(|st, _| st.compact_to(revision))
    }
}

struct FileWatch {
    store: FileStore,
    prefix: String,
    next_rev: u64,
    signature: Option<(u64, u64, i64, i64, u64)>,
    pending: VecDeque<StoreEvent>,
    next_expiry: Option<u64>,
}

impl FileWatch {
    fn refresh(&mut self) -> Result<(), StoreError> {
        let sig = self.store.signature();
        if sig.is_some() && sig == self.signature {
            return Ok(());
        }
        let state = self.store.read_state()?;
        self.signature = sig;
        if self.next_rev <= state.compacted {
            return Err(StoreError::Compacted {
                requested: self.next_rev,
                compacted: state.compacted,
            });
        }
        for ch in &state.history {
            if ch.rev < self.next_rev || !ch.key.starts_with(&self.prefix) {
                continue;
            }
            let ev = match &ch.value {
                None => StoreEvent::Delete {
                    key: ch.key.clone(),
                    revision: ch.rev,
                },
                Some(v) => match v.to_vec() {
                    Some(value) => StoreEvent::Put(KeyValue {
                        key: ch.key.clone(),
                        value,
                        mod_revision: ch.rev,
                        expires: ch.expires_ms.map(ms_to_time),
                    }),
                    None => continue,
                },
            };
            self.pending.push_back(ev);
        }
        self.next_rev = self.next_rev.max(state.revision + 1);
        self.next_expiry = state
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(&self.prefix))
            .filter_map(|(_, e)| e.expires_ms)
            .min();
        Ok(())
    }
}

impl StoreWatch for FileWatch {
    fn next(&mut self, timeout: Duration) -> Result<Option<StoreEvent>, StoreError> {
        let deadline = crate::time::deadline(timeout);
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            self.refresh()?;
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            if self.next_expiry.is_some_and(|x| x <= now_ms()) {
                // A TTL ran out and nobody wrote since: expire it ourselves.
                self.store.sweep()?;
                self.next_expiry = None;
                continue;
            }
            if crate::time::passed(deadline) {
                return Ok(None);
            }
            std::thread::sleep(
                self.store
                    .inner
                    .options
                    .poll_interval
                    .min(crate::time::left(deadline)),
            );
        }
    }
}
