//! The order as merchants see it: masked card, RFC 3339 times, the result
//! once final, and the call attempts.

use crate::domain::{CardKind, Mode, OrderStatus};
use crate::store::{AttemptRow, OrderRow};
use serde::Serialize;
use utoipa::ToSchema;

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
    pub language: String,
    pub card: CardView,
    /// Whether the card came from the phone's binding.
    pub bound: bool,
    /// One-time code the merchant's dialplan passes with a transferred call
    /// (transfer mode, until the order ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_code: Option<String>,
    /// Inbound mode, until the order ends: the code the cardholder keys
    /// after dialling the access number when their phone has several
    /// pending orders. Tell it to them with the access number.
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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    /// First six and last four digits.
    #[schema(example = "622200******0017")]
    pub masked: String,
    #[serde(rename = "type")]
    pub kind: CardKind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    /// Stable snake_case outcome, e.g. `approved`, `wrong_secret`, `no_answer`.
    pub code: String,
    /// The issuer's numeric code when the bank decided, e.g. `65`.
    pub resp_code: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// e.g. `answered`, `no_answer`, `busy`, `failed`.
    pub outcome: Option<String>,
}

impl OrderView {
    pub fn new(o: &OrderRow, attempts: &[AttemptRow]) -> Self {
        Self {
            id: o.id.clone(),
            merchant_order_id: o.merchant_order_id.clone(),
            status: o.status(),
            mode: crate::domain::Mode::parse(&o.mode).unwrap_or(Mode::Callback),
            amount: o.amount,
            currency: o.currency.clone(),
            description: o.description.clone(),
            phone: o.phone.clone(),
            language: o.language.clone(),
            card: CardView {
                masked: o.card_masked.clone(),
                kind: CardKind::parse(&o.card_type),
            },
            bound: o.binding_id.is_some(),
            transfer_code: o.transfer_code.clone().filter(|_| o.mode == "transfer"),
            order_code: o.transfer_code.clone().filter(|_| o.mode == "inbound"),
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
        }
    }
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with exactly three
/// fraction digits (`2026-11-25T12:34:56.340Z`): every API, webhook and
/// status-stream timestamp has the same width, so they sort as strings.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod rfc3339_tests {
    use super::rfc3339;

    #[test]
    fn the_fraction_always_has_three_digits() {
        // 2026-11-25T12:34:56Z
        let base = 1_795_610_096_000;
        assert_eq!(rfc3339(base), "2026-11-25T12:34:56.000Z");
        assert_eq!(rfc3339(base + 300), "2026-11-25T12:34:56.300Z");
        assert_eq!(rfc3339(base + 340), "2026-11-25T12:34:56.340Z");
        assert_eq!(rfc3339(base + 345), "2026-11-25T12:34:56.345Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn it_parses_back_as_rfc3339() {
        let s = rfc3339(1_795_610_096_340);
        let t = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(t.unix_timestamp_nanos(), 1_795_610_096_340 * 1_000_000);
    }
}
