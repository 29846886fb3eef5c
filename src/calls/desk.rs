//! The desk: what the three flows of one node share. It knows which calls
//! are this node's (our originates, and the incoming calls that claimed an
//! order), holds the call permits (`telephony.max_concurrent_calls`),
//! knows whether the ARI events socket is up, and tracks the calls' tasks
//! so shutdown waits for them.
//!
//! Every call is registered in one table, by channel id, from its claim
//! until its task ends: reconciliation after a reconnect leaves the
//! registered calls to their task, and the node keeps renewing its claims
//! on their orders ([`super::claims`]). The id is the channel the call is
//! on now: when a masquerade moves a call onto a new channel, the desk
//! re-registers it and moves its attempt row ([`Follow`]).

use super::line::{Follow, Line};
use crate::ari::{self, AriRest};
use crate::config::Settings;
use crate::store::{now_ms, OrderRow, Store};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

/// Slack on top of the longest call in a claim's length.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);

/// One call of this node, from its claim until its call task ends: an
/// originate of ours, or an incoming call that claimed an order.
pub(super) struct Placed {
    pub(super) order_id: String,
    pub(super) attempt: i64,
    /// Held until the call ends; taken by the call task.
    pub(super) permit: Option<OwnedSemaphorePermit>,
    /// Its events reached a call task (so that task settles it).
    pub(super) running: bool,
    /// Its `POST /channels` has not returned yet: the channel may not be
    /// in Asterisk's list yet, and its events may still come.
    pub(super) originating: bool,
    /// The call's span ([`call_span`]), for the tasks that serve it.
    pub(super) span: Span,
    /// When its (last) `POST /channels` was sent: the ring time is
    /// measured from here (see `callback::Unanswered::classify`). An
    /// incoming call: when it claimed its order (unused).
    pub(super) rang_from: tokio::time::Instant,
}

/// The call desk of one node (see the module docs). Shared by the ARI
/// supervisor, the callback worker and every call task.
pub struct Desk<M> {
    pub(super) store: Store,
    pub(super) settings: Arc<Settings>,
    pub(super) rest: AriRest,
    pub(super) matcher: Arc<M>,
    /// This node's name in `orders.claimed_by`: its Stasis app name, which
    /// is unique per node anyway (one WebSocket owns an app).
    pub(super) node: String,
    /// This node's calls by the id of the channel each is on now.
    pub(super) placed: Mutex<HashMap<String, Placed>>,
    /// One per running call (`telephony.max_concurrent_calls`).
    pub(super) permits: Arc<Semaphore>,
    connected: AtomicBool,
    /// Wakes the callback worker: ARI is up, or a call ended.
    pub(super) wake: Notify,
    /// The calls' tasks (and originates in flight), waited for at shutdown.
    tasks: TaskTracker,
    /// The assisted calls' rooms on this node.
    pub(super) rooms: super::assisted::Rooms,
    /// Resumed calls waiting for their channel's first event.
    pub(super) resumed: super::points::Resumed,
    /// Cancelled when the daemon stops with `ari.websocket = "outbound"`:
    /// the calls are handed over to the next run ([`super::points`]).
    pub(super) handover: CancellationToken,
}

impl<M> Desk<M> {
    /// Records how the call on `channel_id` ended (`outcome`, e.g.
    /// `answered`, `failed`; `cause`, e.g. `call_lost`) at `now_ms()`. The
    /// attempt row is what the merchant sees of the call: a failed write is
    /// logged, and the order's own move still decides the payment.
    pub(super) async fn end_attempt(&self, channel_id: &str, outcome: &str, cause: Option<&str>) {
        let ended = self
            .store
            .attempt_ended(channel_id, outcome, cause, now_ms());
        if let Err(e) = ended.await {
            tracing::warn!(error = %e, "cannot record the call attempt");
        }
    }

    /// The desk for `settings`, calling through `rest`.
    pub fn new(store: Store, settings: Arc<Settings>, rest: AriRest, matcher: Arc<M>) -> Arc<Self> {
        Arc::new(Self {
            store,
            node: settings.ari.app.clone(),
            permits: Arc::new(Semaphore::new(
                settings.telephony.max_concurrent_calls.max(1),
            )),
            settings,
            rest,
            matcher,
            placed: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
            rooms: super::assisted::Rooms::default(),
            resumed: super::points::Resumed::default(),
            handover: CancellationToken::new(),
        })
    }

    /// How long a claim on an order lasts from its last renewal: longer
    /// than any call this node can run (ringing, the longest call, the
    /// closing prompt) plus a margin. The node renews it every
    /// [`Desk::renew_every`] while it places or runs the call, even
    /// while ARI is down, so only a node that stopped lets a claim run out.
    pub(super) fn claim_hold_ms(&self) -> i64 {
        let secs = self.settings.telephony.ring_timeout_secs
            + self.settings.ivr.max_call_secs
            + self.settings.ivr.final_prompt_limit_secs
            + CLAIM_MARGIN.as_secs();
        secs as i64 * 1000
    }

    /// How often claims are renewed and stale ones looked for
    /// (`telephony.claim_renew_secs`).
    pub(super) fn renew_every(&self) -> Duration {
        Duration::from_secs(self.settings.telephony.claim_renew_secs.max(1))
    }

    /// The events socket is up (true) or down (false).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
        if up {
            self.wake.notify_one();
        }
    }

    /// Whether the events socket is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether `channel_id` is one of our originates still waiting for its
    /// call task.
    pub async fn owns(&self, channel_id: &str) -> bool {
        self.placed.lock().await.contains_key(channel_id)
    }

    /// Claims `order_id` (`pending` → `in_call`) for the call on
    /// `channel_id`, already up, and registers the call as running, with a
    /// call permit when one is free (a caller who is already on the line is
    /// never refused for capacity, but the callback worker waits while they
    /// talk). None when the order is no longer payable (another call took
    /// it, it ended or expired). Runs in the call's span.
    pub(super) async fn claim_incoming(
        &self,
        order_id: &str,
        channel_id: &str,
        detail: &str,
    ) -> Option<OrderRow> {
        let mut placed = self.placed.lock().await;
        let now = now_ms();
        let until = now + self.claim_hold_ms();
        match self
            .store
            .claim_live_call(order_id, &self.node, channel_id, detail, now, until)
            .await
        {
            Ok(Some(order)) => {
                placed.insert(
                    channel_id.to_owned(),
                    Placed {
                        order_id: order.id.clone(),
                        attempt: order.attempts,
                        permit: self.permits.clone().try_acquire_owned().ok(),
                        running: true,
                        originating: false,
                        span: Span::current(),
                        rang_from: tokio::time::Instant::now(),
                    },
                );
                Some(order)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the order for the call");
                None
            }
        }
    }

    /// The call of a claimed order ended: unregisters it, frees its permit.
    pub(super) async fn release(&self, channel_id: &str) {
        let gone = self.placed.lock().await.remove(channel_id);
        drop(gone);
        self.wake.notify_one();
    }

    /// Runs `call` (a call's task, or an originate in flight) on a task of
    /// its own in `span`, tracked so that [`Desk::calls_ended`] waits for it.
    pub(super) fn spawn_call<F>(&self, span: Span, call: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(call.instrument(span));
    }

    /// Waits until every call task has ended, once no new ones can start
    /// (the supervisor and the callback worker have stopped). With the
    /// events socket closed every call's event stream ends, so each task
    /// ends on its own: a call without a decision yet is settled as lost,
    /// an originate in flight gets its answer or its request timeout.
    pub(super) async fn calls_ended(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl<M: Send + Sync> Desk<M> {
    /// The line of a call this node takes on `channel_id`, fed by its
    /// dispatcher queue: the desk follows it onto a new channel, and its
    /// keys pass the call's repeat guard (`ivr.dtmf_repeat_guard_ms`).
    pub(super) fn line(
        &self,
        channel_id: String,
        events: UnboundedReceiver<ari::Event>,
    ) -> Line<'_> {
        Line::new(channel_id, events, Some(self as &dyn Follow))
            .guarding(self.settings.ivr.repeat_guard())
    }
}

impl<M: Send + Sync> Follow for Desk<M> {
    /// The call on `from` moved onto `to` (a masquerade, see
    /// [`super::line`]): when it is one of this node's calls, it is
    /// registered under `to` and its attempt row names `to` (the matcher
    /// checks that row before a secret reaches the bank). A channel that
    /// is not ours (an incoming call before it claimed an order) has
    /// nothing to follow.
    fn follow<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let mut placed = self.placed.lock().await;
            let Some(order_id) = placed.get(from).map(|p| p.order_id.clone()) else {
                return;
            };
            if let Err(e) = self
                .store
                .attempt_moved(&order_id, from, to, now_ms())
                .await
            {
                tracing::warn!(error = %e, "cannot record the call's new channel");
            }
            if let Some(p) = placed.remove(from) {
                placed.insert(to.to_owned(), p);
            }
        })
    }
}

/// The span of one call of `flow` (`callback`, `transfer`, `inbound`) on
/// `channel_id`, entered by the tasks that serve it, so every line they
/// log names the call. Its `order` is recorded once known (an incoming
/// call finds its order first). Never a secret in it: neither the
/// transfer code nor the caller's number.
///
/// At ERROR level so that it is enabled at any log level: a warning about
/// a call names the call whatever `log.level` filters out.
pub(super) fn call_span(flow: &'static str, channel_id: &str) -> Span {
    tracing::error_span!(
        "call",
        flow = %flow,
        channel = %channel_id,
        order = tracing::field::Empty
    )
}

/// Names the order in a call's `span`, once the call has found it.
pub(super) fn record_order(span: &Span, order_id: &str) {
    span.record("order", tracing::field::display(order_id));
}

/// The span of a call found lost (at reconciliation, or from a stale
/// claim) and settled with no task of its own; its flow is not known here.
pub(super) fn lost_call_span(order_id: &str, channel_id: Option<&str>) -> Span {
    tracing::error_span!(
        "call",
        channel = %channel_id.unwrap_or_default(),
        order = %order_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::placeholder::PlaceholderMatcher;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn shutdown_waits_for_every_call_task() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 1, crate::views::webhook_body)
            .await
            .unwrap();
        let settings = Arc::new(Settings::default());
        let rest = AriRest::new(&settings.ari).unwrap();
        let matcher = Arc::new(PlaceholderMatcher::new(store.clone()));
        let desk = Desk::new(store, settings, rest, matcher);
        let (hang_up, hung_up) = oneshot::channel::<()>();
        desk.spawn_call(call_span("callback", "vp-o-1"), async move {
            let _ = hung_up.await;
        });
        let ended = desk.calls_ended();
        tokio::pin!(ended);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut ended).await;
        assert!(early.is_err(), "ended while a call was running");
        hang_up.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("ends once the call has");
    }
}
