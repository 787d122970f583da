//! The objects the test API server holds: one resourceVersion counter, the history of events
//! kept for watches, and compaction.

use super::*;

impl State {
    pub(super) fn record(&mut self, kind: Kind, etype: &'static str, object: Value) {
        self.history.push(Event {
            rv: self.rv,
            kind,
            etype,
            object,
        });
    }

    pub(super) fn key_of(kind: Kind, obj: &Value) -> Result<Key, ApiError> {
        let name = meta(obj, "name");
        if name.is_empty() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "metadata.name is required",
            ));
        }
        let ns = if kind.namespaced() {
            let ns = meta(obj, "namespace");
            if ns.is_empty() {
                "default".to_string()
            } else {
                ns
            }
        } else {
            String::new()
        };
        Ok((ns, name))
    }

    pub(super) fn create(&mut self, kind: Kind, mut obj: Value) -> Result<Value, ApiError> {
        let key = Self::key_of(kind, &obj)?;
        if self.objects.entry(kind).or_default().contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", kind.plural(), key.1),
            ));
        }
        self.rv += 1;
        self.uid += 1;
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.name());
        if kind.namespaced() {
            set_meta(&mut obj, "namespace", json!(key.0));
        }
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        set_meta(
            &mut obj,
            "uid",
            json!(format!("podnet-test-{:08}", self.uid)),
        );
        set_meta(&mut obj, "creationTimestamp", json!("2024-01-01T00:00:00Z"));
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, obj.clone());
        self.record(kind, "ADDED", obj.clone());
        Ok(obj)
    }

    pub(super) fn get(&self, kind: Kind, key: &Key) -> Result<Value, ApiError> {
        self.objects
            .get(&kind)
            .and_then(|m| m.get(key))
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("{} {:?} not found", kind.plural(), key.1),
                )
            })
    }

    /// Stores `obj` as the new version of an existing object, checking a stated
    /// resourceVersion and keeping what the API server keeps.
    pub(super) fn update(
        &mut self,
        kind: Kind,
        key: &Key,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let old = self.get(kind, key)?;
        let stated = meta(&obj, "resourceVersion");
        if !stated.is_empty() && stated != meta(&old, "resourceVersion") {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {:?}: the object has been modified; \
                     please apply your changes to the latest version and try again",
                    kind.plural(),
                    key.1
                ),
            ));
        }
        if Self::key_of(kind, &obj)? != *key && meta(&obj, "name") != key.1 {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "metadata.name does not match the URL",
            ));
        }
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.name());
        for f in ["uid", "creationTimestamp", "namespace", "name"] {
            if let Some(v) = old.pointer(&format!("/metadata/{f}")) {
                set_meta(&mut obj, f, v.clone());
            }
        }
        if obj == old_with_rv(&old, &obj) {
            // No change: no new resourceVersion, no event (as the API server does).
            return Ok(old);
        }
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        self.objects
            .entry(kind)
            .or_default()
            .insert(key.clone(), obj.clone());
        self.record(kind, "MODIFIED", obj.clone());
        Ok(obj)
    }

    pub(super) fn delete(&mut self, kind: Kind, key: &Key) -> Result<Value, ApiError> {
        let mut old = self.get(kind, key)?;
        self.objects.entry(kind).or_default().remove(key);
        self.rv += 1;
        set_meta(&mut old, "resourceVersion", json!(self.rv.to_string()));
        self.record(kind, "DELETED", old.clone());
        Ok(old)
    }
}

/// `old` with `new`'s resourceVersion, to tell whether an update changes anything.
pub(super) fn old_with_rv(old: &Value, new: &Value) -> Value {
    let mut o = old.clone();
    match new.pointer("/metadata/resourceVersion") {
        Some(v) => set_meta(&mut o, "resourceVersion", v.clone()),
        None => {
            if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
        }
    }
    o
}
