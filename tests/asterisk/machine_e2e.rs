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

use super::common::{carrier_turn, lab_daemon, order, phone_in};
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::sipp::{PromptRecorder, Sipp};

#[tokio::test]
async fn a_machine_answering_every_attempt_is_not_reached_and_fails_no_answer() {
    let Some(c) = carrier_turn().await else {
        return;
    };
    let app = lab_daemon(lab::unique("vp-machine"), |s| {
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 2;
        s.telephony.retry_interval_secs = 1;
        // The defaults but a shorter machine time: the recording talks for
        // six seconds, the default 5000 ms would leave little margin.
        s.telephony.machine_detection.machine_talk_ms = 3000;
    })
    .await;
    let recorder = PromptRecorder::start(&c.lab, "PJSIP/carrier-")
        .await
        .expect("recorder");
    let run = Sipp::uas("uas_speech.xml").calls(2).spawn().expect("sipp");
    let phone = phone_in("1380015");
    let created = order(&app, &phone, "6222000000000017", "callback").await;
    let id = created["id"].as_str().expect("id").to_owned();

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
