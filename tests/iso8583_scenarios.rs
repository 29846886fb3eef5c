//! voicepay's acquirer link proved against an ISO 8583 issuer host it did
//! not write (issue 13, "Proof against a peer voicepay did not write").
//!
//! The `voicepay serve` binary runs as a child process with
//! `bank.kind = "iso8583"`, pointed at the Python peer
//! (tests/iso8583_peer/peer.py: every frame decoded with pyiso8583's
//! `default` spec, F52 deciphered with psec, balances, a ledger, duplicates
//! by (F7, F11, F32), reversals matched by F90). Cardholders answer the
//! daemon's callbacks on the scripted fake ARI and key their confirmation
//! and secrets as DTMF events (`voicepay_testkit::iso8583`). Each test
//! checks what a merchant sees (the order through the API), what the
//! issuer booked (the peer's ledger and counters) and that the peer found
//! no protocol error.
//!
//! Needs the venv with pyiso8583 and psec (`scripts/test` installs them:
//! `ensure_iso8583_peer`); skips without it, fails under `CI=true`.

use serde_json::Value;
use std::sync::Arc;
use voicepay::crypto::{PinBlock0, Zpk};
use voicepay_testkit::fake_ari::FakeAri;
use voicepay_testkit::iso8583::{
    credit_order, debit_order, entries, net_fen, order_events, phone, reversals, BankHost, Callers,
    Daemon, Node, Peer, ACCEPTOR_ID, CREDIT, CREDIT_CVN2, CREDIT_EXPIRY_MMYY, CREDIT_EXPIRY_YYMM,
    DEBIT, DEBIT_PIN, HOLDER, LAB_ZPK, LAB_ZPK_ID, WRONG_PIN,
};
use voicepay_testkit::secrets::Secrets;
use voicepay_testkit::{wait_for, wait_until};

/// The peer, the fake ARI with its cardholders, one node, its merchant and
/// its running daemon.
struct World {
    peer: Peer,
    _fake: Arc<FakeAri>,
    callers: Callers,
    node: Node,
    key: String,
    daemon: Daemon,
}

/// `None`: skipped (no venv; a failure under `CI=true`).
async fn world(tweak: impl FnOnce(&mut Node)) -> Option<World> {
    let peer = Peer::start()?;
    let fake = Arc::new(FakeAri::start().await);
    let callers = Callers::start(fake.clone());
    let mut node = Node::new(env!("CARGO_BIN_EXE_voicepay"), &fake, &peer.address());
    tweak(&mut node);
    // the stub needs no acceptor id (and the harness check runs before the
    // merchants' F42 exists)
    let stub = node.env("BANK__KIND").as_deref() == Some("stub");
    let key = node.merchant((!stub).then_some(ACCEPTOR_ID));
    let daemon = node.serve().await;
    Some(World {
        peer,
        _fake: fake,
        callers,
        node,
        key,
        daemon,
    })
}

impl World {
    /// A debit order whose cardholder keys `secrets` (one per prompt).
    async fn debit(&self, amount: i64, secrets: &[&str]) -> String {
        let phone = phone();
        self.callers.script(&phone, secrets);
        self.daemon
            .order(&self.key, &debit_order(&reference(), &phone, amount))
            .await
    }

    async fn credit(&self, amount: i64) -> String {
        let phone = phone();
        self.callers
            .script(&phone, &[CREDIT_EXPIRY_MMYY, CREDIT_CVN2]);
        self.daemon
            .order(&self.key, &credit_order(&reference(), &phone, amount))
            .await
    }

    async fn settled(&self, id: &str) -> Value {
        self.daemon.settled(&self.key, id).await
    }

    /// Waits until the peer's ledger has `n` entries; returns it.
    async fn ledger_of(&self, n: usize) -> Vec<Value> {
        wait_for(std::time::Duration::from_secs(60), async || {
            let l = self.peer.ledger().await;
            if l.len() >= n {
                Ok(l)
            } else {
                Err(format!("the ledger never had {n} entries: {l:#?}"))
            }
        })
        .await
    }
}

impl World {
    /// Waits until the daemon logged, at warn, the answer with this STAN
    /// that nobody waited for (the link drops it, masked).
    async fn dropped_with_a_warning(&self, stan: &str) {
        wait_until(
            std::time::Duration::from_secs(30),
            format!("no warning about the 0210 with STAN {stan} in the daemon's log"),
            async || {
                self.daemon
                    .log_text()
                    .lines()
                    .any(|l| l.contains("WARN") && l.contains(stan) && l.contains("0210"))
            },
        )
        .await;
    }
}

fn reference() -> String {
    format!("ISO{}", phone())
}

fn assert_failed(v: &Value, code: &str) {
    assert_eq!(v["status"], "failed", "{v:#}");
    assert_eq!(v["result"]["code"], code, "{v:#}");
}

fn assert_approved(v: &Value) {
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
}

#[tokio::test]
async fn a_debit_purchase_is_approved_with_one_debit_at_the_peer() {
    let Some(w) = world(|_| {}).await else { return };
    let id = w.debit(1234, &[DEBIT_PIN]).await;
    let v = w.settled(&id).await;
    assert_approved(&v);
    assert!(
        w.callers
            .heard(&id, 1)
            .contains(&"voicepay/success".to_owned()),
        "{:?}",
        w.callers.heard(&id, 1)
    );
    let ledger = w.ledger_of(1).await;
    let debits = entries(&ledger, "debit");
    assert_eq!(debits.len(), 1, "{ledger:#?}");
    assert_eq!(debits[0]["amount"], 1234);
    assert_eq!(debits[0]["pan"], "622200******0017");
    assert_eq!(debits[0]["terminal"], "VPTERM01");
    assert_eq!(debits[0]["acceptor"], ACCEPTOR_ID, "F42, the merchant's");
    let stats = w.peer.stats().await;
    assert_eq!(stats["financial"]["000000"], 1, "one 0200: {stats}");
    assert_eq!(stats["balances"]["622200******0017"], 10_000_000 - 1234);
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn a_credit_purchase_is_approved_with_one_debit_at_the_peer() {
    let Some(w) = world(|_| {}).await else { return };
    let id = w.credit(2500).await;
    assert_approved(&w.settled(&id).await);
    let heard = w.callers.heard(&id, 1);
    assert!(
        heard.contains(&"voicepay/enter-expiry".to_owned()),
        "{heard:?}"
    );
    assert!(
        heard.contains(&"voicepay/enter-cvn2".to_owned()),
        "{heard:?}"
    );
    let ledger = w.ledger_of(1).await;
    let debits = entries(&ledger, "debit");
    assert_eq!(debits.len(), 1, "{ledger:#?}");
    assert_eq!(debits[0]["amount"], 2500);
    assert_eq!(debits[0]["pan"], "625000******0012");
    w.peer.assert_no_protocol_error().await;
}

/// F39 → result code, README's table (55 and 63 have tests of their own:
/// voicepay asks again).
const DECLINES: [(&str, &str); 9] = [
    ("51", "insufficient_funds"),
    ("54", "card_expired"),
    ("14", "invalid_card"),
    ("62", "card_restricted"),
    ("61", "over_limit"),
    ("91", "issuer_unavailable"),
    ("96", "issuer_unavailable"),
    // not in the table: a decline, the raw code in the audit log
    ("N7", "issuer_declined"),
    // last: it ends the card's PIN tries for the day at voicepay too
    ("75", "pin_tries_exceeded"),
];

#[tokio::test]
async fn each_mapped_decline_fails_the_order_with_its_result_code_and_moves_no_money() {
    let Some(w) = world(|_| {}).await else { return };
    for (n, (f39, code)) in DECLINES.iter().enumerate() {
        w.peer.control(&format!("fail-next {f39}")).await;
        let id = w.debit(100 + n as i64, &[DEBIT_PIN]).await;
        let v = w.settled(&id).await;
        assert_failed(&v, code);
        // the caller is told the result (an unknown F39 too)
        let heard = w.callers.heard(&id, 1);
        let told = format!("voicepay/fail-{code}");
        assert!(heard.contains(&told), "F39 {f39}: {heard:?}");
        let stats = w.peer.stats().await;
        assert_eq!(
            stats["financial"]["000000"],
            n + 1,
            "F39 {f39}: one 0200 per order, never a second: {stats}"
        );
        assert_eq!(
            stats["received"]["0420"],
            Value::Null,
            "F39 {f39}: nothing to reverse"
        );
        if *f39 == "N7" {
            let events = order_events(&w.node, &id).await;
            assert!(
                events.iter().any(|e| e.3.contains("N7")),
                "the raw F39 is in the audit log: {events:#?}"
            );
        }
    }
    assert!(w.peer.ledger().await.is_empty(), "a decline moved money");
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn a_55_asks_for_the_pin_again_and_the_next_try_is_approved() {
    let Some(w) = world(|_| {}).await else { return };
    w.peer.control("fail-next 55").await;
    let id = w.debit(700, &[DEBIT_PIN, DEBIT_PIN]).await;
    assert_approved(&w.settled(&id).await);
    let heard = w.callers.heard(&id, 1);
    let count = |s: &str| heard.iter().filter(|m| *m == s).count();
    assert_eq!(count("voicepay/fail-wrong_secret"), 1, "{heard:?}");
    assert_eq!(count("voicepay/enter-pin"), 2, "{heard:?}");
    assert_eq!(w.peer.stats().await["financial"]["000000"], 2);
    assert_eq!(entries(&w.ledger_of(1).await, "debit").len(), 1);
    w.peer.assert_no_protocol_error().await;
}

/// 63 (ID number mismatch) is told to the caller as a wrong secret (never
/// which half was wrong), so they are asked again; the audit log says what
/// it was, and the next try is approved.
#[tokio::test]
async fn a_63_is_told_as_a_wrong_secret_audited_as_an_id_mismatch_and_asked_again() {
    let Some(w) = world(|_| {}).await else { return };
    w.peer.control("fail-next 63").await;
    let id = w.debit(750, &[DEBIT_PIN, DEBIT_PIN]).await;
    assert_approved(&w.settled(&id).await);
    let heard = w.callers.heard(&id, 1);
    let count = |s: &str| heard.iter().filter(|m| *m == s).count();
    assert_eq!(count("voicepay/fail-wrong_secret"), 1, "{heard:?}");
    assert_eq!(count("voicepay/enter-pin"), 2, "{heard:?}");
    let events = order_events(&w.node, &id).await;
    assert!(
        events.iter().any(|e| e.3.contains("id_mismatch")),
        "the audit log says ID mismatch: {events:#?}"
    );
    assert_eq!(w.peer.stats().await["financial"]["000000"], 2);
    assert_eq!(net_fen(&w.ledger_of(1).await), 750);
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn a_wrong_then_right_pin_in_one_call_is_approved_once() {
    let Some(w) = world(|_| {}).await else { return };
    let id = w.debit(800, &[WRONG_PIN, DEBIT_PIN]).await;
    let v = w.settled(&id).await;
    assert_approved(&v);
    assert_eq!(
        v["attempts"].as_array().map(Vec::len),
        Some(1),
        "one call: {v:#}"
    );
    let heard = w.callers.heard(&id, 1);
    let count = |s: &str| heard.iter().filter(|m| *m == s).count();
    assert_eq!(count("voicepay/fail-wrong_secret"), 1, "{heard:?}");
    assert_eq!(count("voicepay/enter-pin"), 2, "{heard:?}");
    // the peer deciphered both PIN blocks: the first was wrong (55)
    let stats = w.peer.stats().await;
    assert_eq!(stats["financial"]["000000"], 2, "{stats}");
    let ledger = w.ledger_of(1).await;
    assert_eq!(entries(&ledger, "debit").len(), 1, "{ledger:#?}");
    assert_eq!(net_fen(&ledger), 800);
    w.peer.assert_no_protocol_error().await;
}

/// The order failed `issuer_unavailable`, and the peer's ledger holds one
/// debit and one reversal naming it (F90): no money moved in the end.
async fn reversed_in_the_end(w: &World, d: &Daemon, id: &str, amount: i64) {
    let v = d.settled(&w.key, id).await;
    assert_failed(&v, "issuer_unavailable");
    let ledger = w.ledger_of(2).await;
    let debits = entries(&ledger, "debit");
    let reversals = entries(&ledger, "reversal");
    assert_eq!(debits.len(), 1, "{ledger:#?}");
    assert_eq!(debits[0]["amount"], amount);
    assert_eq!(reversals.len(), 1, "{ledger:#?}");
    assert_eq!(
        reversals[0]["original"], debits[0]["key"],
        "F90 names the 0200"
    );
    assert_eq!(net_fen(&ledger), 0, "{ledger:#?}");
    assert_eq!(
        w.peer.stats().await["financial"]["000000"],
        1,
        "never a second purchase"
    );
    // and the daemon knows it: its pending reversal is acknowledged
    wait_until(
        std::time::Duration::from_secs(60),
        "the pending reversal was never acknowledged",
        async || voicepay_testkit::iso8583::reversals(&w.node).await == (1, 0),
    )
    .await;
}

#[tokio::test]
async fn the_link_dropped_with_a_purchase_in_flight_reverses_it() {
    let Some(w) = world(|_| {}).await else { return };
    w.peer.control("hold-next-0210").await;
    let id = w.debit(900, &[DEBIT_PIN]).await;
    w.peer.received("0200", 1).await;
    assert_eq!(w.peer.control("drop-link").await["dropped"], 1);
    reversed_in_the_end(&w, &w.daemon, &id, 900).await;
    // it reconnected, signed on first, and sent the 0420 then
    let stats = w.peer.received("0420", 1).await;
    assert_eq!(
        stats["first_on_link"],
        serde_json::json!(["0800/001", "0800/001"]),
        "{stats}"
    );
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn no_answer_sends_0420_then_0421_until_acknowledged() {
    let Some(w) = world(|_| {}).await else { return };
    w.peer.control("hold-next-0210").await;
    w.peer.control("drop-next-0430").await;
    let id = w.debit(1100, &[DEBIT_PIN]).await;
    let stats = w.peer.received("0421", 1).await;
    assert_eq!(stats["received"]["0420"], 1, "{stats}");
    reversed_in_the_end(&w, &w.daemon, &id, 1100).await;
    // the held 0210 (an approval) arrives late: it changes nothing
    assert_eq!(w.peer.control("release-held").await["released"], 1);
    let again = w.peer.stats().await;
    assert_eq!(again["sent"]["0210"], 1, "{again}");
    assert_failed(&w.settled(&id).await, "issuer_unavailable");
    assert_eq!(net_fen(&w.peer.ledger().await), 0);
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn killed_after_sending_0200_and_restarted_the_reversal_goes_out() {
    let Some(mut w) = world(|_| {}).await else {
        return;
    };
    w.peer.control("hold-next-0210").await;
    let id = w.debit(1300, &[DEBIT_PIN]).await;
    w.peer.received("0200", 1).await;
    w.daemon.kill();
    // while no daemon runs, the peer holds the debit
    assert_eq!(net_fen(&w.peer.ledger().await), 1300);
    let second = w.node.serve().await;
    w.peer.received("0420", 1).await;
    reversed_in_the_end(&w, &second, &id, 1300).await;
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn a_duplicate_0210_changes_nothing() {
    let Some(w) = world(|_| {}).await else { return };
    let first = w.debit(1500, &[DEBIT_PIN]).await;
    assert_approved(&w.settled(&first).await);
    let stan = w.peer.control("send-duplicate-0210").await["stan"]
        .as_str()
        .expect("stan")
        .to_owned();
    w.dropped_with_a_warning(&stan).await;
    // the link lives on: the next purchase goes through on it
    let second = w.debit(1600, &[DEBIT_PIN]).await;
    assert_approved(&w.settled(&second).await);
    assert_approved(&w.daemon.view(&w.key, &first).await);
    let stats = w.peer.stats().await;
    assert_eq!(
        stats["connections"], 1,
        "the duplicate did not cost the link: {stats}"
    );
    let ledger = w.peer.ledger().await;
    assert_eq!(entries(&ledger, "debit").len(), 2, "{ledger:#?}");
    assert_eq!(net_fen(&ledger), 3100);
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn an_unsolicited_0210_changes_nothing() {
    let Some(w) = world(|_| {}).await else { return };
    let stan = w.peer.control("send-unsolicited").await["stan"]
        .as_str()
        .expect("stan")
        .to_owned();
    w.dropped_with_a_warning(&stan).await;
    let id = w.debit(1700, &[DEBIT_PIN]).await;
    assert_approved(&w.settled(&id).await);
    let stats = w.peer.stats().await;
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(net_fen(&w.peer.ledger().await), 1700);
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn the_link_signs_on_first_and_echoes_when_idle() {
    let Some(w) = world(|n| {
        n.set("BANK__ISO8583__ECHO_INTERVAL_SECS", "1");
    })
    .await
    else {
        return;
    };
    let stats = wait_for(std::time::Duration::from_secs(30), async || {
        let s = w.peer.stats().await;
        if s["network"]["301"].as_u64().unwrap_or(0) >= 2 {
            Ok(s)
        } else {
            Err(format!("no two echoes: {s}"))
        }
    })
    .await;
    assert_eq!(stats["network"]["001"], 1, "{stats}");
    assert_eq!(stats["first_on_link"], serde_json::json!(["0800/001"]));
    let ready = w.daemon.readyz().await;
    assert_eq!(ready["bank"]["kind"], "iso8583", "{ready}");
    w.peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn a_refund_reaches_the_peer_as_a_0200_with_processing_code_200000() {
    let Some(w) = world(|_| {}).await else { return };
    let id = w.debit(5000, &[DEBIT_PIN]).await;
    assert_approved(&w.settled(&id).await);
    let (status, body) = w.daemon.refund(&w.key, &id, 2000).await;
    assert_eq!(status, 201, "{body}");
    let ledger = w.ledger_of(2).await;
    let debit = entries(&ledger, "debit")[0].clone();
    let credits = entries(&ledger, "credit");
    assert_eq!(credits.len(), 1, "{ledger:#?}");
    assert_eq!(credits[0]["amount"], 2000);
    assert_eq!(
        credits[0]["original"], debit["key"],
        "F90 names the purchase"
    );
    assert_eq!(w.peer.stats().await["financial"]["200000"], 1);
    let v = w
        .daemon
        .view_until(&w.key, &id, |v| v["refunded_amount"] == 2000)
        .await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["refunds"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["refunds"][0]["amount"], 2000, "{v:#}");
    w.peer.assert_no_protocol_error().await;
}

/// F52 as the peer receives it, enciphered under the lab ZPK, and in clear
/// (ISO 9564 format 0: PIN field XOR PAN field).
fn pin_blocks(pin: &str, pan: &str) -> [[u8; 8]; 2] {
    let zpk = Zpk::from_hex(LAB_ZPK_ID, LAB_ZPK).expect("lab ZPK");
    let enciphered = *PinBlock0::encipher(pin.as_bytes(), pan, &zpk)
        .expect("format 0")
        .as_bytes();
    let pin_field = hex::decode(format!("{:02}{pin:F<14}", pin.len())).expect("hex");
    let digits = &pan[pan.len() - 13..pan.len() - 1];
    let pan_field = hex::decode(format!("0000{digits}")).expect("hex");
    let mut clear = [0u8; 8];
    for (i, b) in clear.iter_mut().enumerate() {
        *b = pin_field[i] ^ pan_field[i];
    }
    [enciphered, clear]
}

#[tokio::test]
async fn no_secret_reaches_the_daemon_log_the_database_or_the_peer_log() {
    let Some(w) = world(|_| {}).await else { return };
    let debit = w.debit(1900, &[WRONG_PIN, DEBIT_PIN]).await;
    assert_approved(&w.settled(&debit).await);
    let credit = w.credit(2100).await;
    assert_approved(&w.settled(&credit).await);
    // and one reversal, so that a 0420 is logged too
    w.peer.control("hold-next-0210").await;
    let held = w.debit(2300, &[DEBIT_PIN]).await;
    assert_failed(&w.settled(&held).await, "issuer_unavailable");
    w.peer.received("0420", 1).await;

    let mut secrets = Secrets::new()
        .pin(DEBIT_PIN)
        .pin(WRONG_PIN)
        .card(DEBIT)
        .card(CREDIT)
        .id_number(HOLDER)
        .expiry_cvn2(CREDIT_EXPIRY_MMYY, CREDIT_CVN2)
        .text("expiry as F14 (YYMM)", CREDIT_EXPIRY_YYMM)
        .text("F61 of a debit purchase", &format!("01{HOLDER}"))
        .text(
            "F61 of a credit purchase",
            &format!("01{HOLDER}{CREDIT_CVN2}"),
        );
    for pin in [DEBIT_PIN, WRONG_PIN] {
        let [enciphered, clear] = pin_blocks(pin, DEBIT);
        secrets = secrets
            .pin_block("F52 as sent", &enciphered)
            .pin_block("F52 in clear", &clear);
    }
    let log = w.daemon.log();
    assert!(
        String::from_utf8_lossy(&log).contains("TRACE"),
        "the daemon logged at trace level"
    );
    let mut found = secrets.scan("the daemon's log (trace)", &log);
    for f in w.node.db_files() {
        found.extend(secrets.scan_file(&f, 0));
    }
    found.extend(secrets.scan_file(&w.peer.log_path(), 0));
    found.extend(secrets.scan_file(&w.peer.ledger_path(), 0));
    assert!(
        found.is_empty(),
        "secrets found:\n{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // the scan looked at something: the logs name the masked card
    let peer_log = std::fs::read_to_string(w.peer.log_path()).expect("peer log");
    assert!(
        peer_log.contains("622200******0017"),
        "the peer logged little"
    );
    w.peer.assert_no_protocol_error().await;
}

/// The harness itself, on the in-process stub issuer (no link): a daemon
/// child process, cardholders on the fake ARI keying a wrong then a right
/// PIN, and a credit card's expiry and CVN2. Proves that a failure of the
/// tests above is the link's, not the harness's.
#[tokio::test]
async fn the_harness_pays_callbacks_through_the_stub_issuer() {
    let Some(w) = world(|n| {
        n.set("BANK__KIND", "stub");
    })
    .await
    else {
        return;
    };
    let id = w.debit(1234, &[WRONG_PIN, DEBIT_PIN]).await;
    assert_approved(&w.settled(&id).await);
    let heard = w.callers.heard(&id, 1);
    let count = |s: &str| heard.iter().filter(|m| *m == s).count();
    assert_eq!(count("voicepay/enter-pin"), 2, "{heard:?}");
    assert_eq!(count("voicepay/success"), 1, "{heard:?}");
    let credit = w.credit(2500).await;
    assert_approved(&w.settled(&credit).await);
    // a cardholder without the secret hangs up at the prompt
    let gone = w.debit(10, &[]).await;
    let v = w.settled(&gone).await;
    assert_eq!(v["status"], "failed", "{v:#}");
    assert!(w.peer.ledger().await.is_empty(), "the peer was not used");
    assert_eq!(reversals(&w.node).await, (0, 0), "nothing to reverse");
    let events = order_events(&w.node, &id).await;
    assert!(events.iter().any(|e| e.2 == "succeeded"), "{events:#?}");
}

/// A callback order on any test card (holder [`HOLDER`]).
fn order_on(card: &str, phone: &str, amount: i64) -> Value {
    let mut v = debit_order(&reference(), phone, amount);
    v["card_number"] = serde_json::json!(card);
    v
}

/// The same payments against `voicepay bank serve` (voicepay's own ISO 8583
/// host around the stub issuer) instead of the Python peer: approvals
/// (debit, credit), two declines by card, a wrong then right PIN, the slow
/// card's answer (5 s) later than the link's response timeout (3 s) →
/// reversed, and a refund. The host's balances, read from its state file
/// after it stops, show each movement once. Needs no venv.
#[tokio::test]
async fn voicepay_bank_serve_answers_the_same_payments() {
    let bin = env!("CARGO_BIN_EXE_voicepay");
    let mut host = BankHost::start(bin);
    let fake = Arc::new(FakeAri::start().await);
    let callers = Callers::start(fake.clone());
    let node = Node::new(bin, &fake, &host.address);
    let key = node.merchant(Some(ACCEPTOR_ID));
    let daemon = node.serve().await;
    let pay = async |card: &str, amount: i64, secrets: &[&str]| {
        let phone = phone();
        callers.script(&phone, secrets);
        let id = daemon.order(&key, &order_on(card, &phone, amount)).await;
        (id.clone(), daemon.settled(&key, &id).await)
    };
    let (debit, v) = pay(DEBIT, 1234, &[DEBIT_PIN]).await;
    assert_approved(&v);
    let (_, v) = pay(CREDIT, 2500, &[CREDIT_EXPIRY_MMYY, CREDIT_CVN2]).await;
    assert_approved(&v);
    let (_, v) = pay("6222000000000033", 100, &[DEBIT_PIN]).await;
    assert_failed(&v, "card_restricted");
    let (_, v) = pay("6222000000000025", 100, &[DEBIT_PIN]).await;
    assert_failed(&v, "insufficient_funds");
    let (_, v) = pay(DEBIT, 800, &[WRONG_PIN, DEBIT_PIN]).await;
    assert_approved(&v);
    let (_, v) = pay("6222000000000041", 4321, &[DEBIT_PIN]).await;
    assert_failed(&v, "issuer_unavailable");
    let (status, body) = daemon.refund(&key, &debit, 500).await;
    assert_eq!(status, 201, "{body}");
    daemon
        .view_until(&key, &debit, |v| v["refunded_amount"] == 500)
        .await;
    wait_until(
        std::time::Duration::from_secs(60),
        "the slow card's reversal was never acknowledged",
        async || matches!(reversals(&node).await, (n, 0) if n >= 1),
    )
    .await;

    drop(daemon);
    let balances = host.stop_and_balances();
    let start = 10_000_000;
    assert_eq!(
        balances["622200******0017"],
        start - 1234 - 800 + 500,
        "{balances:?}"
    );
    assert_eq!(balances["625000******0012"], start - 2500, "{balances:?}");
    assert_eq!(
        balances["622200******0041"], start,
        "reversed: {balances:?}"
    );
    assert_eq!(balances["622200******0033"], start, "{balances:?}");
    let found = Secrets::new()
        .pin(DEBIT_PIN)
        .pin(WRONG_PIN)
        .card(DEBIT)
        .id_number(HOLDER)
        .expiry_cvn2(CREDIT_EXPIRY_MMYY, CREDIT_CVN2)
        .scan_file(&host.log_path(), 0);
    assert!(found.is_empty(), "secrets in the host's log: {found:?}");
}
