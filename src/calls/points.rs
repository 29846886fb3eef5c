//! Where each live call is, kept for a restarted daemon (README "Daemon
//! restarts that drop no call", issue #15), with `ari.websocket =
//! "outbound"` only: there Asterisk keeps the app and the calls while the
//! daemon restarts, and queues their events for the next connection.
//!
//! - Writing: the runner saves the call's point (`call_points`, through
//!   [`Store::save_call_point`]) each time the step, its failed attempts or
//!   the tries left change, before the actions of that change run (so an
//!   `authorizing` point is on disk before the secret goes to the matcher),
//!   and the session deletes it when the call ends. One write per step
//!   change; never a digit.
//! - Handing over: on shutdown the runner saves the point once more and
//!   returns [`Ran::HandedOver`](super::Ran::HandedOver): nothing is hung up
//!   or settled, the channel stays in Stasis for the next run.
//! - Resuming ([`resume_calls`], from the reconciliation after
//!   `Connected`): each point of this node whose channel Asterisk still
//!   has is taken (compare-and-set on its `seq`) and the call's task starts
//!   again at the point's step (see [`crate::ivr::Resume`]). The events of
//!   its channel reach it once they come ([`Resumed`]); digits queued
//!   before its re-prompt started are discarded by the runner.

use super::desk::{call_span, record_order, Desk, Placed};
use super::session;
use crate::ari;
use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::{Event, Ivr, Progress, Resume, Step, Verdict};
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, CallPoint, ResumeStep, Store, StoredPoint};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a resumed call at `authorizing` looks at its order again.
const SETTLED_POLL: Duration = Duration::from_millis(250);

/// What a call keeps for a restarted daemon: who drives it and how, and
/// where a resumed call starts.
pub struct Keep {
    /// This node (`orders.claimed_by`).
    pub node: String,
    /// `call_attempts.attempt` of the call.
    pub attempt: i64,
    /// `callback` or `inbound`.
    pub flow: &'static str,
    /// Cancelled when the daemon stops: the call is handed over.
    pub handover: CancellationToken,
    /// The point a resumed call starts from.
    pub from: Option<StoredPoint>,
}

/// The part of a call's progress that, when it changes, is written again:
/// the IVR's own step (a credit card's CVN2 is stored as `expiry`, but its
/// prompt is a new playback the point must count), the step's failed
/// attempts, the tries left. Every prompt the IVR plays comes with a
/// change of one of them.
pub(super) type PointKey = (Step, u8, u8);

impl Keep {
    /// The first playback number of this run: above every id the previous
    /// run may have used (its recorded one and the one it may have started
    /// right after the write).
    pub(super) fn first_playback(&self) -> u64 {
        self.from
            .as_ref()
            .map_or(0, |p| u64::try_from(p.point.playback_seq).unwrap_or(0) + 1)
    }

    /// The previous run's playbacks that may still play.
    pub(super) fn stale_playbacks(&self, channel: &str) -> Vec<String> {
        let Some(p) = &self.from else {
            return Vec::new();
        };
        let n = u64::try_from(p.point.playback_seq).unwrap_or(0);
        (n.max(1)..=n + 1)
            .map(|i| ari::playback_id(channel, i))
            .collect()
    }

    /// Saves the call's point when `progress` differs from `last` (always
    /// when `last` is None); a failed write is logged (the previous point
    /// stays: an older point only re-asks a step).
    pub(super) async fn save(
        &self,
        store: &Store,
        order_id: &str,
        channel: &str,
        progress: Option<Progress>,
        playback_seq: u64,
        last: &mut Option<PointKey>,
    ) {
        let Some(p) = progress else { return };
        let Some(step) = ResumeStep::from_ivr(p.step) else {
            return;
        };
        let key = (p.step, p.step_failures, p.tries_left);
        if *last == Some(key) {
            return;
        }
        let point = CallPoint {
            order_id: order_id.to_owned(),
            node: self.node.clone(),
            channel_id: channel.to_owned(),
            attempt: self.attempt,
            flow: self.flow.to_owned(),
            step,
            step_failures: i64::from(p.step_failures),
            tries_left: i64::from(p.tries_left),
            playback_seq: i64::try_from(playback_seq).unwrap_or(i64::MAX),
        };
        match store.save_call_point(&point, now_ms()).await {
            Ok(_) => *last = Some(key),
            Err(e) => tracing::warn!(error = %e, "cannot save the call's point"),
        }
    }
}

/// The IVR's resume for a stored point.
pub(super) fn resume_of(p: &CallPoint) -> Resume {
    let step = match p.step {
        ResumeStep::Confirm => Step::Confirm,
        ResumeStep::Pin => Step::Pin,
        ResumeStep::Expiry => Step::Expiry,
        ResumeStep::Authorizing => Step::Authorizing,
        ResumeStep::Closing => Step::Ended,
    };
    Resume {
        step,
        step_failures: u8::try_from(p.step_failures).unwrap_or(u8::MAX),
        tries_left: u8::try_from(p.tries_left).unwrap_or(0),
    }
}

/// What a resumed call at `authorizing` or `closing` hears next: the
/// order's verdict once it has left `authorizing` (the matcher's recovery
/// settles it; the secret is never sent again). An order still `in_call`
/// never had the secret (the previous run stopped between keeping the
/// point and the matcher's move): [`Event::NotSubmitted`] asks it again.
pub(super) async fn settled_verdict(store: &Store, order_id: &str) -> Event {
    loop {
        match store.order(order_id).await {
            Ok(Some(o)) => match o.status() {
                OrderStatus::Succeeded => return Event::VerificationResult(Verdict::Approved),
                OrderStatus::InCall => return Event::NotSubmitted,
                OrderStatus::Authorizing => {}
                _ => {
                    let code = o
                        .result_code
                        .as_deref()
                        .and_then(|c| ResultCode::ALL.iter().copied().find(|r| r.code() == c));
                    let code = code.unwrap_or(ResultCode::CallFailed);
                    return Event::VerificationResult(Verdict::Failed(code));
                }
            },
            Ok(None) => return Event::VerificationResult(Verdict::Failed(ResultCode::CallFailed)),
            Err(e) => tracing::debug!(error = %e, "cannot read the order yet"),
        }
        tokio::time::sleep(SETTLED_POLL).await;
    }
}

/// The events of resumed calls whose channel has had no event yet in this
/// run: the dispatcher opens a channel's queue on its first event, and the
/// supervisor hands that queue here rather than to a flow.
#[derive(Default)]
pub struct Resumed {
    waiting: std::sync::Mutex<HashMap<String, mpsc::UnboundedSender<ari::Event>>>,
}

impl Resumed {
    /// Feeds `call`'s events to the resumed call on its channel; the call
    /// is given back when no resumed call waits for it.
    pub fn feed(&self, call: ari::Call) -> Option<ari::Call> {
        let tx = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&call.channel_id);
        let Some(tx) = tx else { return Some(call) };
        let ari::Call {
            first, mut events, ..
        } = call;
        let _ = tx.send(first);
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
        None
    }

    fn wait_for(&self, channel: &str) -> mpsc::UnboundedReceiver<ari::Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(channel.to_owned(), tx);
        rx
    }

    /// Forgets the waiting calls whose channel is not in `alive` (their
    /// stream ends, so they are settled as lost).
    pub(super) fn forget_gone(&self, alive: &HashSet<&str>) {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|ch, _| alive.contains(ch.as_str()));
    }
}

/// After `Connected`: resumes each call this node was driving whose
/// channel is in `alive` and whose point it can take, registering it in
/// `placed` (so the reconciliation that follows leaves it alone). Points
/// whose channel is gone are deleted: the reconciliation settles their
/// orders as lost. Only with `ari.websocket = "outbound"`.
pub(super) async fn resume_calls<M: Matcher + 'static>(
    desk: &Arc<Desk<M>>,
    alive: &HashSet<&str>,
    placed: &mut HashMap<String, Placed>,
) {
    let points = match desk.store.call_points(&desk.node).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the calls to resume");
            return;
        }
    };
    for sp in points {
        let channel = sp.point.channel_id.clone();
        if placed.contains_key(&channel) {
            continue; // a task of this run drives it
        }
        if !alive.contains(channel.as_str()) {
            if let Err(e) = desk.store.drop_call_point(&sp.point.order_id).await {
                tracing::warn!(error = %e, "cannot delete a gone call's point");
            }
            continue;
        }
        match desk
            .store
            .take_call_point(&sp.point.order_id, sp.seq, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a call's point");
                continue;
            }
        }
        resume_one(desk, sp, placed);
    }
}

/// Registers and spawns the task of one taken point.
fn resume_one<M: Matcher + 'static>(
    desk: &Arc<Desk<M>>,
    sp: StoredPoint,
    placed: &mut HashMap<String, Placed>,
) {
    let flow: &'static str = if sp.point.flow == "inbound" {
        "inbound"
    } else {
        "callback"
    };
    let channel = sp.point.channel_id.clone();
    let span = call_span(flow, &channel);
    record_order(&span, &sp.point.order_id);
    placed.insert(
        channel.clone(),
        Placed {
            order_id: sp.point.order_id.clone(),
            attempt: sp.point.attempt,
            permit: desk.permits.clone().try_acquire_owned().ok(),
            running: true,
            originating: false,
            span: span.clone(),
            rang_from: tokio::time::Instant::now(),
        },
    );
    let events = desk.resumed.wait_for(&channel);
    let this = desk.clone();
    let mut sp = sp;
    desk.spawn_call(span, async move {
        tracing::info!(
            step = sp.point.step.as_str(),
            step_failures = sp.point.step_failures,
            tries_left = sp.point.tries_left,
            "resuming the call after a restart"
        );
        let order = match this.store.order(&sp.point.order_id).await {
            Ok(Some(o)) => o,
            _ => {
                tracing::warn!("cannot read the resumed call's order");
                this.release(&channel).await;
                return;
            }
        };
        if order.status().is_final() && sp.point.step != ResumeStep::Authorizing {
            // Decided, cancelled or expired while no daemon ran: nothing
            // to ask any more, only its result to say.
            sp.point.step = ResumeStep::Closing;
        } else if order.status() == OrderStatus::InCall && sp.point.step == ResumeStep::Closing {
            // Its outcome never reached the order: asked from the start.
            sp.point.step = ResumeStep::Confirm;
        }
        // Its claim was checked when the call took the order; the
        // `call_attempts` row ties this channel to it.
        let via = if flow == "inbound" {
            Via::InboundByCode
        } else {
            Via::Callback
        };
        let keep = Keep {
            node: this.node.clone(),
            attempt: sp.point.attempt,
            flow,
            handover: this.handover.clone(),
            from: Some(sp),
        };
        let mut line = this.line(channel, events);
        session::run_resumed(&this, &order, &via, &mut line, keep).await;
        this.release(line.id()).await;
    });
}

/// A fresh machine for `order`'s call, resumed at `keep`'s point.
pub(super) fn resumed_ivr(ivr: Ivr, keep: &Keep) -> Ivr {
    match &keep.from {
        Some(p) => ivr.resumed(resume_of(&p.point)),
        None => ivr,
    }
}
