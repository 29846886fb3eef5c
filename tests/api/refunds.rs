//! Refunds (`POST /v1/orders/{id}/refunds`) and the merchant's card
//! acceptor id (F42), on SQLite and on PostgreSQL. Orders come in through
//! the daemon's API and are paid through a `BankMatcher` on a stub issuer
//! the test holds, wrapped so that every request the issuer gets is seen;
//! refunds go through a second API node on the same database whose refund
//! service is that matcher (the daemon delivers the webhooks). The stub's
//! card balances prove how many times money moved.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voicepay::bank::{
    AuthRequest, AuthResponse, IssuerError, IssuerLink, RefundRequest, StubIssuer,
};
use voicepay::crypto::{KeyRing, Vault};
use voicepay::domain::{CardNumber, OrderStatus, PinDigits, Verification};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, CallRef, MatcherConfig, Via};
use voicepay::store::{Store, Transition};
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

/// The stub issuer, with a log of what it was asked.
struct Recording {
    stub: StubIssuer,
    seen: Mutex<Vec<Seen>>,
}

impl Recording {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
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
        self.stub.refund(req).await
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

on_both_stores!(the_merchants_acceptor_id_goes_to_the_issuer);
