//! Refunds of succeeded orders: the refund service behind
//! `POST /v1/orders/{id}/refunds` ([`Refunder`], implemented by
//! [`BankMatcher`], which holds the store, the vault and the issuer link).
//!
//! One refund, exactly once:
//! - [`Store::create_refund`](crate::store::Store::create_refund) records it
//!   `pending` in one transaction that checks the order is `succeeded` and
//!   that the amount fits in what is left; with an idempotency key already
//!   used on the order, that refund is returned as it stands and the issuer
//!   is not asked again.
//! - The issuer is asked once, under the refund's own id
//!   ([`IssuerLink::refund`]), naming the purchase by its idempotency key
//!   (`{order id}:{n}`, the attempt that succeeded), with the merchant's
//!   card acceptor id (F42).
//! - Its answer settles the refund: approved → `succeeded` (and, in the same
//!   transaction, the `order.refunded` webhook); declined or never sent →
//!   `failed` (its amount is free again).
//! - No answer in time: the refund is `unknown` and resolved as the issuer
//!   says ([`IssuerLink::unknown_outcome`]): `Query` (the stub) asks for the
//!   refund id's answer with the matcher's query backoff and follows it (no
//!   record: `failed`); `Reverse` (ISO 8583, which has no query) reverses the
//!   refund id (the link's store-and-forward reversal) and the refund is
//!   `failed`. A refund the issuer still cannot be asked about stays
//!   `unknown`, holding its amount back.
//!
//! The order itself stays `succeeded` throughout.
//!
//! Recovery ([`BankMatcher::recover_refunds`], run by the daemon with the
//! purchase recovery): a refund still `pending` or `unknown` once a live
//! refund would long have finished (`recover_after`, as for purchases) was
//! left by a crash or an issuer that could not be asked. It is settled the
//! same way: `Query` asks the issuer for the refund id's answer (no record:
//! never processed, `failed`), `Reverse` reverses it and fails it. One the
//! issuer still cannot be asked about stays open for the next run.

use super::{Answer, BankMatcher};
use crate::bank::UnknownOutcome;
use crate::bank::{AuthResponse, Decision, IssuerError, IssuerLink, RefundRequest};
use crate::domain::Amount;
use crate::store::{OrderRow, RefundAnswer, RefundCreated, RefundError, RefundRow, RefundStatus};
use std::future::Future;
use std::pin::Pin;

/// What a refund request came to.
#[derive(Debug, Clone)]
pub struct RefundDone {
    /// The refund as it stands now.
    pub refund: RefundRow,
    /// True when the idempotency key had made this refund already: nothing
    /// new was asked of the issuer.
    pub replayed: bool,
}

/// Why no refund was made; nothing was stored and the issuer was not asked.
#[derive(Debug, thiserror::Error)]
pub enum RefundRefused {
    /// No such order for this merchant (the API's 404).
    #[error("no such order")]
    OrderNotFound,
    /// The order is not `succeeded` (409 `not_refundable`).
    #[error("the order did not succeed")]
    NotRefundable,
    /// More than what is left to refund (409 `refund_exceeds_balance`).
    #[error("refund exceeds what is left ({left} fen)")]
    ExceedsBalance {
        /// What is left, in fen.
        left: i64,
    },
    /// The idempotency key made a refund of another amount on this order
    /// (409 `idempotency_key_reused`).
    #[error("the idempotency key was used for a refund of another amount")]
    KeyReused,
    /// The store failed (500).
    #[error("refund failed: {0:#}")]
    Internal(anyhow::Error),
}

/// The boxed future of [`Refunder::refund`], so that the API can hold any
/// refund service as `Arc<dyn Refunder>`.
pub type RefundFuture<'a> =
    Pin<Box<dyn Future<Output = Result<RefundDone, RefundRefused>> + Send + 'a>>;

/// The refund service the merchant API holds (a port, like
/// [`Matcher`](super::Matcher) is for the calls): see the module
/// documentation for what one refund does.
pub trait Refunder: Send + Sync {
    /// Refunds `amount` fen of merchant `merchant_id`'s order `order_id`.
    /// With `idempotency_key`, a refund already made with it on this order
    /// is returned as it stands ([`RefundDone::replayed`]) when its amount is
    /// the same, and refused ([`RefundRefused::KeyReused`]) otherwise.
    ///
    /// # Errors
    /// See [`RefundRefused`]: nothing is stored and the issuer is not asked.
    fn refund<'a>(
        &'a self,
        merchant_id: &'a str,
        order_id: &'a str,
        amount: Amount,
        idempotency_key: Option<&'a str>,
    ) -> RefundFuture<'a>;
}

impl<I: IssuerLink + 'static> Refunder for BankMatcher<I> {
    fn refund<'a>(
        &'a self,
        merchant_id: &'a str,
        order_id: &'a str,
        amount: Amount,
        idempotency_key: Option<&'a str>,
    ) -> RefundFuture<'a> {
        Box::pin(BankMatcher::refund(
            self,
            merchant_id,
            order_id,
            amount,
            idempotency_key,
        ))
    }
}

impl<I: IssuerLink> BankMatcher<I> {
    /// See [`Refunder::refund`].
    ///
    /// # Errors
    /// See [`RefundRefused`].
    pub async fn refund(
        &self,
        merchant_id: &str,
        order_id: &str,
        amount: Amount,
        idempotency_key: Option<&str>,
    ) -> Result<RefundDone, RefundRefused> {
        let internal = |e: crate::store::StoreError| RefundRefused::Internal(e.into());
        let order = self
            .store
            .order_for_merchant(merchant_id, order_id)
            .await
            .map_err(internal)?
            .ok_or(RefundRefused::OrderNotFound)?;
        let created = self
            .store
            .create_refund(&order.id, amount.fen(), idempotency_key, self.now_ms())
            .await
            .map_err(|e| match e {
                RefundError::OrderNotFound => RefundRefused::OrderNotFound,
                RefundError::NotRefundable => RefundRefused::NotRefundable,
                RefundError::ExceedsBalance { left } => RefundRefused::ExceedsBalance { left },
                RefundError::InvalidAmount => {
                    RefundRefused::Internal(anyhow::anyhow!("an Amount is at least 1 fen"))
                }
                RefundError::Store(e) => internal(e),
            })?;
        match created {
            RefundCreated::Existing(row) if row.amount == amount.fen() => Ok(RefundDone {
                refund: row,
                replayed: true,
            }),
            RefundCreated::Existing(_) => Err(RefundRefused::KeyReused),
            RefundCreated::New(row) => {
                let refund = self
                    .send_refund(&order, row)
                    .await
                    .map_err(RefundRefused::Internal)?;
                Ok(RefundDone {
                    refund,
                    replayed: false,
                })
            }
        }
    }

    /// Asks the issuer for the new `pending` refund and settles it by the
    /// answer; returns it as it then stands.
    async fn send_refund(&self, order: &OrderRow, row: RefundRow) -> anyhow::Result<RefundRow> {
        let req = match self.refund_request(order, &row).await {
            Ok(req) => req,
            Err(e) => {
                // Nothing was sent: the refund fails and frees its amount.
                tracing::error!(order = %order.id, refund = %row.id, error = format!("{e:#}"), "cannot build the refund");
                return self.settle_refund(&row, RefundStatus::Failed, None).await;
            }
        };
        self.event(
            &order.id,
            &format!("refund {} of {} fen sent", row.id, row.amount),
        )
        .await?;
        let first = tokio::time::timeout(self.config.auth_timeout, self.issuer.refund(req)).await;
        match first {
            Ok(Ok(resp)) => self.settle_refund_by(&row, &resp).await,
            Ok(Err(IssuerError::Unavailable)) => {
                tracing::warn!(order = %order.id, refund = %row.id, "issuer unreachable; the refund was not sent");
                self.event(&order.id, &format!("refund {}: issuer unreachable", row.id))
                    .await?;
                self.settle_refund(&row, RefundStatus::Failed, None).await
            }
            Ok(Err(IssuerError::Timeout)) | Err(_) => self.unknown_refund(order, &row).await,
        }
    }

    /// The request for refund `row` of `order`: the order's card, the
    /// purchase's key (the order's last attempt: the one that succeeded) and
    /// the merchant's acceptor id.
    async fn refund_request(
        &self,
        order: &OrderRow,
        row: &RefundRow,
    ) -> anyhow::Result<RefundRequest> {
        let attempt = self.store.authorization_attempts(&order.id).await?;
        let acceptor_id = self.store.merchant_acceptor_id(&order.merchant_id).await?;
        Ok(RefundRequest {
            refund_id: row.id.clone(),
            order_id: order.id.clone(),
            purchase_key: format!("{}:{attempt}", order.id),
            amount: Amount::parse(row.amount, i64::MAX)
                .map_err(|e| anyhow::anyhow!("refund amount: {e}"))?,
            card: self.order_card(order)?,
            acceptor_id,
        })
    }

    /// No answer in time: `unknown`, then resolved as the issuer's
    /// [`UnknownOutcome`] says.
    async fn unknown_refund(&self, order: &OrderRow, row: &RefundRow) -> anyhow::Result<RefundRow> {
        tracing::warn!(order = %order.id, refund = %row.id, "no answer from the issuer to a refund");
        let unknown = self.settle_refund(row, RefundStatus::Unknown, None).await?;
        if unknown.status != RefundStatus::Unknown {
            return Ok(unknown);
        }
        match self.issuer.unknown_outcome() {
            UnknownOutcome::Query => {
                self.event(
                    &order.id,
                    &format!("refund {}: no answer; querying", row.id),
                )
                .await?;
                let pauses = self.config.query_backoff.clone();
                match self.resolve(&order.id, &row.id, pauses).await? {
                    Answer::Known(resp) => self.settle_refund_by(row, &resp).await,
                    Answer::NotProcessed => {
                        // Belt and braces, as for a purchase: should a late
                        // copy still be processed, the reversal undoes it.
                        if let Err(e) = self.issuer.reverse(&row.id).await {
                            tracing::warn!(refund = %row.id, error = %e, "reversal of an unanswered refund failed");
                        }
                        self.settle_refund(row, RefundStatus::Failed, None).await
                    }
                    Answer::Unknown | Answer::Reversed => Ok(unknown),
                }
            }
            UnknownOutcome::Reverse => match self.issuer.reverse(&row.id).await {
                Ok(_) => {
                    self.event(
                        &order.id,
                        &format!("refund {}: no answer; reversed", row.id),
                    )
                    .await?;
                    self.settle_refund(row, RefundStatus::Failed, None).await
                }
                Err(e) => {
                    tracing::warn!(refund = %row.id, error = %e, "reversal of an unanswered refund failed; it stays unknown");
                    Ok(unknown)
                }
            },
        }
    }

    /// Settles the refund by the issuer's answer.
    async fn settle_refund_by(
        &self,
        row: &RefundRow,
        resp: &AuthResponse,
    ) -> anyhow::Result<RefundRow> {
        let code = resp.result_code();
        let (to, approval) = match &resp.outcome {
            Decision::Approved { auth_code } => (RefundStatus::Succeeded, Some(auth_code.as_str())),
            Decision::WrongSecret { .. } | Decision::Declined(_) => (RefundStatus::Failed, None),
        };
        let answer = RefundAnswer {
            rrn: None,
            approval_code: approval,
            resp_code: code.resp_code(),
        };
        tracing::info!(order = %row.order_id, refund = %row.id, amount = row.amount, result = code.code(), "refund answered");
        self.event(
            &row.order_id,
            &format!("refund {}: {}", row.id, code.code()),
        )
        .await?;
        self.settle_refund(row, to, Some(&answer)).await
    }

    /// Moves the refund to `to` (one conditional update); returns it as it
    /// stands afterwards, whoever settled it.
    async fn settle_refund(
        &self,
        row: &RefundRow,
        to: RefundStatus,
        answer: Option<&RefundAnswer<'_>>,
    ) -> anyhow::Result<RefundRow> {
        let none = RefundAnswer::default();
        let settled = self
            .store
            .settle_refund(&row.id, to, answer.unwrap_or(&none), self.now_ms())
            .await?;
        match settled {
            Some(r) => Ok(r),
            None => self
                .store
                .refund(&row.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("refund {} vanished", row.id)),
        }
    }

    /// Settles every refund left `pending` or `unknown` for longer than
    /// `recover_after` (see the module documentation).
    pub async fn recover_refunds(&self) -> super::Recovery {
        let mut report = super::Recovery::default();
        let grace = i64::try_from(self.config.recover_after.as_millis()).unwrap_or(i64::MAX);
        let before = self.now_ms().saturating_sub(grace);
        let open = match self.store.open_refunds(before, 1000).await {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(error = %e, "cannot list open refunds");
                return report;
            }
        };
        for row in open {
            match self.recover_refund(&row).await {
                Ok(r) if !r.status.is_open() => report.settled += 1,
                Ok(_) => report.unresolved += 1,
                Err(e) => {
                    tracing::error!(refund = %row.id, error = format!("{e:#}"), "refund recovery failed");
                    report.unresolved += 1;
                }
            }
        }
        report
    }

    /// Settles one open refund as the issuer's [`UnknownOutcome`] says.
    async fn recover_refund(&self, row: &RefundRow) -> anyhow::Result<RefundRow> {
        self.event(&row.order_id, &format!("recovery: refund {}", row.id))
            .await?;
        match self.issuer.unknown_outcome() {
            UnknownOutcome::Query => {
                match self
                    .resolve(&row.order_id, &row.id, vec![std::time::Duration::ZERO])
                    .await?
                {
                    Answer::Known(resp) => self.settle_refund_by(row, &resp).await,
                    Answer::NotProcessed => {
                        if let Err(e) = self.issuer.reverse(&row.id).await {
                            tracing::warn!(refund = %row.id, error = %e, "reversal of an unanswered refund failed");
                        }
                        self.settle_refund(row, RefundStatus::Failed, None).await
                    }
                    Answer::Unknown | Answer::Reversed => Ok(row.clone()),
                }
            }
            UnknownOutcome::Reverse => match self.issuer.reverse(&row.id).await {
                Ok(_) => self.settle_refund(row, RefundStatus::Failed, None).await,
                Err(e) => {
                    tracing::warn!(refund = %row.id, error = %e, "recovery: reversal of an open refund failed");
                    Ok(row.clone())
                }
            },
        }
    }
}
