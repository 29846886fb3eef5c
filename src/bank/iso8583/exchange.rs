//! The seam between the issuer side of the acquirer link (what to send,
//! what an answer means: [`super::Iso8583Issuer`], the reversal worker) and
//! the transport that carries one request to the acquirer host and brings
//! its answer back (`link::Link`, a persistent multiplexed TCP connection).
//! Tests put an in-process scripted host behind it.
//!
//! Errors are the link's own [`LinkError`]: only `NotSent` means nothing
//! was processed.

use super::link::{Link, LinkError};
use super::Message;
use std::future::Future;
use std::sync::Arc;

/// Sends one request to the acquirer host and waits for its answer.
///
/// The caller has set every field, F7, F11 and F41 included; the answer is
/// the message the host sent back with the same (F11, F41)
/// ([`Message::match_key`]), whatever its MTI and F39 (the caller checks
/// them). Implementations never log F2 in clear, F14, F52 or F61.
pub trait Exchange: Send + Sync {
    /// One request, one answer. Errors: [`LinkError`].
    fn exchange(&self, request: Message)
        -> impl Future<Output = Result<Message, LinkError>> + Send;
}

impl<E: Exchange> Exchange for Arc<E> {
    fn exchange(
        &self,
        request: Message,
    ) -> impl Future<Output = Result<Message, LinkError>> + Send {
        (**self).exchange(request)
    }
}

/// The production transport: one request over the signed-on, multiplexed
/// connection ([`Link::exchange`]).
impl Exchange for Link {
    fn exchange(
        &self,
        request: Message,
    ) -> impl Future<Output = Result<Message, LinkError>> + Send {
        Link::exchange(self, request)
    }
}
