//! The API contract (issue #11): bodies with a key twice are refused, the
//! Idempotency-Key is bound to the request's meaning under a keyed
//! fingerprint, and the OpenAPI document says what the server does (where
//! schemathesis found them apart, `scripts/contract`).

use serde_json::{json, Value};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

/// POSTs a raw body (exactly these bytes) to `/v1/orders`.
async fn post_raw(app: &TestApp, body: &str, idempotency_key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    req.send().await.expect("request sent")
}

/// Expects 422 `duplicate_field` naming `path`, and nothing stored.
async fn assert_duplicate(app: &TestApp, body: &str, path: &str) {
    let before = app.footprint().await;
    let resp = post_raw(app, body, Some("dup-key")).await;
    assert_eq!(resp.status(), 422, "{body}");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "duplicate_field", "{err}");
    assert_eq!(err["error"]["fields"][0]["field"], path, "{err}");
    assert_eq!(err["error"]["fields"][0]["code"], "duplicate_field");
    assert!(
        err["error"]["message"].as_str().unwrap().contains(path),
        "{err}"
    );
    assert_eq!(
        app.footprint().await,
        before,
        "a refused body stored something"
    );
}

async fn a_top_level_key_twice_is_refused_not_last_wins(app: TestApp) {
    let body = r#"{"merchant_order_id":"A2","amount":100,"currency":"CNY","phone":"13800138000",
        "card_number":"6222000000000017","id_number":"11010519491231002X","amount":4999999}"#;
    assert_duplicate(&app, body, "amount").await;
    assert_eq!(app.footprint().await, (0, 0, 0));
}

async fn a_nested_key_twice_is_refused_with_its_path(app: TestApp) {
    let body = r#"{"merchant_order_id":"A3","amount":100,"currency":"CNY","phone":"13800138000",
        "card_number":"6222000000000017","id_number":"11010519491231002X",
        "extra":{"note":"a","deep":[{"k":1,"k":2}]}}"#;
    assert_duplicate(&app, body, "extra.deep[0].k").await;
    let body = r#"{"merchant_order_id":"A3","extra":{"amount":1,"amount":2}}"#;
    assert_duplicate(&app, body, "extra.amount").await;
    assert_eq!(app.footprint().await, (0, 0, 0));
}

const FIRST: &str = r#"{"merchant_order_id":"I1","amount":12345,"currency":"CNY","phone":"13800138000","card_number":"6222000000000017","id_number":"11010519491231002X"}"#;
/// FIRST with its fields in another order, other spacing, and a null
/// (read as absent) added.
const SAME_MEANING: &str = "{\n  \"id_number\" : \"11010519491231002X\",\n\t\"card_number\":\"6222000000000017\", \"phone\":\"13800138000\",\n  \"currency\":\"CNY\", \"description\": null,\"amount\":12345,   \"merchant_order_id\":\"I1\"\n}\n";

async fn the_same_order_reordered_and_respaced_replays(app: TestApp) {
    let first = post_raw(&app, FIRST, Some("key-1")).await;
    assert_eq!(first.status(), 201);
    let first_body = first.text().await.unwrap();
    let again = post_raw(&app, SAME_MEANING, Some("key-1")).await;
    assert_eq!(
        again.status(),
        201,
        "the same request, reordered, is a replay"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.count("orders").await, 1);

    let different = FIRST.replace("12345", "12346");
    let before = app.footprint().await;
    let conflict = post_raw(&app, &different, Some("key-1")).await;
    assert_eq!(conflict.status(), 409);
    let err: Value = conflict.json().await.unwrap();
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.footprint().await, before, "a 409 stored something");
}

async fn the_stored_fingerprint_is_keyed_not_a_plain_hash(app: TestApp) {
    assert_eq!(post_raw(&app, FIRST, Some("key-2")).await.status(), 201);
    let stored: String =
        sqlx::query_scalar("SELECT request_hash FROM idempotency_keys WHERE key = $1")
            .bind("key-2")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 64, "{stored}");
    assert!(stored.bytes().all(|b| b.is_ascii_hexdigit()));
    let canonical = serde_json::to_vec(&serde_json::from_str::<Value>(FIRST).unwrap()).unwrap();
    for plain in [FIRST.as_bytes(), SAME_MEANING.as_bytes(), &canonical] {
        assert_ne!(
            stored,
            voicepay::crypto::sha256_hex(plain),
            "the fingerprint is an unkeyed SHA-256, guessable offline"
        );
    }
}

/// The served document, and one operation's parameter by name.
fn parameter<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

async fn bindings_phone_is_a_required_query_parameter(app: TestApp) {
    let doc = app.openapi().await;
    let phone = parameter(&doc, "/v1/bindings", "get", "phone");
    assert_eq!(phone["in"], "query");
    assert_eq!(phone["required"], true);
    assert!(phone["schema"]["pattern"].is_string());
    let resp = app.get("/v1/bindings", &app.api_key).await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["fields"][0]["field"], "phone");
    assert_eq!(err["error"]["fields"][0]["code"], "required");
    // The webhook list's filters are query parameters too, with their bounds.
    let limit = parameter(&doc, "/v1/webhooks/events", "get", "limit");
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["required"], false);
    assert_eq!(limit["schema"]["maximum"], 100);
    for name in ["status", "before"] {
        assert_eq!(
            parameter(&doc, "/v1/webhooks/events", "get", name)["in"],
            "query"
        );
    }
}

async fn an_empty_notify_url_is_refused_as_the_document_says(app: TestApp) {
    let doc = app.openapi().await;
    let schema = &doc["components"]["schemas"]["CreateOrderRequest"]["properties"]["notify_url"];
    assert_eq!(schema["minLength"], 1, "{schema}");
    let mut body = order_body("N1");
    body["notify_url"] = json!("");
    let resp = app.create_order(&body).await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["fields"][0]["field"], "notify_url");
    assert_eq!(err["error"]["fields"][0]["code"], "invalid_notify_url");
    assert_eq!(app.footprint().await, (0, 0, 0));
    // Omitted or null: the merchant's default, as documented.
    body["notify_url"] = Value::Null;
    assert_eq!(app.create_order(&body).await.status(), 201);
}

async fn status_stream_events_match_their_documented_shape(app: TestApp) {
    let doc = app.openapi().await;
    let content = &doc["paths"]["/v1/orders/{id}/events"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"]["schema"];
    assert_eq!(content["$ref"], "#/components/schemas/StatusStreamEvent");
    let event_schema = &doc["components"]["schemas"]["StatusStreamEvent"];
    let mut required: Vec<&str> = event_schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["data", "event", "id"]);
    let data = &event_schema["properties"]["data"];
    assert_eq!(data["contentMediaType"], "application/json");
    assert_eq!(
        data["contentSchema"]["$ref"],
        "#/components/schemas/OrderEvent"
    );
    let order_event = &doc["components"]["schemas"]["OrderEvent"];

    let created: Value = app
        .create_order(&order_body("S1"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let cancel = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &app.api_key, &json!({}))
        .await;
    assert_eq!(cancel.status(), 200);
    let stream = app
        .get(&format!("/v1/orders/{id}/events"), &app.api_key)
        .await;
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = stream.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.lines().any(|l| l.starts_with("data:")))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    for event in events {
        let field = |name: &str| {
            event
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(str::trim_start)
                .unwrap_or_else(|| panic!("no {name} in {event}"))
        };
        assert!(field("id").bytes().all(|b| b.is_ascii_digit()), "{event}");
        let data: Value = serde_json::from_str(field("data")).expect("data is JSON");
        assert_eq!(data["status"], field("event"));
        for key in order_event["required"].as_array().unwrap() {
            assert!(
                data.get(key.as_str().unwrap()).is_some(),
                "{key} missing in {data}"
            );
        }
        for key in data.as_object().unwrap().keys() {
            assert!(
                order_event["properties"].get(key).is_some(),
                "{key} is not documented in OrderEvent"
            );
        }
    }
    // Last-Event-ID as documented: digits, at most 18.
    for (value, status) in [
        ("1", 200),
        ("", 200),
        ("-1", 422),
        ("null", 422),
        (&"9".repeat(19) as &str, 422),
    ] {
        let resp = app
            .http
            .get(app.url(&format!("/v1/orders/{id}/events")))
            .bearer_auth(&app.api_key)
            .header("last-event-id", value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "Last-Event-ID {value:?}");
    }
}

async fn metrics_content_type_is_the_documented_one(app: TestApp) {
    let doc = app.openapi().await;
    let content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap();
    let documented: Vec<&String> = content.keys().collect();
    assert_eq!(documented, ["application/openmetrics-text"]);
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(served.split(';').next().unwrap(), documented[0]);
    assert!(resp.text().await.unwrap().ends_with("# EOF\n"));
}

async fn every_error_code_is_in_the_documented_enum(app: TestApp) {
    let doc = app.openapi().await;
    let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
        .as_array()
        .expect("error codes are an enum");
    for code in [
        "duplicate_field",
        "idempotency_key_reused",
        "invalid_request",
        "no_binding",
        "merchant_disabled",
        "rate_limited",
        "request_timeout",
        "overloaded",
    ] {
        assert!(codes.contains(&json!(code)), "{code} not documented");
    }
}

/// `result.code` is a documented enum of every result code, the one for an
/// ISO 8583 response code voicepay's table does not know
/// (`issuer_declined`, respCode 05) included.
async fn result_codes_are_a_documented_enum(app: TestApp) {
    let doc = app.openapi().await;
    let code = &doc["components"]["schemas"]["ResultView"]["properties"]["code"];
    let listed: Vec<&str> = code["enum"]
        .as_array()
        .expect("result.code is an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let all: Vec<&str> = voicepay::domain::ResultCode::ALL
        .iter()
        .map(|c| c.code())
        .collect();
    assert_eq!(listed, all);
    assert!(listed.contains(&"issuer_declined"));
    let described = code["description"].as_str().unwrap();
    assert!(described.contains("`issuer_declined` (05)"), "{described}");
}

on_both_stores!(
    result_codes_are_a_documented_enum,
    a_top_level_key_twice_is_refused_not_last_wins,
    a_nested_key_twice_is_refused_with_its_path,
    the_same_order_reordered_and_respaced_replays,
    the_stored_fingerprint_is_keyed_not_a_plain_hash,
    bindings_phone_is_a_required_query_parameter,
    an_empty_notify_url_is_refused_as_the_document_says,
    status_stream_events_match_their_documented_shape,
    metrics_content_type_is_the_documented_one,
    every_error_code_is_in_the_documented_enum,
);
