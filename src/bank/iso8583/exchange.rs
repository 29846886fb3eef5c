//! The seam between the issuer side of the acquirer link (what to send,
//! what an answer means: [`super::Iso8583Issuer`], the reversal worker) and
//! the transport that carries one request to the acquirer host and brings
//! its answer back (`link::Link`, a persistent multiplexed TCP connection).
//! Tests put an in-process scripted host behind it.
//!
//! [`LinkError`] is the transport's error as the shared design (issue 13)
//! names it; when `link::Link` is merged its own `LinkError` replaces this
//! one (same variants) and `impl Exchange for Link` goes beside it.

use super::Message;
use std::future::Future;
use std::sync::Arc;

/// Why a request got no answer from the acquirer host. Only
/// [`LinkError::NotSent`] says that nothing was processed; the other two
/// leave the outcome unknown, so the request must be reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Never written to the socket (the link is down or not signed on, or
    /// no in-flight slot came free in time): the host never saw it. The
    /// text says which, for the log.
    #[error("not sent: {0}")]
    NotSent(&'static str),
    /// Written, and no answer came within the response timeout: the host
    /// may have processed it.
    #[error("no answer within the response timeout")]
    Timeout,
    /// Written, then the connection dropped before its answer: the host may
    /// have processed it.
    #[error("the connection dropped before the answer")]
    Dropped,
}

impl LinkError {
    /// Whether the host may have processed the request (so it must be
    /// reversed): everything but [`LinkError::NotSent`].
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, LinkError::NotSent(_))
    }
}

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
