//! Payments end to end on a real Asterisk 22: every row of the stub
//! issuer's test-card table paid through a real callback call, the daily PIN
//! lock across calls, and a bound payment whose confirmation names the
//! card's last four digits; each result is read through the merchant API.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`. Each test runs its own
//! daemon (in-process, own SQLite, own Stasis app) and its own handset
//! numbers, so the tests run in parallel; the card table runs its ten calls
//! at once on one daemon.

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::secrets;
use voicepay_testkit::{order_body, spawn_app_with, wait_until, Db, TestApp};

const DEBIT_ID: &str = "11010519491231002X";
const BANK2_ID: &str = "310115198506154322";
/// The PIN of every 6222… test card.
const PIN: &str = "805137";
/// The PIN of 6217000000000014.
const BANK2_PIN: &str = "246810";
/// What a credit card's holder keys: expiry 12/30 (MMYY), then CVN2 123.
const CREDIT_KEYS: &str = "1230ww123";

/// A handset number no other test uses: 1380013 and four digits, from a
/// random start then counting up, so the numbers of one run never collide
/// (the handset's script is keyed by its number).
fn phone() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| rand::random::<u32>() % 10_000);
    let n = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
    format!("1380013{n:04}")
}

/// A daemon wired to the lab Asterisk under a unique app name.
async fn daemon() -> TestApp {
    spawn_app_with(Db::Sqlite, |s| {
        s.ari.url = lab::lab_setting("VOICEPAY__ARI__URL");
        s.ari.username = lab::lab_setting("VOICEPAY__ARI__USERNAME");
        s.ari.password = lab::lab_setting("VOICEPAY__ARI__PASSWORD");
        s.ari.rest_transport = lab::rest_transport();
        s.ari.app = lab::unique("vp-pay");
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 6;
        s.telephony.max_attempts = 1;
    })
    .await
    .expect("sqlite app")
}

/// A handset that answers after a second, confirms with 1 and keys `secret`.
fn keys(secret: &str) -> String {
    format!("answer=1;delay=1;keys=1wwww{secret};hold=40")
}

/// Creates a callback order; `card` None makes it phone-only (bound).
async fn order(app: &TestApp, phone: &str, card: Option<(&str, &str)>) -> String {
    let res = app.create_order(&body(phone, card)).await;
    let status = res.status();
    let v: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "order refused: {v}");
    v["id"].as_str().expect("order id").to_string()
}

/// An order body for `phone`, paid with (card number, ID number) or, with
/// None, by the phone's binding.
fn body(phone: &str, card: Option<(&str, &str)>) -> Value {
    let mut body = order_body(&format!("m{:012x}", rand::random::<u64>() >> 16));
    body["phone"] = Value::from(phone);
    let o = body.as_object_mut().expect("object");
    match card {
        Some((pan, id)) => {
            o.insert("card_number".into(), Value::from(pan));
            o.insert("id_number".into(), Value::from(id));
        }
        None => {
            o.remove("card_number");
            o.remove("id_number");
        }
    }
    body
}

/// (status, result code, resp_code) of a final order view.
fn outcome(v: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    (
        s(&v["status"]),
        s(&v["result"]["code"]),
        s(&v["result"]["resp_code"]),
    )
}

/// Scripts `phone`, places an order and waits for its final view.
async fn pay(app: &TestApp, phone: &str, card: Option<(&str, &str)>, script: &str) -> Value {
    let lab = lab::Lab::from_env().expect("lab settings");
    lab.script_handset(phone, script).await.expect("script");
    let id = order(app, phone, card).await;
    let v = app.final_view(&id, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(phone).await;
    v
}

/// One row of the test-card table: card, ID number, what the handset keys,
/// and the expected (status, code, resp_code).
struct Row {
    card: &'static str,
    id: &'static str,
    secret: &'static str,
    expect: (&'static str, &'static str, &'static str),
}

const TABLE: &[Row] = &[
    Row {
        card: "6222000000000017",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("succeeded", "approved", "00"),
    },
    Row {
        card: "6217000000000014",
        id: BANK2_ID,
        secret: BANK2_PIN,
        expect: ("succeeded", "approved", "00"),
    },
    Row {
        card: "6222000000000025",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("failed", "insufficient_funds", "64"),
    },
    Row {
        card: "6222000000000033",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("failed", "card_restricted", "63"),
    },
    Row {
        card: "6222000000000041",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("succeeded", "approved", "00"),
    },
    Row {
        card: "6222000000000058",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("succeeded", "approved", "00"),
    },
    Row {
        card: "6222000000000066",
        id: DEBIT_ID,
        secret: PIN,
        expect: ("failed", "issuer_unavailable", "03"),
    },
    Row {
        card: "6250000000000012",
        id: DEBIT_ID,
        secret: CREDIT_KEYS,
        expect: ("succeeded", "approved", "00"),
    },
    Row {
        card: "6250000000000020",
        id: DEBIT_ID,
        secret: CREDIT_KEYS,
        expect: ("failed", "card_expired", "73"),
    },
    Row {
        card: "6250000000000038",
        id: DEBIT_ID,
        secret: CREDIT_KEYS,
        expect: ("failed", "insufficient_funds", "64"),
    },
];

/// Every test card through a real call, all ten at once on one daemon; the
/// slow card takes its 5 s, the silent one is settled by query (one debit).
#[tokio::test]
async fn every_test_card_through_a_real_call() {
    let Some(_lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let app = daemon().await;
    let runs = TABLE.iter().map(|row| {
        let app = &app;
        async move {
            let v = pay(app, &phone(), Some((row.card, row.id)), &keys(row.secret)).await;
            (row, v)
        }
    });
    let mut wrong = Vec::new();
    for (row, v) in join_all(runs).await {
        let got = outcome(&v);
        let want = (
            row.expect.0.to_string(),
            row.expect.1.to_string(),
            row.expect.2.to_string(),
        );
        if got != want {
            wrong.push(format!(
                "{}: expected {want:?}, got {got:?}\n{v:#}",
                row.card
            ));
            continue;
        }
        let details = app.event_details(v["id"].as_str().unwrap()).await;
        let slow_or_silent = details.iter().any(|d| d.starts_with("query "));
        if row.card == "6222000000000058" {
            // No answer to the authorize: settled by query, never a second one.
            if !details.iter().any(|d| d == "query 1: answered") {
                wrong.push(format!("{}: not settled by query: {details:?}", row.card));
            }
        } else if slow_or_silent {
            wrong.push(format!("{}: queried unexpectedly: {details:?}", row.card));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));

    // The database holds no keyed secret and no full card number
    // (tests/asterisk/no_secret_e2e.rs also scans logs, with the daemon as a process).
    let secrets = TABLE.iter().fold(
        secrets::Secrets::new()
            .pin(PIN)
            .pin(BANK2_PIN)
            .expiry_cvn2("1230", "123"),
        |s, row| s.card(row.card).id_number(row.id),
    );
    let db = app.sqlite_path.clone().expect("SQLite file");
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let found: Vec<String> = [db, wal.into()]
        .iter()
        .flat_map(|f| secrets.scan_file(f, 0))
        .map(|f| f.to_string())
        .collect();
    assert!(
        found.is_empty(),
        "secrets in the database:\n{}",
        found.join("\n")
    );
}

/// Three wrong PINs for one card in a day, over two calls (two orders),
/// lock it: the third is `pin_tries_exceeded` 67, and so is the right PIN
/// in a later call the same day.
#[tokio::test]
async fn third_wrong_pin_of_the_day_locks_the_card_across_calls() {
    let Some(_lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let app = daemon().await;
    let card = Some(("6222000000000017", DEBIT_ID));
    let phone = phone();

    // Call 1: two wrong PINs (the IVR offers a third try), then hang up.
    let first = pay(
        &app,
        &phone,
        card,
        "answer=1;delay=1;keys=1wwww111111WWWWWWWW222222;hold=3",
    )
    .await;
    let details = app.event_details(first["id"].as_str().unwrap()).await;
    let wrongs = details.iter().filter(|d| *d == "wrong secret").count();
    assert_eq!(
        wrongs, 2,
        "two wrong PINs in call 1: {details:?}\n{first:#}"
    );
    assert_eq!(first["status"], "failed", "{first:#}");

    // Call 2, a new order: the day's third wrong PIN locks the card.
    let second = pay(&app, &phone, card, &keys("333333")).await;
    assert_eq!(
        outcome(&second),
        ("failed".into(), "pin_tries_exceeded".into(), "67".into()),
        "{second:#}"
    );

    // Call 3: even the right PIN is refused until tomorrow.
    let third = pay(&app, &phone, card, &keys(PIN)).await;
    assert_eq!(
        outcome(&third),
        ("failed".into(), "pin_tries_exceeded".into(), "67".into()),
        "{third:#}"
    );
}

/// Secret guessing across real calls. A stranger holding only the card
/// number (with someone else's ID number) keys three wrong PINs: the call
/// goes as wrong PINs do and ends `pin_tries_exceeded`, yet nothing counts
/// against the card (the audit log keeps the issuer's 66s) and its holder
/// pays right after. Expiry + CVN2 guessed over two calls lock the credit
/// card for the day, even for the right details from another phone.
#[tokio::test]
async fn a_strangers_wrong_pins_do_not_lock_the_card_but_cvn2_guesses_do() {
    let Some(_lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let app = daemon().await;
    let locked = || {
        (
            "failed".to_string(),
            "pin_tries_exceeded".to_string(),
            "67".to_string(),
        )
    };
    let debit = "6222000000000017";
    let stranger = pay(
        &app,
        &phone(),
        Some((debit, BANK2_ID)),
        "answer=1;delay=1;keys=1wwww111111WWWWWWWW222222WWWWWWWW333333;hold=30",
    )
    .await;
    assert_eq!(outcome(&stranger), locked(), "{stranger:#}");
    let details = app.event_details(stranger["id"].as_str().unwrap()).await;
    let said = |d: &str| details.iter().filter(|x| *x == d).count();
    assert_eq!(said("wrong secret"), 2, "{details:?}");
    assert_eq!(said("issuer answered id_mismatch (66)"), 3, "{details:?}");
    let holder = pay(&app, &phone(), Some((debit, DEBIT_ID)), &keys(PIN)).await;
    assert_eq!(
        outcome(&holder),
        ("succeeded".into(), "approved".into(), "00".into()),
        "{holder:#}"
    );

    let credit = Some(("6250000000000012", DEBIT_ID));
    let guesser = phone();
    let first = pay(
        &app,
        &guesser,
        credit,
        "answer=1;delay=1;keys=1wwww1230ww124WWWWWWWW1230ww125;hold=3",
    )
    .await;
    assert_eq!(first["status"], "failed", "{first:#}");
    let second = pay(&app, &guesser, credit, &keys("1230ww126")).await;
    assert_eq!(outcome(&second), locked(), "{second:#}");
    let right = pay(&app, &phone(), credit, &keys(CREDIT_KEYS)).await;
    assert_eq!(outcome(&right), locked(), "{right:#}");
}

/// Every media URI Asterisk plays on the order's callback channel
/// (`vp-<order>-1`), in order, until the channel is destroyed: Asterisk
/// sends PlaybackStarted for each file of a list (then PlaybackContinuing
/// as it moves on). The watcher subscribes while the handset still rings.
async fn played_media(lab: &lab::Lab, order_id: &str) -> Vec<String> {
    let channel = format!("vp-{order_id}-1");
    let mut watcher = lab.app("l4").await.expect("watcher app");
    let appeared = format!("channel {channel} never appeared");
    wait_until(Duration::from_secs(15), appeared, async || {
        lab.get(&format!("/channels/{channel}"), &[]).await.is_ok()
    })
    .await;
    lab.subscribe(watcher.name(), &format!("channel:{channel}"))
        .await
        .expect("subscribe to the callback channel");
    let events = watcher
        .channel_events_until(&channel, "ChannelDestroyed", Duration::from_secs(60))
        .await
        .expect("callback channel events");
    watcher.close().await;
    events
        .iter()
        .filter(|e| e["type"] == "PlaybackStarted")
        .filter_map(|e| e["playback"]["media_uri"].as_str().map(str::to_string))
        .collect()
}

/// The media that says a card's last four digits in Mandarin (1 is 幺).
fn spoken_last_four(card: &str) -> Vec<String> {
    card[card.len() - 4..]
        .chars()
        .map(|c| match c {
            '1' => "sound:voicepay/digits/yao".to_string(),
            d => format!("sound:voicepay/digits/{d}"),
        })
        .collect()
}

/// The first success binds the phone to the card; a phone-only order then
/// pays with the PIN alone while the confirmation names the last four
/// (observed as the playbacks Asterisk reports on the callback channel);
/// after
/// unbinding, a phone-only order is refused with `no_binding`.
#[tokio::test]
async fn bound_payment_names_the_last_four_then_unbind_is_no_binding() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let app = daemon().await;
    let phone = phone();
    let card = "6217000000000014";

    let first = pay(&app, &phone, Some((card, BANK2_ID)), &keys(BANK2_PIN)).await;
    assert_eq!(first["status"], "succeeded", "{first:#}");
    let list: Value = app
        .get(&format!("/v1/bindings?phone={phone}"), &app.api_key)
        .await
        .json()
        .await
        .expect("bindings json");
    let bindings = list["bindings"].as_array().expect("bindings");
    assert_eq!(bindings.len(), 1, "{list:#}");
    let binding_id = bindings[0]["id"].as_str().expect("binding id").to_string();
    assert!(
        !list.to_string().contains(card),
        "the full card number is listed: {list}"
    );

    // Phone only: let the whole confirmation play (≈13 s with ¥1.00), then
    // confirm and key the PIN.
    let mut bound = body(&phone, None);
    bound["amount"] = json!(100);
    lab.script_handset(
        &phone,
        &format!("answer=2;delay=14;keys=1wwww{BANK2_PIN};hold=40"),
    )
    .await
    .expect("script");
    let res = app.create_order(&bound).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let media = played_media(&lab, &id).await;
    let v = app.final_view(&id, Duration::from_secs(60)).await;
    let _ = lab.clear_handset(&phone).await;
    assert_eq!(
        outcome(&v),
        ("succeeded".into(), "approved".into(), "00".into()),
        "{v:#}"
    );
    assert_eq!(v["bound"], true, "{v:#}");
    assert!(
        v["card"]["masked"]
            .as_str()
            .unwrap_or_default()
            .ends_with("0014"),
        "{v:#}"
    );
    let ending = media
        .iter()
        .position(|m| m == "sound:voicepay/confirm-card-ending")
        .unwrap_or_else(|| panic!("no card-ending prompt played: {media:?}"));
    assert_eq!(
        media.get(ending + 1..ending + 5).map(<[String]>::to_vec),
        Some(spoken_last_four(card)),
        "the IVR did not name the last four: {media:?}"
    );
    // Only the secret was asked for (the PIN), and the payment went through.
    assert!(
        media.iter().any(|m| m == "sound:voicepay/enter-pin"),
        "{media:?}"
    );
    assert!(
        media.iter().any(|m| m == "sound:voicepay/success"),
        "{media:?}"
    );

    // Unbind: the binding is gone and a phone-only order has no card.
    let del = app
        .http
        .delete(app.url(&format!("/v1/bindings/{binding_id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("delete sent");
    assert_eq!(del.status(), 204);
    let res = app.create_order(&body(&phone, None)).await;
    assert_eq!(res.status(), 422);
    let err: Value = res.json().await.expect("json");
    assert_eq!(err["error"]["code"], "no_binding", "{err:#}");
}
