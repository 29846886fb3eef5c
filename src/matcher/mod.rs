//! The matcher (DESIGN.md): joins what the merchant sent (channel 1: the
//! order's sealed card and ID number) with what the cardholder keyed
//! (channel 2: a PIN, or expiry and CVN2), asks the issuer exactly once,
//! records the answer on the order and binds the card to the phone after
//! its first success.
//!
//! Exactly-once, whatever crashes or races happen:
//! - Only the caller whose conditional `in_call` → `authorizing` move wins
//!   talks to the issuer; a second verification for the same order waits
//!   for the first one's result instead of authorizing again.
//! - Each attempt has its own idempotency key, `{order id}:{n}`, where `n`
//!   counts the order's `in_call` → `authorizing` moves in the append-only
//!   event log. A wrong secret sends the order back to `in_call`, so a retry
//!   is attempt `n + 1` (the issuer's first answer per key is final); a
//!   crash leaves the order in `authorizing` with `n` recoverable from the
//!   log.
//! - No answer in time is resolved as the issuer link's
//!   [`UnknownOutcome`](crate::bank::UnknownOutcome) says, never by a second
//!   authorization: `Query` (the stub) asks for the key's answer with
//!   backoff (1, 2, 4, 8 s); `Reverse` (ISO 8583, which has no query) records
//!   the attempt's reversal at once and fails the order `issuer_unavailable`.
//!   See [`BankMatcher::recover`] for orders a crash left in `authorizing`.
//!
//! The call must belong to the order: a verification is only taken from a
//! channel placed for (or claimed by) that order, and for a transfer with
//! the order's code, for an inbound call from the order's phone (carriers'
//! prefixes taken off) or, without a mobile caller ID, after its order
//! code (see `calls.rs`). Anything else is refused before the issuer is asked.
//!
//! Secret guessing across calls is limited here too ([`VelocityLimits`],
//! `[limits]`): wrong secrets (PIN, or expiry and CVN2) are counted per card
//! fingerprint and per phone fingerprint per Asia/Shanghai day, and a card
//! or phone at its limit is refused (67) before its secret ever reaches the
//! issuer. The cardholder half comes first: for a bound payment the binding
//! must still be on file, and a try the issuer answers `id_mismatch` (66)
//! is never counted against the card (a stranger holding only the card
//! number cannot lock it), only against the phone.
//!
//! Which half was wrong is never told: an ID mismatch answers the caller
//! and the merchant exactly as a wrong secret does (`wrong_secret` 65, the
//! same order moves and details, the same tries left); only the audit log
//! (`bank` entries, not shown to merchants) and the operator log keep 66.
//!
//! Secrets: the PIN becomes a format 4 PIN block and is wiped at once;
//! expiry and CVN2 go to the issuer in their zeroizing types. Nothing here
//! logs, stores or puts in an event anything but masked numbers, attempt
//! numbers, approval codes and result codes.

#![warn(missing_docs)]

mod ask;
mod calls;
mod config;
mod port;
mod record;
mod recover;
mod refund;

pub use config::MatcherConfig;
pub use port::{CallRef, Matcher, Via};
pub use recover::Recovery;
pub use refund::{RefundDone, RefundFuture, RefundRefused, Refunder};

use crate::bank::{shanghai_day, AuthResponse, IssuerLink};
use crate::clock::{SharedClock, SystemClock};
use crate::config::VelocityLimits;
use crate::crypto::{Vault, ZonePinKey};
use crate::domain::{OrderStatus, ResultCode, Verification};
use crate::ivr::Verdict;
use crate::store::{OrderRow, Store, Transition};
use std::sync::Arc;

/// The real matcher: orders from the [`Store`], cards opened with the
/// [`Vault`], PINs enciphered with the zone PIN key, answers from an
/// [`IssuerLink`].
pub struct BankMatcher<I: IssuerLink> {
    store: Store,
    vault: Arc<Vault>,
    zpk: ZonePinKey,
    issuer: I,
    config: MatcherConfig,
    limits: VelocityLimits,
    clock: SharedClock,
}

impl<I: IssuerLink> std::fmt::Debug for BankMatcher<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankMatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of one authorization attempt.
#[derive(Debug)]
enum Answer {
    /// The issuer's final answer for the key.
    Known(AuthResponse),
    /// The issuer says it never processed the key.
    NotProcessed,
    /// Nobody knows yet: the issuer could not be asked.
    Unknown,
    /// The outcome was unknown and the attempt is being reversed (a link
    /// with [`crate::bank::UnknownOutcome::Reverse`]): the order fails
    /// `issuer_unavailable`.
    Reversed,
}

impl<I: IssuerLink> BankMatcher<I> {
    /// A matcher on the wall clock.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        zpk: ZonePinKey,
        issuer: I,
        config: MatcherConfig,
    ) -> Self {
        Self {
            store,
            vault,
            zpk,
            issuer,
            config,
            limits: VelocityLimits::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the wrong-secret limits per card and per phone
    /// (`[limits]`; the defaults otherwise).
    pub fn with_limits(mut self, limits: VelocityLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces the clock (order windows, the Shanghai day of PIN tries),
    /// so tests can cross midnight.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The issuer this matcher asks.
    pub fn issuer(&self) -> &I {
        &self.issuer
    }

    /// Verifies the keyed secret for the order and answers what the IVR
    /// should say. The order moves with the answer: `succeeded` (and the
    /// phone bound on the first success), back to `in_call` on a wrong
    /// secret (the caller may retry), or `failed` with the code.
    ///
    /// This is the one place an order moves `in_call` → `authorizing`: one
    /// conditional update that also checks the order's window, so only one
    /// verification per attempt ever reaches the issuer.
    ///
    /// Refused without asking the issuer: a `call` that does not belong to
    /// the order (`order_expired`; the order is left as it is), an order not
    /// in `in_call` or past its window (`order_expired`, or the order's own
    /// result when it is final) and a card or phone at its wrong-secret
    /// limit today (`pin_tries_exceeded`). A second verification while the first
    /// is with the issuer waits for the first one's result and answers it.
    /// A store or vault failure answers `issuer_unavailable`; an order that
    /// reached `authorizing` is then settled by [`BankMatcher::recover`].
    pub async fn verify(
        &self,
        order_id: &str,
        call: CallRef<'_>,
        verification: Verification,
    ) -> Verdict {
        match self.try_verify(order_id, call, verification).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The order stays where it is: if it reached `authorizing`,
                // recovery settles it by query.
                tracing::error!(order = %order_id, error = format!("{e:#}"), "verification failed");
                Verdict::Failed(ResultCode::IssuerUnavailable)
            }
        }
    }

    async fn try_verify(
        &self,
        order_id: &str,
        call: CallRef<'_>,
        verification: Verification,
    ) -> anyhow::Result<Verdict> {
        let found = self
            .store
            .order_with_call(order_id, call.channel_id)
            .await?;
        let Some((order, placed)) = found else {
            return Ok(Verdict::Failed(ResultCode::OrderExpired));
        };
        if !self.call_belongs(&order, call, placed) {
            drop(verification);
            return self.refuse_foreign_call(&order, call).await;
        }
        match order.status() {
            OrderStatus::InCall => {}
            OrderStatus::Authorizing => {
                drop(verification);
                return self.await_settled(&order).await;
            }
            _ => return self.settled_outcome(&order).await,
        }
        let pin = matches!(verification, Verification::Pin(_));
        if let Some(refused) = self.refuse_before_bank(&order).await? {
            drop(verification);
            return Ok(refused);
        }
        let detail = if pin {
            "PIN submitted"
        } else {
            "card details submitted"
        };
        // The cardholder half first: a bound payment whose binding is gone
        // is an ID mismatch, and its secret never reaches the issuer. Read
        // before the move, so that the move and its `bank` entry are one
        // write.
        let gone = self.binding_gone(&order).await?;
        let note = move |attempt: i64| {
            Some(if gone {
                "binding no longer on file".to_owned()
            } else {
                format!("authorize attempt {attempt}")
            })
        };
        let Some((order, attempt)) = self
            .store
            .start_authorization_attempt(order_id, detail, self.now_ms(), note)
            .await?
        else {
            // Cancelled, expired or taken by another verification meanwhile.
            drop(verification);
            return self.settled_or_wait(order_id).await;
        };
        // From here this call alone speaks to the issuer for the order; the
        // attempt number was counted in the move's own transaction.
        let key = format!("{order_id}:{attempt}");
        let req = match self.request(&order, &key, verification).await {
            Ok(req) => req,
            Err(e) => {
                // Nothing was sent, so failing the order cannot lose a payment.
                tracing::error!(order = %order_id, error = format!("{e:#}"), "cannot build the authorization");
                let code = ResultCode::IssuerUnavailable;
                self.settle(
                    order_id,
                    OrderStatus::Failed,
                    Some(code),
                    Some("authorization could not be built"),
                )
                .await?;
                return Ok(Verdict::Failed(code));
            }
        };
        let answer = if gone {
            drop(req);
            Answer::Known(AuthResponse::new(crate::bank::Decision::Declined(
                ResultCode::IdMismatch,
            )))
        } else {
            self.authorize(order_id, &key, req).await?
        };
        self.record(&order, &key, answer, true).await
    }

    /// A bound order whose binding was deleted (or replaced) since.
    async fn binding_gone(&self, order: &OrderRow) -> anyhow::Result<bool> {
        let Some(bound) = order.binding_id.as_deref() else {
            return Ok(false);
        };
        let now = self
            .store
            .binding_for_phone(&order.merchant_id, &order.phone)
            .await?;
        Ok(now.is_none_or(|b| b.id != bound))
    }

    /// What ends an `in_call` order without asking the issuer: its window
    /// has passed (`order_expired`), or its card or its phone is at its
    /// wrong-secret limit for today (`pin_tries_exceeded`). `None` when it
    /// may go to the bank.
    async fn refuse_before_bank(&self, order: &OrderRow) -> anyhow::Result<Option<Verdict>> {
        let now = self.now_ms();
        if now >= order.expires_at {
            let code = ResultCode::OrderExpired;
            let stopped = self
                .store
                .stop_order(&order.id, OrderStatus::Expired, code)
                .await?;
            if stopped.is_some() {
                return Ok(Some(Verdict::Failed(code)));
            }
            return self.settled_or_wait(&order.id).await.map(Some);
        }
        let (card, phone) = self.tries_today(order).await?;
        let which = if card >= i64::from(self.limits.wrong_secrets_per_card_day) {
            "card"
        } else if phone >= i64::from(self.limits.wrong_secrets_per_phone_day) {
            "phone"
        } else {
            return Ok(None);
        };
        let t = Transition {
            from: OrderStatus::InCall,
            to: OrderStatus::Failed,
            result: Some(ResultCode::PinTriesExceeded),
            detail: Some("secret tries exceeded for today"),
        };
        if self.store.transition(&order.id, t, now).await? {
            // Which limit held is for the audit log only.
            self.store
                .append_event(
                    &order.id,
                    "matcher",
                    &format!("wrong secrets: {which} locked for today"),
                    now,
                )
                .await?;
            tracing::info!(order = %order.id, card = %order.card_masked, limit = which, "wrong-secret limit reached for today");
            return Ok(Some(Verdict::Failed(ResultCode::PinTriesExceeded)));
        }
        self.settled_or_wait(&order.id).await.map(Some)
    }

    /// Today's wrong secrets (Asia/Shanghai) for the order's card and for
    /// its phone.
    async fn tries_today(&self, order: &OrderRow) -> anyhow::Result<(i64, i64)> {
        let day = shanghai_day(self.clock.now()).to_string();
        let (card, phone) = self
            .store
            .tries_today(&order.card_fp, &self.phone_fp(order), &day)
            .await?;
        Ok((card, phone))
    }

    /// The order's phone as its keyed fingerprint (the counters never hold
    /// the number).
    fn phone_fp(&self, order: &OrderRow) -> String {
        self.vault.fingerprint("phone", &order.phone)
    }

    /// Counts a wrong secret for the order's card today (at least
    /// `at_least`); returns today's count.
    async fn count_wrong_on_card(
        &self,
        order: &OrderRow,
        key: &str,
        at_least: i64,
    ) -> anyhow::Result<i64> {
        let day = shanghai_day(self.clock.now()).to_string();
        Ok(self
            .store
            .record_wrong_pin(&order.card_fp, &day, key, at_least, self.now_ms())
            .await?)
    }

    /// Counts a wrong secret (or an ID mismatch) keyed on the order's phone
    /// today; returns today's count.
    async fn count_wrong_on_phone(&self, order: &OrderRow, key: &str) -> anyhow::Result<i64> {
        let day = shanghai_day(self.clock.now()).to_string();
        Ok(self
            .store
            .record_wrong_secret_on_phone(&self.phone_fp(order), &day, key, self.now_ms())
            .await?)
    }

    /// A `bank` entry in the order's audit log.
    async fn event(&self, order_id: &str, detail: &str) -> anyhow::Result<()> {
        self.store
            .append_event(order_id, "bank", detail, self.now_ms())
            .await?;
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

impl<I: IssuerLink> Matcher for BankMatcher<I> {
    async fn verify(
        &self,
        order_id: &str,
        call: CallRef<'_>,
        verification: Verification,
    ) -> Verdict {
        BankMatcher::verify(self, order_id, call, verification).await
    }
}

/// Tries left today after `used` wrong ones of `limit`.
fn remaining(used: i64, limit: u32) -> u8 {
    u8::try_from((i64::from(limit) - used).max(0)).unwrap_or(u8::MAX)
}
