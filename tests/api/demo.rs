//! The demo page's backend on its own listener (`demo.listen`), as a
//! stranger would try it: it answers only JSON from its own page, shows an
//! order only to the browser session that placed it, limits how many orders
//! it places, never tells a stranger whether a phone has a bound card, is
//! not served on the merchant API's listener, and its merchant key stops
//! working when the demo is off. Each session is a [`DemoSession`]: the
//! cookie `GET /demo` set, as a browser keeps it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use voicepay_testkit::demo::DemoSession;
use voicepay_testkit::{on_both_stores, spawn_app_with, Db, TestApp};

const CARD: &str = "6222000000000017";
const OTHER_CARD: &str = "6217000000000014";
const ID_NUMBER: &str = "11010519491231002X";
const OTHER_ID: &str = "310115198506154322";

async fn demo_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |s| s.demo.enabled = true).await
}

fn phone() -> String {
    format!("1360014{:04}", rand::random::<u16>() % 10_000)
}

fn new_card(phone: &str) -> Value {
    json!({"amount": 12345, "phone": phone, "language": "zh",
           "card_number": CARD, "id_number": ID_NUMBER})
}

fn phone_only(phone: &str) -> Value {
    json!({"amount": 100, "phone": phone, "language": "zh"})
}

/// The demo merchant's key, derived as the daemon derives it.
fn demo_key(app: &TestApp) -> String {
    let ring = voicepay::crypto::KeyRing::load(&app.settings.crypto).expect("keys");
    let vault = voicepay::crypto::Vault::new(&ring);
    format!(
        "vpk_demo_{}",
        vault.fingerprint("demo_api_key", voicepay::demo::MERCHANT_ID)
    )
}

async fn demo_orders(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE merchant_id = 'mch_demo'")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// Orders, their events and call attempts: what a refused request must not change.
async fn footprint(app: &TestApp) -> (i64, i64, i64) {
    (
        demo_orders(app).await,
        app.count("order_events").await,
        app.count("call_attempts").await,
    )
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.expect("JSON error body"))
}

async fn placed(s: &DemoSession, body: &Value) -> Value {
    let resp = s.place(body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_strict() {
    let app = demo_app(Db::Sqlite).await.unwrap();
    let s = app.demo().await;
    assert!(s.cookie.starts_with("vp_demo_session="), "{}", s.set_cookie);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/demo"] {
        assert!(s.set_cookie.contains(attr), "{attr}: {}", s.set_cookie);
    }
    // A browser that has its session keeps it.
    let again = s.get("/demo").await;
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("set-cookie").is_none());
    assert_ne!(
        app.demo().await.cookie,
        s.cookie,
        "a new browser, a new session"
    );
}

/// A cross-site form (`text/plain` carrying JSON, or url-encoded) is 415,
/// another site's request 403, a request without the page's session 403:
/// no order, no event, no call.
#[tokio::test]
async fn a_form_post_or_another_sites_request_places_nothing() {
    let app = demo_app(Db::Sqlite).await.unwrap();
    let s = app.demo().await;
    let phone = phone();
    let before = footprint(&app).await;
    let json_text = new_card(&phone).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let resp = s
            .request(Method::POST, "/demo/api/orders")
            .header("content-type", content_type)
            .body(json_text.clone())
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 415, "{content_type}: {err}");
        assert_eq!(err["error"]["code"], "unsupported_media_type", "{err}");
    }
    let no_type = s
        .request(Method::POST, "/demo/api/orders")
        .body(json_text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status(), 415);

    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let resp = s
            .request(Method::POST, "/demo/api/orders")
            .header(name, value)
            .json(&new_card(&phone))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 403, "{name}: {value}: {err}");
        assert_eq!(err["error"]["code"], "cross_site_request", "{err}");
    }
    let cookieless = app
        .http
        .post(app.demo_url("/demo/api/orders"))
        .json(&new_card(&phone))
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(cookieless).await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["code"], "session_required", "{err}");
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused request stored something"
    );

    // The page's own request (same origin) is placed.
    let own = s
        .request(Method::POST, "/demo/api/orders")
        .header("origin", s.base.clone())
        .header("sec-fetch-site", "same-origin")
        .json(&new_card(&phone))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 201);
    assert_eq!(demo_orders(&app).await, before.0 + 1);
}

/// Session A's order: A reads it and follows its stream; session B, and a
/// browser without a session, get the very 404 of an order that does not
/// exist.
async fn another_session_gets_404_for_an_order(app: TestApp) {
    let a = app.demo().await;
    let b = app.demo().await;
    let order = placed(&a, &new_card(&phone())).await;
    let id = order["id"].as_str().unwrap();
    let mine = a.get(&format!("/demo/api/orders/{id}")).await;
    assert_eq!(mine.status(), 200);
    let view: Value = mine.json().await.unwrap();
    assert_eq!(view["id"], *id);
    assert_eq!(view["card"]["masked"], "622200******0017");

    let (_, missing) = error_of(b.get("/demo/api/orders/ord_000000000000000000000000").await).await;
    for path in [
        format!("/demo/api/orders/{id}"),
        format!("/demo/api/orders/{id}/events"),
    ] {
        let (status, err) = error_of(b.get(&path).await).await;
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(err, missing, "{path}: not the answer for a missing order");
        let anon = app.http.get(app.demo_url(&path)).send().await.unwrap();
        let (status, err) = error_of(anon).await;
        assert_eq!((status.as_u16(), &err), (404, &missing), "{path}");
    }
    // A's stream is open to A (the order stays pending: no ARI here).
    let stream = a.get(&format!("/demo/api/orders/{id}/events")).await;
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(stream);
}

/// 2 per session and 3 in all per minute: a session's third order and the
/// demo's fourth are 429 `rate_limited` with `Retry-After`, and store
/// nothing; an order the API refused takes no place.
#[tokio::test]
async fn order_creation_is_rate_limited_per_session_and_in_all() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.demo.enabled = true;
        s.demo.orders_per_session_per_minute = 2;
        s.demo.orders_per_minute = 3;
    })
    .await
    .unwrap();
    let a = app.demo().await;
    let b = app.demo().await;
    let bad = a
        .place(&json!({"amount": 100, "phone": "12345", "language": "zh",
                       "card_number": CARD, "id_number": ID_NUMBER}))
        .await;
    assert_eq!(bad.status(), 422);
    placed(&a, &new_card(&phone())).await;
    placed(&a, &new_card(&phone())).await;

    let check_limited = async |s: &DemoSession| {
        let before = footprint(&app).await;
        let resp = s.place(&new_card(&phone())).await;
        let retry_after: u64 = resp
            .headers()
            .get("retry-after")
            .expect("Retry-After")
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in seconds");
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 429, "{err}");
        assert_eq!(err["error"]["code"], "rate_limited", "{err}");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(
            footprint(&app).await,
            before,
            "a limited request stored something"
        );
    };
    check_limited(&a).await;
    // B has its own share, but the demo as a whole has one place left.
    placed(&b, &new_card(&phone())).await;
    check_limited(&b).await;
    assert_eq!(demo_orders(&app).await, 3);
}

/// The daemon does not start with the demo on a non-loopback address
/// unless `demo.allow_remote` says so; it stops before opening anything.
#[tokio::test]
async fn a_non_loopback_demo_listen_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = voicepay_testkit::test_settings(Db::Sqlite, dir.path())
        .await
        .unwrap();
    s.demo.enabled = true;
    s.demo.listen = "0.0.0.0:0".parse().unwrap();
    let err = voicepay::app::App::build(s.clone())
        .await
        .err()
        .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("demo.listen") && err.contains("demo.allow_remote"),
        "{err}"
    );
    assert!(
        !dir.path().join("voicepay.db").exists(),
        "the database was opened before the refusal"
    );
    s.demo.allow_remote = true;
    let app = voicepay::app::App::build(s)
        .await
        .expect("allowed on purpose");
    assert!(app.demo_addr().unwrap().ip().is_unspecified());

    // The binary says so and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_voicepay"))
        .current_dir(dir.path())
        .arg("serve")
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
        .env("VOICEPAY__DEMO__ENABLED", "true")
        .env("VOICEPAY__DEMO__LISTEN", "0.0.0.0:8081")
        .env_remove("VOICEPAY__DEMO__ALLOW_REMOTE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("demo.listen") && stderr.contains("demo.allow_remote = true"),
        "{stderr}"
    );
}

/// `/demo` is served on the demo's listener only; with the demo off its
/// merchant key is refused by the merchant API (401), and works again
/// once the demo is back on.
async fn the_demo_key_is_revoked_when_the_demo_is_off(mut app: TestApp) {
    let key = demo_key(&app);
    for (method, path) in [
        (Method::GET, "/demo"),
        (Method::POST, "/demo/api/orders"),
        (Method::GET, "/demo/api/orders/ord_x"),
    ] {
        let resp = app
            .http
            .request(method, app.url(path))
            .json(&new_card(&phone()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} on the API listener");
    }
    assert_eq!(
        app.get("/v1/bindings?phone=13800138000", &key)
            .await
            .status(),
        200,
        "the demo key works while the demo is on"
    );

    app.settings.demo.enabled = false;
    app.restart().await;
    assert!(app.demo_base.is_none(), "no demo listener");
    let listed = app.get("/v1/bindings?phone=13800138000", &key).await;
    assert_eq!(listed.status(), 401);
    let before = app.footprint().await;
    let mut body = voicepay_testkit::order_body("DEMOOFF1");
    body["phone"] = json!(phone());
    let (status, err) = error_of(app.post_json("/v1/orders", &key, &body).await).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "unauthorized");
    assert_eq!(app.footprint().await, before);
    let hash: String =
        sqlx::query_scalar("SELECT api_key_hash FROM merchants WHERE id = 'mch_demo'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(hash, "revoked:mch_demo");

    app.settings.demo.enabled = true;
    app.restart().await;
    assert_eq!(
        app.get("/v1/bindings?phone=13800138000", &key)
            .await
            .status(),
        200,
        "the demo on again re-keys its merchant"
    );
}

/// The order paid, and the phone bound to its card, as the matcher does
/// after a first success (the matcher's tests and the browser test show
/// the real path).
async fn pay_and_bind(app: &TestApp, id: &str) {
    sqlx::query("UPDATE orders SET status = 'succeeded', result_code = 'approved' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.bind_order_card(id).await;
}

/// A phone-only payment: the session that paid from the phone with the
/// bound card may use it; to any other session, also one that paid from
/// that phone with another card, the phone looks unbound, word for word,
/// and nothing is placed or called.
async fn a_strangers_bound_card_is_not_disclosed(app: TestApp) {
    let owner = app.demo().await;
    let stranger = app.demo().await;
    let bound_phone = phone();
    let first = placed(&owner, &new_card(&bound_phone)).await;
    pay_and_bind(&app, first["id"].as_str().unwrap()).await;
    // Another session pays from the same phone with another card.
    let other = app.demo().await;
    let mut body = new_card(&bound_phone);
    body["card_number"] = json!(OTHER_CARD);
    body["id_number"] = json!(OTHER_ID);
    let paid = placed(&other, &body).await;
    sqlx::query("UPDATE orders SET status = 'succeeded' WHERE id = $1")
        .bind(paid["id"].as_str().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();

    let before = footprint(&app).await;
    let (_, unbound) = error_of(stranger.place(&phone_only(&phone())).await).await;
    assert_eq!(unbound["error"]["code"], "no_binding", "{unbound}");
    for s in [&stranger, &other] {
        let resp = s.place(&phone_only(&bound_phone)).await;
        let (status, text) = (resp.status(), resp.text().await.unwrap());
        assert_eq!(status, 422, "{text}");
        assert!(!text.contains("622200") && !text.contains("0017"), "{text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err, unbound, "a bound phone answers unlike an unbound one");
    }
    assert_eq!(footprint(&app).await, before, "a refused order was placed");

    let mine = placed(&owner, &phone_only(&bound_phone)).await;
    assert_eq!(mine["card"]["masked"], "622200******0017");
    let binding_id: Option<String> =
        sqlx::query_scalar("SELECT binding_id FROM orders WHERE id = $1")
            .bind(mine["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(binding_id.is_some(), "the owner's order used the binding");
}

/// The agent desk (issue #16): `POST /demo/api/assisted` places an
/// assisted order with its one-time code for the session; Capture and
/// Cancel are relayed for that session's order only (404 to another
/// session or a cookie-less browser, 403 from another site) and answer the
/// API's refusals: with no leg in a bridge (no ARI here) `capture_not_ready`
/// and `no_capture_running`. None of them records anything.
async fn the_desk_moves_only_the_sessions_own_assisted_order(app: TestApp) {
    let a = app.demo().await;
    let b = app.demo().await;
    let resp = a
        .request(Method::POST, "/demo/api/assisted")
        .json(&new_card(&phone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["mode"], "assisted", "{order}");
    let code = order["transfer_code"].as_str().expect("a one-time code");
    assert!(
        code.len() == 8 && code.bytes().all(|d| d.is_ascii_digit()),
        "{code}"
    );
    let id = order["id"].as_str().unwrap();
    let before = footprint(&app).await;

    let post = |s: &DemoSession, what: &str| {
        s.request(Method::POST, &format!("/demo/api/orders/{id}/{what}"))
            .send()
    };
    let (status, err) = error_of(post(&a, "capture").await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), &err["error"]["code"]),
        (409, &json!("capture_not_ready")),
        "{err}"
    );
    let (status, err) = error_of(post(&a, "capture/cancel").await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), &err["error"]["code"]),
        (409, &json!("no_capture_running")),
        "{err}"
    );
    let (_, missing) = error_of(b.get("/demo/api/orders/ord_000000000000000000000000").await).await;
    for what in ["capture", "capture/cancel"] {
        let (status, err) = error_of(post(&b, what).await.unwrap()).await;
        assert_eq!((status.as_u16(), &err), (404, &missing), "{what}");
        let anon = app
            .http
            .post(app.demo_url(&format!("/demo/api/orders/{id}/{what}")))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(anon).await;
        assert_eq!((status.as_u16(), &err), (404, &missing), "{what}");
        let cross = a
            .request(Method::POST, &format!("/demo/api/orders/{id}/{what}"))
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(cross).await;
        assert_eq!(
            (status.as_u16(), &err["error"]["code"]),
            (403, &json!("cross_site_request")),
            "{what}"
        );
    }
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused move recorded something"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending");
}

on_both_stores!(
    spawn = demo_app;
    another_session_gets_404_for_an_order,
    the_desk_moves_only_the_sessions_own_assisted_order,
    the_demo_key_is_revoked_when_the_demo_is_off,
    a_strangers_bound_card_is_not_disclosed,
);
