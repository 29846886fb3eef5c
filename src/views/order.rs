//! The order as merchants see it (`GET /v1/orders/{id}`, the `data` of
//! every webhook): masked card, RFC 3339 times, the result once final, and
//! the call attempts. Never the ID number, never a secret.

use super::rfc3339;
use crate::domain::{CardKind, Language, Mode, OrderStatus};
use crate::store::{AttemptRow, OrderRow, RefundRow, RefundStatus};
use serde::Serialize;
use utoipa::ToSchema;

/// One order; amounts in fen.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    /// voicepay's order id.
    #[schema(example = "ord_5f0c6b1e2d3a4b5c6d7e8f90")]
    pub id: String,
    pub merchant_order_id: String,
    pub status: OrderStatus,
    pub mode: Mode,
    /// Amount in fen.
    pub amount: i64,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub phone: String,
    pub language: Language,
    pub card: CardView,
    /// Whether the card came from the phone's binding.
    pub bound: bool,
    /// One-time code the merchant's dialplan passes with a transferred call
    /// (transfer mode), or with both channels of an assisted call
    /// (assisted mode: `Stasis(voicepay,assisted,<code>,cardholder|agent)`),
    /// until the order ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_code: Option<String>,
    /// Inbound mode, until the order ends: the 8-digit code the cardholder
    /// keys after dialling the access number, before anything about the
    /// order is said (`inbound.require_order_code`; with it off, only when
    /// their phone has several pending orders). Tell it to them with the
    /// access number; treat it as a secret (it lets a caller pay).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "20481937")]
    pub order_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Present (true) when progress webhooks were asked for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub notify_progress: bool,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    /// Set once the order is final.
    pub result: Option<ResultView>,
    /// Calls placed or taken for this order, oldest first.
    pub attempts: Vec<AttemptView>,
    /// Refunds asked for (`POST /v1/orders/{id}/refunds`), oldest first,
    /// whatever their status.
    pub refunds: Vec<RefundView>,
    /// What has been given back, in fen: the sum of the `succeeded`
    /// refunds. The order's `status` stays `succeeded`.
    pub refunded_amount: i64,
}

/// The order's card, masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    /// First six and last four digits.
    #[schema(example = "622200******0017")]
    pub masked: String,
    #[serde(rename = "type")]
    pub kind: CardKind,
}

/// How a final order ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    /// Stable snake_case outcome, e.g. `approved`, `wrong_secret`, `no_answer`.
    pub code: String,
    /// The issuer's numeric code when the bank decided, e.g. `65`.
    pub resp_code: Option<String>,
    pub message: String,
}

/// One call placed or taken for the order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// e.g. `answered`, `no_answer`, `busy`, `failed`, `not_reached` (a
    /// machine answered: retried like no answer).
    pub outcome: Option<String>,
}

impl OrderView {
    /// The view of `o` with its call `attempts` (oldest first).
    pub fn new(o: &OrderRow, attempts: &[AttemptRow]) -> Self {
        Self {
            id: o.id.clone(),
            merchant_order_id: o.merchant_order_id.clone(),
            status: o.status(),
            mode: o.mode,
            amount: o.amount,
            currency: o.currency.clone(),
            description: o.description.clone(),
            phone: o.phone.clone(),
            language: o.language,
            card: CardView {
                masked: o.card_masked.clone(),
                kind: o.card_type,
            },
            bound: o.binding_id.is_some(),
            transfer_code: o
                .call_code
                .clone()
                .filter(|_| matches!(o.mode, Mode::Transfer | Mode::Assisted)),
            order_code: o.call_code.clone().filter(|_| o.mode == Mode::Inbound),
            notify_url: o.notify_url.clone(),
            notify_progress: o.notify_progress != 0,
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            expires_at: rfc3339(o.expires_at),
            result: o.result_code.as_ref().map(|code| ResultView {
                code: code.clone(),
                resp_code: o.resp_code.clone(),
                message: o.result_message.clone().unwrap_or_default(),
            }),
            attempts: attempts
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    started_at: rfc3339(a.started_at),
                    answered_at: a.answered_at.map(rfc3339),
                    ended_at: a.ended_at.map(rfc3339),
                    outcome: a.outcome.clone(),
                })
                .collect(),
            refunds: Vec::new(),
            refunded_amount: 0,
        }
    }

    /// The view with the order's `refunds` (oldest first) and the
    /// `refunded_amount` they add up to.
    #[must_use]
    pub fn with_refunds(mut self, refunds: &[RefundRow]) -> Self {
        self.refunded_amount = refunds
            .iter()
            .filter(|r| r.status == RefundStatus::Succeeded)
            .map(|r| r.amount)
            .sum();
        self.refunds = refunds.iter().map(RefundView::from).collect();
        self
    }
}

/// One refund of an order, as merchants see it in the order's `refunds`
/// and as `POST /v1/orders/{id}/refunds` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    /// voicepay's refund id.
    #[schema(example = "rfd_5f0c6b1e2d3a4b5c6d7e8f90")]
    pub id: String,
    /// Amount in fen.
    pub amount: i64,
    /// `pending`, `succeeded`, `failed` or `unknown` (no answer yet from
    /// the issuer; resolved like a purchase).
    #[schema(example = "succeeded")]
    pub status: String,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When the issuer's answer settled it (RFC 3339); `null` while open.
    pub decided_at: Option<String>,
}

impl From<&crate::store::RefundRow> for RefundView {
    fn from(r: &crate::store::RefundRow) -> Self {
        Self {
            id: r.id.clone(),
            amount: r.amount,
            status: r.status.as_str().to_owned(),
            created_at: rfc3339(r.created_at),
            decided_at: r.decided_at.map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RefundView;
    use crate::store::{RefundRow, RefundStatus};

    #[test]
    fn a_refund_shows_amount_status_and_times_and_nothing_of_the_issuer() {
        let row = RefundRow {
            id: "rfd_1".into(),
            order_id: "ord_1".into(),
            amount: 500,
            status: RefundStatus::Succeeded,
            stan: Some("000042".into()),
            transmitted_at: Some("1130142301".into()),
            rrn: Some("433412345678".into()),
            approval_code: Some("A1B2C3".into()),
            resp_code: Some("00".into()),
            idempotency_key: Some("k".into()),
            created_at: 1_764_505_381_000,
            decided_at: None,
        };
        let v = serde_json::to_value(RefundView::from(&row)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "rfd_1", "amount": 500, "status": "succeeded",
                "created_at": "2025-11-30T12:23:01.000Z", "decided_at": null,
            })
        );
    }
}
