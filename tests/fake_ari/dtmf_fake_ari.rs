//! Keys as real networks deliver them (issue #12, faults 1 and 2), against
//! the scripted fake ARI server: one press reported twice by a relay that
//! re-stamps RFC 4733 end packets, and the `#` a caller adds after an entry
//! that was already complete at its fixed length; and (issue #15) a burst of
//! keys at the confirmation, a PIN keyed too early, which is one wrong
//! entry. What the caller heard is read from the `play` requests the fake
//! saw, in order.

use super::common::{
    daemon_on, dial_in, finished, hung_up, inbound_order, media, settled, up, wait_plays, CALLER,
};
use serde_json::{json, Value};
use voicepay_testkit::fake_ari::{dtmf, event, key_clock, request, FakeAri, Recorded};
use voicepay_testkit::{order_body, TestApp};

async fn daemon(fake: &FakeAri) -> TestApp {
    daemon_on(fake, |s| {
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 5;
        s.telephony.max_attempts = 1;
    })
    .await
}

/// A callback order paid with `card`, answered on its channel: (id, channel).
async fn answered_callback(
    app: &TestApp,
    fake: &FakeAri,
    reference: &str,
    card: &str,
) -> (String, String) {
    let mut body = order_body(reference);
    body["card_number"] = json!(card);
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let ch = format!("vp-{id}-1");
    request(fake, |r: &Recorded| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&ch)}),
    ));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    (id, ch)
}

/// Waits for the `n`th playback on `ch`; returns what was heard so far.
async fn wait_heard(fake: &FakeAri, ch: &str, n: usize) -> Vec<Vec<String>> {
    let p = wait_plays(fake, ch, n).await;
    p.into_iter().map(|(_, m)| m).collect()
}

/// The first media of each playback of an inbound call that keys its
/// order code, confirms and pays by PIN.
const PAID_BY_CODE: [&str; 5] = [
    "sound:voicepay/key-order-code",
    "sound:voicepay/welcome",
    "sound:voicepay/enter-pin",
    "sound:voicepay/please-wait",
    "sound:voicepay/success",
];

/// An inbound order for [`CALLER`], who calls in on `ch` and is asked
/// for the order code: (id, order code).
async fn called_in(app: &TestApp, fake: &FakeAri, reference: &str, ch: &str) -> (String, String) {
    let (id, code) = inbound_order(app, reference, CALLER).await;
    dial_in(fake, ch, CALLER);
    wait_plays(fake, ch, 1).await;
    (id, code)
}

/// The first media of each playback: which prompt the caller heard.
fn firsts(heard: &[Vec<String>]) -> Vec<&str> {
    heard
        .iter()
        .map(|m| m.first().map(String::as_str).unwrap_or("-"))
        .collect()
}

/// Wrong secrets counted against the order's card today (the daemon's
/// own count, which the issuer's daily lock follows).
async fn wrong_secrets_counted(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(SUM(count), 0) FROM pin_tries")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// One press of `key` that a relay re-stamped: Asterisk reports it
/// `times` times, 20 ms apart, each with the press's 280 ms (a SIPp
/// recording's 2240 samples).
fn restamped(fake: &FakeAri, ch: &str, key: char, times: u64) {
    let ended = key_clock(400 + 20 * times) + 400;
    for n in 0..times {
        fake.push(dtmf(&up(ch), key, ended + 20 * n, 280));
    }
}

/// Plays the closing prompt to its end; the daemon hangs up.
async fn closing_heard(fake: &FakeAri, ch: &str, n: usize) {
    finished(fake, ch, &format!("{ch}:{n}"));
    hung_up(fake, ch).await;
}

#[tokio::test]
async fn a_pin_digit_reported_twice_20_ms_apart_pays_with_the_right_pin() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, ch) = answered_callback(&app, &fake, "D1", "6222000000000017").await;
    fake.press(&up(&ch), "1");
    // `8` reported twice 20 ms apart, then 05137: the PIN is 805137.
    restamped(&fake, &ch, '8', 2);
    fake.press(&up(&ch), "05137");
    let v = settled(&app, &id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let h = wait_heard(&fake, &ch, 4).await;
    assert_eq!(
        firsts(&h),
        [
            "sound:voicepay/welcome",
            "sound:voicepay/enter-pin",
            "sound:voicepay/please-wait",
            "sound:voicepay/success",
        ],
        "{h:#?}"
    );
    assert_eq!(h[3], media(&["success", "goodbye"]));
    // The card keeps its three tries: no wrong PIN was ever submitted.
    assert_eq!(wrong_secrets_counted(&app).await, 0);
    closing_heard(&fake, &ch, 4).await;
}

#[tokio::test]
async fn a_press_reported_three_times_in_the_order_code_is_one_digit() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let ch = "1712345678.70";
    let (id, code) = called_in(&app, &fake, "D2", ch).await;
    let first = code.chars().next().unwrap();
    restamped(&fake, ch, first, 3);
    fake.press(&up(ch), &code[1..]);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    fake.press(&up(ch), "1805137");
    let v = app.order_until(&id, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let h = wait_heard(&fake, ch, 5).await;
    assert_eq!(firsts(&h), PAID_BY_CODE, "{h:#?}");
    let wrong: Option<i64> = sqlx::query_scalar("SELECT count FROM order_code_tries")
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    assert_eq!(wrong, None, "no wrong order code was counted");
    assert_eq!(wrong_secrets_counted(&app).await, 0);
}

#[tokio::test]
async fn an_order_code_keyed_with_its_hash_goes_straight_to_the_confirmation() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let ch = "1712345678.71";
    let (id, code) = called_in(&app, &fake, "D3", ch).await;
    // "Key the order code followed by #": taken at its 8th digit, the `#`
    // reaches the confirmation, which must not call it invalid.
    fake.press(&up(ch), &format!("{code}#"));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    wait_heard(&fake, ch, 2).await;
    // `1#` and `805137#`: every `#` after a complete entry is ignored too.
    fake.press(&up(ch), "1#805137#");
    let v = app.order_until(&id, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let h = wait_heard(&fake, ch, 5).await;
    assert_eq!(firsts(&h), PAID_BY_CODE, "{h:#?}");
    assert!(
        h.iter().flatten().all(|m| !m.contains("invalid-input")),
        "{h:#?}"
    );
    // The code's first digit stopped key-order-code; the `#` did not cut
    // the confirmation: only the `1` stopped it, the PIN's first digit
    // enter-pin, and the bank's answer please-wait.
    let stopped: Vec<String> = fake
        .rest_calls()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/ari/playbacks/"))
        .map(|r| r.path.replace("%3A", ":"))
        .collect();
    assert_eq!(
        stopped,
        [
            format!("/ari/playbacks/{ch}:1000001"),
            format!("/ari/playbacks/{ch}:1"),
            format!("/ari/playbacks/{ch}:2"),
            format!("/ari/playbacks/{ch}:3"),
        ]
    );
    assert_eq!(wrong_secrets_counted(&app).await, 0);
}

#[tokio::test]
async fn a_credit_card_keyed_as_mmyy_hash_then_cvn2_hash_pays() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, ch) = answered_callback(&app, &fake, "D4", "6250000000000012").await;
    // Expiry 12/30 and CVN2 123, each followed by `#`.
    fake.press(&up(&ch), "1");
    wait_heard(&fake, &ch, 2).await;
    fake.press(&up(&ch), "1230#");
    wait_heard(&fake, &ch, 3).await;
    fake.press(&up(&ch), "123#");
    let v = settled(&app, &id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let h = wait_heard(&fake, &ch, 5).await;
    assert_eq!(
        h[1..],
        [
            media(&["enter-expiry"]),
            media(&["enter-cvn2"]),
            media(&["please-wait"]),
            media(&["success", "goodbye"]),
        ],
        "{h:#?}"
    );
    assert_eq!(h.len(), 5, "{h:#?}");
    assert_eq!(wrong_secrets_counted(&app).await, 0);
    closing_heard(&fake, &ch, 5).await;
}

#[tokio::test]
async fn a_pin_keyed_at_the_confirmation_costs_one_try_then_1_and_the_pin_pay_once() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake).await;
    let (id, ch) = answered_callback(&app, &fake, "D4", "6222000000000017").await;
    wait_heard(&fake, &ch, 1).await;
    // The PIN keyed while "press 1 to pay" plays: six keys at once. Before
    // the fix each was a wrong answer and the third ended the call.
    fake.press(&up(&ch), "805137");
    let h = wait_heard(&fake, &ch, 2).await;
    assert_eq!(
        h[1][..2],
        media(&["invalid-input", "tries-you-have"]),
        "{h:#?}"
    );
    // The caller listens, then answers after a pause longer than the burst
    // gap (ivr.burst_gap_ms, 1500 ms) and keys the PIN.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    fake.press(&up(&ch), "1");
    wait_heard(&fake, &ch, 3).await;
    fake.press(&up(&ch), "805137");
    let v = settled(&app, &id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    let h = wait_heard(&fake, &ch, 5).await;
    assert_eq!(
        firsts(&h),
        [
            "sound:voicepay/welcome",
            "sound:voicepay/invalid-input",
            "sound:voicepay/enter-pin",
            "sound:voicepay/please-wait",
            "sound:voicepay/success",
        ],
        "{h:#?}"
    );
    // One "invalid input" only: the burst cost one try, and it says 2 are left.
    let invalid = h
        .iter()
        .filter(|m| m[0].ends_with("/invalid-input"))
        .count();
    assert_eq!(invalid, 1, "{h:#?}");
    // Paid once, and no wrong PIN ever reached the bank.
    let paid: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_events WHERE order_id = $1 AND to_status = 'succeeded'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(paid, 1);
    assert_eq!(wrong_secrets_counted(&app).await, 0);
    closing_heard(&fake, &ch, 5).await;
}
