//! The three PATCH formats the test API server takes: JSON merge patch (RFC 7386), the
//! strategic merge of the keys podnet's clients patch, and JSON patch (RFC 6902).

use super::*;

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The lists the test API server merges by key in a strategic merge patch (their
/// `patchMergeKey`); every other list is replaced whole.
pub(super) const MERGE_KEYS: &[(&str, &str)] = &[
    ("status.conditions", "type"),
    ("status.addresses", "type"),
    ("spec.taints", "key"),
    ("spec.ports", "port"),
];

/// A strategic merge patch without directives: a merge patch, except that the lists of
/// [`MERGE_KEYS`] are merged element by element on their key.
pub fn strategic_merge(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object above");
    for (k, v) in p {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let key = MERGE_KEYS.iter().find(|(p, _)| *p == here).map(|x| x.1);
        match (key, v, t.get_mut(k)) {
            (Some(key), Value::Array(items), Some(Value::Array(existing))) => {
                for item in items {
                    let id = item.get(key);
                    match existing
                        .iter_mut()
                        .find(|e| id.is_some() && e.get(key) == id)
                    {
                        Some(e) => strategic_merge(e, item, &here),
                        None => existing.push(item.clone()),
                    }
                }
            }
            _ => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v, &here),
        }
    }
}

pub(super) fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            k.starts_with("$") || k.starts_with("$setElementOrder") || has_directive(v)
        }),
        Value::Array(a) => a.iter().any(has_directive),
        _ => false,
    }
}

pub(super) fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

pub(super) fn pointer_parent<'a>(
    doc: &'a mut Value,
    path: &str,
) -> Result<(&'a mut Value, String), ApiError> {
    let bad = || {
        ApiError::new(
            422,
            "Invalid",
            format!("json patch path {path:?} not found"),
        )
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad());
    };
    let mut parts: Vec<String> = rest.split('/').map(unescape).collect();
    let last = parts.pop().ok_or_else(bad)?;
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(&p).ok_or_else(bad)?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| bad())?;
                a.get_mut(i).ok_or_else(bad)?
            }
            _ => return Err(bad()),
        };
    }
    Ok((cur, last))
}

pub(super) fn json_remove(doc: &mut Value, path: &str) -> Result<Value, ApiError> {
    let bad = || {
        ApiError::new(
            422,
            "Invalid",
            format!("json patch path {path:?} not found"),
        )
    };
    let (parent, last) = pointer_parent(doc, path)?;
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(bad),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| bad())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

pub(super) fn json_add(
    doc: &mut Value,
    path: &str,
    value: Value,
    replace: bool,
) -> Result<(), ApiError> {
    let bad = || {
        ApiError::new(
            422,
            "Invalid",
            format!("json patch path {path:?} not found"),
        )
    };
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = pointer_parent(doc, path)?;
    match parent {
        Value::Object(m) => {
            if replace && !m.contains_key(&last) {
                return Err(bad());
            }
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| bad())?;
                if replace {
                    *a.get_mut(i).ok_or_else(bad)? = value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(bad());
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::new(400, "BadRequest", "a json patch is an array"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        let from = op["from"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "add" => json_add(doc, path, op["value"].clone(), false)?,
            "replace" => json_add(doc, path, op["value"].clone(), true)?,
            "remove" => {
                json_remove(doc, path)?;
            }
            "move" => {
                let v = json_remove(doc, from)?;
                json_add(doc, path, v, false)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| ApiError::new(422, "Invalid", format!("{from:?} not found")))?;
                json_add(doc, path, v, false)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("json patch test of {path:?} failed"),
                    ));
                }
            }
            other => {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("json patch op {other:?} unknown"),
                ));
            }
        }
    }
    Ok(())
}

/// Applies a PATCH body of `content_type` to `obj`.
pub(super) fn apply_patch(
    obj: &mut Value,
    content_type: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "BadRequest", format!("patch body: {e}")))?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/merge-patch+json" => merge_patch(obj, &patch),
        "application/strategic-merge-patch+json" => {
            if has_directive(&patch) {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the test API server refuses strategic merge patch directives \
                     ($patch/$retainKeys/$setElementOrder/...)",
                ));
            }
            strategic_merge(obj, &patch, "")
        }
        "application/json-patch+json" => json_patch(obj, &patch)?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the media type {other:?} is not supported by the test API server"),
            ));
        }
    }
    Ok(())
}
