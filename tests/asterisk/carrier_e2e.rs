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

use super::common::{
    assert_final, call_outcome, carrier_turn, lab_daemon, order, phone_in, wait_ari_connected,
    CREDIT, DEBIT, PAID, PAID_BY_CREDIT,
};
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::sipp::{KeyPresses, PromptRecorder, Sipp};
use voicepay_testkit::TestApp;

/// The production callback endpoint: straight to the carrier trunk.
const TRUNK: &str = "PJSIP/{phone}@carrier";
/// The production dialplan in front of the trunk (dialplan/callback.conf).
const VIA_DIALPLAN: &str = "Local/{phone}@voicepay-callback";

/// A callee number no other test uses: 1380014 and four random digits.
fn phone() -> String {
    phone_in("1380014")
}

/// A daemon wired to the lab Asterisk under a unique app name, calling
/// through `endpoint`, with short ring, retry and digit timers.
async fn daemon(endpoint: &str, max_attempts: u32) -> TestApp {
    lab_daemon(lab::unique("vp-carrier"), |s| {
        s.telephony.callback_endpoint = endpoint.into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
        s.ivr.first_digit_timeout_secs = 3;
        s.ivr.inter_digit_timeout_secs = 3;
    })
    .await
}

/// The callback scenarios: SIPp as the called carrier running `sipp`, one
/// order through `endpoint`, SIPp's run asserted clean; returns the
/// daemon, the final order view and, when `record` is given, the prompts
/// played on channels named with that prefix. None when the test skips
/// (no Asterisk or SIPp); takes the carrier's turn for the call.
struct Outcome {
    app: TestApp,
    view: serde_json::Value,
    prompts: Vec<String>,
}

async fn callback(
    endpoint: &str,
    max_attempts: u32,
    card: &str,
    sipp: Sipp,
    record: Option<&str>,
) -> Option<Outcome> {
    let c = carrier_turn().await?;
    let app = daemon(endpoint, max_attempts).await;
    let phone = phone();
    let recorder = match record {
        Some(prefix) => {
            let prefix = prefix.replace("{phone}", &phone);
            Some(
                PromptRecorder::start(&c.lab, &prefix)
                    .await
                    .expect("recorder"),
            )
        }
        None => None,
    };
    let run = sipp.spawn().expect("sipp");
    let id = order(&app, &phone, card, "callback").await["id"]
        .as_str()
        .expect("order id")
        .to_string();
    // SIPp ends with the call (or at once when the call goes wrong: its
    // logs then say why); the order is final by then.
    run.finish(Duration::from_secs(90)).await.assert_ok();
    let view = app.final_view(&id, Duration::from_secs(30)).await;
    let prompts = match recorder {
        Some(r) => r.prompts(Duration::from_secs(10)).await.expect("prompts"),
        None => Vec::new(),
    };
    Some(Outcome { app, view, prompts })
}

/// SIPp answering and keying `keys` (lab handset notation).
fn answering(keys: &str) -> Sipp {
    Sipp::uas("uas_answer.xml").keys(KeyPresses::parse(keys).expect("keys"))
}

#[tokio::test]
async fn carrier_debit_pin_pays_over_the_trunk() {
    let Some(out) = callback(
        TRUNK,
        1,
        DEBIT,
        answering("w1WW805137"),
        Some("PJSIP/carrier-"),
    )
    .await
    else {
        return;
    };
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    // The 1 comes 1.5 s into the 3.9 s welcome: the confirmation that
    // follows it in the same playback never starts (barge-in).
    assert_eq!(out.prompts, PAID, "{:#}", out.view);
}

#[tokio::test]
async fn carrier_credit_expiry_and_cvn2_pay_through_the_callback_dialplan() {
    let Some(out) = callback(
        VIA_DIALPLAN,
        1,
        CREDIT,
        answering("Ww1WW1230WW123"),
        Some("Local/{phone}@voicepay-callback"),
    )
    .await
    else {
        return;
    };
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    assert_eq!(out.prompts, PAID_BY_CREDIT, "{:#}", out.view);
}

#[tokio::test]
async fn carrier_caller_presses_2_to_cancel() {
    let Some(out) = callback(TRUNK, 1, DEBIT, answering("Ww2"), None).await else {
        return;
    };
    assert_final(&out.view, "failed", "caller_cancelled", &["answered"]);
}

#[tokio::test]
async fn carrier_wrong_pin_then_right_pin_in_one_call() {
    // The right PIN 8 s after the wrong one: after the bank's answer and
    // while "wrong PIN, N tries left, enter your PIN" plays.
    let Some(out) = callback(
        TRUNK,
        1,
        DEBIT,
        answering("Ww1WW111111WWWWWWWW805137"),
        None,
    )
    .await
    else {
        return;
    };
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    let details = out
        .app
        .event_details(out.view["id"].as_str().unwrap())
        .await;
    let wrong = details.iter().filter(|d| *d == "wrong secret").count();
    assert_eq!(wrong, 1, "one wrong PIN, then the right one: {details:?}");
}

#[tokio::test]
async fn carrier_no_answer_is_retried_then_fails() {
    // SIPp rings and never answers; each attempt ends at the 4 s ring timeout.
    let sipp = Sipp::uas("uas_no_answer.xml").calls(2);
    let Some(out) = callback(TRUNK, 2, DEBIT, sipp, None).await else {
        return;
    };
    assert_final(
        &out.view,
        "failed",
        "no_answer",
        &["no_answer", "no_answer"],
    );
}

#[tokio::test]
async fn carrier_busy_fails_the_order() {
    let Some(out) = callback(TRUNK, 1, DEBIT, Sipp::uas("uas_busy.xml"), None).await else {
        return;
    };
    assert_final(&out.view, "failed", "busy", &["busy"]);
}

#[tokio::test]
async fn carrier_caller_hangs_up_mid_pin() {
    // Half a PIN, then SIPp sends BYE (6 s after the answer).
    let keys = KeyPresses::parse("w1WW805").expect("keys");
    let sipp = Sipp::uas("uas_hangup.xml").keys(keys);
    let Some(out) = callback(TRUNK, 1, DEBIT, sipp, None).await else {
        return;
    };
    assert_final(&out.view, "failed", "caller_hung_up", &["answered"]);
}

#[tokio::test]
async fn carrier_early_media_before_the_answer_still_pays() {
    let keys = KeyPresses::parse("Ww1WW805137").expect("keys");
    let sipp = Sipp::uas("uas_early_media.xml").keys(keys);
    let Some(out) = callback(TRUNK, 1, DEBIT, sipp, Some("PJSIP/carrier-")).await else {
        return;
    };
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    // Nothing is played before the 200: the 183's early media is the carrier's.
    assert_eq!(out.prompts, PAID, "{:#}", out.view);
}

#[tokio::test]
async fn carrier_inbound_call_to_the_access_number_pays() {
    let Some(c) = carrier_turn().await else {
        return;
    };
    // The access number's dialplan runs Stasis(${VOICEPAY_APP}) with the
    // global app name, so this daemon takes that name (carrier tests take
    // turns, and no other test registers it).
    let app = lab_daemon(c.lab.voicepay_app(), |s| {
        s.ivr.first_digit_timeout_secs = 3;
        s.ivr.inter_digit_timeout_secs = 3;
    })
    .await;
    wait_ari_connected(&app).await;
    let phone = phone();
    let created = order(&app, &phone, DEBIT, "inbound").await;
    let id = created["id"].as_str().expect("id");
    let code = created["order_code"].as_str().expect("order_code");
    let recorder = PromptRecorder::start(&c.lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    // The order code during "key your order code" (8 digits end it), the 1
    // during the welcome, then the PIN; the network's form of the number
    // (+86) in From and P-Asserted-Identity.
    let keys = KeyPresses::parse(&format!("WW{code}WWW1WW805137")).expect("keys");
    let run = Sipp::uac("uac_inbound.xml", "95516")
        .set("caller", &format!("+86{phone}"))
        .keys(keys)
        .spawn()
        .expect("sipp");
    let (v, prompts) = call_outcome(run, &app, id, recorder).await;
    assert_final(&v, "succeeded", "approved", &["answered"]);
    let mut expected = vec!["voicepay/key-order-code"];
    expected.extend(PAID);
    assert_eq!(prompts, expected, "{v:#}");
}

/// Issue #12, fault 1: a relay re-stamps the end packets of the PIN's `8`,
/// and Asterisk reports it twice; the cardholder pressed 805137 once and
/// must pay, with no wrong PIN counted against the card. Fails without
/// `ivr.dtmf_repeat_guard_ms` (the daemon then submits 880513).
#[tokio::test]
async fn carrier_relay_restamped_key_press_counts_once() {
    let keys = KeyPresses::parse("Ww1WW805137")
        .expect("keys")
        .restamped_ends_of('8');
    let sipp = Sipp::uas("uas_answer.xml").keys(keys);
    let Some(out) = callback(TRUNK, 1, DEBIT, sipp, Some("PJSIP/carrier-")).await else {
        return;
    };
    let details = out
        .app
        .event_details(out.view["id"].as_str().unwrap())
        .await;
    assert!(
        !details.iter().any(|d| d == "wrong secret"),
        "a repeated end packet cost the card a PIN try: {details:?}"
    );
    assert_final(&out.view, "succeeded", "approved", &["answered"]);
    assert_eq!(out.prompts, PAID, "{:#}", out.view);
}
