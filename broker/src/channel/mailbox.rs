//! What a channel task's mailbox carries, including the [`Info`] messages of `handle_info`.

use std::any::Any;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::stop::StopReason;
use crate::protocol::{Payload, Ref};
use crate::pubsub::Broadcast;

/// What the connection (and pubsub) send to a channel task.
pub enum ChannelMsg {
    /// A client message (boxed: the mailbox's slots are sized by the largest variant).
    In(Box<InMsg>),
    Out(Arc<Broadcast>),
    Info(Info),
    /// `phx_leave` with its ref.
    Leave { ref_: Option<Ref> },
    /// Stop without frames (transport closed, duplicate join, disconnect, drain).
    Shutdown(StopReason),
}

/// A client message for `handle_in`; `handled` is signalled once `handle_in` returned.
pub struct InMsg {
    pub event: String,
    pub payload: Payload,
    pub ref_: Option<Ref>,
    pub handled: Option<oneshot::Sender<()>>,
}



/// A message for [`crate::channel::Channel::handle_info`].
pub enum Info {
    /// A value sent with [`crate::channel::ChannelContext::send_info`] / [`crate::channel::ChannelContext::send_after`] or
    /// through an [`crate::channel::InfoSender`].
    Message(Box<dyn Any + Send>),
    /// A broadcast on an extra topic the channel subscribed to with
    /// [`crate::channel::ChannelContext::subscribe`].
    Broadcast(Arc<Broadcast>),
}

impl Info {
    /// The message as the app's type `T` (what was sent with `send_info` / `send_after` /
    /// [`crate::channel::InfoSender::send`]), or the message back when it is something else:
    ///
    /// ```
    /// # use broker::{ChannelContext, Continue, Info};
    /// enum Tick { Second, Minute }
    /// fn handle_info(msg: Info, _ctx: &mut ChannelContext) -> Continue {
    ///     match msg.downcast::<Tick>() {
    ///         Ok(Tick::Second) => { /* … */ }
    ///         Ok(Tick::Minute) => { /* … */ }
    ///         Err(_other) => {}
    ///     }
    ///     Continue::Continue
    /// }
    /// ```
    pub fn downcast<T: Any>(self) -> Result<T, Info> {
        match self {
            Info::Message(m) => m.downcast::<T>().map(|b| *b).map_err(Info::Message),
            other => Err(other),
        }
    }

    /// A reference to the message as `T`, if it is one.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Info::Message(m) => m.downcast_ref::<T>(),
            Info::Broadcast(_) => None,
        }
    }

    /// Is this message a `T`?
    pub fn is<T: Any>(&self) -> bool {
        self.downcast_ref::<T>().is_some()
    }

    /// A broadcast on an extra subscribed topic: `(topic, event, payload)`.
    pub fn as_broadcast(&self) -> Option<(&str, &str, &Payload)> {
        match self {
            Info::Broadcast(b) => Some((&b.topic, &b.event, &b.payload)),
            Info::Message(_) => None,
        }
    }
}

