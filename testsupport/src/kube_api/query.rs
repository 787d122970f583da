//! A request's path and query: which resource, which object, and what a list or watch selects.

use super::*;

/// What a list or watch selects.
#[derive(Debug, Default, Clone)]
pub(super) struct Filter {
    namespace: Option<String>,
    fields: Vec<(String, String)>,
    labels: Vec<(String, Option<String>)>,
}

impl Filter {
    pub(super) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if meta(obj, "namespace") != *ns {
                return false;
            }
        }
        for (f, v) in &self.fields {
            let got = match f.as_str() {
                "metadata.name" => meta(obj, "name"),
                "metadata.namespace" => meta(obj, "namespace"),
                _ => return false,
            };
            if got != *v {
                return false;
            }
        }
        for (k, v) in &self.labels {
            let got = obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str);
            match (got, v) {
                (None, _) => return false,
                (Some(g), Some(v)) if g != v => return false,
                _ => {}
            }
        }
        true
    }
}

pub(super) fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_filter(
    q: &HashMap<String, String>,
    namespace: Option<String>,
) -> Result<Filter, ApiError> {
    let mut f = Filter {
        namespace,
        ..Filter::default()
    };
    if let Some(fs) = q.get("fieldSelector") {
        for term in fs.split(',').filter(|t| !t.is_empty()) {
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| {
                    ApiError::new(400, "BadRequest", format!("fieldSelector {term:?}"))
                })?;
            if k != "metadata.name" && k != "metadata.namespace" {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("field label not supported by the test API server: {k}"),
                ));
            }
            f.fields.push((k.to_string(), v.to_string()));
        }
    }
    if let Some(ls) = q.get("labelSelector") {
        for term in ls.split(',').filter(|t| !t.is_empty()) {
            if term.contains("!=")
                || term.contains(" in ")
                || term.contains(" notin ")
                || term.starts_with('!')
            {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("labelSelector {term:?}: the test API server knows only k=v and k"),
                ));
            }
            match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((k, v)) => f.labels.push((k.to_string(), Some(v.to_string()))),
                None => f.labels.push((term.to_string(), None)),
            }
        }
    }
    Ok(f)
}

/// Where a request goes.
#[derive(Debug)]
pub(super) enum Route {
    Collection(Kind, Option<String>),
    Object(Kind, Key, bool),
    Version,
    Api,
    Apis,
    Control(String),
}

pub(super) fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::Api),
        ["apis"] => return Some(Route::Apis),
        ["podnet-test", what] => return Some(Route::Control(what.to_string())),
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, "v1", rest @ ..] => (g, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == plural)
    };
    match rest {
        [plural] => Some(Route::Collection(find(plural)?, None)),
        [plural, name] => Some(Route::Object(
            find(plural)?,
            (String::new(), name.to_string()),
            false,
        )),
        [plural, name, "status"] => Some(Route::Object(
            find(plural)?,
            (String::new(), name.to_string()),
            true,
        )),
        ["namespaces", ns, plural] => {
            let k = find(plural)?;
            k.namespaced()
                .then(|| Route::Collection(k, Some(ns.to_string())))
        }
        ["namespaces", ns, plural, name] => {
            let k = find(plural)?;
            k.namespaced()
                .then(|| Route::Object(k, (ns.to_string(), name.to_string()), false))
        }
        ["namespaces", ns, plural, name, "status"] => {
            let k = find(plural)?;
            k.namespaced()
                .then(|| Route::Object(k, (ns.to_string(), name.to_string()), true))
        }
        _ => None,
    }
}
