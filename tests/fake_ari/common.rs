//! What the fake ARI tests share: the daemon on a [`FakeAri`], orders,
//! the caller's side of a call (dialling in, keys, a prompt's end) and
//! what the daemon played, read from the `play` requests the fake saw.

use serde_json::{json, Value};
use std::time::Duration;
use voicepay::config::Settings;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, spawn_app_with, wait_for, Db, TestApp};

/// The caller number of the fake's inbound channels.
pub(super) const CALLER: &str = "13700000001";

/// The daemon (in-process, its own SQLite) connected to `fake`, with
/// `tweak` applied to its settings; returns once its events socket is up.
pub(super) async fn daemon_on(fake: &FakeAri, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let ari = fake.settings();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        tweak(s);
        s.ari = ari;
    })
    .await
    .expect("sqlite app");
    fake.wait_connections(1, Duration::from_secs(10)).await;
    app
}

/// A callback order (the default body); returns its id.
pub(super) async fn new_order(app: &TestApp, reference: &str) -> String {
    let res = app.create_order(&order_body(reference)).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// An inbound order for `phone` (as `+86…`): (id, order code).
pub(super) async fn inbound_order(app: &TestApp, reference: &str, phone: &str) -> (String, String) {
    let mut body = order_body(reference);
    body["mode"] = json!("inbound");
    body["phone"] = json!(format!("+86{phone}"));
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let code = v["order_code"].as_str().expect("order_code").to_owned();
    (v["id"].as_str().unwrap().to_owned(), code)
}

/// The originate of channel `channel_id`.
pub(super) fn originate_of(channel_id: String) -> impl Fn(&Recorded) -> bool {
    move |r| r.method == "POST" && r.path == format!("/ari/channels/{channel_id}")
}

/// `POST /channels/{ch}/variable` setting channel variable `name` to
/// `value`.
pub(super) fn is_var(ch: &str, name: &str, value: &str) -> impl Fn(&Recorded) -> bool {
    let path = format!("/ari/channels/{ch}/variable");
    let (name, value) = (name.to_owned(), value.to_owned());
    move |r| {
        r.method == "POST"
            && r.path == path
            && r.param("variable") == Some(name.as_str())
            && r.param("value") == Some(value.as_str())
    }
}

/// Channel `ch`, answered.
pub(super) fn up(ch: &str) -> Value {
    channel(ch, "Up")
}

/// `caller` dials the access number on channel `ch`.
pub(super) fn dial_in(fake: &FakeAri, ch: &str, caller: &str) {
    let mut chan = channel(ch, "Ring");
    chan["caller"]["number"] = json!(caller);
    fake.push(event(
        "StasisStart",
        json!({"args": ["inbound"], "channel": chan}),
    ));
}

/// The caller keys `digits` on `ch`.
pub(super) fn keys(fake: &FakeAri, ch: &str, digits: &str) {
    fake.press(&up(ch), digits);
}

/// The `PlaybackFinished` of playback `playback_id` on `ch`.
pub(super) fn playback_finished(ch: &str, playback_id: &str) -> Value {
    event(
        "PlaybackFinished",
        json!({"playback": {"id": playback_id, "media_uri": "sound:x",
               "target_uri": format!("channel:{ch}"), "language": "zh", "state": "done"}}),
    )
}

/// Playback `playback_id` on `ch` plays to its end.
pub(super) fn finished(fake: &FakeAri, ch: &str, playback_id: &str) {
    fake.push(playback_finished(ch, playback_id));
}

/// Waits for the daemon to hang `ch` up.
pub(super) async fn hung_up(fake: &FakeAri, ch: &str) {
    request(fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
}

/// The playbacks started on `ch`, in order: (playback id, media).
pub(super) fn plays(fake: &FakeAri, ch: &str) -> Vec<(String, Vec<String>)> {
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

/// Waits for the `n`th playback on `ch`; returns them all.
pub(super) async fn wait_plays(fake: &FakeAri, ch: &str, n: usize) -> Vec<(String, Vec<String>)> {
    wait_for(Duration::from_secs(15), async || {
        let p = plays(fake, ch);
        if p.len() >= n {
            Ok(p)
        } else {
            Err(format!("fewer than {n} playbacks on {ch}: {p:#?}"))
        }
    })
    .await
}

/// The media URIs of the sounds `voicepay/<name>`.
pub(super) fn media(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("sound:voicepay/{n}"))
        .collect()
}

/// The outcome of each of the order's call attempts, in order.
pub(super) fn attempt_outcomes(v: &Value) -> Vec<String> {
    v["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Waits until order `id` is past its call and the bank's answer;
/// returns its view.
pub(super) async fn settled(app: &TestApp, id: &str) -> Value {
    app.order_until(id, |v| {
        v["status"] != "in_call" && v["status"] != "authorizing"
    })
    .await
}

/// The `StasisStart` of the answered callback channel `ch` of order `id`.
pub(super) fn callback_start(ch: &str, id: &str) -> Value {
    event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(ch)}),
    )
}

/// The daemon places the callback of order `id` (its originate seen) and
/// the cardholder answers: Asterisk hands the channel to Stasis. Returns
/// the channel id, `vp-{id}-1`.
pub(super) async fn callback_answered(fake: &FakeAri, id: &str) -> String {
    let ch = format!("vp-{id}-1");
    request(fake, originate_of(ch.clone())).await;
    fake.push(callback_start(&ch, id));
    ch
}

/// `POST /v1/orders` with `body` on the daemon at `base` (`http://…`) as
/// the merchant whose API key is `key`; asserts 201 and returns the
/// order.
pub(super) async fn post_order(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
) -> Value {
    let res = http
        .post(format!("{base}/v1/orders"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

/// `GET /v1/orders/{id}` on the daemon at `base` as the merchant whose
/// API key is `key`.
pub(super) async fn get_order(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/orders/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
