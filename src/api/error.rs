//! Error policy at the HTTP edge: handlers return `ApiError`, whose response
//! is a stable JSON shape `{"error":{"code","message","fields"?}}`. Internal
//! errors are logged with their cause and answered with a bare 500 that
//! reveals nothing; nothing a merchant sent is ever echoed back verbatim.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One bad field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field (or header) at fault.
    pub field: String,
    /// A stable machine code, e.g. `invalid_card_number`, `required`.
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    /// 403 `merchant_disabled`: the key is the merchant's, but an operator
    /// disabled the merchant (`voicepay merchant disable`).
    #[error("this merchant is disabled; contact the operator")]
    MerchantDisabled,
    #[error("not found")]
    NotFound,
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 422 `duplicate_field`: a JSON object in the body has this key (a path
    /// such as `amount` or `card.number`) more than once.
    #[error("the field `{0}` is given more than once")]
    DuplicateField(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 409 with a specific code (duplicate order, idempotency mismatch…).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 422 with a specific code that is not a field error (e.g. no binding).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 403 with a specific code: refused whoever asks (the demo page's
    /// `cross_site_request`, `session_required`).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 429 `rate_limited`: a `[limits]` rate or stream cap, or the demo
    /// page's order rate, is reached;
    /// answered with `Retry-After: retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// 503 `request_timeout`: no response within `limits.request_timeout_secs`.
    #[error("the request took too long; try again")]
    RequestTimeout,
    /// 503 `overloaded`: the node holds `limits.max_connections` already.
    #[error("too many connections; try again shortly")]
    Overloaded,
    /// 503 `database_unavailable`: the database did not answer
    /// ([`crate::store::StoreError::is_unavailable`]); nothing was done.
    /// Answered for any [`ApiError::Internal`] whose cause is that.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

/// Every top-level `error.code` the API answers with, and when. The OpenAPI
/// document's `ErrorDetail.code` is exactly this list (an `enum`), so a
/// response with a code missing here fails the contract check
/// (`scripts/contract`): a new code is one line here, besides its status in
/// the operations that answer it.
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("unauthorized", "401: missing or wrong API key"),
    ("not_found", "404: no such resource for this merchant"),
    (
        "invalid_request",
        "422: bad fields, each listed in `fields`",
    ),
    (
        "duplicate_field",
        "422: a JSON object names a field twice; `fields[0].field` is its path",
    ),
    (
        "no_binding",
        "422: no card is bound to the phone of a bound payment",
    ),
    ("malformed_json", "400: the body is not one JSON value"),
    (
        "payload_too_large",
        "413: the body is over `http.max_body_bytes`",
    ),
    (
        "unsupported_media_type",
        "415: the body is not `application/json`",
    ),
    (
        "duplicate_order",
        "409: the merchant_order_id is already used",
    ),
    (
        "idempotency_key_reused",
        "409: the Idempotency-Key came with another request",
    ),
    (
        "order_not_cancellable",
        "409: authorization has started or the order is final",
    ),
    (
        "merchant_not_configured",
        "403: the merchant has no card acceptor id (ISO 8583 F42) and the issuer is the acquirer link; the operator sets one; nothing was stored or sent",
    ),
    (
        "not_refundable",
        "409: a refund of an order that did not succeed; nothing was stored or sent",
    ),
    (
        "refund_exceeds_balance",
        "409: a refund of more than what is left of the order; nothing was stored or sent",
    ),
    (
        "order_not_assisted",
        "409: a capture on an order whose mode is not `assisted`; nothing changed",
    ),
    (
        "capture_not_ready",
        "409: the cardholder or the agent of the assisted call is not in voicepay's bridge yet; nothing changed",
    ),
    (
        "capture_in_progress",
        "409: a capture is already requested or running, or the secret is with the issuer; nothing changed",
    ),
    (
        "no_capture_running",
        "409: a capture cancel with no capture requested or running; nothing changed",
    ),
    (
        "order_final",
        "409: a capture on an order that is final; nothing changed",
    ),
    (
        "webhook_in_flight",
        "409: the event is being sent right now",
    ),
    (
        "merchant_disabled",
        "403: the merchant is disabled by its operator; nothing was done",
    ),
    (
        "rate_limited",
        "429: a `[limits]` rate or cap is reached; `Retry-After` gives the seconds to wait",
    ),
    (
        "request_timeout",
        "503: no response within `limits.request_timeout_secs`; `Retry-After: 1`",
    ),
    (
        "overloaded",
        "503: the node holds `limits.max_connections` already; `Retry-After: 1`",
    ),
    (
        "database_unavailable",
        "503: the database did not answer; nothing was done; `Retry-After: 5`",
    ),
    (
        "internal",
        "500: an internal error (logged, never described)",
    ),
];

/// The error body, for the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of [`ERROR_CODES`] (the document lists them as an `enum`).
    #[schema(example = "invalid_request")]
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::MerchantDisabled => (StatusCode::FORBIDDEN, "merchant_disabled"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::DuplicateField(_) => (StatusCode::UNPROCESSABLE_ENTITY, "duplicate_field"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::RequestTimeout => (StatusCode::SERVICE_UNAVAILABLE, "request_timeout"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::DatabaseUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = match self {
            ApiError::Internal(e) if database_unavailable(&e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "request failed: database unavailable"
                );
                ApiError::DatabaseUnavailable
            }
            other => other,
        };
        let (status, code) = this.parts();
        if let ApiError::Internal(e) = &this {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let message = match &this {
            ApiError::Validation(_) => "the request has invalid fields".to_owned(),
            other => other.to_string(),
        };
        let retry_after = match &this {
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            ApiError::RequestTimeout | ApiError::Overloaded => Some(1),
            ApiError::DatabaseUnavailable => Some(5),
            _ => None,
        };
        let fields = match this {
            ApiError::Validation(f) => Some(f),
            ApiError::DuplicateField(path) => Some(vec![FieldError::new(
                &path,
                "duplicate_field",
                "a JSON object may name each field once",
            )]),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                fields,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Whether an internal error was caused by the database not answering
/// (a [`crate::store::StoreError`] anywhere in its chain that
/// [`is_unavailable`](crate::store::StoreError::is_unavailable)).
fn database_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::store::StoreError>()
            .is_some_and(crate::store::StoreError::is_unavailable)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_answered_is_in_the_documented_list() {
        let listed = |code: &str| ERROR_CODES.iter().any(|(c, _)| *c == code);
        for e in [
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::Validation(vec![]),
            ApiError::MalformedJson(String::new()),
            ApiError::DuplicateField("amount".into()),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::MerchantDisabled,
            ApiError::RateLimited {
                retry_after_secs: 1,
                message: String::new(),
            },
            ApiError::RequestTimeout,
            ApiError::Overloaded,
            ApiError::Internal(anyhow::anyhow!("x")),
        ] {
            let (_, code) = e.parts();
            assert!(listed(code), "{code} is missing from ERROR_CODES");
        }
        let mut codes: Vec<&str> = ERROR_CODES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ERROR_CODES.len(), "a code is listed twice");
    }

    #[test]
    fn a_duplicate_field_names_its_path() {
        let resp = ApiError::DuplicateField("extra.k".into()).into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
