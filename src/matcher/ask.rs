//! The conversation with the issuer link for one attempt: the request built
//! from the order's sealed card and the keyed secret, one `authorize`
//! bounded by its timeout, and an unanswered attempt resolved as the link's
//! [`UnknownOutcome`] says: by `query` under the same idempotency key (the
//! stub), or by `reverse` of it and a failed order (ISO 8583, which has no
//! query); never by a second authorization.

use super::{Answer, BankMatcher};
use crate::bank::{AuthRequest, IssuerError, IssuerLink, Secret, UnknownOutcome};
use crate::crypto::PinBlock;
use crate::domain::{Amount, CardNumber, IdNumber, Verification};
use crate::store::OrderRow;
use anyhow::Context;
use std::time::Duration;

impl<I: IssuerLink> BankMatcher<I> {
    /// The request for this attempt: the order's card and ID number opened
    /// from the vault, the PIN enciphered into a block (the digits are wiped
    /// when `verification` drops here) or expiry and CVN2 moved in, and the
    /// merchant's card acceptor id (F42) as the store has it now.
    pub(super) async fn request(
        &self,
        order: &OrderRow,
        key: &str,
        verification: Verification,
    ) -> anyhow::Result<AuthRequest> {
        let acceptor_id = self
            .store
            .merchant_acceptor_id(&order.merchant_id)
            .await
            .context("reading the merchant's acceptor id")?;
        let card = self.order_card(order)?;
        let idn = self
            .vault
            .open("id_number", &order.id_enc)
            .context("opening the ID number")?;
        let id_number = std::str::from_utf8(&idn)
            .ok()
            .and_then(|s| IdNumber::parse(s).ok())
            .context("the sealed ID number is not an ID number")?;
        let secret = match verification {
            Verification::Pin(digits) => {
                Secret::PinBlock(PinBlock::from_pin(&digits, &card, &self.zpk))
            }
            Verification::Card { expiry, cvn2 } => Secret::Card { expiry, cvn2 },
        };
        Ok(AuthRequest {
            idempotency_key: key.to_owned(),
            order_id: order.id.clone(),
            acceptor_id,
            // The order's cap was checked at creation; the issuer applies its own.
            amount: Amount::parse(order.amount, i64::MAX)
                .ok()
                .context("the order's amount is not an amount")?,
            card,
            id_number,
            secret,
        })
    }

    /// The order's card number, opened from the vault.
    pub(super) fn order_card(&self, order: &OrderRow) -> anyhow::Result<CardNumber> {
        let pan = self
            .vault
            .open("card_number", &order.card_enc)
            .context("opening the card number")?;
        std::str::from_utf8(&pan)
            .ok()
            .and_then(|s| CardNumber::parse(s).ok())
            .context("the sealed card number is not a card number")
    }

    /// One `authorize`, bounded by the timeout; no answer is resolved by
    /// query under the same key, or (a link whose unknown outcomes are
    /// reversed) by reversing it.
    pub(super) async fn authorize(
        &self,
        order_id: &str,
        key: &str,
        req: AuthRequest,
    ) -> anyhow::Result<Answer> {
        let card = req.card.masked();
        let first =
            tokio::time::timeout(self.config.auth_timeout, self.issuer.authorize(req)).await;
        match first {
            Ok(Ok(resp)) => Ok(Answer::Known(resp)),
            Ok(Err(IssuerError::Unavailable)) => {
                tracing::warn!(order = %order_id, %card, "issuer unreachable; nothing was sent");
                Ok(Answer::NotProcessed)
            }
            Ok(Err(IssuerError::Timeout)) | Err(_)
                if self.issuer.unknown_outcome() == UnknownOutcome::Reverse =>
            {
                tracing::warn!(order = %order_id, %card, "no answer from the issuer; reversing");
                self.event(order_id, "no answer; reversing").await?;
                self.reverse_unknown(order_id, key).await
            }
            Ok(Err(IssuerError::Timeout)) | Err(_) => {
                tracing::warn!(order = %order_id, %card, "no answer from the issuer; querying");
                self.event(order_id, "no answer; querying").await?;
                let backoff = self.config.query_backoff.clone();
                self.resolve(order_id, key, backoff).await
            }
        }
    }

    /// Undoes the attempt `key` whose outcome is unknown
    /// ([`UnknownOutcome::Reverse`]): [`Answer::Reversed`] once the reversal
    /// is recorded (the link sends it until acknowledged), or
    /// [`Answer::Unknown`] when it could not be, so the order stays in
    /// `authorizing` and recovery tries again.
    pub(super) async fn reverse_unknown(
        &self,
        order_id: &str,
        key: &str,
    ) -> anyhow::Result<Answer> {
        match self.issuer.reverse(key).await {
            Ok(_) => {
                self.event(order_id, "reversal queued").await?;
                Ok(Answer::Reversed)
            }
            Err(e) => {
                tracing::error!(order = %order_id, error = %e, "cannot record the reversal of an unanswered attempt");
                Ok(Answer::Unknown)
            }
        }
    }

    /// Queries `key` after each pause until the issuer gives its answer.
    pub(super) async fn resolve(
        &self,
        order_id: &str,
        key: &str,
        pauses: Vec<Duration>,
    ) -> anyhow::Result<Answer> {
        let mut last = Answer::Unknown;
        for (i, pause) in pauses.into_iter().enumerate() {
            tokio::time::sleep(pause).await;
            let n = i + 1;
            let answer = tokio::time::timeout(self.config.query_timeout, self.issuer.query(key))
                .await
                .unwrap_or(Err(IssuerError::Timeout));
            match answer {
                Ok(Some(resp)) => {
                    self.event(order_id, &format!("query {n}: answered"))
                        .await?;
                    return Ok(Answer::Known(resp));
                }
                Ok(None) => {
                    self.event(order_id, &format!("query {n}: no record"))
                        .await?;
                    last = Answer::NotProcessed;
                }
                Err(e) => {
                    self.event(order_id, &format!("query {n}: {e}")).await?;
                    last = Answer::Unknown;
                }
            }
        }
        Ok(last)
    }
}
