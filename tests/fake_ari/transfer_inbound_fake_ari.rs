//! The transfer and inbound flows against the scripted fake ARI server (no
//! Asterisk): what the daemon sends for a transferred call (result
//! variables and `continue`, never a hang-up, never the code) and for an
//! inbound caller without an order (`inbound.require_order_code = false`).

use super::common::{daemon_on, is_var, playback_finished as finished};
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, spawn_app_with, Db, TestApp};

async fn daemon(fake: &FakeAri) -> TestApp {
    daemon_with(fake, true).await
}

async fn daemon_with(fake: &FakeAri, require_order_code: bool) -> TestApp {
    daemon_on(fake, |s| s.inbound.require_order_code = require_order_code).await
}

fn is_continue(ch: &str) -> impl Fn(&Recorded) -> bool {
    let path = format!("/ari/channels/{ch}/continue");
    move |r| {
        r.method == "POST"
            && r.path == path
            && r.param("context") == Some("voicepay-transfer-return")
            && r.param("extension") == Some("s")
            && r.param("priority") == Some("1")
    }
}

/// The playback id of the first `play` on `ch` whose media includes
/// `sound` (one `media` parameter each, or comma-separated in one).
async fn played(fake: &FakeAri, ch: &str, sound: &str) -> String {
    let prefix = format!("/ari/channels/{ch}/play/");
    let r = request(fake, |r| {
        r.path.starts_with(&prefix)
            && r.params("media")
                .iter()
                .any(|m| m.split(',').any(|x| x == sound))
    })
    .await;
    r.path[prefix.len()..].replace("%3A", ":")
}

#[tokio::test]
async fn transferred_call_pays_then_goes_back_with_the_result() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let mut body = order_body("T1");
    body["mode"] = json!("transfer");
    let v: Value = app.create_order(&body).await.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let code = v["transfer_code"].as_str().unwrap().to_owned();
    let ch = "1712345678.20";
    fake.push(event(
        "StasisStart",
        json!({"args": ["transfer", code], "channel": channel(ch, "Up")}),
    ));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    fake.press(&channel(ch, "Up"), "1805137");
    app.order_until(&id, |v| v["status"] == "succeeded").await;
    let closing = played(&fake, ch, "sound:voicepay/success").await;
    fake.push(finished(ch, &closing));
    request(&fake, is_var(ch, "VOICEPAY_RESULT", "success")).await;
    request(&fake, is_var(ch, "VOICEPAY_CODE", "approved")).await;
    request(&fake, is_continue(ch)).await;
    fake.push(event("StasisEnd", json!({"channel": channel(ch, "Up")})));
    let v = app
        .order_until(&id, |v| !v["attempts"][0]["ended_at"].is_null())
        .await;
    assert!(v.get("transfer_code").is_none(), "{v:#}");
    let calls = fake.rest_calls();
    assert!(
        calls
            .iter()
            .all(|r| r.method != "DELETE" || r.path != format!("/ari/channels/{ch}")),
        "the transferred caller was hung up: {calls:#?}"
    );
    for r in &calls {
        let text = format!("{r:?}");
        assert!(!text.contains(&code) && !text.contains("805137"), "{r:?}");
    }
}

#[tokio::test]
async fn unknown_transfer_code_is_said_and_handed_back() {
    let fake = FakeAri::start().await;
    let _app = daemon(&fake).await;
    let ch = "1712345678.21";
    fake.push(event(
        "StasisStart",
        json!({"args": ["transfer", "00000000"], "channel": channel(ch, "Up")}),
    ));
    let prompt = played(&fake, ch, "sound:voicepay/transfer-code-invalid").await;
    fake.push(finished(ch, &prompt));
    request(&fake, is_var(ch, "VOICEPAY_RESULT", "failure")).await;
    request(&fake, is_var(ch, "VOICEPAY_CODE", "transfer_code_invalid")).await;
    request(&fake, is_continue(ch)).await;
}

#[tokio::test]
async fn inbound_caller_without_an_order_hears_so_and_is_hung_up() {
    // As before the order code: `require_order_code = false` (with it, the
    // caller is asked for a code, tests/fake_ari/inbound_code_fake_ari.rs).
    let fake = FakeAri::start().await;
    let _app = daemon_with(&fake, false).await;
    let ch = "1712345678.22";
    fake.push(event(
        "StasisStart",
        json!({"args": ["inbound"], "channel": channel(ch, "Ring")}),
    ));
    request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}/answer")
    })
    .await;
    let prompt = played(&fake, ch, "sound:voicepay/no-pending-order").await;
    fake.push(finished(ch, &prompt));
    request(&fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
}

#[tokio::test]
async fn a_transfer_call_lost_in_a_daemon_restart_goes_back_to_the_merchant() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let mut body = order_body("T2");
    body["mode"] = json!("transfer");
    let v: Value = app.create_order(&body).await.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    // As a previous run of the daemon left it: in a call on a channel that
    // is still up, but no task of ours drives it.
    let ch = "1712345678.23";
    sqlx::query(
        "UPDATE orders SET status = 'in_call', claimed_by = 'voicepay-test', attempts = 1 \
         WHERE id = $1",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO call_attempts (order_id, attempt, channel_id, started_at, answered_at) \
         VALUES ($1, 1, $2, 0, 0)",
    )
    .bind(&id)
    .bind(ch)
    .execute(&app.pool)
    .await
    .unwrap();
    fake.set_channels(vec![channel(ch, "Up")]);
    fake.drop_socket();
    fake.wait_connections(2, Duration::from_secs(15)).await;
    request(&fake, is_var(ch, "VOICEPAY_RESULT", "failure")).await;
    request(&fake, is_var(ch, "VOICEPAY_CODE", "service_unavailable")).await;
    request(&fake, is_continue(ch)).await;
    assert!(fake
        .rest_calls()
        .iter()
        .all(|r| r.method != "DELETE" || r.path != format!("/ari/channels/{ch}")));
    let v = app.order_until(&id, |v| v["status"] != "in_call").await;
    assert!(
        matches!(v["status"].as_str(), Some("pending" | "failed")),
        "{v:#}"
    );
}

/// What a transferred call did on `ch`, ids left out: the media of every
/// playback in order, and every channel variable set (what the merchant's
/// dialplan reads).
fn call_script(fake: &FakeAri, ch: &str) -> (Vec<String>, Vec<(String, String)>) {
    let calls = fake.rest_calls();
    let play = format!("/ari/channels/{ch}/play/");
    let var = format!("/ari/channels/{ch}/variable");
    let media = calls
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&play))
        .map(|r| r.params("media").join(","))
        .collect();
    let vars = calls
        .iter()
        .filter(|r| r.method == "POST" && r.path == var)
        .map(|r| {
            let p = |k| r.param(k).unwrap_or_default().to_owned();
            (p("variable"), p("value"))
        })
        .collect();
    (media, vars)
}

/// Runs a transferred call for a new order on card …0017 with `id_number`
/// from `phone`, keys `pin` `tries` times (waiting for the re-prompt
/// between them), lets the closing prompt end and returns the order id.
async fn transfer_keying(
    app: &TestApp,
    fake: &FakeAri,
    ch: &str,
    (phone, id_number): (&str, &str),
    pin: &str,
    tries: usize,
) -> String {
    let mut body = order_body(&format!("T{}", ch.replace('.', "")));
    body["mode"] = json!("transfer");
    body["phone"] = json!(phone);
    body["id_number"] = json!(id_number);
    let v: Value = app.create_order(&body).await.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let code = v["transfer_code"].as_str().unwrap().to_owned();
    fake.push(event(
        "StasisStart",
        json!({"args": ["transfer", code], "channel": channel(ch, "Up")}),
    ));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    let prefix = format!("/ari/channels/{ch}/play/");
    let reprompts = || {
        fake.rest_calls()
            .iter()
            .filter(|r| {
                r.path.starts_with(&prefix)
                    && r.params("media").iter().any(|m| m.contains("enter-pin"))
            })
            .count()
    };
    for n in 0..tries {
        let keys = if n == 0 {
            format!("1{pin}")
        } else {
            pin.to_owned()
        };
        fake.press(&channel(ch, "Up"), &keys);
        if n + 1 < tries {
            // the PIN prompt once for the first entry, then once per retry
            voicepay_testkit::wait_for(Duration::from_secs(15), async || {
                (reprompts() >= n + 2).then_some(()).ok_or("no re-prompt")
            })
            .await;
        }
    }
    app.order_until(&id, |v| v["status"] == "failed").await;
    let closing = played(fake, ch, "sound:voicepay/goodbye").await;
    fake.push(finished(ch, &closing));
    request(fake, is_continue(ch)).await;
    fake.push(event("StasisEnd", json!({"channel": channel(ch, "Up")})));
    id
}

/// A caller whose ID number does not match hears exactly what a caller with
/// a wrong PIN hears (the same prompts, the same tries left), and the call
/// goes back to the merchant's dialplan with the same variables
/// (`wrong_secret`), even when the stranger keys the right PIN; the order
/// shows `wrong_secret` (65), and only the audit log keeps 66.
#[tokio::test]
async fn an_id_mismatch_sounds_and_returns_exactly_like_a_wrong_secret() {
    let fake = FakeAri::start().await;
    let ari = fake.settings();
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.ari = ari;
        s.ivr.secret_tries = 2;
    })
    .await
    .expect("sqlite app");
    fake.wait_connections(1, Duration::from_secs(10)).await;
    let stranger = ("13900139000", "310115198506154322");
    let holder = ("13700137000", "11010519491231002X");
    let a = transfer_keying(&app, &fake, "1712345678.31", stranger, "805137", 2).await;
    let b = transfer_keying(&app, &fake, "1712345678.32", holder, "111111", 2).await;
    let (heard_a, vars_a) = call_script(&fake, "1712345678.31");
    let (heard_b, vars_b) = call_script(&fake, "1712345678.32");
    assert_eq!(heard_a, heard_b);
    assert_eq!(vars_a, vars_b);
    assert!(
        heard_a.iter().any(|m| m.contains("fail-wrong_secret")),
        "{heard_a:#?}"
    );
    assert!(
        vars_a.contains(&("VOICEPAY_CODE".into(), "wrong_secret".into())),
        "{vars_a:?}"
    );
    let (va, vb) = (app.order_view(&a).await, app.order_view(&b).await);
    assert_eq!(va["status"], "failed");
    assert_eq!(va["result"], vb["result"]);
    assert_eq!(va["result"]["code"], "wrong_secret", "{va:#}");
    assert_eq!(va["result"]["resp_code"], "65", "{va:#}");
    let all = format!("{heard_a:?} {vars_a:?} {va}");
    assert!(
        !all.contains("id_mismatch") && !all.contains("\"66\""),
        "{all}"
    );
    let audit = app.event_details(&a).await;
    assert!(
        audit
            .iter()
            .any(|d| d == "issuer answered id_mismatch (66)"),
        "{audit:?}"
    );
    for r in fake.rest_calls() {
        assert!(!format!("{r:?}").contains("805137"), "{r:?}");
    }
}
