//! The daemon is killed (SIGKILL) while an authorization is with
//! the issuer, then started again on the same database and the same stub
//! issuer state: the order is settled, with one debit.
//!
//! All real: the `voicepay serve` binary as a child process on a SQLite file
//! in a temp folder, the lab Asterisk 22, a lab handset that answers the
//! callback and keys the PIN of card 6222000000000041 (the stub answers it
//! 5 s after debiting it, as a slow issuer would). The test waits until the
//! order is `authorizing` and the issuer has recorded the debit, kills the
//! daemon inside those 5 s, restarts it, and checks what a merchant and a
//! bank clerk would: the order through the API, the card's balance through
//! the stub's durable state, the audit log, and no secret in any file or
//! log.
//!
//! Needs `scripts/asterisk up` (and `set -a; . scripts/lab.env; set +a`);
//! skips without Asterisk, fails under `CI=true`.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use voicepay::bank::{IssuerLink, StubIssuer};
use voicepay::crypto::ZonePinKey;
use voicepay::domain::CardNumber;
use voicepay_testkit::lab;
use voicepay_testkit::secrets;
use voicepay_testkit::{wait_for, wait_until};

const SLOW_CARD: &str = "6222000000000041";
const HOLDER: &str = "11010519491231002X";
const PIN: &str = "805137";
const AMOUNT: i64 = 4321;
/// The slow card's opening balance in the built-in table.
const START_FEN: i64 = 10_000_000;

/// One node's settings, passed as `VOICEPAY__…` variables as an operator's
/// service unit would: its own folder (database, key file, stub state) and
/// its own Stasis app on the lab Asterisk.
struct Node {
    dir: tempfile::TempDir,
    app: String,
}

impl Node {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            app: lab::unique("vp-kill"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stub_state(&self) -> PathBuf {
        self.path("bank/stub-state.jsonl")
    }

    fn voicepay(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_voicepay"));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        let db = format!("sqlite://{}", self.path("voicepay.db").display());
        let vars = [
            ("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("VOICEPAY__DATABASE__URL", db),
            (
                "VOICEPAY__CRYPTO__KEY_FILE",
                self.path("voicepay.keys").display().to_string(),
            ),
            (
                "VOICEPAY__BANK__STUB_STATE",
                self.stub_state().display().to_string(),
            ),
            ("VOICEPAY__ARI__URL", lab::lab_setting("VOICEPAY__ARI__URL")),
            (
                "VOICEPAY__ARI__USERNAME",
                lab::lab_setting("VOICEPAY__ARI__USERNAME"),
            ),
            (
                "VOICEPAY__ARI__PASSWORD",
                lab::lab_setting("VOICEPAY__ARI__PASSWORD"),
            ),
            ("VOICEPAY__ARI__APP", self.app.clone()),
            (
                "VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT",
                "Local/{phone}@voicepay-lab".to_owned(),
            ),
            ("VOICEPAY__TELEPHONY__RING_TIMEOUT_SECS", "10".to_owned()),
            ("VOICEPAY__TELEPHONY__MAX_ATTEMPTS", "1".to_owned()),
            // the widest log, so the secret scan sees everything
            ("VOICEPAY__LOG__LEVEL", "debug".to_owned()),
        ];
        c.envs(vars);
        c
    }

    /// `voicepay merchant add --json`: the API key.
    fn merchant(&self) -> String {
        let out = self
            .voicepay()
            .args(["merchant", "add", "--name", "Kill shop", "--json"])
            .output()
            .expect("voicepay merchant add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: Value = serde_json::from_slice(&out.stdout).expect("json");
        m["api_key"].as_str().expect("api_key").to_owned()
    }

    /// Starts `voicepay serve`; its stderr is kept for the secret scan.
    fn serve(&self) -> Daemon {
        let mut child = self
            .voicepay()
            .arg("serve")
            .stderr(Stdio::piped())
            .spawn()
            .expect("voicepay serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("piped stderr");
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut log = keep.lock().unwrap();
                log.extend_from_slice(line.as_bytes());
                log.push(b'\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                panic!("voicepay serve did not log its address in 60 s:\n{log}");
            }
        };
        Daemon {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }
}

struct Daemon {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Daemon {
    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn log(&self) -> Vec<u8> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The merchant's view of the order.
async fn view(http: &reqwest::Client, d: &Daemon, key: &str, id: &str) -> Value {
    http.get(format!("{}/v1/orders/{id}", d.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("GET order")
        .json()
        .await
        .expect("order json")
}

/// Polls the order until `done` holds for its view; panics with the last
/// view after `within` (a bound against hanging, not a speed assertion).
async fn view_until(
    http: &reqwest::Client,
    d: &Daemon,
    key: &str,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(within, async || {
        let v = view(http, d, key, id).await;
        if done(&v) {
            Ok(v)
        } else {
            Err(format!("{what}: never; last view {v}"))
        }
    })
    .await
}

/// The stub issuer as its durable state says, read without taking it over
/// (the zone PIN key only matters for checking PINs, which this does not).
fn issuer_state(path: &Path) -> StubIssuer {
    StubIssuer::builtin(ZonePinKey::from_bytes(&[0u8; 32]).expect("key"))
        .inspect_state_file(path)
        .expect("the stub issuer's state file reads")
}

fn balance(issuer: &StubIssuer) -> i64 {
    issuer
        .available_fen(&CardNumber::parse(SLOW_CARD).expect("card"))
        .expect("the slow card is on file")
}

fn final_status(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "expired")
    )
}

/// One audit event: (kind, from status, to status, detail), empty when absent.
type Event = (String, String, String, String);

/// Every audit event of the order, oldest first.
async fn events(db: &Path, id: &str) -> Vec<Event> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the daemon's database");
    let rows: Vec<Event> = sqlx::query_as(
        "SELECT kind, COALESCE(from_status, ''), COALESCE(to_status, ''), COALESCE(detail, '') \
         FROM order_events WHERE order_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("events");
    pool.close().await;
    rows
}

#[tokio::test]
async fn killed_during_an_authorization_then_restarted_settles_with_one_debit() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let node = Node::new();
    let key = node.merchant();
    let http = reqwest::Client::new();
    let phone = format!("1390113{:04}", rand::random::<u16>() % 10_000);
    // answers, confirms with 1, keys the PIN, and stays on the line
    lab.script_handset(&phone, &format!("answer=1;delay=1;keys=1wwww{PIN};hold=60"))
        .await
        .expect("handset script");

    let mut first = node.serve();
    let created: Value = http
        .post(format!("{}/v1/orders", first.base))
        .bearer_auth(&key)
        .json(&json!({
            "merchant_order_id": format!("K{:010}", rand::random::<u32>()),
            "amount": AMOUNT, "currency": "CNY", "phone": phone,
            "card_number": SLOW_CARD, "id_number": HOLDER, "mode": "callback",
        }))
        .send()
        .await
        .expect("POST order")
        .json()
        .await
        .expect("order json");
    let id = created["id"].as_str().expect("order id").to_owned();
    let attempt_key = format!("{id}:1");

    // The PIN is keyed and the order goes to the bank.
    view_until(
        &http,
        &first,
        &key,
        &id,
        Duration::from_secs(90),
        "order authorizing",
        |v| v["status"] == "authorizing" || final_status(v),
    )
    .await;
    // The issuer has recorded (and debited) the attempt; its answer is
    // still on the way (5 s for this card).
    let recorded = format!("the issuer never recorded {attempt_key}");
    wait_until(Duration::from_secs(30), recorded, async || {
        issuer_state(&node.stub_state())
            .query(&attempt_key)
            .await
            .expect("query")
            .is_some()
    })
    .await;
    let before_kill = view(&http, &first, &key, &id).await;
    assert_eq!(
        before_kill["status"], "authorizing",
        "the answer must still be on its way when the daemon is killed: {before_kill}"
    );
    first.kill();
    let first_log = first.log();
    drop(first);

    // What the issuer holds while no daemon runs: one debit, approved.
    let issuer = issuer_state(&node.stub_state());
    assert_eq!(balance(&issuer), START_FEN - AMOUNT);
    let recorded = issuer.query(&attempt_key).await.expect("query");
    assert!(
        recorded.as_ref().is_some_and(|r| r.is_approved()),
        "{recorded:?}"
    );

    // Restarted on the same database, keys and issuer state.
    let second = node.serve();
    let settled = view_until(
        &http,
        &second,
        &key,
        &id,
        Duration::from_secs(120),
        "order settled after the restart",
        final_status,
    )
    .await;
    assert_eq!(settled["status"], "succeeded", "{settled}");
    assert_eq!(settled["result"]["code"], "approved", "{settled}");
    assert_eq!(settled["result"]["resp_code"], "00", "{settled}");
    // the lost call is not left open either
    let attempts = settled["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{settled}");
    let closed = view_until(
        &http,
        &second,
        &key,
        &id,
        Duration::from_secs(30),
        "the lost call's attempt closed",
        |v| v["attempts"][0]["ended_at"].is_string(),
    )
    .await;
    assert_eq!(closed["status"], "succeeded");

    // Exactly one debit of the amount, under the order's only attempt key.
    let issuer = issuer_state(&node.stub_state());
    assert_eq!(balance(&issuer), START_FEN - AMOUNT);
    assert_eq!(issuer.query(&attempt_key).await.expect("query"), recorded);
    assert_eq!(
        issuer.query(&format!("{id}:2")).await.expect("query"),
        None,
        "no second attempt was sent"
    );

    // The same through the tester's command, which only reads the state.
    let out = node
        .voicepay()
        .args(["bank", "cards", "--json"])
        .output()
        .expect("voicepay bank cards");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).expect("json");
    let slow = shown["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|c| c["card"] == "622200******0041")
        .unwrap_or_else(|| panic!("the slow card is listed: {shown}"));
    assert_eq!(slow["available_fen"], START_FEN - AMOUNT, "{shown}");

    // The audit log: one move to the bank, one authorization, settled by
    // the restarted daemon's query.
    let log = events(&node.path("voicepay.db"), &id).await;
    let shown = format!("{log:#?}");
    let to_bank = log.iter().filter(|e| e.2 == "authorizing").count();
    let authorizations = log
        .iter()
        .filter(|e| e.0 == "bank" && e.3.starts_with("authorize attempt"))
        .count();
    assert_eq!(to_bank, 1, "{shown}");
    assert_eq!(authorizations, 1, "{shown}");
    assert!(
        log.iter()
            .any(|e| e.0 == "bank" && e.3 == "recovery: querying attempt 1"),
        "settled by the restarted daemon's recovery: {shown}"
    );
    assert!(
        log.iter()
            .any(|e| e.1 == "authorizing" && e.2 == "succeeded"),
        "{shown}"
    );
    let _ = lab.clear_handset(&phone).await;

    // No secret and no full number in the issuer's state, the database or
    // either run's log.
    let secrets = secrets::Secrets::new()
        .pin(PIN)
        .card(SLOW_CARD)
        .id_number(HOLDER);
    let mut found = secrets.scan_file(&node.stub_state(), 0);
    for db in ["voicepay.db", "voicepay.db-wal"] {
        found.extend(secrets.scan_file(&node.path(db), 0));
    }
    found.extend(secrets.scan("first run's log", &first_log));
    found.extend(secrets.scan("second run's log", &second.log()));
    assert!(
        found.is_empty(),
        "secrets found:\n{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
