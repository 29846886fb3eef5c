//! Webhooks after real payment calls on the lab Asterisk 22: the merchant's
//! receiver gets the progress of a call it asked to follow and, for every
//! order, exactly one signed, masked final event.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`.

use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::receiver::{verify, Receiver};
use voicepay_testkit::{order_body, spawn_app_with, wait_for, Db, TestApp};

const CARD: &str = "6222000000000017";
const ID_NUMBER: &str = "11010519491231002X";
const PIN: &str = "805137";

/// A lab handset number of this file's own range.
fn phone() -> String {
    format!("1390077{:04}", rand::random::<u16>() % 10_000)
}

/// The lab daemon; its webhooks may reach `rx` (on loopback) and nothing
/// else private, as the lab's `webhooks.allowed_private_targets` lists its
/// receiver.
async fn daemon(rx: &Receiver) -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        rx.allow(s);
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.rest_transport = lab::rest_transport();
        s.ari.app = lab::unique("vp-hook");
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 6;
        s.telephony.max_attempts = 1;
        s.webhooks.poll_interval_ms = 100;
    })
    .await
    .expect("sqlite app")
}

async fn pay(app: &TestApp, rx: &Receiver, phone: &str, progress: bool, keys: &str) -> Value {
    let lab = lab::Lab::from_env().expect("lab settings");
    lab.script_handset(phone, &format!("answer=1;delay=1;keys={keys};hold=40"))
        .await
        .expect("script");
    let mut body = order_body(&format!("h{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = json!(phone);
    body["notify_url"] = json!(rx.url);
    body["notify_progress"] = json!(progress);
    let resp = app.create_order(&body).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = app.final_view(&id, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(phone).await;
    v
}

/// The events the receiver got for `order`, in the order they were created:
/// by their parsed `created` time, and within one millisecond in the order
/// the outbox queued them, which for one order follows its status changes
/// (calling, answered, authorizing, final); the sort is stable, so equal
/// keys keep the order they were received in.
fn events_of(rx: &Receiver, order: &str) -> Vec<Value> {
    fn created(e: &Value) -> i128 {
        let s = e["created"].as_str().expect("created");
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .expect("created is RFC 3339")
            .unix_timestamp_nanos()
    }
    fn queued(e: &Value) -> u8 {
        match e["type"].as_str().unwrap_or_default() {
            "order.calling" => 0,
            "order.answered" => 1,
            "order.authorizing" => 2,
            _ => 3,
        }
    }
    let mut events: Vec<Value> = rx
        .got()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["data"]["id"] == order)
        .collect();
    events.sort_by_key(|e| (created(e), queued(e)));
    events
}

#[tokio::test]
async fn a_real_payment_call_is_told_to_the_merchant() {
    let Some(_lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let rx = Receiver::start().await;
    let app = daemon(&rx).await;
    // One caller keys a wrong PIN first, then the right one; the merchant
    // follows that call. The other order asks for the final event only.
    let (p1, p2) = (phone(), phone());
    let (k1, k2) = (format!("1wwww111111wwwwwwww{PIN}"), format!("1wwww{PIN}"));
    let (followed, quiet) = tokio::join!(
        pay(&app, &rx, &p1, true, &k1),
        pay(&app, &rx, &p2, false, &k2),
    );
    assert_eq!(followed["status"], "succeeded", "{followed:#}");
    assert_eq!(quiet["status"], "succeeded", "{quiet:#}");
    let (fid, qid) = (
        followed["id"].as_str().unwrap(),
        quiet["id"].as_str().unwrap(),
    );
    let expected = [
        "order.calling",
        "order.answered",
        "order.authorizing",
        "order.authorizing",
        "order.succeeded",
    ];
    wait_for(Duration::from_secs(60), async || {
        if events_of(&rx, fid).len() < expected.len() || events_of(&rx, qid).is_empty() {
            Err(format!("webhooks missing: {:#?}", rx.got().len()))
        } else {
            Ok(())
        }
    })
    .await;
    let types = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(types(events_of(&rx, fid)), expected);
    assert_eq!(types(events_of(&rx, qid)), ["order.succeeded"]);

    // The final event is the order as the API shows it, with the result.
    let last = events_of(&rx, fid).pop().unwrap();
    assert_eq!(last["data"]["result"]["code"], "approved");
    assert_eq!(last["data"]["card"]["masked"], "622200******0017");
    // Written with the status change, while the result is still being
    // spoken: the call is answered and not yet over.
    assert!(
        last["data"]["attempts"][0]["answered_at"].is_string(),
        "{last:#}"
    );

    // Every request verifies with the merchant's secret; none carries the
    // PIN, the wrong PIN, the card or the ID number.
    let now = voicepay::store::now_ms() / 1000;
    for r in rx.got() {
        verify(
            &app.webhook_secret,
            r.header("voicepay-signature"),
            &r.body,
            now,
        )
        .expect("signed");
        let body = String::from_utf8_lossy(&r.body);
        for secret in [PIN, "111111", CARD, ID_NUMBER] {
            assert!(!body.contains(secret), "{secret} in a webhook: {body}");
        }
    }
    // Nothing more comes: the counts stay as they are. (Time passing is
    // the point.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), expected.len() + 1);
}
