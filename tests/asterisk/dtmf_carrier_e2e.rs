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

use super::common::{
    assert_final, call_outcome, carrier_turn, lab_daemon, order, phone_in, CREDIT, PAID_BY_CREDIT,
};
use voicepay_testkit::lab;
use voicepay_testkit::sipp::{KeyPresses, PromptRecorder, Sipp};

#[tokio::test]
async fn carrier_expiry_and_cvn2_each_followed_by_hash_pay_without_invalid_input() {
    let Some(c) = carrier_turn().await else {
        return;
    };
    let app = lab_daemon(lab::unique("vp-dtmf"), |s| {
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 1;
        s.ivr.first_digit_timeout_secs = 3;
        s.ivr.inter_digit_timeout_secs = 3;
    })
    .await;
    let phone = phone_in("1380015");
    let recorder = PromptRecorder::start(&c.lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    // 1 during the welcome, then 1230# (the # arrives while enter-cvn2
    // plays) and 123# (the # while please-wait plays).
    let keys = KeyPresses::parse("Ww1WW1230#WW123#").expect("keys");
    let run = Sipp::uas("uas_answer.xml")
        .keys(keys)
        .spawn()
        .expect("sipp");
    let created = order(&app, &phone, CREDIT, "callback").await;
    let id = created["id"].as_str().expect("id");
    let (v, prompts) = call_outcome(run, &app, id, recorder).await;
    assert_final(&v, "succeeded", "approved", &["answered"]);
    assert_eq!(prompts, PAID_BY_CREDIT, "{v:#}");
    let details = app.event_details(id).await;
    assert!(
        !details.iter().any(|d| d == "wrong secret"),
        "a wrong secret was counted: {details:?}"
    );
}
