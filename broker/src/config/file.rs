//! The configuration: [`Config`], its defaults, its TOML form and its validation.

use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::sections::{ApiConfig, ChannelsConfig, CheckOriginSetting, EventMode, IdentityConfig, JoinMode, PresenceConfig};
use crate::protocol::origin::{CheckOrigin, OriginEntry};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (printed at start).
    pub listen: String,
    /// Socket mount path `P`: WebSocket at `P/websocket`, LongPoll at `P/longpoll`.
    pub socket_path: String,
    /// Serve the LongPoll transport (phoenix.js `longPollFallbackMs`, networks without WS).
    pub longpoll: bool,
    /// `check_origin`: `true` (compare with `url_host`), `false`, `"conn"`, or a list of
    /// origins like `["https://example.com", "//*.example.com"]`.
    pub check_origin: CheckOriginSetting,
    /// The endpoint URL host `check_origin = true` compares against (none: allow all).
    pub url_host: Option<String>,
    /// Accept the `authToken` side channel (`Sec-WebSocket-Protocol` / `X-Phoenix-AuthToken`).
    pub auth_token: bool,
    /// Extra WebSocket subprotocols to accept besides `phoenix`.
    pub subprotocols: Vec<String>,
    /// Serve the demo chat page at `/`.
    pub demo_page: bool,
    /// This node's name: the presence replica name (unique per node in a cluster).
    pub node_name: String,
    /// Serve `/metrics` and `/health` on this separate address (e.g. `127.0.0.1:9100`) instead
    /// of the public one, so they need not face the internet. Unset: served on `listen`.
    pub admin_listen: Option<String>,
    pub limits: Limits,
    pub presence: PresenceConfig,
    pub channels: ChannelsConfig,
    /// `[auth]` (standalone): how connect tokens are verified (a Phoenix.Token or a JWT).
    /// Unset: sockets are anonymous unless `identity.connect_url` decides.
    pub auth: Option<crate::standalone::identity::AuthConfig>,
    /// `[identity]` (standalone): where the token is, the connect webhook, the socket id and
    /// the sender stamp.
    pub identity: IdentityConfig,
    /// `[webhooks]` (standalone): timeouts, retries and concurrency of every webhook call.
    pub webhooks: crate::standalone::webhook::WebhookConfig,
    /// `[api]` (standalone): the HTTP API for backends (broadcast, disconnect, presence, stats).
    pub api: ApiConfig,
    /// `[tls]`: serve `wss://` and `https://` with this certificate and key (PEM files).
    pub tls: Option<crate::transport::tls::TlsConfig>,
    /// `[cluster]`: one node of several over Redis (unset `redis_url`: a single node).
    pub cluster: crate::cluster::ClusterConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:4000".into(),
            socket_path: "/socket".into(),
            longpoll: true,
            check_origin: CheckOriginSetting::Bool(false),
            url_host: None,
            auth_token: false,
            subprotocols: Vec::new(),
            // A library user's `Config::default()` serves no demo page; the binary turns it on
            // (`Config::load`), where `--no-demo` or `demo_page = false` turn it off.
            demo_page: false,
            node_name: "broker".into(),
            admin_listen: None,
            limits: Limits::default(),
            presence: PresenceConfig::default(),
            channels: ChannelsConfig::default(),
            auth: None,
            identity: IdentityConfig::default(),
            webhooks: Default::default(),
            api: ApiConfig::default(),
            tls: None,
            cluster: Default::default(),
        }
    }
}

/// What a secret reads in [`Config::redacted`] (`--print-config`).
pub const REDACTED: &str = "<redacted>";

impl Config {
    pub fn check_origin(&self) -> Result<CheckOrigin, String> {
        Ok(match &self.check_origin {
            CheckOriginSetting::Bool(false) => CheckOrigin::Off,
            CheckOriginSetting::Bool(true) => CheckOrigin::UrlHost(self.url_host.clone()),
            CheckOriginSetting::Mode(m) if m == "conn" => CheckOrigin::Conn,
            CheckOriginSetting::Mode(m) => return Err(format!("check_origin: unknown mode {m:?} (true, false, \"conn\" or a list)")),
            CheckOriginSetting::List(l) => CheckOrigin::List(l.iter().map(|e| OriginEntry::parse(e)).collect::<Result<_, _>>()?),
        })
    }

    /// Parses a TOML document over the defaults. Errors name the key
    /// (`limits.max_frame_size: invalid type: …`).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        Config::from_table(table).map_err(|e| e.to_string())
    }

    /// The configuration as a TOML document (what `--print-config` prints, after
    /// [`Config::redacted`]); [`Config::from_toml`] reads it back to an equal configuration.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| format!("configuration as TOML: {e}"))
    }

    /// This configuration with every secret replaced by [`REDACTED`]: `[auth]`
    /// `secret_key_base` / `secret`, `webhooks.secret` and `api.key`.
    pub fn redacted(&self) -> Config {
        use crate::standalone::identity::AuthConfig;
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some(REDACTED.into());
            }
        };
        let mut c = self.clone();
        match &mut c.auth {
            Some(AuthConfig::PhoenixToken { secret_key_base, .. }) => *secret_key_base = REDACTED.into(),
            Some(AuthConfig::Jwt { secret, .. }) => hide(secret),
            None => {}
        }
        hide(&mut c.webhooks.secret);
        hide(&mut c.api.key);
        if let Some(url) = &c.cluster.redis_url {
            c.cluster.redis_url = Some(crate::cluster::redact_url(url));
        }
        c
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check_origin()?;
        self.cluster.validate()?;
        if !self.socket_path.starts_with('/') || self.socket_path.ends_with('/') && self.socket_path.len() > 1 {
            return Err(format!("socket_path {:?} must start with '/' and not end with one", self.socket_path));
        }
        for p in self.presence.topics.iter().chain(self.channels.topics.iter()) {
            crate::protocol::TopicPattern::parse(p)?;
        }
        for (i, p) in self.channels.policies.iter().enumerate() {
            if p.topics.is_empty() {
                return Err(format!("channels.policies[{i}].topics must list at least one pattern"));
            }
            for t in &p.topics {
                crate::protocol::TopicPattern::parse(t).map_err(|e| format!("channels.policies[{i}].topics: {e}"))?;
            }
            if p.join == JoinMode::Webhook && p.join_url.is_none() {
                return Err(format!("channels.policies[{i}].join_url is required with join = \"webhook\""));
            }
            if p.events == EventMode::Webhook && p.event_url.is_none() {
                return Err(format!("channels.policies[{i}].event_url is required with events = \"webhook\""));
            }
            if p.join == JoinMode::Claims && !self.identity_on() {
                return Err(format!("channels.policies[{i}].join = \"claims\" needs [auth] or identity.connect_url"));
            }
        }
        if let Some(k) = &self.api.key {
            if k.len() < 16 {
                return Err("api.key must be at least 16 bytes".into());
            }
        }
        if !self.api.path.starts_with('/') || self.api.path.len() < 2 || self.api.path.ends_with('/') {
            return Err(format!("api.path {:?} must start with '/' and not end with one", self.api.path));
        }
        if let Some(a) = &self.admin_listen {
            a.parse::<std::net::SocketAddr>().map_err(|e| format!("admin_listen {a:?}: {e}"))?;
        }
        self.limits.validate()
    }

    /// Is identity verified (a token verifier or a connect webhook)?
    pub fn identity_on(&self) -> bool {
        self.auth.is_some() || self.identity.connect_url.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicPolicy;
    use crate::standalone::identity::AuthConfig;

    #[test]
    fn toml_overrides_defaults() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:0"
            check_origin = ["https://example.com"]
            [limits]
            max_channels = 5
            [presence]
            diff_window_ms = 50
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.limits.max_channels, 5);
        assert_eq!(c.limits.idle_timeout_ms, 60_000);
        assert_eq!(c.presence.diff_window_ms, 50);
        assert!(matches!(c.check_origin().unwrap(), CheckOrigin::List(_)));
        c.validate().unwrap();
        assert!(Config::from_toml("nonsense = 1").is_err());
        let bad = Config { check_origin: CheckOriginSetting::Mode("x".into()), ..Config::default() };
        assert!(bad.validate().is_err());
        // An outbox smaller than the largest client message could never deliver it.
        let mut bad = Config::default();
        bad.limits.outbox_max_bytes = bad.limits.max_frame_size;
        assert!(bad.validate().unwrap_err().contains("outbox_max_bytes"));
        let mut bad = Config::default();
        bad.limits.max_topic_bytes = 0;
        assert!(bad.validate().unwrap_err().contains("max_topic_bytes"));
    }

    #[test]
    fn example_toml_parses_and_matches_the_defaults() {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../broker.example.toml"));
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        // The example documents the binary's defaults; a library's Config::default() differs
        // only in serving no demo page.
        let binary = Config { demo_page: true, ..Config::default() };
        assert_eq!(format!("{c:?}"), format!("{binary:?}"));
        assert_eq!(c, binary);
    }

    fn with_secrets() -> Config {
        let mut c = Config::from_toml(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../broker.example.toml"))).unwrap();
        c.url_host = Some("example.com".into());
        c.check_origin = CheckOriginSetting::List(vec!["https://example.com".into(), "//*.example.com".into()]);
        c.admin_listen = Some("127.0.0.1:9100".into());
        c.subprotocols = vec!["v2".into()];
        c.auth = Some(AuthConfig::PhoenixToken {
            secret_key_base: "s".repeat(64),
            salt: "user socket".into(),
            max_age_s: Some(60),
            key_iterations: 1000,
            key_length: 32,
            key_digest: crate::standalone::identity::Digest::Sha512,
            user_id_field: None,
        });
        c.identity.connect_url = Some("http://127.0.0.1:1/connect".into());
        c.webhooks.secret = Some("webhook-secret".into());
        c.api.key = Some("k".repeat(32));
        c.channels.policies = vec![
            TopicPolicy { topics: vec!["private:*".into()], join: JoinMode::Claims, ..Default::default() },
            TopicPolicy {
                topics: vec!["game:*".into()],
                join: JoinMode::Webhook,
                join_url: Some("http://127.0.0.1:1/join".into()),
                events: EventMode::BroadcastFrom,
                allowed_events: vec!["move".into()],
                ..Default::default()
            },
        ];
        c.validate().unwrap();
        c
    }

    #[test]
    fn config_to_toml_reads_back_equal() {
        let c = with_secrets();
        let text = c.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), c, "{text}");
        assert_eq!(Config::from_toml(&Config::default().to_toml().unwrap()).unwrap(), Config::default());
        let jwt = Config {
            auth: Some(AuthConfig::Jwt {
            algorithm: crate::standalone::identity::JwtAlgorithm::Hs256,
            secret: Some("j".repeat(32)),
            public_key_pem: None,
            public_key_file: None,
            audience: Some(vec!["app".into()]),
            issuer: None,
            leeway_s: 5,
            user_id_claim: "sub".into(),
            require_exp: true,
            }),
            ..Config::default()
        };
        assert_eq!(Config::from_toml(&jwt.to_toml().unwrap()).unwrap(), jwt);
        let redacted = jwt.redacted().to_toml().unwrap();
        assert!(redacted.contains("secret = \"<redacted>\"") && !redacted.contains("jjjj"), "{redacted}");
    }

    #[test]
    fn config_redacted_hides_every_secret() {
        let c = with_secrets();
        let text = c.redacted().to_toml().unwrap();
        for secret in ["ssssssss", "webhook-secret", "kkkkkkkk"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(text.matches(REDACTED).count(), 3, "{text}");
        let mut back = Config::from_toml(&text).unwrap();
        assert_ne!(back, c);
        if let Some(AuthConfig::PhoenixToken { secret_key_base, .. }) = &mut back.auth {
            *secret_key_base = "s".repeat(64);
        }
        back.webhooks.secret = Some("webhook-secret".into());
        back.api.key = Some("k".repeat(32));
        assert_eq!(back, c);
    }
}
