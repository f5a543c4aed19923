//! The `BROKER_*` environment overlay ([`Config::load`]) and [`KeyError`], a configuration
//! error at a key, with messages naming the key and where its value came from.

use super::file::Config;

/// Every configuration environment variable starts with this.
pub const ENV_PREFIX: &str = "BROKER_";
/// Separates a section from its key in an environment variable: `BROKER_LIMITS__MAX_FRAME_SIZE`.
pub const ENV_NESTING: &str = "__";
/// `BROKER_*` variables that are not configuration: the path of the binary that the scripts
/// and the phoenix.js tests export, and so pass on to the broker they start.
pub const ENV_NOT_CONFIG: &[&str] = &["BROKER_BIN"];

impl Config {
    /// The configuration a TOML table gives over the defaults.
    pub fn from_table(table: toml::Table) -> Result<Config, KeyError> {
        serde_path_to_error::deserialize(table).map_err(|e| {
            let mut key = Vec::new();
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Map { key: k } => key.push(k.clone()),
                    serde_path_to_error::Segment::Seq { index } => match key.last_mut() {
                        Some(last) => last.push_str(&format!("[{index}]")),
                        None => key.push(format!("[{index}]")),
                    },
                    serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
                }
            }
            let message = e.inner().message().trim().to_owned();
            // Inside a table serde buffers (the tagged `[auth]`) the path stops at the table:
            // the unknown key is in the message.
            if let Some(field) = unknown_field(&message) {
                if key.last().map(String::as_str) != Some(field) {
                    key.push(field.to_owned());
                }
            }
            KeyError { key, message }
        })
    }

    /// The configuration from an optional TOML file (its name and text) with `BROKER_*`
    /// environment variables over it (see [`env_key`]); `flag_env` lists the variables that are
    /// command-line flags' own (handled with the flags, not here). Errors name the key and where
    /// its value came from: the file or the variable.
    pub fn load<I>(file: Option<(&str, &str)>, env: I, flag_env: &[&str]) -> Result<Config, String>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table = match file {
            Some((name, text)) => toml::from_str::<toml::Table>(text).map_err(|e| format!("{name}: {e}"))?,
            None => toml::Table::new(),
        };
        // The binary's default; a library `Config::default()` serves no demo page.
        table.entry("demo_page").or_insert(toml::Value::Boolean(true));
        let mut vars: Vec<EnvSetting> = Vec::new();
        for (var, raw) in env {
            if !var.starts_with(ENV_PREFIX) || flag_env.contains(&var.as_str()) || ENV_NOT_CONFIG.contains(&var.as_str()) {
                continue;
            }
            let key = env_key(&var).ok_or_else(|| {
                format!("{var}: not a configuration key: use BROKER_KEY, or BROKER_SECTION__KEY for a key in a [section]")
            })?;
            let value = env_value(&raw);
            vars.push(EnvSetting { var, key, raw, value });
        }
        // Whole tables first, so that a variable for a key in one lands over it.
        vars.sort_by(|a, b| (a.key.len(), &a.var).cmp(&(b.key.len(), &b.var)));
        let merge = |vars: &[EnvSetting]| -> Result<toml::Table, String> {
            let mut merged = table.clone();
            for v in vars {
                set_key(&mut merged, &v.key, v.value.clone()).map_err(|e| format!("{e} (from {})", v.var))?;
            }
            Ok(merged)
        };
        loop {
            let e = match Config::from_table(merge(&vars)?) {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            // A variable read as a number or a boolean for a key that takes a string (a node
            // name "7", a secret "1234"): its raw text is meant. Inside a table serde buffers
            // (`[auth]`) the error names only the table: then the value in the message says
            // which variable it is.
            let candidates: Vec<usize> = if e.message.contains("expected a string") {
                vars.iter()
                    .enumerate()
                    .filter(|(_, v)| !matches!(v.value, toml::Value::String(_) | toml::Value::Array(_) | toml::Value::Table(_)))
                    .filter(|(_, v)| related(&v.key, &e.key))
                    .map(|(i, _)| i)
                    .collect()
            } else {
                Vec::new()
            };
            let exact: Vec<usize> = candidates.iter().copied().filter(|&i| vars[i].key == e.key).collect();
            let named: Vec<usize> =
                candidates.iter().copied().filter(|&i| e.message.contains(&format!("`{}`", vars[i].value))).collect();
            let retry = [exact, named, candidates].into_iter().find(|c| !c.is_empty());
            match retry {
                Some(retry) => {
                    for i in retry {
                        vars[i].value = toml::Value::String(vars[i].raw.clone());
                    }
                }
                None => return Err(describe(&e, file.map(|f| f.0), &vars)),
            }
        }
    }
}

/// A configuration error at a key (`key` is its path: `["limits", "max_frame_size"]`; empty
/// for the document itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub key: Vec<String>,
    pub message: String,
}

impl KeyError {
    /// The dotted key, `limits.max_frame_size`.
    pub fn dotted(&self) -> String {
        self.key.join(".")
    }
}

impl KeyError {
    /// The error, with ` (from SOURCE)` after the key when `from` is given.
    fn describe(&self, from: Option<&str>) -> String {
        let from = from.map(|f| format!(" (from {f})")).unwrap_or_default();
        match unknown_field(&self.message) {
            Some(_) => {
                let expected = self.message.split_once(", expected ").map(|(_, e)| format!("; expected {e}")).unwrap_or_default();
                format!("unknown configuration key {:?}{from}{expected}", self.dotted())
            }
            None if self.key.is_empty() => format!("{}{from}", self.message),
            None => format!("{}: {}{from}", self.dotted(), self.message),
        }
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(None))
    }
}

/// The key of `unknown field `x`, expected …`.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split_once('`').map(|(f, _)| f)
}

/// The key path an environment variable sets: `BROKER_AUTH_TOKEN` → `auth_token`,
/// `BROKER_LIMITS__MAX_FRAME_SIZE` → `limits.max_frame_size` (a double underscore nests).
/// None: not a `BROKER_` variable, or an empty key part.
pub fn env_key(var: &str) -> Option<Vec<String>> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    let key: Vec<String> = rest.split(ENV_NESTING).map(str::to_ascii_lowercase).collect();
    if key.iter().any(|k| k.is_empty() || k.starts_with('_') || k.ends_with('_')) {
        return None;
    }
    Some(key)
}

/// An environment variable's value: a TOML value (`2000000`, `true`, `["room:*", "lobby"]`,
/// `"quoted"`, `{ kind = "jwt" }`), else its raw text as a string.
pub fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}\n")) {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        _ => toml::Value::String(raw.into()),
    }
}

/// One `BROKER_*` variable over the file.
#[derive(Clone, Debug)]
struct EnvSetting {
    var: String,
    key: Vec<String>,
    raw: String,
    value: toml::Value,
}

/// Sets `key` (a path) in `table`, making the tables on the way.
fn set_key(table: &mut toml::Table, key: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = key.split_last().expect("a key has a part");
    let mut t = table;
    for (i, k) in parents.iter().enumerate() {
        let entry = t.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => return Err(format!("{} is not a table", key[..=i].join("."))),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Is one key path within the other (a key set in a table, or a table holding it)?
fn related(a: &[String], b: &[String]) -> bool {
    // Error paths carry `name[i]` for array elements: compare the name.
    let name = |s: &String| s.split('[').next().unwrap_or("").to_owned();
    a.iter().zip(b.iter()).all(|(x, y)| name(x) == name(y))
}

/// The error with where its key came from: the variable that set it (or a table holding it),
/// else the file (and the variables that set keys inside it).
fn describe(e: &KeyError, file: Option<&str>, vars: &[EnvSetting]) -> String {
    let exact = vars.iter().filter(|v| v.key.len() <= e.key.len() && related(&v.key, &e.key)).max_by_key(|v| v.key.len());
    if let Some(v) = exact {
        return e.describe(Some(&v.var));
    }
    let inside: Vec<&str> = vars.iter().filter(|v| related(&v.key, &e.key)).map(|v| v.var.as_str()).collect();
    match (file, inside.is_empty()) {
        (Some(f), true) => format!("{f}: {e}"),
        (Some(f), false) => e.describe(Some(&format!("{f} and {}", inside.join(", ")))),
        (None, false) => e.describe(Some(&inside.join(", "))),
        (None, true) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EventMode, TopicPolicy};
    use crate::standalone::identity::AuthConfig;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|t| ("broker.toml", t)), env, &["BROKER_LISTEN", "BROKER_CONFIG"])
    }

    #[test]
    fn config_env_keys_and_values() {
        assert_eq!(env_key("BROKER_AUTH_TOKEN"), Some(vec!["auth_token".to_string()]));
        assert_eq!(env_key("BROKER_LIMITS__MAX_FRAME_SIZE"), Some(vec!["limits".to_string(), "max_frame_size".to_string()]));
        assert_eq!(env_key("BROKER_LIMITS__"), None);
        assert_eq!(env_key("BROKER_"), None);
        assert_eq!(env_key("BROKER_A___B"), None);
        assert_eq!(env_key("OTHER"), None);
        assert_eq!(env_value("2000000"), toml::Value::Integer(2_000_000));
        assert_eq!(env_value("true"), toml::Value::Boolean(true));
        assert_eq!(env_value("room:*"), toml::Value::String("room:*".into()));
        assert_eq!(env_value("\"quoted\""), toml::Value::String("quoted".into()));
        assert_eq!(env_value("1\nw = 2"), toml::Value::String("1\nw = 2".into()));
        assert!(env_value(r#"["room:*", "lobby"]"#).is_array());
    }

    #[test]
    fn config_env_overlays_every_key() {
        let c = load(
            None,
            &[
                ("BROKER_LIMITS__MAX_FRAME_SIZE", "2000000"),
                ("BROKER_AUTH_TOKEN", "true"),
                ("BROKER_PRESENCE__TOPICS", r#"["room:*","lobby"]"#),
                ("BROKER_NODE_NAME", "7"),
                ("BROKER_WEBHOOKS__SECRET", "1234"),
                ("BROKER_CHANNELS__POLICIES", r#"[{topics = ["private:*"], events = "deny"}]"#),
                // The flags' own variables and BROKER_BIN are not the overlay's.
                ("BROKER_LISTEN", "not an address"),
                ("BROKER_BIN", "/usr/bin/broker"),
                ("PATH", "/usr/bin"),
            ],
        )
        .unwrap();
        let mut want = Config::default();
        want.limits.max_frame_size = 2_000_000;
        want.auth_token = true;
        want.presence.topics = vec!["room:*".into(), "lobby".into()];
        want.node_name = "7".into();
        want.demo_page = true; // the binary's default (Config::load), not a library's
        want.webhooks.secret = Some("1234".into());
        want.channels.policies = vec![TopicPolicy { topics: vec!["private:*".into()], events: EventMode::Deny, ..Default::default() }];
        assert_eq!(c, want);
    }

    #[test]
    fn config_env_over_file_and_nested_tables() {
        let file = "node_name = \"from-file\"\n[limits]\nmax_channels = 5\nshards = 3\n";
        let c = load(Some(file), &[("BROKER_LIMITS__MAX_CHANNELS", "7")]).unwrap();
        assert_eq!((c.node_name.as_str(), c.limits.max_channels, c.limits.shards), ("from-file", 7, 3));
        // A whole table from one variable, a key of it from another.
        let c = load(None, &[("BROKER_LIMITS", "{ shards = 2, max_channels = 9 }"), ("BROKER_LIMITS__SHARDS", "4")]).unwrap();
        assert_eq!((c.limits.shards, c.limits.max_channels), (4, 9));
        // [auth] entirely from the environment; a salt of digits stays text.
        let c = load(
            None,
            &[
                ("BROKER_AUTH__KIND", "phoenix_token"),
                ("BROKER_AUTH__SECRET_KEY_BASE", "0123456789012345678901234567890123456789"),
                ("BROKER_AUTH__SALT", "1234"),
                ("BROKER_AUTH__KEY_ITERATIONS", "10"),
            ],
        )
        .unwrap();
        let Some(AuthConfig::PhoenixToken { salt, secret_key_base, key_iterations, .. }) = &c.auth else { panic!("{c:?}") };
        assert_eq!((salt.as_str(), secret_key_base.len(), *key_iterations), ("1234", 40, 10));
    }

    #[test]
    fn config_errors_name_the_key_and_its_source() {
        let e = load(None, &[("BROKER_X", "1")]).unwrap_err();
        assert!(e.starts_with(r#"unknown configuration key "x" (from BROKER_X)"#), "{e}");
        let e = load(None, &[("BROKER_LIMITS__NOPE", "1")]).unwrap_err();
        assert!(e.starts_with(r#"unknown configuration key "limits.nope" (from BROKER_LIMITS__NOPE)"#), "{e}");
        let e = load(None, &[("BROKER_AUTH__KIND", "jwt"), ("BROKER_AUTH__ALGORITHM", "hs256"), ("BROKER_AUTH__NOPE", "1")]).unwrap_err();
        assert!(e.starts_with(r#"unknown configuration key "auth.nope" (from BROKER_AUTH__NOPE)"#), "{e}");
        let e = load(None, &[("BROKER_LIMITS__MAX_FRAME_SIZE", "big")]).unwrap_err();
        assert!(e.starts_with("limits.max_frame_size: invalid type: string \"big\"") && e.contains("(from BROKER_LIMITS__MAX_FRAME_SIZE)"), "{e}");
        let e = load(None, &[("BROKER_LIMITS__MAX_FRAME_SIZE", "true")]).unwrap_err();
        assert!(e.contains("invalid type: boolean") && e.contains("BROKER_LIMITS__MAX_FRAME_SIZE"), "{e}");
        let e = load(None, &[("BROKER_LIMITS__", "1")]).unwrap_err();
        assert!(e.starts_with("BROKER_LIMITS__: not a configuration key"), "{e}");
        let e = load(None, &[("BROKER_AUTH__KIND", "jwt")]).unwrap_err();
        assert!(e.contains("auth: missing field `algorithm` (from BROKER_AUTH__KIND)"), "{e}");
        let e = load(Some("node_name = 1"), &[]).unwrap_err();
        assert!(e.starts_with("broker.toml: node_name: invalid type: integer `1`"), "{e}");
        let e = load(Some("[limits]\nmax_frame_size = \"big\""), &[]).unwrap_err();
        assert!(e.starts_with("broker.toml: limits.max_frame_size: invalid type"), "{e}");
        let e = load(Some("[[channels.policies]]\ntopics = [\"a\"]\njoin = \"maybe\""), &[]).unwrap_err();
        assert!(e.starts_with("broker.toml: channels.policies[0].join: unknown variant `maybe`"), "{e}");
        let e = load(Some("[limits]\nnope = 1"), &[]).unwrap_err();
        assert!(e.starts_with(r#"broker.toml: unknown configuration key "limits.nope"; expected one of"#), "{e}");
        let e = load(Some("[auth]\nkind = \"jwt\""), &[("BROKER_AUTH__SECRET", "x")]).unwrap_err();
        assert!(e.contains("auth: missing field `algorithm` (from broker.toml and BROKER_AUTH__SECRET)"), "{e}");
        let e = load(Some("limits = 1"), &[("BROKER_LIMITS__SHARDS", "1")]).unwrap_err();
        assert_eq!(e, "limits is not a table (from BROKER_LIMITS__SHARDS)");
        let e = load(Some("[limits"), &[]).unwrap_err();
        assert!(e.starts_with("broker.toml: TOML parse error"), "{e}");
    }
}
