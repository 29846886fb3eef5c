//! `GET /v1/orders/{id}/events`: the order's status changes as Server-Sent
//! Events, on SQLite and PostgreSQL. The order is moved through its
//! lifecycle with the store's own transitions (the daemon runs no calls
//! here: ARI is not configured), as the call flows and the matcher do.

use serde_json::Value;
use std::time::Duration;
use voicepay::domain::{OrderStatus, ResultCode};
use voicepay::store::{now_ms, Store, Transition};
use voicepay_testkit::{on_both_stores, order_body, spawn_app_with, Db, TestApp};

/// One parsed SSE event.
#[derive(Debug, Clone)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// Parses a `text/event-stream` body; comments (keep-alives) are skipped.
fn parse(body: &str) -> Vec<Sse> {
    body.split("\n\n")
        .filter_map(|block| {
            let (mut id, mut event, mut data) = (None, None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            Some(Sse {
                id: id?,
                event: event?,
                data: serde_json::from_str(&data).expect("data is JSON"),
            })
        })
        .collect()
}

/// The events' names (their statuses), in stream order.
fn names(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

/// The whole stream, which must end by itself (after the final status).
async fn read_stream(app: &TestApp, id: &str, last_event_id: Option<i64>) -> (String, Vec<Sse>) {
    let mut req = app
        .http
        .get(app.url(&format!("/v1/orders/{id}/events")))
        .bearer_auth(&app.api_key);
    if let Some(last) = last_event_id {
        req = req.header("Last-Event-ID", last.to_string());
    }
    let resp = req.send().await.expect("stream opened");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // A deadline against a hang, not a speed check: the stream ends itself.
    let body = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the stream of a final order ends")
        .expect("stream body");
    let events = parse(&body);
    (body, events)
}

/// Opens the order's stream as its merchant, to read it as it comes.
async fn open_stream(app: &TestApp, id: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/orders/{id}/events")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("stream opened")
}

/// Reads the open stream into `body` until `done(body)`; the stream must
/// stay open meanwhile.
async fn read_until(resp: &mut reqwest::Response, body: &mut String, done: impl Fn(&str) -> bool) {
    while !done(body) {
        let chunk = resp.chunk().await.unwrap().expect("the stream stays open");
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn new_order(app: &TestApp) -> String {
    let res = app
        .create_order(&order_body(&format!("E{:x}", rand::random::<u32>())))
        .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn store(app: &TestApp) -> Store {
    Store::connect(&app.settings.database.url, 1, voicepay::views::webhook_body)
        .await
        .expect("store")
}

/// Moves the order along `path` (each step from the previous status).
async fn walk(store: &Store, id: &str, path: &[(OrderStatus, Option<&str>)]) {
    walk_from(store, id, OrderStatus::Pending, path).await
}

async fn walk_from(
    store: &Store,
    id: &str,
    mut from: OrderStatus,
    path: &[(OrderStatus, Option<&str>)],
) {
    for (to, detail) in path {
        let result = match to {
            OrderStatus::Succeeded => Some(ResultCode::Approved),
            OrderStatus::Failed => Some(ResultCode::PinTriesExceeded),
            _ => None,
        };
        let moved = if *to == OrderStatus::Authorizing {
            // The matcher's own move, the only way into `authorizing`.
            let detail = detail.unwrap_or_default();
            let row = store.start_authorization(id, detail, now_ms()).await;
            row.expect("start_authorization").is_some()
        } else {
            let t = Transition {
                from,
                to: *to,
                result,
                detail: *detail,
            };
            store.transition(id, t, now_ms()).await.expect("transition")
        };
        assert!(moved, "{from:?} -> {to:?}");
        from = *to;
    }
}

/// The whole payment, with one wrong PIN sent back to the caller.
const PAID_AFTER_A_WRONG_PIN: &[(OrderStatus, Option<&str>)] = &[
    (OrderStatus::Calling, None),
    (OrderStatus::InCall, Some("answered")),
    (OrderStatus::Authorizing, Some("secret submitted")),
    (OrderStatus::InCall, Some("wrong secret")),
    (OrderStatus::Authorizing, Some("secret submitted")),
    (OrderStatus::Succeeded, None),
];

/// The stream of an order walked through `PAID_AFTER_A_WRONG_PIN`.
const PAID_AFTER_A_WRONG_PIN_STREAMED: [&str; 7] = [
    "pending",
    "calling",
    "in_call",
    "authorizing",
    "in_call",
    "authorizing",
    "succeeded",
];

async fn events_arrive_in_order_and_resume_gives_the_missed_ones_only(app: TestApp) {
    let id = new_order(&app).await;
    let store = store(&app).await;
    walk(&store, &id, PAID_AFTER_A_WRONG_PIN).await;
    // An audit entry that is not a status change is not streamed.
    store
        .append_event(&id, "bank", "authorize attempt 2", now_ms())
        .await
        .unwrap();

    let (body, all) = read_stream(&app, &id, None).await;
    assert_eq!(names(&all), PAID_AFTER_A_WRONG_PIN_STREAMED, "{body}");
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow: {body}"
    );
    for e in &all {
        assert_eq!(e.data["status"], e.event.as_str(), "{body}");
        assert!(e.data["created"].as_str().unwrap().ends_with('Z'), "{body}");
    }
    assert!(all[0].data["from"].is_null(), "{body}");
    assert_eq!(all[4].data["from"], "authorizing");
    assert_eq!(all[4].data["detail"], "wrong secret");
    let last = all.last().unwrap();
    assert_eq!(last.data["from"], "authorizing");
    assert_eq!(last.data["result_code"], "approved", "{body}");
    assert!(all[..6].iter().all(|e| e.data.get("result_code").is_none()));
    for secret in ["6222000000000017", "11010519491231002X", "805137"] {
        assert!(!body.contains(secret), "{secret} in the stream: {body}");
    }

    // Reconnecting after the third event gets the four after it, no more.
    let (_, rest) = read_stream(&app, &id, Some(all[2].id)).await;
    let rest_ids: Vec<i64> = rest.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = all[3..].iter().map(|e| e.id).collect();
    assert_eq!(rest_ids, expected);
    // After the final event there is nothing left, and the stream ends.
    let (body, none) = read_stream(&app, &id, Some(last.id)).await;
    assert!(none.is_empty(), "{body}");
}

/// A `bank` audit row written between two status changes (in its own
/// transaction, as the authorization code does) is neither streamed nor
/// used as the stream's cursor: the store hands the stream status rows
/// only, so on PostgreSQL, where ids are taken at insert and not at commit,
/// a later-id bank row can never carry the cursor past a status row.
async fn a_bank_row_between_status_rows_disturbs_neither_stream_nor_resume(app: TestApp) {
    let id = new_order(&app).await;
    let store = store(&app).await;
    walk(&store, &id, &PAID_AFTER_A_WRONG_PIN[..3]).await;
    store
        .append_event(&id, "bank", "authorize attempt 1", now_ms())
        .await
        .unwrap();
    walk_from(
        &store,
        &id,
        OrderStatus::Authorizing,
        &PAID_AFTER_A_WRONG_PIN[3..],
    )
    .await;

    // The store's cursor query sees status rows only.
    let rows = store.events_after(&id, 0).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.kind == "created" || r.kind == "status"),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 7, "{rows:?}");
    let bank_id = store
        .events_for(&id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "bank")
        .expect("the bank row")
        .id;
    assert!(rows[3].id < bank_id && bank_id < rows[4].id, "{rows:?}");

    let (body, all) = read_stream(&app, &id, None).await;
    assert_eq!(names(&all), PAID_AFTER_A_WRONG_PIN_STREAMED, "{body}");
    assert!(!all.iter().any(|e| e.id == bank_id), "{body}");
    // Resuming from the status just before the bank row gets every status
    // after it; resuming from the bank row's id too.
    let (_, rest) = read_stream(&app, &id, Some(all[3].id)).await;
    assert_eq!(names(&rest), ["in_call", "authorizing", "succeeded"]);
    let (_, rest) = read_stream(&app, &id, Some(bank_id)).await;
    let ids: Vec<i64> = rest.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = all[4..].iter().map(|e| e.id).collect();
    assert_eq!(ids, expected);
}

async fn a_live_stream_follows_the_order_until_it_is_final(app: TestApp) {
    let id = new_order(&app).await;
    let mut resp = open_stream(&app, &id).await;
    assert_eq!(resp.status(), 200);
    // The creation is there before anything else happens.
    let mut body = String::new();
    read_until(&mut resp, &mut body, |b| !parse(b).is_empty()).await;
    assert_eq!(parse(&body)[0].event, "pending");

    let store = store(&app).await;
    let mover = {
        let id = id.clone();
        tokio::spawn(async move {
            walk(
                &store,
                &id,
                &[
                    (OrderStatus::Calling, None),
                    (OrderStatus::InCall, Some("answered")),
                    (OrderStatus::Authorizing, Some("secret submitted")),
                    (OrderStatus::Failed, None),
                ],
            )
            .await
        })
    };
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = resp.chunk().await.expect("stream") {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        rest.is_ok(),
        "the stream did not end after the final status: {body}"
    );
    mover.await.unwrap();
    let events = parse(&body);
    assert_eq!(
        names(&events),
        ["pending", "calling", "in_call", "authorizing", "failed"],
        "{body}"
    );
    assert_eq!(events[4].data["result_code"], "pin_tries_exceeded");
}

async fn an_idle_stream_sends_keep_alive_comments(app: TestApp) {
    let id = new_order(&app).await;
    let mut resp = open_stream(&app, &id).await;
    let mut body = String::new();
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        read_until(&mut resp, &mut body, |b| {
            b.lines().any(|l| l.starts_with(':'))
        }),
    )
    .await;
    assert!(seen.is_ok(), "no keep-alive comment: {body}");
    assert_eq!(parse(&body).len(), 1, "{body}");
}

async fn only_the_orders_merchant_may_follow_it(app: TestApp) {
    let id = new_order(&app).await;
    let (_, other_key) = app.another_merchant().await;
    let path = format!("/v1/orders/{id}/events");
    assert_eq!(app.get(&path, &other_key).await.status(), 404);
    assert_eq!(app.get(&path, "vpk_wrong").await.status(), 401);
    assert_eq!(
        app.get("/v1/orders/ord_nosuchorder/events", &app.api_key)
            .await
            .status(),
        404
    );
    let bad = app
        .http
        .get(app.url(&path))
        .bearer_auth(&app.api_key)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let err: Value = bad.json().await.unwrap();
    assert_eq!(err["error"]["fields"][0]["field"], "Last-Event-ID", "{err}");
    let doc = app.openapi().await;
    let get = &doc["paths"]["/v1/orders/{id}/events"]["get"];
    assert!(get.is_object(), "the stream is not in the OpenAPI document");
    assert!(
        get["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{get}"
    );
    assert!(doc["components"]["schemas"]["OrderEvent"].is_object());
}

/// A stream still open when the daemon stops ends, so the graceful
/// shutdown does not wait for the order to finish.
#[tokio::test]
async fn an_open_stream_ends_when_the_daemon_stops() {
    let app = spawn(Db::Sqlite).await.expect("sqlite app");
    let id = new_order(&app).await;
    let mut resp = open_stream(&app, &id).await;
    let first = resp.chunk().await.unwrap().expect("the creation event");
    assert!(String::from_utf8_lossy(&first).contains("event: pending"));
    drop(app); // cancels the daemon's shutdown token
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while resp.chunk().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the daemon's shutdown");
}

/// Spawns with a short keep-alive so the idle test sees one.
async fn spawn(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |s| {
        s.http.events_poll_ms = 50;
        s.http.events_keepalive_secs = 1;
    })
    .await
}

on_both_stores!(
    spawn = spawn;
    events_arrive_in_order_and_resume_gives_the_missed_ones_only,
    a_bank_row_between_status_rows_disturbs_neither_stream_nor_resume,
    a_live_stream_follows_the_order_until_it_is_final,
    an_idle_stream_sends_keep_alive_comments,
    only_the_orders_merchant_may_follow_it,
);
