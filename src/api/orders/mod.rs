//! `/v1/orders`: create, read and cancel.

pub mod capture;
pub mod events;
pub mod feeds;
pub mod refunds;
pub mod request;

use super::error::{ApiError, ErrorBody};
use super::{auth::Merchant, AppState};
use crate::config::BankKind;
use crate::crypto::random_hex;
use crate::domain::{OrderStatus, ResultCode};
use crate::store::{now_ms, IdempotencyEntry, MerchantRow, OrderRow, StoreError};
use crate::views::OrderView;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use request::NewOrder;

/// Refuses an order (or refund) the issuer could not be asked about: over
/// the ISO 8583 link every purchase and refund carries the merchant's card
/// acceptor id (F42), so a merchant without one is refused before anything
/// is stored (403 `merchant_not_configured`), not after the cardholder
/// keyed the secret. The merchant record comes from the key cache, so an
/// id set with `voicepay merchant set-acceptor-id` counts within
/// [`KEY_CACHE_TTL`](crate::api::auth::KEY_CACHE_TTL) (1 s).
pub(crate) fn payable(state: &AppState, merchant: &MerchantRow) -> Result<(), ApiError> {
    if state.settings.bank.kind == BankKind::Iso8583 && merchant.acceptor_id.is_none() {
        return Err(ApiError::Forbidden {
            code: "merchant_not_configured",
            message: "this merchant has no card acceptor id (ISO 8583 F42), which the card \
                      network needs: ask the operator to set one \
                      (voicepay merchant set-acceptor-id)"
                .into(),
        });
    }
    Ok(())
}

/// Create an order. The cardholder is then called (callback), awaits a
/// transfer (transfer) or dials in (inbound).
#[utoipa::path(
    post, path = "/v1/orders", tag = "orders",
    request_body = request::CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[!-~]{1,255}$", example = "order-A20261125001", description = "1-255 visible ASCII characters. Replays the first response for `orders.idempotency_ttl_secs` (24 h) when the request means the same (the same fields and values, in any order or spacing); 409 `idempotency_key_reused` with another request.")),
    responses(
        (status = 201, description = "Order created", body = OrderView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 403, description = "The merchant is disabled (`merchant_disabled`), or has no card acceptor id while the issuer is the ISO 8583 link (`merchant_not_configured`); nothing was stored or sent", body = ErrorBody),
        (status = 409, description = "merchant_order_id already used, or Idempotency-Key reused with another body", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid fields (`invalid_request`; e.g. `notify_url` / `invalid_notify_url`: not https, or a loopback, private or otherwise internal address), a field given twice (`duplicate_field`), or no card bound to the phone (`no_binding`)", body = ErrorBody),
        (status = 429, description = "The merchant's order rate or the phone's daily orders are used up (`rate_limited`); `Retry-After` says when to try again", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The request took longer than `limits.request_timeout_secs` (`request_timeout`), or the node is at `limits.max_connections` (`overloaded`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = crate::api::json::body(body)?;
    require_json(&headers)?;
    let key = idempotency_key(&headers)?;
    // Before any database read: the bucket bounds what a merchant can make
    // this node read and write.
    state.limits.take_order(&merchant.id)?;
    let value = super::json::parse(&body)?;
    let now = now_ms();
    // By meaning, not by bytes: key order and spacing do not change it.
    let idem = Idempotent::new(
        &state,
        &merchant.id,
        key,
        &super::json::canonical(&value),
        now,
    );
    if let Some(replay) = idem.replay(&state, &merchant.id).await? {
        return Ok(replay);
    }
    let new = request::from_value(value, state.settings.orders.max_amount)?;
    payable(&state, &merchant)?;
    if let Some(url) = &new.notify_url {
        check_notify_url(&state, url)?;
    }
    state
        .limits
        .check_phone(&state.store, new.phone.as_str())
        .await?;

    for _ in 0..5 {
        let row = order_row(&state, &merchant, &new, now).await?;
        let view = OrderView::new(&row, &[]);
        let json = serde_json::to_string(&view).map_err(anyhow::Error::from)?;
        match state.store.create_order(&row, idem.entry(201, &json)).await {
            Ok(()) => {
                state.metrics.orders_created.inc();
                tracing::info!(order = %row.id, merchant = %merchant.id, mode = row.mode.as_str(), card = %row.card_masked, amount = row.amount, "order created");
                return Ok(created(&row.id, json));
            }
            Err(StoreError::Conflict) => {
                if let Some(replay) = idem.replay(&state, &merchant.id).await? {
                    return Ok(replay);
                }
                if state
                    .store
                    .merchant_order_exists(&merchant.id, new.merchant_order_id.as_str())
                    .await?
                {
                    return Err(ApiError::Conflict {
                        code: "duplicate_order",
                        message: "an order with this merchant_order_id already exists".into(),
                    });
                }
                // Otherwise a transfer or order code collided: draw another.
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "could not allocate a unique order"
    )))
}

/// Get an order, with its result once final, its call attempts and its
/// refunds (`refunds`, `refunded_amount`).
#[utoipa::path(
    get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "voicepay order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = find(&state, &merchant.id, &id).await?;
    let attempts = state.store.attempts_for(&order.id).await?;
    let refunds = state.store.refunds_for(&order.id).await?;
    Ok(axum::Json(
        OrderView::new(&order, &attempts).with_refunds(&refunds),
    ))
}

/// Cancel an order that has not reached the bank yet. Cancelling twice is
/// harmless; once authorization has started the answer is 409.
#[utoipa::path(
    post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "voicepay order id")),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such order for this merchant", body = ErrorBody),
        (status = 409, description = "Authorization has started or the order is final (`order_not_cancellable`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = find(&state, &merchant.id, &id).await?;
    let stopped = state
        .store
        .stop_order(
            &order.id,
            OrderStatus::Cancelled,
            ResultCode::MerchantCancelled,
        )
        .await?;
    match stopped {
        Some(row) => {
            tracing::info!(order = %row.id, "order cancelled by merchant");
            let attempts = state.store.attempts_for(&row.id).await?;
            Ok(axum::Json(OrderView::new(&row, &attempts)))
        }
        None => {
            let now = state.store.order(&order.id).await?.map(|o| o.status);
            Err(ApiError::Conflict {
                code: "order_not_cancellable",
                message: format!(
                    "the order is {} and can no longer be cancelled",
                    now.map_or("gone", OrderStatus::as_str)
                ),
            })
        }
    }
}

pub(crate) async fn find(
    state: &AppState,
    merchant_id: &str,
    id: &str,
) -> Result<OrderRow, ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .order_for_merchant(merchant_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Builds the row to store: seals the card, or copies the phone's binding.
async fn order_row(
    state: &AppState,
    merchant: &crate::store::MerchantRow,
    new: &NewOrder,
    now: i64,
) -> Result<OrderRow, ApiError> {
    let vault = &state.vault;
    let (card_enc, card_masked, card_type, card_fp, id_enc, id_masked, binding_id) = match &new.card
    {
        Some((card, idn)) => (
            vault.seal("card_number", card.expose().as_bytes()),
            card.masked(),
            card.kind(),
            vault.fingerprint("card_number", card.expose()),
            vault.seal("id_number", idn.expose().as_bytes()),
            idn.masked(),
            None,
        ),
        None => {
            let b = state
                .store
                .binding_for_phone(&merchant.id, new.phone.as_str())
                .await?
                .ok_or(ApiError::Unprocessable {
                    code: "no_binding",
                    message: "no card is bound to this phone; send card_number and id_number"
                        .into(),
                })?;
            (
                b.card_enc,
                b.card_masked,
                b.card_type,
                b.card_fp,
                b.id_enc,
                b.id_masked,
                Some(b.id),
            )
        }
    };
    // Transfer: the one-time code of the call centre's dialplan. Inbound:
    // the order code a caller with several pending orders keys to pick
    // this one (src/calls/inbound.rs). Assisted: the code both the
    // cardholder's and the agent's channels present. One unique column.
    let call_code = matches!(
        new.mode,
        crate::domain::Mode::Transfer
            | crate::domain::Mode::Inbound
            | crate::domain::Mode::Assisted
    )
    .then(call_code);
    Ok(OrderRow {
        id: format!("ord_{}", random_hex(12)),
        merchant_id: merchant.id.clone(),
        merchant_order_id: new.merchant_order_id.as_str().to_owned(),
        status: OrderStatus::Pending,
        mode: new.mode,
        amount: new.amount.fen(),
        currency: "CNY".into(),
        description: new.description.as_ref().map(|d| d.as_str().to_owned()),
        phone: new.phone.as_str().to_owned(),
        language: new.language,
        notify_url: new.notify_url.as_ref().map(|u| u.as_str().to_owned()),
        card_enc,
        card_masked,
        card_type,
        card_fp,
        id_enc,
        id_masked,
        binding_id,
        call_code,
        result_code: None,
        resp_code: None,
        result_message: None,
        attempts: 0,
        created_at: now,
        updated_at: now,
        expires_at: now + state.settings.orders.expiry_secs as i64 * 1000,
        notify_progress: i64::from(new.notify_progress),
    })
}

/// Refuses a `notify_url` webhooks may not reach (422 `invalid_notify_url`
/// on the field): plain http unless `webhooks.allow_http`, and any
/// loopback, private, link-local or otherwise special address in whatever
/// spelling, unless its `host:port` is in `webhooks.allowed_private_targets`
/// ([`crate::notify::target`]). A name is checked again, resolved, when the
/// event is sent.
fn check_notify_url(state: &AppState, url: &crate::domain::NotifyUrl) -> Result<(), ApiError> {
    let policy = crate::notify::TargetPolicy::new(&state.settings.webhooks);
    let refused = match url::Url::parse(url.as_str()) {
        Ok(parsed) => policy.check(&parsed).err(),
        Err(_) => Some(crate::notify::Refused::NotAUrl),
    };
    match refused {
        None => Ok(()),
        Some(r) => {
            tracing::info!(reason = ?r, "notify_url refused");
            Err(ApiError::Validation(vec![super::FieldError::new(
                "notify_url",
                "invalid_notify_url",
                r.to_string(),
            )]))
        }
    }
}

/// An 8-digit code (leading zeros allowed): transfer code or order code.
fn call_code() -> String {
    use rand::Rng;
    format!("{:08}", rand::rngs::OsRng.gen_range(0..100_000_000u32))
}

fn created(id: &str, json: String) -> Response {
    let mut resp = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/orders/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// One request's `Idempotency-Key` plumbing (order creation, capture): the
/// key if one was given, the request's fingerprint and the cut-off (Unix
/// ms) before which a stored entry is stale
/// (`orders.idempotency_ttl_secs`).
struct Idempotent {
    key: Option<String>,
    hash: String,
    stale_before: i64,
}

impl Idempotent {
    /// `key` for `merchant_id`'s request `request` (the bytes that say what
    /// it means) received at `now` (Unix ms).
    fn new(
        state: &AppState,
        merchant_id: &str,
        key: Option<String>,
        request: &[u8],
        now: i64,
    ) -> Self {
        Idempotent {
            key,
            hash: state.vault.request_fingerprint(merchant_id, request),
            stale_before: now - state.settings.orders.idempotency_ttl_secs as i64 * 1000,
        }
    }

    /// The stored first response for the key (see [`replay`]); `None`
    /// without a key or a live entry; 409 `idempotency_key_reused` when the
    /// key was used with another request.
    async fn replay(
        &self,
        state: &AppState,
        merchant_id: &str,
    ) -> Result<Option<Response>, ApiError> {
        match &self.key {
            Some(key) => replay(state, merchant_id, key, &self.hash, self.stale_before).await,
            None => Ok(None),
        }
    }

    /// The entry to store with the first response (`status_code`, JSON
    /// `body`), when a key was given.
    fn entry<'a>(&'a self, status_code: u16, body: &'a str) -> Option<IdempotencyEntry<'a>> {
        self.key.as_deref().map(|key| IdempotencyEntry {
            key,
            request_hash: &self.hash,
            status_code,
            body,
            stale_before: self.stale_before,
        })
    }
}

/// The stored first response when this key was used with the same request
/// (same fingerprint: same fields and values, in any order or spacing);
/// 409 when it was used with another.
async fn replay(
    state: &AppState,
    merchant_id: &str,
    key: &str,
    request_hash: &str,
    stale_before: i64,
) -> Result<Option<Response>, ApiError> {
    let Some(stored) = state
        .store
        .idempotent_response(merchant_id, key, stale_before)
        .await?
    else {
        return Ok(None);
    };
    if stored.request_hash != request_hash {
        return Err(ApiError::Conflict {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with a different request body".into(),
        });
    }
    let status = StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK);
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(resp))
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_owned()))
        }
        _ => Err(ApiError::Validation(vec![super::error::FieldError::new(
            "Idempotency-Key",
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )])),
    }
}
