//! `/v1/bindings`: the cards a merchant's customers' phones are bound to
//! (bound payment, DESIGN.md flow 4). A merchant sees and deletes only its
//! own bindings; another merchant's id is answered exactly like an unknown
//! one. Cards appear masked, never in full.

use super::error::{ApiError, ErrorBody, FieldError};
use super::{auth::Merchant, AppState};
use crate::domain::{CardKind, Phone};
use crate::store::BindingRow;
use crate::views::rfc3339;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The query of `GET /v1/bindings`. `phone` is required (a missing one is
/// a 422 naming it, not a 400), so it is read as an option.
#[derive(Debug, Deserialize)]
pub struct BindingsQuery {
    /// The cardholder's mobile number, as in orders (`+86` optional).
    pub phone: Option<String>,
}

/// The bindings found.
#[derive(Debug, Serialize, ToSchema)]
pub struct BindingList {
    pub bindings: Vec<BindingView>,
}

/// A phone bound to a card after the card's first successful payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct BindingView {
    /// Use it to delete the binding.
    #[schema(example = "bnd_5f0c6b1e2d3a4b5c6d7e8f90")]
    pub id: String,
    pub phone: String,
    pub card: BoundCardView,
    pub created_at: String,
}

/// The bound card, masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoundCardView {
    /// First six and last four digits.
    #[schema(example = "622200******0017")]
    pub masked: String,
    #[serde(rename = "type")]
    pub kind: CardKind,
    /// The issuing bank, by BIN, when it is known.
    #[schema(example = "Test Bank 1")]
    pub bank: Option<String>,
}

impl BindingView {
    fn new(phone: &Phone, b: &BindingRow) -> Self {
        Self {
            id: b.id.clone(),
            phone: phone.as_str().to_owned(),
            card: BoundCardView {
                masked: b.card_masked.clone(),
                kind: b.card_type,
                bank: crate::bank::builtin_bank_name(&b.card_masked).map(str::to_owned),
            },
            created_at: rfc3339(b.created_at),
        }
    }
}

/// List the cards bound to a phone.
#[utoipa::path(
    get, path = "/v1/bindings", tag = "bindings",
    params(("phone" = String, Query, pattern = r"^(\+86|0086|86)?1[3-9][0-9]{9}$", example = "13800138000", description = "The cardholder's mobile number, as in orders (`+86` optional). Required: bindings are listed per phone.")),
    responses(
        (status = 200, description = "This merchant's bindings for the phone (empty when none)", body = BindingList),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 422, description = "`phone` missing (`required`) or not a mainland mobile number (`invalid_phone`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    query: Result<Query<BindingsQuery>, QueryRejection>,
) -> Result<Json<BindingList>, ApiError> {
    let phone = match query.ok().and_then(|Query(q)| q.phone) {
        None => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "phone",
                "required",
                "phone is required",
            )]))
        }
        Some(p) => Phone::parse(&p)
            .map_err(|e| ApiError::Validation(vec![FieldError::new("phone", e.code, e.message)]))?,
    };
    let rows = state
        .store
        .bindings_for_phone(&merchant.id, phone.as_str())
        .await?;
    Ok(Json(BindingList {
        bindings: rows.iter().map(|b| BindingView::new(&phone, b)).collect(),
    }))
}

/// Unbind: later orders for the phone must carry the card again.
#[utoipa::path(
    delete, path = "/v1/bindings/{id}", tag = "bindings",
    params(("id" = String, Path, description = "binding id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such binding for this merchant", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::NotFound);
    }
    if !state.store.delete_binding(&merchant.id, &id).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(binding = %id, merchant = %merchant.id, "binding deleted");
    Ok(StatusCode::NO_CONTENT)
}
