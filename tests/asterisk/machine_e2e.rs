//! Fault 5 on the real Asterisk 22: a callback answered by a machine. SIPp,
//! as the carrier on 127.0.0.3:5060 (`PJSIP/{phone}@carrier`), answers and
//! plays seven seconds of speech-like audio (`g711a.pcap`: talk from 0.9 s
//! to the end, pauses under half a second) and keys nothing, on every
//! attempt (`tests/sipp/uas_speech.xml`). Asterisk's TALK_DETECT reports
//! the talk; the daemon hangs up without playing anything, records each
//! attempt `not_reached`, retries, and fails the order `no_answer`.
//!
//! Needs `scripts/asterisk up` (func_talkdetect loaded) and `sipp`; skips
//! without them, fails under `CI=true`.

use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::sipp::{self, PromptRecorder, Sipp};
use voicepay_testkit::{order_body, spawn_app_with, Db};

#[tokio::test]
async fn a_machine_answering_every_attempt_is_not_reached_and_fails_no_answer() {
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
        s.ari.app = lab::unique("vp-machine");
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 2;
        s.telephony.retry_interval_secs = 1;
        // The defaults but a shorter machine time: the recording talks for
        // six seconds, the default 5000 ms would leave little margin.
        s.telephony.machine_detection.machine_talk_ms = 3000;
    })
    .await
    .expect("sqlite app");
    let recorder = PromptRecorder::start(&lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    let run = Sipp::uas("uas_speech.xml").calls(2).spawn().expect("sipp");
    let mut body = order_body(&format!("m{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = format!("1380015{:04}", rand::random::<u16>() % 10_000).into();
    body["card_number"] = "6222000000000017".into();
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();

    let sipp = run.finish(Duration::from_secs(90)).await;
    let view = app.final_view(&id, Duration::from_secs(30)).await;
    let prompts = recorder
        .prompts(Duration::from_secs(10))
        .await
        .expect("prompts");
    sipp.assert_ok();
    assert_eq!(view["status"], "failed", "{view:#}");
    assert_eq!(view["result"]["code"], "no_answer", "{view:#}");
    let attempts = view["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{view:#}");
    for a in attempts {
        assert_eq!(a["outcome"], "not_reached", "{view:#}");
        assert!(!a["answered_at"].is_null(), "{view:#}");
    }
    // The machine heard nothing: no welcome, no order, no PIN prompt.
    assert_eq!(prompts, Vec::<String>::new(), "{view:#}");
}
