//! Fault 5 against the fake ARI: a callback answered by a machine
//! (continuous talk from the answer, no key pressed) is not reached, hears
//! nothing, and is retried until the order fails `no_answer`; a person who
//! says "hello" and keys pays; with detection off the call is as before.

use super::common::{daemon_on, keys as key, new_order, originate_of, plays, up};
use serde_json::{json, Value};
use voicepay_testkit::fake_ari::{event, request, FakeAri, Recorded};
use voicepay_testkit::TestApp;

async fn daemon(
    fake: &FakeAri,
    max_attempts: u32,
    tweak: impl FnOnce(&mut voicepay::config::MachineDetectionSettings) + Send + 'static,
) -> TestApp {
    daemon_on(fake, |s| {
        s.telephony.callback_endpoint = "PJSIP/{phone}@carrier".into();
        s.telephony.ring_timeout_secs = 5;
        s.telephony.max_attempts = max_attempts;
        s.telephony.retry_interval_secs = 1;
        let m = &mut s.telephony.machine_detection;
        m.answer_window_ms = 2000;
        m.machine_talk_ms = 1500;
        m.silence_ms = 800;
        tweak(m);
    })
    .await
}

/// Waits for the originate of `ch`, then answers it (StasisStart).
async fn answer(fake: &FakeAri, id: &str, ch: &str) {
    request(fake, originate_of(ch.to_owned())).await;
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(ch)}),
    ));
}

fn talk_detect_requests(fake: &FakeAri, ch: &str) -> Vec<Recorded> {
    let path = format!("/ari/channels/{ch}/variable");
    fake.rest_calls()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .filter(|r| r.param("variable") == Some("TALK_DETECT(set)"))
        .collect()
}

/// The media of every playback started on `ch`, in order.
fn played(fake: &FakeAri, ch: &str) -> Vec<String> {
    plays(fake, ch).into_iter().flat_map(|(_, m)| m).collect()
}

#[tokio::test]
async fn a_machine_is_not_reached_retried_and_fails_no_answer_without_hearing_a_prompt() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 2, |_| {}).await;
    let id = new_order(&app, "AMD1").await;
    for attempt in 1..=2 {
        let ch = format!("vp-{id}-{attempt}");
        answer(&fake, &id, &ch).await;
        // The greeting starts at once and goes on; nobody keys.
        fake.push(event("ChannelTalkingStarted", json!({"channel": up(&ch)})));
        let gone = format!("/ari/channels/{ch}");
        request(&fake, |r| r.method == "DELETE" && r.path == gone).await;
        let set = talk_detect_requests(&fake, &ch);
        assert_eq!(set.len(), 1, "TALK_DETECT set once on {ch}");
        assert_eq!(set[0].param("value"), Some("800,256"));
        // The voicemail heard nothing: no welcome, no order, no PIN prompt.
        assert_eq!(played(&fake, &ch), Vec::<String>::new());
        fake.push(event(
            "ChannelHangupRequest",
            json!({"cause": 16, "channel": up(&ch)}),
        ));
        fake.push(event("StasisEnd", json!({"channel": up(&ch)})));
        fake.push(event(
            "ChannelDestroyed",
            json!({"cause": 16, "channel": up(&ch)}),
        ));
        let v = app
            .order_until(&id, |v| {
                v["attempts"][attempt - 1]["outcome"] == "not_reached"
            })
            .await;
        assert!(!v["attempts"][attempt - 1]["answered_at"].is_null());
    }
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "no_answer");
    let outcomes: Vec<&Value> = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("not_reached"), &json!("not_reached")]);
    // Never a third call.
    assert!(fake
        .rest_calls()
        .iter()
        .all(|r| !r.path.contains(&format!("vp-{id}-3"))));
}

#[tokio::test]
async fn a_long_greeting_reported_in_one_event_is_a_machine_too() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1, |m| m.machine_talk_ms = 10_000).await;
    let id = new_order(&app, "AMD2").await;
    let ch = format!("vp-{id}-1");
    answer(&fake, &id, &ch).await;
    fake.push(event("ChannelTalkingStarted", json!({"channel": up(&ch)})));
    fake.push(event(
        "ChannelTalkingFinished",
        json!({"duration": 12_000, "channel": up(&ch)}),
    ));
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "no_answer");
    assert_eq!(v["attempts"][0]["outcome"], "not_reached");
    assert_eq!(played(&fake, &ch), Vec::<String>::new());
}

#[tokio::test]
async fn a_person_who_says_hello_then_keys_pays() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1, |_| {}).await;
    let id = new_order(&app, "AMD3").await;
    let ch = format!("vp-{id}-1");
    answer(&fake, &id, &ch).await;
    fake.push(event("ChannelTalkingStarted", json!({"channel": up(&ch)})));
    fake.push(event(
        "ChannelTalkingFinished",
        json!({"duration": 600, "channel": up(&ch)}),
    ));
    let first = format!("/ari/channels/{ch}/play/{ch}:1");
    request(&fake, |r| r.method == "POST" && r.path == first).await;
    key(&fake, &ch, "1805137");
    let v = app.order_until(&id, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved");
    let heard = played(&fake, &ch);
    assert_eq!(
        heard.first().map(String::as_str),
        Some("sound:voicepay/welcome")
    );
    assert!(
        heard.contains(&"sound:voicepay/enter-pin".to_owned()),
        "{heard:?}"
    );
    fake.push(event("StasisEnd", json!({"channel": up(&ch)})));
    let v = app
        .order_until(&id, |v| !v["attempts"][0]["ended_at"].is_null())
        .await;
    assert_eq!(v["attempts"][0]["outcome"], "answered");
}

#[tokio::test]
async fn with_detection_off_the_call_is_not_screened() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, 1, |m| m.enabled = false).await;
    let id = new_order(&app, "AMD4").await;
    let ch = format!("vp-{id}-1");
    answer(&fake, &id, &ch).await;
    // The welcome plays at once, whatever the line does.
    let first = format!("/ari/channels/{ch}/play/{ch}:1");
    request(&fake, |r| r.method == "POST" && r.path == first).await;
    fake.push(event("ChannelTalkingStarted", json!({"channel": up(&ch)})));
    fake.push(event(
        "ChannelTalkingFinished",
        json!({"duration": 60_000, "channel": up(&ch)}),
    ));
    key(&fake, &ch, "1805137");
    let v = app.order_until(&id, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved");
    assert!(talk_detect_requests(&fake, &ch).is_empty());
}

#[tokio::test]
async fn an_announcement_that_hangs_up_while_talking_is_not_reached() {
    let fake = FakeAri::start().await;
    // A long machine time: the line hangs up before it passes.
    let app = daemon(&fake, 1, |m| m.machine_talk_ms = 30_000).await;
    let id = new_order(&app, "AMD5").await;
    let ch = format!("vp-{id}-1");
    answer(&fake, &id, &ch).await;
    // "The number you have dialled is not available", then the network
    // clears the call.
    fake.push(event("ChannelTalkingStarted", json!({"channel": up(&ch)})));
    fake.push(event(
        "ChannelHangupRequest",
        json!({"cause": 16, "channel": up(&ch)}),
    ));
    fake.push(event("StasisEnd", json!({"channel": up(&ch)})));
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "no_answer", "{v:#}");
    assert_eq!(v["attempts"][0]["outcome"], "not_reached");
    assert_eq!(played(&fake, &ch), Vec::<String>::new());
}
