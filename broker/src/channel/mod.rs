//! Channels (spec §5): the [`Channel`] trait apps implement, the [`ChannelContext`] they act
//! through (Phoenix's `socket` inside a channel), and the task that runs one channel
//! incarnation.
//!
//! One task per joined channel owns the channel value and a bounded mailbox. The connection
//! routes client messages into the mailbox; pubsub shards route intercepted broadcasts into it;
//! everything else (fastlane broadcasts) bypasses the channel entirely.
//!
//! Lifecycle of the task: `join` → on ok, subscribe to the topic with the join reply as the
//! first frame (see [`crate::pubsub`]) → `after_join` → loop over the mailbox → `terminate` on
//! a graceful stop → unsubscribe carrying `phx_close` (or `phx_error` on a crash) → tell the
//! connection it is gone. Panics in app code are caught: `join` → `{"reason":"join crashed"}`,
//! anything later → `phx_error {"reason":"channel_crash"}`; other channels never notice.

pub mod api;
pub mod context;
pub mod mailbox;
pub mod server;
pub mod stop;
pub mod typed;

pub use api::{Channel, Continue, Join, Reply};
pub use context::{broadcast_frame_bound, ChannelContext, ChannelEnv, InfoSender, NewSocketInfo, PushFailed, SocketCtl, SocketInfo, SocketRef};
pub use mailbox::Info;
pub use stop::{ShutdownReason, StopReason};
