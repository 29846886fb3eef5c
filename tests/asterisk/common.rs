//! What the lab tests share: the daemon on the lab Asterisk, the carrier's
//! turn for SIPp tests, orders through the API and what their view says.

use serde_json::Value;
use std::time::Duration;
use voicepay::config::Settings;
use voicepay_testkit::lab::{self, Lab};
use voicepay_testkit::sipp::{self, PromptRecorder, Running};
use voicepay_testkit::{order_body, spawn_app_with, Db, TestApp};

/// The debit test card (BIN 622200): PIN 805137 (src/bank/test_cards.toml).
pub(super) const DEBIT: &str = "6222000000000017";
/// A credit test card (BIN 625000): expiry 1230, CVN2 123.
pub(super) const CREDIT: &str = "6250000000000012";

/// The prompts of a call that confirms during the welcome and pays by PIN
/// (keyed during the PIN prompt).
pub(super) const PAID: [&str; 5] = [
    "voicepay/welcome",
    "voicepay/enter-pin",
    "voicepay/please-wait",
    "voicepay/success",
    "voicepay/goodbye",
];

/// The prompts of a credit card's call that confirms during the welcome
/// and pays by expiry and CVN2.
pub(super) const PAID_BY_CREDIT: [&str; 6] = [
    "voicepay/welcome",
    "voicepay/enter-expiry",
    "voicepay/enter-cvn2",
    "voicepay/please-wait",
    "voicepay/success",
    "voicepay/goodbye",
];

/// The daemon (in-process, port 0, its own SQLite) connected to the lab
/// Asterisk's ARI under the Stasis app `app`, with `tweak` applied to its
/// settings.
pub(super) async fn lab_daemon(
    app: impl Into<String>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let app = app.into();
    spawn_app_with(Db::Sqlite, move |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.rest_transport = lab::rest_transport();
        s.ari.app = app;
        tweak(s);
    })
    .await
    .expect("sqlite app")
}

/// Waits until the daemon's `/readyz` says ARI is connected (its app is
/// registered, so calls into it reach the daemon).
pub(super) async fn wait_ari_connected(app: &TestApp) {
    let ready = app.url("/readyz");
    voicepay_testkit::wait_until(
        Duration::from_secs(15),
        "the daemon never connected to ARI",
        async || match reqwest::get(&ready).await {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v["ari"] == "connected"),
            Err(_) => false,
        },
    )
    .await;
}

/// The lab and the carrier's turn on 127.0.0.3:5060 (and a share of
/// Asterisk's log), or None when Asterisk or SIPp is missing (the test
/// skips).
pub(super) struct CarrierTurn {
    pub lab: Lab,
    _log: tokio::sync::RwLockReadGuard<'static, ()>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

pub(super) async fn carrier_turn() -> Option<CarrierTurn> {
    let lab = lab::require_asterisk()?;
    sipp::require_sipp()?;
    let _log = lab::log_window().await;
    let _turn = sipp::carrier().await;
    Some(CarrierTurn { lab, _log, _turn })
}

/// `prefix` (seven digits) and four random ones: a callee number.
pub(super) fn phone_in(prefix: &str) -> String {
    format!("{prefix}{:04}", rand::random::<u16>() % 10_000)
}

/// Creates an order for `phone` paid with `card` in `mode` (`callback`
/// or `inbound`); returns its API view.
pub(super) async fn order(app: &TestApp, phone: &str, card: &str, mode: &str) -> Value {
    let mut body = order_body(&format!("m{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = Value::from(phone);
    body["card_number"] = Value::from(card);
    body["mode"] = Value::from(mode);
    let res = app.create_order(&body).await;
    let status = res.status();
    let v: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "order refused: {v}");
    v
}

/// The outcome of each of the order's call attempts, in order.
pub(super) fn attempt_outcomes(v: &Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Asserts the order's final status, result code and attempt outcomes.
pub(super) fn assert_final(v: &Value, status: &str, code: &str, attempts: &[&str]) {
    assert_eq!(v["status"], status, "{v:#}");
    assert_eq!(
        v["result"]["code"].as_str().unwrap_or_default(),
        code,
        "{v:#}"
    );
    assert_eq!(attempt_outcomes(v), attempts, "{v:#}");
}

/// The end of a SIPp call that paid or failed order `id`: SIPp's run ends
/// clean, the order is final, and the call's channels are gone. Returns
/// the order's final view and the prompts `recorder` saw.
pub(super) async fn call_outcome(
    run: Running,
    app: &TestApp,
    id: &str,
    recorder: PromptRecorder,
) -> (Value, Vec<String>) {
    run.finish(Duration::from_secs(90)).await.assert_ok();
    let v = app.final_view(id, Duration::from_secs(30)).await;
    let prompts = recorder
        .prompts(Duration::from_secs(10))
        .await
        .expect("prompts");
    (v, prompts)
}
