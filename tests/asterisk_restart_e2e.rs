//! Asterisk restarted in the middle of a payment call, end to end
//! on the real lab Asterisk 22, both ways it happens. The cardholder has
//! confirmed and keyed half of the PIN when Asterisk
//! - crashes (SIGKILL: no hang-up, no goodbye on ARI; the daemon learns it
//!   on reconnection: new start time, channel gone) and is started again;
//! - or is restarted cleanly (`core stop now`: Asterisk hangs the call up
//!   itself, a soft hang-up request with cause 4, before the socket closes).
//!
//! Each time the merchant must see a final answer for that order (`failed`,
//! `call_failed`: not `caller_hung_up`, the cardholder did not hang up),
//! `/readyz` must follow the outage, and the next order must pay.
//!
//! Its own test binary with one test: it restarts the shared Asterisk, so it
//! must not run beside other real-Asterisk tests of the same process (cargo
//! runs test binaries one after another). A guard starts Asterisk again
//! whatever happens, so the binaries after this one find it up.
//!
//! Needs `scripts/asterisk up`; skips without Asterisk, fails under `CI=true`.

use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::{order_body, spawn_app_with, wait_for, Db, TestApp};

/// Starts Asterisk again when dropped if it is not running (the test
/// panicked between the crash and the restart).
struct LeaveAsteriskUp(PathBuf);

impl Drop for LeaveAsteriskUp {
    fn drop(&mut self) {
        let script = self.0.join("scripts/asterisk");
        let running = std::process::Command::new(&script)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success());
        if !running {
            eprintln!("starting Asterisk again for the tests that follow");
            let _ = std::process::Command::new(&script).arg("up").status();
        }
    }
}

fn phone() -> String {
    format!("1390013{:04}", rand::random::<u16>() % 10_000)
}

async fn daemon() -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = lab::unique("vp-restart");
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 10;
        s.telephony.max_attempts = 1;
    })
    .await
    .expect("sqlite app")
}

async fn order(app: &TestApp, phone: &str) -> String {
    let mut body = order_body(&format!("r{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = Value::from(phone);
    body["card_number"] = Value::from("6222000000000017");
    let res = app.create_order(&body).await;
    let status = res.status();
    let v: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "order refused: {v}");
    v["id"].as_str().expect("order id").to_string()
}

async fn view(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/orders/{id}"), &app.api_key)
        .await
        .json()
        .await
        .expect("order json")
}

/// `/readyz` as (HTTP status, body).
async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("readyz json"))
}

/// Polls `/readyz` until its `ari` says `want`; returns the last answer.
async fn readyz_until(app: &TestApp, want: &str) -> (u16, Value) {
    wait_for(Duration::from_secs(60), async || {
        let (status, v) = readyz(app).await;
        if v["ari"] == want {
            Ok((status, v))
        } else {
            Err(format!("readyz never said ari={want}: {status} {v}"))
        }
    })
    .await
}

/// Orders a payment whose cardholder answers, confirms, keys three PIN
/// digits and then waits; returns once the call is that far.
async fn order_mid_pin(app: &TestApp, lab: &lab::Lab) -> String {
    let phone = phone();
    lab.script_handset(&phone, "answer=1;delay=1;keys=1wwww805;hold=120")
        .await
        .expect("script");
    let id = order(app, &phone).await;
    wait_for(Duration::from_secs(60), async || {
        let v = view(app, &id).await;
        if v["status"] == "in_call" {
            Ok(())
        } else {
            Err(format!("never in_call: {v:#}"))
        }
    })
    .await;
    // Let the keys go out (mid-PIN): the handset's script is timed, and
    // nothing outside the call shows how far it got; it does not change
    // what must follow.
    tokio::time::sleep(Duration::from_secs(4)).await;
    id
}

/// The order's call was lost with Asterisk: failed, `call_failed`, its one
/// attempt answered then failed.
async fn assert_lost(app: &TestApp, id: &str) {
    let v = app.final_view(id, Duration::from_secs(60)).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    assert_eq!(v["result"]["code"], "call_failed", "{v:#}");
    assert!(v["result"]["resp_code"].is_null(), "no bank code: {v:#}");
    let attempts = v["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "no retry left: {v:#}");
    assert_eq!(attempts[0]["outcome"], "failed", "{v:#}");
    assert!(!attempts[0]["answered_at"].is_null(), "{v:#}");
}

#[tokio::test]
async fn asterisk_restart_mid_pin_fails_the_order_then_the_next_order_pays() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _up = LeaveAsteriskUp(lab.repo().to_path_buf());
    // `RUST_LOG=voicepay=debug … -- --nocapture` shows what the daemon saw.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let app = daemon().await;
    assert_eq!(readyz_until(&app, "connected").await.0, 200);

    // A crash: the daemon hears nothing until it reconnects.
    let crashed = order_mid_pin(&app, &lab).await;
    lab.script(&["kill"]).await.expect("scripts/asterisk kill");
    let (status, v) = readyz_until(&app, "disconnected").await;
    assert_eq!(status, 503, "not ready while Asterisk is down: {v}");
    assert_eq!(v["ready"], false, "{v}");
    lab.script(&["up"]).await.expect("scripts/asterisk up");
    assert_lost(&app, &crashed).await;
    let (status, v) = readyz_until(&app, "connected").await;
    assert_eq!(status, 200, "ready again after the reconnect: {v}");
    assert_eq!(v["ready"], true, "{v}");

    // A clean restart: Asterisk hangs the call up itself on the way down.
    let stopped = order_mid_pin(&app, &lab).await;
    lab.script(&["restart"])
        .await
        .expect("scripts/asterisk restart");
    assert_lost(&app, &stopped).await;
    let (status, v) = readyz_until(&app, "connected").await;
    assert_eq!(status, 200, "ready again after the restart: {v}");

    // Asterisk forgot its globals: script the next cardholder afresh.
    let next_phone = phone();
    lab.script_handset(&next_phone, "answer=1;delay=1;keys=1wwww805137;hold=30")
        .await
        .expect("script");
    let paid = order(&app, &next_phone).await;
    let v = app.final_view(&paid, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(&next_phone).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    assert_eq!(v["result"]["resp_code"], "00", "{v:#}");
}
