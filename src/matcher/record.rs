//! The order follows the issuer's answer: `succeeded` (and the phone
//! bound), back to `in_call` for another try, or `failed` with the code; and
//! what a verification that did not hold the order answers the caller.

use super::{remaining, Answer, BankMatcher};
use crate::bank::{self, IssuerLink, PIN_TRIES_PER_DAY};
use crate::crypto::random_hex;
use crate::domain::{OrderStatus, ResultCode};
use crate::ivr::Verdict;
use crate::store::{NewBinding, OrderRow, Transition};
use anyhow::Context;
use std::time::Duration;

/// The audit entry (kind `bank`, never shown to merchants) of an issuer's
/// `id_mismatch` (66) answer.
pub(super) const ID_MISMATCH: &str = "issuer answered id_mismatch (66)";

impl<I: IssuerLink> BankMatcher<I> {
    /// Moves the order from `authorizing` by the issuer's answer and says
    /// what the IVR should tell the caller. `live`: the caller is still on
    /// the line (a wrong secret goes back to them); recovery passes false.
    pub(super) async fn record(
        &self,
        order: &OrderRow,
        key: &str,
        answer: Answer,
        live: bool,
    ) -> anyhow::Result<Verdict> {
        let id = order.id.as_str();
        let resp = match answer {
            Answer::Known(resp) => resp,
            Answer::NotProcessed => {
                // Belt and braces: should a late copy of the request still
                // be processed, the reversal returns the money.
                if let Err(e) = self.issuer.reverse(key).await {
                    tracing::warn!(order = %id, error = %e, "reversal of an unanswered attempt failed");
                }
                let code = ResultCode::IssuerUnavailable;
                self.settle(
                    id,
                    OrderStatus::Failed,
                    Some(code),
                    Some("no answer from the issuer"),
                )
                .await?;
                return Ok(Verdict::Failed(code));
            }
            Answer::Reversed => {
                let code = ResultCode::IssuerUnavailable;
                self.settle(
                    id,
                    OrderStatus::Failed,
                    Some(code),
                    Some("no answer from the issuer; reversed"),
                )
                .await?;
                return Ok(Verdict::Failed(code));
            }
            Answer::Unknown => {
                tracing::warn!(order = %id, "the issuer's answer is unknown; left in authorizing for recovery");
                return Ok(Verdict::Failed(ResultCode::IssuerUnavailable));
            }
        };
        match resp.outcome {
            bank::Decision::Approved { auth_code } => {
                let detail = format!("auth {auth_code}");
                let code = Some(ResultCode::Approved);
                if !self
                    .settle(id, OrderStatus::Succeeded, code, Some(&detail))
                    .await?
                {
                    return self.approved_but_moved(id, key).await;
                }
                tracing::info!(order = %id, card = %order.card_masked, "payment approved");
                self.bind(order).await;
                Ok(Verdict::Approved)
            }
            bank::Decision::WrongSecret { tries_left } => {
                self.wrong_secret(order, key, tries_left, false, live).await
            }
            bank::Decision::Declined(ResultCode::IdMismatch) => {
                // Audit and operator log only: outwardly a wrong secret.
                self.event(id, ID_MISMATCH).await?;
                tracing::info!(order = %id, card = %order.card_masked, result = ResultCode::IdMismatch.code(), "cardholder ID mismatch");
                self.wrong_secret(order, key, None, true, live).await
            }
            bank::Decision::Declined(code) => {
                if code == ResultCode::PinTriesExceeded {
                    // the issuer's lock (its last wrong try, or a card it
                    // locked today): ours follows at once
                    let limit = i64::from(self.limits.wrong_secrets_per_card_day);
                    self.count_wrong_on_card(order, key, limit).await?;
                    self.count_wrong_on_phone(order, key).await?;
                }
                if !self
                    .settle(id, OrderStatus::Failed, Some(code), None)
                    .await?
                {
                    return self.settled_outcome_of(id).await;
                }
                tracing::info!(order = %id, card = %order.card_masked, result = code.code(), "payment declined");
                Ok(Verdict::Failed(code))
            }
        }
    }

    /// A wrong secret, or an ID mismatch answered as one: counted against
    /// the phone and (not for a mismatch) the card; back to the caller with
    /// the tries left, or failed at the day's limit (67), or, with nobody on
    /// the line, failed `wrong_secret`. For a mismatch the tries left count
    /// this order's mismatches as if they were wrong secrets, so the caller
    /// hears what a wrong secret would have told them.
    async fn wrong_secret(
        &self,
        order: &OrderRow,
        key: &str,
        issuer_left: Option<u8>,
        mismatch: bool,
        live: bool,
    ) -> anyhow::Result<Verdict> {
        let id = order.id.as_str();
        let phone_used = self.count_wrong_on_phone(order, key).await?;
        let card_limit = self.limits.wrong_secrets_per_card_day;
        let mut left = remaining(phone_used, self.limits.wrong_secrets_per_phone_day);
        if mismatch {
            let (card_today, _) = self.tries_today(order).await?;
            let here = self.store.count_events(id, "bank", ID_MISMATCH).await?;
            let used = card_today + here;
            // the issuer's own count would have moved as ours
            left = left
                .min(remaining(used, card_limit))
                .min(remaining(used, u32::from(PIN_TRIES_PER_DAY)));
        } else {
            let used = self.count_wrong_on_card(order, key, 1).await?;
            left = left.min(remaining(used, card_limit));
            left = left.min(issuer_left.unwrap_or(u8::MAX));
        }
        let (to, code, detail) = if left == 0 {
            (
                OrderStatus::Failed,
                Some(ResultCode::PinTriesExceeded),
                None,
            )
        } else if live {
            (OrderStatus::InCall, None, Some("wrong secret"))
        } else {
            (OrderStatus::Failed, Some(ResultCode::WrongSecret), None)
        };
        if !self.settle(id, to, code, detail).await? {
            return self.settled_outcome_of(id).await;
        }
        Ok(match code {
            Some(code) => Verdict::Failed(code),
            None => Verdict::WrongSecret { tries_left: left },
        })
    }

    /// The issuer approved, but the order had already left `authorizing`
    /// (recovery on another node settled it meanwhile). If it settled as
    /// paid, that is this same payment; otherwise the money goes back.
    async fn approved_but_moved(&self, order_id: &str, key: &str) -> anyhow::Result<Verdict> {
        let order = self
            .store
            .order(order_id)
            .await?
            .context("order vanished")?;
        if order.status() == OrderStatus::Succeeded {
            return Ok(Verdict::Approved);
        }
        match self.issuer.reverse(key).await {
            Ok(_) => {
                tracing::warn!(order = %order_id, "approved after the order was settled otherwise; reversed");
                self.event(order_id, "late approval reversed").await?;
            }
            Err(e) => {
                tracing::error!(order = %order_id, error = %e, "approved after the order was settled otherwise, and the reversal failed");
            }
        }
        self.settled_outcome(&order).await
    }

    /// `authorizing` → `to`, conditional. Returns whether this call moved it.
    pub(super) async fn settle(
        &self,
        order_id: &str,
        to: OrderStatus,
        result: Option<ResultCode>,
        detail: Option<&str>,
    ) -> anyhow::Result<bool> {
        let t = Transition {
            from: OrderStatus::Authorizing,
            to,
            result,
            detail,
        };
        Ok(self.store.transition(order_id, t, self.now_ms()).await?)
    }

    /// Binds the order's phone to its card after its first success, unless
    /// the order came from a binding or the phone is bound already. A
    /// failure here is logged: the payment itself stands.
    async fn bind(&self, order: &OrderRow) {
        if order.binding_id.is_some() {
            return;
        }
        let id = format!("bnd_{}", random_hex(12));
        let b = NewBinding {
            id: &id,
            merchant_id: &order.merchant_id,
            phone: &order.phone,
            card_enc: &order.card_enc,
            card_masked: &order.card_masked,
            card_type: order.card_type,
            card_fp: &order.card_fp,
            id_enc: &order.id_enc,
            id_masked: &order.id_masked,
            created_at: self.now_ms(),
        };
        // The binding and its audit line are one write.
        match self
            .store
            .bind_card_noting(&b, &order.id, "card bound to the phone")
            .await
        {
            Ok(true) => {
                tracing::info!(order = %order.id, binding = %id, card = %order.card_masked, "card bound to the phone");
            }
            Ok(false) => {}
            Err(e) => tracing::error!(order = %order.id, error = %e, "cannot bind the card"),
        }
    }

    /// Another verification holds the order in `authorizing`: wait (bounded)
    /// for its result and answer the same.
    pub(super) async fn await_settled(&self, order: &OrderRow) -> anyhow::Result<Verdict> {
        let deadline = tokio::time::Instant::now() + self.config.longest_authorization();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self
                .store
                .order(&order.id)
                .await?
                .context("order vanished")?;
            if now.status() != OrderStatus::Authorizing {
                return self.settled_outcome(&now).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Verdict::Failed(ResultCode::IssuerUnavailable));
            }
        }
    }

    /// After losing a conditional move: the order's outcome, waiting if
    /// someone else is authorizing it.
    pub(super) async fn settled_or_wait(&self, order_id: &str) -> anyhow::Result<Verdict> {
        let order = self
            .store
            .order(order_id)
            .await?
            .context("order vanished")?;
        if order.status() == OrderStatus::Authorizing {
            return self.await_settled(&order).await;
        }
        self.settled_outcome(&order).await
    }

    async fn settled_outcome_of(&self, order_id: &str) -> anyhow::Result<Verdict> {
        let order = self
            .store
            .order(order_id)
            .await?
            .context("order vanished")?;
        self.settled_outcome(&order).await
    }

    /// What an order that this verification did not move means for the
    /// caller: paid, failed with its code, or (back in `in_call` after
    /// another verification's wrong secret) a wrong secret.
    pub(super) async fn settled_outcome(&self, order: &OrderRow) -> anyhow::Result<Verdict> {
        Ok(match order.status() {
            OrderStatus::Succeeded => Verdict::Approved,
            OrderStatus::InCall => {
                let (card, phone) = self.tries_today(order).await?;
                let left = remaining(card, self.limits.wrong_secrets_per_card_day)
                    .min(remaining(phone, self.limits.wrong_secrets_per_phone_day));
                Verdict::WrongSecret { tries_left: left }
            }
            OrderStatus::Authorizing => Verdict::Failed(ResultCode::IssuerUnavailable),
            _ => Verdict::Failed(
                order
                    .result_code
                    .as_deref()
                    .and_then(ResultCode::parse)
                    .filter(|c| *c != ResultCode::Approved)
                    .unwrap_or(ResultCode::OrderExpired),
            ),
        })
    }
}
