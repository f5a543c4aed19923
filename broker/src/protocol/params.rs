//! Connect params: a query string parsed the way Plug does (spec §2.1): `a[b]=1` nests,
//! `k[0]=x&k[1]=y` becomes a map keyed `"0"`, `"1"` (that is how phoenix.js sends arrays),
//! `k[]=x` appends to a list, all values are strings, empty components are skipped.
//!
//! The query string is attacker-shaped input: nesting is bounded (`max_depth` levels, see
//! `config::Limits::max_param_depth`) and nothing here recurses, so `a[a][a]…=1` nested
//! 100,000 levels deep is a 400 with a message, never a stack overflow.

use serde_json::{Map, Value};

/// Why a query string was refused (answered with HTTP 400 and this text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamsError {
    /// A key nests deeper than the limit.
    TooDeep { limit: usize },
}

impl std::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamsError::TooDeep { limit } => write!(f, "connect params nested deeper than {limit} levels"),
        }
    }
}

impl std::error::Error for ParamsError {}

/// The connect params a socket keeps for its channels ([`crate::ChannelContext::connect_params`]).
///
/// Kept as the query string and parsed again on first use: a parsed `{"vsn": "2.0.0"}` is a
/// B-tree node of 632 bytes, held by every idle connection for its whole life, while most
/// channels never look at the params (`bench-results/memory/breakdown.md`).
pub struct ConnectParams {
    query: Box<str>,
    max_depth: usize,
    parsed: std::sync::OnceLock<Value>,
}

impl ConnectParams {
    /// Params of a query string that [`parse_query`] accepted with this `max_depth`.
    pub fn from_query(query: &str, max_depth: usize) -> ConnectParams {
        ConnectParams { query: query.into(), max_depth, parsed: std::sync::OnceLock::new() }
    }

    /// Params given as a value (tests, sockets started without a request).
    pub fn from_value(value: Value) -> ConnectParams {
        ConnectParams { query: "".into(), max_depth: 0, parsed: std::sync::OnceLock::from(value) }
    }

    /// The params, parsed on first use.
    pub fn get(&self) -> &Value {
        self.parsed.get_or_init(|| {
            // Accepted once already at connect: the same input parses the same way.
            parse_query(&self.query, self.max_depth).unwrap_or_else(|_| Value::Object(Map::new()))
        })
    }
}

/// Parses a query string into a JSON object; keys nested deeper than `max_depth` are refused.
pub fn parse_query(query: &str, max_depth: usize) -> Result<Value, ParamsError> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key.is_empty() {
            continue;
        }
        // Count before splitting: the split allocates a String per level.
        if key.bytes().filter(|b| *b == b'[').count() >= max_depth {
            return Err(ParamsError::TooDeep { limit: max_depth });
        }
        let path = split_key(&key);
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    Ok(Value::Object(root))
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

/// Inserts `value` at `path` (a loop, not recursion: the depth is the attacker's choice).
fn insert(root: &mut Map<String, Value>, path: &[String], value: Value) {
    let mut map = root;
    let mut path = path;
    loop {
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
        map = entry.as_object_mut().expect("object");
        path = rest;
    }
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
            parse_query("token=abc&nested%5Ba%5D=1&vsn=2.0.0", 32).unwrap(),
            json!({"token":"abc","nested":{"a":"1"},"vsn":"2.0.0"})
        );
    }

    fn parse(q: &str) -> Value {
        parse_query(q, 32).unwrap()
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = format!("a{}=1", "[a]".repeat(100_000));
        assert_eq!(parse_query(&deep, 32), Err(ParamsError::TooDeep { limit: 32 }));
        let ok = format!("a{}=1", "[a]".repeat(31));
        let v = parse_query(&ok, 32).unwrap();
        let mut cur = &v["a"];
        for _ in 0..31 {
            cur = &cur["a"];
        }
        assert_eq!(cur, &json!("1"));
        assert!(parse_query(&format!("a{}=1", "[a]".repeat(32)), 32).is_err());
    }

    #[test]
    fn arrays_lists_and_oddities() {
        assert_eq!(parse("k%5B0%5D=a&k%5B1%5D=b"), json!({"k":{"0":"a","1":"b"}}));
        assert_eq!(parse("k[]=a&k[]=b"), json!({"k":["a","b"]}));
        assert_eq!(parse("a[b][c]=1&a[b][d]=2"), json!({"a":{"b":{"c":"1","d":"2"}}}));
        assert_eq!(parse("u=undefined&&x=&y"), json!({"u":"undefined","x":"","y":""}));
        assert_eq!(parse("s=a+b%20c"), json!({"s":"a b c"}));
        assert_eq!(parse(""), json!({}));
        assert_eq!(parse("a[b=1"), json!({"a[b":"1"}));
        assert_eq!(query_param("x=1&vsn=2.0.0&", "vsn").as_deref(), Some("2.0.0"));
        assert_eq!(query_param("x=1", "vsn"), None);
    }
}
