//! "No secret anywhere" (DESIGN.md): after real payments through a real
//! Asterisk 22 — a debit card with a wrong PIN then the right one, a second
//! debit card, credit cards keyed with expiry and CVN2 — none of the keyed
//! secrets, full card numbers or ID numbers is in the daemon's log output
//! (`voicepay serve` as a subprocess with `RUST_LOG=trace`, where every
//! library logs whatever it logs at its most verbose), in what Asterisk
//! logged meanwhile, in the SQLite files, or in the API's answers.
//!
//! The scanner (`voicepay_testkit::secrets`) is proven here too: it fails on
//! deliberate leaks and passes their masked or look-alike forms.
//!
//! Needs `scripts/asterisk up`; skips without Asterisk, fails under
//! `CI=true`.

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use voicepay_testkit::lab;
use voicepay_testkit::secrets::{Finding, Secrets};
use voicepay_testkit::wait::EVERY;
use voicepay_testkit::{poll_until, wait_for};

const PIN: &str = "805137";
const BANK2_PIN: &str = "246810";
/// Wrong PINs the handset keys: secrets too (they are someone's guess, or
/// a mistyped real PIN).
const WRONG_PIN: &str = "350917";
const DEBIT_ID: &str = "11010519491231002X";
const BANK2_ID: &str = "310115198506154322";

/// Everything the end-to-end payments below key or send.
fn secrets_used() -> Secrets {
    Secrets::new()
        .pin(PIN)
        .pin(BANK2_PIN)
        .pin(WRONG_PIN)
        .expiry_cvn2("1230", "123")
        .card("6222000000000017")
        .card("6217000000000014")
        .card("6250000000000012")
        .card("6250000000000020")
        .id_number(DEBIT_ID)
        .id_number(BANK2_ID)
}

// --- the scanner itself ----------------------------------------------------

#[test]
fn scanner_fails_on_a_deliberate_pin_leak() {
    let log = b"2026-11-25T19:33:26.120044Z DEBUG verify: order=ord_1 pin=805137 tries=1\n";
    let found = secrets_used().scan("log", log);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].label.starts_with("PIN"), "{found:?}");
    // A finding names the secret, it never repeats it.
    let shown = format!("{}", found[0]);
    assert!(!shown.contains(PIN), "{shown}");
    assert!(shown.contains("pin=######"), "{shown}");
}

#[test]
fn scanner_finds_each_form_of_the_other_secrets() {
    let s = secrets_used();
    for (leak, label) in [
        (&b"digits=1230123 done"[..], "expiry+CVN2"),
        (b"expiry 12/30 ok", "expiry MM/YY"),
        (b"{\"expiry\":\"1230\"}", "expiry MMYY"),
        (b"{\"cvn2\":\"123\"}", "CVN2"),
        (b"CVV: 123", "CVN2"),
        (b"card=6250000000000012;", "card number 625000"),
        (b"pan 6222 0000 0000 0017 x", "card number 622200"),
        (b"wrong 350917#", "PIN 35"),
        (b"\x00id\x00310115198506154322\x00", "ID number 310115"),
        (b"holder=11010519491231002X", "ID number 110105"),
    ] {
        let found = s.scan("buffer", leak);
        assert!(
            found.iter().any(|f| f.label.starts_with(label)),
            "{label} not found in {:?}: {found:?}",
            String::from_utf8_lossy(leak)
        );
    }
}

#[test]
fn scanner_passes_masked_forms_and_look_alikes() {
    // A real expiry next to a UUID is still found.
    let leak = secrets_used().scan(
        "buffer",
        b"request_id=ce12a3db-1230-4c56-8d7f-adea0f1dd2a4 exp=1230",
    );
    assert_eq!(leak.len(), 1, "{leak:?}");
    let clean: &[&[u8]] = &[
        b"card=622200******0017 holder=110105********002X",
        b"amount=12345 order 123 took 1.230s",
        b"18051370 2805137 8051370",
        b"2026-11-25T19:33:26.805137Z  INFO voicepay serving",
        b"[C-00001230] Local/13800131230@voicepay-lab-00001230;1",
        b"sound:voicepay/digits/1 sound:voicepay/digits/2 sound:voicepay/digits/3",
        b"12/300 112/30",
        b"http{request_id=ce12a3db-1230-4c56-8d7f-adea0f1dd2a4}: started",
    ];
    for buf in clean {
        let found = secrets_used().scan("buffer", buf);
        assert!(found.is_empty(), "{found:?}");
    }
}

#[test]
fn scanner_reads_files_from_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.log");
    std::fs::write(&path, b"before the test: pin 805137\n").unwrap();
    let start = std::fs::metadata(&path).unwrap().len();
    let s = secrets_used();
    assert!(s.scan_file(&path, start).is_empty());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"during the test: cvn2=123\n").unwrap();
    let found = s.scan_file(&path, start);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].offset as u64, start + 22);
    // A rotated (shorter) file is read from its start.
    std::fs::write(&path, b"1230123").unwrap();
    assert_eq!(s.scan_file(&path, start).len(), 1);
}

// --- end to end --------------------------------------------------------------

/// `voicepay serve` as an operator runs it, logging at trace level to files.
struct Daemon {
    child: Child,
    base: String,
    api_key: String,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn command(dir: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_voicepay"));
        c.current_dir(dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env(
            "VOICEPAY__DATABASE__URL",
            format!("sqlite://{}", dir.join("voicepay.db").display()),
        );
        c
    }

    async fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Self::command(dir.path())
            .args(["merchant", "add", "--name", "Shop", "--json"])
            .output()
            .expect("merchant add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: Value = serde_json::from_slice(&out.stdout).expect("merchant json");
        let api_key = m["api_key"].as_str().expect("api key").to_string();

        let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect(name);
        let mut c = Self::command(dir.path());
        for key in [
            "VOICEPAY__ARI__URL",
            "VOICEPAY__ARI__USERNAME",
            "VOICEPAY__ARI__PASSWORD",
        ] {
            c.env(key, lab::lab_setting(key));
        }
        let child = c
            .arg("serve")
            .env("VOICEPAY__ARI__APP", lab::unique("vp-nosecret"))
            .env(
                "VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT",
                "Local/{phone}@voicepay-lab",
            )
            .env("VOICEPAY__TELEPHONY__MAX_ATTEMPTS", "1")
            .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
            .env("VOICEPAY__LOG__LEVEL", "trace")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(file("daemon.stdout"))
            .stderr(file("daemon.stderr"))
            .spawn()
            .expect("voicepay serve");
        let mut d = Daemon {
            child,
            base: String::new(),
            api_key,
            dir,
        };
        d.base = format!("http://{}", d.wait_listen().await);
        d
    }

    /// The address from the "voicepay serving listen=…" line.
    async fn wait_listen(&mut self) -> String {
        wait_for(Duration::from_secs(30), || {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let listen = match log.split("listen=").nth(1) {
                Some(rest) => Ok(rest.split_whitespace().next().expect("address").to_owned()),
                None => Err(format!("no listen= line in 30 s:\n{log}")),
            };
            if listen.is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("voicepay serve exited ({status}):\n{log}");
                }
            }
            std::future::ready(listen)
        })
        .await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.stderr")
    }

    /// SIGTERM, so the daemon shuts down (and checkpoints) as in production.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = poll_until(Duration::from_secs(15), EVERY, || {
            std::future::ready(match self.child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(()),
            })
        })
        .await;
        if exited.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Log output, database files and the stub issuer's durable state
    /// (`bank.stub_state`, by default next to the database): what must hold
    /// no secret.
    fn files(&self) -> Vec<PathBuf> {
        [
            "daemon.stderr",
            "daemon.stdout",
            "voicepay.db",
            "voicepay.db-wal",
            "voicepay.db-shm",
            "voicepay.stub-bank.jsonl",
        ]
        .iter()
        .map(|f| self.dir.path().join(f))
        .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file in Asterisk's log folder and its size now.
fn log_sizes(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

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

/// Places an order, waits until it is final and its call has ended, and
/// returns every API answer about it (to scan them too).
async fn pay(d: &Daemon, card: &str, id_number: &str, keys: &str) -> (Value, Vec<String>) {
    let lab = lab::Lab::from_env().expect("lab");
    let phone = phone();
    lab.script_handset(
        &phone,
        &format!("answer=1;delay=1;keys=1wwww{keys};hold=40"),
    )
    .await
    .expect("script");
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/v1/orders", d.base))
        .bearer_auth(&d.api_key)
        .json(&json!({
            "merchant_order_id": format!("m{:012x}", rand::random::<u64>() >> 16),
            "amount": 2000,
            "currency": "CNY",
            "phone": phone,
            "card_number": card,
            "id_number": id_number,
            "language": "zh",
        }))
        .send()
        .await
        .expect("order sent");
    let mut answers = vec![res.text().await.expect("order body")];
    let created: Value = serde_json::from_str(&answers[0]).expect("order json");
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("order refused: {created}"))
        .to_string();
    let every = Duration::from_millis(250);
    let final_view = poll_until(Duration::from_secs(90), every, async || {
        let text = http
            .get(format!("{}/v1/orders/{id}", d.base))
            .bearer_auth(&d.api_key)
            .send()
            .await
            .expect("order view")
            .text()
            .await
            .expect("view body");
        let v: Value = serde_json::from_str(&text).expect("view json");
        let ended = v["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|a| !a["ended_at"].is_null()));
        if matches!(v["status"].as_str(), Some("succeeded" | "failed")) && ended {
            Ok((v, text))
        } else {
            Err(format!("order not final in time: {v:#}"))
        }
    })
    .await;
    let (v, text) = final_view.unwrap_or_else(|why| panic!("{why}"));
    answers.push(text);
    let bindings = http
        .get(format!("{}/v1/bindings?phone={phone}", d.base))
        .bearer_auth(&d.api_key)
        .send()
        .await
        .expect("bindings")
        .text()
        .await
        .expect("bindings body");
    answers.push(bindings);
    let _ = lab.clear_handset(&phone).await;
    (v, answers)
}

#[tokio::test]
async fn no_secret_in_logs_database_or_api_after_real_payments() {
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let ast_logs = lab.log_dir().await.expect("Asterisk log dir");
    let before = log_sizes(&ast_logs);
    let mut daemon = Daemon::start().await;

    let payments = [
        // Debit: a wrong PIN, then the right one in the same call.
        (
            "6222000000000017",
            DEBIT_ID,
            format!("{WRONG_PIN}WWWWWWWW{PIN}"),
            "approved",
        ),
        (
            "6217000000000014",
            BANK2_ID,
            BANK2_PIN.to_string(),
            "approved",
        ),
        // Credit: expiry 12/30 then CVN2 123.
        (
            "6250000000000012",
            DEBIT_ID,
            "1230ww123".to_string(),
            "approved",
        ),
        (
            "6250000000000020",
            DEBIT_ID,
            "1230ww123".to_string(),
            "card_expired",
        ),
    ];
    let runs = payments
        .iter()
        .map(|(card, id, keys, _)| pay(&daemon, card, id, keys));
    let results = join_all(runs).await;
    daemon.stop().await;

    let mut problems = Vec::new();
    let mut api = Vec::new();
    for ((card, _, _, want), (v, answers)) in payments.iter().zip(results) {
        if v["result"]["code"] != *want {
            problems.push(format!("{card}: expected {want}: {v:#}"));
        }
        api.extend(answers);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let s = secrets_used();
    let mut found: Vec<Finding> = Vec::new();
    // The daemon really logged the calls, at trace level (else the scan
    // proves nothing): the ARI events arrived as trace lines naming their
    // type, and the WebSocket library's frames (which carry the digits) did
    // not.
    let log = std::fs::read_to_string(daemon.log_path()).unwrap_or_default();
    assert!(
        log.contains("placing callback"),
        "no call in the log:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("TRACE")
            && l.contains("ARI event")
            && l.contains("ChannelDtmfReceived")),
        "no trace-level ARI event line in the log"
    );
    for wire in ["tungstenite", "Received message", "frame"] {
        let line = log.lines().find(|l| l.contains(wire));
        assert!(line.is_none(), "a wire-level line at trace: {line:?}");
    }
    for f in daemon.files() {
        found.extend(s.scan_file(&f, 0));
    }
    assert!(
        std::fs::metadata(daemon.dir.path().join("voicepay.db")).is_ok_and(|m| m.len() > 0),
        "no database file"
    );
    assert!(
        std::fs::metadata(daemon.dir.path().join("voicepay.stub-bank.jsonl"))
            .is_ok_and(|m| m.len() > 0),
        "the stub issuer recorded nothing"
    );
    for (path, _) in log_sizes(&ast_logs) {
        let start = before
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| *s)
            .unwrap_or(0);
        found.extend(s.scan_file(&path, start));
    }
    for (i, body) in api.iter().enumerate() {
        found.extend(s.scan(&format!("API answer {i}"), body.as_bytes()));
    }
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
