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

use super::line::{Line, Next};
use super::points::{Keep, PointKey};
use crate::ari::{self, AriCommands, HangupReason};
use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::{Action, CallOutcome, Event, Ivr, Progress, TimerId};
use crate::matcher::{CallRef, Matcher, Via};
use crate::store::{now_ms, Store, Transition};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    /// This node's name (`ari.app`), the order's `claimed_by` while the
    /// call runs.
    pub node: &'a str,
    /// How the call reached the order; the matcher checks it.
    pub via: &'a Via,
    /// Prompt language for ARI's `lang` play parameter (`zh`, `en`).
    pub lang: &'a str,
    /// What the IVR's closing [`Action::Hangup`] does to the channel.
    pub end: CallEnd,
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

/// What an assisted capture, or a call kept for a restarted daemon, adds
/// to a run ([`CallRunner::run_with`]).
#[derive(Default, Clone, Copy)]
pub struct Hooks<'h> {
    /// Cancelled to stop the run while the IVR is still asking.
    pub stop: Option<&'h CancellationToken>,
    /// Where each new [`Progress`] goes.
    pub progress: Option<&'h mpsc::UnboundedSender<Progress>>,
    /// The call's point is kept in `call_points`, it is handed over at
    /// shutdown, and it may resume from a previous run's point
    /// ([`super::points`]).
    pub keep: Option<&'h Keep>,
}

/// How a [`CallRunner::run_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The IVR ended: as [`CallRunner::run`] returns.
    Ended(Option<CallOutcome>),
    /// `stop` came while the IVR was asking: nothing was submitted on this
    /// run since its last result, and the order was not moved.
    Stopped,
    /// The daemon is stopping with `ari.websocket = "outbound"`: the call's
    /// point is saved and the channel left up, as it is, for the next run
    /// to resume; nothing was hung up or settled.
    HandedOver,
}

/// Sends the IVR's progress to `to` when it changed since `shown`.
fn report(to: Option<&mpsc::UnboundedSender<Progress>>, ivr: &Ivr, shown: &mut Option<Progress>) {
    let Some(tx) = to else { return };
    let now = ivr.progress();
    if now != *shown {
        *shown = now;
        if let Some(p) = now {
            let _ = tx.send(p);
        }
    }
}

/// A resumed call's wait for its order's verdict.
type SettledOrder<'a> = Pin<Box<dyn Future<Output = Event> + Send + 'a>>;

/// Whether the call is being handed over (the daemon stops).
fn handing_over(keep: Option<&Keep>) -> bool {
    keep.is_some_and(|k| k.handover.is_cancelled())
}

/// Resolves when the call is to be handed over; never without a keep.
async fn handed_over(keep: Option<&Keep>) {
    match keep {
        Some(k) => k.handover.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Resolves when `stop` is cancelled; never without one.
async fn stopped(stop: Option<&CancellationToken>) {
    match stop {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

/// The per-call bookkeeping that turns IVR ids into ARI ids and back.
#[derive(Default)]
struct Session {
    /// ARI playback id → the IVR's id, for the playbacks not known to have
    /// finished.
    playbacks: HashMap<String, String>,
    /// The IVR's playback id → ARI's.
    ari_ids: HashMap<String, String>,
    next_playback: u64,
    timers: HashMap<TimerId, AbortHandle>,
    outcome: Option<CallOutcome>,
    /// A resumed call drops keyed digits until its re-prompt has started:
    /// they were keyed before it (queued by Asterisk while no daemon ran).
    discarding: bool,
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
    ///
    /// A prompt that ended while the socket was down sent its
    /// `PlaybackFinished` to nobody: after each reconnection the call asks
    /// Asterisk which of its playbacks still exist, and takes one that no
    /// longer does (404) as finished, so the digit timer that follows a
    /// prompt is armed (rather than a silent caller waiting for
    /// `ivr.max_call_secs`).
    ///
    /// The call's channel is `line`'s: when a masquerade moves the call
    /// onto a new channel, the IVR goes on where it was (keyed digits,
    /// tries) and every later command names the new channel.
    pub async fn run(&self, ivr: Ivr, line: &mut Line<'_>) -> Option<CallOutcome> {
        match self.run_with(ivr, line, Hooks::default()).await {
            Ran::Ended(outcome) => outcome,
            // Only a `stop` or `keep` hook stops a run.
            Ran::Stopped | Ran::HandedOver => None,
        }
    }

    /// [`CallRunner::run`] with an assisted capture's hooks: every change
    /// of [`Ivr::progress`] goes to `hooks.progress`, and `hooks.stop`
    /// stops the run while the IVR is still asking ([`Ivr::asking`]: no
    /// secret with the issuer, no result being said): its prompt is
    /// stopped, its timers dropped, and the order left as it is
    /// ([`Ran::Stopped`]). A stop that comes later is too late: the run
    /// ends with its result as usual.
    pub async fn run_with(&self, mut ivr: Ivr, line: &mut Line<'_>, hooks: Hooks<'_>) -> Ran {
        let began = Instant::now();
        let mut shown = None;
        let mut kept: Option<PointKey> = None;
        let mut stop_seen = false;
        let (timer_tx, mut timer_rx) = mpsc::unbounded_channel::<TimerId>();
        let mut session = Session::default();
        if let Some(k) = hooks.keep {
            self.take_over(k, line.id(), &mut session).await;
        }
        let mut queue = VecDeque::from([Event::Start]);
        let mut stream_open = true;
        let mut epoch = self.ari.events_epoch();
        let mut settled: Option<SettledOrder<'_>> = None;
        loop {
            while let Some(event) = queue.pop_front() {
                if handing_over(hooks.keep) && !ivr.is_done() && event != Event::Hangup {
                    // Nothing more is done with the call: what the event
                    // means (a matcher's answer is the order's) is for the
                    // next run to find. A hang-up still ends the call.
                    return self.hand_over(hooks.keep, &ivr, line.id(), &session).await;
                }
                let actions = ivr.step(event, began.elapsed());
                // Before the actions: "authorizing" is seen (and kept) while
                // the matcher has the secret, not after its answer.
                report(hooks.progress, &ivr, &mut shown);
                self.keep_point(hooks.keep, &ivr, line.id(), &session, &mut kept)
                    .await;
                for action in actions {
                    let ch = line.id();
                    if let Some(back) = self.execute(action, ch, &mut session, &timer_tx).await {
                        queue.push_back(back);
                    }
                }
                if settled.is_none() && ivr.awaits_settled_order() {
                    settled = Some(self.settled_order());
                }
            }
            if handing_over(hooks.keep) && !ivr.is_done() {
                return self.hand_over(hooks.keep, &ivr, line.id(), &session).await;
            }
            if ivr.is_done() || !stream_open {
                break;
            }
            tokio::select! {
                biased;
                () = handed_over(hooks.keep) => {
                    return self.hand_over(hooks.keep, &ivr, line.id(), &session).await;
                },
                () = stopped(hooks.stop), if !stop_seen => {
                    stop_seen = true;
                    if ivr.asking() {
                        self.stop_prompts(&mut session).await;
                        return Ran::Stopped;
                    }
                },
                next = async { settled.as_mut().expect("guarded").await }, if settled.is_some() => {
                    settled = None;
                    queue.push_back(next);
                },
                next = line.next() => match next {
                    Some(Next::Event(event)) if cut_off(&event) => stream_open = false,
                    Some(Next::Event(event)) => queue.extend(translate(&event, &mut session)),
                    // Same payment, new channel: nothing for the IVR.
                    Some(Next::Moved { .. }) => {}
                    // Hang-up events end the IVR before the stream ends, so
                    // this is a channel that vanished unseen: lost.
                    None => stream_open = false,
                },
                now = self.ari.events_reconnected(epoch) => {
                    epoch = now;
                    queue.extend(self.finished_meanwhile(&mut session).await);
                },
                Some(timer) = timer_rx.recv() => {
                    session.timers.remove(&timer);
                    if !self.hold_while_disconnected(line, &mut session, &mut queue).await {
                        stream_open = false;
                    } else {
                        queue.push_back(Event::TimerFired { timer });
                    }
                }
            }
        }
        Ran::Ended(session.outcome)
    }

    /// Saves the call's point when it changed ([`Keep::save`]).
    async fn keep_point(
        &self,
        keep: Option<&Keep>,
        ivr: &Ivr,
        ch: &str,
        s: &Session,
        last: &mut Option<PointKey>,
    ) {
        if let Some(k) = keep {
            let (p, n) = (ivr.progress(), s.next_playback);
            k.save(self.store, self.order_id, ch, p, n, last).await;
        }
    }

    /// The verdict a call resumed at `authorizing` or `closing` waits for:
    /// the order's, once settled ([`super::points::settled_verdict`]).
    fn settled_order(&self) -> SettledOrder<'_> {
        Box::pin(super::points::settled_verdict(self.store, self.order_id))
    }

    /// A resumed call takes its channel over: the previous run's prompt is
    /// stopped (404 = it ended), this run numbers its playbacks above the
    /// previous run's, and digits are discarded until its re-prompt starts.
    async fn take_over(&self, keep: &Keep, ch: &str, s: &mut Session) {
        if keep.from.is_none() {
            return;
        }
        for id in keep.stale_playbacks(ch) {
            if let Err(e) = self.ari.stop_playback(&id).await {
                tracing::debug!(error = %e, "the previous run's prompt is gone");
            }
        }
        s.next_playback = keep.first_playback();
        s.discarding = true;
    }

    /// Saves the call's point as it is now and leaves the channel up.
    async fn hand_over(&self, keep: Option<&Keep>, ivr: &Ivr, ch: &str, s: &Session) -> Ran {
        if let Some(k) = keep {
            let mut last = None;
            let (p, n) = (ivr.progress(), s.next_playback);
            k.save(self.store, self.order_id, ch, p, n, &mut last).await;
        }
        tracing::info!("call handed over to the next run of the daemon");
        Ran::HandedOver
    }

    /// Stops every prompt of the run that has not finished.
    async fn stop_prompts(&self, s: &mut Session) {
        for id in s.playbacks.keys() {
            if let Err(e) = self.ari.stop_playback(id).await {
                tracing::debug!(error = %e, "stop playback failed");
            }
        }
        s.playbacks.clear();
    }

    /// Waits until the events socket is up; events still queued meanwhile
    /// go to `queue`. False when the stream ended first (the call was lost).
    async fn hold_while_disconnected(
        &self,
        line: &mut Line<'_>,
        session: &mut Session,
        queue: &mut VecDeque<Event>,
    ) -> bool {
        loop {
            tokio::select! {
                // The queue first: a channel found gone on reconnection is
                // closed before the socket is reported up.
                biased;
                next = line.next() => match next {
                    Some(Next::Event(event)) if cut_off(&event) => return false,
                    Some(Next::Event(event)) => queue.extend(translate(&event, session)),
                    Some(Next::Moved { .. }) => {}
                    None => return false,
                },
                () = self.ari.events_up() => return true,
            }
        }
    }

    /// The end of each playback of the call that Asterisk no longer has
    /// (`GET /playbacks/{id}` answers 404): its `PlaybackFinished` went out
    /// while the events socket was down. One that cannot be asked about
    /// stays playing (its event, or the call's own limit, still ends it).
    async fn finished_meanwhile(&self, s: &mut Session) -> Vec<Event> {
        let mut ended = Vec::new();
        for id in s.playbacks.keys() {
            match self.ari.playback_exists(id).await {
                Ok(true) => {}
                Ok(false) => ended.push(id.clone()),
                Err(e) => {
                    tracing::debug!(error = %e, playback = %id, "cannot ask for the playback")
                }
            }
        }
        ended
            .iter()
            .filter_map(|id| s.playbacks.remove(id))
            .map(|playback_id| {
                tracing::info!("a prompt ended while the events socket was down");
                Event::PlaybackFinished { playback_id }
            })
            .collect()
    }

    /// Carries out one action on the call's channel `ch`; returns the
    /// event it produces at once, if any (the matcher's answer, or the end
    /// of a playback that failed to start).
    async fn execute(
        &self,
        action: Action,
        ch: &str,
        s: &mut Session,
        timers: &mpsc::UnboundedSender<TimerId>,
    ) -> Option<Event> {
        match action {
            Action::Play { playback_id, media } => {
                s.next_playback += 1;
                let id = ari::playback_id(ch, s.next_playback);
                s.playbacks.insert(id.clone(), playback_id.clone());
                s.ari_ids.insert(playback_id.clone(), id.clone());
                if let Err(e) = self.ari.play(ch, &id, &media, Some(self.lang)).await {
                    // No PlaybackFinished will come: end it here so the IVR
                    // moves on (a gone channel also brings a hang-up).
                    tracing::debug!(error = %e, "play failed");
                    s.playbacks.remove(&id);
                    s.discarding = false;
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
                    channel_id: ch,
                    via: self.via,
                };
                let outcome = self.matcher.verify(self.order_id, call, verification).await;
                return Some(Event::VerificationResult(outcome));
            }
            Action::Hangup if self.end == CallEnd::ReturnToDialplan => {}
            Action::Hangup => {
                if let Err(e) = self.ari.hangup(ch, HangupReason::Normal).await {
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
    ///
    /// When the database does not answer (an outage), the caller has
    /// already been told the result: the same move is tried again in the
    /// background ([`settle_when_the_store_answers`]) rather than leaving
    /// the order `in_call` until its claim runs out and it is settled as a
    /// lost call (retried, or put back to `pending` for an inbound call).
    async fn finish(&self, outcome: CallOutcome) {
        tracing::info!(?outcome, "call finished");
        let code = match outcome {
            CallOutcome::Failed(code) => code,
            // NotReached: the callback flow retries the order.
            CallOutcome::Approved | CallOutcome::HungUpAwaitingBank | CallOutcome::NotReached => {
                return
            }
        };
        if let Err(e) = self
            .store
            .transition(self.order_id, failed_with(code), now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot settle the order; trying again in the background");
            let (store, order, node) = (
                self.store.clone(),
                self.order_id.to_owned(),
                self.node.to_owned(),
            );
            tokio::spawn(settle_when_the_store_answers(store, order, node, code).in_current_span());
        }
    }
}

/// How long a call that ended while the database failed keeps trying to
/// settle its order. Each try moves the order only while this node still
/// holds its claim: once the claim has run out and another node took it
/// over, that node settles the order as a lost call and this one leaves it.
const SETTLE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(45);
/// Pause between two tries.
const SETTLE_RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The move of an order whose call ended without a bank decision.
fn failed_with(code: ResultCode) -> Transition<'static> {
    Transition {
        from: OrderStatus::InCall,
        to: OrderStatus::Failed,
        result: Some(code),
        detail: None,
    }
}

/// Moves the order `in_call` → `failed` with `code`, trying every
/// [`SETTLE_RETRY_EVERY`] for [`SETTLE_RETRY_FOR`] until the store
/// answers. The move is conditional on the status and on `node` still
/// holding the claim: an order another node settled or took over
/// meanwhile is left as it is.
async fn settle_when_the_store_answers(
    store: Store,
    order_id: String,
    node: String,
    code: ResultCode,
) {
    let until = Instant::now() + SETTLE_RETRY_FOR;
    while Instant::now() < until {
        tokio::time::sleep(SETTLE_RETRY_EVERY).await;
        match store
            .transition_claimed(&order_id, &node, failed_with(code), now_ms())
            .await
        {
            Ok(moved) => {
                tracing::info!(moved, "order settled once the database answered");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "still cannot settle the order"),
        }
    }
    tracing::warn!("cannot settle the order; left to its claim running out");
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

/// The IVR event an ARI event means for this call, if any. A finished
/// playback is forgotten: a second end of it (after
/// [`CallRunner::finished_meanwhile`] found it gone) means nothing.
fn translate(event: &ari::Event, s: &mut Session) -> Option<Event> {
    match event {
        ari::Event::ChannelDtmfReceived { .. } if s.discarding => {
            tracing::info!("a digit keyed before the resumed call's prompt discarded");
            None
        }
        ari::Event::ChannelDtmfReceived { digit, .. } => digit.expose().map(Event::Digit),
        ari::Event::PlaybackStarted { playback } => {
            if s.playbacks.contains_key(&playback.id) {
                s.discarding = false;
            }
            None
        }
        ari::Event::ChannelTalkingStarted { .. } => Some(Event::TalkStarted),
        ari::Event::ChannelTalkingFinished { duration, .. } => Some(Event::TalkFinished {
            duration: std::time::Duration::from_millis(u64::try_from(*duration).unwrap_or(0)),
        }),
        ari::Event::PlaybackFinished { playback } => {
            let ours = s.playbacks.remove(&playback.id);
            if ours.is_some() {
                s.discarding = false;
            }
            ours.map(|playback_id| Event::PlaybackFinished { playback_id })
        }
        ari::Event::StasisEnd { .. }
        | ari::Event::ChannelHangupRequest { .. }
        | ari::Event::ChannelDestroyed { .. } => Some(Event::Hangup),
        _ => None,
    }
}
