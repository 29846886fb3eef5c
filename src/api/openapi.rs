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
    modifiers(&BearerAuth, &MerchantDisabled),
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

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
