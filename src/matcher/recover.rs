//! Start-up recovery: orders a crash (or a lost database write) left in
//! `authorizing` are settled by asking the issuer about the attempt's own
//! idempotency key. Nothing is ever authorized again.
//!
//! The rule, per order, once it has sat in `authorizing` for
//! [`MatcherConfig::recover_after`](super::MatcherConfig) (longer than any
//! live verification takes, so recovery never races one):
//! - the issuer has an answer for `{order id}:{n}` → the order follows it:
//!   approved → `succeeded` (and the phone is bound); declined → `failed`
//!   with the code; a wrong secret → `failed` `wrong_secret` (the caller who
//!   could have retried is gone) and the PIN try is counted;
//! - the issuer has no record → nothing was charged: a reversal is still
//!   sent (harmless, and it catches a request processed late), then
//!   `failed` `issuer_unavailable`. Never back to `in_call`: the call is
//!   gone, and the merchant can simply send a new order;
//! - the issuer cannot be asked (queries fail) → the order stays in
//!   `authorizing` and is reported as unresolved; the next `recover` (at the
//!   next start, or when the caller runs it again) tries again.

use super::{Answer, BankMatcher};
use crate::bank::{self, Issuer};
use crate::domain::{OrderStatus, ResultCode};
use std::time::Duration;

/// What one [`BankMatcher::recover`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Orders moved out of `authorizing`, or found already moved.
    pub settled: usize,
    /// Orders still in `authorizing` because the issuer could not be asked.
    pub unresolved: usize,
}

/// Orders looked at per run; more wait for the next one.
const BATCH: i64 = 1000;

impl<I: Issuer> BankMatcher<I> {
    /// Settles every order left in `authorizing` (see the module docs for
    /// the rule), waiting until each has been there for `recover_after`.
    /// Run it once at start-up, in the background.
    pub async fn recover(&self) -> Recovery {
        let mut report = Recovery::default();
        let orders = match self.store.authorizing_orders(BATCH).await {
            Ok(orders) => orders,
            Err(e) => {
                tracing::error!(error = %e, "cannot list orders left in authorizing");
                return report;
            }
        };
        let grace = i64::try_from(self.config.recover_after.as_millis()).unwrap_or(i64::MAX);
        for (order_id, since) in orders {
            let wait = since.saturating_add(grace) - self.now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
            }
            match self.recover_one(&order_id).await {
                Ok(true) => report.settled += 1,
                Ok(false) => report.unresolved += 1,
                Err(e) => {
                    tracing::error!(order = %order_id, error = format!("{e:#}"), "recovery failed");
                    report.unresolved += 1;
                }
            }
        }
        if report != Recovery::default() {
            tracing::info!(
                settled = report.settled,
                unresolved = report.unresolved,
                "orders left in authorizing recovered"
            );
        }
        report
    }

    /// Settles one order; `Ok(false)` when the issuer could not be asked.
    async fn recover_one(&self, order_id: &str) -> anyhow::Result<bool> {
        let Some(order) = self.store.order(order_id).await? else {
            return Ok(true);
        };
        if order.status() != OrderStatus::Authorizing {
            return Ok(true);
        }
        let attempt = self.store.authorization_attempts(order_id).await?;
        if attempt == 0 {
            // Never moved from in_call by a verification: nothing was sent.
            let code = Some(ResultCode::IssuerUnavailable);
            self.settle(
                order_id,
                OrderStatus::Failed,
                code,
                Some("recovery: never sent"),
            )
            .await?;
            return Ok(true);
        }
        let key = format!("{order_id}:{attempt}");
        self.event(order_id, &format!("recovery: querying attempt {attempt}"))
            .await?;
        // Ask at once, then with the usual backoff.
        let mut pauses = vec![Duration::ZERO];
        pauses.extend(self.config.query_backoff.iter().copied());
        let answer = self.resolve(order_id, &key, pauses).await?;
        if matches!(answer, Answer::Unknown) {
            tracing::warn!(order = %order_id, "recovery: the issuer cannot be asked; still authorizing");
            return Ok(false);
        }
        let pin = matches!(
            &answer,
            Answer::Known(r) if matches!(
                r.outcome,
                bank::Outcome::WrongSecret { tries_left: Some(_) }
                    | bank::Outcome::Declined(ResultCode::PinTriesExceeded)
            )
        );
        let outcome = self.record(&order, &key, pin, answer, false).await?;
        tracing::info!(order = %order_id, ?outcome, "recovery settled an order left in authorizing");
        Ok(true)
    }
}
