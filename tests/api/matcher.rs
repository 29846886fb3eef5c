//! The matcher against the stub issuer, on SQLite and on PostgreSQL: orders
//! come in through the real API, are put `in_call` as a call would, and the
//! keyed secret goes through `BankMatcher`. Balances on the stub prove how
//! many times money moved.

use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use voicepay::bank::{AuthRequest, IssuerLink, Latency, Secret, StubIssuer};
use voicepay::crypto::{KeyRing, PinBlock, Vault, ZonePinKey};
use voicepay::domain::{Amount, CallerNumber, CardNumber, IdNumber, OrderStatus, Phone};
use voicepay::domain::{Cvn2, Expiry, PinDigits, Verification};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, MatcherConfig, Recovery};
use voicepay::matcher::{CallRef, Via};
use voicepay::store::{Store, Transition};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

use crate::matcher_rig::{answer_callback, fast, new_order, own_channel, store_and_keys};

const PHONE: &str = "13800138000";
const HOLDER: &str = "11010519491231002X";
const RIGHT_PIN: &str = "805137";
const AMOUNT: i64 = 12345;
const START_FEN: i64 = 10_000_000;

/// The app, a second store on its database, and a matcher on a stub issuer
/// with short timings and a clock the test can move.
struct Rig {
    app: TestApp,
    store: Store,
    zpk: ZonePinKey,
    issuer: Arc<StubIssuer>,
    matcher: BankMatcher<Arc<StubIssuer>>,
    /// Seconds added to the wall clock, for the matcher and the issuer.
    skew: Arc<AtomicI64>,
}

async fn rig(app: TestApp) -> Rig {
    let (store, ring) = store_and_keys(&app).await;
    let vault = Arc::new(Vault::new(&ring));
    let skew = Arc::new(AtomicI64::new(0));
    let clock: voicepay::clock::SharedClock = {
        let skew = skew.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(skew.load(Ordering::SeqCst))
        })
    };
    let issuer = Arc::new(
        StubIssuer::builtin(ring.zpk())
            .with_clock(clock.clone())
            .with_latency(Latency {
                slow: Duration::from_millis(300),
                no_answer: Duration::from_secs(30),
            }),
    );
    let matcher = BankMatcher::new(store.clone(), vault, ring.zpk(), issuer.clone(), fast())
        .with_clock(clock);
    Rig {
        app,
        store,
        zpk: ring.zpk(),
        issuer,
        matcher,
        skew,
    }
}

/// The mobile a presented caller ID names, as the inbound flow reads it.
fn caller(presented: &str) -> Phone {
    CallerNumber::parse(presented).phone().cloned().unwrap()
}

fn pin(digits: &str) -> Verification {
    Verification::Pin(PinDigits::parse(digits).unwrap())
}

fn card_details(expiry: &str, cvn2: &str) -> Verification {
    Verification::Card {
        expiry: Expiry::parse(expiry).unwrap(),
        cvn2: Cvn2::parse(cvn2).unwrap(),
    }
}

fn card(pan: &str) -> CardNumber {
    CardNumber::parse(pan).unwrap()
}

impl Rig {
    /// A new callback order for `pan` through the API, with its call
    /// placed (the attempt row on [`own_channel`]) and moved to `in_call`,
    /// as the callback flow does when the cardholder answers.
    async fn order_in_call(&self, pan: &str) -> String {
        let id = new_order(&self.app, pan, false).await;
        self.answered(&id).await;
        id
    }

    /// The callback for the `pending` order is placed on [`own_channel`]
    /// and answered: `in_call`.
    async fn answered(&self, id: &str) {
        answer_callback(&self.store, id).await;
    }

    /// The secret keyed on the order's own callback, as `BankMatcher::verify`.
    async fn verify(&self, id: &str, v: Verification) -> Verdict {
        self.verify_on(id, &own_channel(id), &Via::Callback, v)
            .await
    }

    /// The secret keyed on `channel_id`, a call that came `via`, as
    /// `BankMatcher::verify`.
    async fn verify_on(&self, id: &str, channel_id: &str, via: &Via, v: Verification) -> Verdict {
        self.matcher
            .verify(id, CallRef { channel_id, via }, v)
            .await
    }

    /// The same through the `Matcher` port, as the call runner asks.
    async fn verify_from_runner(&self, id: &str, v: Verification) -> Verdict {
        let channel = own_channel(id);
        let call = CallRef {
            channel_id: &channel,
            via: &Via::Callback,
        };
        voicepay::matcher::Matcher::verify(&self.matcher, id, call, v).await
    }

    async fn moved(&self, id: &str, from: OrderStatus, to: OrderStatus) {
        let now = voicepay::store::now_ms();
        if to == OrderStatus::Authorizing {
            // The matcher's own move, the only way into `authorizing`.
            let row = self.store.start_authorization(id, "test", now).await;
            assert!(row.unwrap().is_some());
            return;
        }
        let t = Transition {
            from,
            to,
            result: None,
            detail: Some("test"),
        };
        assert!(self.store.transition(id, t, now).await.unwrap());
    }

    /// The order as the merchant sees it.
    async fn order(&self, id: &str) -> Value {
        let resp = self
            .app
            .get(&format!("/v1/orders/{id}"), &self.app.api_key)
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn status(&self, id: &str) -> String {
        self.order(id).await["status"].as_str().unwrap().to_owned()
    }

    fn balance(&self, pan: &str) -> i64 {
        self.issuer.available_fen(&card(pan)).unwrap()
    }

    /// The order's audit log details, in order.
    async fn events(&self, id: &str) -> Vec<String> {
        crate::matcher_rig::events(&self.store, id).await
    }

    async fn bindings(&self) -> Value {
        let resp = self
            .app
            .get(&format!("/v1/bindings?phone={PHONE}"), &self.app.api_key)
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Sends an authorization straight to the issuer, as a matcher that
    /// crashed right after sending would have.
    async fn authorize_directly(&self, key: &str, pan: &str, pin_digits: &str) {
        let pan = card(pan);
        let block = PinBlock::from_pin(&PinDigits::parse(pin_digits).unwrap(), &pan, &self.zpk);
        let req = AuthRequest {
            idempotency_key: key.to_owned(),
            order_id: key.split(':').next().unwrap_or(key).to_owned(),
            acceptor_id: None,
            amount: Amount::parse(AMOUNT, i64::MAX).unwrap(),
            card: pan,
            id_number: IdNumber::parse(HOLDER).unwrap(),
            secret: Secret::PinBlock(block),
        };
        self.issuer.authorize(req).await.unwrap();
    }
}

fn assert_result(order: &Value, status: &str, code: &str, resp_code: &str) {
    assert_eq!(order["status"], status, "{order}");
    assert_eq!(order["result"]["code"], code, "{order}");
    assert_eq!(order["result"]["resp_code"], resp_code, "{order}");
}

/// No secret and no full number in the audit log.
fn assert_no_secret(events: &[String]) {
    for e in events {
        for secret in [RIGHT_PIN, "111111", "1230", "6222000000000", HOLDER] {
            assert!(!e.contains(secret), "{e}");
        }
    }
}

async fn debit_right_pin_succeeds_and_binds_the_card(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    assert_eq!(r.verify(&id, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
    let events = r.events(&id).await;
    assert!(
        events.iter().any(|e| e == "bank authorize attempt 1"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("status approved: auth ")),
        "{events:?}"
    );
    assert_no_secret(&events);
    let b = r.bindings().await;
    let list = b["bindings"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{b}");
    assert_eq!(list[0]["card"]["masked"], "622200******0017");
    // A later phone-only order uses the binding, and paying it keeps the
    // one binding.
    let mut body = order_body("Mbound");
    let o = body.as_object_mut().unwrap();
    o.remove("card_number");
    o.remove("id_number");
    let resp = r.app.create_order(&body).await;
    assert_eq!(resp.status(), 201);
    let bound: Value = resp.json().await.unwrap();
    assert_eq!(bound["bound"], true);
    let id2 = bound["id"].as_str().unwrap().to_owned();
    r.answered(&id2).await;
    assert_eq!(r.verify(&id2, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_eq!(r.balance(pan), START_FEN - 2 * AMOUNT);
    assert_eq!(r.bindings().await["bindings"].as_array().unwrap().len(), 1);
}

async fn wrong_pin_goes_back_to_the_caller_then_right_pin_succeeds(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    assert_eq!(
        r.verify(&id, pin("111111")).await,
        Verdict::WrongSecret { tries_left: 2 }
    );
    assert_eq!(r.status(&id).await, "in_call");
    assert_eq!(r.balance(pan), START_FEN);
    assert_eq!(r.verify(&id, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
    // One idempotency key per attempt.
    let events = r.events(&id).await;
    for n in [1, 2] {
        let e = format!("bank authorize attempt {n}");
        assert!(events.contains(&e), "{events:?}");
    }
    assert_no_secret(&events);
}

async fn two_verifications_at_once_authorize_once(app: TestApp) {
    let r = rig(app).await;
    // The slow card keeps the first authorization open while the second
    // verification arrives.
    let pan = "6222000000000041";
    let id = r.order_in_call(pan).await;
    let (a, b) = tokio::join!(r.verify(&id, pin(RIGHT_PIN)), r.verify(&id, pin(RIGHT_PIN)));
    assert_eq!((a, b), (Verdict::Approved, Verdict::Approved));
    assert_eq!(r.balance(pan), START_FEN - AMOUNT, "debited once");
    let events = r.events(&id).await;
    let sent = events
        .iter()
        .filter(|e| e.starts_with("bank authorize"))
        .count();
    assert_eq!(sent, 1, "{events:?}");
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
}

async fn no_answer_is_resolved_by_query_with_one_debit(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000058";
    let id = r.order_in_call(pan).await;
    let started = std::time::Instant::now();
    assert_eq!(r.verify(&id, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT, "debited once");
    let events = r.events(&id).await;
    assert!(
        events.iter().any(|e| e == "bank no answer; querying"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "bank query 1: answered"),
        "{events:?}"
    );
    let sent = events
        .iter()
        .filter(|e| e.starts_with("bank authorize"))
        .count();
    assert_eq!(sent, 1, "never a second authorization: {events:?}");
}

async fn third_wrong_pin_locks_the_card_for_the_day(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    for left in [2, 1] {
        assert_eq!(
            r.verify(&id, pin("111111")).await,
            Verdict::WrongSecret { tries_left: left }
        );
    }
    assert_eq!(
        r.verify(&id, pin("111111")).await,
        Verdict::Failed(voicepay::domain::ResultCode::PinTriesExceeded)
    );
    assert_result(&r.order(&id).await, "failed", "pin_tries_exceeded", "67");
    // A new order for the same card is refused the same day, even with the
    // right PIN, and no money moves.
    let later = r.order_in_call(pan).await;
    assert_eq!(
        r.verify(&later, pin(RIGHT_PIN)).await,
        Verdict::Failed(voicepay::domain::ResultCode::PinTriesExceeded)
    );
    assert_result(&r.order(&later).await, "failed", "pin_tries_exceeded", "67");
    assert_eq!(r.balance(pan), START_FEN);
    let events = r.events(&later).await;
    assert!(
        !events.iter().any(|e| e.starts_with("bank authorize")),
        "{events:?}"
    );
    // The next Shanghai day the card pays again.
    r.skew.store(86_400, Ordering::SeqCst);
    let tomorrow = r.order_in_call(pan).await;
    sqlx::query("UPDATE orders SET expires_at = expires_at + 86400000 WHERE id = $1")
        .bind(&tomorrow)
        .execute(&r.app.pool)
        .await
        .unwrap();
    assert_eq!(r.verify(&tomorrow, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
}

async fn credit_card_expiry_and_cvn2(app: TestApp) {
    let r = rig(app).await;
    let pan = "6250000000000012";
    let id = r.order_in_call(pan).await;
    assert!(matches!(
        r.verify(&id, card_details("1230", "124")).await,
        Verdict::WrongSecret { .. }
    ));
    assert_eq!(r.status(&id).await, "in_call");
    assert_eq!(
        r.verify(&id, card_details("1230", "123")).await,
        Verdict::Approved
    );
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
    assert_no_secret(&r.events(&id).await);
}

async fn issuer_declines_fail_the_order_with_their_code(app: TestApp) {
    use voicepay::domain::ResultCode::*;
    let r = rig(app).await;
    for (pan, code, name, resp) in [
        (
            "6222000000000025",
            InsufficientFunds,
            "insufficient_funds",
            "64",
        ),
        ("6222000000000033", CardRestricted, "card_restricted", "63"),
        (
            "6222000000000066",
            IssuerUnavailable,
            "issuer_unavailable",
            "03",
        ),
    ] {
        let id = r.order_in_call(pan).await;
        assert_eq!(r.verify(&id, pin(RIGHT_PIN)).await, Verdict::Failed(code));
        assert_result(&r.order(&id).await, "failed", name, resp);
    }
    let id = r.order_in_call("6250000000000020").await;
    assert_eq!(
        r.verify(&id, card_details("1230", "123")).await,
        Verdict::Failed(CardExpired)
    );
    assert_result(&r.order(&id).await, "failed", "card_expired", "73");
    assert_eq!(r.bindings().await["bindings"].as_array().unwrap().len(), 0);
}

async fn expired_order_is_refused_without_the_bank(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    sqlx::query("UPDATE orders SET expires_at = $1 WHERE id = $2")
        .bind(voicepay::store::now_ms() - 1)
        .bind(&id)
        .execute(&r.app.pool)
        .await
        .unwrap();
    assert_eq!(
        r.verify(&id, pin(RIGHT_PIN)).await,
        Verdict::Failed(voicepay::domain::ResultCode::OrderExpired)
    );
    let order = r.order(&id).await;
    assert_eq!(order["status"], "expired");
    assert_eq!(order["result"]["code"], "order_expired");
    assert_eq!(r.balance(pan), START_FEN);
}

async fn recover_settles_orders_left_in_authorizing(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    // Crashed after the issuer approved attempt 1.
    let paid = r.order_in_call(pan).await;
    r.moved(&paid, OrderStatus::InCall, OrderStatus::Authorizing)
        .await;
    r.authorize_directly(&format!("{paid}:1"), pan, RIGHT_PIN)
        .await;
    // Crashed before anything reached the issuer.
    let unsent = r.order_in_call(pan).await;
    r.moved(&unsent, OrderStatus::InCall, OrderStatus::Authorizing)
        .await;
    assert_eq!(
        r.matcher.recover().await,
        Recovery {
            settled: 2,
            unresolved: 0
        }
    );
    assert_result(&r.order(&paid).await, "succeeded", "approved", "00");
    assert_result(
        &r.order(&unsent).await,
        "failed",
        "issuer_unavailable",
        "03",
    );
    assert_eq!(r.balance(pan), START_FEN - AMOUNT, "debited once");
    assert_eq!(r.bindings().await["bindings"].as_array().unwrap().len(), 1);
    // Nothing left: a second run does nothing.
    assert_eq!(r.matcher.recover().await, Recovery::default());
}

async fn recover_leaves_an_order_it_cannot_resolve(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    r.moved(&id, OrderStatus::InCall, OrderStatus::Authorizing)
        .await;
    r.issuer.set_offline(true);
    assert_eq!(
        r.matcher.recover().await,
        Recovery {
            settled: 0,
            unresolved: 1
        }
    );
    assert_eq!(r.status(&id).await, "authorizing");
    r.issuer.set_offline(false);
    assert_eq!(r.matcher.recover().await.settled, 1);
    assert_eq!(r.status(&id).await, "failed");
}

/// Recovery never races a live attempt: an order listed while in
/// `authorizing` that went back to the caller and was keyed again before
/// the wait ran out is left to the live verification.
async fn recover_leaves_a_newer_live_attempt_alone(app: TestApp) {
    let r = rig(app).await;
    let ring = KeyRing::load(&r.app.settings.crypto).expect("the app's keys");
    let patient = BankMatcher::new(
        r.store.clone(),
        Arc::new(Vault::new(&ring)),
        ring.zpk(),
        r.issuer.clone(),
        MatcherConfig {
            recover_after: Duration::from_millis(400),
            ..fast()
        },
    );
    let id = r.order_in_call("6222000000000017").await;
    r.moved(&id, OrderStatus::InCall, OrderStatus::Authorizing)
        .await;
    let recovery = tokio::spawn(async move { patient.recover().await });
    // The scenario's timing, not a wait: recovery lists the order while it
    // is `authorizing` (nothing outside it shows that it has).
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Attempt 1 was a wrong PIN; the caller keys attempt 2 (live), a
    // moment later.
    r.moved(&id, OrderStatus::Authorizing, OrderStatus::InCall)
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.moved(&id, OrderStatus::InCall, OrderStatus::Authorizing)
        .await;
    assert_eq!(recovery.await.unwrap(), Recovery::default());
    assert_eq!(r.status(&id).await, "authorizing");
    let events = r.events(&id).await;
    assert!(
        !events.iter().any(|e| e.contains("recovery")),
        "recovery left the live attempt alone: {events:?}"
    );
}

/// One wrong-PIN answer recorded twice (recovery on two nodes, or recovery
/// and the live call) counts once; the next answer counts again.
async fn a_wrong_pin_answer_counts_once(app: TestApp) {
    let r = rig(app).await;
    let now = voicepay::store::now_ms();
    let day = "2026-11-25";
    let count = |key: &'static str, at_least: i64| {
        let store = r.store.clone();
        async move {
            store
                .record_wrong_pin("fp-test", day, key, at_least, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("ord_a:1", 1).await, 1);
    assert_eq!(count("ord_a:1", 1).await, 1, "same answer again");
    assert_eq!(count("ord_a:2", 1).await, 2);
    assert_eq!(count("ord_b:1", 3).await, 3, "the issuer's lock");
    assert_eq!(count("ord_b:1", 3).await, 3);
}

/// The call runner asks through the `Matcher` port with the order in
/// `in_call`; the matcher alone moves it to `authorizing` and settles it,
/// so a later move out of `authorizing` finds nothing to do.
async fn call_runner_path_settles_the_order_once(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let id = r.order_in_call(pan).await;
    assert_eq!(
        r.verify_from_runner(&id, pin("111111")).await,
        Verdict::WrongSecret { tries_left: 2 }
    );
    assert_eq!(r.status(&id).await, "in_call");
    assert_eq!(
        r.verify_from_runner(&id, pin(RIGHT_PIN)).await,
        Verdict::Approved
    );
    assert_result(&r.order(&id).await, "succeeded", "approved", "00");
    // A move out of `authorizing` afterwards finds nothing to do.
    let t = Transition {
        from: OrderStatus::Authorizing,
        to: OrderStatus::Succeeded,
        result: Some(voicepay::domain::ResultCode::Approved),
        detail: None,
    };
    assert!(!r
        .store
        .transition(&id, t, voicepay::store::now_ms())
        .await
        .unwrap());
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
}

/// A live call (transfer or inbound) takes the `pending` order `id` on
/// `channel`, as those flows do.
async fn claim_live(r: &Rig, id: &str, channel: &str) {
    let now = voicepay::store::now_ms();
    let claimed = r
        .store
        .claim_live_call(id, "node-t", channel, "test call", now, now + 600_000)
        .await
        .unwrap();
    assert!(claimed.is_some(), "the pending order is claimed");
}

/// A new order in `mode` (transfer or inbound) through the API: (id, code).
async fn live_order(r: &Rig, mode: &str, code_field: &str) -> (String, String) {
    let n = voicepay::crypto::random_hex(4);
    let mut body = order_body(&format!("L{n}"));
    body["mode"] = mode.into();
    let resp = r.app.create_order(&body).await;
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    (
        order["id"].as_str().unwrap().to_owned(),
        order[code_field].as_str().unwrap().to_owned(),
    )
}

/// Whether the issuer ever heard of an attempt of the order.
async fn issuer_saw(r: &Rig, id: &str) -> bool {
    for n in 1..=3 {
        if r.issuer
            .query(&format!("{id}:{n}"))
            .await
            .unwrap()
            .is_some()
        {
            return true;
        }
    }
    false
}

/// A PIN keyed on another order's call (or on a channel nobody placed)
/// never reaches the bank, and leaves the order to its own call.
async fn a_verification_from_a_foreign_channel_is_refused_without_the_bank(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let x = r.order_in_call(pan).await;
    let y = r.order_in_call(pan).await;
    for channel in [own_channel(&y), "vp-unknown-1".to_owned(), String::new()] {
        assert_eq!(
            r.verify_on(&x, &channel, &Via::Callback, pin(RIGHT_PIN))
                .await,
            Verdict::Failed(voicepay::domain::ResultCode::OrderExpired),
            "{channel:?}"
        );
    }
    assert_eq!(r.balance(pan), START_FEN, "no money moved");
    assert!(!issuer_saw(&r, &x).await, "the issuer never heard of it");
    assert_eq!(
        r.status(&x).await,
        "in_call",
        "the order waits for its call"
    );
    let events = r.events(&x).await;
    assert!(!events.iter().any(|e| e.contains("authoriz")), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e == "matcher refused a verification from a call not of this order"),
        "{events:?}"
    );
    assert_no_secret(&events);
    // its own call still pays it, once
    assert_eq!(r.verify(&x, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_result(&r.order(&x).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
    assert_eq!(r.status(&y).await, "in_call");
}

/// A foreign call's runner asks through the `Matcher` port: refused
/// without the bank, the order left in `in_call` for its own call.
async fn a_foreign_call_runner_is_refused_and_the_order_left_alone(app: TestApp) {
    use voicepay::matcher::Matcher;
    let r = rig(app).await;
    let pan = "6222000000000017";
    let x = r.order_in_call(pan).await;
    let y = r.order_in_call(pan).await;
    let channel = own_channel(&y);
    let foreign = CallRef {
        channel_id: &channel,
        via: &Via::Callback,
    };
    assert_eq!(
        Matcher::verify(&r.matcher, &x, foreign, pin(RIGHT_PIN)).await,
        Verdict::Failed(voicepay::domain::ResultCode::OrderExpired)
    );
    assert_eq!(r.status(&x).await, "in_call");
    assert_eq!(r.balance(pan), START_FEN);
    assert!(!issuer_saw(&r, &x).await);
    assert_eq!(
        r.verify_from_runner(&x, pin(RIGHT_PIN)).await,
        Verdict::Approved
    );
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
}

/// A transferred call must carry the order's code; a callback channel or
/// another code does not pay a transfer order.
async fn a_transfer_call_must_present_the_orders_code(app: TestApp) {
    let r = rig(app).await;
    let (id, code) = live_order(&r, "transfer", "transfer_code").await;
    let channel = "transfer-ch-1";
    claim_live(&r, &id, channel).await;
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    for via in [
        Via::Transfer { code: wrong.into() },
        Via::Callback,
        Via::Inbound {
            caller: Phone::parse("13800138000").unwrap(),
        },
    ] {
        assert_eq!(
            r.verify_on(&id, channel, &via, pin(RIGHT_PIN)).await,
            Verdict::Failed(voicepay::domain::ResultCode::OrderExpired),
            "{via:?}"
        );
    }
    // the right code on another channel is not the call either
    let via = Via::Transfer { code: code.clone() };
    assert_eq!(
        r.verify_on(&id, "transfer-ch-2", &via, pin(RIGHT_PIN))
            .await,
        Verdict::Failed(voicepay::domain::ResultCode::OrderExpired)
    );
    assert_eq!(r.balance("6222000000000017"), START_FEN);
    assert!(!issuer_saw(&r, &id).await);
    assert_eq!(
        r.verify_on(&id, channel, &via, pin(RIGHT_PIN)).await,
        Verdict::Approved
    );
    assert_eq!(r.balance("6222000000000017"), START_FEN - AMOUNT);
}

/// An inbound call pays only an order of the phone it calls from
/// (`+86` and the like removed, as for the order's phone).
async fn an_inbound_call_must_come_from_the_orders_phone(app: TestApp) {
    let r = rig(app).await;
    let (id, _) = live_order(&r, "inbound", "order_code").await;
    let channel = "inbound-ch-1";
    claim_live(&r, &id, channel).await;
    for caller in ["13900139000", "13800138001"] {
        let via = Via::Inbound {
            caller: Phone::parse(caller).unwrap(),
        };
        assert_eq!(
            r.verify_on(&id, channel, &via, pin(RIGHT_PIN)).await,
            Verdict::Failed(voicepay::domain::ResultCode::OrderExpired),
            "{caller:?}"
        );
    }
    assert!(!issuer_saw(&r, &id).await);
    let via = Via::Inbound {
        caller: caller(&format!("+86{PHONE}")),
    };
    assert_eq!(
        r.verify_on(&id, channel, &via, pin(RIGHT_PIN)).await,
        Verdict::Approved
    );
    assert_eq!(r.balance("6222000000000017"), START_FEN - AMOUNT);
}

/// Issue #12 fault 4: the matcher normalises the caller ID as the inbound
/// lookup does (a trunk's `0`, `+86`, `0086`, `86` before the mobile), and a
/// call that named its order by the order code (`InboundByCode`: no mobile
/// caller ID) belongs to the order it claimed, whatever its caller ID, but
/// to no other order and on no other channel.
async fn an_inbound_call_is_the_orders_by_its_normalised_caller_id_or_its_code(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    // Each presented form pays an order of its own, on its own channel.
    for (n, caller) in [
        format!("0{PHONE}"),
        format!("0086{PHONE}"),
        format!("86{PHONE}"),
    ]
    .into_iter()
    .enumerate()
    {
        let (id, _) = live_order(&r, "inbound", "order_code").await;
        let channel = format!("inbound-cid-{n}");
        claim_live(&r, &id, &channel).await;
        let via = Via::Inbound {
            caller: self::caller(&caller),
        };
        assert_eq!(
            r.verify_on(&id, &channel, &via, pin(RIGHT_PIN)).await,
            Verdict::Approved,
            "{caller:?}"
        );
    }
    // By its code: the claimed channel pays; another channel, or the
    // code-identified kind of call on a callback order, does not.
    let (id, _) = live_order(&r, "inbound", "order_code").await;
    claim_live(&r, &id, "inbound-code-1").await;
    let foreign = r.order_in_call(pan).await;
    for (order, channel) in [
        (&id, "inbound-code-2".to_owned()),
        (&foreign, own_channel(&foreign)),
    ] {
        assert_eq!(
            r.verify_on(order, &channel, &Via::InboundByCode, pin(RIGHT_PIN))
                .await,
            Verdict::Failed(voicepay::domain::ResultCode::OrderExpired),
            "{channel}"
        );
        assert!(!issuer_saw(&r, order).await, "{channel}");
    }
    assert_eq!(
        r.verify_on(&id, "inbound-code-1", &Via::InboundByCode, pin(RIGHT_PIN))
            .await,
        Verdict::Approved
    );
    assert_eq!(r.status(&foreign).await, "in_call");
    assert_eq!(r.balance(pan), START_FEN - 4 * AMOUNT);
}

/// Wrong-secret counters as stored: (fingerprint, count) per card, per phone.
type Counters = (Vec<(String, i64)>, Vec<(String, i64)>);

/// A stranger's phone, and a second cardholder's (card …0014's holder).
const STRANGER: &str = "13900139000";
const OTHER_HOLDER: &str = "310115198506154322";

impl Rig {
    /// A new callback order in `in_call` for `pan` with this phone and ID
    /// number, webhooks for every move queued (to a receiver that never
    /// answers: only the queued bodies matter here).
    async fn order_as(&self, pan: &str, phone: &str, id_number: &str) -> String {
        let n = voicepay::crypto::random_hex(4);
        let mut body = order_body(&format!("G{n}"));
        body["card_number"] = pan.into();
        body["phone"] = phone.into();
        body["id_number"] = id_number.into();
        body["notify_url"] = "https://merchant.example/hook".into();
        body["notify_progress"] = true.into();
        let resp = self.app.create_order(&body).await;
        assert_eq!(resp.status(), 201);
        let order: Value = resp.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        self.answered(&id).await;
        id
    }

    /// What the merchant can learn of the order: its result in the order
    /// view, its status events (status, from, detail, result code) and its
    /// webhook bodies (type, status, result), ids and times left out.
    async fn merchant_sees(&self, id: &str) -> Value {
        let order = self.order(id).await;
        let events: Vec<Value> = self
            .store
            .events_after(id, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::json!([
                    e.kind,
                    e.from_status.map(|s| s.as_str()),
                    e.to_status.map(|s| s.as_str()),
                    e.detail
                ])
            })
            .collect();
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT payload FROM webhook_outbox WHERE order_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&self.app.pool)
        .await
        .unwrap();
        let mut hooks: Vec<Value> = bodies
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_str(b).unwrap();
                serde_json::json!([v["type"], v["data"]["status"], v["data"]["result"]])
            })
            .collect();
        // Which webhooks were sent; their order is the events' above.
        // Two written in the same millisecond (the last `authorizing` and
        // `failed` of a fast stub answer) have no order between them: their
        // ids are random.
        hooks.sort_by_key(Value::to_string);
        serde_json::json!({
            "status": order["status"],
            "result": order["result"],
            "events": events,
            "webhooks": hooks,
            "raw": bodies,
        })
    }

    /// Today's wrong-secret counters as stored: (card fingerprints, phone
    /// fingerprints), with their counts.
    async fn counters(&self) -> Counters {
        let cards = sqlx::query_as("SELECT card_fp, count FROM pin_tries")
            .fetch_all(&self.app.pool)
            .await
            .unwrap();
        let phones = sqlx::query_as("SELECT phone_fp, count FROM phone_secret_tries")
            .fetch_all(&self.app.pool)
            .await
            .unwrap();
        (cards, phones)
    }
}

/// The counters hold keyed fingerprints only: no card, phone, ID number or
/// secret.
fn assert_counters_hold_no_secret(counters: &Counters) {
    let secrets = voicepay_testkit::secrets::Secrets::new()
        .pin(RIGHT_PIN)
        .pin("111111")
        .expiry_cvn2("1230", "124")
        .card("6222000000000017")
        .card("6250000000000012")
        .id_number(HOLDER)
        .id_number(OTHER_HOLDER);
    for (fp, _) in counters.0.iter().chain(&counters.1) {
        assert_eq!(fp.len(), 64, "a keyed hash: {fp}");
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
        for number in [PHONE, STRANGER, "6222000000000017", "6250000000000012"] {
            assert!(!fp.contains(number), "{fp}");
        }
        assert_eq!(secrets.scan("counter", fp.as_bytes()), vec![]);
    }
}

/// Enumerating expiry + CVN2 across calls: wrong tries are counted per card
/// per day like PINs, the third locks the card (67), and a later order for
/// the card, even from another phone and with the right details, is refused
/// before the issuer until the next day.
async fn expiry_and_cvn2_guesses_lock_the_card_for_the_day(app: TestApp) {
    use voicepay::domain::ResultCode::PinTriesExceeded;
    let r = rig(app).await;
    let pan = "6250000000000012";
    let first = r.order_as(pan, STRANGER, HOLDER).await;
    assert_eq!(
        r.verify(&first, card_details("1230", "124")).await,
        Verdict::WrongSecret { tries_left: 2 }
    );
    // a new call (a new order) does not start the count again
    let second = r.order_as(pan, STRANGER, HOLDER).await;
    assert_eq!(
        r.verify(&second, card_details("1230", "125")).await,
        Verdict::WrongSecret { tries_left: 1 }
    );
    assert_eq!(
        r.verify(&second, card_details("1230", "126")).await,
        Verdict::Failed(PinTriesExceeded)
    );
    assert_result(
        &r.order(&second).await,
        "failed",
        "pin_tries_exceeded",
        "67",
    );
    let later = r.order_as(pan, PHONE, HOLDER).await;
    assert_eq!(
        r.verify(&later, card_details("1230", "123")).await,
        Verdict::Failed(PinTriesExceeded)
    );
    assert_result(&r.order(&later).await, "failed", "pin_tries_exceeded", "67");
    assert!(!issuer_saw(&r, &later).await, "refused before the issuer");
    assert_eq!(r.balance(pan), START_FEN);
    let counters = r.counters().await;
    assert_eq!(counters.0.iter().map(|c| c.1).collect::<Vec<_>>(), [3]);
    assert_counters_hold_no_secret(&counters);
    for id in [&first, &second, &later] {
        assert_no_secret(&r.events(id).await);
    }
    // The next Shanghai day the card pays again.
    r.skew.store(86_400, Ordering::SeqCst);
    let tomorrow = r.order_as(pan, PHONE, HOLDER).await;
    sqlx::query("UPDATE orders SET expires_at = expires_at + 86400000 WHERE id = $1")
        .bind(&tomorrow)
        .execute(&r.app.pool)
        .await
        .unwrap();
    assert_eq!(
        r.verify(&tomorrow, card_details("1230", "123")).await,
        Verdict::Approved
    );
}

/// One phone guessing across cards is stopped by its own limit
/// (`limits.wrong_secrets_per_phone_day`), while the cards themselves stay
/// usable from their holders' phones.
async fn one_phone_guessing_across_cards_is_locked_for_the_day(app: TestApp) {
    use voicepay::domain::ResultCode::PinTriesExceeded;
    let r = rig(app).await;
    let limits = voicepay::config::VelocityLimits {
        wrong_secrets_per_card_day: 3,
        wrong_secrets_per_phone_day: 4,
    };
    let ring = KeyRing::load(&r.app.settings.crypto).expect("the app's keys");
    let matcher = BankMatcher::new(
        r.store.clone(),
        Arc::new(Vault::new(&ring)),
        ring.zpk(),
        r.issuer.clone(),
        fast(),
    )
    .with_limits(limits);
    let verify = |id: String, v: Verification| {
        let matcher = &matcher;
        async move {
            let channel = own_channel(&id);
            let call = CallRef {
                channel_id: &channel,
                via: &Via::Callback,
            };
            matcher.verify(&id, call, v).await
        }
    };
    let credit = r.order_as("6250000000000012", STRANGER, HOLDER).await;
    for left in [2, 1] {
        assert_eq!(
            verify(credit.clone(), card_details("1230", "124")).await,
            Verdict::WrongSecret { tries_left: left }
        );
    }
    let debit = r.order_as("6222000000000017", STRANGER, HOLDER).await;
    assert_eq!(
        verify(debit.clone(), pin("111111")).await,
        Verdict::WrongSecret { tries_left: 1 },
        "the phone's last try"
    );
    assert_eq!(
        verify(debit.clone(), pin("111112")).await,
        Verdict::Failed(PinTriesExceeded)
    );
    // a third card from the same phone: refused before the issuer
    let third = r.order_as("6217000000000014", STRANGER, OTHER_HOLDER).await;
    assert_eq!(
        verify(third.clone(), pin("246810")).await,
        Verdict::Failed(PinTriesExceeded)
    );
    assert_result(&r.order(&third).await, "failed", "pin_tries_exceeded", "67");
    assert!(!issuer_saw(&r, &third).await);
    // the cardholders' own phones still pay with those cards
    let own = r.order_as("6222000000000017", PHONE, HOLDER).await;
    assert_eq!(verify(own, pin(RIGHT_PIN)).await, Verdict::Approved);
    let counters = r.counters().await;
    let mut phones: Vec<i64> = counters.1.iter().map(|c| c.1).collect();
    phones.sort_unstable();
    assert_eq!(phones, [4], "one phone counted: {counters:?}");
    assert_counters_hold_no_secret(&counters);
}

/// An ID mismatch answers the caller and the merchant exactly as a wrong
/// secret does (the same verdicts and tries left, order view, status events
/// and webhook bodies); only the audit log keeps 66. Here the stranger even
/// keys the right PIN with the wrong ID, beside a twin order whose right ID
/// comes with a wrong PIN.
async fn an_id_mismatch_looks_exactly_like_a_wrong_secret(app: TestApp) {
    let r = rig(app).await;
    // card …0017 with the wrong holder's ID, the right PIN
    let mismatch = r.order_as("6222000000000017", STRANGER, OTHER_HOLDER).await;
    // card …0014 with its holder's ID, a wrong PIN
    let wrong = r
        .order_as("6217000000000014", "13700137000", OTHER_HOLDER)
        .await;
    let mut said = Vec::new();
    for _ in 0..3 {
        let a = r.verify(&mismatch, pin(RIGHT_PIN)).await;
        let b = r.verify(&wrong, pin("111111")).await;
        assert_eq!(a, b);
        said.push(a);
    }
    assert_eq!(
        said,
        [
            Verdict::WrongSecret { tries_left: 2 },
            Verdict::WrongSecret { tries_left: 1 },
            Verdict::Failed(voicepay::domain::ResultCode::PinTriesExceeded),
        ]
    );
    let (mut seen, mut twin) = (
        r.merchant_sees(&mismatch).await,
        r.merchant_sees(&wrong).await,
    );
    let raw = seen.as_object_mut().unwrap().remove("raw").unwrap();
    twin.as_object_mut().unwrap().remove("raw");
    assert_eq!(seen, twin);
    assert!(!seen["webhooks"].as_array().unwrap().is_empty(), "{seen}");
    let all = format!("{seen} {raw}");
    assert!(
        !all.contains("id_mismatch") && !all.contains("\"66\""),
        "{all}"
    );
    // the audit log keeps what happened
    let audit = r.events(&mismatch).await;
    let n = audit
        .iter()
        .filter(|e| *e == "bank issuer answered id_mismatch (66)")
        .count();
    assert_eq!(n, 3, "{audit:?}");
    assert_no_secret(&audit);
    assert!(!r.events(&wrong).await.iter().any(|e| e.contains("66")));
    assert_eq!(r.balance("6222000000000017"), START_FEN);
}

/// A call whose ID did not match never counts against the card: a stranger
/// holding only the card number, keying wrong PINs until the call fails,
/// does not lock the card, and the real cardholder pays right after.
async fn wrong_pins_with_a_wrong_id_do_not_lock_the_card(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    for _ in 0..2 {
        let stranger = r.order_as(pan, STRANGER, OTHER_HOLDER).await;
        for left in [2, 1] {
            assert_eq!(
                r.verify(&stranger, pin("111111")).await,
                Verdict::WrongSecret { tries_left: left }
            );
        }
        assert_eq!(
            r.verify(&stranger, pin("222222")).await,
            Verdict::Failed(voicepay::domain::ResultCode::PinTriesExceeded)
        );
        assert_result(
            &r.order(&stranger).await,
            "failed",
            "pin_tries_exceeded",
            "67",
        );
    }
    let wrong_today = r
        .issuer
        .cards()
        .into_iter()
        .find(|c| c.card == "622200******0017")
        .unwrap()
        .wrong_pins_today;
    assert_eq!(wrong_today, 0, "the issuer counted nothing");
    let counters = r.counters().await;
    assert!(counters.0.iter().all(|c| c.1 == 0), "{counters:?}");
    assert_counters_hold_no_secret(&counters);
    let own = r.order_as(pan, PHONE, HOLDER).await;
    assert_eq!(r.verify(&own, pin(RIGHT_PIN)).await, Verdict::Approved);
    assert_result(&r.order(&own).await, "succeeded", "approved", "00");
    assert_eq!(r.balance(pan), START_FEN - AMOUNT);
}

/// A bound payment checks its binding first: once the merchant deleted it,
/// the keyed PIN never reaches the issuer and the caller hears a wrong
/// secret, not counted against the card.
async fn a_bound_payment_whose_binding_is_gone_never_reaches_the_issuer(app: TestApp) {
    let r = rig(app).await;
    let pan = "6222000000000017";
    let first = r.order_in_call(pan).await;
    assert_eq!(r.verify(&first, pin(RIGHT_PIN)).await, Verdict::Approved);
    let mut body = order_body("Mboundgone");
    let o = body.as_object_mut().unwrap();
    o.remove("card_number");
    o.remove("id_number");
    let resp = r.app.create_order(&body).await;
    assert_eq!(resp.status(), 201);
    let bound: Value = resp.json().await.unwrap();
    let id = bound["id"].as_str().unwrap().to_owned();
    r.answered(&id).await;
    let binding = r.bindings().await["bindings"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gone = reqwest::Client::new()
        .delete(r.app.url(&format!("/v1/bindings/{binding}")))
        .bearer_auth(&r.app.api_key)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    assert_eq!(
        r.verify(&id, pin(RIGHT_PIN)).await,
        Verdict::WrongSecret { tries_left: 2 }
    );
    assert!(!issuer_saw(&r, &id).await);
    assert_eq!(
        r.balance(pan),
        START_FEN - AMOUNT,
        "paid once, by the first"
    );
    let audit = r.events(&id).await;
    assert!(
        audit.contains(&"bank binding no longer on file".to_owned()),
        "{audit:?}"
    );
    assert!(r.counters().await.0.iter().all(|c| c.1 == 0));
}

on_both_stores!(
    debit_right_pin_succeeds_and_binds_the_card,
    wrong_pin_goes_back_to_the_caller_then_right_pin_succeeds,
    two_verifications_at_once_authorize_once,
    no_answer_is_resolved_by_query_with_one_debit,
    third_wrong_pin_locks_the_card_for_the_day,
    credit_card_expiry_and_cvn2,
    issuer_declines_fail_the_order_with_their_code,
    expired_order_is_refused_without_the_bank,
    recover_settles_orders_left_in_authorizing,
    recover_leaves_an_order_it_cannot_resolve,
    call_runner_path_settles_the_order_once,
    a_verification_from_a_foreign_channel_is_refused_without_the_bank,
    a_foreign_call_runner_is_refused_and_the_order_left_alone,
    a_transfer_call_must_present_the_orders_code,
    an_inbound_call_must_come_from_the_orders_phone,
    an_inbound_call_is_the_orders_by_its_normalised_caller_id_or_its_code,
    recover_leaves_a_newer_live_attempt_alone,
    a_wrong_pin_answer_counts_once,
    expiry_and_cvn2_guesses_lock_the_card_for_the_day,
    one_phone_guessing_across_cards_is_locked_for_the_day,
    an_id_mismatch_looks_exactly_like_a_wrong_secret,
    wrong_pins_with_a_wrong_id_do_not_lock_the_card,
    a_bound_payment_whose_binding_is_gone_never_reaches_the_issuer,
);
