//! A prompt that ends while the events socket is down (issue #12, fault 7),
//! against the scripted fake ARI server: its `PlaybackFinished` is lost
//! with the socket, so on reconnection the call asks Asterisk for its
//! playbacks (`GET /playbacks/{id}`), takes the one that is gone (404) as
//! finished, and the digit timer that follows the prompt runs: a silent
//! caller's call ends `input_timeout` after `ivr.first_digit_timeout_secs`,
//! not after `ivr.max_call_secs`.

use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, spawn_app_with, Db, TestApp};

async fn daemon(fake: &FakeAri) -> TestApp {
    let ari = fake.settings();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.ari = ari;
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
    .expect("sqlite app");
    fake.wait_connections(1, Duration::from_secs(10)).await;
    app
}

/// The playbacks started on `ch`, in order: (playback id, media).
fn plays(fake: &FakeAri, ch: &str) -> Vec<(String, Vec<String>)> {
    let prefix = format!("/ari/channels/{ch}/play/");
    fake.rest_calls()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&prefix))
        .map(|r| {
            let media = r
                .params("media")
                .iter()
                .flat_map(|m| m.split(','))
                .map(str::to_owned)
                .collect();
            (r.path[prefix.len()..].replace("%3A", ":"), media)
        })
        .collect()
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
    let res = app.create_order(&order_body("PO1")).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let ch = format!("vp-{id}-1");
    request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    // The channel outlives the outage: reconciliation keeps the call.
    fake.set_channels(vec![channel(&ch, "Up")]);
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": channel(&ch, "Up")}),
    ));
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
    fake.push(event(
        "PlaybackFinished",
        json!({"playback": {"id": p[1].0, "media_uri": "sound:voicepay/goodbye",
               "target_uri": format!("channel:{ch}"), "language": "zh", "state": "done"}}),
    ));
    request(&fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
}

#[tokio::test]
async fn a_prompt_still_playing_after_an_outage_is_left_to_its_end() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let res = app.create_order(&order_body("PO2")).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let ch = format!("vp-{id}-1");
    request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    fake.set_channels(vec![channel(&ch, "Up")]);
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": channel(&ch, "Up")}),
    ));
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
    fake.push(event(
        "PlaybackFinished",
        json!({"playback": {"id": welcome, "media_uri": "sound:voicepay/welcome",
               "target_uri": format!("channel:{ch}"), "language": "zh", "state": "done"}}),
    ));
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "input_timeout", "{v:#}");
    assert_eq!(plays(&fake, &ch).len(), 2);
}
