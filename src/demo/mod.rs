//! The demo checkout page (`/demo`, when `demo.enabled`): a small merchant
//! front end, like the deck's "payment centre", for showing the whole flow
//! in a browser.
//!
//! The page talks only to the small backend below. The backend is a
//! merchant of its own: at start-up the daemon makes sure the demo merchant
//! exists, with an API key derived from the fingerprint key (so it is the
//! same on every node and every restart, and nothing but its hash is
//! stored). The key stays in this process: the backend calls the merchant
//! API in-process (the very router the API serves, so validation, storage
//! and the status stream are the API's own) and relays the answers, which
//! carry masked card data only.

mod cards;

use crate::api::AppState;
use crate::crypto::{random_token, sha256_hex, Vault};
use crate::store::{now_ms, Store};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;
use tower::ServiceExt;
use zeroize::Zeroizing;

/// The demo merchant's fixed id.
pub const MERCHANT_ID: &str = "mch_demo";

const PAGE: &str = include_str!("page.html");

/// Creates the demo merchant, or re-keys it, and returns its API key.
pub async fn ensure_merchant(store: &Store, vault: &Vault) -> anyhow::Result<Zeroizing<String>> {
    let key = Zeroizing::new(format!(
        "vpk_demo_{}",
        vault.fingerprint("demo_api_key", MERCHANT_ID)
    ));
    let secret = Zeroizing::new(format!("whsec_{}", random_token(32)));
    store
        .upsert_merchant_key(
            MERCHANT_ID,
            "voicepay demo checkout",
            &sha256_hex(key.as_bytes()),
            &vault.seal("webhook_secret", secret.as_bytes()),
            now_ms(),
        )
        .await?;
    Ok(key)
}

#[derive(Clone)]
struct Demo {
    key: Arc<Zeroizing<String>>,
    /// The merchant API, called in-process.
    api: Router,
}

/// `/demo` and its backend under `/demo/api/…`.
pub fn router(state: &AppState, key: Zeroizing<String>, api: Router) -> Router {
    let demo = Demo {
        key: Arc::new(key),
        api,
    };
    Router::new()
        .route("/demo", get(page))
        .route("/demo/api/orders", post(create))
        .route("/demo/api/orders/{id}", get(order))
        .route("/demo/api/orders/{id}/events", get(events))
        .layer(DefaultBodyLimit::max(state.settings.http.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |req: &Request<_>| tracing::info_span!("demo", method = %req.method(), path = %req.uri().path()),
        ))
        .with_state(demo)
}

#[derive(Deserialize)]
struct PageQuery {
    lang: Option<String>,
}

/// The page, in `?lang=` or the browser's preferred language (zh or en).
async fn page(Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let lang = language(q.lang.as_deref(), &headers);
    let html = PAGE
        .replace("{{LANG}}", lang)
        .replace("/*{{CARDS}}*/[]", &cards::json());
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = resp.headers_mut();
    // Nothing from elsewhere: the page is self-contained, and says so.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `zh` or `en`: an explicit choice, else the first of them in
/// Accept-Language (by quality), else `zh`.
pub fn language(choice: Option<&str>, headers: &HeaderMap) -> &'static str {
    match choice {
        Some("en") => return "en",
        Some("zh") => return "zh",
        _ => {}
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut best: Option<(f32, &'static str)> = None;
    for part in accept.split(',') {
        let mut it = part.split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let lang = match tag.split('-').next() {
            Some("zh") => "zh",
            Some("en") => "en",
            _ => continue,
        };
        if !matches!(best, Some((bq, _)) if bq >= q) {
            best = Some((q, lang));
        }
    }
    best.map_or("zh", |(_, l)| l)
}

/// What the page sends: the payment, without a merchant order id or key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkout {
    amount: serde_json::Value,
    phone: serde_json::Value,
    language: serde_json::Value,
    card_number: Option<serde_json::Value>,
    id_number: Option<serde_json::Value>,
}

/// Places a callback order as the demo merchant; answers what the API
/// answered (the order, masked, or the API's error with every bad field).
async fn create(State(demo): State<Demo>, body: Bytes) -> Response {
    // Strict first: a field twice is a 422 naming it, as on the API.
    let value = match crate::api::json::parse(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let Ok(c) = serde_json::from_value::<Checkout>(value) else {
        return crate::api::ApiError::MalformedJson("the checkout form could not be read".into())
            .into_response();
    };
    let mut order = serde_json::json!({
        "merchant_order_id": format!("DEMO{}", crate::crypto::random_hex(8)),
        "amount": c.amount,
        "currency": "CNY",
        "phone": c.phone,
        "language": c.language,
        "mode": "callback",
        "description": "voicepay demo checkout",
    });
    // Both or neither: the API says which one is missing.
    for (name, value) in [("card_number", c.card_number), ("id_number", c.id_number)] {
        if let Some(v) = value.filter(|v| !v.is_null() && v.as_str() != Some("")) {
            order[name] = v;
        }
    }
    demo.call(
        Method::POST,
        "/v1/orders",
        None,
        Body::from(order.to_string()),
    )
    .await
}

/// The order as the API shows it.
async fn order(State(demo): State<Demo>, Path(id): Path<String>) -> Response {
    if !plausible_id(&id) {
        return crate::api::ApiError::NotFound.into_response();
    }
    demo.call(
        Method::GET,
        &format!("/v1/orders/{id}"),
        None,
        Body::empty(),
    )
    .await
}

/// The order's status stream, relayed (resumable with Last-Event-ID too).
async fn events(State(demo): State<Demo>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !plausible_id(&id) {
        return crate::api::ApiError::NotFound.into_response();
    }
    let last = headers.get("last-event-id").cloned();
    demo.call(
        Method::GET,
        &format!("/v1/orders/{id}/events"),
        last,
        Body::empty(),
    )
    .await
}

/// Order ids are letters, digits and `_`: nothing else reaches the inner URI.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Demo {
    /// One request to the merchant API as the demo merchant.
    async fn call(
        &self,
        method: Method,
        path: &str,
        last_event_id: Option<HeaderValue>,
        body: Body,
    ) -> Response {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(v) = last_event_id {
            req = req.header("last-event-id", v);
        }
        let auth = Zeroizing::new(format!("Bearer {}", self.key.as_str()));
        let req = match HeaderValue::from_str(&auth) {
            Ok(mut v) => {
                v.set_sensitive(true);
                req.header(header::AUTHORIZATION, v).body(body)
            }
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
        match req {
            Ok(req) => match self.api.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn language_from_query_then_accept_language_then_zh() {
        assert_eq!(language(Some("en"), &accept("zh-CN")), "en");
        assert_eq!(language(Some("zh"), &accept("en-US")), "zh");
        assert_eq!(language(None, &accept("en-GB,en;q=0.9")), "en");
        assert_eq!(
            language(None, &accept("fr;q=1, en;q=0.5, zh-CN;q=0.8")),
            "zh"
        );
        assert_eq!(language(Some("de"), &accept("de-DE")), "zh");
        assert_eq!(language(None, &HeaderMap::new()), "zh");
    }

    #[test]
    fn every_result_code_has_words_in_both_languages() {
        for lang in ["zh", "en"] {
            let start = PAGE
                .find(&format!("/*{lang}-results*/"))
                .unwrap_or_else(|| panic!("no {lang} result table"));
            let table = &PAGE[start..];
            let table = &table[..table.find('}').expect("table end")];
            for code in crate::domain::ResultCode::ALL {
                assert!(
                    table.contains(&format!("{}:", code.code())),
                    "{lang}: no words for {}",
                    code.code()
                );
            }
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "//cdn", "@import", "src=\"", "url("] {
            assert!(!PAGE.contains(needle), "the page refers to {needle}");
        }
    }
}
