//! The callback flow against the scripted fake ARI server (no Asterisk):
//! what the daemon sends when it originates and runs a call, how it routes
//! events, and how it settles orders whose calls were lost when Asterisk
//! restarted.

use super::common::{
    attempt_outcomes, callback_answered, daemon_on, new_order, originate_of, up as chan,
};
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri, Held};
use voicepay_testkit::{order_body, test_settings, wait_for, Db, TestApp};

async fn daemon(fake: &FakeAri, max_attempts: u32) -> TestApp {
    daemon_with(fake, max_attempts, 100).await
}

async fn daemon_with(fake: &FakeAri, max_attempts: u32, max_calls: usize) -> TestApp {
    daemon_tweaked(fake, max_attempts, move |s| {
        s.telephony.max_concurrent_calls = max_calls;
    })
    .await
}

async fn daemon_tweaked(
    fake: &FakeAri,
    max_attempts: u32,
    tweak: impl FnOnce(&mut voicepay::config::Settings) + Send + 'static,
) -> TestApp {
    daemon_on(fake, |s| {
        tweak(s);
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 5;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
    })
    .await
}

#[tokio::test]
async fn answered_callback_runs_the_ivr_and_pays() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1).await;
    let id = new_order(&app, "F1").await;
    let ch = format!("vp-{id}-1");

    let o = request(&fake, originate_of(ch.clone())).await;
    assert_eq!(o.param("endpoint"), Some("Local/13800138000@voicepay-lab"));
    assert_eq!(o.param("app"), Some("voicepay-test"));
    assert_eq!(o.param("appArgs"), Some(format!("callback,{id}").as_str()));
    assert_eq!(o.param("timeout"), Some("5"));
    assert!(!o.body.contains("6222000000000017") && !o.path.contains("6222"));
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "calling");

    fake.push(event("Dial", json!({"dialstatus": "", "peer": chan(&ch)})));
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": chan(&ch)}),
    ));
    let play = request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}/play/{ch}:1")
    })
    .await;
    assert_eq!(play.param("lang"), Some("zh"));
    assert_eq!(
        app.order_until(&id, |v| v["status"] == "in_call").await["status"],
        "in_call"
    );
    fake.press(&chan(&ch), "1805137");
    let v = app.order_until(&id, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved");
    // The caller hangs up during the goodbye: the attempt is closed.
    fake.push(event("StasisEnd", json!({"channel": chan(&ch)})));
    let v = app
        .order_until(&id, |v| !v["attempts"][0]["ended_at"].is_null())
        .await;
    assert_eq!(v["attempts"][0]["outcome"], "answered");
    assert!(!v["attempts"][0]["answered_at"].is_null());
    // No request ever carried the PIN.
    assert!(fake
        .rest_calls()
        .iter()
        .all(|r| !format!("{r:?}").contains("805137")));
}

#[tokio::test]
async fn a_stranger_in_our_app_is_hung_up() {
    let fake = FakeAri::start().await;
    let _app = daemon(&fake, 1).await;
    fake.push(event(
        "StasisStart",
        json!({"args": [], "channel": chan("1712345678.9")}),
    ));
    request(&fake, |r| {
        r.method == "DELETE" && r.path == "/ari/channels/1712345678.9"
    })
    .await;
}

#[tokio::test]
async fn calls_lost_in_an_asterisk_restart_are_retried_then_busy_fails() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 2).await;
    let id = new_order(&app, "F2").await;
    request(&fake, originate_of(format!("vp-{id}-1"))).await;

    // Asterisk restarts while the first call rings: its channel is gone.
    fake.set_entity_id("52:54:00:00:00:02");
    fake.drop_socket();
    fake.wait_connections(2, Duration::from_secs(15)).await;
    let ch2 = format!("vp-{id}-2");
    request(&fake, originate_of(ch2.clone())).await;

    // The second call: busy.
    fake.push(event(
        "Dial",
        json!({"dialstatus": "BUSY", "peer": chan(&ch2)}),
    ));
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 17, "cause_txt": "User busy", "channel": chan(&ch2)}),
    ));
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "busy", "{v:#}");
    assert_eq!(attempt_outcomes(&v), ["failed", "busy"], "{v:#}");
}

#[tokio::test]
async fn a_full_node_queues_callbacks_instead_of_failing_them() {
    let fake = FakeAri::start().await;
    let app = daemon_with(&fake, 1, 1).await;
    // Ready once the client has read the channels and reconciled.
    wait_for(Duration::from_secs(10), async || {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if v["ari"] == "connected" {
            Ok(())
        } else {
            Err(format!("never ready: {v}"))
        }
    })
    .await;
    let first = new_order(&app, "Q1").await;
    let ch1 = format!("vp-{first}-1");
    request(&fake, originate_of(ch1.clone())).await;
    let second = new_order(&app, "Q2").await;
    // Time for the worker to pick the second order up, which it must not.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        fake.rest_calls().iter().all(|r| !r.path.contains(&second)),
        "the second call waits for the first"
    );
    assert_eq!(app.order_view(&second).await["status"], "pending");

    // The first rings out (our originate timeout): no answer, no retry left.
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 19, "cause_txt": "No user responding", "channel": chan(&ch1)}),
    ));
    let v = app.order_until(&first, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "no_answer");
    request(&fake, originate_of(format!("vp-{second}-1"))).await;
}

/// Answers the callback of a new order and waits until it is `in_call`;
/// returns (order id, channel id).
async fn answered_call(app: &TestApp, fake: &FakeAri, reference: &str) -> (String, String) {
    let id = new_order(app, reference).await;
    let ch = callback_answered(fake, &id).await;
    app.order_until(&id, |v| v["status"] == "in_call").await;
    // Confirmed, half the PIN keyed.
    fake.press(&chan(&ch), "1805");
    (id, ch)
}

#[tokio::test]
async fn an_answered_call_lost_in_a_restart_fails_with_call_failed() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1).await;
    let (id, _) = answered_call(&app, &fake, "L1").await;
    // Asterisk crashed and came back: same entity id, new start time, the
    // channel gone. No hang-up event ever came.
    fake.set_startup_time("2025-01-01T11:00:00.000+0800");
    fake.drop_socket();
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "call_failed", "{v:#}");
    assert_eq!(v["attempts"][0]["outcome"], "failed", "{v:#}");
}

#[tokio::test]
async fn asterisk_shutting_down_is_not_the_caller_hanging_up() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 2).await;
    let (stopped, ch) = answered_call(&app, &fake, "L2").await;
    // `core stop now`: Asterisk hangs the channel up itself.
    fake.push(event(
        "ChannelHangupRequest",
        json!({"cause": 4, "soft": true, "channel": chan(&ch)}),
    ));
    fake.push(event("StasisEnd", json!({"channel": chan(&ch)})));
    // An attempt was left: the cardholder is called again.
    request(&fake, originate_of(format!("vp-{stopped}-2"))).await;
    let v = app.order_view(&stopped).await;
    assert_eq!(v["attempts"][0]["outcome"], "failed", "{v:#}");

    // The caller hanging up is a plain request (no `soft`).
    let (hung_up, ch) = answered_call(&app, &fake, "L3").await;
    fake.push(event(
        "ChannelHangupRequest",
        json!({"cause": 16, "channel": chan(&ch)}),
    ));
    fake.push(event("StasisEnd", json!({"channel": chan(&ch)})));
    let v = app.order_until(&hung_up, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "caller_hung_up", "{v:#}");
}

/// A node that stopped mid-call leaves its order `in_call`, claimed until
/// a time that passes. Another node takes the claim over, hangs up the
/// orphaned channel and retries the order like any lost call.
#[tokio::test]
async fn a_stopped_nodes_call_is_taken_over_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(Db::Sqlite, dir.path()).await.unwrap();

    // Node B (API only) takes the order; then it "dies" mid-call.
    let (id, api_key) = order_on_a_node_that_stops(&settings, &order_body("T1")).await;
    let orphan = format!("vp-{id}-1");
    let pool = sqlx::AnyPool::connect(&settings.database.url)
        .await
        .unwrap();
    stale_claim_of_the_stopped_node(&pool, &id, &orphan).await;

    // Node A comes up on the same database; Asterisk still has the call.
    let fake = FakeAri::start().await;
    fake.set_channels(vec![chan(&orphan)]);
    let mut s = settings.clone();
    s.ari = fake.settings();
    s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
    s.telephony.max_attempts = 2;
    s.telephony.retry_interval_secs = 1;
    let node_a = voicepay::app::App::build(s).await.unwrap();
    let stop_a = tokio_util::sync::CancellationToken::new();
    let base = format!("http://{}", node_a.local_addr());
    tokio::spawn(node_a.run(stop_a.clone()));

    let hangup = request(&fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{orphan}")
    })
    .await;
    assert_eq!(hangup.path, format!("/ari/channels/{orphan}"));
    // The second attempt is placed by node A, under its own claim.
    request(&fake, originate_of(format!("vp-{id}-2"))).await;
    let v = super::common::get_order(&reqwest::Client::new(), &base, &api_key, &id).await;
    assert_eq!(v["status"], "calling", "{v:#}");
    let (by, until): (String, i64) =
        sqlx::query_as("SELECT claimed_by, claim_until FROM orders WHERE id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(by, "voicepay-test");
    assert!(until > voicepay::store::now_ms());
    let outcomes: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT attempt, cause FROM call_attempts WHERE order_id = $1 ORDER BY attempt",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes[0],
        (1, Some("call_lost".to_owned())),
        "{outcomes:?}"
    );
    stop_a.cancel();
}

/// Node B (API only, on `settings`' database) takes the order `body` as a
/// new merchant, then stops. Returns (order id, the merchant's API key).
async fn order_on_a_node_that_stops(
    settings: &voicepay::config::Settings,
    body: &Value,
) -> (String, String) {
    let node_b = voicepay::app::App::build(settings.clone()).await.unwrap();
    let creds =
        voicepay::merchants::create(&node_b.state().store, &node_b.state().vault, "Shop", None)
            .await
            .unwrap();
    let base = format!("http://{}", node_b.local_addr());
    let stop_b = tokio_util::sync::CancellationToken::new();
    let b = tokio::spawn(node_b.run(stop_b.clone()));
    let created: Value = reqwest::Client::new()
        .post(format!("{base}/v1/orders"))
        .bearer_auth(&creds.api_key)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    stop_b.cancel();
    b.await.unwrap().unwrap();
    (id, creds.api_key)
}

/// Leaves the order as the stopped node B had it mid-call: `in_call` under
/// B's claim, run out a second ago, its attempt 1 answered on `channel_id`.
async fn stale_claim_of_the_stopped_node(pool: &sqlx::AnyPool, id: &str, channel_id: &str) {
    let past = voicepay::store::now_ms() - 1_000;
    sqlx::query(
        "UPDATE orders SET status = 'in_call', claimed_by = 'node-b', claim_until = $1, \
         attempts = 1 WHERE id = $2",
    )
    .bind(past)
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO call_attempts (order_id, attempt, channel_id, started_at, answered_at) \
         VALUES ($1, 1, $2, $3, $3)",
    )
    .bind(id)
    .bind(channel_id)
    .bind(past - 60_000)
    .execute(pool)
    .await
    .unwrap();
}

/// Waits until `/readyz` says ARI is `want` ("connected" or not).
async fn ari_ready(app: &TestApp, connected: bool) {
    wait_for(Duration::from_secs(15), async || {
        let r = app.http.get(app.url("/readyz")).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if (v["ari"] == "connected") == connected {
            Ok(())
        } else {
            Err(format!("ARI never {connected}: {v}"))
        }
    })
    .await;
}

/// Keys the confirmation and the PIN on `ch` and waits for the payment.
async fn pay(app: &TestApp, fake: &FakeAri, id: &str, ch: &str) -> Value {
    fake.press(&chan(ch), "1805137");
    app.order_until(id, |v| v["status"] == "succeeded").await
}

async fn claim_until(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT claim_until FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A daemon with ARI up and a new order whose first originate the fake
/// holds unanswered: (fake, app, order id, channel id, the held answer).
async fn held_originate(reference: &str) -> (FakeAri, TestApp, String, String, Held) {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 2).await;
    ari_ready(&app, true).await;
    let id = new_order(&app, reference).await;
    let ch = format!("vp-{id}-1");
    let held = fake.hold(&format!("/ari/channels/{ch}"));
    (fake, app, id, ch, held)
}

/// The cardholder answers `ch` and pays on it: approved, on the order's
/// one and only attempt.
async fn answer_and_pay_on_one_attempt(app: &TestApp, fake: &FakeAri, id: &str, ch: &str) {
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": chan(ch)}),
    ));
    let v = pay(app, fake, id, ch).await;
    assert_eq!(v["result"]["code"], "approved");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "{v:#}");
}

/// `POST /channels` answers with an error after the channel's own events
/// came (a timed-out originate that Asterisk did place): the call task that
/// those events started owns the call; the error neither fails the attempt
/// nor queues a second call while the first one rings.
#[tokio::test]
async fn an_originate_error_after_its_events_leaves_the_call_running() {
    let (fake, app, id, ch, held) = held_originate("E1").await;
    request(&fake, originate_of(ch.clone())).await;
    // It rings before the POST is answered. (Nothing outside the daemon
    // shows that it has read the Dial: give it the time.)
    fake.push(event("Dial", json!({"dialstatus": "", "peer": chan(&ch)})));
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.answer(500);
    // Time for the error to fail the attempt or queue a retry, which it
    // must not.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "calling", "{v:#}");
    assert!(v["attempts"][0]["ended_at"].is_null(), "{v:#}");
    assert!(
        fake.rest_calls()
            .iter()
            .all(|r| !r.path.contains(&format!("vp-{id}-2"))),
        "no second call while the first rings"
    );
    // The cardholder answers the first call and pays on it.
    answer_and_pay_on_one_attempt(&app, &fake, &id, &ch).await;
}

/// A busy Asterisk answers the originate after our request timeout: the
/// call was placed all the same. The daemon finds the channel instead of
/// failing the attempt (and calling the cardholder a second time later).
#[tokio::test]
async fn an_originate_that_times_out_but_was_placed_is_kept() {
    let (fake, app, id, ch, held) = held_originate("T1").await;
    fake.set_channels(vec![channel(&ch, "Ring")]);
    let posted = request(&fake, originate_of(ch.clone())).await;
    // The client gives up after its 5 s request timeout, then looks.
    request(&fake, |r| {
        r.method == "GET" && r.path == "/ari/channels" && r.at > posted.at
    })
    .await;
    held.answer(200);
    // Time for the late answer to disturb the attempt, which it must not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "calling", "{v:#}");
    assert!(v["attempts"][0]["ended_at"].is_null(), "{v:#}");
    answer_and_pay_on_one_attempt(&app, &fake, &id, &ch).await;
}

/// An originate that got no answer and placed no channel (Asterisk lists
/// none) is sent once more with the same channel id, which Asterisk would
/// refuse if the first had placed it after all.
#[tokio::test]
async fn an_originate_lost_before_asterisk_is_sent_once_more() {
    let (fake, app, id, ch, held) = held_originate("R1").await;
    let first = request(&fake, originate_of(ch.clone())).await;
    // After the timeout the daemon looks, finds no channel, and resends.
    request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}") && r.at > first.at
    })
    .await;
    held.answer(200);
    answer_and_pay_on_one_attempt(&app, &fake, &id, &ch).await;
    let posts = fake
        .rest_calls()
        .iter()
        .filter(|r| r.method == "POST" && r.path == format!("/ari/channels/{ch}"))
        .count();
    assert_eq!(posts, 2, "sent once more, never a third time");
}

/// The events socket reconnects while an originate's `POST /channels` is
/// still in flight: the channel is in neither Asterisk's list nor a call
/// task yet, and is not taken for a lost call (no second call, no hang-up
/// of the late channel).
#[tokio::test]
async fn a_reconnect_keeps_an_originate_still_in_flight() {
    let (fake, app, id, ch, held) = held_originate("E2").await;
    request(&fake, originate_of(ch.clone())).await;

    fake.drop_socket();
    fake.wait_connections(2, Duration::from_secs(10)).await;
    // Reconciled: `GET /channels` read again (without our channel).
    wait_for(Duration::from_secs(10), async || {
        let lists = fake
            .rest_calls()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/ari/channels")
            .count();
        if lists >= 2 {
            Ok(())
        } else {
            Err("no second channel list")
        }
    })
    .await;
    ari_ready(&app, true).await;
    // Time for the reconciliation to take the call for lost, which it
    // must not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "calling", "{v:#}");
    assert!(v["attempts"][0]["ended_at"].is_null(), "{v:#}");

    // Asterisk answers the POST at last; the call rings and is answered.
    held.answer(200);
    fake.push(event("Dial", json!({"dialstatus": "", "peer": chan(&ch)})));
    answer_and_pay_on_one_attempt(&app, &fake, &id, &ch).await;
    assert!(
        fake.rest_calls()
            .iter()
            .all(|r| !(r.method == "DELETE" && r.path == format!("/ari/channels/{ch}"))),
        "the late channel was hung up as unknown"
    );
}

/// A node whose events socket is down (a call held through an ARI outage)
/// keeps renewing its claim, so no other node takes the call over.
#[tokio::test]
async fn a_node_without_ari_keeps_renewing_its_claims() {
    let fake = FakeAri::start().await;
    let app = daemon_tweaked(&fake, 1, |s| s.telephony.claim_renew_secs = 1).await;
    ari_ready(&app, true).await;
    let id = new_order(&app, "E3").await;
    callback_answered(&fake, &id).await;
    app.order_until(&id, |v| v["status"] == "in_call").await;

    // ARI goes away and stays away.
    fake.open_upgrades(false);
    fake.drop_socket();
    ari_ready(&app, false).await;
    let before = claim_until(&app, &id).await;
    // Renewed every second (claim_renew_secs) while ARI stays down.
    wait_for(Duration::from_millis(2_500), async || {
        let after = claim_until(&app, &id).await;
        if after > before {
            Ok(())
        } else {
            Err(format!("claim not renewed: {before} -> {after}"))
        }
    })
    .await;
    ari_ready(&app, false).await;
    assert_eq!(app.order_view(&id).await["status"], "in_call");
}

/// A stale claim of a stopped node on an inbound (or transferred) call:
/// its channel id is Asterisk's own (`<epoch>.<seq>`) and was on the other
/// node's Asterisk, so the node taking it over settles the order without
/// touching the channel of that id on its own Asterisk (another call).
#[tokio::test]
async fn a_stopped_nodes_inbound_call_is_settled_without_touching_our_channels() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(Db::Sqlite, dir.path()).await.unwrap();
    let mut body = order_body("T2");
    body["mode"] = json!("inbound");
    let (id, _) = order_on_a_node_that_stops(&settings, &body).await;
    // Node B's call, by its Asterisk's id; node A's Asterisk has an
    // unrelated call of the same id.
    let theirs = "1764000000.42";
    let pool = sqlx::AnyPool::connect(&settings.database.url)
        .await
        .unwrap();
    stale_claim_of_the_stopped_node(&pool, &id, theirs).await;

    let fake = FakeAri::start().await;
    fake.set_channels(vec![chan(theirs)]);
    let mut s = settings.clone();
    s.ari = fake.settings();
    s.telephony.max_attempts = 1;
    let node_a = voicepay::app::App::build(s).await.unwrap();
    let stop_a = tokio_util::sync::CancellationToken::new();
    tokio::spawn(node_a.run(stop_a.clone()));

    let (status, code) = wait_for(Duration::from_secs(15), async || {
        let (status, code): (String, Option<String>) =
            sqlx::query_as("SELECT status, result_code FROM orders WHERE id = $1")
                .bind(&id)
                .fetch_one(&pool)
                .await
                .unwrap();
        if status != "in_call" {
            Ok((status, code))
        } else {
            Err("never settled")
        }
    })
    .await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("failed", Some("call_failed"))
    );
    assert!(
        fake.rest_calls().iter().all(|r| !r.path.contains(theirs)),
        "touched another call: {:#?}",
        fake.rest_calls()
    );
    stop_a.cancel();
}
