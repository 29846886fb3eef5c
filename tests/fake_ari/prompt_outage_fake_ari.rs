//! A prompt that ends while the events socket is down (issue #12, fault 7),
//! against the scripted fake ARI server: its `PlaybackFinished` is lost
//! with the socket, so on reconnection the call asks Asterisk for its
//! playbacks (`GET /playbacks/{id}`), takes the one that is gone (404) as
//! finished, and the digit timer that follows the prompt runs: a silent
//! caller's call ends `input_timeout` after `ivr.first_digit_timeout_secs`,
//! not after `ivr.max_call_secs`.

use super::common::{daemon_on, finished, hung_up, new_order, originate_of, plays, up};
use serde_json::json;
use std::time::Duration;
use voicepay_testkit::fake_ari::{event, request, FakeAri, Recorded};
use voicepay_testkit::TestApp;

async fn daemon(fake: &FakeAri) -> TestApp {
    daemon_on(fake, |s| {
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.max_attempts = 1;
        s.ivr.first_digit_timeout_secs = 1;
        s.ivr.attempts_per_step = 1;
        // No answering-machine screening: the welcome is the first
        // playback, started as soon as the call is answered.
        s.telephony.machine_detection.enabled = false;
        // The default: far longer than any wait of this test.
        s.ivr.max_call_secs = 180;
    })
    .await
}

/// A callback order whose call is answered; its channel outlives the
/// outage (reconciliation keeps the call): (id, channel).
async fn answered(app: &TestApp, fake: &FakeAri, reference: &str) -> (String, String) {
    let id = new_order(app, reference).await;
    let ch = format!("vp-{id}-1");
    request(fake, originate_of(ch.clone())).await;
    fake.set_channels(vec![up(&ch)]);
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&ch)}),
    ));
    (id, ch)
}

fn asks_for(playback_id: String) -> impl Fn(&Recorded) -> bool {
    move |r| {
        r.method == "GET" && r.path.replace("%3A", ":") == format!("/ari/playbacks/{playback_id}")
    }
}

#[tokio::test]
async fn a_prompt_that_ended_during_an_outage_arms_the_digit_timer() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, ch) = answered(&app, &fake, "PO1").await;
    let welcome = format!("{ch}:1");
    request(&fake, |r| {
        r.method == "POST"
            && r.path.replace("%3A", ":") == format!("/ari/channels/{ch}/play/{welcome}")
    })
    .await;
    app.order_until(&id, |v| v["status"] == "in_call").await;

    // The socket drops while the welcome plays; the prompt plays out
    // meanwhile, and its PlaybackFinished goes out to nobody.
    fake.drop_socket();
    fake.playback_done(&welcome);
    fake.wait_connections(2, Duration::from_secs(15)).await;
    request(&fake, asks_for(welcome.clone())).await;

    // The caller keys nothing: the first-digit timer runs out and the call
    // ends input_timeout (one try per step).
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "input_timeout", "{v:#}");
    let p = plays(&fake, &ch);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(
        p[0].1.first().map(String::as_str),
        Some("sound:voicepay/welcome"),
        "{p:#?}"
    );
    assert_eq!(
        p[1].1,
        [
            "sound:voicepay/fail-input_timeout",
            "sound:voicepay/goodbye"
        ],
        "{p:#?}"
    );
    // The closing prompt ends (the socket is up): the call is hung up.
    finished(&fake, &ch, &p[1].0);
    hung_up(&fake, &ch).await;
}

#[tokio::test]
async fn a_prompt_still_playing_after_an_outage_is_left_to_its_end() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, ch) = answered(&app, &fake, "PO2").await;
    let welcome = format!("{ch}:1");
    app.order_until(&id, |v| v["status"] == "in_call").await;
    // An outage while the welcome plays; it still plays after it.
    fake.drop_socket();
    fake.wait_connections(2, Duration::from_secs(15)).await;
    request(&fake, asks_for(welcome.clone())).await;
    // Longer than the first-digit timeout: the timer must not have run,
    // the IVR still waits for the prompt's end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "in_call", "{v:#}");
    assert_eq!(plays(&fake, &ch).len(), 1);
    // Its end comes on the new socket: then the timer runs.
    finished(&fake, &ch, &welcome);
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "input_timeout", "{v:#}");
    assert_eq!(plays(&fake, &ch).len(), 2);
}
