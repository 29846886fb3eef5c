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
//!   `authorizing` and is reported as unresolved; the next `recover` tries
//!   again;
//! - the order left `authorizing` and came back (a wrong secret went back to
//!   the caller, who keyed it again) since it was listed → it is a live
//!   attempt and is left alone until it, too, has sat out the wait.
//!
//! With an issuer link whose unknown outcomes are reversed
//! ([`UnknownOutcome::Reverse`], ISO 8583, where `query` reads voicepay's own
//! request journal), the journal is asked once instead: an answer → the order
//! follows it; never sent → `failed` `issuer_unavailable`; sent and
//! unanswered (or already reversing) → the attempt is reversed (recorded,
//! sent until acknowledged) and the order `failed` `issuer_unavailable`; the
//! journal cannot be read, or the reversal not recorded → left for the next
//! run.
//!
//! The daemon runs it at start-up and then every minute, so the
//! authorizations of a node that stopped for good are settled by the others.

use super::{Answer, BankMatcher};
use crate::bank::{IssuerError, IssuerLink, UnknownOutcome};
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

impl<I: IssuerLink> BankMatcher<I> {
    /// Settles every order left in `authorizing` (see the module docs for
    /// the rule), waiting until each has been there for `recover_after`.
    /// The daemon runs it at start-up and every minute, in the background.
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
            match self.recover_one(&order_id, since).await {
                Ok(Some(true)) => report.settled += 1,
                Ok(Some(false)) => report.unresolved += 1,
                Ok(None) => {} // a newer attempt is live: the next run looks again
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

    /// Settles one order that entered `authorizing` at `since`; `Some(false)`
    /// when the issuer could not be asked, `None` when the order has moved
    /// on since (it went back to the caller and a newer attempt is live:
    /// recovery must never race a live verification).
    async fn recover_one(&self, order_id: &str, since: i64) -> anyhow::Result<Option<bool>> {
        let Some(order) = self.store.order(order_id).await? else {
            return Ok(Some(true));
        };
        if order.status() != OrderStatus::Authorizing {
            return Ok(Some(true));
        }
        let grace = i64::try_from(self.config.recover_after.as_millis()).unwrap_or(i64::MAX);
        if order.updated_at != since || since.saturating_add(grace) > self.now_ms() {
            return Ok(None);
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
            return Ok(Some(true));
        }
        let key = format!("{order_id}:{attempt}");
        self.event(order_id, &format!("recovery: querying attempt {attempt}"))
            .await?;
        let answer = if self.issuer.unknown_outcome() == UnknownOutcome::Reverse {
            self.journal_answer(order_id, &key).await?
        } else {
            // Ask at once, then with the usual backoff.
            let mut pauses = vec![Duration::ZERO];
            pauses.extend(self.config.query_backoff.iter().copied());
            self.resolve(order_id, &key, pauses).await?
        };
        if matches!(answer, Answer::Unknown) {
            tracing::warn!(order = %order_id, "recovery: the issuer cannot be asked; still authorizing");
            return Ok(Some(false));
        }
        let outcome = self.record(&order, &key, answer, false).await?;
        tracing::info!(order = %order_id, ?outcome, "recovery settled an order left in authorizing");
        Ok(Some(true))
    }

    /// Recovery's one question to a link whose unknown outcomes are
    /// reversed (its `query` reads the request journal): the answer, never
    /// sent, or unknown → reversed now.
    async fn journal_answer(&self, order_id: &str, key: &str) -> anyhow::Result<Answer> {
        let asked = tokio::time::timeout(self.config.query_timeout, self.issuer.query(key))
            .await
            .unwrap_or(Err(IssuerError::Unavailable));
        match asked {
            Ok(Some(resp)) => {
                self.event(order_id, "recovery: answered").await?;
                Ok(Answer::Known(resp))
            }
            Ok(None) => {
                self.event(order_id, "recovery: never sent").await?;
                Ok(Answer::NotProcessed)
            }
            Err(IssuerError::Timeout) => {
                self.event(order_id, "recovery: no answer; reversing")
                    .await?;
                self.reverse_unknown(order_id, key).await
            }
            Err(IssuerError::Unavailable) => Ok(Answer::Unknown),
        }
    }
}
