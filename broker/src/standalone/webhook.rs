//! Webhooks: the broker asks the app's backend (connect, join, client events) with a JSON POST
//! and takes its JSON answer. A webhook that is slow, down, or answers garbage yields an error
//! within the configured timeout, never a hung socket: every call has one deadline covering the
//! wait for a concurrency slot, the retries and the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::metrics::METRICS;

/// `[webhooks]`: how the broker calls the app's backend.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// One deadline per call, retries included: the client gets its error reply by then.
    pub timeout_ms: u64,
    /// Extra attempts after a connection error or a 5xx answer (never after a 4xx or a
    /// well-formed refusal), while the deadline allows.
    pub retries: u32,
    /// Pause before a retry.
    pub retry_backoff_ms: u64,
    /// Calls in flight at most; callers beyond it wait for a slot (within their deadline).
    pub max_concurrency: usize,
    /// Sent as `Authorization: Bearer …` so the backend can tell the broker's calls apart.
    pub secret: Option<String>,
    /// Largest answer read, in bytes (claims and metas are kept per socket and per presence):
    /// larger is treated as garbage.
    pub max_response_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig { timeout_ms: 3_000, retries: 1, retry_backoff_ms: 50, max_concurrency: 256, secret: None, max_response_bytes: 64 * 1024 }
    }
}

/// Why a webhook call gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// No answer within the deadline (including the wait for a slot).
    Timeout,
    /// The backend could not be reached.
    Unreachable,
    /// The backend answered with this non-2xx status.
    Status(u16),
    /// The answer was not the JSON object expected.
    Garbage,
}

impl WebhookError {
    /// The reason a client is given (it names no backend detail).
    pub fn reason(&self) -> &'static str {
        match self {
            WebhookError::Timeout => "backend timeout",
            WebhookError::Unreachable | WebhookError::Status(_) | WebhookError::Garbage => "backend unavailable",
        }
    }
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::Timeout => f.write_str("webhook timed out"),
            WebhookError::Unreachable => f.write_str("webhook unreachable"),
            WebhookError::Status(s) => write!(f, "webhook answered {s}"),
            WebhookError::Garbage => f.write_str("webhook answered something that is not a JSON object"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// The webhook client: one connection pool, a concurrency bound, a deadline per call.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    config: WebhookConfig,
}

impl Webhooks {
    pub fn new(config: &WebhookConfig) -> Result<Webhooks, String> {
        if config.max_concurrency == 0 || config.timeout_ms == 0 {
            return Err("webhooks.max_concurrency and webhooks.timeout_ms must be positive".into());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("webhooks: {e}"))?;
        Ok(Webhooks { client, slots: Arc::new(Semaphore::new(config.max_concurrency)), config: config.clone() })
    }

    /// POSTs `body` to `url`; the answer must be a 2xx with a JSON object.
    pub async fn call(&self, url: &str, body: &Value) -> Result<serde_json::Map<String, Value>, WebhookError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.timeout_ms);
        let result = self.call_until(url, body, deadline).await;
        METRICS.webhook_calls.inc();
        METRICS.webhook_latency.observe(started.elapsed());
        if let Err(e) = &result {
            METRICS.webhook_failures.inc();
            tracing::warn!("webhook {url}: {e}");
        }
        result
    }

    async fn call_until(&self, url: &str, body: &Value, deadline: Instant) -> Result<serde_json::Map<String, Value>, WebhookError> {
        let left = |d: Instant| d.checked_duration_since(Instant::now()).ok_or(WebhookError::Timeout);
        let _slot = tokio::time::timeout(left(deadline)?, self.slots.acquire()).await.map_err(|_| WebhookError::Timeout)?;
        let mut attempt = 0;
        loop {
            let mut req = self.client.post(url).json(body).timeout(left(deadline)?);
            if let Some(secret) = &self.config.secret {
                req = req.bearer_auth(secret);
            }
            let retryable = match req.send().await {
                Ok(mut resp) if resp.status().is_success() => {
                    // Read within the bound, chunk by chunk: a huge answer is garbage, not memory.
                    let limit = self.config.max_response_bytes;
                    if resp.content_length().is_some_and(|n| n as usize > limit) {
                        return Err(WebhookError::Garbage);
                    }
                    let mut bytes = Vec::new();
                    loop {
                        match resp.chunk().await {
                            Ok(Some(c)) if bytes.len() + c.len() <= limit => bytes.extend_from_slice(&c),
                            Ok(Some(_)) => return Err(WebhookError::Garbage),
                            Ok(None) => break,
                            Err(e) if e.is_timeout() => return Err(WebhookError::Timeout),
                            Err(_) => return Err(WebhookError::Garbage),
                        }
                    }
                    return match serde_json::from_slice::<Value>(&bytes) {
                        Ok(Value::Object(map)) => Ok(map),
                        _ => Err(WebhookError::Garbage),
                    };
                }
                Ok(resp) if resp.status().is_server_error() => WebhookError::Status(resp.status().as_u16()),
                Ok(resp) => return Err(WebhookError::Status(resp.status().as_u16())),
                Err(e) if e.is_timeout() => return Err(WebhookError::Timeout),
                Err(_) => WebhookError::Unreachable,
            };
            attempt += 1;
            if attempt > self.config.retries {
                return Err(retryable);
            }
            let pause = Duration::from_millis(self.config.retry_backoff_ms);
            if Instant::now() + pause >= deadline {
                return Err(retryable);
            }
            tokio::time::sleep(pause).await;
        }
    }
}
