//! Webhooks as a merchant sees them: a real receiver (axum on 127.0.0.1:0)
//! gets signed events from a real daemon on SQLite and on PostgreSQL. The
//! receiver checks signatures the way the README tells merchants to. The
//! retry schedule is checked with the worker on a fake clock, against the
//! due times recorded in the database, never against wall time.

use crate::operator_cli as cli;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voicepay::clock::FakeClock;
use voicepay::config::Settings;
use voicepay::crypto::{KeyRing, Vault};
use voicepay::domain::{OrderStatus, ResultCode};
use voicepay::notify::Notifier;
use voicepay::store::{now_ms, Store, Transition};
use voicepay_testkit::receiver::{spawn_app_with_receiver, verify, Receiver, Reply};
use voicepay_testkit::{on_both_stores, order_body, spawn_app_with, wait_until, Db, TestApp};

// ---------------------------------------------------------------------------
// Helpers.

/// A daemon whose worker retries fast (real clock).
fn fast(s: &mut Settings) {
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.retry_initial_ms = 200;
    s.webhooks.retry_max_ms = 400;
}

/// A daemon that queues events but sends none: the test drives a worker
/// on a fake clock instead.
fn quiet(s: &mut Settings) {
    s.webhooks.enabled = false;
}

async fn order(app: &TestApp, reference: &str, extra: Value) -> String {
    let mut body = order_body(reference);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp = app.create_order(&body).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn cancel(app: &TestApp, key: &str, id: &str) {
    let resp = app
        .post_json(&format!("/v1/orders/{id}/cancel"), key, &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    id: String,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    last_error_class: Option<String>,
    payload: String,
    delivered_at: Option<i64>,
}

async fn outbox(app: &TestApp, order_id: &str) -> Vec<Row> {
    sqlx::query_as::<_, Row>(
        "SELECT id, event_type, status, attempts, next_attempt_at, last_error, last_error_class, payload, \
            delivered_at FROM webhook_outbox WHERE order_id = $1 ORDER BY created_at, event_type",
    )
    .bind(order_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Polls `check` until it holds; a generous bound only keeps a broken test
/// from hanging (this is not a speed assertion).
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let failure = format!("never happened: {what}");
    wait_until(Duration::from_secs(60), failure, check).await;
}

/// A worker on `clock` for the app's database.
async fn worker(
    app: &TestApp,
    clock: Arc<FakeClock>,
    tweak: impl FnOnce(&mut Settings),
) -> Arc<Notifier> {
    let mut s = app.settings.clone();
    tweak(&mut s);
    let store = Store::connect(&s.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap();
    let vault = Arc::new(Vault::new(&KeyRing::load(&s.crypto).unwrap()));
    Arc::new(Notifier::new(store, vault, &s.webhooks, clock).unwrap())
}

fn schedule(s: &mut Settings) {
    s.webhooks.retry_initial_ms = 30_000;
    s.webhooks.retry_max_ms = 3_600_000;
    s.webhooks.retry_jitter = 0.0;
    s.webhooks.max_age_secs = 86_400;
}

on_both_stores!(
    db:
    a_cancelled_order_sends_one_signed_masked_event,
    final_events_always_progress_events_on_request,
    an_expired_order_sends_order_expired,
    a_receiver_that_was_down_gets_the_event_once,
    a_restart_between_attempts_still_delivers,
    a_failed_attempt_is_retried_on_the_configured_schedule,
    a_redirect_is_not_followed_and_counts_as_a_failure,
    after_the_window_the_event_fails_and_redeliver_sends_it,
    redeliver_starts_the_schedule_over_and_waits_for_a_send_in_flight,
    a_slow_receiver_does_not_hold_up_other_merchants,
    the_openapi_document_describes_webhooks,
    a_lease_keeps_other_nodes_off_until_it_runs_out,
);

// ---------------------------------------------------------------------------

async fn a_cancelled_order_sends_one_signed_masked_event(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, fast).await else {
        return;
    };
    let id = order(&app, "W1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    cancel(&app, &app.api_key, &id).await; // twice: still one final status
    eventually("the event is delivered", || async {
        outbox(&app, &id)
            .await
            .iter()
            .all(|r| r.status == "delivered")
    })
    .await;
    let got = rx.got();
    assert_eq!(got.len(), 1, "exactly one delivery");
    let r = &got[0];
    assert_eq!(r.header("content-type"), "application/json");
    let event = r.json();
    assert_eq!(event["type"], "order.cancelled");
    assert_eq!(r.header("voicepay-event-id"), event["id"].as_str().unwrap());
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["status"], "cancelled");
    assert_eq!(event["data"]["result"]["code"], "merchant_cancelled");
    assert_eq!(event["data"]["card"]["masked"], "622200******0017");
    assert!(event["created"].as_str().unwrap().ends_with('Z'));
    // The order in the event is the order as GET shows it.
    let view: Value = app
        .get_json(&format!("/v1/orders/{id}"), &app.api_key)
        .await;
    assert_eq!(event["data"], view);
    // No full card or ID number, in the body or in the stored payload.
    let body = String::from_utf8_lossy(&r.body);
    for secret in ["6222000000000017", "11010519491231002X", "11010519491231"] {
        assert!(!body.contains(secret), "{secret} in the webhook");
        assert!(!outbox(&app, &id).await[0].payload.contains(secret));
    }

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("voicepay_webhook_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );

    // The merchant's check, as the README gives it.
    let sig = r.header("voicepay-signature");
    let now = now_ms() / 1000;
    verify(&app.webhook_secret, sig, &r.body, now).expect("a genuine event verifies");
    let mut tampered = r.body.to_vec();
    let at = body.find("12345").expect("the amount is in the body");
    tampered[at] = b'9';
    assert_eq!(
        verify(&app.webhook_secret, sig, &tampered, now),
        Err("bad signature")
    );
    assert!(verify("whsec_someone_else", sig, &r.body, now).is_err());
    assert_eq!(
        verify(&app.webhook_secret, sig, &r.body, now + 301),
        Err("timestamp too old or in the future"),
        "a replay five minutes later is refused"
    );
}

/// Applies `t`; the move into `authorizing` goes the one way there is, the
/// matcher's `start_authorization`. Whether the order moved.
async fn apply(store: &Store, id: &str, t: Transition<'_>, now: i64) -> bool {
    if t.to == OrderStatus::Authorizing {
        let row = store.start_authorization(id, "secret submitted", now);
        return row.await.unwrap().is_some();
    }
    store.transition(id, t, now).await.unwrap()
}

async fn final_events_always_progress_events_on_request(db: Db) {
    use OrderStatus::*;
    let rx = Receiver::start().await;
    let mrx = Receiver::start().await;
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        rx.allow(s);
        mrx.allow(s);
    })
    .await
    else {
        return;
    };
    let store = Store::connect(&app.settings.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap();
    let plain = order(&app, "P1", json!({"notify_url": rx.url})).await;
    let progress = order(
        &app,
        "P2",
        json!({"notify_url": rx.url, "notify_progress": true, "mode": "inbound"}),
    )
    .await;
    let view: Value = app
        .get_json(&format!("/v1/orders/{progress}"), &app.api_key)
        .await;
    assert_eq!(view["notify_progress"], true);
    let t0 = now_ms();
    let step = |from, to, result| Transition {
        from,
        to,
        result,
        detail: None,
    };

    // Without notify_progress: the callback worker's claim, the answer,
    // authorization, a decline. Only the final status is sent.
    let claimed = store.claim_callback("n1", t0, t0 + 60_000).await.unwrap();
    assert_eq!(claimed.unwrap().id, plain);
    for (i, t) in [
        step(Calling, InCall, None),
        step(InCall, Authorizing, None),
        step(Authorizing, Failed, Some(ResultCode::InsufficientFunds)),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(apply(&store, &plain, t, t0 + 1 + i as i64).await);
    }
    // With it: an inbound call taken, a wrong PIN sent back to the caller,
    // a second try, success.
    store
        .claim_live_call(&progress, "n1", "chan-1", "inbound call", t0, t0 + 60_000)
        .await
        .unwrap()
        .expect("claimed");
    for (i, t) in [
        step(InCall, Authorizing, None),
        step(Authorizing, InCall, None),
        step(InCall, Authorizing, None),
        step(Authorizing, Succeeded, Some(ResultCode::Approved)),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(apply(&store, &progress, t, t0 + 1 + i as i64).await);
    }
    let types = |rows: Vec<Row>| rows.into_iter().map(|r| r.event_type).collect::<Vec<_>>();
    assert_eq!(types(outbox(&app, &plain).await), ["order.failed"]);
    assert_eq!(
        types(outbox(&app, &progress).await),
        [
            "order.answered",
            "order.authorizing",
            "order.authorizing",
            "order.succeeded"
        ]
    );
    eventually("all five delivered", || async { rx.got().len() == 5 }).await;
    let fail = rx
        .got()
        .into_iter()
        .map(|r| r.json())
        .find(|e| e["type"] == "order.failed")
        .unwrap();
    assert_eq!(fail["data"]["result"]["code"], "insufficient_funds");
    assert_eq!(fail["data"]["result"]["resp_code"], "64");
    // The taken inbound call is in `order.answered`'s payload already.
    let answered: Value = serde_json::from_str(&outbox(&app, &progress).await[0].payload).unwrap();
    assert_eq!(answered["type"], "order.answered");
    assert_eq!(
        answered["data"]["attempts"][0]["attempt"], 1,
        "{answered:#}"
    );
    assert!(
        answered["data"]["attempts"][0]["answered_at"].is_string(),
        "{answered:#}"
    );

    // The merchant's default notify_url applies when the order has none;
    // with neither, nothing is queued.
    let m = voicepay::merchants::create(
        &store,
        &Vault::new(&KeyRing::load(&app.settings.crypto).unwrap()),
        "Shop with a hook",
        Some(&mrx.url),
    )
    .await
    .unwrap();
    let resp = app
        .post_json("/v1/orders", &m.api_key, &order_body("D1"))
        .await;
    let by_default = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cancel(&app, &m.api_key, &by_default).await;
    let nowhere = order(&app, "N1", json!({})).await;
    cancel(&app, &app.api_key, &nowhere).await;
    assert!(outbox(&app, &nowhere).await.is_empty());
    eventually("the default URL got it", || async { mrx.got().len() == 1 }).await;
    let r = &mrx.got()[0];
    verify(
        &m.webhook_secret,
        r.header("voicepay-signature"),
        &r.body,
        now_ms() / 1000,
    )
    .expect("signed with that merchant's own secret");

    // The API lists a merchant's own events only, a page at a time.
    let page: Value = app
        .get_json("/v1/webhooks/events?limit=3", &app.api_key)
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_json(
            &format!("/v1/webhooks/events?limit=3&before={cursor}"),
            &app.api_key,
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 2);
    assert!(rest.get("next_cursor").is_none());
    let mut ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["events"].as_array().unwrap())
        .map(|e| e["order_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "only this merchant's two orders: {ids:?}");
    let theirs: Value = app.get_json("/v1/webhooks/events", &m.api_key).await;
    assert_eq!(theirs["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/webhooks/events?status=lost", &app.api_key)
            .await
            .status(),
        422
    );
}

async fn an_expired_order_sends_order_expired(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, |s| {
        fast(s);
        s.orders.sweep_interval_secs = 1;
    })
    .await
    else {
        return;
    };
    let id = order(&app, "E1", json!({"notify_url": rx.url})).await;
    // Its window ends now; the daemon's own sweep expires it.
    sqlx::query("UPDATE orders SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() - 1)
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    eventually("order.expired delivered", || async { !rx.got().is_empty() }).await;
    let e = rx.got()[0].json();
    assert_eq!(e["type"], "order.expired");
    assert_eq!(e["data"]["status"], "expired");
    assert_eq!(e["data"]["result"]["code"], "order_expired");
    assert_eq!(outbox(&app, &id).await.len(), 1);
}

async fn a_receiver_that_was_down_gets_the_event_once(db: Db) {
    // A port with nobody listening: connections are refused.
    let spot = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spot.local_addr().unwrap();
    drop(spot);
    let Some(app) = spawn_app_with(db, |s| {
        fast(s);
        s.webhooks.allowed_private_targets = vec![addr.to_string()];
    })
    .await
    else {
        return;
    };
    let url = format!("http://{addr}/hook");
    let id = order(&app, "R1", json!({"notify_url": url})).await;
    cancel(&app, &app.api_key, &id).await;
    eventually("two refused attempts", || async {
        outbox(&app, &id).await[0].attempts >= 2
    })
    .await;
    let row = &outbox(&app, &id).await[0];
    assert_eq!(row.status, "pending");
    assert!(
        row.last_error.as_deref().unwrap().contains("connection"),
        "{row:?}"
    );
    assert_eq!(
        row.last_error_class.as_deref(),
        Some("connection_refused"),
        "{row:?}"
    );

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let rx = Receiver::serve(listener, None);
    eventually("delivered once up", || async {
        outbox(&app, &id).await[0].status == "delivered"
    })
    .await;
    // Several more polls: a delivered event is never sent again. (Time
    // passing is the point: nothing must come.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 1);
    assert!(outbox(&app, &id).await[0].attempts >= 3);
}

async fn a_restart_between_attempts_still_delivers(db: Db) {
    let Some((mut app, rx)) = spawn_app_with_receiver(db, |s| {
        fast(s);
        // Long enough that the retry falls after the restart.
        s.webhooks.retry_initial_ms = 2000;
        s.webhooks.retry_max_ms = 2000;
    })
    .await
    else {
        return;
    };
    rx.reply(Reply::Status(503));
    let id = order(&app, "S1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    eventually("first attempt failed", || async {
        outbox(&app, &id).await[0].attempts == 1
    })
    .await;
    app.restart().await;
    // The old daemon is stopped (and waited for) by now: whatever is
    // delivered from here on, the new one sent.
    let restarted = now_ms();
    assert_eq!(rx.got().len(), 1, "the retry came before the restart");
    eventually("delivered by the new daemon", || async {
        outbox(&app, &id).await[0].status == "delivered"
    })
    .await;
    let row = outbox(&app, &id).await.remove(0);
    assert!(
        row.delivered_at.unwrap() >= restarted,
        "delivered at {:?}, before the restart at {restarted}",
        row.delivered_at
    );
    // And the new daemon counts it as its own delivery.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("voicepay_webhook_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("voicepay-event-id"),
        got[1].header("voicepay-event-id")
    );
    assert_eq!(got[0].body, got[1].body, "the same event, byte for byte");
    assert_eq!(outbox(&app, &id).await[0].attempts, 2);
    // The new daemon serves the same orders.
    assert_eq!(
        app.get(&format!("/v1/orders/{id}"), &app.api_key)
            .await
            .status(),
        200
    );
}

async fn a_failed_attempt_is_retried_on_the_configured_schedule(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    rx.reply(Reply::Status(500));
    let id = order(&app, "F1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    let t0 = now_ms() + 1000;
    let clock = Arc::new(FakeClock::at(t0));
    let w = worker(&app, clock.clone(), schedule).await;

    assert_eq!(w.run_once().await.unwrap(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        row.next_attempt_at,
        t0 + 30_000,
        "retry_initial_ms after the first failure"
    );

    clock.advance(29_999);
    assert_eq!(w.run_once().await.unwrap(), 0, "not due yet");
    assert_eq!(rx.got().len(), 1);
    clock.advance(1);
    assert_eq!(w.run_once().await.unwrap(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 2));
    let got = rx.got();
    assert_eq!(got.len(), 2, "exactly two attempts");
    // Each attempt is signed at its own time, by the worker's clock.
    assert!(got[0]
        .header("voicepay-signature")
        .starts_with(&format!("t={},v1=", t0 / 1000)));
    let t1 = (t0 + 30_000) / 1000;
    assert!(got[1]
        .header("voicepay-signature")
        .starts_with(&format!("t={t1},v1=")));
    verify(
        &app.webhook_secret,
        got[1].header("voicepay-signature"),
        &got[1].body,
        t1,
    )
    .expect("verifies at its own time");

    // With jitter the delay stays within its band.
    let jittery = worker(&app, clock.clone(), |s| {
        schedule(s);
        s.webhooks.retry_jitter = 0.5;
    })
    .await;
    rx.reply(Reply::Status(500));
    let id2 = order(&app, "F2", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id2).await;
    let now = now_ms() + 1000;
    clock.set(now);
    assert_eq!(jittery.run_once().await.unwrap(), 1);
    let next = outbox(&app, &id2).await[0].next_attempt_at;
    assert!(
        (now + 15_000..=now + 45_000).contains(&next),
        "{}",
        next - now
    );
}

async fn a_redirect_is_not_followed_and_counts_as_a_failure(db: Db) {
    let elsewhere = Receiver::start().await;
    let Some((app, rx)) = spawn_app_with_receiver(db, |s| {
        quiet(s);
        elsewhere.allow(s);
    })
    .await
    else {
        return;
    };
    rx.reply(Reply::Redirect(elsewhere.url.clone()));
    let id = order(&app, "X1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    let t0 = now_ms() + 1000;
    let w = worker(&app, Arc::new(FakeClock::at(t0)), schedule).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(rx.got().len(), 1);
    assert!(elsewhere.got().is_empty(), "the redirect was followed");
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert_eq!(
        row.last_error.as_deref(),
        Some("HTTP 302 (redirects are not followed)")
    );
    assert_eq!(row.last_error_class.as_deref(), Some("http_status"));
    assert_eq!(row.next_attempt_at, t0 + 30_000);
}

async fn after_the_window_the_event_fails_and_redeliver_sends_it(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    for _ in 0..2 {
        rx.reply(Reply::Status(500));
    }
    let id = order(&app, "L1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    let t0 = now_ms() + 1000;
    let clock = Arc::new(FakeClock::at(t0));
    // A one-minute window: tries at 0 s and 30 s; the next (90 s) is past it.
    let w = worker(&app, clock.clone(), |s| {
        schedule(s);
        s.webhooks.max_age_secs = 60;
    })
    .await;
    w.run_once().await.unwrap();
    clock.advance(30_000);
    w.run_once().await.unwrap();
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("failed", 2));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));
    clock.advance(3_600_000);
    assert_eq!(
        w.run_once().await.unwrap(),
        0,
        "a failed event is not retried"
    );

    // The operator sees it…
    let out = cli(&app, &["webhooks", "list", "--failed", "--json"]).await;
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], row.id.as_str());
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["last_error"], "HTTP 500");
    let out = cli(&app, &["webhooks", "list"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(&row.id));
    // …and so does the merchant, but no other merchant.
    let failed: Value = app
        .get_json("/v1/webhooks/events?status=failed", &app.api_key)
        .await;
    assert_eq!(failed["events"][0]["id"], row.id.as_str());
    assert_eq!(failed["events"][0]["attempts"], 2);
    // The merchant is told the class, not the operator's detail.
    assert_eq!(failed["events"][0]["last_error_class"], "http_status");
    assert!(failed["events"][0].get("last_error").is_none(), "{failed}");
    let (_, other_key) = app.another_merchant().await;
    let theirs: Value = app
        .get_json("/v1/webhooks/events?status=failed", &other_key)
        .await;
    assert!(theirs["events"].as_array().unwrap().is_empty());
    let path = format!("/v1/webhooks/events/{}/redeliver", row.id);
    assert_eq!(
        app.post_json(&path, &other_key, &json!({})).await.status(),
        404
    );
    assert_eq!(outbox(&app, &id).await[0].status, "failed");

    // Redeliver from the command line: sent on the next pass.
    cli(&app, &["webhooks", "redeliver", &row.id]).await;
    assert_eq!(outbox(&app, &id).await[0].status, "pending");
    assert_eq!(w.run_once().await.unwrap(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 3));
    assert_eq!(rx.got().len(), 3);

    // And over the API, by the merchant itself.
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "pending");
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(rx.got().len(), 4);
    assert_eq!(outbox(&app, &id).await[0].status, "delivered");
}

/// After a redeliver the backoff starts again at 30 s, whatever the number
/// of attempts already made; an event a node is sending right now cannot
/// be redelivered (409 over the API, an error from the CLI).
async fn redeliver_starts_the_schedule_over_and_waits_for_a_send_in_flight(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    for _ in 0..10 {
        rx.reply(Reply::Status(500));
    }
    let id = order(&app, "RS1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    let t0 = now_ms() + 1000;
    let clock = Arc::new(FakeClock::at(t0));
    let w = worker(&app, clock.clone(), schedule).await;
    // Three failures: 30 s, 1 min, then 2 min until the next try.
    for wait in [30_000, 60_000] {
        assert_eq!(w.run_once().await.unwrap(), 1);
        clock.advance(wait);
    }
    assert_eq!(w.run_once().await.unwrap(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 3));
    assert_eq!(row.next_attempt_at, t0 + 90_000 + 120_000);

    // Redelivered: due now, and its first failure waits 30 s again, not 4 min.
    let path = format!("/v1/webhooks/events/{}/redeliver", row.id);
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(w.run_once().await.unwrap(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 4));
    assert_eq!(row.next_attempt_at, t0 + 90_000 + 30_000);

    // Another node holds the event (it is sending it): a redeliver now
    // would be lost or would lose that attempt's outcome, so it is refused.
    let store = Store::connect(&app.settings.database.url, 1, voicepay::views::webhook_body)
        .await
        .unwrap();
    let due = t0 + 90_000 + 30_000;
    let leased = store
        .claim_webhooks("node_other", due, now_ms() + 600_000, 4, 10, &[])
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "webhook_in_flight"
    );
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_voicepay"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" {
            c.env_remove(k);
        }
    }
    let out = c
        .env("VOICEPAY__DATABASE__URL", &app.settings.database.url)
        .env("VOICEPAY__CRYPTO__KEY_FILE", &app.settings.crypto.key_file)
        .args(["webhooks", "redeliver", &row.id])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("being sent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The holder's outcome is recorded as usual, and the lease is left alone.
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 4));
    assert!(store
        .finish_webhook(
            &row.id,
            "node_other",
            &voicepay::store::Delivery::Delivered,
            due
        )
        .await
        .unwrap());
    // Once that attempt is over, redeliver works again.
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "pending");
    store.close().await;
}

async fn a_slow_receiver_does_not_hold_up_other_merchants(db: Db) {
    let slow = Receiver::holding().await;
    let quick = Receiver::start().await;
    let Some(app) = spawn_app_with(db, |s| {
        slow.allow(s);
        quick.allow(s);
        fast(s);
        s.webhooks.max_in_flight_per_merchant = 1;
        s.webhooks.timeout_secs = 120;
    })
    .await
    else {
        return;
    };
    let a = order(&app, "A1", json!({"notify_url": slow.url})).await;
    let b = order(&app, "A2", json!({"notify_url": slow.url})).await;
    cancel(&app, &app.api_key, &a).await;
    cancel(&app, &app.api_key, &b).await;
    eventually("the slow receiver holds one request", || async {
        slow.got().len() == 1
    })
    .await;

    let (_, other_key) = app.another_merchant().await;
    let mut body = order_body("B1");
    body["notify_url"] = json!(quick.url);
    let resp = app.post_json("/v1/orders", &other_key, &body).await;
    let c = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cancel(&app, &other_key, &c).await;
    eventually("the other merchant is served", || async {
        outbox(&app, &c).await[0].status == "delivered"
    })
    .await;
    assert_eq!(slow.got().len(), 1, "one in flight per merchant");

    slow.release(2);
    eventually("both slow events delivered", || async {
        outbox(&app, &a).await[0].status == "delivered"
            && outbox(&app, &b).await[0].status == "delivered"
    })
    .await;
    assert_eq!(slow.got().len(), 2);
}

async fn the_openapi_document_describes_webhooks(db: Db) {
    let Some(app) = spawn_app_with(db, quiet).await else {
        return;
    };
    let doc = app.openapi().await;
    for (path, method) in [
        ("/v1/webhooks/events", "get"),
        ("/v1/webhooks/events/{id}/redeliver", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let create = &doc["components"]["schemas"]["CreateOrderRequest"]["properties"];
    assert_eq!(
        create["notify_progress"]["type"],
        json!(["boolean", "null"]),
        "{create:#}"
    );
    let event = &doc["components"]["schemas"]["EventView"];
    assert!(event.is_object());
    // Merchants get the coarse class of a failure, not the raw error.
    assert!(event["properties"].get("last_error").is_none(), "{event:#}");
    let classes = doc["components"]["schemas"]["DeliveryErrorClass"]["enum"].to_string();
    for c in [
        "http_status",
        "timeout",
        "connection_refused",
        "tls_error",
        "blocked_address",
    ] {
        assert!(classes.contains(c), "{c} missing: {classes}");
    }
    // Unknown before: orders without the new field still create as before.
    let id = order(&app, "O1", json!({})).await;
    let view: Value = app
        .get_json(&format!("/v1/orders/{id}"), &app.api_key)
        .await;
    assert!(view.get("notify_progress").is_none());
}

async fn a_lease_keeps_other_nodes_off_until_it_runs_out(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    let id = order(&app, "K1", json!({"notify_url": rx.url})).await;
    cancel(&app, &app.api_key, &id).await;
    let t0 = now_ms() + 1000;
    let store = Store::connect(&app.settings.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap();
    // A node leases the event for 40 s, then dies without a word.
    let leased = store
        .claim_webhooks("node_dead", t0, t0 + 40_000, 4, 100, &[])
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert!(
        store
            .claim_webhooks("node_other", t0, t0 + 40_000, 4, 100, &[])
            .await
            .unwrap()
            .is_empty(),
        "a leased row is not handed out twice"
    );
    let clock = Arc::new(FakeClock::at(t0 + 39_999));
    let w = worker(&app, clock.clone(), schedule).await;
    assert_eq!(w.run_once().await.unwrap(), 0);
    assert!(rx.got().is_empty());
    clock.set(t0 + 40_000);
    assert_eq!(w.run_once().await.unwrap(), 1, "the lease ran out");
    assert_eq!(rx.got().len(), 1);
    let row = outbox(&app, &id).await.remove(0);
    assert_eq!((row.status.as_str(), row.attempts), ("delivered", 1));
    // The dead node's late report changes nothing.
    let late = voicepay::store::Delivery::Failed {
        error: "late".into(),
        class: voicepay::domain::DeliveryErrorClass::Timeout,
    };
    assert!(!store
        .finish_webhook(&row.id, "node_dead", &late, t0 + 50_000)
        .await
        .unwrap());
    assert_eq!(outbox(&app, &id).await[0].status, "delivered");
}
