//! The callback flow end to end: orders through the HTTP API, the
//! daemon (in-process, port 0, its own SQLite) calls scripted lab handsets
//! through a real Asterisk 22, and each test asserts the order's final status
//! and result code through `GET /v1/orders/{id}`.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`. Every test has its own
//! Stasis app and its own handset number, so they run in parallel.

use super::common::{assert_final, lab_daemon, phone_in, CREDIT, DEBIT};
use serde_json::Value;
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::TestApp;

/// A handset number no other test uses: 1380013 and four random digits.
fn phone() -> String {
    phone_in("1380013")
}

/// A daemon wired to the lab Asterisk under a unique app name.
async fn daemon(max_attempts: u32) -> TestApp {
    lab_daemon(lab::unique("vp-cb"), |s| {
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
    })
    .await
}

/// Creates a callback order for `phone` paid with `card`.
async fn order(app: &TestApp, phone: &str, card: &str) -> String {
    let v = super::common::order(app, phone, card, "callback").await;
    v["id"].as_str().expect("order id").to_string()
}

/// Runs one callback scenario: the handset script, the expected final
/// status, result code and attempt outcomes.
async fn scenario(
    max_attempts: u32,
    card: &str,
    script: &str,
    status: &str,
    code: &str,
    attempts: &[&str],
) -> Option<(TestApp, String)> {
    let lab = lab::require_asterisk()?;
    let _log = lab::log_window().await;
    let app = daemon(max_attempts).await;
    let phone = phone();
    lab.script_handset(&phone, script).await.expect("script");
    let id = order(&app, &phone, card).await;
    let v = app.final_view(&id, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(&phone).await;
    assert_final(&v, status, code, attempts);
    Some((app, id))
}

#[tokio::test]
async fn debit_callback_succeeds() {
    let Some((app, id)) = scenario(
        1,
        DEBIT,
        "answer=1;delay=1;keys=1wwww805137;hold=30",
        "succeeded",
        "approved",
        &["answered"],
    )
    .await
    else {
        return;
    };
    // How long a prompt caller takes is measured by `scripts/bench calls`,
    // not asserted here; the test only checks the call is recorded.
    let v = app.final_view(&id, Duration::from_secs(5)).await;
    let at = |s: &Value| {
        time::OffsetDateTime::parse(
            s.as_str().expect("timestamp"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339")
    };
    let took = at(&v["updated_at"]) - at(&v["attempts"][0]["answered_at"]);
    eprintln!("debit callback: answer to result in {took}");
    assert!(
        took.is_positive(),
        "the result comes after the answer: {took}"
    );
}

/// The same payment with every ARI REST request carried on the events
/// WebSocket (`ari.rest_transport = "websocket"`, Asterisk 22.4+), whatever
/// the lab's default transport.
#[tokio::test]
async fn debit_callback_succeeds_with_rest_over_the_events_websocket() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let app = lab_daemon(lab::unique("vp-cbws"), |s| {
        s.ari.rest_transport = voicepay::config::RestTransport::Websocket;
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 1;
    })
    .await;
    let phone = phone();
    lab.script_handset(&phone, "answer=1;delay=1;keys=1wwww805137;hold=30")
        .await
        .expect("script");
    let id = order(&app, &phone, DEBIT).await;
    let v = app.final_view(&id, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(&phone).await;
    assert_final(&v, "succeeded", "approved", &["answered"]);
}

#[tokio::test]
async fn caller_presses_2_to_cancel() {
    scenario(
        1,
        DEBIT,
        "answer=1;delay=1;keys=2;hold=30",
        "failed",
        "caller_cancelled",
        &["answered"],
    )
    .await;
}

#[tokio::test]
async fn wrong_pin_then_right_pin_in_one_call() {
    let Some((app, id)) = scenario(
        1,
        DEBIT,
        "answer=1;delay=1;keys=1wwww111111WWWWWWWW805137;hold=40",
        "succeeded",
        "approved",
        &["answered"],
    )
    .await
    else {
        return;
    };
    let details = app.event_details(&id).await;
    let wrong = details.iter().filter(|d| *d == "wrong secret").count();
    assert_eq!(wrong, 1, "one wrong PIN, then the right one: {details:?}");
}

#[tokio::test]
async fn no_answer_is_retried_then_fails() {
    scenario(
        2,
        DEBIT,
        "answer=never;hold=30",
        "failed",
        "no_answer",
        &["no_answer", "no_answer"],
    )
    .await;
}

#[tokio::test]
async fn busy_line_fails_the_order() {
    scenario(1, DEBIT, "answer=busy", "failed", "busy", &["busy"]).await;
}

#[tokio::test]
async fn credit_callback_succeeds_with_expiry_and_cvn2() {
    scenario(
        1,
        CREDIT,
        "answer=1;delay=1;keys=1wwww1230ww123;hold=30",
        "succeeded",
        "approved",
        &["answered"],
    )
    .await;
}

#[tokio::test]
async fn caller_hangs_up_mid_pin() {
    scenario(
        1,
        DEBIT,
        "answer=1;delay=1;keys=1wwww805;hold=2",
        "failed",
        "caller_hung_up",
        &["answered"],
    )
    .await;
}
