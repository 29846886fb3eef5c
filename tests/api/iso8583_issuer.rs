//! `Iso8583Issuer` (the `IssuerLink` over the ISO 8583 acquirer link) and
//! the matcher with it, against a scripted in-process acquirer host behind
//! the `Exchange` seam: it answers each request from a script (an F39, no
//! answer, a dropped link, never sent, an answer held until released), and
//! keeps every request it saw so the tests can read the fields, decipher
//! F52 with the link's zone PIN key, and count what reached it. Orders come
//! in through the real API; the request journal and the reversals are read
//! back from the store. On SQLite and PostgreSQL.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voicepay::bank::iso8583::{
    Exchange, Iso8583Issuer, LinkError, Message, ResponseCode, ReversalRound, ReversalWorker,
    Terminal,
};
use voicepay::bank::{AuthRequest, Decision, IssuerError, IssuerLink, Secret, UnknownOutcome};
use voicepay::crypto::{KeyRing, PinBlock, PinBlock0, Vault, ZonePinKey, Zpk};
use voicepay::domain::AcceptorId;
use voicepay::domain::{Amount, CardNumber, Cvn2, Expiry, IdNumber, PinDigits, ResultCode};
use voicepay::ivr::Verdict;
use voicepay::matcher::{BankMatcher, Recovery};
use voicepay::store::{RequestStatus, Store};
use voicepay_testkit::{on_both_stores, TestApp};

use crate::matcher_rig::{answer_callback, fast, new_order, store_and_keys, verify_pin};

const DEBIT: &str = "6222000000000017";
const CREDIT: &str = "6250000000000012";
const HOLDER: &str = "11010519491231002X";
const RIGHT_PIN: &str = "805137";
const AMOUNT: i64 = 12345;
/// The published lab-only zone PIN key of the Python peer.
const LINK_ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";
const ACQUIRER: &str = "00012345";
const TERMINAL: &str = "VP000001";
/// The merchant's card acceptor id (F42).
const SHOP: &str = "SHOP000000001";

/// What the scripted host does with one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Act {
    /// Answers the 0210 (or 0430) with this F39.
    Answer(&'static str),
    /// `LinkError::NotSent`: the host never sees it.
    NotSent,
    /// Sees it (and may process it), never answers: `LinkError::Timeout`.
    Timeout,
    /// Sees it, then the link drops: `LinkError::Dropped`.
    Dropped,
    /// Sees it and answers with this F39 only after [`FakeHost::release`].
    Hold(&'static str),
    /// Answers a message of the wrong type (an 0810).
    WrongMti,
}

/// The scripted acquirer host. Requests beyond the script are answered
/// `00`.
#[derive(Default)]
pub(crate) struct FakeHost {
    script: Mutex<VecDeque<Act>>,
    seen: Mutex<Vec<Message>>,
    release: tokio::sync::Notify,
}

impl FakeHost {
    pub(crate) fn then(&self, act: Act) -> &Self {
        self.script.lock().unwrap().push_back(act);
        self
    }

    /// Every request the host saw (not the `NotSent` ones), in order.
    pub(crate) fn seen(&self) -> Vec<Message> {
        self.seen.lock().unwrap().clone()
    }

    /// Lets one held answer go.
    pub(crate) fn release(&self) {
        self.release.notify_one();
    }

    fn answer(request: &Message, f39: &str) -> Message {
        let mut a = request.reply().expect("a request");
        a.set_response_code(ResponseCode::parse(f39).unwrap())
            .unwrap();
        if f39 == "00" && request.mti().as_str() == "0200" {
            a.set_approval_code("A1B2C3").unwrap();
            a.set_rrn("000000000042").unwrap();
        }
        a
    }
}

impl Exchange for FakeHost {
    async fn exchange(&self, request: Message) -> Result<Message, LinkError> {
        let act = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Act::Answer("00"));
        if !matches!(act, Act::NotSent) {
            self.seen.lock().unwrap().push(request.clone());
        }
        match act {
            Act::Answer(f39) => Ok(Self::answer(&request, f39)),
            Act::NotSent => Err(LinkError::NotSent("link down")),
            Act::Timeout => Err(LinkError::Timeout),
            Act::Dropped => Err(LinkError::Dropped),
            Act::Hold(f39) => {
                self.release.notified().await;
                Ok(Self::answer(&request, f39))
            }
            Act::WrongMti => {
                let mut a = Message::new(voicepay::bank::iso8583::Mti::NETWORK_RESPONSE);
                a.set(11, request.get(11).unwrap()).unwrap();
                a.set_response_code(ResponseCode::APPROVED).unwrap();
                Ok(a)
            }
        }
    }
}

pub(crate) fn link_zpk() -> Zpk {
    Zpk::from_hex("zpk-lab", LINK_ZPK).unwrap()
}

pub(crate) fn terminal() -> Terminal {
    Terminal {
        acquirer_id: ACQUIRER.into(),
        terminal_id: TERMINAL.into(),
    }
}

struct Rig {
    app: TestApp,
    store: Store,
    zpk: ZonePinKey,
    host: Arc<FakeHost>,
    issuer: Arc<Iso8583Issuer<Arc<FakeHost>>>,
    matcher: BankMatcher<Arc<Iso8583Issuer<Arc<FakeHost>>>>,
}

async fn rig(app: TestApp) -> Rig {
    let (store, ring) = store_and_keys(&app).await;
    let vault = Arc::new(Vault::new(&ring));
    let host = Arc::new(FakeHost::default());
    let issuer = Arc::new(Iso8583Issuer::new(
        host.clone(),
        store.clone(),
        ring.zpk(),
        link_zpk(),
        terminal(),
    ));
    let matcher = BankMatcher::new(store.clone(), vault, ring.zpk(), issuer.clone(), fast());
    // the F42 every 0200 carries: `voicepay merchant set-acceptor-id`
    let shop = AcceptorId::parse(SHOP).unwrap();
    store
        .set_merchant_acceptor_id(&app.merchant_id, Some(&shop))
        .await
        .unwrap();
    Rig {
        app,
        store,
        zpk: ring.zpk(),
        host,
        issuer,
        matcher,
    }
}

fn card(pan: &str) -> CardNumber {
    CardNumber::parse(pan).unwrap()
}

impl Rig {
    /// A new order for `pan` through the API (its status does not matter
    /// to the issuer).
    async fn order(&self, pan: &str) -> String {
        // a phone of its own: `[limits] orders_per_phone_per_day`
        new_order(&self.app, pan, true).await
    }

    fn debit(&self, order_id: &str, pin: &str) -> AuthRequest {
        let c = card(DEBIT);
        let block = PinBlock::from_pin(&PinDigits::parse(pin).unwrap(), &c, &self.zpk);
        AuthRequest {
            idempotency_key: format!("{order_id}:1"),
            order_id: order_id.into(),
            acceptor_id: Some(SHOP.into()),
            amount: Amount::parse(AMOUNT, i64::MAX).unwrap(),
            card: c,
            id_number: IdNumber::parse(HOLDER).unwrap(),
            secret: Secret::PinBlock(block),
        }
    }

    fn credit(&self, order_id: &str) -> AuthRequest {
        AuthRequest {
            idempotency_key: format!("{order_id}:1"),
            order_id: order_id.into(),
            acceptor_id: Some(SHOP.into()),
            amount: Amount::parse(AMOUNT, i64::MAX).unwrap(),
            card: card(CREDIT),
            id_number: IdNumber::parse(HOLDER).unwrap(),
            secret: Secret::Card {
                expiry: Expiry::parse("1230").unwrap(),
                cvn2: Cvn2::parse("123").unwrap(),
            },
        }
    }

    /// A new order for `pan`, its callback placed and answered: `in_call`.
    async fn order_in_call(&self, pan: &str) -> String {
        let id = self.order(pan).await;
        answer_callback(&self.store, &id).await;
        id
    }

    /// The PIN keyed on the order's own callback, through the matcher.
    async fn verify_pin(&self, id: &str, pin: &str) -> Verdict {
        verify_pin(&self.matcher, id, pin).await
    }

    /// (status, result code, respCode) as the merchant sees the order.
    async fn outcome(&self, id: &str) -> (String, String, String) {
        let resp = self
            .app
            .get(&format!("/v1/orders/{id}"), &self.app.api_key)
            .await;
        assert_eq!(resp.status(), 200);
        let o: Value = resp.json().await.unwrap();
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (
            s(&o["status"]),
            s(&o["result"]["code"]),
            s(&o["result"]["resp_code"]),
        )
    }

    async fn journal(&self, key: &str) -> Option<RequestStatus> {
        self.store
            .acquirer_request(key)
            .await
            .unwrap()
            .map(|r| r.status)
    }

    async fn events(&self, id: &str) -> Vec<String> {
        crate::matcher_rig::events(&self.store, id).await
    }
}

/// Every F39 of the one table, and two it does not know, give the
/// decision the matcher records; the journal keeps the answer, the audit
/// log the raw unknown code.
async fn each_f39_maps_to_its_result(app: TestApp) {
    use ResultCode::*;
    let r = rig(app).await;
    assert_eq!(r.issuer.unknown_outcome(), UnknownOutcome::Reverse);
    let cases: [(&str, Decision); 14] = [
        (
            "00",
            Decision::Approved {
                auth_code: "A1B2C3".into(),
            },
        ),
        ("55", Decision::WrongSecret { tries_left: None }),
        ("51", Decision::Declined(InsufficientFunds)),
        ("75", Decision::Declined(PinTriesExceeded)),
        ("54", Decision::Declined(CardExpired)),
        ("14", Decision::Declined(InvalidCard)),
        ("62", Decision::Declined(CardRestricted)),
        ("61", Decision::Declined(OverLimit)),
        ("91", Decision::Declined(IssuerUnavailable)),
        ("96", Decision::Declined(IssuerUnavailable)),
        ("63", Decision::Declined(IdMismatch)),
        ("05", Decision::Declined(IssuerDeclined)),
        ("Z9", Decision::Declined(IssuerDeclined)),
        ("13", Decision::Declined(IssuerDeclined)),
    ];
    let count = cases.len();
    // one order, one attempt per code (429s otherwise: the API's rate limit)
    let id = r.order(DEBIT).await;
    let mut unknown_seen = 0;
    for (n, (f39, want)) in cases.into_iter().enumerate() {
        let key = format!("{id}:{n}");
        r.host.then(Act::Answer(f39));
        let mut req = r.debit(&id, RIGHT_PIN);
        req.idempotency_key = key.clone();
        let got = r.issuer.authorize(req).await;
        assert_eq!(got.unwrap().outcome, want, "F39 {f39}");
        let row = r.store.acquirer_request(&key).await.unwrap();
        let row = row.expect("journalled");
        assert_eq!(row.status, RequestStatus::Answered, "F39 {f39}");
        assert_eq!(row.resp_code.as_deref(), Some(f39));
        // query answers from the journal, the same
        let q = r.issuer.query(&key).await.unwrap().unwrap();
        assert_eq!(q.outcome, want, "query of F39 {f39}");
        let unknown = r
            .events(&id)
            .await
            .into_iter()
            .filter(|e| e.contains("not in the table"))
            .collect::<Vec<_>>();
        if want == Decision::Declined(IssuerDeclined) {
            unknown_seen += 1;
            assert_eq!(
                unknown.last().map(String::as_str),
                Some(
                    format!("bank issuer answered F39 {f39} (not in the table): issuer_declined")
                        .as_str()
                )
            );
        }
        assert_eq!(unknown.len(), unknown_seen, "{unknown:?}");
    }
    assert!(r.store.reversals_for(&id).await.unwrap().is_empty());
    assert_eq!(r.host.seen().len(), count);
}

/// The 0200s carry the layout of the interface document: a debit's F52 is
/// a format 0 block of the keyed PIN under the link's TDES key, with F53
/// and F22 011; a credit's F14 (YYMM), F61 with the CVN2 and F22 012; F7,
/// F11 (the day's STANs, one each), F25 08, F32, F41, F42, F49. Nothing
/// secret shows in a message's Debug.
async fn the_purchase_fields_follow_the_interface(app: TestApp) {
    let r = rig(app).await;
    let debit_order = r.order(DEBIT).await;
    let credit_order = r.order(CREDIT).await;
    r.issuer
        .authorize(r.debit(&debit_order, RIGHT_PIN))
        .await
        .unwrap();
    r.issuer.authorize(r.credit(&credit_order)).await.unwrap();
    let seen = r.host.seen();
    let (d, c) = (&seen[0], &seen[1]);
    for m in [d, c] {
        assert_eq!(m.mti().as_str(), "0200");
        assert_eq!(m.text(3), Some("000000"));
        assert_eq!(m.text(4), Some("000000012345"));
        assert_eq!(m.text(7).map(str::len), Some(10));
        assert_eq!(m.text(12).map(str::len), Some(6));
        assert_eq!(m.text(13).map(str::len), Some(4));
        assert_eq!(m.text(25), Some("08"));
        assert_eq!(m.text(32), Some(ACQUIRER));
        assert_eq!(m.text(41), Some(TERMINAL));
        assert_eq!(m.text(49), Some("156"));
        let shown = format!("{m:?}");
        for secret in [DEBIT, CREDIT, HOLDER] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_ne!(d.stan(), c.stan());
    assert_eq!(d.text(2), Some(DEBIT));
    assert_eq!(d.text(22), Some("011"));
    assert_eq!(d.text(53), Some("1600000000000000"));
    assert_eq!(d.acceptor_id(), Some(SHOP));
    assert!(!d.has(14));
    let f52: [u8; 8] = d.get(52).unwrap().try_into().unwrap();
    assert!(PinBlock0::from_bytes(f52).verify(DEBIT, &link_zpk(), RIGHT_PIN.as_bytes()));
    assert_eq!(d.text(61), Some(format!("01{HOLDER}").as_str()));
    assert_eq!(c.text(22), Some("012"));
    assert_eq!(c.get(14), Some(&b"3012"[..]));
    assert!(!c.has(52) && !c.has(53));
    assert_eq!(c.acceptor_id(), Some(SHOP));
    assert_eq!(c.text(61), Some(format!("01{HOLDER}123").as_str()));
    // the journal names each as a reversal's F90 would
    let row = r
        .store
        .acquirer_request(&format!("{debit_order}:1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.original.mti, "0200");
    assert_eq!(Some(row.original.stan), d.stan());
    assert_eq!(Some(row.original.transmitted_at.as_str()), d.text(7));
    assert_eq!(row.original.acquirer_id, ACQUIRER);
    assert_eq!(
        (row.processing_code.as_str(), row.amount),
        ("000000", AMOUNT)
    );
}

/// No answer (a timeout, a dropped link, an answer that is no 0210): the
/// outcome is unknown, so the request is reversed at once (one pending
/// reversal naming it) and the answer is `Timeout`; asking again under the
/// key never sends a second purchase.
async fn an_unknown_outcome_is_reversed_never_resent(app: TestApp) {
    let r = rig(app).await;
    for act in [Act::Timeout, Act::Dropped, Act::WrongMti] {
        let before = r.host.seen().len();
        let id = r.order(DEBIT).await;
        let key = format!("{id}:1");
        r.host.then(act);
        let got = r.issuer.authorize(r.debit(&id, RIGHT_PIN)).await;
        assert_eq!(got.unwrap_err(), IssuerError::Timeout, "{act:?}");
        assert_eq!(r.journal(&key).await, Some(RequestStatus::Reversing));
        let sent = r.host.seen()[before].clone();
        let reversals = r.store.reversals_for(&id).await.unwrap();
        assert_eq!(reversals.len(), 1, "{act:?}");
        assert_eq!(Some(reversals[0].original.stan), sent.stan());
        assert_eq!(
            Some(reversals[0].original.transmitted_at.as_str()),
            sent.text(7)
        );
        assert_eq!(reversals[0].amount, AMOUNT);
        // the same key again: no second purchase, still unknown
        let again = r.issuer.authorize(r.debit(&id, RIGHT_PIN)).await;
        assert_eq!(again.unwrap_err(), IssuerError::Timeout);
        assert_eq!(r.issuer.query(&key).await, Err(IssuerError::Timeout));
        assert_eq!(r.host.seen().len(), before + 1, "{act:?}");
        // reversing again is idempotent: still one reversal
        assert_eq!(r.issuer.reverse(&key).await, Ok(true));
        assert_eq!(r.store.reversals_for(&id).await.unwrap().len(), 1);
    }
}

/// A request the link never wrote: nothing was processed, so the answer is
/// `Unavailable`, the journal forgets it (a query says "never sent") and
/// nothing is reversed.
async fn a_request_never_sent_is_unavailable_and_forgotten(app: TestApp) {
    let r = rig(app).await;
    let id = r.order(DEBIT).await;
    let key = format!("{id}:1");
    r.host.then(Act::NotSent);
    let got = r.issuer.authorize(r.debit(&id, RIGHT_PIN)).await;
    assert_eq!(got.unwrap_err(), IssuerError::Unavailable);
    assert!(r.host.seen().is_empty());
    assert_eq!(r.journal(&key).await, None);
    assert_eq!(r.issuer.query(&key).await, Ok(None));
    assert_eq!(r.issuer.reverse(&key).await, Ok(false));
    assert!(r.store.reversals_for(&id).await.unwrap().is_empty());
}

/// A merchant without a card acceptor id (F42) cannot be paid over the
/// link: nothing is armed or sent, the answer is `Unavailable` (nothing
/// was processed), and through the matcher the order fails
/// `issuer_unavailable` with nothing to reverse.
async fn a_merchant_without_an_acceptor_id_sends_nothing(app: TestApp) {
    let r = rig(app).await;
    let id = r.order(DEBIT).await;
    let key = format!("{id}:1");
    let mut req = r.debit(&id, RIGHT_PIN);
    req.acceptor_id = None;
    assert_eq!(
        r.issuer.authorize(req).await.unwrap_err(),
        IssuerError::Unavailable
    );
    assert!(r.host.seen().is_empty());
    assert_eq!(r.journal(&key).await, None);
    assert!(r.store.reversals_for(&id).await.unwrap().is_empty());
}

/// The first answer under a key is final: asking again returns it without
/// a second request; a decline is not reversed, an approval can be.
async fn the_first_answer_is_final(app: TestApp) {
    let r = rig(app).await;
    let declined = r.order(DEBIT).await;
    r.host.then(Act::Answer("51"));
    let first = r.issuer.authorize(r.debit(&declined, RIGHT_PIN)).await;
    r.host.then(Act::Answer("00"));
    let again = r.issuer.authorize(r.debit(&declined, RIGHT_PIN)).await;
    assert_eq!(first, again);
    assert_eq!(r.host.seen().len(), 1);
    assert_eq!(r.issuer.reverse(&format!("{declined}:1")).await, Ok(false));
    assert!(r.store.reversals_for(&declined).await.unwrap().is_empty());
    let approved = r.order(DEBIT).await;
    r.host.then(Act::Answer("00"));
    assert!(r
        .issuer
        .authorize(r.debit(&approved, RIGHT_PIN))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(r.issuer.reverse(&format!("{approved}:1")).await, Ok(true));
    assert_eq!(r.store.reversals_for(&approved).await.unwrap().len(), 1);
}

/// An answer that arrives after the request was given up and reversed
/// (another node's recovery reversed it while this one still waited)
/// changes nothing: the journal stays `reversing`, the reversal stands,
/// and the caller hears `Timeout`, not the approval.
async fn a_late_answer_after_the_reversal_changes_nothing(app: TestApp) {
    let r = Arc::new(rig(app).await);
    let id = r.order(DEBIT).await;
    let key = format!("{id}:1");
    r.host.then(Act::Hold("00"));
    let waiting = {
        let r = r.clone();
        let req = r.debit(&id, RIGHT_PIN);
        tokio::spawn(async move { r.issuer.authorize(req).await })
    };
    while r.host.seen().is_empty() {
        tokio::task::yield_now().await;
    }
    assert_eq!(r.issuer.reverse(&key).await, Ok(true));
    r.host.release();
    let got = waiting.await.unwrap();
    assert_eq!(got.unwrap_err(), IssuerError::Timeout);
    let row = r.store.acquirer_request(&key).await.unwrap().unwrap();
    assert_eq!(row.status, RequestStatus::Reversing);
    assert_eq!(row.resp_code, None);
    assert_eq!(r.store.reversals_for(&id).await.unwrap().len(), 1);
}

/// Through the matcher: an approval succeeds the order, an unknown F39
/// fails it `issuer_declined` (05), one 0200 each.
async fn the_matcher_follows_the_links_answers(app: TestApp) {
    let r = rig(app).await;
    let paid = r.order_in_call(DEBIT).await;
    r.host.then(Act::Answer("00"));
    assert_eq!(r.verify_pin(&paid, RIGHT_PIN).await, Verdict::Approved);
    assert_eq!(
        r.outcome(&paid).await,
        ("succeeded".into(), "approved".into(), "00".into())
    );
    let odd = r.order_in_call(DEBIT).await;
    r.host.then(Act::Answer("05"));
    assert_eq!(
        r.verify_pin(&odd, RIGHT_PIN).await,
        Verdict::Failed(ResultCode::IssuerDeclined)
    );
    assert_eq!(
        r.outcome(&odd).await,
        ("failed".into(), "issuer_declined".into(), "05".into())
    );
    assert_eq!(r.host.seen().len(), 2);
}

/// No answer over the link (a timeout, a dropped link): the matcher never
/// queries in a loop nor sends a second purchase: the attempt is reversed
/// (one pending reversal) and the order fails `issuer_unavailable`.
async fn no_answer_reverses_and_fails_the_order(app: TestApp) {
    let r = rig(app).await;
    for act in [Act::Timeout, Act::Dropped] {
        let before = r.host.seen().len();
        let id = r.order_in_call(DEBIT).await;
        r.host.then(act);
        assert_eq!(
            r.verify_pin(&id, RIGHT_PIN).await,
            Verdict::Failed(ResultCode::IssuerUnavailable),
            "{act:?}"
        );
        assert_eq!(
            r.outcome(&id).await,
            ("failed".into(), "issuer_unavailable".into(), "03".into())
        );
        assert_eq!(r.host.seen().len(), before + 1, "{act:?}: one 0200 only");
        assert_eq!(r.store.reversals_for(&id).await.unwrap().len(), 1);
        assert_eq!(
            r.journal(&format!("{id}:1")).await,
            Some(RequestStatus::Reversing)
        );
    }
}

/// The matcher's own timeout (`bank.auth_timeout_secs`) runs out while the
/// 0200 is still on the link: the same: reversed, failed, and the answer
/// that comes after changes nothing.
async fn the_matchers_timeout_reverses_too(app: TestApp) {
    let r = rig(app).await;
    let id = r.order_in_call(DEBIT).await;
    r.host.then(Act::Hold("00"));
    assert_eq!(
        r.verify_pin(&id, RIGHT_PIN).await,
        Verdict::Failed(ResultCode::IssuerUnavailable)
    );
    r.host.release();
    assert_eq!(r.outcome(&id).await.0, "failed");
    assert_eq!(
        r.journal(&format!("{id}:1")).await,
        Some(RequestStatus::Reversing)
    );
    assert_eq!(r.store.reversals_for(&id).await.unwrap().len(), 1);
    assert_eq!(r.host.seen().len(), 1);
}

/// A crash left orders in `authorizing`; recovery asks the journal once:
/// sent and unanswered → reversed and failed; answered → followed; never
/// sent → failed with no reversal. Nothing is sent again.
async fn recovery_reverses_what_a_crash_left_unanswered(app: TestApp) {
    let r = rig(app).await;
    let now = voicepay::store::now_ms();
    let arm = |id: String| {
        let store = r.store.clone();
        async move {
            let key = format!("{id}:1");
            let new = voicepay::store::NewRequest {
                key: &key,
                order_id: &id,
                refund_id: None,
                original: voicepay::domain::OriginalRequest {
                    mti: "0200".into(),
                    stan: store
                        .next_stan(voicepay::bank::shanghai_day(time::OffsetDateTime::now_utc()))
                        .await
                        .unwrap(),
                    transmitted_at: "1130235959".into(),
                    acquirer_id: ACQUIRER.into(),
                },
                processing_code: "000000",
                amount: AMOUNT,
            };
            assert!(store.arm_request(&new, now).await.unwrap());
            key
        }
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = r.order_in_call(DEBIT).await;
        assert!(r
            .store
            .start_authorization(&id, "test", now)
            .await
            .unwrap()
            .is_some());
        ids.push(id);
    }
    let (crashed, answered, unsent) = (&ids[0], &ids[1], &ids[2]);
    arm(crashed.clone()).await;
    let key = arm(answered.clone()).await;
    assert!(r
        .store
        .answer_request(&key, "00", Some("A1B2C3"), None, now)
        .await
        .unwrap());
    let report = r.matcher.recover().await;
    assert_eq!(
        report,
        Recovery {
            settled: 3,
            unresolved: 0
        }
    );
    assert_eq!(
        r.outcome(crashed).await,
        ("failed".into(), "issuer_unavailable".into(), "03".into())
    );
    assert_eq!(r.store.reversals_for(crashed).await.unwrap().len(), 1);
    assert_eq!(r.outcome(answered).await.1, "approved");
    assert!(r.store.reversals_for(answered).await.unwrap().is_empty());
    assert_eq!(r.outcome(unsent).await.1, "issuer_unavailable");
    assert!(r.store.reversals_for(unsent).await.unwrap().is_empty());
    assert!(r.host.seen().is_empty(), "recovery sends nothing itself");
}

/// A worker on the rig's store and host whose clock runs `skew` seconds
/// ahead.
fn worker(r: &Rig, skew: Arc<std::sync::atomic::AtomicI64>) -> ReversalWorker<Arc<FakeHost>> {
    let ring = KeyRing::load(&r.app.settings.crypto).unwrap();
    let clock: voicepay::clock::SharedClock = Arc::new(move || {
        time::OffsetDateTime::now_utc()
            + time::Duration::seconds(skew.load(std::sync::atomic::Ordering::SeqCst))
    });
    ReversalWorker::new(
        r.host.clone(),
        r.store.clone(),
        Arc::new(Vault::new(&ring)),
        terminal(),
        Duration::from_secs(10),
        "node-test".into(),
    )
    .with_clock(clock)
}

/// The store-and-forward reversal of an unanswered purchase: a 0420 naming
/// the original in F90 (with the order's card in F2, F3/F4 of the
/// original, a STAN of its own); unanswered, it is repeated as 0421 once
/// its back-off has passed (not before), until a 0430 (whatever its F39)
/// acknowledges it; then nothing more is sent.
async fn reversals_are_sent_until_acknowledged(app: TestApp) {
    use std::sync::atomic::{AtomicI64, Ordering};
    use voicepay::store::ReversalStatus;
    let r = rig(app).await;
    let id = r.order_in_call(DEBIT).await;
    r.host.then(Act::Timeout);
    r.verify_pin(&id, RIGHT_PIN).await;
    let purchase = r.host.seen()[0].clone();
    let skew = Arc::new(AtomicI64::new(0));
    // while the link is not signed on, nothing is sent or counted
    let down = worker(&r, skew.clone()).with_ready(Arc::new(|| false));
    assert_eq!(down.run_once().await.unwrap(), ReversalRound::default());
    assert_eq!(r.host.seen().len(), 1);
    assert_eq!(r.store.reversals_for(&id).await.unwrap()[0].attempts, 0);
    let w = worker(&r, skew.clone());
    r.host.then(Act::Timeout);
    let first = w.run_once().await.unwrap();
    assert_eq!((first.sent, first.acknowledged, first.failed), (1, 0, 1));
    let advice = r.host.seen()[1].clone();
    assert_eq!(advice.mti().as_str(), "0420");
    assert_eq!(advice.text(2), Some(DEBIT));
    assert_eq!(advice.text(3), Some("000000"));
    assert_eq!(advice.text(4), purchase.text(4));
    assert_ne!(advice.stan(), purchase.stan());
    assert_eq!(advice.text(41), Some(TERMINAL));
    let original = advice.original().unwrap();
    assert_eq!(Some(original.stan), purchase.stan());
    assert_eq!(Some(original.transmitted_at.as_str()), purchase.text(7));
    assert_eq!(original.mti, "0200");
    assert!(!advice.has(52) && !advice.has(61) && !advice.has(14));
    let row = &r.store.reversals_for(&id).await.unwrap()[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.status, ReversalStatus::Pending);
    assert!(row.last_error.as_deref().unwrap().contains("no answer"));
    // not due again before its back-off
    assert_eq!(w.run_once().await.unwrap(), ReversalRound::default());
    assert_eq!(r.host.seen().len(), 2);
    skew.store(3600, Ordering::SeqCst);
    r.host.then(Act::Answer("96"));
    let second = w.run_once().await.unwrap();
    assert_eq!((second.sent, second.acknowledged, second.failed), (1, 1, 0));
    let repeat = r.host.seen()[2].clone();
    assert_eq!(repeat.mti().as_str(), "0421");
    assert_eq!(repeat.text(90), advice.text(90));
    let row = &r.store.reversals_for(&id).await.unwrap()[0];
    assert_eq!(row.status, ReversalStatus::Acknowledged);
    skew.store(7200, Ordering::SeqCst);
    assert_eq!(w.run_once().await.unwrap(), ReversalRound::default());
    assert_eq!(r.host.seen().len(), 3);
    // the order stays failed: a reversal never changes it
    assert_eq!(r.outcome(&id).await.1, "issuer_unavailable");
}

fn refund(order_id: &str, refund_id: &str, fen: i64) -> voicepay::bank::RefundRequest {
    voicepay::bank::RefundRequest {
        refund_id: refund_id.into(),
        order_id: order_id.into(),
        purchase_key: format!("{order_id}:1"),
        amount: Amount::parse(fen, i64::MAX).unwrap(),
        card: card(DEBIT),
        acceptor_id: Some(SHOP.into()),
    }
}

/// A refund is one 0200 with F3 200000 and F90 naming the approved
/// purchase (from the journal), journalled under the refund id: its first
/// answer is final; no answer reverses it (a 0420 with F3 200000 follows);
/// a refund of a purchase the link never approved sends nothing.
async fn refunds_go_over_the_link_journalled(app: TestApp) {
    use voicepay::bank::IssuerLink;
    let r = rig(app).await;
    let id = r.order_in_call(DEBIT).await;
    r.host.then(Act::Answer("00"));
    assert_eq!(r.verify_pin(&id, RIGHT_PIN).await, Verdict::Approved);
    let purchase = r.host.seen()[0].clone();
    // approved refund
    r.host.then(Act::Answer("00"));
    let got = r.issuer.refund(refund(&id, "rfd_one", 5000)).await.unwrap();
    assert!(got.is_approved());
    let m = r.host.seen()[1].clone();
    assert_eq!(m.mti().as_str(), "0200");
    assert_eq!(m.text(3), Some("200000"));
    assert_eq!(m.text(4), Some("000000005000"));
    assert_eq!(m.text(2), Some(DEBIT));
    let original = m.original().unwrap();
    assert_eq!(Some(original.stan), purchase.stan());
    assert_eq!(Some(original.transmitted_at.as_str()), purchase.text(7));
    assert!(!m.has(52) && !m.has(61));
    let row = r.store.acquirer_request("rfd_one").await.unwrap().unwrap();
    assert_eq!(row.refund_id.as_deref(), Some("rfd_one"));
    assert_eq!((row.processing_code.as_str(), row.amount), ("200000", 5000));
    assert_eq!(row.status, RequestStatus::Answered);
    // the same refund again: the journalled answer, nothing sent
    let again = r.issuer.refund(refund(&id, "rfd_one", 5000)).await.unwrap();
    assert_eq!(again, got);
    assert_eq!(r.host.seen().len(), 2);
    // no answer: reversed, as a refund
    r.host.then(Act::Timeout);
    let lost = r.issuer.refund(refund(&id, "rfd_two", 1000)).await;
    assert_eq!(lost, Err(IssuerError::Timeout));
    let reversals = r.store.reversals_for(&id).await.unwrap();
    assert_eq!(reversals.len(), 1);
    assert_eq!(reversals[0].refund_id.as_deref(), Some("rfd_two"));
    assert_eq!(reversals[0].processing_code, "200000");
    assert_eq!(reversals[0].amount, 1000);
    r.host.then(Act::Answer("00"));
    let skew = Arc::new(std::sync::atomic::AtomicI64::new(0));
    assert_eq!(worker(&r, skew).run_once().await.unwrap().acknowledged, 1);
    let advice = r.host.seen()[3].clone();
    assert_eq!(
        (advice.mti().as_str(), advice.text(3)),
        ("0420", Some("200000"))
    );
    // a declined order's purchase cannot be refunded: nothing sent
    let declined = r.order_in_call(DEBIT).await;
    r.host.then(Act::Answer("51"));
    r.verify_pin(&declined, RIGHT_PIN).await;
    let before = r.host.seen().len();
    let refused = r.issuer.refund(refund(&declined, "rfd_three", 100)).await;
    assert_eq!(refused, Err(IssuerError::Unavailable));
    assert_eq!(r.host.seen().len(), before);
    assert!(r
        .store
        .acquirer_request("rfd_three")
        .await
        .unwrap()
        .is_none());
}

/// What the issuer, the matcher and the reversal worker log: masked card
/// numbers, MTIs, STANs, F39; never a card number, ID number or PIN.
async fn nothing_secret_is_logged(app: TestApp) {
    let log = voicepay_testkit::log::capture();
    let r = rig(app).await;
    let paid = r.order_in_call(DEBIT).await;
    r.host.then(Act::Answer("00"));
    assert_eq!(r.verify_pin(&paid, RIGHT_PIN).await, Verdict::Approved);
    let lost = r.order_in_call(DEBIT).await;
    r.host.then(Act::Timeout);
    r.verify_pin(&lost, RIGHT_PIN).await;
    let credit = r.order(CREDIT).await;
    r.host.then(Act::Dropped);
    let _ = r.issuer.authorize(r.credit(&credit)).await;
    let skew = Arc::new(std::sync::atomic::AtomicI64::new(0));
    assert_eq!(worker(&r, skew).run_once().await.unwrap().acknowledged, 2);
    let text = log.text();
    assert!(
        text.contains("622200******0017"),
        "nothing captured: {text}"
    );
    assert!(text.contains("sending a reversal advice"), "{text}");
    for secret in [DEBIT, CREDIT, HOLDER, RIGHT_PIN, LINK_ZPK] {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }
}

on_both_stores!(
    nothing_secret_is_logged,
    refunds_go_over_the_link_journalled,
    reversals_are_sent_until_acknowledged,
    the_matcher_follows_the_links_answers,
    no_answer_reverses_and_fails_the_order,
    the_matchers_timeout_reverses_too,
    recovery_reverses_what_a_crash_left_unanswered,
    each_f39_maps_to_its_result,
    the_purchase_fields_follow_the_interface,
    an_unknown_outcome_is_reversed_never_resent,
    a_request_never_sent_is_unavailable_and_forgotten,
    the_first_answer_is_final,
    a_late_answer_after_the_reversal_changes_nothing,
    a_merchant_without_an_acceptor_id_sends_nothing,
);
