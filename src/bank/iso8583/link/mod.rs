//! The link: one persistent TCP connection to the acquirer host, owned by an
//! actor (a tokio task), and a cheap [`Link`] handle that sends requests
//! over it and waits for their answers. It only moves messages: what a
//! request means and what its answer says is the issuer side's business
//! (mini-redis's layering: framing in [`super::FrameCodec`], the codec in
//! [`Message`], the multiplexer here).
//!
//! # Behaviour
//!
//! - **Connect, then sign on.** After every connect the link sends a sign-on
//!   (0800, F70 `001`, F7 now in UTC, F11 a STAN of its own from the
//!   [`StanSource`], F32 the acquirer id, F41 the terminal id) and sends
//!   nothing else until the 0810 with F39 `00` comes back. Any other F39, no
//!   answer within `response_timeout`, or a failed connect counts as a
//!   failed attempt: the connection is closed and the link tries again.
//! - **Back-off.** Attempt *n* (1, 2, …) since the last successful sign-on
//!   waits a random time between half of and the full
//!   `min(0.5 s × 2^(n-1), 30 s)` ("equal jitter": nodes that lost the host
//!   together do not come back together); a sign-on resets *n*.
//! - **Requests.** [`Link::exchange`] writes one request and waits for the
//!   answer with the same (F11, F41) ([`Message::match_key`]), whatever its
//!   MTI; requests are multiplexed on the one connection, so answers may
//!   come in any order. At most `max_in_flight` exchanges are under way at
//!   once (a semaphore); the others wait their turn.
//! - **Echo.** When nothing was written for `echo_interval`, the link sends
//!   an echo test (0800, F70 `301`, own STAN). An echo unanswered within
//!   `response_timeout` means the connection is dead even if TCP has not
//!   noticed: the link drops it and reconnects. A host's own 0800 is
//!   answered 0810 F39 `00`.
//! - **Answers nobody waits for** (late after a timeout, duplicated, or
//!   unsolicited) are logged at `warn` with the MTI, STAN, F39, terminal and
//!   masked PAN only, and dropped. So are frames that do not decode (the
//!   length prefix says where the next one starts).
//! - **A dropped connection** (closed by the host, a read or write error, a
//!   write stalled for `response_timeout`, an unanswered echo) ends every
//!   exchange in flight with [`LinkError::Dropped`]; the link reconnects and
//!   signs on again.
//!
//! # Use
//!
//! ```ignore
//! // start-up (the daemon's wiring): own STANs from the database's per-day
//! // sequence, shared with the issuer's requests
//! let link = Link::spawn(
//!     LinkSettings::from_settings(&settings.bank.iso8583),
//!     Arc::new(StoreStans::new(store.clone(), clock.clone())),
//! );
//! let answer = link.exchange(request).await?; // 0210 / 0430 / 0810
//! let ready = link.status().is_signed_on();   // /readyz
//! link.shutdown().await;                      // on SIGTERM
//! ```
//!
//! # Timers
//!
//! | timer              | from                              | length             |
//! |--------------------|-----------------------------------|--------------------|
//! | waiting to be sent | [`Link::exchange`] is called      | `response_timeout` |
//! | the answer         | the request is written            | `response_timeout` |
//! | connect, sign-on   | the attempt starts / 0800 written | `response_timeout` |
//! | a STAN of its own  | the 0800 is being built           | `response_timeout` |
//! | echo               | the last frame written            | `echo_interval`    |
//! | echo answer        | the echo is written               | `response_timeout` |
//! | back-off           | a failed attempt or a drop        | 0.25 s … 30 s      |
//!
//! So an exchange takes at most twice `response_timeout`: once waiting for
//! a slot and a signed-on link, once for the answer.
//!
//! # Secrets
//!
//! The link never logs a message's F2 in clear, F14, F52 or F61: log lines
//! name the MTI, STAN, F39, F41 and the masked PAN only, and errors carry
//! no field data.
//!
//! # Sources
//!
//! ISO 8583:1987: message classes 0800/0810 (network management), F70
//! network management information codes `001` sign-on and `301` echo test,
//! F39 `00` approved, F11 as the key of a request/answer pair within a
//! terminal (F41). The wire format is the README's "ISO 8583 wire format".

mod actor;
mod inflight;
mod stans;
#[cfg(test)]
mod tests;

pub use stans::{CounterStans, StanSource, StoreStans};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Message;
use crate::config::Iso8583Settings;
use inflight::{Outgoing, Ticket};

/// What the link needs to know: where the host is, who voicepay is on it,
/// and its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// `host:port` of the acquirer host.
    pub address: String,
    /// F41 of the link's own 0800s (8 printable ASCII characters).
    pub terminal_id: String,
    /// F32 of the link's own 0800s (1-11 digits).
    pub acquirer_id: String,
    /// How long an answer (0210, 0430, 0810) may take, and how long an
    /// exchange may wait to be sent.
    pub response_timeout: Duration,
    /// Idle time after which an echo test is sent.
    pub echo_interval: Duration,
    /// Exchanges under way at once (at least 1).
    pub max_in_flight: usize,
}

impl LinkSettings {
    /// From `[bank.iso8583]` (already validated by the config layer:
    /// seconds 1-300 and 1-3600, `max_in_flight` 1-1000).
    pub fn from_settings(s: &Iso8583Settings) -> Self {
        Self {
            address: s.address.clone(),
            terminal_id: s.terminal_id.clone(),
            acquirer_id: s.acquirer_id.clone(),
            response_timeout: Duration::from_secs(s.response_timeout_secs),
            echo_interval: Duration::from_secs(s.echo_interval_secs),
            max_in_flight: usize::try_from(s.max_in_flight).unwrap_or(1),
        }
    }
}

/// Why an exchange got no answer. Only [`LinkError::NotSent`] says that
/// nothing was processed; after the other two the host may have processed
/// the request, so the issuer side reverses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Never written to the socket: the link was down or not signed on, no
    /// in-flight slot came free within `response_timeout`, the request had
    /// no F11/F41 or was not a request, or the link was shut down. The text
    /// says which, for the log.
    #[error("not sent: {0}")]
    NotSent(&'static str),
    /// Written, and no answer within `response_timeout`: outcome unknown.
    #[error("no answer within the response timeout")]
    Timeout,
    /// Written, then the connection dropped before the answer: outcome
    /// unknown.
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

/// The link's state, for `/readyz` and the log. Serialised tagged by
/// `state`: `{"state":"connecting","attempt":2,"last_error":"connect to
/// 10.0.0.5:8583: connection refused"}`, `{"state":"signed_on",
/// "since_ms":1767225600000}`, `{"state":"stopped"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LinkStatus {
    /// Not signed on: connecting, signing on, or waiting to try again.
    Connecting {
        /// Failed attempts since the last sign-on (0: the first try).
        attempt: u32,
        /// Why the last attempt failed or the last connection dropped
        /// (never field data).
        last_error: Option<String>,
    },
    /// Signed on: requests are sent.
    SignedOn {
        /// When the sign-on was answered, Unix milliseconds.
        since_ms: i64,
    },
    /// [`Link::shutdown`] was called.
    Stopped,
}

impl LinkStatus {
    /// Whether requests are being sent (what `/readyz` wants).
    pub fn is_signed_on(&self) -> bool {
        matches!(self, LinkStatus::SignedOn { .. })
    }
}

/// The handle to the link's actor. Cloning it is cheap; every clone talks
/// to the same connection.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    settings: LinkSettings,
    queue: mpsc::UnboundedSender<Outgoing>,
    status: watch::Receiver<LinkStatus>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("address", &self.inner.settings.address)
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Starts the actor, which connects and signs on in the background and
    /// keeps doing so until [`Link::shutdown`]; returns at once. The link's
    /// own 0800s take their STANs from `stans` (production:
    /// [`StoreStans`], the database's per-day sequence that the issuer's
    /// requests use too, so no STAN repeats within a day across nodes).
    /// Must be called inside a tokio runtime.
    pub fn spawn(settings: LinkSettings, stans: Arc<dyn StanSource>) -> Link {
        Self::spawn_with(settings, actor::tcp(), stans)
    }

    /// [`Link::spawn`] over any transport (tests: in-memory pipes).
    fn spawn_with(
        settings: LinkSettings,
        connector: actor::Connector,
        stans: Arc<dyn StanSource>,
    ) -> Link {
        let (queue, requests) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(LinkStatus::Connecting {
            attempt: 0,
            last_error: None,
        });
        let shutdown = CancellationToken::new();
        let actor = actor::Actor::new(
            settings.clone(),
            connector,
            stans,
            requests,
            status_tx,
            shutdown.clone(),
        );
        let task = tokio::spawn(actor.run());
        Link {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                settings,
                queue,
                status,
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Sends one request (0200, 0420/0421, 0800) and waits for the answer
    /// matched by (F11, F41). The caller has set every field, F7, F11 and
    /// F41 included; the answer is returned whatever its MTI and F39.
    ///
    /// Waits up to `response_timeout` for an in-flight slot and a signed-on
    /// link, then up to `response_timeout` for the answer.
    ///
    /// # Errors
    /// [`LinkError::NotSent`] (nothing processed), [`LinkError::Timeout`]
    /// and [`LinkError::Dropped`] (outcome unknown).
    pub async fn exchange(&self, request: Message) -> Result<Message, LinkError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(LinkError::NotSent("the link is shut down"));
        }
        if request.mti().response().is_none() {
            return Err(LinkError::NotSent("not a request or advice"));
        }
        if request.match_key().is_none() {
            return Err(LinkError::NotSent("no F11 or F41 to match the answer by"));
        }
        let deadline = Instant::now() + inner.settings.response_timeout;
        let _slot = tokio::time::timeout_at(deadline, inner.slots.clone().acquire_owned())
            .await
            .map_err(|_| LinkError::NotSent("no in-flight slot came free in time"))?
            .map_err(|_| LinkError::NotSent("the link is shut down"))?;
        let mut status = inner.status.clone();
        tokio::time::timeout_at(deadline, status.wait_for(LinkStatus::is_signed_on))
            .await
            .map_err(|_| LinkError::NotSent("the link is not signed on"))?
            .map_err(|_| LinkError::NotSent("the link is shut down"))?;
        let ticket = Arc::new(Ticket::default());
        let (answer, mut rx) = oneshot::channel();
        let outgoing = Outgoing {
            request,
            ticket: ticket.clone(),
            answer,
        };
        if inner.queue.send(outgoing).is_err() {
            return Err(LinkError::NotSent("the link is shut down"));
        }
        // If this future is dropped while the request is still queued, the
        // actor must not write it: nobody would hear the answer.
        let _abandon = AbandonOnDrop(&ticket);
        let result = tokio::select! {
            r = &mut rx => r,
            () = tokio::time::sleep_until(deadline) => {
                if ticket.abandon() {
                    return Err(LinkError::NotSent("the link is not signed on"));
                }
                // The actor took it just now: its answer will come.
                rx.await
            }
        };
        result.unwrap_or(Err(if ticket.claimed() {
            LinkError::Dropped
        } else {
            LinkError::NotSent("the link is shut down")
        }))
    }

    /// The link's state now.
    pub fn status(&self) -> LinkStatus {
        self.inner.status.borrow().clone()
    }

    /// Stops the actor and closes the connection (no sign-off is sent):
    /// exchanges in flight end [`LinkError::Dropped`], waiting ones and
    /// later ones [`LinkError::NotSent`]; the status becomes
    /// [`LinkStatus::Stopped`]. Returns when the actor has ended.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.slots.close();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "ISO 8583 link actor ended abnormally");
            }
        }
    }
}

/// The last handle gone: the actor stops too.
impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct AbandonOnDrop<'a>(&'a Ticket);

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}
