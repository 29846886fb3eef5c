//! Issue #12, fault 2 over the carrier trunk: SIPp (the lab carrier on
//! 127.0.0.3) answers a callback and keys RFC 4733 events the way a
//! cardholder follows "…followed by the hash key": `MMYY#` and `CVN2#`.
//! Each entry completes at its fixed length, so the `#` must be ignored:
//! no "invalid input", no attempt lost, no prompt cut. Asserts the prompts
//! the call played (every `PlaybackStarted` on the carrier channel).
//! Fault 1 over the trunk is `carrier_e2e::carrier_relay_restamped_key_press_counts_once`.
//!
//! Needs `scripts/asterisk up` and `sipp`; skips without them, fails
//! under `CI=true`. Takes its turn on 127.0.0.3:5060 (`sipp::carrier`).

use serde_json::Value;
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::sipp::{self, KeyPresses, PromptRecorder, Sipp};
use voicepay_testkit::{order_body, spawn_app_with, Db};

/// A credit test card (BIN 625000): expiry 1230, CVN2 123.
const CREDIT: &str = "6250000000000012";

#[tokio::test]
async fn carrier_expiry_and_cvn2_each_followed_by_hash_pay_without_invalid_input() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    if sipp::require_sipp().is_none() {
        return;
    }
    let _log = lab::log_window().await;
    let _turn = sipp::carrier().await;
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = lab::unique("vp-dtmf");
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 1;
        s.ivr.first_digit_timeout_secs = 3;
        s.ivr.inter_digit_timeout_secs = 3;
    })
    .await
    .expect("sqlite app");
    let phone = format!("1380015{:04}", rand::random::<u16>() % 10_000);
    let recorder = PromptRecorder::start(&lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    // 1 during the welcome, then 1230# (the # arrives while enter-cvn2
    // plays) and 123# (the # while please-wait plays).
    let keys = KeyPresses::parse("Ww1WW1230#WW123#").expect("keys");
    let run = Sipp::uas("uas_answer.xml")
        .keys(keys)
        .spawn()
        .expect("sipp");
    let mut body = order_body(&format!("m{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = Value::from(phone.as_str());
    body["card_number"] = Value::from(CREDIT);
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    run.finish(Duration::from_secs(90)).await.assert_ok();
    let v = app.final_view(id, Duration::from_secs(30)).await;
    let prompts = recorder
        .prompts(Duration::from_secs(10))
        .await
        .expect("prompts");
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let attempts: Vec<&str> = v["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(attempts, ["answered"], "{v:#}");
    assert_eq!(
        prompts,
        [
            "voicepay/welcome",
            "voicepay/enter-expiry",
            "voicepay/enter-cvn2",
            "voicepay/please-wait",
            "voicepay/success",
            "voicepay/goodbye",
        ],
        "{v:#}"
    );
    let details = app.event_details(id).await;
    assert!(
        !details.iter().any(|d| d == "wrong secret"),
        "a wrong secret was counted: {details:?}"
    );
}
