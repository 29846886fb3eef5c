use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The OpenAPI 3 document, generated from the handlers and types themselves.
#[derive(OpenApi)]
#[openapi(
    info(title = "voicepay merchant API", description = "Dual-channel card payments: the order over HTTPS, the cardholder's secret on the phone keypad."),
    paths(
        super::orders::create,
        super::orders::get,
        super::orders::cancel,
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
    components(schemas(super::error::ErrorBody, super::error::FieldError)),
    modifiers(&BearerAuth),
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
