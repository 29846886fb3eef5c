//! The reversal worker: sends the store-and-forward reversals that
//! [`crate::store::Store::reverse_request`] records, until the acquirer
//! acknowledges each.
//!
//! Every node runs one. Each round it leases the due reversals
//! ([`Store::due_reversals`], so two nodes never send one at once and a
//! dead node's lease runs out), counts each advice before writing it
//! ([`Store::reversal_sending`]: after a crash the next one is a repeat),
//! and sends it over the [`Exchange`]: `0420` the first time, `0421` after
//! that (ISO 8583:1987), with F2 (the order's card, opened from the
//! [`Vault`]), F3 and F4 of the original, F7 now, F11 a new STAN, F32, F41
//! and F90 naming the original (MTI, STAN, F7, F32). A `0430` with the same
//! F90 (whatever its F39) acknowledges it; anything else (no answer, the
//! link down, a malformed answer) is noted on the row
//! ([`Store::note_reversal_error`]) and the advice is repeated after the
//! response timeout plus [`crate::store::reversal_backoff_ms`] (5 s
//! doubling to 5 minutes), never given up. While the link is not ready
//! (not signed on: [`ReversalWorker::with_ready`]) no round runs, so a
//! link that is down does not use up the back-off.

use super::exchange::Exchange;
use super::fields::ProcessingCode;
use super::issuer::Terminal;
use super::{Message, Mti};
use crate::bank::shanghai_day;
use crate::clock::{SharedClock, SystemClock};
use crate::crypto::Vault;
use crate::domain::{Amount, CardNumber};
use crate::store::{PendingReversal, Store};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reversals leased per round.
const BATCH: i64 = 50;

/// What one [`ReversalWorker::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReversalRound {
    /// Advices sent (0420 or 0421).
    pub sent: usize,
    /// Reversals a 0430 acknowledged.
    pub acknowledged: usize,
    /// Advices that went unanswered or could not be sent (to be repeated).
    pub failed: usize,
}

/// Sends due reversal advices over an [`Exchange`]; see the module docs.
pub struct ReversalWorker<E> {
    link: E,
    store: Store,
    vault: Arc<Vault>,
    terminal: Terminal,
    response_timeout: Duration,
    node: String,
    clock: SharedClock,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl<E: Exchange> ReversalWorker<E> {
    /// A worker leasing reversals as `node` (unique per running daemon),
    /// opening cards with `vault`, sending as `terminal` over `link`, whose
    /// response timeout is `response_timeout` (a lease lasts twice that).
    pub fn new(
        link: E,
        store: Store,
        vault: Arc<Vault>,
        terminal: Terminal,
        response_timeout: Duration,
        node: String,
    ) -> Self {
        Self {
            link,
            store,
            vault,
            terminal,
            response_timeout,
            node,
            clock: Arc::new(SystemClock),
            ready: Arc::new(|| true),
        }
    }

    /// Runs rounds only while `ready` says so (the daemon: while the link
    /// is signed on); always, by default.
    pub fn with_ready(mut self, ready: Arc<dyn Fn() -> bool + Send + Sync>) -> Self {
        self.ready = ready;
        self
    }

    /// Replaces the clock (leases, F7, the STAN's day).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn timeout_ms(&self) -> i64 {
        i64::try_from(self.response_timeout.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// One round: leases what is due now and sends each advice once;
    /// nothing (an empty round) while the link is not ready.
    ///
    /// # Errors
    /// A store failure leasing the rows; a failure on one row is noted on
    /// it and counted in [`ReversalRound::failed`].
    pub async fn run_once(&self) -> anyhow::Result<ReversalRound> {
        if !(self.ready)() {
            return Ok(ReversalRound::default());
        }
        let now = self.clock.now_ms();
        let lease_until = now.saturating_add(self.timeout_ms().saturating_mul(2) + 5_000);
        let due = self
            .store
            .due_reversals(&self.node, now, lease_until, BATCH)
            .await
            .context("leasing due reversals")?;
        let mut round = ReversalRound::default();
        for r in due {
            match self.send_one(&r).await {
                Ok(None) => {}
                Ok(Some(true)) => {
                    round.sent += 1;
                    round.acknowledged += 1;
                }
                Ok(Some(false)) => {
                    round.sent += 1;
                    round.failed += 1;
                }
                Err(e) => {
                    tracing::warn!(reversal = %r.id, order = %r.order_id, error = format!("{e:#}"), "reversal advice not sent");
                    let why = format!("{e:#}");
                    if let Err(e) = self.store.note_reversal_error(&r.id, &why).await {
                        tracing::error!(reversal = %r.id, error = %e, "cannot note the reversal's error");
                    }
                    round.failed += 1;
                }
            }
        }
        Ok(round)
    }

    /// Sends the advice for `r`: `None` when the lease was lost (another
    /// node counted it), else whether a 0430 acknowledged it.
    async fn send_one(&self, r: &PendingReversal) -> anyhow::Result<Option<bool>> {
        // Built first: a row whose card cannot be read is not counted.
        let mti = r.mti();
        let msg = self.advice(r).await?;
        let now = self.clock.now_ms();
        if !self
            .store
            .reversal_sending(r, &self.node, self.timeout_ms(), now)
            .await?
        {
            return Ok(None);
        }
        let stan = msg.stan();
        tracing::info!(reversal = %r.id, order = %r.order_id, mti, stan = ?stan, original_stan = %r.original.stan, "sending a reversal advice");
        let why = match self.link.exchange(msg).await {
            Ok(answer)
                if answer.mti() == Mti::REVERSAL_RESPONSE
                    && answer.text(90) == r.original.to_f90().ok().as_deref() =>
            {
                let f39 = answer.response_code();
                let f39 = f39.as_ref().map_or("none", |c| c.as_str());
                self.store
                    .acknowledge_reversal(&r.original, self.clock.now_ms())
                    .await?;
                tracing::info!(reversal = %r.id, order = %r.order_id, f39, "reversal acknowledged");
                return Ok(Some(true));
            }
            Ok(answer) => format!("unexpected answer {}", answer.mti()),
            Err(e) => e.to_string(),
        };
        tracing::warn!(reversal = %r.id, order = %r.order_id, mti, error = %why, "reversal advice unanswered; will repeat");
        self.store.note_reversal_error(&r.id, &why).await?;
        Ok(Some(false))
    }

    /// The 0420/0421 for `r`.
    async fn advice(&self, r: &PendingReversal) -> anyhow::Result<Message> {
        let order = self
            .store
            .order(&r.order_id)
            .await?
            .context("the reversed order is gone")?;
        let pan = self
            .vault
            .open("card_number", &order.card_enc)
            .context("opening the card number")?;
        let card = std::str::from_utf8(&pan)
            .ok()
            .and_then(|s| CardNumber::parse(s).ok())
            .context("the sealed card number is not a card number")?;
        let code = ProcessingCode::parse(&r.processing_code)
            .context("the reversal's processing code is not one voicepay sends")?;
        let amount = Amount::parse(r.amount, i64::MAX)
            .ok()
            .context("the reversal's amount is not an amount")?;
        let now = self.clock.now();
        let stan = self.store.next_stan(shanghai_day(now)).await?;
        let mti = if r.attempts == 0 {
            Mti::REVERSAL_ADVICE
        } else {
            Mti::REVERSAL_ADVICE_REPEAT
        };
        let mut m = Message::new(mti);
        m.set_pan(&card)?
            .set_processing_code(code)?
            .set_amount(amount)?
            .set_transmission_time(now)?
            .set_stan(stan)?
            .set_acquirer_id(&self.terminal.acquirer_id)?
            .set_terminal_id(&self.terminal.terminal_id)?
            .set_currency_cny()?
            .set_original(&r.original)?;
        Ok(m)
    }

    /// Runs rounds every `every` until `stop` fires; a round's failure is
    /// logged and the next round tries again.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok(round) if round != ReversalRound::default() => {
                    tracing::info!(
                        sent = round.sent,
                        acknowledged = round.acknowledged,
                        failed = round.failed,
                        "reversal round"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = format!("{e:#}"), "reversal round failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
