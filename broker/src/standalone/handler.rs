//! The standalone binary's socket handler: who a socket is. With `[auth]` the connect token
//! (the `token` param or phoenix.js `authToken`) must verify as a Phoenix.Token or a JWT; with
//! `identity.connect_url` the app's backend decides (and may set the identity). The verified
//! identity becomes the socket assigns `user_id` and `claims`, the socket id
//! (`user_socket:<id>`, for `disconnect`), the presence key and the sender stamp. Nothing else
//! is accepted while identity is on: a missing, forged, expired or wrong-audience token is a
//! 403, as Phoenix answers a refused `connect`.

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::identity::{Identity, Verifier};
use super::webhook::Webhooks;
use crate::config::{Config, IdentityConfig};
use crate::protocol::Transport;
use crate::socket::{ConnectError, ConnectInfo, SocketHandler};

/// The assigns key holding the verified user id (a string).
pub const USER_ID: &str = "user_id";
/// The assigns key holding the verified claims (an object).
pub const CLAIMS: &str = "claims";

pub struct StandaloneHandler {
    verifier: Option<Verifier>,
    webhooks: Option<Webhooks>,
    identity: IdentityConfig,
}

impl StandaloneHandler {
    pub fn new(config: &Config, webhooks: Option<Webhooks>) -> Result<StandaloneHandler, String> {
        let verifier = config.auth.as_ref().map(Verifier::new).transpose()?;
        Ok(StandaloneHandler { verifier, webhooks, identity: config.identity.clone() })
    }

    fn on(&self) -> bool {
        self.verifier.is_some() || self.identity.connect_url.is_some()
    }
}

#[async_trait]
impl SocketHandler for StandaloneHandler {
    async fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        if !self.on() {
            return Ok(Map::new());
        }
        let token = match params.get(&self.identity.token_param) {
            Some(Value::String(t)) if !t.is_empty() => Some(t.as_str()),
            _ => info.auth_token.as_deref().filter(|t| !t.is_empty()),
        };
        let mut identity: Option<Identity> = None;
        if let Some(verifier) = &self.verifier {
            let Some(token) = token else { return Err(ConnectError::Forbidden) };
            match verifier.verify(token) {
                Ok(id) => identity = Some(id),
                Err(e) => {
                    tracing::debug!("connect refused: token {e}");
                    return Err(ConnectError::Forbidden);
                }
            }
        }
        if let (Some(url), Some(hooks)) = (&self.identity.connect_url, &self.webhooks) {
            let mut public_params = params.clone();
            if let Some(obj) = public_params.as_object_mut() {
                obj.remove(&self.identity.token_param);
            }
            let body = json!({
                "params": public_params,
                "token": if self.verifier.is_none() { token.map(Value::from).unwrap_or(Value::Null) } else { Value::Null },
                "user_id": identity.as_ref().map(|i| i.user_id.clone()),
                "claims": identity.as_ref().map(|i| Value::Object(i.claims.clone())),
                "transport": match info.transport { Transport::WebSocket => "websocket", Transport::LongPoll => "longpoll" },
                "peer": info.peer.map(|p| p.to_string()),
                "user_agent": info.user_agent,
            });
            match hooks.call(url, &body).await {
                Ok(answer) => {
                    if answer.contains_key("error") {
                        return Err(ConnectError::Forbidden);
                    }
                    let user_id = match answer.get(USER_ID) {
                        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => identity.as_ref().map(|i| i.user_id.clone()),
                    };
                    let Some(user_id) = user_id else { return Err(ConnectError::Forbidden) };
                    let mut claims = identity.map(|i| i.claims).unwrap_or_default();
                    if let Some(Value::Object(extra)) = answer.get(CLAIMS) {
                        claims.extend(extra.clone());
                    }
                    identity = Some(Identity { user_id, claims });
                }
                Err(super::webhook::WebhookError::Status(s)) if (400..500).contains(&s) => return Err(ConnectError::Forbidden),
                Err(e) => return Err(ConnectError::Status(503, e.reason().into())),
            }
        }
        let identity = identity.ok_or(ConnectError::Forbidden)?;
        let mut assigns = Map::new();
        assigns.insert(USER_ID.into(), Value::String(identity.user_id));
        assigns.insert(CLAIMS.into(), Value::Object(identity.claims));
        Ok(assigns)
    }

    fn id(&self, assigns: &Map<String, Value>) -> Option<String> {
        assigns.get(USER_ID).and_then(Value::as_str).map(|u| format!("{}{u}", self.identity.socket_id_prefix))
    }
}
