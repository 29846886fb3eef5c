//! The ISO 8583 link (`bank::iso8583::link`) against the Python issuer peer
//! voicepay did not write (tests/iso8583_peer/peer.py, pyiso8583's reading
//! of the wire format), over real TCP on the real clock: sign-on and echo as
//! the peer counts them, a purchase it decodes and answers, `drop-link`
//! (in-flight exchange dropped, then reconnect and a new sign-on),
//! `hold-next-0210` (timeout, the late answer dropped), and
//! `send-duplicate-0210` / `send-unsolicited` (logged masked, dropped, the
//! link goes on). Each test ends with the peer's protocol-error count at 0.
//!
//! Also: [`StoreStans`], the link's STAN source in production, draws from
//! the store's per-day sequence on SQLite and PostgreSQL.
//!
//! The peer tests skip without the venv (pyiso8583 + psec), except under
//! `CI=true` (the testkit's `iso8583::Peer`); `scripts/lib.sh
//! ensure_iso8583_peer` fills it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use voicepay::bank::iso8583::fields::{CardholderAuth, EntryMode, ProcessingCode};
use voicepay::bank::iso8583::link::{CounterStans, StanSource, StoreStans};
use voicepay::bank::iso8583::{Link, LinkError, LinkSettings, LinkStatus, Message, Mti};
use voicepay::domain::{Amount, CardNumber, Cvn2, Expiry, IdNumber, Stan};

use voicepay::store::Store;
use voicepay_testkit::iso8583::Peer;
use voicepay_testkit::{on_both_stores, wait_some, TestApp};

const TID: &str = "VP000001";
const ACQUIRER: &str = "00012345";
/// How long a condition may take before the test gives up on it (not a
/// timing assertion: everything here normally happens in milliseconds).
const PATIENCE: Duration = Duration::from_secs(30);

/// The link to `peer`, its own STANs from 900001.
fn link_to(peer: &Peer, echo_interval: Duration) -> Link {
    let settings = LinkSettings {
        address: peer.address(),
        terminal_id: TID.into(),
        acquirer_id: ACQUIRER.into(),
        response_timeout: Duration::from_secs(2),
        echo_interval,
        max_in_flight: 4,
    };
    Link::spawn(settings, Arc::new(CounterStans::new(900_001)))
}

/// Polls `probe` until it gives `Some`, for at most [`PATIENCE`].
async fn until<T, F: Future<Output = Option<T>>>(what: &str, probe: impl FnMut() -> F) -> T {
    wait_some(PATIENCE, what, probe).await
}

async fn signed_on(link: &Link) -> LinkStatus {
    until("the link to sign on", || async {
        let s = link.status();
        s.is_signed_on().then_some(s)
    })
    .await
}

/// The link's log lines about an answer nobody waited for (late,
/// duplicate or unsolicited), in order.
fn dropped(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("message dropped (nobody waits for it)"))
        .collect()
}

fn count(stats: &Value, dir: &str, mti: &str) -> u64 {
    stats[dir][mti].as_u64().unwrap_or(0)
}

/// A credit-card purchase of 1.00 the peer approves (test card
/// 6250000000000012, expiry 12/30, CVN2 123), numbered `stan`.
fn purchase(stan: u32) -> Message {
    let now = OffsetDateTime::now_utc();
    let card = CardNumber::parse("6250000000000012").unwrap();
    let id = IdNumber::parse("11010519491231002X").unwrap();
    let cvn2 = Cvn2::parse("123").unwrap();
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    m.set_pan(&card)
        .unwrap()
        .set_processing_code(ProcessingCode::Purchase)
        .unwrap()
        .set_amount(Amount::parse(100, i64::MAX).unwrap())
        .unwrap()
        .set_transmission_time(now)
        .unwrap()
        .set_stan(Stan::new(stan).unwrap())
        .unwrap()
        .set_local_time(now)
        .unwrap()
        .set_expiry(&Expiry::parse("1230").unwrap())
        .unwrap()
        .set_entry_mode(EntryMode::KeyedNoPin)
        .unwrap()
        .set_telephone_order()
        .unwrap()
        .set_acquirer_id(ACQUIRER)
        .unwrap()
        .set_terminal_id(TID)
        .unwrap()
        .set_acceptor_id("MERCHANT0000001")
        .unwrap()
        .set_currency_cny()
        .unwrap()
        .set_cardholder_auth(&CardholderAuth {
            id_number: &id,
            cvn2: Some(&cvn2),
        })
        .unwrap();
    m
}

/// Sends purchase `stan` and checks the peer approved it.
async fn approved(link: &Link, stan: u32) {
    let answer = link.exchange(purchase(stan)).await.unwrap();
    assert_eq!(answer.mti(), Mti::FINANCIAL_RESPONSE);
    assert_eq!(answer.stan(), Stan::new(stan).ok());
    assert_eq!(answer.text(39), Some("00"), "{answer:?}");
}

#[tokio::test]
async fn signs_on_and_echoes_with_the_python_peer() {
    let Some(peer) = Peer::start() else {
        return;
    };
    let link = link_to(&peer, Duration::from_secs(1));
    signed_on(&link).await;
    // One connection, a sign-on and then at least one echo, all answered.
    let stats = peer
        .stats_until("a sign-on and an echo", |s| {
            count(s, "received", "0800") >= 2 && count(s, "sent", "0810") >= 2
        })
        .await;
    assert_eq!(stats["connections"], 1, "{stats}");
    peer.assert_no_protocol_error().await;
    approved(&link, 1).await;
    link.shutdown().await;
    assert_eq!(link.status(), LinkStatus::Stopped);
    peer.assert_no_protocol_error().await;
}

#[tokio::test]
async fn drop_link_drops_the_exchange_in_flight_then_the_link_signs_on_again() {
    let Some(peer) = Peer::start() else {
        return;
    };
    let link = link_to(&peer, Duration::from_secs(60));
    let first = signed_on(&link).await;
    peer.control("hold-next-0210").await;
    let in_flight = tokio::spawn({
        let link = link.clone();
        async move { link.exchange(purchase(1)).await }
    });
    peer.stats_until("the 0210 held", |s| s["held"] == 1).await;
    peer.control("drop-link").await;
    assert_eq!(in_flight.await.unwrap().unwrap_err(), LinkError::Dropped);
    peer.stats_until("a second connection and sign-on", |s| {
        s["connections"] == 2 && count(s, "received", "0800") == 2
    })
    .await;
    peer.assert_no_protocol_error().await;
    let again = signed_on(&link).await;
    assert_ne!(again, first, "a new sign-on, a new since_ms");
    approved(&link, 2).await;
    link.shutdown().await;
}

#[tokio::test]
async fn a_held_0210_times_out_and_the_late_one_is_dropped() {
    let Some(peer) = Peer::start() else {
        return;
    };
    let log = voicepay_testkit::log::capture();
    let link = link_to(&peer, Duration::from_secs(60));
    signed_on(&link).await;
    peer.control("hold-next-0210").await;
    assert_eq!(
        link.exchange(purchase(1)).await.unwrap_err(),
        LinkError::Timeout
    );
    assert_eq!(peer.control("release-held").await["released"], 1);
    // The late 0210 comes before the next answer on the same connection.
    approved(&link, 2).await;
    let text = log.text();
    assert!(
        text.contains("no answer within the response timeout stan=000001"),
        "{text}"
    );
    let dropped = dropped(&text);
    assert_eq!(dropped.len(), 1, "{text}");
    assert!(dropped[0].contains("stan=\"000001\""), "{text}");
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "{stats}");
    peer.assert_no_protocol_error().await;
    link.shutdown().await;
}

#[tokio::test]
async fn duplicate_and_unsolicited_0210s_are_dropped_and_the_link_goes_on() {
    let Some(peer) = Peer::start() else {
        return;
    };
    let log = voicepay_testkit::log::capture();
    let link = link_to(&peer, Duration::from_secs(60));
    let since = signed_on(&link).await;
    approved(&link, 1).await;
    assert_eq!(peer.control("send-duplicate-0210").await["stan"], "000001");
    let unsolicited = peer.control("send-unsolicited").await;
    let stan = unsolicited["stan"].as_str().unwrap().to_owned();
    approved(&link, 2).await;
    let text = log.text();
    let dropped = dropped(&text);
    assert_eq!(dropped.len(), 2, "{text}");
    assert!(dropped[0].contains("stan=\"000001\""), "{text}");
    assert!(dropped[1].contains(&format!("stan=\"{stan}\"")), "{text}");
    assert!(dropped[1].contains("terminal=\"UNSOLICI\""), "{text}");
    // Still the first connection and sign-on.
    assert_eq!(link.status(), since);
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "{stats}");
    peer.assert_no_protocol_error().await;
    link.shutdown().await;
}

// ---- STANs of the link's own 0800s ----

async fn store_stans_draw_from_the_days_sequence(app: TestApp) {
    use time::macros::{date, datetime};
    let store = Store::connect(&app.settings.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap();
    // 15:59:59 UTC is still 2026-11-30 in Asia/Shanghai; 16:00 is the next day.
    let late = StoreStans::new(
        store.clone(),
        Arc::new(|| datetime!(2026-11-30 15:59:59 UTC)),
    );
    let next_day = StoreStans::new(
        store.clone(),
        Arc::new(|| datetime!(2026-11-30 16:00:00 UTC)),
    );
    assert_eq!(late.next_stan().await.unwrap().to_string(), "000001");
    // The issuer's requests share the sequence: no STAN twice in a day.
    let issuer = store.next_stan(date!(2026 - 11 - 30)).await.unwrap();
    assert_eq!(issuer.to_string(), "000002");
    assert_eq!(late.next_stan().await.unwrap().to_string(), "000003");
    assert_eq!(next_day.next_stan().await.unwrap().to_string(), "000001");
}

on_both_stores!(store_stans_draw_from_the_days_sequence);
