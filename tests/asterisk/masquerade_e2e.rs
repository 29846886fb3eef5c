//! Issue #12, fault 3, on the real Asterisk 22: a cardholder's call moved
//! into voicepay's app by a real attended transfer from a second SIP leg.
//!
//! Leg 1 (SIPp, `tests/sipp/transfer_leg1.xml`) calls the access number
//! from the carrier's address and keys the order code, so the inbound flow
//! claims the order on leg 1's channel and starts the IVR; leg 2
//! (a second SIPp on the carrier's address, `transfer_replaces.xml`) sends
//! INVITE with `Replaces:` naming leg 1's dialog (RFC 3891), as a phone or
//! PBX completing an attended transfer does. Asterisk's res_pjsip
//! masquerades leg 2's channel into leg 1's place in Stasis: voicepay gets
//! `StasisStart` for the new channel with empty args and `replace_channel`,
//! then leg 1's `StasisEnd`. Leg 2 then keys the confirmation and the
//! PIN, and the order must pay on the new channel, with its attempt row
//! moved there.
//!
//! Needs `scripts/asterisk up` and `sipp`; skips without them, fails under
//! `CI=true`. Holds the carrier turn ([`sipp::carrier`]) for both legs.

use serde_json::Value;
use std::time::Duration;
use voicepay_testkit::lab::{self};
use voicepay_testkit::sipp::{self, KeyPresses, PromptRecorder, Sipp};
use voicepay_testkit::{order_body, spawn_app_with, Db};

/// The debit test card (BIN 622200): PIN 805137 (src/bank/test_cards.toml).
const DEBIT: &str = "6222000000000017";
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

#[tokio::test]
async fn carrier_call_moved_by_an_attended_transfer_pays_on_the_new_channel() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    if sipp::require_sipp().is_none() {
        return;
    }
    let _log = lab::log_window().await;
    let _turn = sipp::carrier().await;
    // The access number runs Stasis(${VOICEPAY_APP}): this daemon takes
    // that name (carrier tests take turns).
    let app_name = lab.voicepay_app().to_string();
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.app = app_name;
        s.ivr.first_digit_timeout_secs = 5;
        s.ivr.inter_digit_timeout_secs = 5;
    })
    .await
    .expect("sqlite app");
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
    let phone = format!("1380015{:04}", rand::random::<u16>() % 10_000);
    let mut body = order_body(&format!("x{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = Value::from(phone.as_str());
    body["card_number"] = Value::from(DEBIT);
    body["mode"] = Value::from("inbound");
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().expect("id").to_owned();
    let code = created["order_code"].as_str().expect("order_code");
    let recorder = PromptRecorder::start(&lab, "PJSIP/carrier-")
        .await
        .expect("recorder");

    // Leg 1: the cardholder's call, answered by voicepay (the inbound
    // flow answers it from Stasis, so its 200 OK means it is in the app).
    let dir = tempfile::tempdir().unwrap();
    let dialog_file = dir.path().join("leg1.dialog");
    let caller = format!("+86{phone}");
    let leg1 = Sipp::uac("transfer_leg1.xml", "95516")
        .set("caller", &caller)
        .set("dialog_file", &dialog_file.display().to_string())
        .keys(KeyPresses::parse(&format!("WW{code}")).expect("keys"))
        .spawn()
        .expect("sipp leg 1");
    let Some(dialog) = written(&dialog_file, Duration::from_secs(20)).await else {
        let log = leg1.finish(Duration::from_secs(1)).await;
        panic!("leg 1 was never answered:\n{}", log.log);
    };
    let ids: Vec<&str> = dialog.split_whitespace().collect();
    let [cid, totag, fromtag] = ids[..] else {
        panic!("leg 1 wrote {dialog:?}")
    };

    // The order code claimed the order on leg 1's channel.
    app.order_until(&id, |v| v["status"] == "in_call").await;
    // Leg 2 replaces leg 1, then keys the confirmation and the PIN on the
    // new channel.
    let keys = KeyPresses::parse("WW1WW805137").expect("keys");
    let leg2 = Sipp::uac("transfer_replaces.xml", "95516")
        .ports(LEG2_PORTS.0, LEG2_PORTS.1)
        .set("caller", &caller)
        .set("cid", cid)
        .set("totag", totag)
        .set("fromtag", fromtag)
        .keys(keys)
        .spawn()
        .expect("sipp leg 2");

    leg2.finish(Duration::from_secs(90)).await.assert_ok();
    leg1.finish(Duration::from_secs(10)).await.assert_ok();
    let v = app.final_view(&id, Duration::from_secs(30)).await;
    let prompts = recorder
        .prompts(Duration::from_secs(10))
        .await
        .expect("prompts");
    let details = app.event_details(&id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}\n{details:#?}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let outcomes: Vec<&str> = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(outcomes, ["answered"], "{v:#}");
    // The move happened (what Asterisk sent), and the attempt row names
    // the channel the call ended on.
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
            .bind(&id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, [new_channel]);
    assert_eq!(
        prompts,
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
}
