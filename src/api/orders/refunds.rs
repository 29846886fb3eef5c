//! `POST /v1/orders/{id}/refunds`: give back all or part of a succeeded
//! order. The refund service ([`crate::matcher::Refunder`]) records it,
//! asks the issuer once and settles it; this handler checks the request and
//! turns the outcome into HTTP.

use super::{find, idempotency_key, require_json};
use crate::api::error::{ApiError, ErrorBody, FieldError};
use crate::api::{auth::Merchant, AppState};
use crate::domain::{Amount, Invalid};
use crate::matcher::RefundRefused;
use crate::views::RefundView;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/orders/{id}/refunds` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the body; parsing is field by field below
pub struct CreateRefundRequest {
    /// What to give back, in fen: at least 1, at most what is left of the
    /// order (its amount less its `pending`, `unknown` and `succeeded`
    /// refunds).
    #[schema(example = 5000, minimum = 1)]
    amount: i64,
}

/// Refund all or part of a succeeded order. The order stays `succeeded`;
/// the refund's `status` says what the issuer did (`succeeded`, `failed`,
/// or `unknown` while its answer is being found out), and `order.refunded`
/// is sent when it succeeds.
#[utoipa::path(
    post, path = "/v1/orders/{id}/refunds", tag = "orders",
    request_body = CreateRefundRequest,
    params(
        ("id" = String, Path, description = "voicepay order id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", example = "refund-A20261125001-1", description = "1-255 visible ASCII characters, per order. A retry with the key and the same amount returns the refund it made (as it stands now, with `Idempotent-Replayed: true`) and asks the issuer nothing; with another amount, 409 `idempotency_key_reused`."),
    ),
    responses(
        (status = 201, description = "The refund, as the issuer's answer left it", body = RefundView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 403, description = "The merchant is disabled (`merchant_disabled`), or has no card acceptor id while the issuer is the ISO 8583 link (`merchant_not_configured`); nothing was stored or sent", body = ErrorBody),
        (status = 409, description = "The order did not succeed (`not_refundable`), the amount is more than what is left to refund (`refund_exceeds_balance`), or the Idempotency-Key made a refund of another amount (`idempotency_key_reused`); nothing was stored or sent", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields (`invalid_request`: `amount` missing, not an integer, or below 1 fen) or a field given twice (`duplicate_field`)", body = ErrorBody),
        (status = 503, description = "The request took longer than `limits.request_timeout_secs` (`request_timeout`), or the node is at `limits.max_connections` (`overloaded`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = crate::api::json::body(body)?;
    let order = find(&state, &merchant.id, &id).await?;
    require_json(&headers)?;
    let key = idempotency_key(&headers)?;
    let amount = parse(crate::api::json::parse(&body)?)?;
    super::payable(&state, &merchant)?;
    let done = state
        .refunder
        .refund(&merchant.id, &order.id, amount, key.as_deref())
        .await
        .map_err(|e| match e {
            RefundRefused::OrderNotFound => ApiError::NotFound,
            RefundRefused::NotRefundable => ApiError::Conflict {
                code: "not_refundable",
                message: format!(
                    "the order is {}; only a succeeded order can be refunded",
                    order.status().as_str()
                ),
            },
            RefundRefused::ExceedsBalance { left } => ApiError::Conflict {
                code: "refund_exceeds_balance",
                message: format!("the amount is more than what is left to refund ({left} fen)"),
            },
            RefundRefused::KeyReused => ApiError::Conflict {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used for a refund of another amount".into(),
            },
            RefundRefused::Internal(e) => ApiError::Internal(e),
        })?;
    if !done.replayed {
        tracing::info!(order = %order.id, refund = %done.refund.id, amount = done.refund.amount, status = done.refund.status.as_str(), "refund made");
    }
    let mut resp = (
        StatusCode::CREATED,
        axum::Json(RefundView::from(&done.refund)),
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/orders/{}", order.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if done.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// The refund's amount from the body: an object with exactly `amount`, an
/// integer number of fen (`100.0` counts as one) of at least 1 (what is left is checked by the
/// store, under the order's lock).
fn parse(value: Value) -> Result<Amount, ApiError> {
    let obj = crate::api::json::object(value)?;
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| k.as_str() != "amount")
        .map(|k| FieldError::new(k, "unknown_field", "this field is not part of a refund"))
        .collect();
    let amount = match obj.get("amount") {
        None | Some(Value::Null) => Err(Invalid::new("required", "amount is required")),
        // JSON Schema's `integer` includes `100.0`: taken as 100 fen.
        Some(Value::Number(n)) => match n.as_i64().or_else(|| whole(n.as_f64()?)) {
            Some(fen) => Amount::parse(fen, i64::MAX),
            None => Err(Invalid::new(
                "wrong_type",
                "amount must be an integer number of fen",
            )),
        },
        Some(_) => Err(Invalid::new(
            "wrong_type",
            "amount must be an integer number of fen",
        )),
    };
    match amount {
        Ok(a) if errors.is_empty() => Ok(a),
        Ok(_) => Err(ApiError::Validation(errors)),
        Err(e) => {
            errors.push(FieldError::new("amount", e.code, e.message));
            Err(ApiError::Validation(errors))
        }
    }
}

/// `f` as an integer when it is one (and well inside what a double holds
/// exactly).
fn whole(f: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.fract() == 0.0 && f.abs() < EXACT).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::api::ApiError;
    use serde_json::json;

    fn codes(v: serde_json::Value) -> Vec<(String, String)> {
        match parse(v) {
            Err(ApiError::Validation(f)) => f.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_amount_is_a_positive_integer_of_fen_and_nothing_else_is_taken() {
        assert_eq!(parse(json!({"amount": 1})).unwrap().fen(), 1);
        // an integer in JSON Schema's sense
        assert_eq!(parse(json!({"amount": 25949.0})).unwrap().fen(), 25949);
        let field = |c: &str| vec![("amount".to_owned(), c.to_owned())];
        assert_eq!(codes(json!({})), field("required"));
        assert_eq!(codes(json!({"amount": null})), field("required"));
        assert_eq!(codes(json!({"amount": 0})), field("invalid_amount"));
        assert_eq!(codes(json!({"amount": -5})), field("invalid_amount"));
        assert_eq!(codes(json!({"amount": 1.5})), field("wrong_type"));
        assert_eq!(codes(json!({"amount": 1e300})), field("wrong_type"));
        assert_eq!(codes(json!({"amount": -0.0})), field("invalid_amount"));
        assert_eq!(codes(json!({"amount": "100"})), field("wrong_type"));
        assert_eq!(
            codes(json!({"amount": 100, "reason": "x"})),
            vec![("reason".to_owned(), "unknown_field".to_owned())]
        );
        assert_eq!(
            codes(json!([1])),
            vec![(String::new(), "not_an_object".to_owned())]
        );
    }
}
