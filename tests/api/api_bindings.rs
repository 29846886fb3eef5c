//! `/v1/bindings` against a real server on port 0, on SQLite and on
//! PostgreSQL: listing shows masked cards only, one merchant never sees or
//! deletes another's bindings, and unbinding brings back `no_binding`.
//! (The matcher's tests show the first payment creating the binding; here
//! it is created through the store from a paid order's row.)

use serde_json::Value;
use voicepay_testkit::{on_both_stores, order_body, TestApp};

const PHONE: &str = "13800138000";

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

/// An order through the API, and the phone bound to its card as the
/// matcher does after the first success. Returns the binding id.
async fn bind(app: &TestApp, merchant_order_id: &str) -> String {
    let resp = app.create_order(&order_body(merchant_order_id)).await;
    assert_eq!(resp.status(), 201);
    let id = json_of(resp).await["id"].as_str().unwrap().to_owned();
    app.bind_order_card(&id).await
}

fn phone_only(merchant_order_id: &str) -> Value {
    let mut b = order_body(merchant_order_id);
    let o = b.as_object_mut().unwrap();
    o.remove("card_number");
    o.remove("id_number");
    b
}

async fn list(app: &TestApp, key: &str, phone: &str) -> reqwest::Response {
    app.get(&format!("/v1/bindings?phone={phone}"), key).await
}

async fn delete(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/v1/bindings/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("request sent")
}

async fn list_shows_the_masked_card_and_its_bank(app: TestApp) {
    let id = bind(&app, "B1").await;
    // The phone in any accepted spelling finds it.
    for phone in [PHONE, "%2B8613800138000"] {
        let resp = list(&app, &app.api_key, phone).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("6222000000000017") && !text.contains("11010519491231002X"),
            "{text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        let list = body["bindings"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{body}");
        let b = &list[0];
        assert_eq!(b["id"], id.as_str());
        assert_eq!(b["phone"], PHONE);
        assert_eq!(b["card"]["masked"], "622200******0017");
        assert_eq!(b["card"]["type"], "debit");
        assert_eq!(b["card"]["bank"], "Test Bank 1");
        assert!(time::OffsetDateTime::parse(
            b["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok());
    }
    // Another phone has none.
    let other = json_of(list(&app, &app.api_key, "13900139000").await).await;
    assert_eq!(other["bindings"].as_array().unwrap().len(), 0);
    // A phone-only order uses the binding.
    let resp = app.create_order(&phone_only("B2")).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(json_of(resp).await["bound"], true);
}

async fn phone_is_required_and_checked(app: TestApp) {
    for path in [
        "/v1/bindings",
        "/v1/bindings?phone=12345",
        "/v1/bindings?phone=",
    ] {
        let resp = app.get(path, &app.api_key).await;
        assert_eq!(resp.status(), 422, "{path}");
        let err = json_of(resp).await;
        assert_eq!(err["error"]["code"], "invalid_request");
        assert_eq!(err["error"]["fields"][0]["field"], "phone", "{path}");
    }
    let resp = app
        .http
        .get(app.url(&format!("/v1/bindings?phone={PHONE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

async fn another_merchant_neither_sees_nor_deletes_it(app: TestApp) {
    let id = bind(&app, "B1").await;
    let (_, other_key) = app.another_merchant().await;
    let seen = json_of(list(&app, &other_key, PHONE).await).await;
    assert_eq!(seen["bindings"].as_array().unwrap().len(), 0);
    let resp = delete(&app, &other_key, &id).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_of(resp).await["error"]["code"], "not_found");
    for unknown in ["bnd_000000000000000000000000", "not-an-id!"] {
        assert_eq!(delete(&app, &app.api_key, unknown).await.status(), 404);
    }
    // Still there for its owner; the other merchant's phone-only order is
    // not paid with it.
    let mine = json_of(list(&app, &app.api_key, PHONE).await).await;
    assert_eq!(mine["bindings"].as_array().unwrap().len(), 1);
    let resp = app
        .post_json("/v1/orders", &other_key, &phone_only("X1"))
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json_of(resp).await["error"]["code"], "no_binding");
}

async fn delete_then_phone_only_order_is_no_binding(app: TestApp) {
    let id = bind(&app, "B1").await;
    let resp = delete(&app, &app.api_key, &id).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    let after = json_of(list(&app, &app.api_key, PHONE).await).await;
    assert_eq!(after["bindings"].as_array().unwrap().len(), 0);
    let resp = app.create_order(&phone_only("B2")).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json_of(resp).await["error"]["code"], "no_binding");
    // Deleting twice: the second finds nothing.
    assert_eq!(delete(&app, &app.api_key, &id).await.status(), 404);
}

async fn openapi_lists_the_bindings_paths(app: TestApp) {
    let doc = json_of(app.get("/openapi.json", &app.api_key).await).await;
    assert!(doc["paths"]["/v1/bindings"]["get"].is_object());
    assert!(doc["paths"]["/v1/bindings/{id}"]["delete"].is_object());
}

on_both_stores!(
    list_shows_the_masked_card_and_its_bank,
    phone_is_required_and_checked,
    another_merchant_neither_sees_nor_deletes_it,
    delete_then_phone_only_order_is_no_binding,
    openapi_lists_the_bindings_paths,
);
