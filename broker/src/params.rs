//! Connect params: a query string parsed the way Plug does (spec §2.1): `a[b]=1` nests,
//! `k[0]=x&k[1]=y` becomes a map keyed `"0"`, `"1"` (that is how phoenix.js sends arrays),
//! `k[]=x` appends to a list, all values are strings, empty components are skipped.

use serde_json::{Map, Value};

/// Parses a query string into a JSON object.
pub fn parse_query(query: &str) -> Value {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key.is_empty() {
            continue;
        }
        let path = split_key(&key);
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    Value::Object(root)
}

/// `a[b][]` → ["a", "b", ""] (the empty segment means "append").
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    let mut parts = vec![key[..open].to_owned()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                parts.push(stripped[..close].to_owned());
                rest = &stripped[close + 1..];
            }
            None => {
                // Unbalanced bracket: Plug keeps the remainder literally.
                let last = parts.pop().unwrap_or_default();
                parts.push(format!("{last}{rest}"));
                return parts;
            }
        }
    }
    parts
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: Value) {
    let (head, rest) = path.split_first().expect("non-empty path");
    if rest.is_empty() {
        map.insert(head.clone(), value);
        return;
    }
    if rest[0].is_empty() {
        // `k[]=v`: a list (deeper nesting under `[]` is rare; treated as a plain append).
        let entry = map.entry(head.clone()).or_insert_with(|| Value::Array(vec![]));
        if !entry.is_array() {
            *entry = Value::Array(vec![]);
        }
        entry.as_array_mut().expect("array").push(value);
        return;
    }
    let entry = map.entry(head.clone()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    insert(entry.as_object_mut().expect("object"), rest, value);
}

/// The value of one top-level query parameter (e.g. `vsn`), if present.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn captured_phoenix_js_query() {
        // spec §2.1: params {token:"abc", nested:{a:1}}.
        assert_eq!(
            parse_query("token=abc&nested%5Ba%5D=1&vsn=2.0.0"),
            json!({"token":"abc","nested":{"a":"1"},"vsn":"2.0.0"})
        );
    }

    #[test]
    fn arrays_lists_and_oddities() {
        assert_eq!(parse_query("k%5B0%5D=a&k%5B1%5D=b"), json!({"k":{"0":"a","1":"b"}}));
        assert_eq!(parse_query("k[]=a&k[]=b"), json!({"k":["a","b"]}));
        assert_eq!(parse_query("a[b][c]=1&a[b][d]=2"), json!({"a":{"b":{"c":"1","d":"2"}}}));
        assert_eq!(parse_query("u=undefined&&x=&y"), json!({"u":"undefined","x":"","y":""}));
        assert_eq!(parse_query("s=a+b%20c"), json!({"s":"a b c"}));
        assert_eq!(parse_query(""), json!({}));
        assert_eq!(parse_query("a[b=1"), json!({"a[b":"1"}));
        assert_eq!(query_param("x=1&vsn=2.0.0&", "vsn").as_deref(), Some("2.0.0"));
        assert_eq!(query_param("x=1", "vsn"), None);
    }
}
