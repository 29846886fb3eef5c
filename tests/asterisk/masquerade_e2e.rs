//! Issue #12, fault 3, on the real Asterisk 22: a cardholder's call moved
//! into voicepay's app by a real attended transfer from a second SIP leg.
//!
//! Inbound: leg 1 (SIPp, `tests/sipp/transfer_leg1.xml`) calls the access number
//! from the carrier's address and keys the order code, so the inbound flow
//! claims the order on leg 1's channel and starts the IVR; leg 2
//! (a second SIPp on the carrier's address, `transfer_replaces.xml`) sends
//! INVITE with `Replaces:` naming leg 1's dialog (RFC 3891), as a phone or
//! PBX completing an attended transfer does. Asterisk's res_pjsip
//! masquerades leg 2's channel into leg 1's place in Stasis: voicepay gets
//! `StasisStart` for the new channel with empty args and `replace_channel`,
//! then leg 1's `StasisEnd`. Leg 2 then keys the confirmation and the
//! PIN, and the order must pay on the new channel, with its attempt row
//! moved there. Callback: leg 1 (`transfer_callback_leg1.xml`) answers
//! voicepay's callback over `PJSIP/{phone}@carrier`, and leg 2 replaces
//! that dialog the same way.
//!
//! Needs `scripts/asterisk up` and `sipp`; skips without them, fails under
//! `CI=true`. Holds the carrier turn ([`sipp::carrier`]) for both legs.

use super::common::{
    attempt_outcomes, carrier_turn, lab_daemon, phone_in, wait_ari_connected, CarrierTurn, DEBIT,
    PAID,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use voicepay_testkit::sipp::{KeyPresses, PromptRecorder, Running, Sipp};
use voicepay_testkit::TestApp;

/// Leg 2's SIP and RTP ports on the carrier's address (leg 1 has 5060
/// and RTP 16000-16003: SIPp also binds the video port, media + 2).
const LEG2_PORTS: (u16, u16) = (5062, 16010);

/// The file's content once it exists (leg 1 writes it whole), or None
/// after `within`.
async fn written(path: &std::path::Path, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What every test here needs, or None when it skips.
struct Rig {
    app: TestApp,
    turn: CarrierTurn,
}

/// The lab, the carrier's turn, and a daemon connected to ARI under the
/// app name the access number runs (`Stasis(${VOICEPAY_APP})`), calling
/// back through the carrier trunk.
async fn rig() -> Option<Rig> {
    let turn = carrier_turn().await?;
    let app = lab_daemon(turn.lab.voicepay_app(), |s| {
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 10;
        s.telephony.max_attempts = 1;
        s.ivr.first_digit_timeout_secs = 5;
        s.ivr.inter_digit_timeout_secs = 5;
    })
    .await;
    wait_ari_connected(&app).await;
    Some(Rig { app, turn })
}

/// A debit order of `mode` for a fresh phone number: (phone, API view).
async fn order(app: &TestApp, mode: &str) -> (String, Value) {
    let phone = phone_in("1380015");
    let v = super::common::order(app, &phone, DEBIT, mode).await;
    (phone, v)
}

/// Leg 1's dialog as leg 1 wrote it to `file`: (Call-ID, to-tag, from-tag)
/// for a Replaces header. Fails with leg 1's SIPp log when it never does.
async fn dialog_of(leg1: Running, file: &Path) -> (Running, [String; 3]) {
    let Some(text) = written(file, Duration::from_secs(30)).await else {
        let log = leg1.finish(Duration::from_secs(1)).await;
        panic!("leg 1 was never answered:\n{}", log.log);
    };
    let ids: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let Ok(ids) = <[String; 3]>::try_from(ids) else {
        panic!("leg 1 wrote {text:?}")
    };
    (leg1, ids)
}

/// Leg 2: replaces the dialog `ids` from the carrier's address, then keys
/// `keys` on the new channel.
fn replace(ids: &[String; 3], caller: &str, keys: &str) -> Running {
    let [cid, totag, fromtag] = ids;
    Sipp::uac("transfer_replaces.xml", "95516")
        .ports(LEG2_PORTS.0, LEG2_PORTS.1)
        .set("caller", caller)
        .set("cid", cid)
        .set("totag", totag)
        .set("fromtag", fromtag)
        .keys(KeyPresses::parse(keys).expect("keys"))
        .spawn()
        .expect("sipp leg 2")
}

/// After both legs: the order paid on the new channel, its one attempt
/// row moved there (what the order's events say Asterisk moved), and the
/// caller heard `want`.
async fn assert_paid_on_the_new_channel(
    app: &TestApp,
    id: &str,
    recorder: PromptRecorder,
    want: &[&str],
) {
    let v = app.final_view(id, Duration::from_secs(30)).await;
    let prompts = recorder
        .prompts(Duration::from_secs(10))
        .await
        .expect("prompts");
    let details = app.event_details(id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}\n{details:#?}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    assert_eq!(attempt_outcomes(&v), ["answered"], "{v:#}");
    let moved: Vec<&String> = details
        .iter()
        .filter(|d| d.starts_with("call moved from channel "))
        .collect();
    assert_eq!(moved.len(), 1, "no masquerade seen: {details:#?}");
    let new_channel = moved[0]
        .trim_start_matches("call moved from channel ")
        .split(' ')
        .nth(2)
        .unwrap()
        .to_owned();
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT channel_id FROM call_attempts WHERE order_id = $1")
            .bind(id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, [new_channel]);
    assert_eq!(prompts, want, "{v:#}");
}

#[tokio::test]
async fn carrier_call_moved_by_an_attended_transfer_pays_on_the_new_channel() {
    let Some(rig) = rig().await else { return };
    let app = &rig.app;
    let (phone, created) = order(app, "inbound").await;
    let id = created["id"].as_str().expect("id");
    let code = created["order_code"].as_str().expect("order_code");
    let recorder = PromptRecorder::start(&rig.turn.lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    // Leg 1: the cardholder's call, answered by voicepay, keys the order
    // code: the order is claimed on leg 1's channel.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leg1.dialog");
    let caller = format!("+86{phone}");
    let leg1 = Sipp::uac("transfer_leg1.xml", "95516")
        .set("caller", &caller)
        .set("dialog_file", &file.display().to_string())
        .keys(KeyPresses::parse(&format!("WW{code}")).expect("keys"))
        .spawn()
        .expect("sipp leg 1");
    let (leg1, ids) = dialog_of(leg1, &file).await;
    app.order_until(id, |v| v["status"] == "in_call").await;
    // Leg 2 replaces leg 1 and keys the confirmation and the PIN.
    let leg2 = replace(&ids, &caller, "WW1WW805137");
    leg2.finish(Duration::from_secs(90)).await.assert_ok();
    leg1.finish(Duration::from_secs(10)).await.assert_ok();
    let mut want = vec!["voicepay/key-order-code"];
    want.extend(PAID);
    assert_paid_on_the_new_channel(app, id, recorder, &want).await;
}

#[tokio::test]
async fn carrier_callback_moved_by_an_attended_transfer_pays_on_the_new_channel() {
    let Some(rig) = rig().await else { return };
    let app = &rig.app;
    let recorder = PromptRecorder::start(&rig.turn.lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    // Leg 1 answers the callback and keys nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leg1.dialog");
    let leg1 = Sipp::uas("transfer_callback_leg1.xml")
        .set("dialog_file", &file.display().to_string())
        .spawn()
        .expect("sipp leg 1");
    let (phone, created) = order(app, "callback").await;
    let id = created["id"].as_str().expect("id");
    let (leg1, ids) = dialog_of(leg1, &file).await;
    app.order_until(id, |v| v["status"] == "in_call").await;
    // Leg 2 replaces the answered callback and keys the confirmation and
    // the PIN.
    let leg2 = replace(&ids, &format!("+86{phone}"), "WW1WW805137");
    leg2.finish(Duration::from_secs(90)).await.assert_ok();
    leg1.finish(Duration::from_secs(10)).await.assert_ok();
    assert_paid_on_the_new_channel(app, id, recorder, &PAID).await;
}
