//! The stub issuer against its test-card table (README, "Test cards"), with a fake clock and
//! short latencies.

use super::*;
use crate::clock::SharedClock;
use crate::crypto::ZonePinKey;
use crate::domain::{CardKind, PinDigits};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;

const HOLDER: &str = "11010519491231002X";
const PIN: &str = "805137";

fn zpk() -> ZonePinKey {
    ZonePinKey::from_bytes(&[3u8; 32]).unwrap()
}

/// A clock the test moves by hand.
fn fake_clock(start: OffsetDateTime) -> (Arc<Mutex<OffsetDateTime>>, SharedClock) {
    let now = Arc::new(Mutex::new(start));
    let read = now.clone();
    (now, Arc::new(move || *read.lock().unwrap()))
}

fn stub() -> StubIssuer {
    StubIssuer::builtin(zpk()).with_latency(Latency {
        slow: Duration::from_millis(60),
        no_answer: Duration::from_millis(200),
    })
}

fn card(pan: &str) -> CardNumber {
    CardNumber::parse(pan).unwrap()
}

fn request(key: &str, pan: &str, id: &str, fen: i64, secret: Secret) -> AuthRequest {
    AuthRequest {
        idempotency_key: key.into(),
        order_id: key.split(':').next().unwrap_or(key).into(),
        acceptor_id: None,
        amount: Amount::parse(fen, i64::MAX).unwrap(),
        card: card(pan),
        id_number: IdNumber::parse(id).unwrap(),
        secret,
    }
}

fn pin_block(pin: &str, pan: &str) -> Secret {
    let pin = PinDigits::parse(pin).unwrap();
    Secret::PinBlock(PinBlock::from_pin(&pin, &card(pan), &zpk()))
}

fn card_secret(expiry: &str, cvn2: &str) -> Secret {
    Secret::Card {
        expiry: Expiry::parse(expiry).unwrap(),
        cvn2: Cvn2::parse(cvn2).unwrap(),
    }
}

fn debit(key: &str, pan: &str, pin: &str, fen: i64) -> AuthRequest {
    request(key, pan, HOLDER, fen, pin_block(pin, pan))
}

fn credit(key: &str, pan: &str, expiry: &str, cvn2: &str, fen: i64) -> AuthRequest {
    request(key, pan, HOLDER, fen, card_secret(expiry, cvn2))
}

async fn code(s: &StubIssuer, req: AuthRequest) -> ResultCode {
    s.authorize(req).await.unwrap().result_code()
}

#[tokio::test]
async fn approving_cards_debit_their_balance() {
    let s = stub();
    let r = s
        .authorize(debit("o1:1", "6222000000000017", PIN, 12_345))
        .await
        .unwrap();
    assert!(matches!(&r.outcome, Decision::Approved { auth_code } if auth_code.len() == 6));
    assert_eq!(
        s.available_fen(&card("6222000000000017")),
        Some(10_000_000 - 12_345)
    );

    let bank2 = request(
        "o2:1",
        "6217000000000014",
        "310115198506154322",
        100,
        pin_block("246810", "6217000000000014"),
    );
    assert_eq!(code(&s, bank2).await, ResultCode::Approved);
    let c = credit("o3:1", "6250000000000012", "1230", "123", 500);
    assert_eq!(code(&s, c).await, ResultCode::Approved);
    assert_eq!(
        s.available_fen(&card("6250000000000012")),
        Some(10_000_000 - 500)
    );
}

#[tokio::test]
async fn each_declining_card_gives_its_code() {
    let s = stub();
    let cases = [
        (debit("a", "6222000000000025", PIN, 100), "64"),
        (debit("b", "6222000000000033", PIN, 100), "63"),
        (debit("c", "6222000000000066", PIN, 100), "03"),
        (credit("d", "6250000000000020", "1230", "123", 100), "73"),
        (credit("e", "6250000000000038", "1230", "123", 100), "64"),
        (debit("f", "6222000000000074", PIN, 100), "61"), // not on file
        (debit("g", "6222000000000017", PIN, 5_000_001), "33"),
    ];
    for (req, resp) in cases {
        let key = req.idempotency_key.clone();
        assert_eq!(code(&s, req).await.resp_code(), Some(resp), "{key}");
    }
    // nothing was debited anywhere
    assert_eq!(s.available_fen(&card("6222000000000017")), Some(10_000_000));
    // ¥50,000.00 itself is allowed
    let at_limit = debit("h", "6222000000000017", PIN, 5_000_000);
    assert_eq!(code(&s, at_limit).await, ResultCode::Approved);
    // an unavailable issuer recorded nothing: the attempt can be queried as unseen
    assert_eq!(s.query("c").await.unwrap(), None);
    assert_eq!(
        s.query("a").await.unwrap().unwrap().result_code(),
        ResultCode::InsufficientFunds
    );
}

#[tokio::test]
async fn every_card_checks_the_cardholder_id() {
    let s = stub();
    let other = "310115198506154322";
    let d = request(
        "d",
        "6222000000000017",
        other,
        100,
        pin_block(PIN, "6222000000000017"),
    );
    let c = request(
        "c",
        "6250000000000012",
        other,
        100,
        card_secret("1230", "123"),
    );
    assert_eq!(code(&s, d).await.resp_code(), Some("66"));
    assert_eq!(code(&s, c).await.resp_code(), Some("66"));
    assert_eq!(s.available_fen(&card("6222000000000017")), Some(10_000_000));
}

#[tokio::test]
async fn wrong_credit_secret_or_wrong_kind_of_secret_is_wrong_secret() {
    let s = stub();
    // each a first wrong secret on its card: counted, two tries left
    for (key, req) in [
        ("1", credit("1", "6250000000000012", "1130", "123", 100)),
        ("2", credit("2", "6250000000000038", "1230", "124", 100)),
        ("3", debit("3", "6250000000000020", PIN, 100)),
        (
            "4",
            request(
                "4",
                "6222000000000017",
                HOLDER,
                100,
                card_secret("1230", "123"),
            ),
        ),
    ] {
        let r = s.authorize(req).await.unwrap();
        assert_eq!(
            r.outcome,
            Decision::WrongSecret {
                tries_left: Some(2)
            },
            "{key}"
        );
    }
    // a right secret with tries left still pays
    let ok = debit("5", "6222000000000017", PIN, 100);
    assert_eq!(code(&s, ok).await, ResultCode::Approved);
    let ok = credit("6", "6250000000000012", "1230", "123", 100);
    assert_eq!(code(&s, ok).await, ResultCode::Approved);
}

/// Expiry and CVN2 are counted per card per day like PINs: enumerating
/// them across calls stops at the third wrong try until the next day.
#[tokio::test]
async fn third_wrong_expiry_or_cvn2_locks_the_card_until_the_next_day() {
    let (now, clock) = fake_clock(datetime!(2026-03-01 10:00 UTC));
    let s = &stub().with_clock(clock);
    let pan = "6250000000000012";
    let guess = |n: u32| async move {
        let cvn2 = format!("{:03}", 200 + n);
        s.authorize(credit(&format!("g{n}"), pan, "1230", &cvn2, 100))
            .await
            .unwrap()
            .outcome
    };
    assert_eq!(
        guess(1).await,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
    assert_eq!(
        guess(2).await,
        Decision::WrongSecret {
            tries_left: Some(1)
        }
    );
    assert_eq!(
        guess(3).await,
        Decision::Declined(ResultCode::PinTriesExceeded)
    );
    // the right details are refused for the rest of the day, nothing debited
    let right = credit("r1", pan, "1230", "123", 100);
    assert_eq!(code(s, right).await, ResultCode::PinTriesExceeded);
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000));
    let locked = s.cards().into_iter().find(|c| c.card == "625000******0012");
    assert_eq!(locked.unwrap().wrong_pins_today, 3);
    *now.lock().unwrap() = datetime!(2026-03-01 16:00 UTC);
    let right = credit("r2", pan, "1230", "123", 100);
    assert_eq!(code(s, right).await, ResultCode::Approved);
}

/// The cardholder ID comes first: with the wrong ID every secret, right or
/// wrong, gets the same `id_mismatch`, and none of them counts against the
/// card, so a stranger holding only the card number cannot lock it.
#[tokio::test]
async fn the_id_is_checked_before_the_secret_and_a_mismatch_never_counts() {
    let s = stub();
    let pan = "6222000000000017";
    let other = "310115198506154322";
    for n in 0..5 {
        let wrong = request(&format!("w{n}"), pan, other, 100, pin_block("000000", pan));
        assert_eq!(code(&s, wrong).await, ResultCode::IdMismatch);
    }
    let right_pin = request("r", pan, other, 100, pin_block(PIN, pan));
    assert_eq!(code(&s, right_pin).await, ResultCode::IdMismatch);
    let credit_pan = "6250000000000012";
    for n in 0..4 {
        let wrong = request(
            &format!("c{n}"),
            credit_pan,
            other,
            100,
            card_secret("1230", "999"),
        );
        assert_eq!(code(&s, wrong).await, ResultCode::IdMismatch);
    }
    assert!(s.cards().iter().all(|c| c.wrong_pins_today == 0));
    // the cardholder pays
    assert_eq!(
        code(&s, debit("own", pan, PIN, 100)).await,
        ResultCode::Approved
    );
    let own = credit("own-c", credit_pan, "1230", "123", 100);
    assert_eq!(code(&s, own).await, ResultCode::Approved);
    // and a locked card still answers a wrong ID with the ID's answer first
    for n in 0..3 {
        let _ = code(&s, debit(&format!("l{n}"), pan, "000000", 100)).await;
    }
    let stranger = request("s", pan, other, 100, pin_block(PIN, pan));
    assert_eq!(code(&s, stranger).await, ResultCode::IdMismatch);
}

#[tokio::test]
async fn third_wrong_pin_locks_until_the_next_shanghai_day() {
    // 23:58 in Shanghai on 1 March (15:58 UTC)
    let (now, clock) = fake_clock(datetime!(2026-03-01 15:58 UTC));
    let s = &stub().with_clock(clock);
    let pan = "6222000000000017";
    let tries = |n| async move {
        s.authorize(debit(&format!("w{n}"), pan, "000000", 100))
            .await
            .unwrap()
            .outcome
    };
    assert_eq!(
        tries(1).await,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
    assert_eq!(
        tries(2).await,
        Decision::WrongSecret {
            tries_left: Some(1)
        }
    );
    assert_eq!(
        tries(3).await,
        Decision::Declined(ResultCode::PinTriesExceeded)
    );
    // the right PIN is refused for the rest of the day, without debiting
    assert_eq!(
        code(s, debit("r1", pan, PIN, 100)).await,
        ResultCode::PinTriesExceeded
    );
    *now.lock().unwrap() = datetime!(2026-03-01 15:59:59 UTC);
    assert_eq!(
        code(s, debit("r2", pan, PIN, 100)).await,
        ResultCode::PinTriesExceeded
    );
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000));
    // midnight in Shanghai: a new day, a fresh allowance
    *now.lock().unwrap() = datetime!(2026-03-01 16:00 UTC);
    assert_eq!(
        code(s, debit("r3", pan, PIN, 100)).await,
        ResultCode::Approved
    );
    assert_eq!(
        tries(4).await,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
}

#[tokio::test]
async fn failures_on_either_side_of_midnight_do_not_add_up() {
    let (now, clock) = fake_clock(datetime!(2026-03-01 15:59 UTC));
    let s = stub().with_clock(clock);
    let pan = "6222000000000017";
    for key in ["a", "b"] {
        let r = s.authorize(debit(key, pan, "111111", 100)).await.unwrap();
        assert!(matches!(r.outcome, Decision::WrongSecret { .. }));
    }
    // 00:01 on 2 March in Shanghai: a new day
    *now.lock().unwrap() = datetime!(2026-03-01 16:01 UTC);
    let r = s.authorize(debit("c", pan, "111111", 100)).await.unwrap();
    assert_eq!(
        r.outcome,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
    // the UTC date changes, Shanghai's (08:30 on the 2nd) does not
    *now.lock().unwrap() = datetime!(2026-03-02 00:30 UTC);
    let r = s.authorize(debit("d", pan, "111111", 100)).await.unwrap();
    assert_eq!(
        r.outcome,
        Decision::WrongSecret {
            tries_left: Some(1)
        }
    );
    // a right PIN does not reset the day's count
    assert_eq!(
        code(&s, debit("e", pan, PIN, 100)).await,
        ResultCode::Approved
    );
    let r = s.authorize(debit("f", pan, "111111", 100)).await.unwrap();
    assert_eq!(r.outcome, Decision::Declined(ResultCode::PinTriesExceeded));
}

#[tokio::test]
async fn a_block_for_another_card_counts_as_a_wrong_pin() {
    let s = stub();
    let pan = "6222000000000017";
    let elsewhere = request("x", pan, HOLDER, 100, pin_block(PIN, "6222000000000025"));
    let r = s.authorize(elsewhere).await.unwrap();
    assert_eq!(
        r.outcome,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
}

#[tokio::test]
async fn repeated_authorize_returns_the_first_answer_and_debits_once() {
    let s = stub();
    let pan = "6222000000000017";
    let first = s.authorize(debit("o9:1", pan, PIN, 700)).await.unwrap();
    // same key, even with a different PIN or amount: the first answer
    let again = s.authorize(debit("o9:1", pan, PIN, 700)).await.unwrap();
    let other = s
        .authorize(debit("o9:1", pan, "000000", 9_999))
        .await
        .unwrap();
    assert!(first.is_approved());
    assert_eq!(first, again);
    assert_eq!(first, other);
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 700));
    assert_eq!(s.query("o9:1").await.unwrap(), Some(first));
    assert_eq!(s.query("never").await.unwrap(), None);
    // a wrong-secret answer is final for its key too
    let wrong = s.authorize(debit("o8:1", pan, "000000", 1)).await.unwrap();
    let retry = s.authorize(debit("o8:1", pan, PIN, 1)).await.unwrap();
    assert_eq!(wrong, retry);
}

#[test]
fn shanghai_day_turns_at_16_utc() {
    use time::macros::date;
    assert_eq!(
        shanghai_day(datetime!(2026-03-01 15:59:59 UTC)),
        date!(2026 - 03 - 01)
    );
    assert_eq!(
        shanghai_day(datetime!(2026-03-01 16:00 UTC)),
        date!(2026 - 03 - 02)
    );
    assert_eq!(
        shanghai_day(datetime!(2026-03-02 01:00 +09:00)),
        date!(2026 - 03 - 02)
    );
}

#[tokio::test]
async fn concurrent_authorizes_with_one_key_debit_once() {
    // through `Arc<StubIssuer>`'s own `IssuerLink` impl, as a matcher holds it
    let s = Arc::new(stub());
    let pan = "6222000000000017";
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(
                async move { IssuerLink::authorize(&s, debit("race", pan, PIN, 1_000)).await },
            )
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap().unwrap());
    }
    assert!(codes.iter().all(|c| *c == codes[0] && c.is_approved()));
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 1_000));
}

#[tokio::test]
async fn slow_card_answers_late_and_approves() {
    assert_eq!(Latency::default().slow, Duration::from_secs(5));
    let s = stub();
    let started = std::time::Instant::now();
    let r = s
        .authorize(debit("s", "6222000000000041", PIN, 100))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert!(r.is_approved());
}

#[tokio::test]
async fn no_answer_card_is_processed_once_and_found_by_query() {
    let s = stub();
    let pan = "6222000000000058";
    // the caller's own timeout fires first
    let first = tokio::time::timeout(
        Duration::from_millis(30),
        s.authorize(debit("n:1", pan, PIN, 2_500)),
    )
    .await;
    assert!(first.is_err(), "no answer");
    let found = s.query("n:1").await.unwrap().expect("processed");
    assert!(found.is_approved());
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 2_500));
    // asking again with the key answers at once, still one debit
    assert_eq!(
        s.authorize(debit("n:1", pan, PIN, 2_500)).await.unwrap(),
        found
    );
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 2_500));
    // a caller that waits long enough hears a timeout, not an answer
    let waited = s.authorize(debit("n:2", pan, PIN, 100)).await;
    assert_eq!(waited, Err(IssuerError::Timeout));
    assert!(s.query("n:2").await.unwrap().unwrap().is_approved());
}

#[tokio::test]
async fn reversal_returns_the_money_once() {
    let s = stub();
    let pan = "6250000000000012";
    let r = s
        .authorize(credit("v", pan, "1230", "123", 4_000))
        .await
        .unwrap();
    assert!(r.is_approved());
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 4_000));
    assert!(s.reverse("v").await.unwrap());
    assert!(!s.reverse("v").await.unwrap());
    assert!(!s.reverse("unknown").await.unwrap());
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000));
    // the key stays spent: no new debit
    assert_eq!(
        s.authorize(credit("v", pan, "1230", "123", 4_000))
            .await
            .unwrap(),
        r
    );
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000));
}

#[tokio::test]
async fn an_offline_issuer_processes_nothing() {
    let s = stub();
    s.set_offline(true);
    let pan = "6222000000000017";
    assert_eq!(
        s.authorize(debit("k", pan, PIN, 100)).await,
        Err(IssuerError::Unavailable)
    );
    assert_eq!(s.query("k").await, Err(IssuerError::Unavailable));
    assert_eq!(s.reverse("k").await, Err(IssuerError::Unavailable));
    s.set_offline(false);
    assert_eq!(s.query("k").await, Ok(None));
    assert_eq!(
        code(&s, debit("k", pan, PIN, 100)).await,
        ResultCode::Approved
    );
}

#[test]
fn builtin_table_is_the_documented_table() {
    let s = stub();
    let f = &s.fixtures_for_tests();
    assert_eq!(f.cards.len(), 10);
    for c in &f.cards {
        let secret: &[u8] = match (c.pan.expose(), c.kind) {
            ("6217000000000014", _) => b"246810",
            (_, CardKind::Debit) => PIN.as_bytes(),
            (_, CardKind::Credit) => b"1230123",
            (_, CardKind::Unknown) => unreachable!("the table refuses unknown kinds"),
        };
        assert!(c.secret_matches(secret), "{:?}", c.pan);
        assert!(!c.secret_matches(b"000000"), "{:?}", c.pan);
    }
    assert_eq!(s.bank_name(&card("6222000000000017")), Some("Test Bank 1"));
    assert_eq!(s.bank_name(&card("6217000000000014")), Some("Test Bank 2"));
    assert_eq!(
        s.bank_name(&card("6250000000000012")),
        Some("Test Bank 3 (credit)")
    );
    assert_eq!(s.bank_name(&card("4111111111111111")), None);
}

const ONE_CARD: &str = r#"
[[banks]]
id = "b"
name = "B"
bins = ["622200"]

[[cards]]
pan = "6222000000000017"
kind = "debit"
holder_id = "11010519491231002X"
available_fen = 5
salt = "00112233445566778899aabbccddeeff"
secret_hash = "2d4c0c5b7d1b4d9c1cd0b8ac1a3f07c9e2f1b0e4c2d7f8a9b0c1d2e3f4a5b6c7"
"#;

#[test]
fn fixture_files_are_checked_row_by_row() {
    assert!(StubIssuer::from_toml(ONE_CARD, zpk()).is_ok());
    let broken = [
        ONE_CARD.replace("kind = \"debit\"", "kind = \"prepaid\""),
        ONE_CARD.replace("available_fen = 5", "available_fen = 5\npin = \"805137\""),
        ONE_CARD.replace("bins = [\"622200\"]", "bins = [\"621700\"]"),
        ONE_CARD.replace("secret_hash = \"2d", "secret_hash = \""),
        ONE_CARD.replace("available_fen = 5", "available_fen = -5"),
        ONE_CARD.replace("002X", "0021"),
        ONE_CARD.replace("0017", "0018"),
        format!(
            "{ONE_CARD}\n{}",
            &ONE_CARD[ONE_CARD.find("[[cards]]").unwrap()..]
        ),
    ];
    for text in broken {
        let err = StubIssuer::from_toml(&text, zpk()).unwrap_err().to_string();
        assert!(!err.contains("6222000000000017"), "{err}");
        assert!(!err.is_empty());
    }
}

#[test]
fn load_reads_a_file_or_falls_back_to_the_builtin_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cards.toml");
    std::fs::write(&path, ONE_CARD).unwrap();
    let s = StubIssuer::load(&path, zpk()).unwrap();
    assert_eq!(s.available_fen(&card("6222000000000017")), Some(5));
    assert_eq!(s.available_fen(&card("6250000000000012")), None);
    let b = StubIssuer::load(std::path::Path::new(""), zpk()).unwrap();
    assert_eq!(b.available_fen(&card("6250000000000012")), Some(10_000_000));
    let missing = StubIssuer::load(&dir.path().join("none.toml"), zpk()).unwrap_err();
    assert!(format!("{missing:#}").contains("none.toml"));
}

#[test]
fn requests_print_no_secret_and_no_full_number() {
    let req = credit("k", "6250000000000012", "1230", "123", 100);
    let shown = format!("{req:?}");
    for secret in ["6250000000000012", "1230", "123\"", "11010519491231002X"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let req = debit("k", "6222000000000017", PIN, 100);
    let shown = format!("{req:?}");
    assert!(!shown.contains(PIN) && !shown.contains("6222000000000017"));
}

/// A durable stub on the journal at `path`, as `voicepay serve` opens it.
fn durable(path: &std::path::Path) -> StubIssuer {
    stub().with_state_file(path).unwrap()
}

#[tokio::test]
async fn a_reopened_state_file_keeps_balances_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    let pan = "6222000000000017";
    let first = {
        let s = durable(&path);
        let first = s.authorize(debit("o1:1", pan, PIN, 700)).await.unwrap();
        assert!(first.is_approved());
        let c = credit("o2:1", "6250000000000012", "1230", "123", 300);
        assert_eq!(code(&s, c).await, ResultCode::Approved);
        assert!(s.reverse("o2:1").await.unwrap());
        let declined = debit("o3:1", "6222000000000025", PIN, 100);
        assert_eq!(code(&s, declined).await, ResultCode::InsufficientFunds);
        first
    };
    let s = durable(&path);
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 700));
    assert_eq!(
        s.available_fen(&card("6250000000000012")),
        Some(10_000_000),
        "the reversal survived"
    );
    // the same key gets the first answer again, without a second debit
    assert_eq!(s.query("o1:1").await.unwrap(), Some(first.clone()));
    let again = s.authorize(debit("o1:1", pan, PIN, 700)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 700));
    assert!(!s.reverse("o2:1").await.unwrap(), "reversed once only");
    assert_eq!(
        s.query("o3:1").await.unwrap().unwrap().result_code(),
        ResultCode::InsufficientFunds
    );
    // approval codes go on from where they were, not from the start
    let next = s.authorize(debit("o4:1", pan, PIN, 1)).await.unwrap();
    let (Decision::Approved { auth_code: a }, Decision::Approved { auth_code: b }) =
        (&first.outcome, &next.outcome)
    else {
        panic!("both approved: {first:?} {next:?}");
    };
    assert_ne!(a, b);
}

#[tokio::test]
async fn wrong_pin_tries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    let (_, clock) = fake_clock(datetime!(2026-03-01 10:00 UTC));
    let pan = "6222000000000017";
    for key in ["w1", "w2"] {
        let s = durable(&path).with_clock(clock.clone());
        let r = s.authorize(debit(key, pan, "000000", 100)).await.unwrap();
        assert!(matches!(r.outcome, Decision::WrongSecret { .. }), "{r:?}");
    }
    let s = durable(&path).with_clock(clock.clone());
    assert_eq!(
        s.authorize(debit("w3", pan, "000000", 100))
            .await
            .unwrap()
            .outcome,
        Decision::Declined(ResultCode::PinTriesExceeded),
        "the third wrong PIN of the day, across two restarts"
    );
    drop(s); // the daemon stops: the next one takes the file over
    let s = durable(&path).with_clock(clock);
    assert_eq!(
        code(&s, debit("r", pan, PIN, 100)).await,
        ResultCode::PinTriesExceeded
    );
    // the next Shanghai day starts afresh, also from the file
    drop(s);
    let (_, tomorrow) = fake_clock(datetime!(2026-03-01 16:00 UTC));
    let s = durable(&path).with_clock(tomorrow);
    assert_eq!(
        code(&s, debit("r2", pan, PIN, 100)).await,
        ResultCode::Approved
    );
}

#[tokio::test]
async fn the_slow_card_is_debited_on_disk_before_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    let pan = "6222000000000041";
    {
        let s = durable(&path).with_latency(Latency {
            slow: Duration::from_secs(3600),
            no_answer: Duration::from_secs(3600),
        });
        // the daemon dies while the answer is on its way: the future is
        // dropped after its first poll, before any answer
        let cut = tokio::time::timeout(
            Duration::from_millis(20),
            s.authorize(debit("k:1", pan, PIN, 4_200)),
        )
        .await;
        assert!(cut.is_err(), "no answer yet");
    }
    // what another process sees, without taking the file over
    let seen = stub().inspect_state_file(&path).unwrap();
    assert!(seen.query("k:1").await.unwrap().unwrap().is_approved());
    assert_eq!(seen.available_fen(&card(pan)), Some(10_000_000 - 4_200));
    // the restarted issuer answers a query for the key, one debit
    let s = durable(&path);
    assert!(s.query("k:1").await.unwrap().unwrap().is_approved());
    assert_eq!(s.query("k:2").await.unwrap(), None);
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 4_200));
}

#[tokio::test]
async fn the_state_file_holds_no_secret_and_no_card_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    let s = durable(&path);
    for (key, pan) in [("a", "6222000000000017"), ("b", "6222000000000041")] {
        s.authorize(debit(key, pan, PIN, 100)).await.unwrap();
    }
    s.authorize(debit("w", "6222000000000017", "111111", 100))
        .await
        .unwrap();
    s.authorize(credit("c", "6250000000000012", "1230", "123", 100))
        .await
        .unwrap();
    s.authorize(debit("u", "6222000000000074", PIN, 100))
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    for secret in [
        PIN,
        "111111",
        "1230",
        "123\"",
        HOLDER,
        "6222000000000017",
        "6222000000000041",
        "6250000000000012",
        "6222000000000074",
        "000000000",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn a_damaged_state_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    std::fs::write(&path, "{\"kind\":\"answer\"}\n").unwrap();
    let err = format!("{:#}", stub().with_state_file(&path).unwrap_err());
    assert!(err.contains("line 1"), "{err}");
}

/// A PIN arriving over ISO 8583 (F52: format 0 under the link's TDES key) is
/// checked like a format 4 one once the stub holds the link key: the right
/// PIN approves and debits, a wrong one counts as a wrong PIN; without the
/// link key, or under another key, it is a wrong PIN and nothing is debited.
#[tokio::test]
async fn format0_pins_from_the_link_are_checked_with_the_link_key() {
    use crate::crypto::{PinBlock0, Zpk};
    let link_key = || Zpk::from_hex("zpk1", "0123456789ABCDEFFEDCBA9876543210").unwrap();
    let pan = "6222000000000017";
    let f52 = |pin: &str| {
        Secret::PinBlock0(PinBlock0::encipher(pin.as_bytes(), pan, &link_key()).unwrap())
    };
    let s = stub().with_link_zpk(link_key());
    assert_eq!(
        code(&s, request("a:1", pan, HOLDER, 100, f52(PIN))).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(pan)), Some(10_000_000 - 100));
    let wrong = s
        .authorize(request("a:2", pan, HOLDER, 100, f52("805138")))
        .await
        .unwrap();
    assert_eq!(
        wrong.outcome,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );

    let no_key = stub();
    let r = no_key
        .authorize(request("b:1", pan, HOLDER, 100, f52(PIN)))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
    let other = Zpk::from_hex("zpk2", "89ABCDEF0123456776543210FEDCBA98").unwrap();
    let other_key = stub().with_link_zpk(other);
    let r = other_key
        .authorize(request("c:1", pan, HOLDER, 100, f52(PIN)))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        Decision::WrongSecret {
            tries_left: Some(2)
        }
    );
    assert_eq!(other_key.available_fen(&card(pan)), Some(10_000_000));
}

// Refunds: by the purchase's key, at most what is left, first answer per
// refund id final, reversible, durable.

const DEBIT: &str = "6222000000000017";
const CREDIT: &str = "6250000000000012";

fn refund(refund_id: &str, purchase_key: &str, pan: &str, fen: i64) -> RefundRequest {
    RefundRequest {
        refund_id: refund_id.into(),
        order_id: purchase_key
            .split(':')
            .next()
            .unwrap_or(purchase_key)
            .into(),
        purchase_key: purchase_key.into(),
        amount: Amount::parse(fen, i64::MAX).unwrap(),
        card: card(pan),
        acceptor_id: None,
    }
}

async fn refund_code(s: &StubIssuer, req: RefundRequest) -> ResultCode {
    s.refund(req).await.unwrap().result_code()
}

#[tokio::test]
async fn refunds_give_back_at_most_what_is_left_of_the_purchase() {
    let s = stub();
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 10_000))
        .await
        .unwrap()
        .is_approved());
    let paid = 10_000_000 - 10_000;
    assert_eq!(s.available_fen(&card(DEBIT)), Some(paid));
    let first = s.refund(refund("r1", "o:1", DEBIT, 4_000)).await.unwrap();
    assert!(first.is_approved(), "{first:?}");
    assert_eq!(s.available_fen(&card(DEBIT)), Some(paid + 4_000));
    // one fen more than what is left: declined, nothing moves
    assert_eq!(
        refund_code(&s, refund("r2", "o:1", DEBIT, 6_001)).await,
        ResultCode::OverLimit
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(paid + 4_000));
    assert_eq!(
        refund_code(&s, refund("r3", "o:1", DEBIT, 6_000)).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    assert_eq!(
        refund_code(&s, refund("r4", "o:1", DEBIT, 1)).await,
        ResultCode::OverLimit
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    // a credit card's open credit comes back the same way
    let c = credit("c:1", CREDIT, "1230", "123", 2_500);
    assert_eq!(code(&s, c).await, ResultCode::Approved);
    assert_eq!(
        refund_code(&s, refund("r5", "c:1", CREDIT, 2_500)).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(CREDIT)), Some(10_000_000));
}

#[tokio::test]
async fn only_an_approved_unreversed_purchase_of_the_same_card_is_refunded() {
    let s = stub();
    // declined purchase (insufficient funds)
    let poor = "6222000000000025";
    let declined = debit("d:1", poor, PIN, 100);
    assert_eq!(code(&s, declined).await, ResultCode::InsufficientFunds);
    let before_poor = s.available_fen(&card(poor));
    assert_eq!(
        refund_code(&s, refund("r1", "d:1", poor, 100)).await,
        ResultCode::InvalidCard
    );
    // a wrong PIN is no purchase either
    let wrong = debit("w:1", DEBIT, "000000", 100);
    assert_eq!(code(&s, wrong).await, ResultCode::WrongSecret);
    assert_eq!(
        refund_code(&s, refund("r2", "w:1", DEBIT, 100)).await,
        ResultCode::InvalidCard
    );
    // a key the issuer never saw
    assert_eq!(
        refund_code(&s, refund("r3", "nobody:1", DEBIT, 100)).await,
        ResultCode::InvalidCard
    );
    // an approved purchase, refunded to another card
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 500))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        refund_code(&s, refund("r4", "o:1", CREDIT, 500)).await,
        ResultCode::InvalidCard
    );
    // an approved purchase that was reversed
    assert!(s.reverse("o:1").await.unwrap());
    assert_eq!(
        refund_code(&s, refund("r5", "o:1", DEBIT, 500)).await,
        ResultCode::InvalidCard
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    assert_eq!(s.available_fen(&card(CREDIT)), Some(10_000_000));
    assert_eq!(s.available_fen(&card(poor)), before_poor);
    // each decline is final under its refund id
    assert_eq!(
        s.query("r5").await.unwrap().unwrap().result_code(),
        ResultCode::InvalidCard
    );
}

#[tokio::test]
async fn the_first_answer_per_refund_id_is_final() {
    let s = stub();
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 1_000))
        .await
        .unwrap()
        .is_approved());
    let first = s.refund(refund("r1", "o:1", DEBIT, 400)).await.unwrap();
    assert!(first.is_approved());
    // the same refund id again, even with another amount: the same answer,
    // no second credit
    let again = s.refund(refund("r1", "o:1", DEBIT, 600)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000 - 600));
    assert_eq!(s.query("r1").await.unwrap(), Some(first));
    assert_eq!(s.query("r9").await.unwrap(), None);
    // a declined refund stays declined though the balance would now allow it
    assert_eq!(
        refund_code(&s, refund("r2", "o:1", DEBIT, 1_000)).await,
        ResultCode::OverLimit
    );
    assert!(s.reverse("r1").await.unwrap());
    assert_eq!(
        refund_code(&s, refund("r2", "o:1", DEBIT, 1_000)).await,
        ResultCode::OverLimit
    );
}

#[tokio::test]
async fn reversing_a_refund_takes_its_money_back_once_and_frees_the_balance() {
    let s = stub();
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 1_000))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        refund_code(&s, refund("r1", "o:1", DEBIT, 1_000)).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    assert!(s.reverse("r1").await.unwrap());
    assert!(!s.reverse("r1").await.unwrap(), "reversed once only");
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000 - 1_000));
    // what the reversed refund gave back may be refunded again
    assert_eq!(
        refund_code(&s, refund("r2", "o:1", DEBIT, 1_000)).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    // a declined refund has nothing to reverse
    assert_eq!(
        refund_code(&s, refund("r3", "o:1", DEBIT, 1)).await,
        ResultCode::OverLimit
    );
    assert!(!s.reverse("r3").await.unwrap());
}

#[tokio::test]
async fn reversing_a_partly_refunded_purchase_returns_only_the_rest() {
    let s = stub();
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 1_000))
        .await
        .unwrap()
        .is_approved());
    assert_eq!(
        refund_code(&s, refund("r1", "o:1", DEBIT, 300)).await,
        ResultCode::Approved
    );
    assert!(s.reverse("o:1").await.unwrap());
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    // the purchase is undone: nothing more to refund
    assert_eq!(
        refund_code(&s, refund("r2", "o:1", DEBIT, 1)).await,
        ResultCode::InvalidCard
    );
}

#[tokio::test]
async fn an_offline_issuer_refunds_nothing() {
    let s = stub();
    assert!(s
        .authorize(debit("o:1", DEBIT, PIN, 1_000))
        .await
        .unwrap()
        .is_approved());
    s.set_offline(true);
    assert_eq!(
        s.refund(refund("r1", "o:1", DEBIT, 1_000)).await,
        Err(IssuerError::Unavailable)
    );
    s.set_offline(false);
    assert_eq!(s.query("r1").await, Ok(None));
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000 - 1_000));
}

#[tokio::test]
async fn refunds_and_their_reversals_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stub.jsonl");
    let first = {
        let s = durable(&path);
        assert!(s
            .authorize(debit("o:1", DEBIT, PIN, 1_000))
            .await
            .unwrap()
            .is_approved());
        let first = s.refund(refund("r1", "o:1", DEBIT, 600)).await.unwrap();
        assert!(first.is_approved());
        assert_eq!(
            refund_code(&s, refund("r2", "o:1", DEBIT, 300)).await,
            ResultCode::Approved
        );
        assert!(s.reverse("r2").await.unwrap());
        assert_eq!(
            refund_code(&s, refund("r3", "o:1", DEBIT, 401)).await,
            ResultCode::OverLimit
        );
        first
    };
    let s = durable(&path);
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000 - 400));
    assert_eq!(s.query("r1").await.unwrap(), Some(first.clone()));
    assert_eq!(
        s.refund(refund("r1", "o:1", DEBIT, 600)).await.unwrap(),
        first
    );
    assert!(!s.reverse("r2").await.unwrap(), "reversed once only");
    assert_eq!(
        s.query("r3").await.unwrap().unwrap().result_code(),
        ResultCode::OverLimit
    );
    // what is left is still what is left: 400 fen
    assert_eq!(
        refund_code(&s, refund("r4", "o:1", DEBIT, 401)).await,
        ResultCode::OverLimit
    );
    assert_eq!(
        refund_code(&s, refund("r5", "o:1", DEBIT, 400)).await,
        ResultCode::Approved
    );
    assert_eq!(s.available_fen(&card(DEBIT)), Some(10_000_000));
    drop(s);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(DEBIT), "no card number in the journal");
    assert!(text.contains("\"kind\":\"refund\""), "{text}");
}
