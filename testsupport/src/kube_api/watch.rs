//! The watch stream: events after a resourceVersion, bookmarks, and the 410 `ERROR` event.

use super::*;

pub(super) fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Counts a streaming watch while it lives.
pub(super) struct ActiveWatch(Arc<Shared>);

impl ActiveWatch {
    pub(super) fn new(shared: &Arc<Shared>) -> ActiveWatch {
        shared
            .active_watches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ActiveWatch(shared.clone())
    }
}

impl Drop for ActiveWatch {
    fn drop(&mut self) {
        self.0
            .active_watches
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub(super) async fn watch(
    shared: Arc<Shared>,
    kind: Kind,
    filter: Filter,
    q: HashMap<String, String>,
    tx: mpsc::Sender<Bytes>,
) {
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let deadline = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut bump = shared.bump.subscribe();
    let start = {
        let st = shared.lock();
        let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
        if rv.is_empty() || rv == "0" {
            let initial: Vec<Value> = st
                .objects
                .get(&kind)
                .map(|m| m.values().filter(|o| filter.matches(o)).cloned().collect())
                .unwrap_or_default();
            Ok((st.rv, st.drop_gen, st.expire_gen, st.bookmark_gen, initial))
        } else {
            match rv.parse::<u64>() {
                Ok(n) if n >= st.compacted => {
                    Ok((n, st.drop_gen, st.expire_gen, st.bookmark_gen, Vec::new()))
                }
                Ok(n) => Err(gone(n, st.compacted)),
                Err(_) => Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("resourceVersion {rv:?}"),
                )),
            }
        }
    };
    let (mut pos, drop_gen, expire_gen, mut bookmark_gen, initial) = match start {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(event_line("ERROR", &e.status())).await;
            return;
        }
    };
    let _active = ActiveWatch::new(&shared);
    for o in initial {
        if tx.send(event_line("ADDED", &o)).await.is_err() {
            return;
        }
    }
    let mut tick = shared.opts.bookmark_interval.map(|d| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let mut want_bookmark = false;
    loop {
        let (lines, end) = {
            let st = shared.lock();
            let mut lines: Vec<Bytes> = st
                .history
                .iter()
                .filter(|e| e.rv > pos && e.kind == kind && filter.matches(&e.object))
                .map(|e| event_line(e.etype, &e.object))
                .collect();
            pos = pos.max(st.rv);
            let mut end = st.drop_gen != drop_gen;
            let expired = st.expire_gen != expire_gen;
            if expired {
                let e = gone(pos, st.rv);
                lines.push(event_line("ERROR", &e.status()));
                end = true;
            }
            if st.bookmark_gen != bookmark_gen {
                bookmark_gen = st.bookmark_gen;
                want_bookmark = true;
            }
            // A dropped watch still gets the bookmark asked before (it comes first); an
            // expired one does not.
            if bookmarks && want_bookmark && !expired {
                lines.push(event_line(
                    "BOOKMARK",
                    &json!({"kind": kind.name(), "apiVersion": kind.api_version(),
                            "metadata": {"resourceVersion": st.rv.to_string()}}),
                ));
            }
            want_bookmark = false;
            (lines, end)
        };
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if end {
            return;
        }
        let sleep_until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = bump.changed() => if r.is_err() { return },
            _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => {
                want_bookmark = true;
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                if deadline.is_some() { return }
            }
            _ = tx.closed() => return,
        }
    }
}
