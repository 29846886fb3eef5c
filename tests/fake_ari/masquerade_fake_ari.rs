//! A call moved into the app by an attended transfer (issue #12 fault 3),
//! against the scripted fake ARI server: Asterisk's masquerade sends
//! `StasisStart` for the NEW channel with empty `args` and
//! `replace_channel` naming the old one, then the old channel's
//! `StasisEnd` (res_stasis.c `channel_replaced_cb`). The payment goes on
//! on the new channel: the digits keyed before the move still count, every
//! prompt, the hang-up and the hand-back name the new channel, the attempt
//! row follows it, and the old channel's end does not end the call.

use super::common::{daemon_on, finished, inbound_order, keys, originate_of, up, CALLER};
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, wait_for, TestApp};

async fn daemon(fake: &FakeAri) -> TestApp {
    daemon_on(fake, |s| {
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.max_attempts = 1;
    })
    .await
}

/// The masquerade as Asterisk 22 reports it: the new channel enters the
/// app in the old one's place, then the old one leaves and is destroyed.
fn masquerade(fake: &FakeAri, old: &str, new: &str) {
    fake.push(event(
        "StasisStart",
        json!({"args": [], "channel": up(new),
               "replace_channel": up(old)}),
    ));
    fake.push(event("StasisEnd", json!({"channel": up(old)})));
    fake.push(event(
        "ChannelDestroyed",
        json!({"cause": 16, "cause_txt": "Normal Clearing", "channel": up(old)}),
    ));
}

/// Every playback so far, in order: (channel, playback id, sound names).
fn plays(fake: &FakeAri) -> Vec<(String, String, Vec<String>)> {
    fake.rest_calls()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/play/"))
        .map(|r| {
            let rest = r.path.trim_start_matches("/ari/channels/");
            let (ch, pb) = rest.split_once("/play/").unwrap();
            let media = r
                .params("media")
                .iter()
                .flat_map(|m| m.split(','))
                .map(|m| m.trim_start_matches("sound:voicepay/").to_owned())
                .collect();
            (ch.to_owned(), pb.replace("%3A", ":"), media)
        })
        .collect()
}

/// Waits until a playback on `ch` includes `sound`; returns its id.
async fn played(fake: &FakeAri, ch: &str, sound: &str) -> String {
    wait_for(Duration::from_secs(15), async || {
        let all = plays(fake);
        all.iter()
            .find(|(c, _, m)| c == ch && m.iter().any(|s| s == sound))
            .map(|(_, pb, _)| pb.clone())
            .ok_or_else(|| format!("no {sound} on {ch}: {all:#?}"))
    })
    .await
}

/// The channel and first sound of every playback, in order.
fn prompt_sequence(fake: &FakeAri) -> Vec<(String, String)> {
    plays(fake)
        .into_iter()
        .map(|(c, _, m)| (c, m.first().cloned().unwrap_or_default()))
        .collect()
}

fn is_delete(ch: &str) -> impl Fn(&Recorded) -> bool {
    let path = format!("/ari/channels/{ch}");
    move |r| r.method == "DELETE" && r.path == path
}

/// The order's call attempt rows: (channel id, outcome).
async fn attempt_rows(app: &TestApp, id: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT channel_id, outcome FROM call_attempts WHERE order_id = $1")
        .bind(id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn order_with(app: &TestApp, reference: &str, mode: &str) -> Value {
    let mut body = order_body(reference);
    body["mode"] = json!(mode);
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// The sequence every flow here hears: the confirmation on the old
/// channel, the PIN prompt (keyed "1" before the move), then after the move
/// the wait and the result on the new one.
fn want_prompts(old: &str, new: &str) -> Vec<(String, String)> {
    [
        (old, "welcome"),
        (old, "enter-pin"),
        (new, "please-wait"),
        (new, "success"),
    ]
    .map(|(c, s)| (c.to_owned(), s.to_owned()))
    .to_vec()
}

#[tokio::test]
async fn a_callback_moved_by_an_attended_transfer_pays_on_the_new_channel() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let v = order_with(&app, "X1", "callback").await;
    let id = v["id"].as_str().unwrap().to_owned();
    let old = format!("vp-{id}-1");
    let new = "1712345678.40";
    request(&fake, originate_of(old.clone())).await;
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&old)}),
    ));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    keys(&fake, &old, "1");
    played(&fake, &old, "enter-pin").await;

    masquerade(&fake, &old, new);
    keys(&fake, new, "805137");

    let v = app.order_until(&id, |v| v["status"] != "in_call").await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let closing = played(&fake, new, "success").await;
    assert_eq!(prompt_sequence(&fake), want_prompts(&old, new));
    // The closing prompt plays out, then the NEW channel is hung up.
    finished(&fake, new, &closing);
    request(&fake, is_delete(new)).await;
    fake.push(event("StasisEnd", json!({"channel": up(new)})));
    let v = app
        .order_until(&id, |v| !v["attempts"][0]["ended_at"].is_null())
        .await;
    assert_eq!(v["attempts"][0]["outcome"], "answered");
    assert_eq!(
        attempt_rows(&app, &id).await,
        [(new.to_owned(), Some("answered".to_owned()))]
    );
    let calls = fake.rest_calls();
    let deletes: Vec<_> = calls
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/ari/channels/"))
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "one hang-up, of the new channel: {deletes:#?}"
    );
    assert!(calls.iter().all(|r| !format!("{r:?}").contains("805137")));
}

#[tokio::test]
async fn a_transfer_call_moved_by_an_attended_transfer_pays_and_goes_back_on_the_new_channel() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let v = order_with(&app, "X2", "transfer").await;
    let id = v["id"].as_str().unwrap().to_owned();
    let code = v["transfer_code"].as_str().unwrap().to_owned();
    let (old, new) = ("1712345678.41", "1712345678.42");
    fake.push(event(
        "StasisStart",
        json!({"args": ["transfer", code], "channel": up(old)}),
    ));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    keys(&fake, old, "1");
    played(&fake, old, "enter-pin").await;

    masquerade(&fake, old, new);
    keys(&fake, new, "805137");

    let v = app.order_until(&id, |v| v["status"] != "in_call").await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let closing = played(&fake, new, "success").await;
    assert_eq!(prompt_sequence(&fake), want_prompts(old, new));
    finished(&fake, new, &closing);
    // Handed back to the merchant on the new channel, with the result.
    let var = |name: &'static str, value: &'static str| {
        let path = format!("/ari/channels/{new}/variable");
        move |r: &Recorded| {
            r.method == "POST"
                && r.path == path
                && r.param("variable") == Some(name)
                && r.param("value") == Some(value)
        }
    };
    request(&fake, var("VOICEPAY_RESULT", "success")).await;
    request(&fake, var("VOICEPAY_CODE", "approved")).await;
    request(&fake, |r| {
        r.method == "POST"
            && r.path == format!("/ari/channels/{new}/continue")
            && r.param("context") == Some("voicepay-transfer-return")
    })
    .await;
    fake.push(event("StasisEnd", json!({"channel": up(new)})));
    app.order_until(&id, |v| !v["attempts"][0]["ended_at"].is_null())
        .await;
    assert_eq!(
        attempt_rows(&app, &id).await,
        [(new.to_owned(), Some("answered".to_owned()))]
    );
    let calls = fake.rest_calls();
    assert!(
        calls
            .iter()
            .all(|r| r.method != "DELETE" || !r.path.starts_with("/ari/channels/")),
        "a transferred caller is never hung up: {calls:#?}"
    );
    assert!(
        calls.iter().all(
            |r| !r.path.starts_with(&format!("/ari/channels/{old}/variable"))
                && !r.path.starts_with(&format!("/ari/channels/{old}/continue"))
        ),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn an_inbound_call_moved_while_keying_its_order_code_pays_on_the_new_channel() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, code) = inbound_order(&app, "X3", CALLER).await;
    let (old, new) = ("1712345678.43", "1712345678.44");
    fake.push(event(
        "StasisStart",
        json!({"args": ["inbound"], "channel": channel(old, "Ring")}),
    ));
    played(&fake, old, "key-order-code").await;
    // Half the code, the move, the rest: nothing keyed is lost.
    keys(&fake, old, &code[..4]);
    masquerade(&fake, old, new);
    keys(&fake, new, &code[4..]);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    assert_eq!(attempt_rows(&app, &id).await, [(new.to_owned(), None)]);
    keys(&fake, new, "1805137");
    let v = app.order_until(&id, |v| v["status"] != "in_call").await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let closing = played(&fake, new, "success").await;
    let seq = prompt_sequence(&fake);
    assert_eq!(seq[0], (old.to_owned(), "key-order-code".to_owned()));
    assert!(
        seq[1..].iter().all(|(c, _)| c == new),
        "after the move every prompt is on the new channel: {seq:#?}"
    );
    finished(&fake, new, &closing);
    request(&fake, is_delete(new)).await;
    assert!(fake.rest_calls().iter().all(|r| !is_delete(old)(r)));
}

#[tokio::test]
async fn a_masquerade_of_a_channel_we_do_not_drive_is_hung_up_like_a_stranger() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let v = order_with(&app, "X4", "transfer").await;
    let id = v["id"].as_str().unwrap().to_owned();
    let new = "1712345678.46";
    fake.push(event(
        "StasisStart",
        json!({"args": [], "channel": up(new),
               "replace_channel": up("1712345678.45")}),
    ));
    request(&fake, is_delete(new)).await;
    // Nothing was paid or claimed.
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert!(attempt_rows(&app, &id).await.is_empty());
    assert!(plays(&fake).is_empty());
}
