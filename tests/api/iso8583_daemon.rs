//! The daemon with `bank.kind = "iso8583"`, against the Python issuer peer
//! voicepay did not write (tests/iso8583_peer/peer.py) over real TCP:
//! `/readyz` reports the link (503 until it is signed on), purchases built
//! by the production `Bank::iso8583` (debit, credit, a decline) are decoded
//! and answered by the peer, and an unanswered purchase (`hold-next-0210`,
//! `drop-link` with it in flight) is reversed by the daemon's own reversal
//! worker until the peer acknowledges it, the money back on the card in the
//! peer's ledger; a refund names its purchase in F90 and is credited. Each
//! test ends with the peer's protocol-error count at 0.
//!
//! Skips without the venv (pyiso8583 + psec), except under `CI=true`
//! (the testkit's `iso8583::Peer`).

use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use voicepay::bank::{AuthRequest, Bank, Decision, IssuerError, IssuerLink, Secret};
use voicepay::config::BankKind;
use voicepay::crypto::{KeyRing, PinBlock};
use voicepay::domain::{
    AcceptorId, Amount, CardNumber, Cvn2, Expiry, IdNumber, PinDigits, ResultCode,
};
use voicepay::store::{RequestStatus, ReversalStatus, Store};
use voicepay_testkit::iso8583::{Peer, CREDIT, DEBIT, HOLDER, LAB_ZPK};
use voicepay_testkit::{spawn_app_with, wait_some, Db, TestApp};

use crate::matcher_rig::new_order;

/// The merchant's card acceptor id (F42): without one an order over the
/// link is refused (403 `merchant_not_configured`).
const SHOP: &str = "SHOP000000001";
const AMOUNT: i64 = 12345;
const START_FEN: i64 = 10_000_000;
/// How long a condition may take before the test gives up on it (not a
/// timing assertion: everything here normally happens in well under it).
const PATIENCE: Duration = Duration::from_secs(40);

/// Polls `probe` until it gives `Some`, for at most [`PATIENCE`].
async fn until<T, F: Future<Output = Option<T>>>(what: &str, probe: impl FnMut() -> F) -> T {
    wait_some(PATIENCE, what, probe).await
}

/// The daemon with `bank.kind = "iso8583"` at `address`.
async fn daemon(address: String) -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.bank.kind = BankKind::Iso8583;
        let l = &mut s.bank.iso8583;
        l.address = address;
        l.zone_pin_key = LAB_ZPK.into();
        l.zone_pin_key_id = "zpk-lab".into();
        l.acquirer_id = "00012345".into();
        l.terminal_id = "VP000001".into();
        l.response_timeout_secs = 1;
        l.echo_interval_secs = 30;
    })
    .await
    .expect("sqlite app")
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The test's own `Bank::iso8583` on the daemon's database and keys (its
/// own link to the same peer): what the daemon's matcher asks.
struct Rig {
    app: TestApp,
    peer: Peer,
    store: Store,
    ring: KeyRing,
    bank: Bank,
}

async fn rig() -> Option<Rig> {
    let peer = Peer::start()?;
    let app = daemon(peer.address()).await;
    let store = Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
        .await
        .unwrap();
    store
        .set_merchant_acceptor_id(&app.merchant_id, Some(&AcceptorId::parse(SHOP).unwrap()))
        .await
        .unwrap();
    let ring = KeyRing::load(&app.settings.crypto).unwrap();
    let clock: voicepay::clock::SharedClock = Arc::new(voicepay::clock::SystemClock);
    let bank = Bank::iso8583(&app.settings.bank.iso8583, store.clone(), ring.zpk(), clock).unwrap();
    until("the test's link to sign on", || async {
        bank.link_status().unwrap().is_signed_on().then_some(())
    })
    .await;
    Some(Rig {
        app,
        peer,
        store,
        ring,
        bank,
    })
}

impl Rig {
    async fn order(&self, pan: &str) -> String {
        new_order(&self.app, pan, true).await
    }

    fn debit(&self, order_id: &str, pin: &str) -> AuthRequest {
        let card = CardNumber::parse(DEBIT).unwrap();
        let block = PinBlock::from_pin(&PinDigits::parse(pin).unwrap(), &card, &self.ring.zpk());
        AuthRequest {
            idempotency_key: format!("{order_id}:1"),
            order_id: order_id.into(),
            acceptor_id: Some(SHOP.into()),
            amount: Amount::parse(AMOUNT, i64::MAX).unwrap(),
            card,
            id_number: IdNumber::parse(HOLDER).unwrap(),
            secret: Secret::PinBlock(block),
        }
    }

    /// Waits until the daemon's reversal worker got the order's reversal
    /// acknowledged.
    async fn acknowledged(&self, order_id: &str) {
        until("the reversal to be acknowledged", || async {
            let rs = self.store.reversals_for(order_id).await.unwrap();
            (rs.len() == 1 && rs[0].status == ReversalStatus::Acknowledged).then_some(())
        })
        .await;
    }
}

/// `/readyz` names the bank; with the ISO 8583 link it is 503 (the link's
/// state and last error shown) until the link is signed on.
#[tokio::test]
async fn readyz_waits_for_the_link_to_sign_on() {
    // nobody listens there
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let app = daemon(address).await;
    let (status, body) = until("the link to report an error", || async {
        let (status, body) = readyz(&app).await;
        body["bank"]["link"]["last_error"]
            .is_string()
            .then_some((status, body))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["database"], "ok");
    assert_eq!(body["bank"]["kind"], "iso8583");
    assert_eq!(body["bank"]["link"]["state"], "connecting", "{body}");
    assert!(!body.to_string().contains(LAB_ZPK));
    let Some(peer) = Peer::start() else {
        return;
    };
    let app = daemon(peer.address()).await;
    let body = until("readyz to be 200", || async {
        let (status, body) = readyz(&app).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["bank"]["link"]["state"], "signed_on", "{body}");
}

/// Purchases over the link, decoded and decided by the peer: a debit with
/// the right PIN and a credit card are approved and debited once, a wrong
/// PIN is a wrong secret, an over-limit amount a decline; nothing is
/// reversed.
#[tokio::test]
async fn purchases_are_decided_by_the_peer() {
    let Some(r) = rig().await else { return };
    let paid = r.order(DEBIT).await;
    let got = r.bank.authorize(r.debit(&paid, "805137")).await.unwrap();
    assert!(matches!(got.outcome, Decision::Approved { ref auth_code } if auth_code.len() == 6));
    let wrong = r.order(DEBIT).await;
    let got = r.bank.authorize(r.debit(&wrong, "000000")).await.unwrap();
    assert_eq!(got.outcome, Decision::WrongSecret { tries_left: None });
    let big = r.order(DEBIT).await;
    let mut req = r.debit(&big, "805137");
    req.amount = Amount::parse(5_000_001, i64::MAX).unwrap();
    let got = r.bank.authorize(req).await.unwrap();
    assert_eq!(got.outcome, Decision::Declined(ResultCode::OverLimit));
    let credit = r.order(CREDIT).await;
    let req = AuthRequest {
        idempotency_key: format!("{credit}:1"),
        order_id: credit.clone(),
        acceptor_id: Some(SHOP.into()),
        amount: Amount::parse(AMOUNT, i64::MAX).unwrap(),
        card: CardNumber::parse(CREDIT).unwrap(),
        id_number: IdNumber::parse(HOLDER).unwrap(),
        secret: Secret::Card {
            expiry: Expiry::parse("1230").unwrap(),
            cvn2: Cvn2::parse("123").unwrap(),
        },
    };
    assert!(r.bank.authorize(req).await.unwrap().is_approved());
    assert_eq!(r.peer.balance("622200******0017").await, START_FEN - AMOUNT);
    for id in [&paid, &wrong, &big, &credit] {
        assert!(r.store.reversals_for(id).await.unwrap().is_empty());
    }
    r.peer.assert_no_protocol_error().await;
}

/// The peer processes a purchase and holds its 0210: no answer within the
/// response timeout, so the purchase is reversed; the daemon's reversal
/// worker sends the 0420 until the peer's 0430, and the money is back on
/// the card. The held 0210, released after, changes nothing.
#[tokio::test]
async fn an_unanswered_purchase_is_reversed_by_the_daemon() {
    let Some(r) = rig().await else { return };
    let id = r.order(DEBIT).await;
    r.peer.control("hold-next-0210").await;
    let got = r.bank.authorize(r.debit(&id, "805137")).await;
    assert_eq!(got, Err(IssuerError::Timeout));
    assert_eq!(r.peer.balance("622200******0017").await, START_FEN - AMOUNT);
    r.acknowledged(&id).await;
    assert_eq!(r.peer.balance("622200******0017").await, START_FEN);
    r.peer.control("release-held").await;
    let row = r
        .store
        .acquirer_request(&format!("{id}:1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, RequestStatus::Reversing);
    let stats = r.peer.stats().await;
    assert_eq!(stats["received"]["0200"], 1, "{stats}");
    assert!(stats["received"]["0420"].as_i64().unwrap() >= 1, "{stats}");
    r.peer.assert_no_protocol_error().await;
}

/// The link drops with a purchase in flight: `Dropped` is an unknown
/// outcome too: reversed, and acknowledged once the link is back.
#[tokio::test]
async fn a_purchase_in_flight_when_the_link_drops_is_reversed() {
    let Some(r) = rig().await else { return };
    let id = r.order(DEBIT).await;
    r.peer.control("hold-next-0210").await;
    let pending = r.bank.authorize(r.debit(&id, "805137"));
    let drop_it = async {
        r.peer
            .stats_until("the peer to hold the 0210", |s| s["held"] == 1)
            .await;
        r.peer.control("drop-link").await;
    };
    let (got, ()) = tokio::join!(pending, drop_it);
    assert!(matches!(got, Err(IssuerError::Timeout)), "{got:?}");
    r.acknowledged(&id).await;
    assert_eq!(r.peer.balance("622200******0017").await, START_FEN);
    r.peer.assert_no_protocol_error().await;
}

/// A refund over the link: the peer credits the approved purchase F90
/// names, and refuses (F39 13, not in voicepay's table: `issuer_declined`)
/// more than what is left of it.
#[tokio::test]
async fn a_refund_names_its_purchase_and_the_peer_credits_it() {
    let Some(r) = rig().await else { return };
    let id = r.order(DEBIT).await;
    assert!(r
        .bank
        .authorize(r.debit(&id, "805137"))
        .await
        .unwrap()
        .is_approved());
    let refund = |refund_id: &str, fen: i64| voicepay::bank::RefundRequest {
        refund_id: refund_id.into(),
        order_id: id.clone(),
        purchase_key: format!("{id}:1"),
        amount: Amount::parse(fen, i64::MAX).unwrap(),
        card: CardNumber::parse(DEBIT).unwrap(),
        acceptor_id: Some(SHOP.into()),
    };
    let got = r.bank.refund(refund("rfd_a", 5000)).await.unwrap();
    assert!(got.is_approved(), "{got:?}");
    assert_eq!(
        r.peer.balance("622200******0017").await,
        START_FEN - AMOUNT + 5000
    );
    let over = r.bank.refund(refund("rfd_b", AMOUNT)).await.unwrap();
    assert_eq!(over.outcome, Decision::Declined(ResultCode::IssuerDeclined));
    assert_eq!(
        r.peer.balance("622200******0017").await,
        START_FEN - AMOUNT + 5000
    );
    r.peer.assert_no_protocol_error().await;
}
