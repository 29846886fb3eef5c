//! The assisted flow (DESIGN.md flow 5, issue #16): the merchant's agent
//! stays on the line while the cardholder keys the secret, and never hears
//! or sees a digit.
//!
//! The merchant's dialplan sends both channels into our app with the
//! order's one-time code and their role:
//! `Stasis(voicepay,assisted,<code>,cardholder)` and
//! `Stasis(voicepay,assisted,<code>,agent)` (dialplan/assisted.conf). The
//! first of them opens the order's *room* on this node: a mixing bridge we
//! own (`vp-assisted-<order>`), into which each party is added as it comes
//! (the second channel is handed to the room's task, [`Rooms`]). The
//! cardholder's channel claims the order (`pending` → `in_call`) as a
//! transferred call does; the agent's claims nothing. Both must reach the
//! same node (one Asterisk and its daemon): behind a dispatcher of cells,
//! the merchant must send both legs to the same cell (nothing routes them
//! by the code yet).
//!
//! A capture (`POST /v1/orders/{id}/capture`, recorded in
//! `assisted_calls`, seen here every `http.events_poll_ms`), for the
//! cardholder's channel only:
//! 1. the channel is taken out of the bridge and added again with
//!    `absorbDTMF=true` and `mute=true` (a member's bridge features are set
//!    when it joins), and its incoming audio is muted (`POST
//!    /channels/{id}/mute?direction=in`): neither its RFC 4733 events nor
//!    in-band tones in its voice reach the agent, who hears silence;
//! 2. the IVR runs on the channel as in the other flows (confirmation, PIN
//!    or expiry + CVN2, the bank, the result); its prompts are played to the
//!    channel (`POST /channels/{cardholder}/play`), which Asterisk plays to
//!    that member alone: **the agent hears none of the prompts**, only
//!    silence, and follows the counts on the status stream;
//! 3. every change of the IVR's progress becomes a `capture` audit row and
//!    (with `notify_progress`) a `capture.progress` webhook: step and
//!    counts, never a digit;
//! 4. afterwards the channel is unmuted and added again without
//!    `absorbDTMF`/`mute`: both talk again.
//!
//! A cancel (`/capture/cancel`) stops the IVR while it is still asking
//! (prompt stopped, nothing submitted since the last result, the order left
//! `in_call`); once the secret is with the issuer the result comes as usual.
//! The tries of a capture are what the previous capture left
//! (`ivr.secret_tries` at first), so captures do not reset them.
//!
//! Hang-ups:
//! - the agent during a capture: the capture goes on to its result, then
//!   the cardholder's channel returns to the merchant's dialplan
//!   (`voicepay-assisted-return,cardholder,1`) with `VOICEPAY_RESULT` and
//!   `VOICEPAY_CODE` as in transfer;
//! - the agent outside a capture: the cardholder returns at once, with the
//!   result if the order has one; an order without one fails `call_failed`
//!   (the call was cut before the payment; the audit log says "agent hung
//!   up"), and the cardholder returns with `failure`/`agent_hung_up`;
//! - the cardholder, at any time: the order fails `caller_hung_up` (unless
//!   it has a result already) and the agent's channel returns to the
//!   merchant's dialplan (`voicepay-assisted-return,agent,1`) with the
//!   result variables: the agent's call goes on.

use super::desk::{call_span, record_order, Desk};
use super::line::{Line, Next};
use super::live::{ends_call, play_prompts, Heard};
use super::runner::{CallEnd, CallRunner, Hooks, Ran};
use super::session::call_info;
use super::settle::settle_lost;
use super::transfer::{hand_back_to, masked_code, valid_code, CODE_INVALID};
use crate::ari::{self, AriCommands, Call};
use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::{CallOutcome, Ivr, IvrConfig, Progress, Step};
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, ActiveCall, OrderRow, Party, Transition};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

/// Writes of a party's arrival tried before giving up (250 ms, 500 ms, …
/// apart).
const PARTY_WRITE_TRIES: u32 = 4;

/// Where the parties go back to the merchant (dialplan/assisted.conf),
/// at extension `cardholder` or `agent`, priority 1.
pub const RETURN_CONTEXT: &str = "voicepay-assisted-return";

/// `VOICEPAY_CODE` for a cardholder returned because the agent hung up
/// before the order had a result.
pub const AGENT_HUNG_UP: &str = "agent_hung_up";

/// A party's channel on its way into its order's room.
pub(super) struct Joining {
    party: Party,
    channel_id: String,
    events: UnboundedReceiver<ari::Event>,
}

/// This node's open rooms by order id: where the second channel of an
/// assisted call is handed to the task that holds the first.
#[derive(Default)]
pub(super) struct Rooms(std::sync::Mutex<HashMap<String, UnboundedSender<Joining>>>);

impl Rooms {
    /// Hands `j` to the order's open room (None), or opens one: the caller
    /// then runs it with the returned queue.
    fn offer_or_open(
        &self,
        order_id: &str,
        j: Joining,
    ) -> Option<(Joining, UnboundedReceiver<Joining>)> {
        let mut rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let j = match rooms.get(order_id) {
            Some(tx) => match tx.send(j) {
                Ok(()) => return None,
                Err(mpsc::error::SendError(j)) => j,
            },
            None => j,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        rooms.insert(order_id.to_owned(), tx);
        Some((j, rx))
    }

    /// Forgets the order's room once its queue is closed.
    fn close(&self, order_id: &str) {
        let mut rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.get(order_id).is_some_and(UnboundedSender::is_closed) {
            rooms.remove(order_id);
        }
    }
}

/// Takes a channel that entered the app with `["assisted", code, party]`
/// and runs it on its own task (or hands it to its order's room).
pub fn take_assisted<M: Matcher + 'static>(
    desk: &Arc<Desk<M>>,
    call: Call,
    code: String,
    party: String,
) {
    let span = call_span("assisted", &call.channel_id);
    let this = desk.clone();
    desk.spawn_call(
        span,
        async move { assisted(&this, call, code, party).await },
    );
}

async fn assisted<M: Matcher + 'static>(desk: &Desk<M>, call: Call, code: String, party: String) {
    let Call {
        channel_id,
        first,
        events,
        ..
    } = call;
    let party = Party::parse(&party);
    tracing::info!(code = %masked_code(&code), party = party.map_or("?", Party::as_str), "assisted call");
    let order = match party {
        Some(_) => find_order(desk, &code).await,
        None => None,
    };
    let (Some(party), Some(order)) = (party, order) else {
        let lang = match &first {
            ari::Event::StasisStart { channel, .. } => channel.language.clone(),
            _ => None,
        };
        let mut line = desk.line(channel_id, events);
        tracing::info!("unknown, used or expired assisted code, or no party");
        let heard = play_prompts(
            &desk.rest,
            &mut line,
            1,
            &["transfer-code-invalid"],
            lang.as_deref(),
        )
        .await;
        if heard == Heard::Played {
            let ext = party.unwrap_or(Party::Cardholder).as_str();
            hand_back_to(
                &desk.rest,
                line.id(),
                RETURN_CONTEXT,
                ext,
                "failure",
                CODE_INVALID,
            )
            .await;
        }
        return;
    };
    record_order(&Span::current(), &order.id);
    let joining = Joining {
        party,
        channel_id,
        events,
    };
    let Some((joining, joins)) = desk.rooms.offer_or_open(&order.id, joining) else {
        tracing::info!("handed to the order's room");
        return;
    };
    let order_id = order.id.clone();
    let mut room = Room {
        desk,
        bridge: format!("vp-assisted-{order_id}"),
        bridged: false,
        via: Via::Assisted { code },
        tries_left: desk.settings.ivr.secret_tries,
        order,
        holder: None,
        agent: None,
    };
    room.run(joining, joins).await;
    desk.rooms.close(&order_id);
}

/// The `pending` or `in_call` assisted order of `code`.
async fn find_order<M>(desk: &Desk<M>, code: &str) -> Option<OrderRow> {
    if !valid_code(code) {
        return None;
    }
    match desk.store.live_assisted_order(code, now_ms()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "assisted code lookup failed");
            None
        }
    }
}

/// One order's assisted call on this node.
struct Room<'d, M> {
    desk: &'d Desk<M>,
    bridge: String,
    /// The bridge exists.
    bridged: bool,
    via: Via,
    /// Secrets the next capture may take.
    tries_left: u8,
    order: OrderRow,
    holder: Option<Line<'d>>,
    agent: Option<Line<'d>>,
}

/// How a party left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// It hung up (or left our app).
    HungUp,
    /// The telephone system lost it: its event stream ended with no
    /// hang-up event (Asterisk restarted), or Asterisk itself asked it to
    /// hang up (a soft hang-up request), as the runner judges a call.
    Lost,
}

/// Waits until a present party is gone, skipping its other events; never
/// for an absent party.
async fn gone(line: &mut Option<Line<'_>>) -> Gone {
    let Some(line) = line.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match line.next().await {
            None
            | Some(Next::Event(ari::Event::ChannelHangupRequest {
                soft: Some(true), ..
            })) => return Gone::Lost,
            Some(Next::Event(e)) if ends_call(&e) => return Gone::HungUp,
            Some(_) => {}
        }
    }
}

impl<'d, M: Matcher> Room<'d, M> {
    async fn run(&mut self, first: Joining, mut joins: UnboundedReceiver<Joining>) {
        self.admit(first).await;
        let poll = Duration::from_millis(self.desk.settings.http.events_poll_ms.max(10));
        let mut tick = tokio::time::interval(poll);
        while self.holder.is_some() || self.agent.is_some() {
            tokio::select! {
                Some(j) = joins.recv() => self.admit(j).await,
                how = gone(&mut self.holder) => self.holder_gone(how).await,
                _ = gone(&mut self.agent) => self.agent_gone().await,
                _ = tick.tick() => self.poll_capture().await,
            }
        }
        joins.close();
        if self.bridged {
            let _ = self.desk.rest.destroy_bridge(&self.bridge).await;
        }
        if let Err(e) = self.desk.store.end_capture(&self.order.id, now_ms()).await {
            tracing::warn!(error = %e, "cannot close the capture state");
        }
        tracing::info!("assisted call ended");
    }

    /// Puts a party's channel into the bridge (the cardholder's claims the
    /// order first); a second channel for a role, or a cardholder whose
    /// order can no longer be claimed, is handed back as an unknown code.
    async fn admit(&mut self, j: Joining) {
        let desk = self.desk;
        let line = desk.line(j.channel_id, j.events);
        let taken = match j.party {
            Party::Cardholder => self.holder.is_some(),
            Party::Agent => self.agent.is_some(),
        };
        if taken {
            tracing::info!(
                party = j.party.as_str(),
                "a second channel for a party; handed back"
            );
            refuse(desk, &line, j.party).await;
            return;
        }
        if let Err(e) = desk.rest.answer(line.id()).await {
            tracing::debug!(error = %e, "answer failed (already up?)");
        }
        if j.party == Party::Cardholder {
            match desk
                .claim_incoming(&self.order.id, line.id(), "assisted call")
                .await
            {
                Some(order) => self.order = order,
                None => {
                    refuse(desk, &line, j.party).await;
                    return;
                }
            }
        }
        if !self.bridged {
            match desk.rest.create_bridge(&self.bridge).await {
                Ok(()) => self.bridged = true,
                Err(e) => tracing::warn!(error = %e, "cannot create the bridge"),
            }
        }
        if let Err(e) = desk
            .rest
            .add_to_bridge(&self.bridge, line.id(), false, false)
            .await
        {
            tracing::warn!(error = %e, "cannot add the channel to the bridge");
        }
        self.party_is(j.party, Some(line.id())).await;
        tracing::info!(party = j.party.as_str(), "joined the assisted call");
        match j.party {
            Party::Cardholder => self.holder = Some(line),
            Party::Agent => self.agent = Some(line),
        }
    }

    /// Records who is in the bridge; the API's capture is refused until
    /// both are. The write is an idempotent upsert, so a failure (the
    /// database busy under load) is retried a few times rather than left
    /// to refuse every capture of the call.
    async fn party_is(&self, party: Party, channel: Option<&str>) {
        let store = &self.desk.store;
        for attempt in 1..=PARTY_WRITE_TRIES {
            match store
                .assisted_party(&self.order.id, party, channel, now_ms())
                .await
            {
                Ok(()) => return,
                Err(e) if attempt < PARTY_WRITE_TRIES => {
                    tracing::warn!(error = %e, attempt, "cannot record the assisted call's party yet");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the assisted call's party: captures will be refused");
                }
            }
        }
    }

    /// The order as stored now (the room's copy when it cannot be read).
    async fn order_now(&mut self) -> &OrderRow {
        if let Ok(Some(o)) = self.desk.store.order(&self.order.id).await {
            self.order = o;
        }
        &self.order
    }

    /// The cardholder hung up outside a capture: the order fails
    /// `caller_hung_up` unless it has a result (a call lost with Asterisk
    /// is settled as the other flows settle one); the agent goes back.
    async fn holder_gone(&mut self, how: Gone) {
        let Some(line) = self.holder.take() else {
            return;
        };
        if how == Gone::Lost {
            tracing::info!("the cardholder's channel was lost");
            let lost = ActiveCall {
                order_id: self.order.id.clone(),
                status: OrderStatus::InCall,
                attempts: self.order.attempts,
                channel_id: Some(line.id().to_owned()),
            };
            settle_lost(self.desk, &lost).await;
            self.party_is(Party::Cardholder, None).await;
            self.desk.release(line.id()).await;
            self.send_agent_back().await;
            return;
        }
        tracing::info!("the cardholder hung up");
        let t = Transition {
            from: OrderStatus::InCall,
            to: OrderStatus::Failed,
            result: Some(ResultCode::CallerHungUp),
            detail: None,
        };
        if let Err(e) = self
            .desk
            .store
            .transition(&self.order.id, t, now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot settle the order");
        }
        self.holder_left(line.id(), "caller_hung_up").await;
        self.send_agent_back().await;
    }

    /// The cardholder's channel left the room: its attempt row, the party
    /// row, the desk's registration.
    async fn holder_left(&self, channel_id: &str, code: &str) {
        self.desk
            .end_attempt(channel_id, "answered", Some(code))
            .await;
        self.party_is(Party::Cardholder, None).await;
        self.desk.release(channel_id).await;
    }

    /// Returns the agent's channel to the merchant's dialplan with the
    /// order's result.
    async fn send_agent_back(&mut self) {
        let Some(agent) = self.agent.take() else {
            return;
        };
        let (result, code) = order_vars(self.order_now().await);
        let rest = &self.desk.rest;
        hand_back_to(
            rest,
            agent.id(),
            RETURN_CONTEXT,
            Party::Agent.as_str(),
            result,
            code,
        )
        .await;
        self.party_is(Party::Agent, None).await;
    }

    /// The agent hung up outside a capture: the cardholder goes back, with
    /// the result, or `agent_hung_up` when the order has none (it then
    /// fails `call_failed`).
    async fn agent_gone(&mut self) {
        self.agent = None;
        tracing::info!("the agent hung up");
        self.party_is(Party::Agent, None).await;
        let Some(holder) = self.holder.take() else {
            return;
        };
        let order = self.order_now().await.clone();
        let (result, code) = if order.status().is_final() {
            order_vars(&order)
        } else {
            let t = Transition {
                from: OrderStatus::InCall,
                to: OrderStatus::Failed,
                result: Some(ResultCode::CallFailed),
                detail: Some("agent hung up"),
            };
            if let Err(e) = self.desk.store.transition(&order.id, t, now_ms()).await {
                tracing::warn!(error = %e, "cannot settle the order");
            }
            ("failure", AGENT_HUNG_UP)
        };
        hand_back_to(
            &self.desk.rest,
            holder.id(),
            RETURN_CONTEXT,
            Party::Cardholder.as_str(),
            result,
            code,
        )
        .await;
        self.holder_left(holder.id(), code).await;
    }

    /// Starts a requested capture, or drops a request nobody can serve.
    async fn poll_capture(&mut self) {
        let store = &self.desk.store;
        let row = match store.assisted_call(&self.order.id).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the capture state");
                return;
            }
        };
        match row.capture.as_str() {
            "requested" if self.holder.is_some() => {
                match store.begin_capture(&self.order.id, now_ms()).await {
                    Ok(true) => self.capture().await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot begin the capture"),
                }
            }
            // A request cancelled before it began, or one without a
            // cardholder to serve it.
            "requested" | "cancelling" => {
                if let Err(e) = store.end_capture(&self.order.id, now_ms()).await {
                    tracing::warn!(error = %e, "cannot drop the capture request");
                }
            }
            _ => {}
        }
    }

    /// Keeps (`hidden`) or stops keeping the cardholder's keys and audio
    /// from the bridge: re-added with `absorbDTMF` and `mute`, and its
    /// incoming audio muted.
    async fn hide_holder(&self, hidden: bool) {
        let Some(holder) = &self.holder else { return };
        let rest = &self.desk.rest;
        let ch = holder.id();
        if !hidden {
            if let Err(e) = rest.mute_in(ch, false).await {
                tracing::debug!(error = %e, "unmute failed");
            }
        }
        if let Err(e) = rest.remove_from_bridge(&self.bridge, ch).await {
            tracing::debug!(error = %e, "remove from the bridge failed");
        }
        if let Err(e) = rest.add_to_bridge(&self.bridge, ch, hidden, hidden).await {
            tracing::warn!(error = %e, "cannot add the cardholder to the bridge again");
        }
        if hidden {
            if let Err(e) = rest.mute_in(ch, true).await {
                tracing::warn!(error = %e, "cannot mute the cardholder");
            }
        }
    }

    /// One capture: the cardholder hidden from the agent, the IVR, then both
    /// talking again (see the module docs).
    async fn capture(&mut self) {
        tracing::info!(tries_left = self.tries_left, "capture begins");
        self.hide_holder(true).await;
        let ran = self.run_ivr().await;
        let store = &self.desk.store;
        if let Err(e) = store.end_capture(&self.order.id, now_ms()).await {
            tracing::warn!(error = %e, "cannot close the capture state");
        }
        match ran {
            Ran::Stopped | Ran::HandedOver => {
                tracing::info!("capture cancelled");
                let p = Progress {
                    step: Step::Cancelled,
                    digits_entered: 0,
                    digits_expected: 0,
                    tries_left: self.tries_left,
                    step_failures: 0,
                };
                self.report(p).await;
                self.hide_holder(false).await;
            }
            Ran::Ended(outcome) => self.captured(outcome).await,
        }
    }

    /// Runs the IVR on the cardholder's channel until it ends or a cancel
    /// stops it, reporting its progress, following the agent meanwhile.
    async fn run_ivr(&mut self) -> Ran {
        let desk = self.desk;
        let lang = self.order.language;
        let config = IvrConfig {
            secret_tries: self.tries_left,
            ..IvrConfig::from(&desk.settings.ivr)
        };
        let ivr = Ivr::new(config, call_info(&self.order, lang));
        let runner = CallRunner {
            ari: &desk.rest,
            matcher: desk.matcher.as_ref(),
            store: &desk.store,
            order_id: &self.order.id,
            node: &desk.node,
            via: &self.via,
            lang: lang.as_str(),
            end: CallEnd::ReturnToDialplan,
        };
        let stop = CancellationToken::new();
        let (tx, progress) = mpsc::unbounded_channel();
        // Written by a task of their own: a write awaited here could wait
        // for the database connection the paused IVR (the matcher) holds.
        let writer = tokio::spawn(
            write_progress(desk.store.clone(), self.order.id.clone(), progress)
                .instrument(Span::current()),
        );
        let hooks = Hooks {
            stop: Some(&stop),
            progress: Some(&tx),
            keep: None,
        };
        let Some(holder) = self.holder.as_mut() else {
            return Ran::Stopped;
        };
        let mut agent_left = false;
        let ran = {
            let run = runner.run_with(ivr, holder, hooks);
            tokio::pin!(run);
            let poll = Duration::from_millis(desk.settings.http.events_poll_ms.max(10));
            let mut tick = tokio::time::interval(poll);
            let agent = &mut self.agent;
            let order_id = &self.order.id;
            loop {
                tokio::select! {
                    ran = &mut run => break ran,
                    _ = gone(agent) => {
                        tracing::info!("the agent hung up during the capture; it goes on");
                        *agent = None;
                        agent_left = true;
                    },
                    _ = tick.tick(), if !stop.is_cancelled() => {
                        if let Ok(Some(row)) = desk.store.assisted_call(order_id).await {
                            if row.capture == "cancelling" {
                                stop.cancel();
                            }
                        }
                    }
                }
            }
        };
        drop(tx);
        if let Ok(Some(left)) = writer.await {
            self.tries_left = left;
        }
        if agent_left {
            self.party_is(Party::Agent, None).await;
        }
        ran
    }

    async fn report(&self, p: Progress) {
        flush(self.desk, &self.order.id, &mut vec![p]).await;
    }

    /// The capture's IVR ended: the order has its result (or the
    /// cardholder is gone). See the module docs for who goes where.
    async fn captured(&mut self, outcome: Option<CallOutcome>) {
        let Some(holder) = self.holder.as_ref() else {
            return;
        };
        let ch = holder.id().to_owned();
        let code = match outcome {
            Some(CallOutcome::Approved) => "approved",
            Some(CallOutcome::Failed(c)) => c.code(),
            Some(CallOutcome::HungUpAwaitingBank) => "hung_up_awaiting_bank",
            Some(CallOutcome::NotReached) | None => "call_lost",
        };
        let gone = matches!(
            outcome,
            None | Some(CallOutcome::HungUpAwaitingBank)
                | Some(CallOutcome::Failed(ResultCode::CallerHungUp))
        );
        if gone {
            self.holder = None;
            if outcome.is_none() {
                let lost = ActiveCall {
                    order_id: self.order.id.clone(),
                    status: OrderStatus::InCall,
                    attempts: self.order.attempts,
                    channel_id: Some(ch.clone()),
                };
                settle_lost(self.desk, &lost).await;
                self.party_is(Party::Cardholder, None).await;
                self.desk.release(&ch).await;
            } else {
                self.holder_left(&ch, code).await;
            }
            self.send_agent_back().await;
            return;
        }
        self.hide_holder(false).await;
        if self.agent.is_none() {
            let (result, code) = order_vars(self.order_now().await);
            let rest = &self.desk.rest;
            hand_back_to(
                rest,
                &ch,
                RETURN_CONTEXT,
                Party::Cardholder.as_str(),
                result,
                code,
            )
            .await;
            self.holder = None;
            self.holder_left(&ch, code).await;
        } else {
            self.desk.end_attempt(&ch, "answered", Some(code)).await;
        }
    }
}

/// Writes each report as it comes, until the IVR's run drops its sender;
/// returns the tries left of the last one.
async fn write_progress(
    store: crate::store::Store,
    order_id: String,
    mut reports: UnboundedReceiver<Progress>,
) -> Option<u8> {
    let mut last = None;
    while let Some(p) = reports.recv().await {
        last = Some(p.tries_left);
        let Ok(json) = serde_json::to_string(&p) else {
            continue;
        };
        if let Err(e) = store
            .record_capture_progress(&order_id, &json, now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot record the capture's progress");
        }
    }
    last
}

/// Writes the reports as `capture` rows (and webhooks), oldest first.
async fn flush<M>(desk: &Desk<M>, order_id: &str, reports: &mut Vec<Progress>) {
    for p in reports.drain(..) {
        let Ok(json) = serde_json::to_string(&p) else {
            continue;
        };
        if let Err(e) = desk
            .store
            .record_capture_progress(order_id, &json, now_ms())
            .await
        {
            tracing::warn!(error = %e, "cannot record the capture's progress");
        }
    }
}

/// A channel the room will not take: handed back as an unknown code.
async fn refuse<M>(desk: &Desk<M>, line: &Line<'_>, party: Party) {
    hand_back_to(
        &desk.rest,
        line.id(),
        RETURN_CONTEXT,
        party.as_str(),
        "failure",
        CODE_INVALID,
    )
    .await;
}

/// `VOICEPAY_RESULT` and `VOICEPAY_CODE` for the order as it stands.
fn order_vars(order: &OrderRow) -> (&'static str, &'static str) {
    match (order.status(), order.result_code.as_deref()) {
        (OrderStatus::Succeeded, _) => ("success", "approved"),
        (_, Some(code)) => (
            "failure",
            crate::domain::ResultCode::ALL
                .iter()
                .find(|c| c.code() == code)
                .map_or("call_failed", |c| c.code()),
        ),
        _ => ("failure", "caller_hung_up"),
    }
}
