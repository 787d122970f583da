//! Changes of the config directory, as inotify reports them (through the `notify` crate): the
//! sync loop re-reads the directory when one of its object files is written, created, renamed
//! or deleted, and not otherwise; nothing scans the directory on a timer.
//!
//! Where inotify cannot watch the directory (it does not exist yet, or it was removed), the
//! directory's fingerprint (names, sizes, modification times of its object files) is compared
//! on each wait instead, and the watch is set up again as soon as the directory is there.

use super::{fingerprint, is_object_file};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, SystemTime};

/// What tells the sync loop that the config directory changed.
pub(crate) struct DirChanges {
    dir: PathBuf,
    how: How,
}

enum How {
    /// inotify on the directory; its events arrive on the channel.
    Watch {
        _watcher: RecommendedWatcher,
        events: Receiver<notify::Result<notify::Event>>,
    },
    /// No watch: the fingerprint last seen.
    Poll(Vec<(PathBuf, u64, SystemTime)>),
}

impl DirChanges {
    /// Starts following `dir`.
    pub(crate) fn start(dir: &Path) -> DirChanges {
        let how = match watch(dir) {
            Ok(how) => how,
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); comparing its files on each wake-up",
                    dir.display()
                );
                How::Poll(fingerprint(dir))
            }
        };
        DirChanges {
            dir: dir.to_owned(),
            how,
        }
    }

    /// Waits up to `timeout` for a change; `true` when the directory should be read again.
    /// Returns as soon as a change is reported, after taking every change already queued.
    pub(crate) fn wait(&mut self, timeout: Duration) -> bool {
        match &mut self.how {
            How::Watch { events, .. } => {
                let mut changed = false;
                let mut lost = false;
                let mut next = events.recv_timeout(timeout);
                loop {
                    match next {
                        Ok(Ok(event)) => {
                            let (relevant, gone) = judge(&self.dir, &event);
                            changed |= relevant;
                            lost |= gone;
                        }
                        // The watcher could not read its events (the queue overflowed, ...):
                        // read the directory to be sure.
                        Ok(Err(e)) => {
                            tracing::warn!("watching {}: {e}", self.dir.display());
                            changed = true;
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            lost = true;
                            break;
                        }
                    }
                    next = events.try_recv().map_err(|e| match e {
                        std::sync::mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                        std::sync::mpsc::TryRecvError::Disconnected => {
                            RecvTimeoutError::Disconnected
                        }
                    });
                }
                if lost {
                    tracing::warn!(
                        "{} is gone; comparing its files until it is back",
                        self.dir.display()
                    );
                    self.how = How::Poll(fingerprint(&self.dir));
                    return true;
                }
                changed
            }
            How::Poll(seen) => {
                std::thread::sleep(timeout);
                if let Ok(how) = watch(&self.dir) {
                    // Watched again: read it once, since changes may have been missed.
                    self.how = how;
                    return true;
                }
                let now = fingerprint(&self.dir);
                if now != *seen {
                    *seen = now;
                    return true;
                }
                false
            }
        }
    }

    /// `true` while inotify watches the directory (tests).
    #[cfg(test)]
    fn watching(&self) -> bool {
        matches!(self.how, How::Watch { .. })
    }
}

/// Sets up the inotify watch of `dir` (its entries, not its subdirectories).
fn watch(dir: &Path) -> notify::Result<How> {
    let (tx, events) = channel();
    let mut watcher = notify::recommended_watcher(move |e| {
        // The receiver is gone only when the loop is: nothing to tell then.
        let _ = tx.send(e);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(How::Watch {
        _watcher: watcher,
        events,
    })
}

/// Whether `event` changes what the directory holds (an object file written, created,
/// renamed or deleted; reads and other files such as a log or an editor's swap file are no
/// change), and whether the directory itself is gone.
fn judge(dir: &Path, event: &notify::Event) -> (bool, bool) {
    if matches!(event.kind, EventKind::Access(_)) {
        return (false, false);
    }
    let gone = matches!(event.kind, EventKind::Remove(_)) && event.paths.iter().any(|p| p == dir);
    let relevant = event.paths.iter().any(|p| is_object_file(p)) || gone;
    (relevant, gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-kp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Waits (up to 5 s) for the change the last write made.
    fn sees_change(c: &mut DirChanges) -> bool {
        (0..50).any(|_| c.wait(Duration::from_millis(100)))
    }

    #[test]
    fn object_files_wake_the_loop_and_other_files_do_not() {
        let dir = temp_dir("watch");
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = DirChanges::start(&dir);
        assert!(c.watching());
        assert!(!c.wait(Duration::from_millis(50)), "nothing changed yet");
        std::fs::write(dir.join("kube-proxy.log"), "synced\n").unwrap();
        std::fs::write(dir.join(".services.yaml.swp"), "x").unwrap();
        assert!(!c.wait(Duration::from_millis(300)), "not an object file");
        std::fs::write(dir.join("services.yaml"), "kind: List\nitems: []\n").unwrap();
        assert!(sees_change(&mut c));
        // An editor's save: written aside, renamed over the file.
        std::fs::write(dir.join("tmp.part"), "kind: List\nitems: []\n").unwrap();
        std::fs::rename(dir.join("tmp.part"), dir.join("slices.json")).unwrap();
        assert!(sees_change(&mut c));
        std::fs::remove_file(dir.join("services.yaml")).unwrap();
        assert!(sees_change(&mut c));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_that_comes_and_goes_is_followed() {
        let dir = temp_dir("watch-gone");
        let mut c = DirChanges::start(&dir);
        assert!(!c.watching(), "no directory, no watch");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(sees_change(&mut c));
        assert!(c.watching());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(sees_change(&mut c));
        assert!(!c.watching());
        std::fs::create_dir_all(&dir).unwrap();
        assert!(sees_change(&mut c));
        assert!(c.watching());
        std::fs::write(dir.join("a.yaml"), "kind: List\nitems: []\n").unwrap();
        assert!(sees_change(&mut c));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
