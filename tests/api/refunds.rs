//! Refunds (`POST /v1/orders/{id}/refunds`) and the merchant's card
//! acceptor id (F42), on SQLite and on PostgreSQL. Orders come in through
//! the daemon's API and are paid through a `BankMatcher` on a stub issuer
//! the test holds, wrapped so that every request the issuer gets is seen;
//! refunds go through a second API node on the same database whose refund
//! service is that matcher (the daemon delivers the webhooks). The stub's
//! card balances prove how many times money moved.

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voicepay::bank::{
    AuthRequest, AuthResponse, IssuerError, IssuerLink, RefundRequest, StubIssuer, UnknownOutcome,
};
use voicepay::crypto::{KeyRing, Vault};
use voicepay::domain::{Amount, CardNumber, OrderStatus, PinDigits, Verification};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, CallRef, MatcherConfig, RefundRefused, Via};
use voicepay::store::{RefundStatus, Store, Transition};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

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

fn fast() -> MatcherConfig {
    MatcherConfig {
        auth_timeout: Duration::from_millis(800),
        query_backoff: [50, 100, 200, 400].map(Duration::from_millis).to_vec(),
        query_timeout: Duration::from_millis(500),
        recover_after: Duration::ZERO,
    }
}

struct Rig {
    app: TestApp,
    store: Store,
    issuer: Arc<Recording>,
    matcher: Arc<BankMatcher<Arc<Recording>>>,
}

async fn rig(app: TestApp) -> Rig {
    let store = Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
        .await
        .expect("store");
    let ring = KeyRing::load(&app.settings.crypto).expect("the app's keys");
    let vault = Arc::new(Vault::new(&ring));
    let issuer = Arc::new(Recording {
        stub: StubIssuer::builtin(ring.zpk()),
        seen: Mutex::new(Vec::new()),
        lose_refund_answers: AtomicBool::new(false),
        reverse_unknown: AtomicBool::new(false),
    });
    let matcher = Arc::new(BankMatcher::new(
        store.clone(),
        vault,
        ring.zpk(),
        issuer.clone(),
        fast(),
    ));
    Rig {
        app,
        store,
        issuer,
        matcher,
    }
}

impl Rig {
    /// A new callback order for `pan` through the daemon's API, its call
    /// answered (`in_call`).
    async fn order_in_call(&self, pan: &str) -> String {
        let n = voicepay::crypto::random_hex(4);
        let mut body = order_body(&format!("M{n}"));
        body["card_number"] = pan.into();
        let resp = self.app.create_order(&body).await;
        assert_eq!(resp.status(), 201);
        let order: Value = resp.json().await.unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        let now = voicepay::store::now_ms();
        self.store
            .insert_attempt(&id, 1, &format!("vp-{id}-1"), now)
            .await
            .unwrap();
        let t = Transition {
            from: OrderStatus::Pending,
            to: OrderStatus::InCall,
            result: None,
            detail: Some("test"),
        };
        assert!(self.store.transition(&id, t, now).await.unwrap());
        id
    }

    /// The PIN keyed on the order's own callback.
    async fn verify(&self, id: &str, pin: &str) -> Verdict {
        let channel = format!("vp-{id}-1");
        let call = CallRef {
            channel_id: &channel,
            via: &Via::Callback,
        };
        let v = Verification::Pin(PinDigits::parse(pin).unwrap());
        self.matcher.verify(id, call, v).await
    }

    /// A succeeded order of `AMOUNT` fen on `PAN`.
    async fn paid_order(&self) -> String {
        let id = self.order_in_call(PAN).await;
        assert_eq!(self.verify(&id, RIGHT_PIN).await, Verdict::Approved);
        id
    }

    fn balance(&self) -> i64 {
        self.issuer
            .stub
            .available_fen(&CardNumber::parse(PAN).unwrap())
            .unwrap()
    }
}

async fn the_merchants_acceptor_id_goes_to_the_issuer(app: TestApp) {
    let r = rig(app).await;
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
async fn the_refund_service_names_the_purchase_and_keeps_the_balance(app: TestApp) {
    let r = rig(app).await;
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
async fn a_lost_refund_answer_is_found_by_query(app: TestApp) {
    let r = rig(app).await;
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
async fn a_lost_refund_answer_is_reversed_when_the_issuer_says_so(app: TestApp) {
    let r = rig(app).await;
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

on_both_stores!(
    the_merchants_acceptor_id_goes_to_the_issuer,
    the_refund_service_names_the_purchase_and_keeps_the_balance,
    a_lost_refund_answer_is_found_by_query,
    a_lost_refund_answer_is_reversed_when_the_issuer_says_so,
);
