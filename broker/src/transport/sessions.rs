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
use crate::rate::{Rate, TokenBucket};

/// Live sessions by token, and the per-address creation rate.
#[derive(Default)]
pub struct LongPoll {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    rate: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Addresses remembered by the rate limiter before those with a full bucket (nothing to
/// remember) are forgotten, and the most it ever holds: many source addresses (all of
/// 127.0.0.0/8 on loopback) must not grow it without bound.
const RATE_TABLE_PRUNE: usize = 4096;
const RATE_TABLE_MAX: usize = 65_536;

impl LongPoll {
    /// Takes one session creation from `ip`'s bucket (`per_s` refill, `burst` capacity);
    /// false when it is empty.
    pub fn allow_new_session(&self, ip: IpAddr, rate: Rate) -> bool {
        if rate.per_s == 0 {
            return true;
        }
        let mut table = self.rate.lock();
        if table.len() >= RATE_TABLE_PRUNE {
            table.retain(|_, b| !b.is_full(rate));
            if table.len() >= RATE_TABLE_MAX {
                // Still full of busy addresses: forget one (it starts again with a full bucket).
                if let Some(victim) = table.keys().next().copied() {
                    table.remove(&victim);
                }
            }
        }
        table.entry(ip).or_insert_with(|| TokenBucket::full(rate)).take(rate)
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

