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

