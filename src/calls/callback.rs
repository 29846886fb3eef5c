//! The callback flow: claim a due `pending` callback order from the
//! database, ring the cardholder through ARI, run the IVR when they answer,
//! and retry or fail the order when they do not.
//!
//! Each originate gets our channel id `vp-<order>-<attempt>` and is
//! registered in [`Desk`] before the request is sent, since its first
//! events can beat the HTTP response. `appArgs` is `callback,<order>`:
//! never anything secret. A semaphore bounds simultaneous calls per node
//! (`telephony.max_concurrent_calls`); when it is full the worker waits
//! (orders stay `pending`), it never fails an order for lack of capacity.
//! Up to `telephony.max_concurrent_originates` originates are in flight at
//! once; each is marked `originating` until its `POST /channels` returns,
//! so a reconnect meanwhile does not take it for a lost call.
//!
//! Claims: every `telephony.claim_renew_secs`, connected to ARI or not, the
//! node renews its claims on the orders of the calls it is placing or
//! running, so only a stopped node's claims run out; then another node
//! takes each over and settles it ([`Desk::reclaim_stale`]).

use super::matcher::{Matcher, Via};
use super::runner::{CallEnd, CallRunner};
use crate::ari::{self, AriCommands, AriError, AriRest, Call, HangupReason, Originate};
use crate::config::Settings;
use crate::crypto::Vault;
use crate::domain::{CardKind, Language, OrderStatus, ResultCode};
use crate::ivr::{CallInfo, CallOutcome, Ivr, IvrConfig, YearMonth};
use crate::store::{now_ms, ActiveCall, OrderRow, Store, Transition};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How often the worker looks for due orders when it found none.
const POLL: Duration = Duration::from_millis(500);
/// Slack on top of the longest call in a claim's length.
const CLAIM_MARGIN: Duration = Duration::from_secs(60);
/// Pause before looking for the channel of an originate that timed out.
const ORIGINATE_RECHECK: Duration = Duration::from_secs(1);

/// One originate of ours, from claim until its call task ends.
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
}

/// Why an unanswered call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanswered {
    NoAnswer,
    Busy,
    Failed,
}

impl Unanswered {
    /// From the last Dial status and the channel's hang-up cause. When our
    /// own originate timeout ends the ringing, ARI sends no final Dial
    /// status, only ChannelDestroyed with cause 19.
    fn classify(dialstatus: &str, cause: Option<i64>) -> Self {
        match (dialstatus, cause) {
            ("BUSY", _) | (_, Some(17)) => Unanswered::Busy,
            ("NOANSWER", _) | (_, Some(19)) => Unanswered::NoAnswer,
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

/// The call desk of one node: the claim worker, the placed calls and
/// their tasks, for every flow. Shared by the worker and the ARI supervisor.
pub struct Desk<M> {
    pub(super) store: Store,
    pub(super) vault: Arc<Vault>,
    pub(super) settings: Arc<Settings>,
    pub(super) rest: AriRest,
    pub(super) matcher: Arc<M>,
    /// This node's name in `orders.claimed_by`: its Stasis app name, which
    /// is unique per node anyway (one WebSocket owns an app).
    pub(super) node: String,
    pub(super) placed: Mutex<HashMap<String, Placed>>,
    pub(super) permits: Arc<Semaphore>,
    /// Originates in flight (`telephony.max_concurrent_originates`).
    originates: Arc<Semaphore>,
    connected: AtomicBool,
    pub(super) wake: Notify,
}

impl<M: Matcher + 'static> Desk<M> {
    /// The desk for `settings`, calling through `rest`.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        settings: Arc<Settings>,
        rest: AriRest,
        matcher: Arc<M>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            vault,
            node: settings.ari.app.clone(),
            permits: Arc::new(Semaphore::new(
                settings.telephony.max_concurrent_calls.max(1),
            )),
            originates: Arc::new(Semaphore::new(
                settings.telephony.max_concurrent_originates.max(1),
            )),
            settings,
            rest,
            matcher,
            placed: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            wake: Notify::new(),
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

    /// Runs until `shutdown`: renews this node's claims every
    /// [`Desk::renew_every`] whether or not ARI is connected (a call
    /// held through an outage keeps its claim), and claims and originates
    /// due orders only while ARI is connected (an originate needs the
    /// socket to see its events), settling meanwhile, as often, the calls
    /// of nodes that stopped.
    pub async fn run_worker(self: Arc<Self>, shutdown: CancellationToken) {
        let renewals = tokio::spawn(self.clone().keep_claims(shutdown.clone()));
        self.claim_due(&shutdown).await;
        // Ends with `shutdown` (claim_due only returns on it).
        let _ = renewals.await;
    }

    /// Renews the claims of the calls this node places or runs, every
    /// [`Desk::renew_every`], until `shutdown`.
    async fn keep_claims(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.renew_every();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.renew_claims(now_ms()).await;
        }
    }

    /// Extends the claims on the orders of every call this node is placing
    /// or running to `now` + the claim length. Returns how many moved.
    pub async fn renew_claims(&self, now: i64) -> u64 {
        let orders: Vec<String> = {
            let placed = self.placed.lock().await;
            let mut ids: Vec<String> = placed.values().map(|p| p.order_id.clone()).collect();
            ids.sort();
            ids.dedup();
            ids
        };
        if orders.is_empty() {
            return 0;
        }
        match self
            .store
            .renew_claims(&self.node, &orders, now + self.claim_hold_ms())
            .await
        {
            Ok(n) => {
                tracing::debug!(calls = orders.len(), renewed = n, "claims renewed");
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew this node's claims");
                0
            }
        }
    }

    /// The claim loop of [`Desk::run_worker`]; returns on `shutdown`.
    async fn claim_due(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut next_reclaim = tokio::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if self.connected.load(Ordering::Acquire) && tokio::time::Instant::now() >= next_reclaim
            {
                self.reclaim_stale(now_ms()).await;
                next_reclaim = tokio::time::Instant::now() + self.renew_every();
            }
            if !self.connected.load(Ordering::Acquire) {
                self.pause(shutdown).await;
                continue;
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            // The originate slot comes first, so a claimed order is placed
            // at once rather than waiting while it counts as `calling`.
            let slot = tokio::select! {
                _ = shutdown.cancelled() => return,
                s = self.originates.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            match self.claim(permit).await {
                Ok(Some((order, channel_id))) => {
                    // Placed concurrently: one slow `POST /channels` (Asterisk
                    // busy) does not hold back the next due order.
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.originate(&order, &channel_id).await;
                        drop(slot);
                    });
                }
                Ok(None) => self.pause(shutdown).await,
                Err(e) => {
                    tracing::warn!(error = %e, "callback claim failed");
                    self.pause(shutdown).await;
                }
            }
        }
    }

    async fn pause(&self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }

    /// Claims one due order and registers its channel; the permit stays
    /// with the placed call. None (permit released) when nothing is due.
    async fn claim(
        &self,
        permit: OwnedSemaphorePermit,
    ) -> anyhow::Result<Option<(OrderRow, String)>> {
        let mut placed = self.placed.lock().await;
        let now = now_ms();
        let Some(order) = self
            .store
            .claim_callback(&self.node, now, now + self.claim_hold_ms())
            .await?
        else {
            return Ok(None);
        };
        let channel_id = format!("vp-{}-{}", order.id, order.attempts);
        self.store
            .insert_attempt(&order.id, order.attempts, &channel_id, now)
            .await?;
        placed.insert(
            channel_id.clone(),
            Placed {
                order_id: order.id.clone(),
                attempt: order.attempts,
                permit: Some(permit),
                running: false,
                originating: true,
            },
        );
        Ok(Some((order, channel_id)))
    }

    async fn originate(&self, order: &OrderRow, channel_id: &str) {
        let t = &self.settings.telephony;
        let request = Originate {
            endpoint: t.callback_endpoint.replace("{phone}", &order.phone),
            app: self.settings.ari.app.clone(),
            app_args: vec!["callback".into(), order.id.clone()],
            caller_id: Some(t.caller_id.clone()).filter(|c| !c.is_empty()),
            timeout_secs: u32::try_from(t.ring_timeout_secs).unwrap_or(u32::MAX),
            channel_id: channel_id.to_owned(),
            variables: BTreeMap::new(),
        };
        tracing::info!(order = %order.id, channel = %channel_id, attempt = order.attempts, "placing callback");
        let mut resent = false;
        let mut placed = loop {
            let result = self.rest.originate(&request).await;
            let mut placed = self.placed.lock().await;
            let Some(p) = placed.get_mut(channel_id) else {
                // Its call task already ended (events beat the answer).
                return;
            };
            p.originating = false;
            let e = match result {
                Ok(_) => return,
                // Our own channel id exists: the first POST placed it.
                Err(AriError::Conflict(_)) if resent => return,
                Err(e) => e,
            };
            if p.running {
                // The POST failed (timed out) yet the channel exists: its
                // events reached a call task first, which settles the order.
                tracing::warn!(order = %order.id, channel = %channel_id, error = %e, "originate answered with an error, but the call is running; left to it");
                return;
            }
            if resent || !matches!(e, AriError::Transport(_)) {
                tracing::warn!(order = %order.id, channel = %channel_id, error = %e, "originate failed");
                break placed;
            }
            // No answer, or the connection failed (a busy Asterisk can take
            // longer than our timeout, or drop a kept-alive connection): the
            // call may have been placed. Never originate again blindly:
            // look for the channel first; only when Asterisk shows none is
            // the same request sent once more. Our channel id makes that
            // safe: a second POST for an existing channel is refused (409).
            drop(placed);
            if self.placed_anyway(order, channel_id).await {
                return;
            }
            let mut placed = self.placed.lock().await;
            match placed.get_mut(channel_id) {
                Some(p) if !p.running => p.originating = true,
                _ => return,
            }
            drop(placed);
            tracing::info!(order = %order.id, channel = %channel_id, error = %e, "originate got no answer and placed no channel; sending it once more");
            resent = true;
        };
        // The attempt fails and the order's retry schedule applies.
        let gone = placed.remove(channel_id);
        drop(placed);
        drop(gone);
        self.unanswered(
            &order.id,
            order.attempts,
            channel_id,
            Unanswered::Failed,
            None,
        )
        .await;
        self.wake.notify_one();
    }

    /// After an originate that got no answer: whether its channel exists
    /// after all (or its events already reached a call task), so the call
    /// is left to its events. Looks a few times, [`ORIGINATE_RECHECK`]
    /// apart; false when Asterisk shows no such channel.
    async fn placed_anyway(&self, order: &OrderRow, channel_id: &str) -> bool {
        for _ in 0..3 {
            tokio::time::sleep(ORIGINATE_RECHECK).await;
            if self
                .placed
                .lock()
                .await
                .get(channel_id)
                .is_none_or(|p| p.running)
            {
                return true;
            }
            match self.rest.channels().await {
                Ok(list) if list.iter().any(|c| c.id == channel_id) => {
                    tracing::warn!(order = %order.id, channel = %channel_id, "originate timed out, but the call was placed; left to its events");
                    return true;
                }
                Ok(_) => return false,
                Err(e) => {
                    tracing::debug!(order = %order.id, error = %e, "cannot list channels yet");
                }
            }
        }
        false
    }

    /// Whether `channel_id` is one of our originates still waiting for its
    /// call task.
    pub async fn owns(&self, channel_id: &str) -> bool {
        self.placed.lock().await.contains_key(channel_id)
    }

    /// Runs the call of one of our originates to its end: unanswered (retry
    /// or fail) or answered (the IVR). Returns false, doing nothing, when the
    /// channel is not ours.
    pub async fn take_call(self: &Arc<Self>, call: Call) -> bool {
        let (order_id, attempt, permit) = {
            let mut placed = self.placed.lock().await;
            let Some(p) = placed.get_mut(&call.channel_id) else {
                return false;
            };
            p.running = true;
            (p.order_id.clone(), p.attempt, p.permit.take())
        };
        let this = self.clone();
        tokio::spawn(async move {
            let channel_id = call.channel_id.clone();
            this.drive(call, &order_id, attempt).await;
            this.placed.lock().await.remove(&channel_id);
            drop(permit);
            this.wake.notify_one();
        });
        true
    }

    async fn drive(&self, call: Call, order_id: &str, attempt: i64) {
        let Call {
            channel_id,
            first,
            mut events,
            ..
        } = call;
        let mut dialstatus = String::new();
        let mut cause = None;
        let mut next = Some(first);
        loop {
            let event = match next.take() {
                Some(e) => e,
                None => match events.recv().await {
                    Some(e) => e,
                    None => break,
                },
            };
            match event {
                ari::Event::StasisStart { .. } => {
                    self.answered(order_id, &channel_id, &mut events).await;
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
        let why = Unanswered::classify(&dialstatus, cause);
        tracing::info!(order = %order_id, channel = %channel_id, %dialstatus, ?cause, ?why, "callback not answered");
        let cause = cause.map(|c| c.to_string());
        self.unanswered(order_id, attempt, &channel_id, why, cause.as_deref())
            .await;
    }

    /// Records the failed attempt, then `pending` again after the retry
    /// interval while attempts remain, else `failed`.
    async fn unanswered(
        &self,
        order_id: &str,
        attempt: i64,
        channel_id: &str,
        why: Unanswered,
        cause: Option<&str>,
    ) {
        let now = now_ms();
        if let Err(e) = self
            .store
            .attempt_ended(channel_id, why.outcome(), cause, now)
            .await
        {
            tracing::warn!(order = %order_id, error = %e, "cannot record the call attempt");
        }
        self.retry_or_fail(order_id, attempt, why.result()).await;
    }

    /// From `calling`: back to the queue while attempts remain, else
    /// `failed` with `result`.
    async fn retry_or_fail(&self, order_id: &str, attempts: i64, result: ResultCode) {
        let t = &self.settings.telephony;
        let now = now_ms();
        let outcome = if attempts < i64::from(t.max_attempts) {
            let at = now + t.retry_interval_secs as i64 * 1000;
            self.store
                .retry_callback_later(order_id, at, result.code(), now)
                .await
        } else {
            let fail = Transition {
                from: OrderStatus::Calling,
                to: OrderStatus::Failed,
                result: Some(result),
                detail: Some("no attempts left"),
            };
            self.store.transition(order_id, fail, now).await
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => tracing::info!(order = %order_id, "order left calling meanwhile"),
            Err(e) => tracing::warn!(order = %order_id, error = %e, "cannot settle the order"),
        }
    }

    /// The cardholder answered: `calling` → `in_call`, the IVR, the order
    /// settled by the runner.
    async fn answered(
        &self,
        order_id: &str,
        channel_id: &str,
        events: &mut tokio::sync::mpsc::UnboundedReceiver<ari::Event>,
    ) {
        let now = now_ms();
        let _ = self.store.attempt_answered(channel_id, now).await;
        let t = Transition {
            from: OrderStatus::Calling,
            to: OrderStatus::InCall,
            result: None,
            detail: Some("answered"),
        };
        let order = match self.store.transition(order_id, t, now).await {
            Ok(true) => self.store.order(order_id).await.ok().flatten(),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(order = %order_id, error = %e, "cannot move order to in_call");
                None
            }
        };
        let Some(order) = order else {
            // Cancelled or expired while ringing: nothing to pay.
            let _ = self.rest.hangup(channel_id, HangupReason::Normal).await;
            let _ = self
                .store
                .attempt_ended(channel_id, "answered", Some("order_not_payable"), now_ms())
                .await;
            return;
        };
        self.run_order(&order, channel_id, &Via::Callback, events, CallEnd::Hangup)
            .await;
    }

    /// Runs the IVR for `order`, already `in_call` on `channel_id`: answers
    /// the channel (harmless when it is up already), settles the order when
    /// the call ends without a decision or is lost with Asterisk (see
    /// `settle_lost`), and closes the attempt row.
    /// Shared by the callback, transfer and inbound flows.
    pub(super) async fn run_order(
        &self,
        order: &OrderRow,
        channel_id: &str,
        via: &Via,
        events: &mut tokio::sync::mpsc::UnboundedReceiver<ari::Event>,
        end: CallEnd,
    ) -> Option<CallOutcome> {
        let order_id = order.id.as_str();
        if let Err(e) = self.rest.answer(channel_id).await {
            tracing::debug!(channel = %channel_id, error = %e, "answer failed (already up?)");
        }
        let lang = Language::parse(&order.language).unwrap_or(Language::Zh);
        let ivr = Ivr::new(
            IvrConfig::from(&self.settings.ivr),
            self.call_info(order, lang),
        );
        let runner = CallRunner {
            ari: &self.rest,
            matcher: self.matcher.as_ref(),
            store: &self.store,
            order_id,
            channel_id,
            via,
            lang: lang.as_str(),
            end,
        };
        let outcome = runner.run(ivr, events).await;
        let code = match outcome {
            Some(CallOutcome::Approved) => "approved",
            Some(CallOutcome::Failed(c)) => c.code(),
            Some(CallOutcome::HungUpAwaitingBank) => "hung_up_awaiting_bank",
            None => {
                // Lost with Asterisk: settled like a call found lost at
                // reconciliation (retried while attempts remain, else
                // `call_failed`), never as the caller's hang-up.
                let lost = ActiveCall {
                    order_id: order_id.to_owned(),
                    status: OrderStatus::InCall,
                    attempts: order.attempts,
                    channel_id: Some(channel_id.to_owned()),
                };
                self.settle_lost(&lost).await;
                return None;
            }
        };
        if let Err(e) = self
            .store
            .attempt_ended(channel_id, "answered", Some(code), now_ms())
            .await
        {
            tracing::warn!(order = %order_id, error = %e, "cannot record the call attempt");
        }
        outcome
    }

    /// What the IVR says about the order: amount, last four digits (from
    /// the sealed card; the plain number is wiped at once), card kind.
    pub(super) fn call_info(&self, order: &OrderRow, language: Language) -> CallInfo {
        let last4 = match self.vault.open("card_number", &order.card_enc) {
            Ok(pan) => {
                let tail = pan.len().saturating_sub(4);
                String::from_utf8_lossy(&pan[tail..]).into_owned()
            }
            Err(_) => {
                let m = &order.card_masked;
                m[m.len().saturating_sub(4)..].to_owned()
            }
        };
        let today = time::OffsetDateTime::now_utc();
        CallInfo {
            language,
            amount_fen: order.amount,
            card_last4: last4,
            card_kind: CardKind::parse(&order.card_type),
            bound: order.binding_id.is_some(),
            today: YearMonth {
                year: u16::try_from(today.year()).unwrap_or(2000),
                month: u8::from(today.month()),
            },
        }
    }

    /// The events socket is up (true) or down (false).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
        if up {
            self.wake.notify_one();
        }
    }

    /// After a (re)connect: settles the orders this node holds in `calling`
    /// or `in_call` whose call nobody is driving any more (a previous run of
    /// the daemon, or an originate whose channel vanished with an Asterisk
    /// restart). Calls with a running task are left to it: if their channel
    /// is gone, their event stream ends and the task settles them. So are
    /// originates whose `POST /channels` is still in flight: their channel
    /// may be created after `channels` was read, and a failed POST settles
    /// them in [`Desk::originate`]. An order
    /// a previous run left in `authorizing` only loses its call (hung up,
    /// the attempt closed): the bank decides it, through the matcher's
    /// start-up recovery.
    pub async fn reconcile(&self, asterisk_restarted: bool, channels: &[ari::Channel]) {
        let alive: HashSet<&str> = if asterisk_restarted {
            HashSet::new()
        } else {
            channels.iter().map(|c| c.id.as_str()).collect()
        };
        let mut placed = self.placed.lock().await;
        placed.retain(|channel, p| p.running || p.originating || alive.contains(channel.as_str()));
        let active = match self.store.active_calls(&self.node).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation: cannot list active calls");
                return;
            }
        };
        for call in active {
            let channel = call.channel_id.as_deref().unwrap_or("");
            if placed.contains_key(channel) {
                continue;
            }
            if alive.contains(channel) {
                // A call from before our restart: its IVR state is lost.
                self.drop_lost_channel(&call.order_id, channel).await;
            }
            if call.status == OrderStatus::Authorizing {
                if let Some(channel) = &call.channel_id {
                    let _ = self
                        .store
                        .attempt_ended(channel, "answered", Some("call_lost"), now_ms())
                        .await;
                }
                continue;
            }
            self.settle_lost(&call).await;
        }
    }

    /// Ends a still-live call whose IVR state was lost: hung up, except a
    /// transferred caller, who goes back to the merchant's agent with
    /// `failure`/`service_unavailable` (as when voicepay is down).
    async fn drop_lost_channel(&self, order_id: &str, channel: &str) {
        let transfer = matches!(
            self.store.order(order_id).await,
            Ok(Some(o)) if o.mode == "transfer"
        );
        if transfer {
            self.hand_back(channel, "failure", "service_unavailable")
                .await;
        } else {
            let _ = self.rest.hangup(channel, HangupReason::Normal).await;
        }
    }

    /// Settles the calls of nodes that stopped renewing their claims (a
    /// crashed or removed node): each is taken over first, so exactly one
    /// node acts, then the order is retried or failed like any lost call.
    ///
    /// Each node has its own Asterisk, so a stale call's channel is usually
    /// not on ours. Only a callback channel (our id, `vp-<order>-<n>`,
    /// unique) is hung up through this node's Asterisk, which answers 404
    /// when the channel is elsewhere. A transferred or inbound call's
    /// channel id is Asterisk's own (`<epoch>.<seq>`) and could name an
    /// unrelated call here, so it is left alone.
    /// Returns how many were settled.
    pub async fn reclaim_stale(&self, now: i64) -> usize {
        let stale = match self.store.stale_claims(now, 100).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list stale claims");
                return 0;
            }
        };
        let mut settled = 0;
        for claim in stale {
            let channel = claim.call.channel_id.clone().unwrap_or_default();
            if claim.node == self.node && self.placed.lock().await.contains_key(&channel) {
                continue; // ours and still driven: its task settles it
            }
            match self
                .store
                .take_over_claim(&claim, &self.node, now + self.claim_hold_ms(), now)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(order = %claim.call.order_id, error = %e, "cannot take over a stale claim");
                    continue;
                }
            }
            tracing::warn!(order = %claim.call.order_id, node = %claim.node, "claim ran out; settling the abandoned call");
            if channel.starts_with("vp-") {
                self.drop_lost_channel(&claim.call.order_id, &channel).await;
            }
            self.settle_lost(&claim.call).await;
            settled += 1;
        }
        settled
    }

    async fn settle_lost(&self, call: &ActiveCall) {
        tracing::warn!(order = %call.order_id, status = ?call.status, "call lost; settling the order");
        if let Some(channel) = &call.channel_id {
            let _ = self
                .store
                .attempt_ended(channel, "failed", Some("call_lost"), now_ms())
                .await;
        }
        if call.status == OrderStatus::InCall {
            let back = Transition {
                from: OrderStatus::InCall,
                to: OrderStatus::Calling,
                result: None,
                detail: Some("call lost"),
            };
            match self.store.transition(&call.order_id, back, now_ms()).await {
                Ok(true) => {}
                _ => return,
            }
        }
        self.retry_or_fail(&call.order_id, call.attempts, ResultCode::CallFailed)
            .await;
    }
}
