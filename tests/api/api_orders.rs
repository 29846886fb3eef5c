//! The merchant order API against a real server on port 0, on SQLite and on
//! PostgreSQL: what a merchant sends, what comes back, and what is stored.

use serde_json::{json, Value};
use voicepay_testkit::{on_both_stores, order_body, spawn_app, Db, TestApp};

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// Sends `body`, expects a 422 naming `field` with `code`, and checks that
/// nothing at all was stored.
async fn assert_rejected(app: &TestApp, body: Value, field: &str, code: &str) {
    let before = app.footprint().await;
    let resp = app.create_order(&body).await;
    assert_eq!(resp.status(), 422, "{field}");
    let err = json_of(resp).await;
    assert_eq!(err["error"]["code"], "invalid_request");
    let fields = err["error"]["fields"].as_array().expect("fields listed");
    assert!(
        fields.iter().any(|f| f["field"] == field
            && f["code"] == code
            && f["message"].as_str().is_some_and(|m| !m.is_empty())),
        "expected {field}/{code} in {fields:?}"
    );
    assert_eq!(
        app.footprint().await,
        before,
        "a rejected request stored something"
    );
}

fn with(field: &str, value: Value) -> Value {
    let mut b = order_body("A1");
    b[field] = value;
    b
}

fn without(field: &str) -> Value {
    let mut b = order_body("A1");
    b.as_object_mut().unwrap().remove(field);
    b
}

async fn create_returns_the_pending_order_with_a_masked_card(app: TestApp) {
    let resp = app.create_order(&order_body("A20261125001")).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("6222000000000017") && !text.contains("11010519491231002X"),
        "{text}"
    );
    let order: Value = serde_json::from_str(&text).unwrap();
    let id = order["id"].as_str().unwrap();
    assert!(id.starts_with("ord_"));
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["mode"], "callback");
    assert_eq!(order["amount"], 12345);
    assert_eq!(order["currency"], "CNY");
    assert_eq!(order["phone"], "13800138000", "+86 prefix removed");
    assert_eq!(order["card"]["masked"], "622200******0017");
    assert_eq!(order["card"]["type"], "debit");
    assert_eq!(order["bound"], false);
    assert!(order.get("transfer_code").is_none());
    assert!(order["result"].is_null());
    let created = time::OffsetDateTime::parse(
        order["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        order["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - created).whole_seconds(), 900);

    let got = json_of(app.get(&location, &app.api_key).await).await;
    assert_eq!(got["id"], order["id"]);
    assert_eq!(got["status"], "pending");
    assert_eq!(got["attempts"], json!([]));
}

async fn credit_cards_are_typed_from_the_bin(app: TestApp) {
    let mut b = order_body("C1");
    b["card_number"] = json!("6250000000000012");
    let order = json_of(app.create_order(&b).await).await;
    assert_eq!(order["card"]["type"], "credit");
    assert_eq!(order["card"]["masked"], "625000******0012");
}

async fn transfer_orders_carry_a_one_time_code(app: TestApp) {
    let a = json_of(app.create_order(&with("mode", json!("transfer"))).await).await;
    let mut b2 = with("mode", json!("transfer"));
    b2["merchant_order_id"] = json!("A2");
    let b = json_of(app.create_order(&b2).await).await;
    for o in [&a, &b] {
        let code = o["transfer_code"].as_str().expect("transfer_code");
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|c| c.is_ascii_digit()));
    }
    assert_ne!(a["transfer_code"], b["transfer_code"]);
    // cancelling ends the code's life
    let cancelled = json_of(
        app.post_json(
            &format!("/v1/orders/{}/cancel", a["id"].as_str().unwrap()),
            &app.api_key,
            &json!({}),
        )
        .await,
    )
    .await;
    assert!(cancelled.get("transfer_code").is_none());
}

async fn bad_card_number_luhn(app: TestApp) {
    assert_rejected(
        &app,
        with("card_number", json!("6222000000000018")),
        "card_number",
        "invalid_card_number",
    )
    .await;
}
async fn bad_card_number_length(app: TestApp) {
    assert_rejected(
        &app,
        with("card_number", json!("622200000000001")),
        "card_number",
        "invalid_card_number",
    )
    .await;
}
async fn bad_id_number_check_digit(app: TestApp) {
    assert_rejected(
        &app,
        with("id_number", json!("110105194912310021")),
        "id_number",
        "invalid_id_number",
    )
    .await;
}
async fn bad_id_number_birth_date(app: TestApp) {
    // 1990-02-30 with a correct check character
    assert_rejected(
        &app,
        with("id_number", json!("11010519900230001X")),
        "id_number",
        "invalid_id_number",
    )
    .await;
}
async fn bad_phone(app: TestApp) {
    assert_rejected(
        &app,
        with("phone", json!("12800138000")),
        "phone",
        "invalid_phone",
    )
    .await;
}
async fn bad_merchant_order_id(app: TestApp) {
    assert_rejected(
        &app,
        with("merchant_order_id", json!("order-1")),
        "merchant_order_id",
        "invalid_merchant_order_id",
    )
    .await;
}
async fn bad_notify_url(app: TestApp) {
    assert_rejected(
        &app,
        with("notify_url", json!("ftp://shop.example/h")),
        "notify_url",
        "invalid_notify_url",
    )
    .await;
}
async fn bad_currency(app: TestApp) {
    assert_rejected(
        &app,
        with("currency", json!("USD")),
        "currency",
        "invalid_currency",
    )
    .await;
}
async fn bad_amount_zero(app: TestApp) {
    assert_rejected(&app, with("amount", json!(0)), "amount", "invalid_amount").await;
}
async fn bad_amount_over_limit(app: TestApp) {
    assert_rejected(
        &app,
        with("amount", json!(100_000_001)),
        "amount",
        "amount_too_large",
    )
    .await;
}
async fn bad_amount_type(app: TestApp) {
    assert_rejected(
        &app,
        with("amount", json!("123.45")),
        "amount",
        "wrong_type",
    )
    .await;
}
async fn bad_mode(app: TestApp) {
    assert_rejected(&app, with("mode", json!("sms")), "mode", "invalid_mode").await;
}
async fn bad_language(app: TestApp) {
    assert_rejected(
        &app,
        with("language", json!("fr")),
        "language",
        "invalid_language",
    )
    .await;
}
async fn missing_phone(app: TestApp) {
    assert_rejected(&app, without("phone"), "phone", "required").await;
}
async fn card_without_id_number(app: TestApp) {
    assert_rejected(&app, without("id_number"), "id_number", "required").await;
}
async fn unknown_field(app: TestApp) {
    assert_rejected(&app, with("pin", json!("123456")), "pin", "unknown_field").await;
}

async fn every_bad_field_is_listed_at_once(app: TestApp) {
    let body = json!({"merchant_order_id": "x-y", "amount": -1, "currency": "CNY", "phone": "1", "card_number": "1", "id_number": "2"});
    let err = json_of(app.create_order(&body).await).await;
    let fields: Vec<&str> = err["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "merchant_order_id",
        "amount",
        "phone",
        "card_number",
        "id_number",
    ] {
        assert!(fields.contains(&f), "{f} not in {fields:?}");
    }
}

async fn malformed_json_is_400(app: TestApp) {
    let resp = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{\"amount\": 1,")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json_of(resp).await["error"]["code"], "malformed_json");
    assert_eq!(app.footprint().await, (0, 0, 0));
}

async fn oversize_body_is_413(app: TestApp) {
    let mut b = order_body("A1");
    b["description"] = json!("x".repeat(20 * 1024));
    let resp = app.create_order(&b).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(json_of(resp).await["error"]["code"], "payload_too_large");
    assert_eq!(app.footprint().await, (0, 0, 0));
}

async fn non_json_content_type_is_415(app: TestApp) {
    let resp = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("content-type", "text/plain")
        .body(order_body("A1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(app.footprint().await, (0, 0, 0));
}

async fn missing_and_wrong_keys_are_401(app: TestApp) {
    let resp = app
        .http
        .post(app.url("/v1/orders"))
        .json(&order_body("A1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(json_of(resp).await["error"]["code"], "unauthorized");
    let resp = app
        .post_json("/v1/orders", "vpk_not-a-real-key", &order_body("A1"))
        .await;
    assert_eq!(resp.status(), 401);
    let resp = app
        .http
        .post(app.url("/v1/orders"))
        .header("authorization", format!("Basic {}", app.api_key))
        .json(&order_body("A1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(app.footprint().await, (0, 0, 0));
    assert_eq!(
        app.get("/v1/orders/ord_000000000000000000000000", "wrong")
            .await
            .status(),
        401
    );
}

async fn another_merchant_cannot_read_or_cancel(app: TestApp) {
    let order = json_of(app.create_order(&order_body("A1")).await).await;
    let id = order["id"].as_str().unwrap();
    let (_, other_key) = app.another_merchant().await;
    let resp = app.get(&format!("/v1/orders/{id}"), &other_key).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "not_found");
    let resp = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &other_key, &json!({}))
        .await;
    assert_eq!(resp.status(), 404);
    let mine = json_of(app.get(&format!("/v1/orders/{id}"), &app.api_key).await).await;
    assert_eq!(
        mine["status"], "pending",
        "the other merchant's cancel changed nothing"
    );
    // the other merchant may reuse the same merchant_order_id: ids are per merchant
    assert_eq!(
        app.post_json("/v1/orders", &other_key, &order_body("A1"))
            .await
            .status(),
        201
    );
}

async fn idempotency_key_replays_the_first_response(app: TestApp) {
    let send = |body: Value| {
        app.http
            .post(app.url("/v1/orders"))
            .bearer_auth(&app.api_key)
            .header("idempotency-key", "k-123")
            .json(&body)
            .send()
    };
    let first = send(order_body("A1")).await.unwrap();
    assert_eq!(first.status(), 201);
    let first_body = first.text().await.unwrap();
    let again = send(order_body("A1")).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.count("orders").await, 1);

    let mut changed = order_body("A1");
    changed["amount"] = json!(1);
    let conflict = send(changed).await.unwrap();
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        json_of(conflict).await["error"]["code"],
        "idempotency_key_reused"
    );
    assert_eq!(app.count("orders").await, 1);
}

async fn concurrent_retries_with_one_key_make_one_order(app: TestApp) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = app
            .http
            .post(app.url("/v1/orders"))
            .bearer_auth(&app.api_key)
            .header("idempotency-key", "race")
            .json(&order_body("R1"));
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    assert_eq!(app.count("orders").await, 1);
}

/// Many orders at once (on SQLite they are written in groups): a duplicate
/// among them is refused on its own and every other order is stored with its
/// `created` event.
async fn concurrent_orders_with_a_duplicate_among_them(app: TestApp) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let reference = if i % 20 == 0 {
            "DUP".to_owned()
        } else {
            format!("N{i}")
        };
        // A phone of its own each (the duplicates share one), so the phone's
        // daily order limit is not what this counts.
        let mut body = order_body(&reference);
        if reference != "DUP" {
            body["phone"] = json!(format!("1390000{i:04}"));
        }
        let req = app
            .http
            .post(app.url("/v1/orders"))
            .bearer_auth(&app.api_key)
            .json(&body);
        tasks.push(tokio::spawn(async move {
            (reference, req.send().await.unwrap().status().as_u16())
        }));
    }
    let mut dup = Vec::new();
    for t in tasks {
        let (reference, status) = t.await.unwrap();
        if reference == "DUP" {
            dup.push(status);
        } else {
            assert_eq!(status, 201, "{reference}");
        }
    }
    dup.sort();
    assert_eq!(dup, vec![201, 409]);
    assert_eq!(app.count("orders").await, 39);
    assert_eq!(app.count("order_events").await, 39);
}

async fn duplicate_merchant_order_id_is_409(app: TestApp) {
    assert_eq!(app.create_order(&order_body("A1")).await.status(), 201);
    let before = app.footprint().await;
    let resp = app.create_order(&order_body("A1")).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(json_of(resp).await["error"]["code"], "duplicate_order");
    assert_eq!(app.footprint().await, before);
}

async fn phone_only_order_without_binding_is_no_binding(app: TestApp) {
    let mut b = without("card_number");
    b.as_object_mut().unwrap().remove("id_number");
    let resp = app.create_order(&b).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json_of(resp).await["error"]["code"], "no_binding");
    assert_eq!(app.footprint().await, (0, 0, 0));
}

async fn cancel_before_authorization_and_409_after(app: TestApp) {
    let a = json_of(app.create_order(&order_body("A1")).await).await;
    let path = format!("/v1/orders/{}/cancel", a["id"].as_str().unwrap());
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    let c = json_of(resp).await;
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["result"]["code"], "merchant_cancelled");
    assert_eq!(
        app.post_json(&path, &app.api_key, &json!({}))
            .await
            .status(),
        200,
        "cancel is idempotent"
    );

    let b = json_of(app.create_order(&order_body("B1")).await).await;
    let id = b["id"].as_str().unwrap();
    // A worker has sent it to the bank.
    sqlx::query("UPDATE orders SET status = 'authorizing' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let resp = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &app.api_key, &json!({}))
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "order_not_cancellable"
    );
    assert_eq!(
        json_of(app.get(&format!("/v1/orders/{id}"), &app.api_key).await).await["status"],
        "authorizing"
    );
}

async fn unknown_order_is_404(app: TestApp) {
    for id in [
        "ord_000000000000000000000000",
        "../../etc/passwd",
        "x%27%20OR%201%3D1",
    ] {
        let resp = app.get(&format!("/v1/orders/{id}"), &app.api_key).await;
        assert_eq!(resp.status(), 404, "{id}");
    }
}

async fn every_transition_is_in_the_event_log(app: TestApp) {
    let a = json_of(app.create_order(&order_body("A1")).await).await;
    let id = a["id"].as_str().unwrap();
    app.post_json(&format!("/v1/orders/{id}/cancel"), &app.api_key, &json!({}))
        .await;
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT kind, from_status, to_status FROM order_events WHERE order_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("created".into(), None, Some("pending".into())),
            (
                "status".into(),
                Some("pending".into()),
                Some("cancelled".into())
            ),
        ]
    );
    let tamper = sqlx::query("UPDATE order_events SET kind = 'x' WHERE order_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await;
    assert!(tamper.is_err(), "order_events must be append-only");
    let delete = sqlx::query("DELETE FROM order_events WHERE order_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await;
    assert!(delete.is_err(), "order_events must be append-only");
}

async fn orders_past_their_window_expire(app: TestApp) {
    let a = json_of(app.create_order(&order_body("A1")).await).await;
    let id = a["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE orders SET expires_at = 0 WHERE id = $1")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let store = voicepay::store::Store::connect(
        &app.settings.database.url,
        1,
        voicepay::views::webhook_body,
    )
    .await
    .unwrap();
    assert_eq!(voicepay::app::expire_due(&store).await.unwrap(), 1);
    let got = json_of(app.get(&format!("/v1/orders/{id}"), &app.api_key).await).await;
    assert_eq!(got["status"], "expired");
    assert_eq!(got["result"]["code"], "order_expired");
    assert_eq!(
        voicepay::app::expire_due(&store).await.unwrap(),
        0,
        "an expired order stays expired"
    );
}

async fn ops_endpoints(app: TestApp) {
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body = json_of(ready).await;
    assert_eq!(body["database"], "ok", "{body}");
    // No `ari.password` in the test settings: calls are off, and said so.
    assert_eq!(body["ari"], "not_configured", "{body}");
    assert_eq!(body["bank"], serde_json::json!({"kind": "stub"}), "{body}");
    assert_eq!(body["ready"], true, "{body}");
    app.create_order(&order_body("A1")).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("voicepay_orders{status=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("voicepay_orders_created_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/orders\""), "{metrics}");
    let doc = app.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/orders", "post"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/cancel", "post"),
        ("/v1/orders/{id}/events", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["OrderView"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

on_both_stores!(
    create_returns_the_pending_order_with_a_masked_card,
    credit_cards_are_typed_from_the_bin,
    transfer_orders_carry_a_one_time_code,
    bad_card_number_luhn,
    bad_card_number_length,
    bad_id_number_check_digit,
    bad_id_number_birth_date,
    bad_phone,
    bad_merchant_order_id,
    bad_notify_url,
    bad_currency,
    bad_amount_zero,
    bad_amount_over_limit,
    bad_amount_type,
    bad_mode,
    bad_language,
    missing_phone,
    card_without_id_number,
    unknown_field,
    every_bad_field_is_listed_at_once,
    malformed_json_is_400,
    oversize_body_is_413,
    non_json_content_type_is_415,
    missing_and_wrong_keys_are_401,
    another_merchant_cannot_read_or_cancel,
    idempotency_key_replays_the_first_response,
    concurrent_retries_with_one_key_make_one_order,
    duplicate_merchant_order_id_is_409,
    concurrent_orders_with_a_duplicate_among_them,
    phone_only_order_without_binding_is_no_binding,
    cancel_before_authorization_and_409_after,
    unknown_order_is_404,
    every_transition_is_in_the_event_log,
    orders_past_their_window_expire,
    ops_endpoints,
);

/// The SQLite file (and its WAL) holds no card or ID number in plain text.
#[tokio::test]
async fn sqlite_file_holds_no_plain_card_or_id_number() {
    let app = spawn_app(Db::Sqlite).await.unwrap();
    for (i, (card, idn)) in [
        ("6222000000000017", "11010519491231002X"),
        ("6250000000000012", "310115198506154322"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = order_body(&format!("S{i}"));
        b["card_number"] = json!(card);
        b["id_number"] = json!(idn);
        assert_eq!(app.create_order(&b).await.status(), 201);
    }
    let db = app.sqlite_path.clone().unwrap();
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    assert!(bytes.len() > 4096);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("622200******0017"),
        "the masked form is stored"
    );
    for secret in [
        "6222000000000017",
        "6250000000000012",
        "11010519491231002X",
        "310115198506154322",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} found in plain text in the database file"
        );
    }
}
