//! Caller IDs as carriers present them at the access number (issue #12,
//! fault 4), against the scripted fake ARI server: a mobile with the
//! national trunk prefix `0` or a country-code prefix finds its orders and
//! pays (the inbound lookup and the matcher's caller-ID check agree); a
//! withheld or non-numeric caller ID is asked for the order code, which
//! alone names the order, and the call then pays it whatever its caller
//! ID. What the caller heard is read from the `play` requests the fake saw.

use super::common::{
    daemon_on as daemon, dial_in, inbound_order, keys, media, plays, settled, wait_plays, CALLER,
};
use super::inbound_code_fake_ari::{
    assert_untouched, ends_with, nothing_of_the_order_said, other_code, refused_at_once,
    wrong_code_reaches_the_limit, wrong_codes,
};
use voicepay_testkit::fake_ari::FakeAri;
use voicepay_testkit::TestApp;

/// The right PIN of the order's test card, after the `1` that confirms.
const CONFIRM_AND_PIN: &str = "1805137";

/// What the caller heard on `ch`: the order code asked for, then the
/// order's welcome (never the no-pending-order goodbye).
fn asked_for_the_code_then_welcomed(fake: &FakeAri, ch: &str) {
    let p = plays(fake, ch);
    assert_eq!(p[0].1, media(&["key-order-code"]), "{p:#?}");
    assert_eq!(
        p[1].1.first().map(String::as_str),
        Some("sound:voicepay/welcome"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .all(|(_, m)| !m.iter().any(|s| s.contains("no-pending-order"))),
        "{p:#?}"
    );
}

/// `presented` calls in on `ch`, keys the code of order `id`, then the
/// confirmation and the PIN; the order is paid.
async fn pays_by_code(
    app: &TestApp,
    fake: &FakeAri,
    ch: &str,
    presented: &str,
    id: &str,
    code: &str,
) {
    dial_in(fake, ch, presented);
    let p = wait_plays(fake, ch, 1).await;
    assert_eq!(p[0].1, media(&["key-order-code"]), "{presented:?}: {p:#?}");
    assert_untouched(app, id).await;
    keys(fake, ch, code);
    app.order_until(id, |v| v["status"] == "in_call").await;
    wait_plays(fake, ch, 2).await;
    keys(fake, ch, CONFIRM_AND_PIN);
    let v = settled(app, id).await;
    assert_eq!(v["status"], "succeeded", "{presented:?}: {v:#}");
    assert_eq!(v["result"]["code"], "approved", "{presented:?}: {v:#}");
    asked_for_the_code_then_welcomed(fake, ch);
}

#[tokio::test]
async fn a_mobile_with_a_carriers_prefix_finds_its_order_and_pays() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    for (n, prefix) in ["0", "+86", "0086", "86"].into_iter().enumerate() {
        let (id, code) = inbound_order(&app, &format!("CID{n}"), CALLER).await;
        let ch = format!("1712345679.{n}");
        pays_by_code(&app, &fake, &ch, &format!("{prefix}{CALLER}"), &id, &code).await;
    }
    // Nothing was counted as a wrong code against the phone.
    assert_eq!(wrong_codes(&app, CALLER).await, 0);
}

#[tokio::test]
async fn without_the_code_gate_a_trunk_prefixed_caller_id_alone_pays() {
    // `require_order_code = false`: the caller ID decides, so the matcher's
    // "from the order's phone" check sees `0…` as well.
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.inbound.require_order_code = false).await;
    let (id, _code) = inbound_order(&app, "CID5", CALLER).await;
    let ch = "1712345679.5";
    dial_in(&fake, ch, &format!("0{CALLER}"));
    app.order_until(&id, |v| v["status"] == "in_call").await;
    let p = wait_plays(&fake, ch, 1).await;
    assert_eq!(
        p[0].1.first().map(String::as_str),
        Some("sound:voicepay/welcome"),
        "{p:#?}"
    );
    keys(&fake, ch, CONFIRM_AND_PIN);
    let v = settled(&app, &id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
}

#[tokio::test]
async fn a_withheld_caller_keys_the_order_code_and_pays() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    // Withheld, anonymous, unknown, not digits, and a landline: none is the
    // order's phone, so the code alone names it.
    for (n, presented) in ["anonymous", "", "unknown", "Restricted", "02161234567"]
        .into_iter()
        .enumerate()
    {
        let (id, code) = inbound_order(&app, &format!("CIW{n}"), CALLER).await;
        let ch = format!("1712345680.{n}");
        pays_by_code(&app, &fake, &ch, presented, &id, &code).await;
    }
}

#[tokio::test]
async fn without_the_code_gate_a_withheld_caller_is_still_asked_for_the_code() {
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.inbound.require_order_code = false).await;
    let (id, code) = inbound_order(&app, "CIW9", CALLER).await;
    pays_by_code(&app, &fake, "1712345680.9", "anonymous", &id, &code).await;
}

#[tokio::test]
async fn callers_without_a_mobile_share_one_days_wrong_code_limit() {
    // A code is searched among every order for them, and a landline
    // number is as easy to spoof as any: withholding or changing the
    // number must not buy more guesses.
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |s| s.inbound.wrong_codes_per_day = 4).await;
    let (id, code) = inbound_order(&app, "CIW10", CALLER).await;
    let wrong = other_code(&code);
    // A withheld caller: three wrong codes, the call's tries.
    let a = "1712345680.10";
    dial_in(&fake, a, "anonymous");
    for n in 1..=3 {
        let p = wait_plays(&fake, a, n).await;
        let want: &[&str] = if n == 1 {
            &["key-order-code"]
        } else {
            &["order-code-wrong", "key-order-code"]
        };
        assert_eq!(p[n - 1].1, media(want), "{p:#?}");
        keys(&fake, a, &wrong);
    }
    ends_with(&fake, a, 4, &["order-code-wrong", "goodbye"]).await;
    // A landline: its first wrong code reaches the shared limit.
    let b = "1712345680.11";
    wrong_code_reaches_the_limit(&fake, b, "02161234567", &wrong).await;
    // Another number: refused before any code is asked for, the right one
    // included.
    let c = "1712345680.12";
    refused_at_once(&fake, c, "unknown", &code).await;
    for ch in [a, b, c] {
        nothing_of_the_order_said(&fake, ch);
    }
    assert_untouched(&app, &id).await;
    assert_eq!(wrong_codes(&app, "no-mobile").await, 4);
    // The order's own phone is not affected.
    assert_eq!(wrong_codes(&app, CALLER).await, 0);
    pays_by_code(
        &app,
        &fake,
        "1712345680.13",
        &format!("0{CALLER}"),
        &id,
        &code,
    )
    .await;
}

#[tokio::test]
async fn a_withheld_callers_order_code_reaches_no_log_at_any_level() {
    // The code is looked up in the store for them (a bound parameter):
    // still never in a log, a right one or a wrong one.
    let logs = voicepay_testkit::log::capture();
    let fake = FakeAri::start().await;
    let app = daemon(&fake, |_| {}).await;
    let (id, code) = inbound_order(&app, "CIW20", CALLER).await;
    let wrong = other_code(&code);
    let ch = "1712345680.20";
    dial_in(&fake, ch, "anonymous");
    wait_plays(&fake, ch, 1).await;
    keys(&fake, ch, &wrong);
    wait_plays(&fake, ch, 2).await;
    keys(&fake, ch, &code);
    app.order_until(&id, |v| v["status"] == "in_call").await;
    // The welcome: logged after the claim.
    wait_plays(&fake, ch, 3).await;
    assert_eq!(wrong_codes(&app, "no-mobile").await, 1);
    let logs = logs.text();
    assert!(
        logs.contains("wrong order code") && logs.contains("inbound call claimed the order"),
        "the daemon's logs were not captured: {logs}"
    );
    for secret in [&code, &wrong] {
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
    for r in fake.rest_calls() {
        assert!(
            !format!("{r:?}").contains(&code),
            "the code reached ARI: {r:?}"
        );
    }
}
