//! Transfer and inbound flows end to end: orders through the HTTP
//! API, the daemon (in-process, port 0, its own SQLite, its own Stasis app)
//! on a real Asterisk 22, and lab handsets acting as cardholders.
//!
//! - Transfer: the lab's sample call centre (`voicepay-lab-merchant,
//!   callcentre`, dialplan/lab.conf) takes the handset's call and
//!   transfers it with `LAB_TRANSFER_CODE`; when voicepay hands it back it
//!   publishes `LAB_RESULT_<code>=<VOICEPAY_RESULT>:<VOICEPAY_CODE>`.
//! - Inbound: the handset's call runs `voicepay-inbound` with the order's
//!   phone as caller ID, and keys the order code first
//!   (`inbound.require_order_code`, on by default).
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`.

use serde_json::Value;
use std::time::{Duration, Instant};
use voicepay_testkit::lab;
use voicepay_testkit::lab::{secs, Lab, Originate};
use voicepay_testkit::sipp::PromptRecorder;
use voicepay_testkit::{wait_for, wait_until, TestApp};

/// A handset number no other test uses: 1390013 and four random digits.
pub(super) fn phone() -> String {
    super::common::phone_in("1390013")
}

/// The daemon on the lab Asterisk under the Stasis app `app`.
pub(super) async fn daemon(app: &str) -> TestApp {
    daemon_with(app, |_| {}).await
}

/// [`daemon`] with its settings tweaked (the `[inbound]` order code).
async fn daemon_with(
    app: &str,
    tweak: impl FnOnce(&mut voicepay::config::Settings) + Send + 'static,
) -> TestApp {
    super::common::lab_daemon(app, |s| {
        tweak(s);
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
    })
    .await
}

/// Waits until the daemon's app is registered with Asterisk.
pub(super) async fn wait_app(lab: &Lab, app: &str) {
    let failure = format!("app {app} never registered");
    wait_until(secs(15), failure, async || {
        lab.get(&format!("/applications/{app}"), &[]).await.is_ok()
    })
    .await;
}

/// Creates an order in `mode` for `phone`; returns the order view.
pub(super) async fn order(app: &TestApp, phone: &str, mode: &str) -> Value {
    super::common::order(app, phone, super::common::DEBIT, mode).await
}

async fn view(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/orders/{id}"), &app.api_key)
        .await
        .json()
        .await
        .expect("order json")
}

async fn wait_global(lab: &Lab, name: &str, within: Duration) -> String {
    wait_for(within, async || {
        let v = lab.global(name).await.expect("global");
        if !v.is_empty() {
            Ok(v)
        } else {
            Err(format!("{name} still unset after {within:?}"))
        }
    })
    .await
}

/// The handset `phone` calls the lab call centre, which transfers it with
/// `code`; returns what the merchant's dialplan got back.
async fn call_centre(lab: &Lab, app: &str, phone: &str, code: &str) -> String {
    let result = format!("LAB_RESULT_{code}");
    lab.set_global(&result, "").await.expect("reset result");
    let o = Originate::to_dialplan(
        lab.handset(phone),
        "voicepay-lab-merchant",
        "callcentre",
        &lab::unique("callcentre"),
    )
    .var("LAB_TRANSFER_CODE", code)
    .var("VOICEPAY_APP", app)
    .timeout(10);
    lab.originate(&o).await.expect("originate");
    let got = wait_global(lab, &result, secs(60)).await;
    let _ = lab.set_global(&result, "").await;
    got
}

#[tokio::test]
async fn transfer_pays_and_returns_the_result_to_the_merchant() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-tr");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let created = order(&app, &phone, "transfer").await;
    let id = created["id"].as_str().expect("id");
    let code = created["transfer_code"].as_str().expect("transfer_code");
    assert_eq!(code.len(), 8, "{created}");
    lab.script_handset(&phone, "answer=0;delay=2;keys=1wwww805137;hold=40")
        .await
        .expect("script");
    let got = call_centre(&lab, &name, &phone, code).await;
    assert_eq!(got, "success:approved");
    let v = app.final_view(id, secs(20)).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    assert!(
        v.get("transfer_code").is_none(),
        "used code still shown: {v:#}"
    );
    assert_eq!(v["attempts"][0]["outcome"], "answered", "{v:#}");

    // The code was one-time: a second transfer with it is refused.
    lab.script_handset(&phone, "answer=0;hold=30")
        .await
        .expect("script");
    let again = call_centre(&lab, &name, &phone, code).await;
    let _ = lab.clear_handset(&phone).await;
    assert_eq!(again, "failure:transfer_code_invalid");
}

#[tokio::test]
async fn transfer_with_an_unknown_code_goes_back_with_transfer_code_invalid() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-tr-bad");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let pending = order(&app, &phone, "transfer").await;
    lab.script_handset(&phone, "answer=0;hold=30")
        .await
        .expect("script");
    // Not the order's code (8 digits, but another one).
    let real = pending["transfer_code"].as_str().expect("code");
    let wrong = format!("{:08}", (real.parse::<u32>().unwrap() + 1) % 100_000_000);
    let got = call_centre(&lab, &name, &phone, &wrong).await;
    let _ = lab.clear_handset(&phone).await;
    assert_eq!(got, "failure:transfer_code_invalid");
    let v = view(&app, pending["id"].as_str().unwrap()).await;
    assert_eq!(
        v["status"], "pending",
        "an unknown code touches no order: {v:#}"
    );
}

#[tokio::test]
async fn transferred_caller_hanging_up_mid_pin_fails_the_order() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-tr-gone");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let created = order(&app, &phone, "transfer").await;
    let id = created["id"].as_str().expect("id");
    let code = created["transfer_code"].as_str().expect("code");
    lab.script_handset(&phone, "answer=0;delay=2;keys=1wwww805;hold=2")
        .await
        .expect("script");
    let o = Originate::to_dialplan(
        lab.handset(&phone),
        "voicepay-lab-merchant",
        "callcentre",
        &lab::unique("callcentre"),
    )
    .var("LAB_TRANSFER_CODE", code)
    .var("VOICEPAY_APP", &name)
    .timeout(10);
    lab.originate(&o).await.expect("originate");
    let v = app.final_view(id, secs(60)).await;
    let _ = lab.clear_handset(&phone).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    assert_eq!(v["result"]["code"], "caller_hung_up", "{v:#}");
}

/// The handset `phone` dials the access number with `caller_id`.
pub(super) async fn dial_in(lab: &Lab, app: &str, phone: &str, caller_id: &str) -> String {
    let channel = lab::unique("inbound");
    let o = Originate::to_dialplan(lab.handset(phone), "voicepay-inbound", "95516", &channel)
        .caller_id(caller_id)
        .var("VOICEPAY_APP", app)
        .timeout(10);
    lab.originate(&o).await.expect("originate");
    channel
}

/// An inbound order for `phone`, and the handset's call to the access
/// number presenting `caller_id`: it keys the order code (8 digits end
/// it), then 1 to confirm and the PIN. Returns the order as created and
/// its final view.
pub(super) async fn pay_inbound(
    lab: &Lab,
    app: &TestApp,
    name: &str,
    phone: &str,
    caller_id: &str,
) -> (Value, Value) {
    let created = order(app, phone, "inbound").await;
    let id = created["id"].as_str().expect("id");
    let code = created["order_code"].as_str().expect("order_code");
    lab.script_handset(
        phone,
        &format!("answer=0;delay=2;keys={code}WWW1wwww805137;hold=40"),
    )
    .await
    .expect("script");
    dial_in(lab, name, phone, caller_id).await;
    let v = app.final_view(id, secs(60)).await;
    let _ = lab.clear_handset(phone).await;
    (created, v)
}

#[tokio::test]
async fn inbound_call_pays_the_callers_order_found_by_caller_id() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-in");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    // The network's form of the number: +86 in front.
    let (created, v) = pay_inbound(&lab, &app, &name, &phone, &format!("+86{phone}")).await;
    assert_eq!(
        created["order_code"].as_str().map(str::len),
        Some(8),
        "{created}"
    );
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    assert!(v.get("order_code").is_none(), "{v:#}");
}

#[tokio::test]
async fn inbound_caller_with_two_orders_keys_the_order_code() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-in2");
    let app = daemon(&name).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let first = order(&app, &phone, "inbound").await;
    let second = order(&app, &phone, "inbound").await;
    let code = second["order_code"].as_str().expect("order_code");
    // Records the daemon's prompts on the call (issue #12, fault 2).
    let recorder = PromptRecorder::start(&lab, &lab.handset(&phone))
        .await
        .expect("recorder");
    // The code followed by `#`, as the prompt asks: the code is taken at its
    // 8th digit and the `#` reaches the confirmation while it plays.
    lab.script_handset(
        &phone,
        &format!("answer=0;delay=2;keys={code}#WWW1wwww805137;hold=40"),
    )
    .await
    .expect("script");
    dial_in(&lab, &name, &phone, &phone).await;
    let v = app
        .final_view(second["id"].as_str().unwrap(), secs(60))
        .await;
    let heard = recorder.prompts(secs(30)).await.expect("prompts");
    let _ = lab.clear_handset(&phone).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    // No "invalid input" for the `#`: the caller heard each prompt once.
    assert_eq!(
        heard,
        [
            "voicepay/key-order-code",
            "voicepay/welcome",
            "voicepay/enter-pin",
            "voicepay/please-wait",
            "voicepay/success",
            "voicepay/goodbye",
        ],
        "{v:#}"
    );
    let other = view(&app, first["id"].as_str().unwrap()).await;
    assert_eq!(other["status"], "pending", "{other:#}");
}

#[tokio::test]
async fn inbound_call_without_a_pending_order_is_hung_up() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-in-none");
    // Without the order code, as before it (with it, a caller without an
    // order is asked for a code like any other).
    let app = daemon_with(&name, |s| s.inbound.require_order_code = false).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    // Another phone's inbound order: not the caller's.
    let elsewhere = order(
        &app,
        &format!("1370013{:04}", rand::random::<u16>() % 10_000),
        "inbound",
    )
    .await;
    lab.script_handset(&phone, "answer=0;hold=30")
        .await
        .expect("script");
    let mut watcher = lab.app("watch").await.expect("watcher");
    let channel = dial_in(&lab, &name, &phone, &phone).await;
    lab.subscribe(watcher.name(), &format!("channel:{channel}"))
        .await
        .expect("subscribe");
    let t0 = Instant::now();
    watcher
        .wait_channel_event(&channel, "ChannelDestroyed", secs(30))
        .await
        .expect("the call is hung up");
    let after = t0.elapsed();
    watcher.close().await;
    let _ = lab.clear_handset(&phone).await;
    assert!(after < secs(25), "hung up only after {after:?}");
    let v = view(&app, elsewhere["id"].as_str().unwrap()).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(0), "{v:#}");
}

#[tokio::test]
async fn inbound_caller_keying_a_wrong_code_is_refused_and_the_order_stays_pending() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let name = lab::unique("vp-in-wrong");
    // One wrong code a day: the first one ends the call with the refusal.
    let app = daemon_with(&name, |s| s.inbound.wrong_codes_per_day = 1).await;
    wait_app(&lab, &name).await;
    let phone = phone();
    let created = order(&app, &phone, "inbound").await;
    let real = created["order_code"].as_str().expect("order_code");
    let wrong = format!("{:08}", (real.parse::<u32>().unwrap() + 1) % 100_000_000);
    lab.script_handset(&phone, &format!("answer=0;delay=2;keys={wrong};hold=60"))
        .await
        .expect("script");
    let mut watcher = lab.app("watch").await.expect("watcher");
    let channel = dial_in(&lab, &name, &phone, &phone).await;
    lab.subscribe(watcher.name(), &format!("channel:{channel}"))
        .await
        .expect("subscribe");
    watcher
        .wait_channel_event(&channel, "ChannelDestroyed", secs(45))
        .await
        .expect("the call is hung up");
    watcher.close().await;
    let _ = lab.clear_handset(&phone).await;
    let v = view(&app, created["id"].as_str().unwrap()).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(0), "{v:#}");
    let counted: i64 = sqlx::query_scalar("SELECT count FROM order_code_tries WHERE caller = $1")
        .bind(&phone)
        .fetch_one(&app.pool)
        .await
        .expect("the wrong code is counted");
    assert_eq!(counted, 1);
}
