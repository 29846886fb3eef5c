//! Drives one answered call: ARI events and fired timers go into the pure
//! [`Ivr`], its actions come out as ARI commands, matcher requests and order
//! transitions. One task per call, fed by the call's ordered queue.
//!
//! Order lifecycle while the call runs (DESIGN.md, `OrderStatus::can_become`):
//! - a submitted secret goes to the [`Matcher`], which alone moves the
//!   order `in_call` → `authorizing` (conditional: the exactly-once guard;
//!   a cancelled or expired order never reaches the issuer) and settles it
//!   (`succeeded`, back to `in_call` after a wrong secret, `failed`), or
//!   leaves it in `authorizing` for recovery when the bank's answer is
//!   unknown: the runner never moves an order into or out of `authorizing`;
//! - the call ends without a bank decision (caller pressed 2, input timeout,
//!   hang-up, tries exhausted): the runner moves `in_call` → `failed` with
//!   that code.
//!
//! The secret exists here only inside [`Action::Submit`], which is moved
//! straight into [`Matcher::verify`]; nothing logs an action's content.

use crate::ari::{self, AriCommands, HangupReason};
use crate::domain::OrderStatus;
use crate::ivr::repeat::RepeatGuard;
use crate::ivr::{Action, CallOutcome, Event, Ivr, TimerId};
use crate::matcher::{CallRef, Matcher, Via};
use crate::store::{now_ms, Store, Transition};
use std::collections::{HashMap, VecDeque};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// One answered call of one order, and what it acts through.
pub struct CallRunner<'a, A, M> {
    /// ARI commands for the channel.
    pub ari: &'a A,
    /// Where secrets go.
    pub matcher: &'a M,
    /// Where the order moves when the call ends without a bank decision.
    pub store: &'a Store,
    /// The order paid on this call.
    pub order_id: &'a str,
    /// The call's channel.
    pub channel_id: &'a str,
    /// How the call reached the order; the matcher checks it.
    pub via: &'a Via,
    /// Prompt language for ARI's `lang` play parameter (`zh`, `en`).
    pub lang: &'a str,
    /// What the IVR's closing [`Action::Hangup`] does to the channel.
    pub end: CallEnd,
    /// The call's DTMF repeat guard as the stages before left it (a fresh
    /// one from `ivr.dtmf_repeat_guard_ms` when the IVR is the first).
    pub keys: RepeatGuard,
}

/// How a call leaves the IVR once its closing prompt has played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// Hang up (callback and inbound: the call was only for the payment).
    Hangup,
    /// Leave the channel up and return from [`CallRunner::run`]: the flow
    /// hands it back to the dialplan (transfer: the merchant's agent gets
    /// the caller back).
    ReturnToDialplan,
}

/// The per-call bookkeeping that turns IVR ids into ARI ids and back.
#[derive(Default)]
struct Session {
    /// ARI playback id → the IVR's id.
    playbacks: HashMap<String, String>,
    /// The IVR's playback id → ARI's.
    ari_ids: HashMap<String, String>,
    next_playback: u64,
    timers: HashMap<TimerId, AbortHandle>,
    outcome: Option<CallOutcome>,
    /// Drops repeated reports of one key press.
    keys: RepeatGuard,
}

impl Drop for Session {
    fn drop(&mut self) {
        for (_, t) in self.timers.drain() {
            t.abort();
        }
    }
}

impl<A: AriCommands, M: Matcher> CallRunner<'_, A, M> {
    /// Runs the IVR from `Start` until it ends the call (hang-up, or with
    /// [`CallEnd::ReturnToDialplan`] the end of the closing prompt) or the
    /// channel is gone. Returns how the call ended; None when the call was
    /// lost to the telephone system, not ended by the caller:
    /// - its event stream ended with no hang-up event: the channel vanished
    ///   while the events socket was down (Asterisk crashed or restarted);
    /// - or Asterisk itself asked the channel to hang up (a *soft* hang-up
    ///   request: `core stop now` sends cause 4, shutdown; an operator's
    ///   hang-up is soft too), while a caller's hang-up is never soft.
    ///
    /// The IVR is not told the caller hung up then; the flow settles the
    /// order as a lost call.
    ///
    /// IVR timers that fire while the events socket is down wait for it to
    /// come back: digits keyed meanwhile are lost, and on reconnection
    /// either the channel is still there (the timer then counts) or the
    /// stream ends (lost), so an outage never uses up the caller's tries.
    pub async fn run(
        &self,
        mut ivr: Ivr,
        events: &mut mpsc::UnboundedReceiver<ari::Event>,
    ) -> Option<CallOutcome> {
        let began = Instant::now();
        let (timer_tx, mut timer_rx) = mpsc::unbounded_channel::<TimerId>();
        let mut session = Session::default();
        session.keys = self.keys.clone();
        let mut queue = VecDeque::from([Event::Start]);
        let mut stream_open = true;
        loop {
            while let Some(event) = queue.pop_front() {
                for action in ivr.step(event, began.elapsed()) {
                    if let Some(back) = self.execute(action, &mut session, &timer_tx).await {
                        queue.push_back(back);
                    }
                }
            }
            if ivr.is_done() || !stream_open {
                break;
            }
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) if cut_off(&event) => stream_open = false,
                    Some(event) => queue.extend(translate(&event, &mut session)),
                    // Hang-up events end the IVR before the stream ends, so
                    // this is a channel that vanished unseen: lost.
                    None => stream_open = false,
                },
                Some(timer) = timer_rx.recv() => {
                    session.timers.remove(&timer);
                    if !self.hold_while_disconnected(events, &mut session, &mut queue).await {
                        stream_open = false;
                    } else {
                        queue.push_back(Event::TimerFired { timer });
                    }
                }
            }
        }
        session.outcome
    }

    /// Waits until the events socket is up; events still queued meanwhile
    /// go to `queue`. False when the stream ended first (the call was lost).
    async fn hold_while_disconnected(
        &self,
        events: &mut mpsc::UnboundedReceiver<ari::Event>,
        session: &mut Session,
        queue: &mut VecDeque<Event>,
    ) -> bool {
        loop {
            tokio::select! {
                // The queue first: a channel found gone on reconnection is
                // closed before the socket is reported up.
                biased;
                event = events.recv() => match event {
                    Some(event) if cut_off(&event) => return false,
                    Some(event) => queue.extend(translate(&event, session)),
                    None => return false,
                },
                () = self.ari.events_up() => return true,
            }
        }
    }

    /// Carries out one action; returns the event it produces at once, if any
    /// (the matcher's answer, or the end of a playback that failed to start).
    async fn execute(
        &self,
        action: Action,
        s: &mut Session,
        timers: &mpsc::UnboundedSender<TimerId>,
    ) -> Option<Event> {
        match action {
            Action::Play { playback_id, media } => {
                s.next_playback += 1;
                let id = ari::playback_id(self.channel_id, s.next_playback);
                s.playbacks.insert(id.clone(), playback_id.clone());
                s.ari_ids.insert(playback_id.clone(), id.clone());
                if let Err(e) = self
                    .ari
                    .play(self.channel_id, &id, &media, Some(self.lang))
                    .await
                {
                    // No PlaybackFinished will come: end it here so the IVR
                    // moves on (a gone channel also brings a hang-up).
                    tracing::debug!(error = %e, "play failed");
                    return Some(Event::PlaybackFinished { playback_id });
                }
            }
            Action::StopPlayback { playback_id } => {
                if let Some(id) = s.ari_ids.get(&playback_id) {
                    if let Err(e) = self.ari.stop_playback(id).await {
                        tracing::debug!(error = %e, "stop playback failed");
                    }
                }
            }
            Action::StartTimer { timer, after } => {
                let tx = timers.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(timer);
                });
                if let Some(old) = s.timers.insert(timer, task.abort_handle()) {
                    old.abort();
                }
            }
            Action::CancelTimer { timer } => {
                if let Some(t) = s.timers.remove(&timer) {
                    t.abort();
                }
            }
            Action::Submit(verification) => {
                // Moved straight in; the matcher moves and settles the order.
                let call = CallRef {
                    channel_id: self.channel_id,
                    via: self.via,
                };
                let outcome = self.matcher.verify(self.order_id, call, verification).await;
                return Some(Event::VerificationResult(outcome));
            }
            Action::Hangup if self.end == CallEnd::ReturnToDialplan => {}
            Action::Hangup => {
                if let Err(e) = self.ari.hangup(self.channel_id, HangupReason::Normal).await {
                    tracing::debug!(error = %e, "hangup failed");
                }
            }
            Action::Finish(outcome) => {
                s.outcome = Some(outcome);
                self.finish(outcome).await;
            }
        }
        None
    }

    /// Settles the order when the call ends without a bank decision. After
    /// a bank decision the matcher already moved it (the move from
    /// `in_call` then finds nothing to do).
    async fn finish(&self, outcome: CallOutcome) {
        tracing::info!(?outcome, "call finished");
        let code = match outcome {
            CallOutcome::Failed(code) => code,
            CallOutcome::Approved | CallOutcome::HungUpAwaitingBank => return,
        };
        let t = Transition {
            from: OrderStatus::InCall,
            to: OrderStatus::Failed,
            result: Some(code),
            detail: None,
        };
        if let Err(e) = self.store.transition(self.order_id, t, now_ms()).await {
            tracing::warn!(error = %e, "cannot settle the order");
        }
    }
}

/// Whether Asterisk itself is ending the call (a soft hang-up request),
/// rather than the caller hanging up.
fn cut_off(event: &ari::Event) -> bool {
    matches!(
        event,
        ari::Event::ChannelHangupRequest {
            soft: Some(true),
            ..
        }
    )
}

/// The IVR event an ARI event means for this call, if any.
fn translate(event: &ari::Event, s: &mut Session) -> Option<Event> {
    match event {
        ari::Event::ChannelDtmfReceived {
            digit,
            duration_ms,
            ended_at_ms,
            ..
        } => super::keys::pressed(&mut s.keys, digit, *duration_ms, *ended_at_ms).map(Event::Digit),
        ari::Event::PlaybackFinished { playback } => {
            s.playbacks
                .get(&playback.id)
                .map(|id| Event::PlaybackFinished {
                    playback_id: id.clone(),
                })
        }
        ari::Event::StasisEnd { .. }
        | ari::Event::ChannelHangupRequest { .. }
        | ari::Event::ChannelDestroyed { .. } => Some(Event::Hangup),
        _ => None,
    }
}
