//! The OpenAPI 3.1 document, generated from the handlers and types
//! themselves, plus what their attributes cannot say (see [`Contract`]).
//! `scripts/contract` checks the running API against it with schemathesis.
//!
//! Extending it: a new error code goes into [`super::error::ERROR_CODES`]
//! (the document's `ErrorDetail.code` enum) and, with its status, into the
//! `responses(...)` of each operation that answers it; a new response
//! header (e.g. `Retry-After`) into those `responses(...)` as `headers(...)`.

use super::error::ERROR_CODES;
use crate::api::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::json;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

/// The OpenAPI 3 document, generated from the handlers and types themselves.
#[derive(OpenApi)]
#[openapi(
    info(title = "voicepay merchant API", description = "Dual-channel card payments: the order over HTTPS, the cardholder's secret on the phone keypad."),
    paths(
        super::orders::create,
        super::orders::get,
        super::orders::cancel,
        super::orders::refunds::create,
        super::orders::capture::start,
        super::orders::capture::cancel,
        super::orders::events::stream,
        super::bindings::list,
        super::bindings::delete,
        super::webhooks::list,
        super::webhooks::redeliver,
        super::health::healthz,
        super::health::readyz,
        super::metrics::render,
        document,
    ),
    components(schemas(
        super::error::ErrorBody,
        crate::views::RefundView,
        super::orders::capture::CaptureView,
        super::error::FieldError,
        crate::views::OrderEvent,
        super::orders::events::StatusStreamEvent,
    )),
    modifiers(&BearerAuth, &MerchantDisabled, &Contract),
    tags((name = "orders", description = "Payment orders"), (name = "bindings", description = "Phones bound to cards"), (name = "webhooks", description = "Signed event notifications and their delivery"), (name = "ops", description = "Health and metrics"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The merchant API key from `voicepay merchant add`"))
                    .build(),
            ),
        );
    }
}

/// Every operation that takes an API key (it documents a 401) may also
/// answer 403 `merchant_disabled`: added here once rather than on each path.
struct MerchantDisabled;

impl Modify for MerchantDisabled {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let response = ResponseBuilder::new()
            .description(
                "The merchant is disabled by its operator (`voicepay merchant disable`): \
                 error code `merchant_disabled`; nothing was done",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in api.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                if op.responses.responses.contains_key("401") {
                    op.responses
                        .responses
                        .insert("403".into(), response.clone().into());
                }
            }
        }
    }
}

/// What the derive attributes cannot express: the error codes as an enum
/// (from [`ERROR_CODES`]), the result codes as an enum (from
/// `ResultCode::ALL`, with their respCodes) and the JSON inside each status event's `data`
/// (JSON Schema 2020-12 `contentSchema`, which OpenAPI 3.1 allows).
struct Contract;

impl Modify for Contract {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let Some(components) = api.components.as_mut() else {
            return;
        };
        if let Some(code) = object_property(&mut components.schemas, "ErrorDetail", "code") {
            code.enum_values = Some(ERROR_CODES.iter().map(|(c, _)| json!(c)).collect());
            let list: Vec<String> = ERROR_CODES
                .iter()
                .map(|(c, why)| format!("- `{c}`: {why}"))
                .collect();
            code.description = Some(format!("A stable machine code:\n{}", list.join("\n")));
        }
        if let Some(code) = object_property(&mut components.schemas, "ResultView", "code") {
            use crate::domain::ResultCode;
            code.enum_values = Some(ResultCode::ALL.iter().map(|c| json!(c.code())).collect());
            let list: Vec<String> = ResultCode::ALL
                .iter()
                .map(|c| match c.resp_code() {
                    Some(r) => format!("- `{}` ({r}): {}", c.code(), c.message()),
                    None => format!("- `{}`: {}", c.code(), c.message()),
                })
                .collect();
            code.description = Some(format!("A stable outcome code:\n{}", list.join("\n")));
        }
        if let Some(data) = object_property(&mut components.schemas, "StatusStreamEvent", "data") {
            data.extensions.get_or_insert_with(Default::default).insert(
                "contentSchema".into(),
                json!({"$ref": "#/components/schemas/OrderEvent"}),
            );
        }
    }
}

/// The inline object schema of `schema.property`, when both exist.
fn object_property<'a>(
    schemas: &'a mut std::collections::BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    property: &str,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    let Some(RefOr::T(Schema::Object(obj))) = schemas.get_mut(schema) else {
        return None;
    };
    match obj.properties.get_mut(property) {
        Some(RefOr::T(Schema::Object(p))) => Some(p),
        _ => None,
    }
}

/// This document, with the amount limit this daemon enforces
/// (`orders.max_amount`) as the body's `amount.maximum`.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn document(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        if let Some(amount) =
            object_property(&mut components.schemas, "CreateOrderRequest", "amount")
        {
            amount.maximum = Some(state.settings.orders.max_amount.into());
        }
    }
    Json(doc)
}
