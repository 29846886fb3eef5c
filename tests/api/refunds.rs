//! Refunds (`POST /v1/orders/{id}/refunds`) and the merchant's card
//! acceptor id (F42), on SQLite and on PostgreSQL. Orders come in through
//! the daemon's API and are paid through a `BankMatcher` on a stub issuer
//! the test holds, wrapped so that every request the issuer gets is seen;
//! refunds go through a second API node on the same database whose refund
//! service is that matcher (the daemon delivers the webhooks). The stub's
//! card balances prove how many times money moved.

use serde_json::json;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voicepay::api::auth::{MerchantCache, KEY_CACHE_TTL};
use voicepay::api::limits::Limits;
use voicepay::api::AppState;
use voicepay::bank::{
    AuthRequest, AuthResponse, IssuerError, IssuerLink, RefundRequest, StubIssuer, UnknownOutcome,
};
use voicepay::crypto::Vault;
use voicepay::domain::{Amount, CardNumber};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, Recovery, RefundRefused};
use voicepay::store::{now_ms, RefundCreated, RefundRow, RefundStatus, Store};
use voicepay::telemetry::{Metrics, Readiness};
use voicepay_testkit::receiver::{spawn_app_with_receiver, Receiver};
use voicepay_testkit::{on_both_stores, order_body, wait_until, Db, TestApp};

use crate::matcher_rig::{answer_callback, fast, new_order, store_and_keys, verify_pin};

const PAN: &str = "6222000000000017";
const RIGHT_PIN: &str = "805137";
const AMOUNT: i64 = 12345;
const START_FEN: i64 = 10_000_000;

/// What the issuer was asked, without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Authorize {
        key: String,
        acceptor_id: Option<String>,
    },
    Refund {
        refund_id: String,
        purchase_key: String,
        fen: i64,
        acceptor_id: Option<String>,
    },
}

/// The stub issuer, with a log of what it was asked, and two faults to
/// switch on.
struct Recording {
    stub: StubIssuer,
    seen: Mutex<Vec<Seen>>,
    /// Refunds are processed, then their answer is lost (`Timeout`).
    lose_refund_answers: AtomicBool,
    /// Unknown outcomes are settled by reversal (as ISO 8583), not query.
    reverse_unknown: AtomicBool,
}

impl Recording {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn refunds(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| matches!(s, Seen::Refund { .. }))
            .collect()
    }
}

impl IssuerLink for Recording {
    async fn authorize(&self, req: AuthRequest) -> Result<AuthResponse, IssuerError> {
        self.seen.lock().unwrap().push(Seen::Authorize {
            key: req.idempotency_key.clone(),
            acceptor_id: req.acceptor_id.clone(),
        });
        self.stub.authorize(req).await
    }

    async fn query(&self, key: &str) -> Result<Option<AuthResponse>, IssuerError> {
        self.stub.query(key).await
    }

    async fn reverse(&self, key: &str) -> Result<bool, IssuerError> {
        self.stub.reverse(key).await
    }

    async fn refund(&self, req: RefundRequest) -> Result<AuthResponse, IssuerError> {
        self.seen.lock().unwrap().push(Seen::Refund {
            refund_id: req.refund_id.clone(),
            purchase_key: req.purchase_key.clone(),
            fen: req.amount.fen(),
            acceptor_id: req.acceptor_id.clone(),
        });
        let answer = self.stub.refund(req).await;
        if self.lose_refund_answers.load(Ordering::SeqCst) {
            return Err(IssuerError::Timeout);
        }
        answer
    }

    fn unknown_outcome(&self) -> UnknownOutcome {
        if self.reverse_unknown.load(Ordering::SeqCst) {
            UnknownOutcome::Reverse
        } else {
            UnknownOutcome::Query
        }
    }
}

struct Rig {
    app: TestApp,
    store: Store,
    issuer: Arc<Recording>,
    matcher: Arc<BankMatcher<Arc<Recording>>>,
    /// The API node whose refund service is `matcher`.
    api: String,
    /// Where the merchant's webhooks go.
    rx: Receiver,
}

fn fast_webhooks(s: &mut voicepay::config::Settings) {
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.retry_initial_ms = 200;
    s.webhooks.retry_max_ms = 400;
}

/// The daemon (with a webhook receiver), and beside it the test's matcher
/// and API node on the same database. `None` where PostgreSQL is skipped.
async fn rig(db: Db) -> Option<Rig> {
    let (app, rx) = spawn_app_with_receiver(db, fast_webhooks).await?;
    let (store, ring) = store_and_keys(&app).await;
    let vault = Arc::new(Vault::new(&ring));
    let issuer = Arc::new(Recording {
        stub: StubIssuer::builtin(ring.zpk()),
        seen: Mutex::new(Vec::new()),
        lose_refund_answers: AtomicBool::new(false),
        reverse_unknown: AtomicBool::new(false),
    });
    let matcher = Arc::new(BankMatcher::new(
        store.clone(),
        vault.clone(),
        ring.zpk(),
        issuer.clone(),
        fast(),
    ));
    let settings = Arc::new(app.settings.clone());
    let metrics = Arc::new(Metrics::default());
    let state = AppState {
        settings: settings.clone(),
        store: store.clone(),
        vault,
        metrics: metrics.clone(),
        merchant_cache: Arc::new(MerchantCache::new(KEY_CACHE_TTL)),
        limits: Arc::new(Limits::new(&settings, store.clone(), metrics)),
        refunder: matcher.clone(),
        readiness: Arc::new(Readiness::default()),
        link: None,
        shutdown: CancellationToken::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, voicepay::api::router(state)).await });
    // the merchant's default webhook URL
    sqlx::query("UPDATE merchants SET notify_url = $1 WHERE id = $2")
        .bind(&rx.url)
        .bind(&app.merchant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    Some(Rig {
        app,
        store,
        issuer,
        matcher,
        api,
        rx,
    })
}

impl Rig {
    /// A new callback order for `pan` through the daemon's API, its call
    /// answered (`in_call`).
    async fn order_in_call(&self, pan: &str) -> String {
        let id = new_order(&self.app, pan, false).await;
        answer_callback(&self.store, &id).await;
        id
    }

    /// The PIN keyed on the order's own callback.
    async fn verify(&self, id: &str, pin: &str) -> Verdict {
        verify_pin(&self.matcher, id, pin).await
    }

    /// A succeeded order of `AMOUNT` fen on `PAN`.
    async fn paid_order(&self) -> String {
        let id = self.order_in_call(PAN).await;
        assert_eq!(self.verify(&id, RIGHT_PIN).await, Verdict::Approved);
        id
    }

    /// `POST /v1/orders/{id}/refunds` on the test's API node.
    async fn post_refund(&self, id: &str, body: Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self
            .app
            .http
            .post(format!("{}/v1/orders/{id}/refunds", self.api))
            .bearer_auth(&self.app.api_key)
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }

    /// A refund of `fen` that must be created: its body.
    async fn refund_ok(&self, id: &str, fen: i64) -> Value {
        let resp = self.post_refund(id, json!({ "amount": fen }), None).await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// A refused request: its status and error code.
    async fn refused(&self, resp: reqwest::Response) -> (u16, String) {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// Rows in `refunds` for the order.
    async fn stored(&self, id: &str) -> usize {
        self.store.refunds_for(id).await.unwrap().len()
    }

    /// The `order.refunded` webhooks delivered, as sent.
    fn refunded_events(&self) -> Vec<Value> {
        self.rx
            .got()
            .iter()
            .map(|r| r.json())
            .filter(|e| e["type"] == "order.refunded")
            .collect()
    }

    fn balance(&self) -> i64 {
        self.issuer
            .stub
            .available_fen(&CardNumber::parse(PAN).unwrap())
            .unwrap()
    }
}

async fn the_merchants_acceptor_id_goes_to_the_issuer(db: Db) {
    let Some(r) = rig(db).await else { return };
    // none set: no F42
    let first = r.paid_order().await;
    crate::operator_cli(
        &r.app,
        &[
            "merchant",
            "set-acceptor-id",
            &r.app.merchant_id,
            "SHOP 00042",
        ],
    )
    .await;
    let second = r.paid_order().await;
    assert_eq!(
        r.issuer.seen(),
        vec![
            Seen::Authorize {
                key: format!("{first}:1"),
                acceptor_id: None
            },
            Seen::Authorize {
                key: format!("{second}:1"),
                acceptor_id: Some("SHOP 00042".into())
            },
        ]
    );
    assert_eq!(r.balance(), START_FEN - 2 * AMOUNT);
}

fn fen(n: i64) -> Amount {
    Amount::parse(n, i64::MAX).unwrap()
}

/// The refund service itself (the API's port): the purchase is named by
/// its key, the merchant's F42 goes along, the balance is kept.
async fn the_refund_service_names_the_purchase_and_keeps_the_balance(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    let merchant = r.app.merchant_id.clone();
    r.store
        .set_merchant_acceptor_id(
            &merchant,
            Some(&voicepay::domain::AcceptorId::parse("SHOP1").unwrap()),
        )
        .await
        .unwrap();
    let part = r
        .matcher
        .refund(&merchant, &id, fen(5_000), None)
        .await
        .unwrap();
    assert_eq!(part.refund.status, RefundStatus::Succeeded);
    assert!(!part.replayed);
    assert_eq!(r.balance(), START_FEN - AMOUNT + 5_000);
    assert_eq!(
        r.issuer.refunds(),
        vec![Seen::Refund {
            refund_id: part.refund.id.clone(),
            purchase_key: format!("{id}:1"),
            fen: 5_000,
            acceptor_id: Some("SHOP1".into()),
        }]
    );
    // more than is left: refused before the issuer, nothing stored
    let over = r
        .matcher
        .refund(&merchant, &id, fen(AMOUNT - 4_999), None)
        .await;
    assert!(
        matches!(over, Err(RefundRefused::ExceedsBalance { left }) if left == AMOUNT - 5_000),
        "{over:?}"
    );
    // another merchant's order is not found
    let (other, _) = r.app.another_merchant().await;
    let theirs = r.matcher.refund(&other, &id, fen(1), None).await;
    assert!(
        matches!(theirs, Err(RefundRefused::OrderNotFound)),
        "{theirs:?}"
    );
    assert_eq!(r.issuer.refunds().len(), 1);
    assert_eq!(r.store.refunds_for(&id).await.unwrap().len(), 1);
    // the rest
    let rest = r
        .matcher
        .refund(&merchant, &id, fen(AMOUNT - 5_000), None)
        .await
        .unwrap();
    assert_eq!(rest.refund.status, RefundStatus::Succeeded);
    assert_eq!(r.balance(), START_FEN);
    assert_eq!(r.store.refunded_amount(&id).await.unwrap(), AMOUNT);
}

/// A refund whose answer is lost is found by query (the stub's policy):
/// asked once, settled by its answer.
async fn a_lost_refund_answer_is_found_by_query(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    r.issuer.lose_refund_answers.store(true, Ordering::SeqCst);
    let done = r
        .matcher
        .refund(&r.app.merchant_id, &id, fen(AMOUNT), None)
        .await
        .unwrap();
    assert_eq!(done.refund.status, RefundStatus::Succeeded);
    assert!(done.refund.decided_at.is_some());
    assert_eq!(r.issuer.refunds().len(), 1, "asked once, then queried");
    assert_eq!(r.balance(), START_FEN);
}

/// With an issuer whose unknown outcomes are reversed (ISO 8583), a refund
/// with no answer is reversed and fails; its amount is free again.
async fn a_lost_refund_answer_is_reversed_when_the_issuer_says_so(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    r.issuer.lose_refund_answers.store(true, Ordering::SeqCst);
    r.issuer.reverse_unknown.store(true, Ordering::SeqCst);
    let done = r
        .matcher
        .refund(&r.app.merchant_id, &id, fen(AMOUNT), None)
        .await
        .unwrap();
    assert_eq!(done.refund.status, RefundStatus::Failed);
    // the stub had processed it; the reversal took the money back
    assert_eq!(r.balance(), START_FEN - AMOUNT);
    r.issuer.lose_refund_answers.store(false, Ordering::SeqCst);
    let again = r
        .matcher
        .refund(&r.app.merchant_id, &id, fen(AMOUNT), None)
        .await
        .unwrap();
    assert_eq!(again.refund.status, RefundStatus::Succeeded);
    assert_eq!(r.balance(), START_FEN);
    assert_eq!(r.store.refunded_amount(&id).await.unwrap(), AMOUNT);
}

/// Over the ISO 8583 link every purchase carries the merchant's F42: a
/// merchant without a card acceptor id gets 403 `merchant_not_configured`
/// for an order (nothing stored) until the operator sets one, then 201.
/// (The link itself points at a closed port: nothing is sent here.)
async fn without_an_acceptor_id_the_link_refuses_orders_before_storing(db: Db) {
    let Some(app) = voicepay_testkit::spawn_app_with(db, |s| {
        s.bank.kind = voicepay::config::BankKind::Iso8583;
        let link = &mut s.bank.iso8583;
        link.address = "127.0.0.1:9".into();
        link.zone_pin_key = "0123456789ABCDEFFEDCBA9876543210".into();
        link.zone_pin_key_id = "lab-zpk".into();
        link.acquirer_id = "12345678".into();
        link.terminal_id = "VPTERM01".into();
    })
    .await
    else {
        return;
    };
    let before = app.footprint().await;
    let resp = app.create_order(&order_body("F42A1")).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "merchant_not_configured", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("voicepay merchant set-acceptor-id"),
        "{body}"
    );
    assert_eq!(app.footprint().await, before, "nothing stored");
    // as `voicepay merchant set-acceptor-id` stores it
    sqlx::query("UPDATE merchants SET acceptor_id = $1 WHERE id = $2")
        .bind("SHOP000000001")
        .bind(&app.merchant_id)
        .execute(&app.pool)
        .await
        .unwrap();
    tokio::time::sleep(KEY_CACHE_TTL + Duration::from_millis(100)).await;
    let resp = app.create_order(&order_body("F42A1")).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
}

on_both_stores!(db:
    without_an_acceptor_id_the_link_refuses_orders_before_storing,
    a_full_refund_returns_the_money_and_shows_on_the_order,
    two_partial_refunds_then_one_too_many,
    an_order_that_did_not_succeed_is_not_refundable,
    another_merchants_order_is_not_found,
    a_retry_with_the_idempotency_key_returns_the_same_refund,
    bad_amounts_are_refused_and_change_nothing,
    the_merchants_acceptor_id_goes_to_the_issuer,
    the_refund_service_names_the_purchase_and_keeps_the_balance,
    a_lost_refund_answer_is_found_by_query,
    a_lost_refund_answer_is_reversed_when_the_issuer_says_so,
    refunds_left_open_are_settled_by_recovery,
    concurrent_requests_refund_once,
    with_a_reversing_issuer_recovery_reverses_open_refunds,
);

// ---------------------------------------------------------------------------
// The API: POST /v1/orders/{id}/refunds, the order's view, the webhook.

async fn a_full_refund_returns_the_money_and_shows_on_the_order(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    assert_eq!(r.balance(), START_FEN - AMOUNT);
    let resp = r.post_refund(&id, json!({ "amount": AMOUNT }), None).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"],
        format!("/v1/orders/{id}").as_str()
    );
    let refund: Value = resp.json().await.unwrap();
    let rid = refund["id"].as_str().unwrap().to_owned();
    assert!(rid.starts_with("rfd_"), "{refund}");
    assert_eq!(refund["amount"], AMOUNT);
    assert_eq!(refund["status"], "succeeded");
    assert!(refund["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(refund["decided_at"].as_str().unwrap().ends_with('Z'));
    // the money is back on the card, as the issuer's card state shows it
    let card = r
        .issuer
        .stub
        .cards()
        .into_iter()
        .find(|c| c.card == "622200******0017")
        .unwrap();
    assert_eq!(card.available_fen, START_FEN);
    // the order stays succeeded and shows the refund
    let view = r.app.order_view(&id).await;
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["refunded_amount"], AMOUNT);
    assert_eq!(view["refunds"], json!([refund]));
    // one webhook, with the order as GET shows it
    wait_until(
        Duration::from_secs(10),
        "the order.refunded webhook",
        || async { !r.refunded_events().is_empty() },
    )
    .await;
    let events = r.refunded_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"], view);
    // nothing left: a further refund is refused before the issuer
    let resp = r.post_refund(&id, json!({"amount": 1}), None).await;
    assert_eq!(
        r.refused(resp).await,
        (409, "refund_exceeds_balance".to_owned())
    );
    assert_eq!(r.issuer.refunds().len(), 1);
    assert_eq!(r.stored(&id).await, 1);
}

async fn two_partial_refunds_then_one_too_many(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    let first = r.refund_ok(&id, 5_000).await;
    let second = r.refund_ok(&id, 7_000).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(r.balance(), START_FEN - AMOUNT + 12_000);
    // 345 fen left: 346 is one too many
    let resp = r
        .post_refund(&id, json!({ "amount": AMOUNT - 12_000 + 1 }), None)
        .await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "refund_exceeds_balance");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("345 fen"),
        "{body}"
    );
    // nothing stored, the issuer not asked, no money moved
    assert_eq!(r.stored(&id).await, 2);
    assert_eq!(r.issuer.refunds().len(), 2);
    assert_eq!(r.balance(), START_FEN - AMOUNT + 12_000);
    let view = r.app.order_view(&id).await;
    assert_eq!(view["refunded_amount"], 12_000);
    assert_eq!(view["refunds"], json!([first, second]));
    assert_eq!(view["status"], "succeeded");
    // one webhook per refund, each with its own event id
    wait_until(
        Duration::from_secs(10),
        "two order.refunded webhooks",
        || async { r.refunded_events().len() >= 2 },
    )
    .await;
    let events = r.refunded_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_ne!(events[0]["id"], events[1]["id"]);
}

async fn an_order_that_did_not_succeed_is_not_refundable(db: Db) {
    let Some(r) = rig(db).await else { return };
    // a pending order (never called) and a failed one (declined)
    let mut body = order_body("Mpending");
    body["card_number"] = PAN.into();
    let resp = r.app.create_order(&body).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let pending = created["id"].as_str().unwrap().to_owned();
    let failed = r.order_in_call("6222000000000025").await;
    assert!(matches!(
        r.verify(&failed, RIGHT_PIN).await,
        Verdict::Failed(_)
    ));
    for id in [&pending, &failed] {
        let resp = r
            .post_refund(id, json!({ "amount": 100 }), Some("k1"))
            .await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "not_refundable");
        assert_eq!(r.stored(id).await, 0);
        let view = r.app.order_view(id).await;
        assert_eq!(view["refunds"], json!([]));
        assert_eq!(view["refunded_amount"], 0);
    }
    // the daemon's own API answers the same (its matcher is its refunder)
    let on_daemon = r
        .app
        .post_json(
            &format!("/v1/orders/{failed}/refunds"),
            &r.app.api_key,
            &json!({ "amount": 100 }),
        )
        .await;
    assert_eq!(
        r.refused(on_daemon).await,
        (409, "not_refundable".to_owned())
    );
    assert!(r.issuer.refunds().is_empty(), "the issuer was not asked");
    assert_eq!(r.app.count("refunds").await, 0);
    assert_eq!(
        r.app
            .count("webhook_outbox WHERE event_type = 'order.refunded'")
            .await,
        0
    );
}

async fn another_merchants_order_is_not_found(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    let (_, other_key) = r.app.another_merchant().await;
    for path_id in [
        id.as_str(),
        "ord_000000000000000000000000",
        "no-such-order!",
    ] {
        let resp = r
            .app
            .http
            .post(format!("{}/v1/orders/{path_id}/refunds", r.api))
            .bearer_auth(&other_key)
            .json(&json!({ "amount": 100 }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.refused(resp).await,
            (404, "not_found".to_owned()),
            "{path_id}"
        );
    }
    assert_eq!(r.stored(&id).await, 0);
    assert!(r.issuer.refunds().is_empty());
    assert_eq!(r.balance(), START_FEN - AMOUNT);
}

async fn a_retry_with_the_idempotency_key_returns_the_same_refund(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    let first = r
        .post_refund(&id, json!({ "amount": 2_000 }), Some("refund-1"))
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = r
        .post_refund(&id, json!({ "amount": 2_000 }), Some("refund-1"))
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    // the same key with another amount: refused, nothing new
    let other = r
        .post_refund(&id, json!({ "amount": 3_000 }), Some("refund-1"))
        .await;
    assert_eq!(
        r.refused(other).await,
        (409, "idempotency_key_reused".to_owned())
    );
    // asked once, refunded once
    assert_eq!(r.issuer.refunds().len(), 1);
    assert_eq!(r.stored(&id).await, 1);
    assert_eq!(r.balance(), START_FEN - AMOUNT + 2_000);
    assert_eq!(r.app.order_view(&id).await["refunded_amount"], 2_000);
    // another key is another refund
    let second = r
        .post_refund(&id, json!({ "amount": 2_000 }), Some("refund-2"))
        .await;
    assert_eq!(second.status(), 201);
    assert_eq!(r.issuer.refunds().len(), 2);
    // one webhook event per refund, not per request
    wait_until(
        Duration::from_secs(10),
        "two order.refunded webhooks",
        || async { r.refunded_events().len() >= 2 },
    )
    .await;
    assert_eq!(
        r.app
            .count("webhook_outbox WHERE event_type = 'order.refunded'")
            .await,
        2
    );
}

async fn bad_amounts_are_refused_and_change_nothing(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    for (body, field, code) in [
        (json!({}), "amount", "required"),
        (json!({ "amount": 0 }), "amount", "invalid_amount"),
        (json!({ "amount": -100 }), "amount", "invalid_amount"),
        (json!({ "amount": 1.5 }), "amount", "wrong_type"),
        (json!({ "amount": "100" }), "amount", "wrong_type"),
        (
            json!({ "amount": 100, "reason": "x" }),
            "reason",
            "unknown_field",
        ),
    ] {
        let resp = r.post_refund(&id, body.clone(), None).await;
        let status = resp.status();
        let got: Value = resp.json().await.unwrap();
        assert_eq!(status, 422, "{body} -> {got}");
        assert_eq!(got["error"]["code"], "invalid_request", "{got}");
        assert_eq!(got["error"]["fields"][0]["field"], field, "{got}");
        assert_eq!(got["error"]["fields"][0]["code"], code, "{got}");
    }
    let bad_key = r
        .post_refund(&id, json!({ "amount": 100 }), Some("has space"))
        .await;
    assert_eq!(
        r.refused(bad_key).await,
        (422, "invalid_request".to_owned())
    );
    let not_json = r
        .app
        .http
        .post(format!("{}/v1/orders/{id}/refunds", r.api))
        .bearer_auth(&r.app.api_key)
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.refused(not_json).await,
        (400, "malformed_json".to_owned())
    );
    assert_eq!(r.stored(&id).await, 0);
    assert!(r.issuer.refunds().is_empty());
    assert_eq!(r.balance(), START_FEN - AMOUNT);
}

// ---------------------------------------------------------------------------
// Recovery of refunds a crash left open.

impl Rig {
    /// A `pending` refund of `fen`, recorded as the service does before it
    /// asks the issuer (and then "crashed").
    async fn open_refund(&self, id: &str, fen: i64) -> RefundRow {
        match self.store.create_refund(id, fen, None, now_ms()).await {
            Ok(RefundCreated::New(row)) => row,
            other => panic!("{other:?}"),
        }
    }

    /// The issuer processes refund `row` of order `id`; its answer is lost.
    async fn issuer_refunds(&self, id: &str, row: &RefundRow) {
        let req = RefundRequest {
            refund_id: row.id.clone(),
            order_id: id.to_owned(),
            purchase_key: format!("{id}:1"),
            amount: fen(row.amount),
            card: CardNumber::parse(PAN).unwrap(),
            acceptor_id: None,
        };
        assert!(self.issuer.stub.refund(req).await.unwrap().is_approved());
    }

    async fn status_of(&self, row: &RefundRow) -> RefundStatus {
        self.store.refund(&row.id).await.unwrap().unwrap().status
    }
}

async fn refunds_left_open_are_settled_by_recovery(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    // one never sent, one the issuer approved before the "crash"
    let unsent = r.open_refund(&id, 1_000).await;
    let sent = r.open_refund(&id, 2_000).await;
    r.issuer_refunds(&id, &sent).await;
    // meanwhile both hold their amounts back
    let resp = r
        .post_refund(&id, json!({ "amount": AMOUNT - 3_000 + 1 }), None)
        .await;
    assert_eq!(
        r.refused(resp).await,
        (409, "refund_exceeds_balance".to_owned())
    );
    assert_eq!(
        r.matcher.recover_refunds().await,
        Recovery {
            settled: 2,
            unresolved: 0
        }
    );
    assert_eq!(r.status_of(&unsent).await, RefundStatus::Failed);
    assert_eq!(r.status_of(&sent).await, RefundStatus::Succeeded);
    assert_eq!(r.balance(), START_FEN - AMOUNT + 2_000);
    assert!(r.issuer.refunds().is_empty(), "recovery only queried");
    let view = r.app.order_view(&id).await;
    assert_eq!(view["refunded_amount"], 2_000);
    assert_eq!(view["status"], "succeeded");
    wait_until(
        Duration::from_secs(10),
        "the order.refunded webhook",
        || async { !r.refunded_events().is_empty() },
    )
    .await;
    assert_eq!(
        r.app
            .count("webhook_outbox WHERE event_type = 'order.refunded'")
            .await,
        1,
        "one event: for the refund that succeeded"
    );
    // nothing is left open: a second run settles nothing
    assert_eq!(r.matcher.recover_refunds().await, Recovery::default());
    // the failed one's amount is free again
    r.refund_ok(&id, AMOUNT - 2_000).await;
    assert_eq!(r.balance(), START_FEN);
}

async fn with_a_reversing_issuer_recovery_reverses_open_refunds(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    r.issuer.reverse_unknown.store(true, Ordering::SeqCst);
    let sent = r.open_refund(&id, AMOUNT).await;
    r.issuer_refunds(&id, &sent).await;
    assert_eq!(r.balance(), START_FEN);
    assert_eq!(
        r.matcher.recover_refunds().await,
        Recovery {
            settled: 1,
            unresolved: 0
        }
    );
    assert_eq!(r.status_of(&sent).await, RefundStatus::Failed);
    // the reversal took the refunded money back at the issuer
    assert_eq!(r.balance(), START_FEN - AMOUNT);
    assert_eq!(r.app.order_view(&id).await["refunded_amount"], 0);
}

async fn concurrent_requests_refund_once(db: Db) {
    let Some(r) = rig(db).await else { return };
    let id = r.paid_order().await;
    // the same key twice at once: one refund, asked once
    let body = json!({ "amount": 1_000 });
    let (a, b) = tokio::join!(
        r.post_refund(&id, body.clone(), Some("same")),
        r.post_refund(&id, body.clone(), Some("same")),
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(r.issuer.refunds().len(), 1);
    // two refunds racing for the last balance: exactly one is made
    let left = AMOUNT - 1_000;
    let (c, d) = tokio::join!(
        r.post_refund(&id, json!({ "amount": left }), None),
        r.post_refund(&id, json!({ "amount": left }), None),
    );
    let mut statuses = [c.status().as_u16(), d.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(r.issuer.refunds().len(), 2);
    assert_eq!(r.stored(&id).await, 2);
    assert_eq!(r.balance(), START_FEN);
    assert_eq!(r.app.order_view(&id).await["refunded_amount"], AMOUNT);
}
