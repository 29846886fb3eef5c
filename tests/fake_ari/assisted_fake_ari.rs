//! The assisted flow (issue #16) against the scripted fake ARI server: the
//! cardholder's and the agent's channels in one bridge; on capture the
//! cardholder's channel re-added with `absorbDTMF` and `mute`, its incoming
//! audio muted, every prompt played to it alone, and afterwards both back
//! unmuted; the order's result; the hand-backs when either party hangs up.

use super::common::{daemon_on, finished, is_var, keys, up};
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{event, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, wait_for, TestApp};

/// The right PIN of the default test card, and a wrong one.
const PIN: &str = "805137";
const WRONG: &str = "123456";

struct Call {
    id: String,
    code: String,
    holder: String,
    agent: String,
}

impl Call {
    fn bridge(&self) -> String {
        format!("/ari/bridges/vp-assisted-{}", self.id)
    }
}

async fn daemon(fake: &FakeAri) -> TestApp {
    daemon_on(fake, |s| s.http.events_poll_ms = 20).await
}

/// An assisted order with both parties in its bridge.
async fn both_in(app: &TestApp, fake: &FakeAri, n: u32) -> Call {
    let mut body = order_body(&format!("AS{n}"));
    body["mode"] = json!("assisted");
    let v: Value = app.create_order(&body).await.json().await.unwrap();
    let call = Call {
        id: v["id"].as_str().unwrap().to_owned(),
        code: v["transfer_code"].as_str().unwrap().to_owned(),
        holder: format!("vp-holder-{n}"),
        agent: format!("vp-agent-{n}"),
    };
    for (ch, party) in [(&call.agent, "agent"), (&call.holder, "cardholder")] {
        fake.push(event(
            "StasisStart",
            json!({"args": ["assisted", call.code, party], "channel": up(ch)}),
        ));
        request(fake, added(&call, ch, false)).await;
    }
    app.order_until(&call.id, |v| v["status"] == "in_call")
        .await;
    call
}

/// `addChannel` of `ch` to the call's bridge, with (`hidden`) or without
/// `absorbDTMF` and `mute`.
fn added(call: &Call, ch: &str, hidden: bool) -> impl Fn(&Recorded) -> bool {
    let path = format!("{}/addChannel", call.bridge());
    let (ch, flag) = (ch.to_owned(), if hidden { "true" } else { "false" });
    move |r| {
        r.method == "POST"
            && r.path == path
            && r.param("channel") == Some(ch.as_str())
            && r.param("absorbDTMF") == Some(flag)
            && r.param("mute") == Some(flag)
    }
}

/// `POST` (mute) or `DELETE` (unmute) `/channels/{ch}/mute?direction=in`.
fn muted(ch: &str, on: bool) -> impl Fn(&Recorded) -> bool {
    let path = format!("/ari/channels/{ch}/mute");
    let method = if on { "POST" } else { "DELETE" };
    move |r| r.method == method && r.path == path && r.param("direction") == Some("in")
}

fn is_continue(ch: &str, party: &str) -> impl Fn(&Recorded) -> bool {
    let path = format!("/ari/channels/{ch}/continue");
    let party = party.to_owned();
    move |r| {
        r.method == "POST"
            && r.path == path
            && r.param("context") == Some("voicepay-assisted-return")
            && r.param("extension") == Some(party.as_str())
    }
}

/// The index of the first request matching `what`.
fn position(fake: &FakeAri, what: impl Fn(&Recorded) -> bool) -> usize {
    fake.rest_calls()
        .iter()
        .position(what)
        .expect("the request was sent")
}

/// A fake ARI, the daemon on it, and assisted order `n` with both parties
/// in its bridge.
async fn started(n: u32) -> (FakeAri, TestApp, Call) {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let call = both_in(&app, &fake, n).await;
    (fake, app, call)
}

/// As [`started`], then a capture begun and the cardholder hidden.
async fn capturing(n: u32) -> (FakeAri, TestApp, Call) {
    let (fake, app, call) = started(n).await;
    capture(&app, &call, "capture").await;
    hidden(&fake, &call).await;
    (fake, app, call)
}

/// The status of `POST /v1/orders/{id}/{what}` (`capture` or
/// `capture/cancel`).
async fn capture_status(app: &TestApp, call: &Call, what: &str) -> reqwest::StatusCode {
    app.http
        .post(app.url(&format!("/v1/orders/{}/{what}", call.id)))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .status()
}

async fn capture(app: &TestApp, call: &Call, what: &str) {
    assert_eq!(capture_status(app, call, what).await, 202, "{what}");
}

/// Waits until a new capture is accepted (202): the previous one is closed.
async fn capture_again(app: &TestApp, call: &Call) {
    wait_for(Duration::from_secs(15), async || {
        (capture_status(app, call, "capture").await == 202)
            .then_some(())
            .ok_or("capture not accepted again")
    })
    .await;
}

/// Channel `ch` leaves the application (`StasisEnd`).
fn leaves(fake: &FakeAri, ch: &str) {
    fake.push(event("StasisEnd", json!({"channel": up(ch)})));
}

/// The order succeeds and its closing prompt to the cardholder plays out.
async fn paid(app: &TestApp, fake: &FakeAri, call: &Call) {
    app.order_until(&call.id, |v| v["status"] == "succeeded")
        .await;
    let closing = nth_play(fake, &call.holder, "sound:voicepay/success", 1).await;
    finished(fake, &call.holder, &closing);
}

/// `ch` is sent back to the dialplan as `party` with `VOICEPAY_RESULT` and
/// `VOICEPAY_CODE` set.
async fn sent_back(fake: &FakeAri, ch: &str, party: &str, result: &str, code: &str) {
    request(fake, is_var(ch, "VOICEPAY_RESULT", result)).await;
    request(fake, is_var(ch, "VOICEPAY_CODE", code)).await;
    request(fake, is_continue(ch, party)).await;
}

/// The cardholder keys `1` and a wrong PIN, and is told it is wrong.
async fn wrong_pin(fake: &FakeAri, call: &Call) {
    keys(fake, &call.holder, &format!("1{WRONG}"));
    nth_play(fake, &call.holder, "sound:voicepay/fail-wrong_secret", 1).await;
}

/// How often the cardholder was re-added hidden (once a capture).
fn hides(fake: &FakeAri, call: &Call) -> usize {
    fake.rest_calls()
        .iter()
        .filter(|r| added(call, &call.holder, true)(r))
        .count()
}

/// The capture begins: the cardholder re-added hidden and muted.
async fn hidden(fake: &FakeAri, call: &Call) {
    request(fake, added(call, &call.holder, true)).await;
    request(fake, muted(&call.holder, true)).await;
}

/// The playback id of the `n`-th play (from 1) on `ch` whose media
/// includes `sound`.
async fn nth_play(fake: &FakeAri, ch: &str, sound: &str, n: usize) -> String {
    let prefix = format!("/ari/channels/{ch}/play/");
    let sound = sound.to_owned();
    wait_for(Duration::from_secs(15), async || {
        let hits: Vec<String> = fake
            .rest_calls()
            .iter()
            .filter(|r| {
                r.path.starts_with(&prefix)
                    && r.params("media")
                        .iter()
                        .any(|m| m.split(',').any(|x| x == sound))
            })
            .map(|r| r.path[prefix.len()..].replace("%3A", ":"))
            .collect();
        hits.get(n - 1).cloned().ok_or("not played yet")
    })
    .await
}

/// The capture's progress rows, oldest first (JSON).
async fn progress(app: &TestApp, id: &str) -> Vec<Value> {
    sqlx::query_scalar::<_, String>(
        "SELECT detail FROM order_events WHERE order_id = $1 AND kind = 'capture' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .iter()
    .map(|d| serde_json::from_str(d).unwrap())
    .collect()
}

/// What every assisted test checks at its end: every prompt went to the
/// cardholder's channel (none to the agent's, none to the bridge), no
/// request and no progress row carries a digit keyed or the code, and the
/// agent's channel was never muted or re-added hidden.
async fn nothing_leaked(app: &TestApp, fake: &FakeAri, call: &Call) {
    let calls = fake.rest_calls();
    let plays: Vec<&Recorded> = calls
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/play/"))
        .collect();
    assert!(!plays.is_empty());
    for r in &plays {
        assert!(
            r.path
                .starts_with(&format!("/ari/channels/{}/play/", call.holder)),
            "a prompt went elsewhere: {r:?}"
        );
    }
    for r in &calls {
        let text = format!("{r:?}");
        assert!(!text.contains(&call.code), "{r:?}");
        assert!(!text.contains(PIN) && !text.contains(WRONG), "{r:?}");
        assert!(
            !muted(&call.agent, true)(r) && !added(call, &call.agent, true)(r),
            "{r:?}"
        );
    }
    for p in progress(app, &call.id).await {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["digits_entered", "digits_expected", "step", "tries_left"],
            "{p}"
        );
    }
}

#[tokio::test]
async fn a_capture_hides_the_cardholders_keys_and_voice_and_pays() {
    let (fake, app, call) = started(1).await;
    request(&fake, |r| {
        r.method == "POST" && r.path == call.bridge() && r.param("type") == Some("mixing")
    })
    .await;
    capture(&app, &call, "capture").await;
    hidden(&fake, &call).await;
    let removed = position(&fake, |r| {
        r.path == format!("{}/removeChannel", call.bridge())
            && r.param("channel") == Some(call.holder.as_str())
    });
    let first_prompt = position(&fake, |r| r.path.contains("/play/"));
    assert!(removed < position(&fake, added(&call, &call.holder, true)));
    assert!(
        position(&fake, muted(&call.holder, true)) < first_prompt,
        "muted before any prompt"
    );
    keys(&fake, &call.holder, &format!("1{PIN}"));
    paid(&app, &fake, &call).await;
    request(&fake, muted(&call.holder, false)).await;
    // Back in the bridge, unmuted, after the last prompt.
    wait_for(Duration::from_secs(15), async || {
        let calls = fake.rest_calls();
        let back = calls.iter().rposition(added(&call, &call.holder, false));
        let last_play = calls.iter().rposition(|r| r.path.contains("/play/"));
        (back > last_play)
            .then_some(())
            .ok_or("not re-added after the result")
    })
    .await;
    // Both stay in the call: nobody handed back or hung up.
    for r in fake.rest_calls() {
        let hung_up = r.method == "DELETE"
            && (r.path == format!("/ari/channels/{}", call.holder)
                || r.path == format!("/ari/channels/{}", call.agent));
        assert!(!hung_up && !r.path.ends_with("/continue"), "{r:?}");
    }
    let steps = progress(&app, &call.id).await;
    assert!(
        steps.contains(
            &json!({"step": "pin", "digits_entered": 4, "digits_expected": 6, "tries_left": 3})
        ),
        "{steps:#?}"
    );
    assert!(steps.contains(&json!({"step": "authorizing", "digits_entered": 0, "digits_expected": 0, "tries_left": 2})), "{steps:#?}");
    nothing_leaked(&app, &fake, &call).await;
}

#[tokio::test]
async fn a_cancelled_capture_leaves_the_order_in_the_call_and_both_talking() {
    let (fake, app, call) = capturing(2).await;
    keys(&fake, &call.holder, "112");
    let entry = nth_play(&fake, &call.holder, "sound:voicepay/enter-pin", 1).await;
    wait_for(Duration::from_secs(15), async || {
        let steps = progress(&app, &call.id).await;
        steps
            .iter()
            .any(|p| p["digits_entered"] == 2)
            .then_some(())
            .ok_or("2 digits not seen")
    })
    .await;
    capture(&app, &call, "capture/cancel").await;
    // The prompt stops, the cardholder is back, unmuted.
    request(&fake, |r| {
        r.method == "DELETE" && r.path.replace("%3A", ":") == format!("/ari/playbacks/{entry}")
    })
    .await;
    request(&fake, muted(&call.holder, false)).await;
    request(&fake, added(&call, &call.holder, false)).await;
    let steps = progress(&app, &call.id).await;
    assert_eq!(steps.last().unwrap()["step"], "cancelled", "{steps:#?}");
    let v = app.order_view(&call.id).await;
    assert_eq!(v["status"], "in_call", "{v:#}");
    // The state is idle again: a new capture is accepted.
    capture_again(&app, &call).await;
    nothing_leaked(&app, &fake, &call).await;
}

#[tokio::test]
async fn the_cardholder_hanging_up_fails_the_order_and_the_agent_goes_back() {
    let (fake, app, call) = capturing(3).await;
    keys(&fake, &call.holder, "18");
    nth_play(&fake, &call.holder, "sound:voicepay/enter-pin", 1).await;
    leaves(&fake, &call.holder);
    let v = app.order_until(&call.id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "caller_hung_up", "{v:#}");
    sent_back(&fake, &call.agent, "agent", "failure", "caller_hung_up").await;
    assert!(
        fake.rest_calls()
            .iter()
            .all(|r| r.method != "DELETE" || r.path != format!("/ari/channels/{}", call.agent)),
        "the agent was hung up"
    );
    nothing_leaked(&app, &fake, &call).await;
}

#[tokio::test]
async fn the_agent_hanging_up_lets_the_capture_finish_then_the_cardholder_goes_back() {
    let (fake, app, call) = capturing(4).await;
    leaves(&fake, &call.agent);
    keys(&fake, &call.holder, &format!("1{PIN}"));
    paid(&app, &fake, &call).await;
    sent_back(&fake, &call.holder, "cardholder", "success", "approved").await;
    // Unmuted before it goes back.
    assert!(
        position(&fake, muted(&call.holder, false))
            < position(&fake, is_continue(&call.holder, "cardholder"))
    );
    nothing_leaked(&app, &fake, &call).await;
}

#[tokio::test]
async fn a_wrong_pin_then_the_right_one_pays_in_one_capture() {
    let (fake, app, call) = capturing(5).await;
    wrong_pin(&fake, &call).await;
    keys(&fake, &call.holder, PIN);
    paid(&app, &fake, &call).await;
    request(&fake, added(&call, &call.holder, false)).await;
    let steps = progress(&app, &call.id).await;
    assert!(
        steps.contains(
            &json!({"step": "pin", "digits_entered": 0, "digits_expected": 6, "tries_left": 2})
        ),
        "{steps:#?}"
    );
    // One capture: hidden once.
    assert_eq!(hides(&fake, &call), 1);
    nothing_leaked(&app, &fake, &call).await;
}

#[tokio::test]
async fn a_second_capture_after_a_wrong_pin_pays_with_the_tries_left() {
    let (fake, app, call) = capturing(6).await;
    wrong_pin(&fake, &call).await;
    app.order_until(&call.id, |v| v["status"] == "in_call")
        .await;
    capture(&app, &call, "capture/cancel").await;
    request(&fake, added(&call, &call.holder, false)).await;
    // The second capture, once the first is closed.
    capture_again(&app, &call).await;
    wait_for(Duration::from_secs(15), async || {
        (hides(&fake, &call) == 2)
            .then_some(())
            .ok_or("not hidden again")
    })
    .await;
    keys(&fake, &call.holder, &format!("1{PIN}"));
    let v = app
        .order_until(&call.id, |v| v["status"] == "succeeded")
        .await;
    assert_eq!(v["result"]["code"], "approved");
    let steps = progress(&app, &call.id).await;
    let cancelled = steps.iter().position(|p| p["step"] == "cancelled").unwrap();
    assert_eq!(steps[cancelled]["tries_left"], 2);
    assert_eq!(
        steps[cancelled + 1]["tries_left"],
        2,
        "the second capture keeps the tries: {steps:#?}"
    );
    nothing_leaked(&app, &fake, &call).await;
}

/// The bridge and mute requests the assisted flow sends exist in the ARI
/// of the Asterisk the lab runs (its swagger, `bridges.json` and
/// `channels.json`), with the parameters we pass. Skipped without the
/// swagger (as `ari_swagger`), except under `CI=true`.
#[test]
fn the_bridge_requests_we_send_are_in_asterisks_ari() {
    let dir = std::path::PathBuf::from(
        std::env::var("VOICEPAY_ARI_SWAGGER_DIR").unwrap_or_else(|_| {
            "/var/cache/voicepay/asterisk-sid/usr/share/asterisk/rest-api".into()
        }),
    );
    if !dir.join("bridges.json").exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "no swagger at {dir:?}"
        );
        eprintln!("skipping: ARI swagger not found at {}", dir.display());
        return;
    }
    let params = |file: &str, path: &str, method: &str| -> Vec<String> {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let api = doc["apis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {file}"));
        let op = api["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["httpMethod"] == method)
            .unwrap_or_else(|| panic!("{method} {path} not in {file}"));
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let has = |got: Vec<String>, want: &[&str]| {
        for w in want {
            assert!(got.iter().any(|g| g == w), "{w} missing from {got:?}");
        }
    };
    has(
        params("bridges.json", "/bridges/{bridgeId}", "POST"),
        &["type"],
    );
    params("bridges.json", "/bridges/{bridgeId}", "DELETE");
    has(
        params("bridges.json", "/bridges/{bridgeId}/addChannel", "POST"),
        &["channel", "absorbDTMF", "mute"],
    );
    has(
        params("bridges.json", "/bridges/{bridgeId}/removeChannel", "POST"),
        &["channel"],
    );
    for method in ["POST", "DELETE"] {
        has(
            params("channels.json", "/channels/{channelId}/mute", method),
            &["direction"],
        );
    }
}

#[tokio::test]
async fn the_agent_hanging_up_before_any_result_sends_the_cardholder_back() {
    let (fake, app, call) = started(7).await;
    leaves(&fake, &call.agent);
    sent_back(
        &fake,
        &call.holder,
        "cardholder",
        "failure",
        "agent_hung_up",
    )
    .await;
    let v = app.order_until(&call.id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "call_failed", "{v:#}");
    // Nothing was captured: no prompt, no mute.
    let calls = fake.rest_calls();
    assert!(
        calls
            .iter()
            .all(|r| !r.path.contains("/play/") && !r.path.ends_with("/mute")),
        "{calls:#?}"
    );
    assert_eq!(capture_status(&app, &call, "capture").await, 409);
}

/// Asterisk itself ending the cardholder's channel (a soft hang-up request,
/// e.g. `core stop now`) is a lost call, not the cardholder hanging up: the
/// order is settled as the other flows settle a lost call (never
/// `caller_hung_up`: with attempts left it is payable again with its
/// code), and the agent goes back to the merchant.
#[tokio::test]
async fn a_cardholder_lost_with_asterisk_is_no_hang_up() {
    let (fake, app, call) = started(8).await;
    fake.push(event(
        "ChannelHangupRequest",
        json!({"cause": 4, "soft": true, "channel": up(&call.holder)}),
    ));
    request(&fake, is_continue(&call.agent, "agent")).await;
    let v = app
        .order_until(&call.id, |v| v["status"] != "in_call")
        .await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert!(v["result"].is_null(), "{v:#}");
    assert_eq!(v["attempts"][0]["outcome"], "failed", "{v:#}");
}
