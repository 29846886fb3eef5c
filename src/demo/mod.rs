//! The demo checkout page (`/demo`, when `demo.enabled`): a small merchant
//! front end, like the deck's "payment centre", for showing the whole flow
//! in a browser.
//!
//! The page talks only to the small backend in [`orders`]. The backend is a
//! merchant of its own: at start-up the daemon makes sure the demo merchant
//! exists, with an API key derived from the fingerprint key (so it is the
//! same on every node and every restart, and nothing but its hash is
//! stored); when the demo is off, that key is revoked instead. The key stays
//! in this process: the backend calls the merchant API in-process (the very
//! router the API serves, so validation, storage and the status stream are
//! the API's own) and relays the answers, which carry masked card data only.
//!
//! The demo is a merchant without a login, so it is served on a listener of
//! its own (`demo.listen`, loopback unless `demo.allow_remote`), never on
//! the merchant API's, and ties every order to the browser session that
//! placed it ([`session`]), within a rate ([`limit`]).

mod cards;
mod desk;
mod limit;
mod orders;
mod session;

pub use session::COOKIE as SESSION_COOKIE;

use crate::api::AppState;
use crate::crypto::{random_token, sha256_hex, Vault};
use crate::domain::AcceptorId;
use crate::store::{now_ms, Store};
use axum::extract::{DefaultBodyLimit, Query};
use axum::http::{header, HeaderMap, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;
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
    // F42 for the ISO 8583 link; an operator's own choice is kept.
    if store.merchant_acceptor_id(MERCHANT_ID).await?.is_none() {
        let id = AcceptorId::parse(DEMO_ACCEPTOR_ID).expect("a valid acceptor id");
        store
            .set_merchant_acceptor_id(MERCHANT_ID, Some(&id))
            .await?;
    }
    Ok(key)
}

/// The demo merchant's card acceptor id (ISO 8583 F42) unless an operator
/// set another (`voicepay merchant set-acceptor-id`).
pub const DEMO_ACCEPTOR_ID: &str = "VPDEMOCHECKOUT";

/// With the demo off: makes the demo merchant's key unusable on the
/// merchant API (its derived value would otherwise stay valid for anyone
/// who can compute it, or who saw it while the demo was on). Returns whether
/// a usable key was revoked; a later start with the demo on re-keys it.
pub async fn revoke_merchant(store: &Store) -> anyhow::Result<bool> {
    Ok(store.revoke_own_merchant_key(MERCHANT_ID).await?)
}

#[derive(Clone)]
struct Demo {
    key: Arc<Zeroizing<String>>,
    /// The merchant API, called in-process.
    api: Router,
    /// The daemon's store, vault and settings.
    state: AppState,
    /// Orders per session and for the whole demo, per rolling minute.
    limiter: Arc<limit::Limiter>,
}

/// `/demo` and its backend under `/demo/api/…`, for the demo's own
/// listener: `api` is the merchant API's router, called in-process with
/// `key`.
pub fn router(state: &AppState, key: Zeroizing<String>, api: Router) -> Router {
    let settings = &state.settings.demo;
    let demo = Demo {
        key: Arc::new(key),
        api,
        state: state.clone(),
        limiter: Arc::new(limit::Limiter::new(
            settings.orders_per_session_per_minute,
            settings.orders_per_minute,
        )),
    };
    Router::new()
        .route("/demo", get(page))
        .route("/demo/api/orders", post(orders::create))
        .route("/demo/api/orders/{id}", get(orders::order))
        .route("/demo/api/orders/{id}/events", get(orders::events))
        .route("/demo/api/assisted", post(desk::create))
        .route("/demo/api/orders/{id}/capture", post(desk::capture))
        .route("/demo/api/orders/{id}/capture/cancel", post(desk::cancel))
        .fallback(|| async { crate::api::ApiError::NotFound })
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

/// The page, in `?lang=` or the browser's preferred language (zh or en),
/// with a new session cookie when the browser has none.
async fn page(
    axum::extract::State(demo): axum::extract::State<Demo>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = language(q.lang.as_deref(), &headers);
    let html = PAGE
        .replace("{{LANG}}", lang)
        .replace("/*{{CARDS}}*/[]", &cards::json());
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = resp.headers_mut();
    // Nothing from elsewhere: the page is self-contained, and says so; and
    // no other site may frame it (a click-jacked "Pay").
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if session::Session::from_headers(&headers, &demo.state.vault).is_none() {
        h.insert(header::SET_COOKIE, session::Session::issue());
    }
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
