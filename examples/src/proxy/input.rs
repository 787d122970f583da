//! Where the proxy's objects come from, behind one trait: the config directory
//! ([`FileInput`]) or the API server (`KubeInput`, with the `kube` feature). Both hand the
//! sync loop the whole set of objects after a change; the loop compiles it and counts what
//! changed the same way for both.
//!
//! Both filter as upstream's informers and service change tracker do ([`filter_objects`]):
//! Services and EndpointSlices labelled `service.kubernetes.io/service-proxy-name` (served by
//! another proxy) or `service.kubernetes.io/headless` are dropped; headless and
//! `ExternalName` Services get no rules (the service model skips them).

use super::ConfigDir;
use super::watch::DirChanges;
use podnet_nat::kube::{KubeObject, Warning};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The label that hands a Service (and its EndpointSlices) to another proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The label the EndpointSlice controller puts on the slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The EndpointSlice annotation with the time of the change that led to it.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// One read of an input.
#[derive(Debug, Clone, Default)]
pub struct InputRead {
    /// Every Service, EndpointSlice and Node (this node's) there is now, filtered.
    pub objects: Vec<KubeObject>,
    /// What to log.
    pub warnings: Vec<Warning>,
}

/// A source of Services, EndpointSlices and this node's Node.
pub trait Input {
    /// Waits up to `timeout` for a change; `true` when [`Input::read`] may give something new.
    fn wait(&mut self, timeout: Duration) -> bool;
    /// The objects as they are now.
    fn read(&mut self) -> InputRead;
    /// `Err(why)` until every first list is complete; no sync happens before.
    fn synced(&self) -> Result<(), String>;
    /// The Service CIDRs the input knows of (the API server's ServiceCIDR objects), or `None`
    /// when it has none to say (the `--service-cluster-ip-range` flag stands).
    fn service_cidrs(&self) -> Option<Vec<ipnet::IpNet>> {
        None
    }
}

/// The config directory, followed through inotify.
pub struct FileInput {
    dir: ConfigDir,
    changes: DirChanges,
}

impl FileInput {
    /// Starts following `dir` (the watch is set up before the first read, so that no change
    /// after it is missed).
    pub fn new(dir: &Path) -> FileInput {
        let changes = DirChanges::start(dir);
        FileInput {
            dir: ConfigDir::new(dir),
            changes,
        }
    }
}

impl Input for FileInput {
    fn wait(&mut self, timeout: Duration) -> bool {
        self.changes.wait(timeout)
    }

    fn read(&mut self) -> InputRead {
        let r = self.dir.read();
        InputRead {
            objects: filter_objects(r.objects),
            warnings: r.warnings,
        }
    }

    fn synced(&self) -> Result<(), String> {
        Ok(())
    }
}

fn labels_of(o: &KubeObject) -> Option<&BTreeMap<String, String>> {
    match o {
        KubeObject::Service(s) => s.metadata.labels.as_ref(),
        KubeObject::EndpointSlice(s) => s.metadata.labels.as_ref(),
        KubeObject::Node(_) => None,
    }
}

/// Drops what upstream's informers never list: Services and EndpointSlices with the
/// `service.kubernetes.io/service-proxy-name` or `service.kubernetes.io/headless` label
/// (upstream lists with `!service-proxy-name,!headless`), and the EndpointSlices of a
/// Service dropped that way (the controller copies the Service's labels to its slices; a
/// slice written by hand may lack them).
pub fn filter_objects(objects: Vec<KubeObject>) -> Vec<KubeObject> {
    let skip = |o: &KubeObject| {
        labels_of(o).is_some_and(|l| {
            l.contains_key(SERVICE_PROXY_NAME_LABEL) || l.contains_key(HEADLESS_LABEL)
        })
    };
    let dropped: std::collections::BTreeSet<(String, String)> = objects
        .iter()
        .filter(|o| skip(o))
        .filter_map(|o| match o {
            KubeObject::Service(s) => {
                Some((s.metadata.namespace().to_owned(), s.metadata.name.clone()))
            }
            _ => None,
        })
        .collect();
    objects
        .into_iter()
        .filter(|o| !skip(o))
        .filter(|o| match o {
            KubeObject::EndpointSlice(s) => !s.service_name().is_some_and(|n| {
                dropped.contains(&(s.metadata.namespace().to_owned(), n.to_owned()))
            }),
            _ => true,
        })
        .collect()
}

/// Upstream's last-change-trigger-time tracking: an EndpointSlice that changed (in what a
/// proxy reads of it, not only its annotations) and carries the
/// `endpoints.kubernetes.io/last-change-trigger-time` annotation leaves its time pending;
/// the times pending when a sync ends are observed in
/// `kubeproxy_network_programming_duration_seconds`. A deleted slice leaves none (its
/// annotation is from its last update, not from the deletion), as upstream.
#[derive(Debug, Default)]
pub struct TriggerTimes {
    /// The slices last seen, by namespace and name, without annotations.
    seen: BTreeMap<(String, String), podnet_nat::kube::EndpointSlice>,
    pending: Vec<SystemTime>,
}

impl TriggerTimes {
    /// Notes the slices of one read.
    pub fn update(&mut self, objects: &[KubeObject]) {
        let mut now = BTreeMap::new();
        for o in objects {
            let KubeObject::EndpointSlice(s) = o else {
                continue;
            };
            let key = (s.metadata.namespace().to_owned(), s.metadata.name.clone());
            let mut bare = s.clone();
            let annotations = bare.metadata.annotations.take();
            if self.seen.get(&key) != Some(&bare) {
                if let Some(t) = annotations
                    .as_ref()
                    .and_then(|a| a.get(LAST_CHANGE_TRIGGER_TIME))
                    .and_then(|t| parse_rfc3339(t))
                {
                    self.pending.push(t);
                }
            }
            now.insert(key, bare);
        }
        self.seen = now;
    }

    /// The pending times, taken (a sync succeeded).
    pub fn take(&mut self) -> Vec<SystemTime> {
        std::mem::take(&mut self.pending)
    }
}

/// Parses an RFC 3339 time as Go's `time.RFC3339Nano` layout reads it
/// (`2006-01-02T15:04:05.999999999Z07:00`); `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_nat::kube::parse_objects;

    #[test]
    fn rfc3339_as_go_reads_it() {
        let t =
            |s: &str| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(t("2024-02-29T12:34:56Z"), Some(1_709_210_096.0));
        assert_eq!(t("2024-02-29T12:34:56.5Z"), Some(1_709_210_096.5));
        assert_eq!(t("2024-02-29T14:34:56+02:00"), Some(1_709_210_096.0));
        assert_eq!(t("2024-02-29T10:04:56.250-02:30"), Some(1_709_210_096.25));
        for bad in [
            "",
            "2024-02-29",
            "2024-02-29T12:34:56",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56.Z",
            "2024-02-29T12:34:56+0200",
            "2024-02-29T12:34:56Zjunk",
            "２０２４-02-29T12:34:56Z",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: mine, namespace: d}
  spec: {clusterIP: 10.96.0.1, ports: [{name: p, port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: other, namespace: d, labels: {service.kubernetes.io/service-proxy-name: x}}
  spec: {clusterIP: 10.96.0.2, ports: [{name: p, port: 80}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: other-1, namespace: d, labels: {kubernetes.io/service-name: other}}
  addressType: IPv4
  endpoints: [{addresses: [10.0.0.2]}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: headless-1
    namespace: d
    labels: {kubernetes.io/service-name: headless, service.kubernetes.io/headless: ""}
  addressType: IPv4
  endpoints: [{addresses: [10.0.0.3]}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: mine-1
    namespace: d
    labels: {kubernetes.io/service-name: mine}
    annotations: {endpoints.kubernetes.io/last-change-trigger-time: "2024-02-29T12:34:56Z"}
  addressType: IPv4
  endpoints: [{addresses: [10.0.0.1]}]
"#;

    #[test]
    fn other_proxies_services_and_headless_slices_are_dropped() {
        let (objects, w) = parse_objects(OBJECTS, "t");
        assert!(w.is_empty(), "{w:?}");
        let kept: Vec<String> = filter_objects(objects)
            .iter()
            .map(|o| match o {
                KubeObject::Service(s) => s.metadata.name.clone(),
                KubeObject::EndpointSlice(s) => s.metadata.name.clone(),
                KubeObject::Node(n) => n.metadata.name.clone(),
            })
            .collect();
        assert_eq!(kept, ["mine", "mine-1"]);
    }

    #[test]
    fn trigger_times_of_changed_slices_only() {
        let (objects, _) = parse_objects(OBJECTS, "t");
        let objects = filter_objects(objects);
        let mut t = TriggerTimes::default();
        t.update(&objects);
        let at = parse_rfc3339("2024-02-29T12:34:56Z").unwrap();
        assert_eq!(t.take(), [at]);
        // Seen again unchanged (or only its annotation changed): nothing pending.
        t.update(&objects);
        let mut touched = objects.clone();
        for o in &mut touched {
            if let KubeObject::EndpointSlice(s) = o {
                s.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(
                        LAST_CHANGE_TRIGGER_TIME.into(),
                        "2024-03-01T00:00:00Z".into(),
                    );
            }
        }
        t.update(&touched);
        assert!(t.take().is_empty());
        // A changed endpoint: its time is pending.
        for o in &mut touched {
            if let KubeObject::EndpointSlice(s) = o {
                s.endpoints.as_mut().unwrap()[0].addresses = vec!["10.0.0.9".into()];
            }
        }
        t.update(&touched);
        assert_eq!(t.take(), [parse_rfc3339("2024-03-01T00:00:00Z").unwrap()]);
        // Deleted: nothing.
        t.update(&[]);
        assert!(t.take().is_empty());
    }
}
