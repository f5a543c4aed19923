//! LongPoll sessions (spec §6.2): the registry by token and the per-address creation rate.
//! The HTTP side is [`super::longpoll`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::capacity::Permit;
use crate::outbox::Outbox;

/// Live sessions by token, and the per-address creation rate.
#[derive(Default)]
pub struct LongPoll {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    rate: Mutex<HashMap<IpAddr, Bucket>>,
}

/// A token bucket of session creations for one client address.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Addresses remembered by the rate limiter before idle (full) buckets are forgotten.
const RATE_TABLE_PRUNE: usize = 4096;

impl LongPoll {
    /// Takes one session creation from `ip`'s bucket (`per_s` refill, `burst` capacity);
    /// false when it is empty.
    pub fn allow_new_session(&self, ip: IpAddr, per_s: u32, burst: u32) -> bool {
        if per_s == 0 {
            return true;
        }
        let now = Instant::now();
        let (per_s, burst) = (per_s as f64, burst.max(1) as f64);
        let mut rate = self.rate.lock();
        if rate.len() >= RATE_TABLE_PRUNE {
            rate.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_s < burst);
        }
        let b = rate.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_s).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The live session with this token.
    pub fn find(&self, token: Option<&str>) -> Option<Arc<Session>> {
        let token = token?;
        self.sessions.lock().get(token).filter(|s| s.alive.load(Ordering::Acquire)).cloned()
    }

    pub fn insert(&self, session: Arc<Session>) {
        self.sessions.lock().insert(session.token.clone(), session);
    }

    pub fn remove(&self, token: &str) {
        self.sessions.lock().remove(token);
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One LongPoll session: its token, its outbox (frames wait here between polls), the queue
/// of POSTed frames for its task, and its place in the session pool.
pub struct Session {
    pub token: String,
    pub outbox: Arc<Outbox>,
    pub dispatch: mpsc::Sender<Dispatch>,
    pub last_poll: Mutex<Instant>,
    pub alive: AtomicBool,
    /// The session's place in the session pool, given back when the last reference goes.
    pub permit: Permit,
}

/// A POSTed frame for the session task.
pub struct Dispatch {
    pub body: Bytes,
    pub binary: bool,
    /// Ok once handled; Err if the frame was undecodable (the session is gone).
    pub done: oneshot::Sender<Result<(), ()>>,
}

