//! The typed side of [`ChannelContext`]: socket assigns as the app's own type, presence metas
//! as the app's own type (`track_as`, `list_as`), and Phoenix's `Presence.update(socket, key,
//! fn)` ([`ChannelContext::update_presence_with`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::context::ChannelContext;
use crate::presence::typed::{app_fields, meta_map};
use crate::presence::PresenceError;

impl ChannelContext {
    /// `socket.assigns`, typed: this join's assigns (a copy of what
    /// [`crate::SocketHandler::connect`] returned, e.g. with [`crate::assigns`]) decoded as `T`.
    ///
    /// ```
    /// # use broker::ChannelContext;
    /// #[derive(serde::Deserialize)]
    /// struct User { name: String }
    /// fn name(ctx: &ChannelContext) -> String {
    ///     ctx.assigns_as::<User>().map(|u| u.name).unwrap_or_default()
    /// }
    /// ```
    pub fn assigns_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.assigns.clone()))
    }

    /// `assign(socket, key, value)` with any serde value (kept in this join's assigns).
    pub fn assign<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        let v = serde_json::to_value(value)?;
        self.assigns.insert(key.to_owned(), v);
        Ok(())
    }

    /// `Presence.track(socket, key, meta)` with a typed meta (a struct or map).
    pub async fn track_as<M: Serialize + ?Sized>(&mut self, key: &str, meta: &M) -> Result<String, PresenceError> {
        let meta = meta_map(meta)?;
        self.track(key, meta).await
    }

    /// `Presence.update(socket, key, meta)` with a typed meta.
    pub async fn update_presence_as<M: Serialize + ?Sized>(&mut self, key: &str, meta: &M) -> Result<String, PresenceError> {
        let meta = meta_map(meta)?;
        self.update_presence(key, meta).await
    }

    /// Phoenix's `Presence.update(socket, key, fn)`: reads this channel's current meta under
    /// `key` (as `M`, without `phx_ref`), applies `f`, and stores the result. Only this channel
    /// writes its own metas, so nothing can change in between. [`PresenceError::NoPresence`]
    /// when this channel tracks nothing under `key` (through this context).
    ///
    /// ```
    /// # use broker::ChannelContext;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Meta { typing: bool }
    /// async fn stop_typing(ctx: &mut ChannelContext) {
    ///     let _ = ctx.update_presence_with("alice", |m: &mut Meta| m.typing = false).await;
    /// }
    /// ```
    pub async fn update_presence_with<M, F>(&mut self, key: &str, f: F) -> Result<String, PresenceError>
    where
        M: Serialize + DeserializeOwned,
        F: FnOnce(&mut M),
    {
        let phx_ref = self.presence_ref(key).ok_or(PresenceError::NoPresence)?.to_owned();
        let topic = self.topic().to_owned();
        let current = self.presence().meta_by_ref(&topic, key, &phx_ref).await.ok_or(PresenceError::NoPresence)?;
        let mut meta: M = serde_json::from_value(Value::Object(app_fields(&current))).map_err(|_| PresenceError::BadMeta)?;
        f(&mut meta);
        self.update_presence_as(key, &meta).await
    }

    /// `Presence.list(socket)`, typed: this topic's presences, key → metas as `M`.
    pub async fn presence_list_as<M: DeserializeOwned>(&self) -> Result<std::collections::BTreeMap<String, Vec<M>>, String> {
        self.presence().list_as(self.topic()).await
    }
}
