//! JSON helpers that reproduce Go's `encoding/json` where flannel's bytes depend on it:
//! case-insensitive field names, compact raw messages, HTML-safe escaping.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The top-level fields of a JSON object, each kept as raw text.
pub(crate) struct Fields(BTreeMap<String, Box<RawValue>>);

impl Fields {
    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text).map(Fields)
    }

    /// The field named `name`, matched like Go does: exactly, else ignoring ASCII case.
    /// A JSON `null` counts as absent (Go leaves the field at its zero value).
    pub(crate) fn get(&self, name: &str) -> Option<&RawValue> {
        let raw = match self.0.get(name) {
            Some(v) => Some(v),
            None => self
                .0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v),
        }?;
        if raw.get() == "null" { None } else { Some(raw) }
    }

    /// The field, kept raw even when it is `null` (Go's RawMessage keeps `null`).
    pub(crate) fn get_raw(&self, name: &str) -> Option<&RawValue> {
        match self.0.get(name) {
            Some(v) => Some(v),
            None => self
                .0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| &**v),
        }
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|e| format!("not a string: {e}")),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<bool>(raw.get())
                .map(Some)
                .map_err(|e| format!("not a boolean: {e}")),
        }
    }

    pub(crate) fn uint(&self, name: &str) -> Result<Option<u64>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<u64>(raw.get())
                .map(Some)
                .map_err(|e| format!("not an unsigned integer: {e}")),
        }
    }
}

/// Removes insignificant whitespace from valid JSON text, as Go does when it marshals a
/// `json.RawMessage`. Keeps key order and number spelling.
pub(crate) fn compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    go_html_escape(&out)
}

/// Escapes `<`, `>`, `&`, U+2028 and U+2029 the way Go's `json.Marshal` does. These can only
/// occur inside string literals of valid JSON, so replacing them anywhere is safe.
pub(crate) fn go_html_escape(json: &str) -> String {
    if !json
        .chars()
        .any(|c| matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}'))
    {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Go's encoding of a string: JSON with HTML-safe escapes.
pub(crate) fn go_string(s: &str) -> String {
    // Serializing a str cannot fail.
    go_html_escape(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings() {
        assert_eq!(
            compact("{ \"VNI\" : 1,\n \"a b\": \"x  y\\\" z\" }"),
            "{\"VNI\":1,\"a b\":\"x  y\\\" z\"}"
        );
    }

    #[test]
    fn fields_case_insensitive() {
        let f = Fields::parse(r#"{"network":"10.0.0.0/8","SubnetLen":null}"#).unwrap();
        assert_eq!(f.string("Network").unwrap().as_deref(), Some("10.0.0.0/8"));
        assert_eq!(f.uint("SubnetLen").unwrap(), None);
    }

    #[test]
    fn html_escape() {
        assert_eq!(go_string("a<b>&"), "\"a\\u003cb\\u003e\\u0026\"");
    }
}
