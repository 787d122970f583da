//! Key-value stores for node-subnet leases, behind one synchronous trait.
//!
//! [`FileStore`] is the embedded default (a directory on one machine, shared by the processes
//! that open it); [`EtcdStore`](crate::EtcdStore) (feature `etcd`) speaks etcd v3. Both keep a
//! revision counter, expire keys that have a TTL, add and replace with compare-and-swap, and
//! watch a prefix from a revision.

mod file;
pub use file::{FileStore, FileStoreOptions};

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdError, EtcdStore, EtcdTls};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::StoreError;

/// One key and its value as a store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The revision of the key's last change.
    pub mod_revision: u64,
    /// When the key expires; `None` when it has no TTL.
    pub expires: Option<SystemTime>,
}

/// The keys under a prefix, and the store revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The keys, sorted.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when they were read: watch from `revision + 1` to miss nothing.
    pub revision: u64,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A key was created or changed.
    Put(KeyValue),
    /// A key was deleted or expired.
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        revision: u64,
    },
}

impl StoreEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            StoreEvent::Put(kv) => &kv.key,
            StoreEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        match self {
            StoreEvent::Put(kv) => kv.mod_revision,
            StoreEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A running watch on a prefix.
pub trait StoreWatch: Send {
    /// The next change, waiting at most `timeout`; `Ok(None)` when nothing happened.
    ///
    /// Fails with [`StoreError::Compacted`] when the store no longer has the history the
    /// watch needs: list again and start a new watch from the listing's revision + 1.
    fn next(&mut self, timeout: Duration) -> Result<Option<StoreEvent>, StoreError>;
}

/// A key-value store with revisions, TTLs, compare-and-swap and prefix watches.
///
/// The verbs are podnet's (iproute2's) set: [`add`](Store::add) creates only a new key,
/// [`replace`](Store::replace) writes whether or not the key exists (idempotent),
/// [`replace_if`](Store::replace_if) writes only over a known revision (compare-and-swap),
/// [`del`](Store::del), [`get`](Store::get) and [`list`](Store::list). The earlier names
/// (`create`, `update`, `put`, `delete`) remain as hidden aliases.
///
/// All calls block: the crate's core is synchronous.
pub trait Store: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Reads every key that starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// Adds `key` only if it does not exist. Returns the new revision, or `None` when the key
    /// already exists (someone else won).
    fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, StoreError>;

    /// Replaces `key` only if its last change is `revision`. Returns the new revision, or
    /// `None` when the key changed or vanished meanwhile.
    fn replace_if(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        revision: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Writes `key` unconditionally (creates or replaces it). Returns the new revision.
    fn replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError>;

    /// Deletes `key`; `false` when it did not exist.
    fn del(&self, key: &str) -> Result<bool, StoreError>;

    /// Watches the keys under `prefix`, starting with the changes at `start_revision`.
    fn watch(&self, prefix: &str, start_revision: u64) -> Result<Box<dyn StoreWatch>, StoreError>;

    /// Drops the history up to and including `revision`; watches that need it get
    /// [`StoreError::Compacted`].
    fn compact(&self, revision: u64) -> Result<(), StoreError>;

    #[deprecated(note = "use add")]
    #[doc(hidden)]
    fn create(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        self.add(key, value, ttl)
    }

    #[deprecated(note = "use replace_if")]
    #[doc(hidden)]
    fn update(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        revision: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.replace_if(key, value, ttl, revision)
    }

    // Not yet `#[deprecated]`: examples/tests/cluster.rs (another area's file) still calls it.
    #[doc(hidden)]
    fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.replace(key, value, ttl)
    }

    #[deprecated(note = "use del")]
    #[doc(hidden)]
    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.del(key)
    }
}

macro_rules! forward_store {
    ($ty:ty) => {
        impl<T: Store + ?Sized> Store for $ty {
            fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
                (**self).get(key)
            }
            fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
                (**self).list(prefix)
            }
            fn add(
                &self,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
            ) -> Result<Option<u64>, StoreError> {
                (**self).add(key, value, ttl)
            }
            fn replace_if(
                &self,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
                revision: u64,
            ) -> Result<Option<u64>, StoreError> {
                (**self).replace_if(key, value, ttl, revision)
            }
            fn replace(
                &self,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
            ) -> Result<u64, StoreError> {
                (**self).replace(key, value, ttl)
            }
            fn del(&self, key: &str) -> Result<bool, StoreError> {
                (**self).del(key)
            }
            fn watch(
                &self,
                prefix: &str,
                start_revision: u64,
            ) -> Result<Box<dyn StoreWatch>, StoreError> {
                (**self).watch(prefix, start_revision)
            }
            fn compact(&self, revision: u64) -> Result<(), StoreError> {
                (**self).compact(revision)
            }
        }
    };
}

forward_store!(Box<T>);
forward_store!(Arc<T>);
forward_store!(&T);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileStore;

    /// The earlier verb names stay callers' aliases of the new ones.
    #[test]
    #[allow(deprecated)]
    fn the_earlier_verb_names_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let r1 = s.create("/a", b"1", None).unwrap().expect("created");
        assert_eq!(s.create("/a", b"x", None).unwrap(), None);
        let r2 = s.update("/a", b"2", None, r1).unwrap().expect("swapped");
        assert_eq!(s.update("/a", b"x", None, r1).unwrap(), None);
        assert!(s.put("/a", b"3", None).unwrap() > r2);
        assert_eq!(s.get("/a").unwrap().unwrap().value, b"3");
        assert!(s.delete("/a").unwrap());
        assert!(!s.delete("/a").unwrap());
    }
}
