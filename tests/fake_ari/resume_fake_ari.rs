//! Daemon restarts that drop no call (issue #15, README "Daemon restarts
//! that drop no call"): with `ari.websocket = "outbound"`, one test per row
//! of the safe-point table. Daemon A drives a callback to a step and stops,
//! either killed (its runtime dropped where it stands: nothing more runs,
//! as after SIGKILL) or shut down (as after SIGTERM: it hands its calls
//! over). The fake Asterisk keeps the call, then dials daemon B on the same
//! store and delivers what was queued meanwhile, including a key pressed
//! while no daemon ran, which must not count. Each test checks what the
//! cardholder hears next, that the order ends with exactly one answer from
//! the issuer, and that the call's point is gone at the end.

use super::common::{dial_in, finished, media, plays, up, CALLER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voicepay::app::App;
use voicepay::config::{Settings, WebsocketMode};
use voicepay_testkit::fake_ari::{event, request, FakeAri, PASSWORD, USER};
use voicepay_testkit::{order_body, test_settings, wait_for, Db};

/// How a daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: its tasks are dropped where they stand.
    Kill,
    /// SIGTERM: the graceful shutdown (the hand-over).
    Term,
}

/// One run of the daemon, on a runtime of its own so that it can be
/// killed: dropping that runtime drops every task of the run at its
/// current await, with no shutdown code run.
struct Daemon {
    rt: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    base: String,
    ari: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A free loopback port for `ari.listen`.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The shared store, keys and issuer journal of the two runs, and the
/// merchant's API key.
struct World {
    settings: Settings,
    dir: tempfile::TempDir,
    api_key: String,
    http: reqwest::Client,
}

impl World {
    async fn new(fake: &FakeAri) -> World {
        Self::on(fake, Db::Sqlite).await.expect("sqlite")
    }

    /// On `db`; None when PostgreSQL is not configured (skipped).
    async fn on(fake: &FakeAri, db: Db) -> Option<World> {
        voicepay_testkit::log::init();
        let dir = tempfile::tempdir().unwrap();
        let mut s = test_settings(db, dir.path()).await?;
        s.ari = fake.settings();
        s.ari.websocket = WebsocketMode::Outbound;
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.max_attempts = 1;
        // Recovery settles an order left in authorizing after this + 28 s.
        s.bank.auth_timeout_secs = 1;
        Some(World {
            settings: s,
            dir,
            api_key: String::new(),
            http: reqwest::Client::new(),
        })
    }

    /// Starts a run of the daemon and lets the fake Asterisk connect to
    /// it. The first run also creates the merchant.
    async fn start(&mut self, fake: &FakeAri) -> Daemon {
        self.start_with(Some(fake)).await
    }

    /// A run of the daemon, connected to by `fake` when given.
    async fn start_with(&mut self, fake: Option<&FakeAri>) -> Daemon {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ari = free_port();
        let mut settings = self.settings.clone();
        settings.ari.listen = ari.to_string();
        let first = self.api_key.is_empty();
        let (app, key) = rt
            .spawn(async move {
                let app = App::build(settings).await.expect("voicepay builds");
                let key = if first {
                    let s = app.state();
                    let m = voicepay::merchants::create(&s.store, &s.vault, "Shop", None)
                        .await
                        .unwrap();
                    m.api_key
                } else {
                    String::new()
                };
                (app, key)
            })
            .await
            .unwrap();
        if first {
            self.api_key = key;
        }
        let base = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let (tx, stopped) = tokio::sync::oneshot::channel();
        let sd = shutdown.clone();
        rt.spawn(async move {
            let _ = app.run(sd).await;
            let _ = tx.send(());
        });
        let d = Daemon {
            rt: Some(rt),
            shutdown,
            stopped: Some(stopped),
            base,
            ari,
        };
        if let Some(fake) = fake {
            connect(fake, &d).await;
        }
        d
    }

    /// Stops `d` as `how` says; returns once nothing of it runs.
    async fn stop(&self, mut d: Daemon, how: Stop) {
        if how == Stop::Term {
            d.shutdown.cancel();
            let stopped = d.stopped.take().unwrap();
            tokio::time::timeout(Duration::from_secs(20), stopped)
                .await
                .expect("the daemon stops")
                .unwrap();
        }
        if let Some(rt) = d.rt.take() {
            rt.shutdown_background();
        }
        drop(d);
        // A killed run's issuer journal is released once its tasks are
        // dropped; the next run must find it free.
        let journal = self.journal();
        wait_for(Duration::from_secs(10), async || {
            let f = std::fs::File::open(&journal).map_err(|e| e.to_string())?;
            f.try_lock()
                .map_err(|e| format!("journal still locked: {e}"))?;
            f.unlock().map_err(|e| e.to_string())
        })
        .await;
    }

    fn journal(&self) -> PathBuf {
        let path = self.settings.stub_state_path();
        assert!(path.starts_with(self.dir.path()), "{path:?}");
        path
    }

    /// The issuer's answers to the order's authorizations (its journal).
    fn answers(&self, order_id: &str) -> usize {
        std::fs::read_to_string(self.journal())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"kind\":\"answer\"") && l.contains(order_id))
            .count()
    }

    async fn create_order(&self, d: &Daemon, card: &str) -> String {
        let mut body = order_body(&format!("R{}", voicepay::crypto::random_hex(4)));
        body["card_number"] = json!(card);
        self.post_order(d, body).await
    }

    /// An inbound order for [`CALLER`]'s mobile.
    async fn inbound_order(&self, d: &Daemon) -> String {
        let mut body = order_body(&format!("R{}", voicepay::crypto::random_hex(4)));
        body["mode"] = json!("inbound");
        body["phone"] = json!(format!("+86{CALLER}"));
        self.post_order(d, body).await
    }

    async fn post_order(&self, d: &Daemon, body: Value) -> String {
        let res = self
            .http
            .post(format!("{}/v1/orders", d.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn view(&self, d: &Daemon, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/orders/{id}", d.base))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn until(&self, d: &Daemon, id: &str, want: &str, within: Duration) -> Value {
        wait_for(within, async || {
            let v = self.view(d, id).await;
            if v["status"] == want {
                Ok(v)
            } else {
                Err(format!("never {want}: {v:#}"))
            }
        })
        .await
    }

    /// The call's point as stored: (step, step_failures, tries_left, the
    /// whole row as text).
    async fn point(&self, id: &str) -> Option<(String, i64, i64, String)> {
        let pool = sqlx::AnyPool::connect(&self.settings.database.url)
            .await
            .unwrap();
        let row: Option<PointRow> = sqlx::query_as(
            "SELECT order_id, node, channel_id, attempt, flow, step, step_failures, \
                 tries_left, playback_seq FROM call_points WHERE order_id = $1",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .unwrap();
        pool.close().await;
        row.map(|r| (r.5.clone(), r.6, r.7, format!("{r:?}")))
    }

    async fn point_at(&self, id: &str, step: &str) -> (i64, i64, String) {
        wait_for(Duration::from_secs(15), async || {
            match self.point(id).await {
                Some((s, f, t, row)) if s == step => Ok((f, t, row)),
                other => Err(format!("the call's point is not at {step}: {other:?}")),
            }
        })
        .await
    }

    async fn point_gone(&self, id: &str) {
        wait_for(Duration::from_secs(15), async || {
            match self.point(id).await {
                None => Ok(()),
                Some(p) => Err(format!("the call's point is still there: {p:?}")),
            }
        })
        .await;
    }
}

/// The fake Asterisk opens its outbound socket to `d` (retried until
/// the daemon listens).
async fn connect(fake: &FakeAri, d: &Daemon) {
    wait_for(Duration::from_secs(10), async || {
        fake.dial(d.ari, USER, PASSWORD)
            .await
            .map_err(|e| format!("dial: {e}"))
    })
    .await;
}

/// A `call_points` row as the test reads it.
type PointRow = (String, String, String, i64, String, String, i64, i64, i64);

/// The `n`th playback on `ch` (1-based): its id and media.
async fn nth_play(fake: &FakeAri, ch: &str, n: usize) -> (String, Vec<String>) {
    wait_for(Duration::from_secs(15), async || {
        let p = plays(fake, ch);
        p.get(n - 1)
            .cloned()
            .ok_or_else(|| format!("fewer than {n} playbacks on {ch}: {p:#?}"))
    })
    .await
}

fn playback_started(ch: &str, id: &str) -> Value {
    event(
        "PlaybackStarted",
        json!({"playback": {"id": id, "media_uri": "sound:x",
               "target_uri": format!("channel:{ch}"), "language": "zh", "state": "playing"}}),
    )
}

/// Daemon A places the callback of a new order for `card` and the
/// cardholder answers: (order id, channel).
async fn answered_call(w: &World, fake: &FakeAri, a: &Daemon, card: &str) -> (String, String) {
    let id = w.create_order(a, card).await;
    let ch = format!("vp-{id}-1");
    request(fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    fake.set_channels(vec![up(&ch)]);
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&ch)}),
    ));
    let (first, _) = nth_play(fake, &ch, 1).await;
    fake.push(playback_started(&ch, &first));
    (id, ch)
}

/// Daemon B is up with the call; `queued` was keyed while no daemon ran
/// (Asterisk delivers it first). Returns B, the re-prompt's id and media.
async fn resumed(
    w: &mut World,
    fake: &FakeAri,
    ch: &str,
    queued: &str,
) -> (Daemon, String, Vec<String>) {
    let before = plays(fake, ch).len();
    let b = w.start(fake).await;
    fake.press(&up(ch), queued);
    let (id, media) = nth_play(fake, ch, before + 1).await;
    (b, id, media)
}

/// The old run's last prompt was stopped by the new run.
fn stopped_old_prompt(fake: &FakeAri, old: &str) {
    let stops: Vec<_> = fake
        .rest_calls()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/ari/playbacks/"))
        .map(|r| r.path.replace("%3A", ":"))
        .collect();
    assert!(
        stops.contains(&format!("/ari/playbacks/{old}")),
        "the previous run's prompt {old} was not stopped: {stops:?}"
    );
}

/// The closing prompt plays out and the daemon hangs up; the point goes.
async fn hang_up_after(w: &World, fake: &FakeAri, ch: &str, id: &str, closing: &str) {
    finished(fake, ch, closing);
    request(fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    w.point_gone(id).await;
}

const WITHIN: Duration = Duration::from_secs(15);

/// Confirmation: a "2" (cancel) keyed while no daemon ran is discarded;
/// the confirmation is asked again and the "1" must come again.
async fn at_confirm(how: Stop) {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    let (failures, tries, _) = w.point_at(&id, "confirm").await;
    assert_eq!((failures, tries), (0, 3));
    let (old, _) = nth_play(&fake, &ch, 1).await;
    w.stop(a, how).await;
    assert_eq!(
        w.point(&id).await.unwrap().0,
        "confirm",
        "kept for the next run"
    );

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "2").await;
    stopped_old_prompt(&fake, &old);
    assert_eq!(
        heard.first().map(String::as_str),
        Some("sound:voicepay/confirm-paying")
    );
    assert!(
        !heard.contains(&"sound:voicepay/welcome".to_owned()),
        "{heard:?}"
    );
    assert_eq!(
        w.view(&b, &id).await["status"],
        "in_call",
        "the queued 2 did not cancel"
    );
    fake.push(playback_started(&ch, &pb));
    fake.press(&up(&ch), "1");
    let (_, pin) = nth_play(&fake, &ch, 3).await;
    assert_eq!(pin, media(&["enter-pin"]));
    fake.press(&up(&ch), "805137");
    let v = w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(v["result"]["code"], "approved");
    assert_eq!(w.answers(&id), 1, "authorized exactly once");
    let (closing, said) = nth_play(&fake, &ch, 5).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

#[tokio::test]
async fn killed_at_the_confirmation_resumes_it() {
    at_confirm(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_at_the_confirmation_resumes_it() {
    at_confirm(Stop::Term).await;
}

/// PIN: digits keyed before the restart are forgotten (never stored), a
/// wrong PIN keyed while no daemon ran is discarded; the PIN is asked from
/// its first digit, with the failed attempt carried over.
async fn at_pin(how: Stop) {
    at_pin_on(how, Db::Sqlite).await;
}

async fn at_pin_on(how: Stop, db: Db) {
    let fake = FakeAri::start().await;
    let Some(mut w) = World::on(&fake, db).await else {
        return;
    };
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    fake.press(&up(&ch), "1");
    let (p2, _) = nth_play(&fake, &ch, 2).await;
    fake.push(playback_started(&ch, &p2));
    // One failed attempt (an entry ended short), then half a PIN.
    fake.press(&up(&ch), "12#");
    let (p3, again) = nth_play(&fake, &ch, 3).await;
    assert_eq!(
        again.first().map(String::as_str),
        Some("sound:voicepay/invalid-input")
    );
    fake.press(&up(&ch), "805");
    let (failures, tries, row) = w.point_at(&id, "pin").await;
    assert_eq!((failures, tries), (1, 3), "{row}");
    // Wait until the half PIN has surely reached A (its stop of p3 after
    // the first key), then check no digit is in the point.
    request(&fake, |r| {
        r.method == "DELETE" && r.path.replace("%3A", ":") == format!("/ari/playbacks/{p3}")
    })
    .await;
    let (_, _, row) = w.point_at(&id, "pin").await;
    for secret in ["805", "805137", "12"] {
        assert!(
            !row.contains(&format!("\"{secret}")),
            "a digit in the point: {row}"
        );
    }
    w.stop(a, how).await;

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "111111").await;
    stopped_old_prompt(&fake, &p3);
    assert_eq!(heard, media(&["enter-pin"]), "asked from its first digit");
    fake.push(playback_started(&ch, &pb));
    fake.press(&up(&ch), "805137");
    let v = w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(v["result"]["code"], "approved");
    assert_eq!(
        w.answers(&id),
        1,
        "the queued wrong PIN never reached the issuer"
    );
    let (closing, said) = nth_play(&fake, &ch, 6).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

#[tokio::test]
async fn killed_at_the_pin_asks_it_again_from_its_first_digit() {
    at_pin(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_at_the_pin_asks_it_again_from_its_first_digit() {
    at_pin(Stop::Term).await;
}

/// The same on PostgreSQL (the point written outside the group commit);
/// skipped without `VOICEPAY_TEST_DATABASE_URL`.
#[tokio::test]
async fn on_postgres_killed_and_handed_over_at_the_pin_ask_it_again() {
    at_pin_on(Stop::Kill, Db::Postgres).await;
    at_pin_on(Stop::Term, Db::Postgres).await;
}

/// Credit card at its CVN2: the expiry keyed before was in memory only,
/// so the expiry is asked again, then the CVN2.
async fn at_cvn2(how: Stop) {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6250000000000012").await;
    fake.press(&up(&ch), "1");
    let (p2, expiry) = nth_play(&fake, &ch, 2).await;
    assert_eq!(expiry, media(&["enter-expiry"]));
    fake.push(playback_started(&ch, &p2));
    fake.press(&up(&ch), "1230");
    let (p3, cvn2) = nth_play(&fake, &ch, 3).await;
    assert_eq!(cvn2, media(&["enter-cvn2"]));
    let (_, _, row) = w.point_at(&id, "expiry").await;
    assert!(!row.contains("1230"), "{row}");
    w.stop(a, how).await;

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "123").await;
    stopped_old_prompt(&fake, &p3);
    assert_eq!(heard, media(&["enter-expiry"]), "the expiry is asked again");
    fake.push(playback_started(&ch, &pb));
    fake.press(&up(&ch), "1230");
    let (_, next) = nth_play(&fake, &ch, 5).await;
    assert_eq!(next, media(&["enter-cvn2"]));
    fake.press(&up(&ch), "123");
    let v = w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(v["result"]["code"], "approved");
    assert_eq!(w.answers(&id), 1);
    let (closing, said) = nth_play(&fake, &ch, 7).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

#[tokio::test]
async fn killed_at_the_cvn2_asks_the_expiry_again() {
    at_cvn2(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_at_the_cvn2_asks_the_expiry_again() {
    at_cvn2(Stop::Term).await;
}

/// The secret is with the issuer (a card whose first answer never comes,
/// but which the issuer processed): the next run plays please-wait, the
/// matcher's recovery settles the order by query (no second
/// authorization), and the call says the result. A graceful stop lets the
/// request in flight finish (by query) while the call is handed over at
/// `authorizing`: the next run finds the order settled.
async fn at_authorizing(how: Stop) {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000058").await;
    fake.press(&up(&ch), "1");
    let (p2, _) = nth_play(&fake, &ch, 2).await;
    fake.push(playback_started(&ch, &p2));
    fake.press(&up(&ch), "805137");
    let (p3, wait) = nth_play(&fake, &ch, 3).await;
    assert_eq!(wait, media(&["please-wait"]));
    let (_, tries, _) = w.point_at(&id, "authorizing").await;
    assert_eq!(tries, 2);
    w.until(&a, &id, "authorizing", WITHIN).await;
    w.stop(a, how).await;

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "805137").await;
    stopped_old_prompt(&fake, &p3);
    assert_eq!(heard, media(&["please-wait"]));
    fake.push(playback_started(&ch, &pb));
    // Recovery waits until no live authorization can still be under way.
    let v = w.until(&b, &id, "succeeded", Duration::from_secs(90)).await;
    assert_eq!(v["result"]["code"], "approved");
    let (closing, said) = wait_for(WITHIN, async || {
        let p = plays(&fake, &ch);
        match p.last() {
            Some(last) if last.1.contains(&"sound:voicepay/success".to_owned()) => Ok(last.clone()),
            _ => Err(format!("the result was not said: {p:#?}")),
        }
    })
    .await;
    assert_eq!(said, media(&["success", "goodbye"]));
    assert_eq!(
        w.answers(&id),
        1,
        "the secret never went to the issuer again"
    );
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

#[tokio::test]
async fn killed_while_authorizing_says_the_recovered_result() {
    at_authorizing(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_while_authorizing_says_the_recovered_result() {
    at_authorizing(Stop::Term).await;
}

/// The result is being said: the next run says it again and hangs up;
/// the order is not touched.
async fn at_closing(how: Stop) {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    fake.press(&up(&ch), "1");
    let (p2, _) = nth_play(&fake, &ch, 2).await;
    fake.push(playback_started(&ch, &p2));
    fake.press(&up(&ch), "805137");
    w.until(&a, &id, "succeeded", WITHIN).await;
    let (p4, said) = nth_play(&fake, &ch, 4).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    w.point_at(&id, "closing").await;
    w.stop(a, how).await;

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "9").await;
    stopped_old_prompt(&fake, &p4);
    assert_eq!(heard, media(&["success", "goodbye"]), "said again");
    let v = w.view(&b, &id).await;
    assert_eq!(v["status"], "succeeded");
    assert_eq!(w.answers(&id), 1);
    hang_up_after(&w, &fake, &ch, &id, &pb).await;
}

#[tokio::test]
async fn killed_while_saying_the_result_says_it_again() {
    at_closing(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_while_saying_the_result_says_it_again() {
    at_closing(Stop::Term).await;
}

/// A call whose channel ended while no daemon ran is settled as lost, and
/// its point deleted.
#[tokio::test]
async fn a_call_gone_while_down_is_settled_and_its_point_dropped() {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    w.point_at(&id, "confirm").await;
    w.stop(a, Stop::Kill).await;
    fake.set_channels(vec![]);
    let b = w.start(&fake).await;
    let v = w.until(&b, &id, "failed", WITHIN).await;
    assert_eq!(v["result"]["code"], "call_failed");
    w.point_gone(&id).await;
    assert!(
        plays(&fake, &ch).len() == 1,
        "nothing played on a gone channel"
    );
}

/// An inbound call (the cardholder dialled the access number) resumes as
/// a callback does: killed at the PIN, asked the PIN again, paid once.
#[tokio::test]
async fn an_inbound_call_killed_at_the_pin_is_resumed_and_paid_once() {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    w.settings.inbound.require_order_code = false;
    let a = w.start(&fake).await;
    let id = w.inbound_order(&a).await;
    let ch = "1712345680.1";
    fake.set_channels(vec![up(ch)]);
    dial_in(&fake, ch, CALLER);
    let (p1, welcome) = nth_play(&fake, ch, 1).await;
    assert_eq!(
        welcome.first().map(String::as_str),
        Some("sound:voicepay/welcome")
    );
    fake.push(playback_started(ch, &p1));
    fake.press(&up(ch), "1");
    let (p2, _) = nth_play(&fake, ch, 2).await;
    fake.push(playback_started(ch, &p2));
    fake.press(&up(ch), "80");
    let (_, _, row) = w.point_at(&id, "pin").await;
    assert!(row.contains("\"inbound\""), "{row}");
    w.stop(a, Stop::Kill).await;

    let (b, pb, heard) = resumed(&mut w, &fake, ch, "5137").await;
    stopped_old_prompt(&fake, &p2);
    assert_eq!(heard, media(&["enter-pin"]));
    fake.push(playback_started(ch, &pb));
    fake.press(&up(ch), "805137");
    let v = w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(v["result"]["code"], "approved");
    assert_eq!(w.answers(&id), 1);
    let (closing, said) = nth_play(&fake, ch, 5).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    hang_up_after(&w, &fake, ch, &id, &closing).await;
}

/// A callback still ringing when the daemon stops is the next run's
/// originate: answered while no daemon ran (its `StasisStart` queued), it
/// runs the IVR from the welcome and pays once; nothing is retried.
async fn ringing(how: Stop) {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let id = w.create_order(&a, "6222000000000017").await;
    let ch = format!("vp-{id}-1");
    request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    fake.set_channels(vec![voicepay_testkit::fake_ari::channel(&ch, "Ringing")]);
    fake.push(event("Dial", json!({"dialstatus": "", "peer": up(&ch)})));
    w.until(&a, &id, "calling", WITHIN).await;
    w.stop(a, how).await;
    assert_eq!(plays(&fake, &ch).len(), 0);

    fake.set_channels(vec![up(&ch)]);
    let b = w.start(&fake).await;
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&ch)}),
    ));
    let (p1, welcome) = nth_play(&fake, &ch, 1).await;
    assert_eq!(
        welcome.first().map(String::as_str),
        Some("sound:voicepay/welcome")
    );
    fake.push(playback_started(&ch, &p1));
    fake.press(&up(&ch), "1");
    nth_play(&fake, &ch, 2).await;
    fake.press(&up(&ch), "805137");
    let v = w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(w.answers(&id), 1);
    let (closing, _) = nth_play(&fake, &ch, 4).await;
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

#[tokio::test]
async fn killed_while_a_callback_rings_the_next_run_takes_its_answer() {
    ringing(Stop::Kill).await;
}

#[tokio::test]
async fn handed_over_while_a_callback_rings_the_next_run_takes_its_answer() {
    ringing(Stop::Term).await;
}

/// The merchant cancels the order while no daemon drives its call (the
/// API is up, Asterisk not yet reconnected): the resumed call asks for
/// nothing any more and only says goodbye.
#[tokio::test]
async fn an_order_cancelled_while_down_is_not_asked_for_again() {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    fake.press(&up(&ch), "1");
    let (p2, _) = nth_play(&fake, &ch, 2).await;
    w.point_at(&id, "pin").await;
    w.stop(a, Stop::Kill).await;

    let b = w.start_with(None).await;
    let res = w
        .http
        .post(format!("{}/v1/orders/{id}/cancel", b.base))
        .bearer_auth(&w.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    w.until(&b, &id, "cancelled", WITHIN).await;
    connect(&fake, &b).await;
    let (pb, heard) = nth_play(&fake, &ch, 3).await;
    stopped_old_prompt(&fake, &p2);
    assert_eq!(heard, media(&["goodbye"]), "nothing asked again");
    assert_eq!(w.answers(&id), 0);
    hang_up_after(&w, &fake, &ch, &id, &pb).await;
    assert_eq!(w.view(&b, &id).await["status"], "cancelled");
}

impl World {
    /// Rewrites the call's point to `step` (with `tries_left`): the row a
    /// SIGKILL leaves when it lands between the point's write and the
    /// order's own move (the matcher's `in_call` → `authorizing`, or the
    /// outcome's `in_call` → `failed`), a window too short to hit by timing.
    async fn set_point(&self, id: &str, step: &str, tries_left: i64) {
        let pool = sqlx::AnyPool::connect(&self.settings.database.url)
            .await
            .unwrap();
        let done = sqlx::query(
            "UPDATE call_points SET step = $1, tries_left = $2, seq = seq + 1 WHERE order_id = $3",
        )
        .bind(step)
        .bind(tries_left)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    }
}

/// Killed after the `authorizing` point was kept but before the matcher
/// took the secret (the order still `in_call`): the next run finds nothing
/// at the issuer, and asks the PIN again, without a "wrong PIN" and with
/// the try given back.
#[tokio::test]
async fn killed_before_the_secret_reached_the_matcher_asks_it_again() {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    fake.press(&up(&ch), "1");
    let (p2, _) = nth_play(&fake, &ch, 2).await;
    w.point_at(&id, "pin").await;
    w.stop(a, Stop::Kill).await;
    w.set_point(&id, "authorizing", 2).await;

    let (b, pb, heard) = resumed(&mut w, &fake, &ch, "9").await;
    stopped_old_prompt(&fake, &p2);
    assert_eq!(heard, media(&["please-wait"]));
    fake.push(playback_started(&ch, &pb));
    let (_, again) = nth_play(&fake, &ch, 4).await;
    assert_eq!(again, media(&["enter-pin"]), "no wrong-PIN prompt");
    let (_, tries, _) = w.point_at(&id, "pin").await;
    assert_eq!(
        tries, 3,
        "the try that never reached the issuer is given back"
    );
    fake.press(&up(&ch), "805137");
    w.until(&b, &id, "succeeded", WITHIN).await;
    assert_eq!(w.answers(&id), 1);
    let (closing, said) = nth_play(&fake, &ch, 6).await;
    assert_eq!(said, media(&["success", "goodbye"]));
    hang_up_after(&w, &fake, &ch, &id, &closing).await;
}

/// Killed after the closing point was kept but before the outcome reached
/// the order (still `in_call`): the outcome is unknown, so the call is
/// asked from its confirmation again, never skipped to a result.
#[tokio::test]
async fn killed_before_the_outcome_reached_the_order_asks_from_the_confirmation() {
    let fake = FakeAri::start().await;
    let mut w = World::new(&fake).await;
    let a = w.start(&fake).await;
    let (id, ch) = answered_call(&w, &fake, &a, "6222000000000017").await;
    w.point_at(&id, "confirm").await;
    w.stop(a, Stop::Kill).await;
    w.set_point(&id, "closing", 3).await;

    let (b, _, heard) = resumed(&mut w, &fake, &ch, "1").await;
    assert_eq!(
        heard.first().map(String::as_str),
        Some("sound:voicepay/confirm-paying")
    );
    assert_eq!(w.view(&b, &id).await["status"], "in_call");
    assert_eq!(w.answers(&id), 0);
}
