//! The callback flow: claim a due `pending` callback order from the
//! database, ring the cardholder through ARI, run the IVR when they answer,
//! and retry or fail the order when they do not.
//!
//! Each originate gets our channel id `vp-<order>-<attempt>` and is
//! registered on the [`Desk`] before the request is sent, since its first
//! events can beat the HTTP response. `appArgs` is `callback,<order>`:
//! never anything secret. The desk's call permits bound simultaneous calls
//! per node (`telephony.max_concurrent_calls`); when they are all taken the
//! worker waits (orders stay `pending`), it never fails an order for lack
//! of capacity. Up to `telephony.max_concurrent_originates` originates are
//! in flight at once; each is marked `originating` until its
//! `POST /channels` returns, so a reconnect meanwhile does not take it for
//! a lost call.
//!
//! While ARI is connected the worker also settles, every
//! `telephony.claim_renew_secs`, the calls of nodes that stopped
//! ([`claims::reclaim_stale`]).

use super::claims;
use super::desk::{call_span, record_order, Desk, Placed};
use super::line::{Line, Next};
use super::session;
use super::settle::retry_or_fail;
use crate::ari::{self, AriCommands, AriError, Call, Originate};
use crate::domain::ResultCode;
use crate::matcher::Matcher;
use crate::store::{now_ms, OrderRow};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Span;

/// How often the worker looks for due orders when it found none.
const POLL: Duration = Duration::from_millis(500);
/// Pause before looking for the channel of an originate that timed out.
const ORIGINATE_RECHECK: Duration = Duration::from_secs(1);

/// Why an unanswered call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    NoAnswer,
    Busy,
    Failed,
}

impl Unanswered {
    /// From the last Dial status, the channel's hang-up cause, how long it
    /// `rang` since the originate was sent and the ring time asked for
    /// (`telephony.ring_timeout_secs`). When our own originate timeout ends
    /// the ringing, ARI sends no final Dial status, only ChannelDestroyed
    /// with cause 19 (no user responding); Asterisk builds without the 2025
    /// fix for originate timeouts send cause 0 (unknown) instead. Cause 0
    /// with no Dial status after the full ring time is therefore that
    /// timeout (no answer, retried as one); well before it, something else
    /// failed.
    fn classify(dialstatus: &str, cause: Option<i64>, rang: Duration, ring_time: Duration) -> Self {
        match (dialstatus, cause) {
            ("BUSY", _) | (_, Some(17)) => Unanswered::Busy,
            ("NOANSWER", _) | (_, Some(19)) => Unanswered::NoAnswer,
            ("", Some(0)) if rang >= ring_time => Unanswered::NoAnswer,
            _ => Unanswered::Failed,
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Unanswered::NoAnswer => "no_answer",
            Unanswered::Busy => "busy",
            Unanswered::Failed => "failed",
        }
    }

    fn result(self) -> ResultCode {
        match self {
            Unanswered::NoAnswer => ResultCode::NoAnswer,
            Unanswered::Busy => ResultCode::Busy,
            Unanswered::Failed => ResultCode::CallFailed,
        }
    }
}

/// The callback worker, until `shutdown`: claims and originates due
/// orders only while ARI is connected (an originate needs the socket to
/// see its events), settling meanwhile, every
/// [`Desk::renew_every`], the calls of nodes that stopped.
pub async fn run_worker<M: Matcher + 'static>(desk: Arc<Desk<M>>, shutdown: CancellationToken) {
    let originates = Arc::new(Semaphore::new(
        desk.settings.telephony.max_concurrent_originates.max(1),
    ));
    let mut next_reclaim = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if desk.is_connected() && tokio::time::Instant::now() >= next_reclaim {
            claims::reclaim_stale(&desk, now_ms()).await;
            next_reclaim = tokio::time::Instant::now() + desk.renew_every();
        }
        if !desk.is_connected() {
            pause(&desk, &shutdown).await;
            continue;
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = desk.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        // The originate slot comes first, so a claimed order is placed
        // at once rather than waiting while it counts as `calling`.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = originates.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        match claim(&desk, permit).await {
            Ok(Some((order, channel_id, span))) => {
                // Placed concurrently: one slow `POST /channels` (Asterisk
                // busy) does not hold back the next due order.
                let this = desk.clone();
                desk.spawn_call(span, async move {
                    originate(&this, &order, &channel_id).await;
                    drop(slot);
                });
            }
            Ok(None) => pause(&desk, &shutdown).await,
            Err(e) => {
                tracing::warn!(error = %e, "callback claim failed");
                pause(&desk, &shutdown).await;
            }
        }
    }
}

async fn pause<M>(desk: &Desk<M>, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = desk.wake.notified() => {}
        _ = tokio::time::sleep(POLL) => {}
    }
}

/// Claims one due order and registers its channel; the permit stays
/// with the placed call. Returns the order, the channel id and the call's
/// span; None (permit released) when nothing is due.
async fn claim<M: Matcher + 'static>(
    desk: &Desk<M>,
    permit: OwnedSemaphorePermit,
) -> anyhow::Result<Option<(OrderRow, String, Span)>> {
    let mut placed = desk.placed.lock().await;
    let now = now_ms();
    let Some(order) = desk
        .store
        .claim_callback(&desk.node, now, now + desk.claim_hold_ms())
        .await?
    else {
        return Ok(None);
    };
    let channel_id = format!("vp-{}-{}", order.id, order.attempts);
    desk.store
        .insert_attempt(&order.id, order.attempts, &channel_id, now)
        .await?;
    let span = call_span("callback", &channel_id);
    record_order(&span, &order.id);
    placed.insert(
        channel_id.clone(),
        Placed {
            order_id: order.id.clone(),
            attempt: order.attempts,
            permit: Some(permit),
            running: false,
            originating: true,
            span: span.clone(),
            rang_from: tokio::time::Instant::now(),
        },
    );
    Ok(Some((order, channel_id, span)))
}

/// Places the call (`POST /channels`); on a failure its events do not
/// answer for, the attempt fails and the order's retry schedule applies.
async fn originate<M: Matcher + 'static>(desk: &Desk<M>, order: &OrderRow, channel_id: &str) {
    let t = &desk.settings.telephony;
    let request = Originate {
        endpoint: t.callback_endpoint.replace("{phone}", &order.phone),
        app: desk.settings.ari.app.clone(),
        app_args: vec!["callback".into(), order.id.clone()],
        caller_id: Some(t.caller_id.clone()).filter(|c| !c.is_empty()),
        timeout_secs: u32::try_from(t.ring_timeout_secs).unwrap_or(u32::MAX),
        channel_id: channel_id.to_owned(),
        variables: BTreeMap::new(),
    };
    tracing::info!(attempt = order.attempts, "placing callback");
    let mut resent = false;
    let mut placed = loop {
        let result = desk.rest.originate(&request).await;
        let mut placed = desk.placed.lock().await;
        let Some(p) = placed.get_mut(channel_id) else {
            // Its call task already ended (events beat the answer).
            return;
        };
        // Still `originating` while we look for the channel below: a
        // reconnect meanwhile (with `ari.rest_transport = "websocket"` the
        // POST fails *because* the socket dropped) must not take the call
        // for lost before we know whether it was placed.
        let e = match result {
            Ok(_) => {
                p.originating = false;
                return;
            }
            // Our own channel id exists: the first POST placed it.
            Err(AriError::Conflict(_)) if resent => {
                p.originating = false;
                return;
            }
            Err(e) => e,
        };
        if resent || !matches!(e, AriError::Transport(_)) || p.running {
            p.originating = false;
        }
        if p.running {
            // The POST failed (timed out) yet the channel exists: its
            // events reached a call task first, which settles the order.
            tracing::warn!(error = %e, "originate answered with an error, but the call is running; left to it");
            return;
        }
        if resent || !matches!(e, AriError::Transport(_)) {
            tracing::warn!(error = %e, "originate failed");
            break placed;
        }
        // No answer, or the connection failed (a busy Asterisk can take
        // longer than our timeout, or drop a kept-alive connection): the
        // call may have been placed. Never originate again blindly:
        // look for the channel first; only when Asterisk shows none is
        // the same request sent once more. Our channel id makes that
        // safe: a second POST for an existing channel is refused (409).
        drop(placed);
        let found = placed_anyway(desk, channel_id).await;
        let mut placed = desk.placed.lock().await;
        match placed.get_mut(channel_id) {
            Some(p) if found => {
                // Left to its events from here.
                p.originating = false;
                return;
            }
            Some(p) if !p.running => {
                p.rang_from = tokio::time::Instant::now();
            }
            _ => return,
        }
        drop(placed);
        tracing::info!(error = %e, "originate got no answer and placed no channel; sending it once more");
        resent = true;
    };
    // The attempt fails and the order's retry schedule applies.
    let gone = placed.remove(channel_id);
    drop(placed);
    drop(gone);
    unanswered(
        desk,
        &order.id,
        order.attempts,
        channel_id,
        Unanswered::Failed,
        None,
    )
    .await;
    desk.wake.notify_one();
}

/// After an originate that got no answer: whether its channel exists
/// after all (or its events already reached a call task), so the call
/// is left to its events. Looks a few times, [`ORIGINATE_RECHECK`]
/// apart; false when Asterisk shows no such channel.
async fn placed_anyway<M>(desk: &Desk<M>, channel_id: &str) -> bool {
    for _ in 0..3 {
        tokio::time::sleep(ORIGINATE_RECHECK).await;
        if desk
            .placed
            .lock()
            .await
            .get(channel_id)
            .is_none_or(|p| p.running)
        {
            return true;
        }
        match desk.rest.channels().await {
            Ok(list) if list.iter().any(|c| c.id == channel_id) => {
                tracing::warn!("originate timed out, but the call was placed; left to its events");
                return true;
            }
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list channels yet");
            }
        }
    }
    false
}

/// Runs the call of one of our originates to its end, on a task of its
/// own: unanswered (retry or fail) or answered (the IVR). Returns false,
/// doing nothing, when the channel is not ours.
pub async fn take_call<M: Matcher + 'static>(desk: &Arc<Desk<M>>, call: Call) -> bool {
    let (order_id, attempt, permit, span, rang_from) = {
        let mut placed = desk.placed.lock().await;
        let Some(p) = placed.get_mut(&call.channel_id) else {
            return false;
        };
        p.running = true;
        (
            p.order_id.clone(),
            p.attempt,
            p.permit.take(),
            p.span.clone(),
            p.rang_from,
        )
    };
    let this = desk.clone();
    desk.spawn_call(span, async move {
        let Call {
            channel_id,
            first,
            events,
            ..
        } = call;
        let mut line = this.line(channel_id, events);
        let placed = Attempt {
            order_id: &order_id,
            attempt,
            rang_from,
        };
        drive(&this, first, &mut line, placed).await;
        // Registered under the channel it ended on (see `Follow`).
        this.placed.lock().await.remove(line.id());
        drop(permit);
        this.wake.notify_one();
    });
    true
}

/// The attempt a placed call is: its order, its number, and when its
/// originate was sent.
struct Attempt<'a> {
    order_id: &'a str,
    attempt: i64,
    rang_from: tokio::time::Instant,
}

/// Follows a placed call from its first event: ringing until it is
/// answered (the session runs) or ends unanswered.
async fn drive<M: Matcher + 'static>(
    desk: &Desk<M>,
    first: ari::Event,
    line: &mut Line<'_>,
    placed: Attempt<'_>,
) {
    let Attempt {
        order_id,
        attempt,
        rang_from,
    } = placed;
    let mut dialstatus = String::new();
    let mut cause = None;
    let mut next = Some(first);
    loop {
        let event = match next.take() {
            Some(e) => e,
            None => match line.next().await {
                Some(Next::Event(e)) => e,
                // Moved before it entered the app: it rings on there.
                Some(Next::Moved { .. }) => continue,
                None if desk.handover.is_cancelled() => {
                    // Outbound mode, stopping: still ringing, left to the
                    // next run (its reconciliation adopts it).
                    tracing::info!("ringing callback handed over to the next run of the daemon");
                    return;
                }
                None => break,
            },
        };
        match event {
            ari::Event::StasisStart { .. } => {
                session::answered(desk, order_id, line).await;
                return;
            }
            ari::Event::Dial { dialstatus: s, .. } if !s.is_empty() => dialstatus = s,
            ari::Event::ChannelHangupRequest { cause: Some(c), .. } => cause = Some(c),
            ari::Event::ChannelDestroyed { cause: c, .. } => {
                cause = Some(c);
                break;
            }
            _ => {}
        }
    }
    let rang = rang_from.elapsed();
    let ring_time = Duration::from_secs(desk.settings.telephony.ring_timeout_secs);
    let why = Unanswered::classify(&dialstatus, cause, rang, ring_time);
    tracing::info!(%dialstatus, ?cause, rang_ms = rang.as_millis(), ?why, "callback not answered");
    let cause = cause.map(|c| c.to_string());
    unanswered(desk, order_id, attempt, line.id(), why, cause.as_deref()).await;
}

/// Records the failed attempt, then `pending` again after the retry
/// interval while attempts remain, else `failed`.
async fn unanswered<M>(
    desk: &Desk<M>,
    order_id: &str,
    attempt: i64,
    channel_id: &str,
    why: Unanswered,
    cause: Option<&str>,
) {
    desk.end_attempt(channel_id, why.outcome(), cause).await;
    retry_or_fail(desk, order_id, attempt, why.result()).await;
}

#[cfg(test)]
mod tests {
    use super::Unanswered;
    use std::time::Duration;

    const RING: Duration = Duration::from_secs(30);

    #[test]
    fn cause_0_after_the_full_ring_time_is_no_answer() {
        for rang in [RING, RING + Duration::from_millis(1), 2 * RING] {
            assert_eq!(
                Unanswered::classify("", Some(0), rang, RING),
                Unanswered::NoAnswer,
                "{rang:?}"
            );
        }
    }

    #[test]
    fn cause_0_before_the_ring_time_or_with_a_dial_status_failed() {
        for (status, rang) in [
            ("", Duration::ZERO),
            ("", RING - Duration::from_millis(1)),
            ("CHANUNAVAIL", RING),
            ("CONGESTION", 2 * RING),
        ] {
            assert_eq!(
                Unanswered::classify(status, Some(0), rang, RING),
                Unanswered::Failed,
                "{status:?} {rang:?}"
            );
        }
    }

    #[test]
    fn busy_and_no_answer_do_not_depend_on_the_ring_time() {
        let early = Duration::from_secs(1);
        assert_eq!(
            Unanswered::classify("BUSY", None, early, RING),
            Unanswered::Busy
        );
        assert_eq!(
            Unanswered::classify("", Some(17), early, RING),
            Unanswered::Busy
        );
        assert_eq!(
            Unanswered::classify("NOANSWER", None, early, RING),
            Unanswered::NoAnswer
        );
        assert_eq!(
            Unanswered::classify("", Some(19), early, RING),
            Unanswered::NoAnswer
        );
        assert_eq!(
            Unanswered::classify("", Some(16), RING, RING),
            Unanswered::Failed
        );
    }
}
