//! The inbound order code (`inbound.require_order_code`, issue #11 item 9)
//! against the scripted fake ARI server: a caller matched by caller ID
//! (which can be spoofed) hears nothing of an order, and claims none,
//! until they key its order code; wrong codes are counted per caller ID
//! per day across calls; a hang-up before the code leaves the order
//! pending. What the daemon plays is read from the `play` requests the fake
//! saw, so "nothing was said" is what a caller would check.

use super::common::{
    daemon_on as daemon, dial_in, finished, hung_up, inbound_order, keys, media, plays, up,
    wait_plays, CALLER,
};
use serde_json::json;
use voicepay_testkit::fake_ari::{event, FakeAri};
use voicepay_testkit::TestApp;

/// Another 8-digit code than `code`.
pub(super) fn other_code(code: &str) -> String {
    format!("{:08}", (code.parse::<u32>().unwrap() + 1) % 100_000_000)
}

fn hang_up(fake: &FakeAri, ch: &str) {
    fake.push(event(
        "ChannelHangupRequest",
        json!({"cause": 16, "channel": up(ch)}),
    ));
    fake.push(event("StasisEnd", json!({"channel": up(ch)})));
}

/// Plays the last prompt on `ch` to its end and waits for the hang-up.
pub(super) async fn ends_with(fake: &FakeAri, ch: &str, n: usize, last: &[&str]) {
    let p = wait_plays(fake, ch, n).await;
    assert_eq!(p[n - 1].1, media(last), "{p:#?}");
    finished(fake, ch, &p[n - 1].0);
    hung_up(fake, ch).await;
}

/// `caller` calls in on `ch` and keys `wrong` when asked for the code: the
/// day's limit is reached, the code is refused and the call ends.
pub(super) async fn wrong_code_reaches_the_limit(
    fake: &FakeAri,
    ch: &str,
    caller: &str,
    wrong: &str,
) {
    dial_in(fake, ch, caller);
    wait_plays(fake, ch, 1).await;
    keys(fake, ch, wrong);
    ends_with(fake, ch, 2, &["order-code-refused", "goodbye"]).await;
}

/// `caller` calls in on `ch` past the day's limit and keys `code`: refused
/// before any code is asked for, the right one included.
pub(super) async fn refused_at_once(fake: &FakeAri, ch: &str, caller: &str, code: &str) {
    dial_in(fake, ch, caller);
    keys(fake, ch, code);
    ends_with(fake, ch, 1, &["order-code-refused", "goodbye"]).await;
}

/// No playback on `ch` names the order: no welcome, amount or card digits.
pub(super) fn nothing_of_the_order_said(fake: &FakeAri, ch: &str) {
    for (_, m) in plays(fake, ch) {
        for s in &m {
            assert!(
                !["welcome", "confirm", "digits/", "units/"]
                    .iter()
                    .any(|w| s.contains(w)),
                "{s} played before the order code: {m:?}"
            );
        }
    }
}

/// Wrong codes counted today for `caller`.
pub(super) async fn wrong_codes(app: &TestApp, caller: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count FROM order_code_tries WHERE caller = $1")
        .bind(caller)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

pub(super) async fn assert_untouched(app: &TestApp, id: &str) {
    let v = app.order_view(id).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert_eq!(v["attempts"], json!([]), "{v:#}");
}

#[tokio::test]
async fn the_right_code_comes_before_anything_about_the_order() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    let (id, code) = inbound_order(&app, "IC1", CALLER).await;
    let ch = "1712345678.40";
    dial_in(&fake, ch, CALLER);
    let first = wait_plays(&fake, ch, 1).await;
    assert_eq!(first[0].1, media(&["key-order-code"]));
    assert_untouched(&app, &id).await;
    keys(&fake, ch, &code);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    keys(&fake, ch, "1805137");
    app.order_until(&id, |v| v["status"] == "succeeded").await;
    let p = plays(&fake, ch);
    assert_eq!(
        p[1].1.first().map(String::as_str),
        Some("sound:voicepay/welcome")
    );
    assert!(p[0].1.iter().all(|m| !m.contains("welcome")));
    assert_eq!(wrong_codes(&app, CALLER).await, 0);
    for r in fake.rest_calls() {
        assert!(
            !format!("{r:?}").contains(&code),
            "the code reached ARI: {r:?}"
        );
    }
}

#[tokio::test]
async fn wrong_codes_say_nothing_of_the_order_and_leave_it_pending() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    let (id, code) = inbound_order(&app, "IC2", CALLER).await;
    let wrong = other_code(&code);
    let ch = "1712345678.41";
    dial_in(&fake, ch, CALLER);
    wait_plays(&fake, ch, 1).await;
    keys(&fake, ch, &wrong);
    let p = wait_plays(&fake, ch, 2).await;
    assert_eq!(p[1].1, media(&["order-code-wrong", "key-order-code"]));
    keys(&fake, ch, &wrong);
    wait_plays(&fake, ch, 3).await;
    keys(&fake, ch, &wrong);
    ends_with(&fake, ch, 4, &["order-code-wrong", "goodbye"]).await;
    nothing_of_the_order_said(&fake, ch);
    assert_untouched(&app, &id).await;
    assert_eq!(wrong_codes(&app, CALLER).await, 3);
    for r in fake.rest_calls() {
        assert!(
            !format!("{r:?}").contains(&wrong),
            "a keyed code reached ARI: {r:?}"
        );
    }
}

#[tokio::test]
async fn a_caller_who_keys_no_code_is_said_goodbye_and_nothing_is_counted() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.ivr.first_digit_timeout_secs = 1).await;
    let (id, _code) = inbound_order(&app, "IC3", CALLER).await;
    let ch = "1712345678.42";
    dial_in(&fake, ch, CALLER);
    for n in 1..=3 {
        let p = wait_plays(&fake, ch, n).await;
        assert_eq!(p[n - 1].1, media(&["key-order-code"]), "{p:#?}");
        finished(&fake, ch, &p[n - 1].0);
    }
    ends_with(&fake, ch, 4, &["goodbye"]).await;
    nothing_of_the_order_said(&fake, ch);
    assert_untouched(&app, &id).await;
    assert_eq!(wrong_codes(&app, CALLER).await, 0);
}

#[tokio::test]
async fn a_hang_up_before_the_code_leaves_the_order_pending_and_unclaimed() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    let (id, code) = inbound_order(&app, "IC4", CALLER).await;
    let gone = "1712345678.43";
    dial_in(&fake, gone, CALLER);
    wait_plays(&fake, gone, 1).await;
    keys(&fake, gone, &code[..3]);
    hang_up(&fake, gone);
    // The same caller calls again and keys the code: the order was still
    // pending and unclaimed, so this call takes it, and it is the only
    // attempt the order has.
    let again = "1712345678.44";
    dial_in(&fake, again, CALLER);
    wait_plays(&fake, again, 1).await;
    keys(&fake, again, &code);
    let v = app.order_until(&id, |v| v["status"] == "in_call").await;
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(1), "{v:#}");
    let channels: Vec<String> =
        sqlx::query_scalar("SELECT channel_id FROM call_attempts WHERE order_id = $1")
            .bind(&id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(channels, vec![again.to_owned()]);
    nothing_of_the_order_said(&fake, gone);
    assert_eq!(wrong_codes(&app, CALLER).await, 0);
}

#[tokio::test]
async fn the_days_wrong_codes_are_limited_per_caller_id_across_calls() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.inbound.wrong_codes_per_day = 4).await;
    let (id, code) = inbound_order(&app, "IC5", CALLER).await;
    let wrong = other_code(&code);
    // First call: three wrong codes, the call's tries.
    let a = "1712345678.45";
    dial_in(&fake, a, CALLER);
    for n in 1..=3 {
        wait_plays(&fake, a, n).await;
        keys(&fake, a, &wrong);
    }
    ends_with(&fake, a, 4, &["order-code-wrong", "goodbye"]).await;
    // Second call: the fourth wrong code reaches the limit.
    let b = "1712345678.46";
    wrong_code_reaches_the_limit(&fake, b, CALLER, &wrong).await;
    // Third call: refused before any code is asked for, the right one
    // included.
    let c = "1712345678.47";
    refused_at_once(&fake, c, CALLER, &code).await;
    for ch in [a, b, c] {
        nothing_of_the_order_said(&fake, ch);
    }
    assert_untouched(&app, &id).await;
    assert_eq!(wrong_codes(&app, CALLER).await, 4);
    // Another caller ID is not affected.
    let other = "13700000002";
    let (other_id, other_code) = inbound_order(&app, "IC6", other).await;
    let d = "1712345678.48";
    dial_in(&fake, d, other);
    let p = wait_plays(&fake, d, 1).await;
    assert_eq!(p[0].1, media(&["key-order-code"]));
    keys(&fake, d, &other_code);
    app.order_until(&other_id, |v| v["status"] == "in_call")
        .await;
}

#[tokio::test]
async fn a_phone_without_an_order_is_asked_for_a_code_like_any_other() {
    let fake = FakeAri::start().await;
    let _app = daemon(&fake, |_| {}).await;
    let ch = "1712345678.49";
    dial_in(&fake, ch, CALLER);
    let p = wait_plays(&fake, ch, 1).await;
    assert_eq!(p[0].1, media(&["key-order-code"]));
}

#[tokio::test]
async fn a_caller_id_that_is_no_phone_number_is_asked_for_a_code() {
    // Issue #12 fault 4: the code, not the caller ID, names its order
    // (tests/fake_ari/caller_id_fake_ari.rs pays that way).
    let fake = FakeAri::start().await;
    let _app = daemon(&fake, |_| {}).await;
    let ch = "1712345678.50";
    dial_in(&fake, ch, "anonymous");
    let p = wait_plays(&fake, ch, 1).await;
    assert_eq!(p[0].1, media(&["key-order-code"]));
}

#[tokio::test]
async fn without_require_order_code_the_caller_id_alone_finds_the_order() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.inbound.require_order_code = false).await;
    let (id, _code) = inbound_order(&app, "IC7", CALLER).await;
    let ch = "1712345678.51";
    dial_in(&fake, ch, CALLER);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    let p = wait_plays(&fake, ch, 1).await;
    assert_eq!(
        p[0].1.first().map(String::as_str),
        Some("sound:voicepay/welcome")
    );
    keys(&fake, ch, "1805137");
    app.order_until(&id, |v| v["status"] == "succeeded").await;
}

#[tokio::test]
async fn no_keyed_order_code_reaches_a_log_at_any_level() {
    // The daemon's tasks run on this test's thread (see `capture`).
    let logs = voicepay_testkit::log::capture();
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    let (id, code) = inbound_order(&app, "IC8", CALLER).await;
    let wrong = other_code(&code);
    let ch = "1712345678.52";
    dial_in(&fake, ch, CALLER);
    wait_plays(&fake, ch, 1).await;
    keys(&fake, ch, &wrong);
    wait_plays(&fake, ch, 2).await;
    keys(&fake, ch, &code);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    // The welcome: logged after the claim.
    wait_plays(&fake, ch, 3).await;
    assert_eq!(wrong_codes(&app, CALLER).await, 1);
    let logs = logs.text();
    assert!(
        logs.contains("wrong order code") && logs.contains("inbound call claimed the order"),
        "the daemon's logs were not captured: {logs}"
    );
    for secret in [&code, &wrong] {
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
}
