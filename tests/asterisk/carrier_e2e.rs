//! Payments through the carrier trunk: SIPp (tests/sipp/*.xml) stands in
//! for the carrier on 127.0.0.3:5060, the lab instance of the production
//! `carrier` trunk (asterisk-conf/lab/pjsip.conf). The daemon (in-process,
//! port 0, its own SQLite) dials the production endpoints
//! `PJSIP/{phone}@carrier` or `Local/{phone}@voicepay-callback`; SIPp
//! answers with PCMU + telephone-event and keys RFC 4733 events; the
//! inbound test calls the access number from the carrier's address. Each
//! test asserts the order's final status, result code and attempts through
//! `GET /v1/orders/{id}`, and some the prompts the call played.
//!
//! Needs `scripts/asterisk up` and `sipp` (Debian `sip-tester`); skips
//! without them, fails under `CI=true`. One SIPp owns 127.0.0.3:5060, so
//! these tests take turns ([`sipp::carrier`]). Timers are short (ring 4 s,
//! retry 1 s, digit timeouts 3 s) so the file adds about a minute.

use serde_json::Value;
use std::time::Duration;
use voicepay_testkit::lab::{self, Lab};
use voicepay_testkit::sipp::{self, KeyPresses, PromptRecorder, Sipp, SippResult};
use voicepay_testkit::{order_body, spawn_app_with, Db, TestApp};

/// The production callback endpoint: straight to the carrier trunk.
const TRUNK: &str = "PJSIP/{phone}@carrier";
/// The production dialplan in front of the trunk (dialplan/callback.conf).
const VIA_DIALPLAN: &str = "Local/{phone}@voicepay-callback";

/// The debit test card (BIN 622200): PIN 805137 (src/bank/test_cards.toml).
const DEBIT: &str = "6222000000000017";
/// A credit test card (BIN 625000): expiry 1230, CVN2 123.
const CREDIT: &str = "6250000000000012";

/// A callee number no other test uses: 1380014 and four random digits.
fn phone() -> String {
    format!("1380014{:04}", rand::random::<u16>() % 10_000)
}

/// Everything a carrier test needs, or None when it skips.
struct Carrier {
    lab: Lab,
    _log: tokio::sync::RwLockReadGuard<'static, ()>,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn carrier() -> Option<Carrier> {
    let lab = lab::require_asterisk()?;
    sipp::require_sipp()?;
    let _log = lab::log_window().await;
    let _turn = sipp::carrier().await;
    Some(Carrier { lab, _log, _turn })
}

/// A daemon wired to the lab Asterisk under a unique app name, calling
/// through `endpoint`, with short ring, retry and digit timers.
async fn daemon(endpoint: &str, max_attempts: u32) -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = lab::unique("vp-carrier");
        s.telephony.callback_endpoint = endpoint.into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
        s.ivr.first_digit_timeout_secs = 3;
        s.ivr.inter_digit_timeout_secs = 3;
    })
    .await
    .expect("sqlite app")
}

/// Creates an order for `phone` paid with `card` in `mode` (`callback`
/// or `inbound`); returns its API view.
async fn order(app: &TestApp, phone: &str, card: &str, mode: &str) -> Value {
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

fn result_code(v: &Value) -> &str {
    v["result"]["code"].as_str().unwrap_or_default()
}

fn attempt_outcomes(v: &Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Asserts the order's final status, result code and attempt outcomes.
fn assert_final(v: &Value, status: &str, code: &str, attempts: &[&str]) {
    assert_eq!(v["status"], status, "{v:#}");
    assert_eq!(result_code(v), code, "{v:#}");
    assert_eq!(attempt_outcomes(v), attempts, "{v:#}");
}

/// The callback scenarios: SIPp as the called carrier running `scenario`
/// (keying `keys` when it answers), one order through `endpoint`; returns
/// the daemon, the final order view, SIPp's result and, when `record` is
/// given, the prompts played on channels named with that prefix.
struct Outcome {
    app: TestApp,
    view: Value,
    sipp: SippResult,
    prompts: Vec<String>,
}

async fn callback(
    c: &Carrier,
    endpoint: &str,
    max_attempts: u32,
    card: &str,
    sipp: Sipp,
    record: Option<&str>,
) -> Outcome {
    let app = daemon(endpoint, max_attempts).await;
    let phone = phone();
    let recorder = match record {
        Some(prefix) => {
            let prefix = prefix.replace("{phone}", &phone);
            Some(PromptRecorder::start(&c.lab, &prefix).await.expect("recorder"))
        }
        None => None,
    };
    let run = sipp.spawn().expect("sipp");
    let id = order(&app, &phone, card, "callback").await["id"]
        .as_str()
        .expect("order id")
        .to_string();
    let view = app.final_view(&id, Duration::from_secs(90)).await;
    let sipp = run.finish(Duration::from_secs(30)).await;
    let prompts = match recorder {
        Some(r) => r.prompts(Duration::from_secs(10)).await.expect("prompts"),
        None => Vec::new(),
    };
    Outcome {
        app,
        view,
        sipp,
        prompts,
    }
}

/// SIPp answering and keying `keys` (lab handset notation).
fn answering(keys: &str) -> Sipp {
    Sipp::uas("uas_answer.xml").keys(KeyPresses::parse(keys).expect("keys"))
}

#[tokio::test]
async fn carrier_debit_pin_pays_over_the_trunk() {
    let Some(c) = carrier().await else { return };
    let out = callback(
        &c,
        TRUNK,
        1,
        DEBIT,
        answering("w1WW805137"),
        Some("PJSIP/carrier-"),
    )
    .await;
    out.sipp.assert_ok();
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    assert_eq!(
        out.prompts,
        [
            "voicepay/welcome",
            "voicepay/confirm",
            "voicepay/enter-pin",
            "voicepay/please-wait",
            "voicepay/payment-approved",
            "voicepay/goodbye",
        ],
        "{:#}",
        out.view
    );
}
