//! What the tests that drive a `BankMatcher` of their own beside the daemon
//! share (matcher.rs, refunds.rs, iso8583_issuer.rs): short matcher
//! timings, a second store and the keys on the app's database, a new
//! order through the API, and its callback placed and answered.
//! iso8583_daemon.rs creates its orders the same way.

use serde_json::Value;
use std::time::Duration;
use voicepay::bank::IssuerLink;
use voicepay::crypto::KeyRing;
use voicepay::domain::{OrderStatus, PinDigits, Verification};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, CallRef, MatcherConfig, Via};
use voicepay::store::{Store, Transition};
use voicepay_testkit::{order_body, TestApp};

/// Matcher timings short enough for a test: 800 ms for an answer, queries
/// after 50/100/200/400 ms, each allowed 500 ms, recovery at once.
pub(crate) fn fast() -> MatcherConfig {
    MatcherConfig {
        auth_timeout: Duration::from_millis(800),
        query_backoff: [50, 100, 200, 400].map(Duration::from_millis).to_vec(),
        query_timeout: Duration::from_millis(500),
        recover_after: Duration::ZERO,
    }
}

/// A second store on `app`'s database, and `app`'s keys.
pub(crate) async fn store_and_keys(app: &TestApp) -> (Store, KeyRing) {
    let store = Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
        .await
        .expect("store");
    let ring = KeyRing::load(&app.settings.crypto).expect("the app's keys");
    (store, ring)
}

/// A new order for `pan` through `app`'s API (201), from `order_body`'s
/// phone or, with `own_phone`, from a random one of its own (`[limits]
/// orders_per_phone_per_day`); its id.
pub(crate) async fn new_order(app: &TestApp, pan: &str, own_phone: bool) -> String {
    let n = voicepay::crypto::random_hex(4);
    let mut body = order_body(&format!("M{n}"));
    body["card_number"] = pan.into();
    if own_phone {
        let phone = u32::from_str_radix(&voicepay::crypto::random_hex(3), 16).unwrap();
        body["phone"] = format!("+86139{phone:08}").into();
    }
    let resp = app.create_order(&body).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let order: Value = resp.json().await.unwrap();
    order["id"].as_str().unwrap().to_owned()
}

/// The channel the tests' callback for order `id` is placed on.
pub(crate) fn own_channel(id: &str) -> String {
    format!("vp-{id}-1")
}

/// The callback for the `pending` order `id` is placed on [`own_channel`]
/// and answered: `in_call`, as the callback flow leaves it.
pub(crate) async fn answer_callback(store: &Store, id: &str) {
    let now = voicepay::store::now_ms();
    store
        .insert_attempt(id, 1, &own_channel(id), now)
        .await
        .unwrap();
    let t = Transition {
        from: OrderStatus::Pending,
        to: OrderStatus::InCall,
        result: None,
        detail: Some("test"),
    };
    assert!(store.transition(id, t, now).await.unwrap());
}

/// The PIN keyed on order `id`'s own callback, through `matcher`.
pub(crate) async fn verify_pin<I: IssuerLink>(
    matcher: &BankMatcher<I>,
    id: &str,
    pin: &str,
) -> Verdict {
    let channel = own_channel(id);
    let call = CallRef {
        channel_id: &channel,
        via: &Via::Callback,
    };
    let v = Verification::Pin(PinDigits::parse(pin).unwrap());
    matcher.verify(id, call, v).await
}

/// Order `id`'s audit log as `"{kind} {detail}"` lines, oldest first.
pub(crate) async fn events(store: &Store, id: &str) -> Vec<String> {
    store
        .events_for(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.kind, e.detail.unwrap_or_default()))
        .collect()
}
