//! voicepay against an ISO 8583 issuer host it did not write (issue 13):
//! the Python peer (`tests/iso8583_peer/peer.py`, pyiso8583 + psec), the
//! `voicepay serve` binary as a child process pointed at it
//! (`VOICEPAY__BANK__KIND=iso8583`), and simulated cardholders who answer
//! the daemon's callbacks on the scripted fake ARI ([`FakeAri`]) and key
//! the confirmation and their secrets as DTMF events.
//!
//! ```text
//! let Some(peer) = Peer::start() else { return };   // None: skipped (no venv)
//! let fake = Arc::new(FakeAri::start().await);
//! let callers = Callers::start(fake.clone());
//! let node = Node::new(env!("CARGO_BIN_EXE_voicepay"), &fake, &peer.address());
//! let key = node.merchant(Some(ACCEPTOR_ID));
//! let daemon = node.serve().await;                    // ready: ARI up, link signed on
//! callers.script(PHONE, &[DEBIT_PIN]);
//! let id = daemon.order(&key, &debit_order(PHONE, 1234)).await;
//! let v = daemon.settled(&key, &id).await;
//! ```
//!
//! Why the fake ARI and not real calls: the ISO 8583 scenarios are about
//! the acquirer edge; a call through Asterisk adds nothing to them but
//! time (the issue allows "the fake ARI where a call adds nothing"). The
//! daemon is the real binary, so it can be SIGKILLed and restarted on its
//! own folder (database, keys) while the fake ARI and the peer, in the test
//! process, live on.
//!
//! The peer is started from the virtual environment `scripts/test` fills
//! (`ensure_iso8583_peer` in scripts/lib.sh; `VOICEPAY_VENV`, default
//! /var/cache/voicepay/venv). Without it [`Peer::start`] returns `None` and
//! says the test skips, except under `CI=true`, where that is a failure.

use crate::fake_ari::{channel, dtmf, event, key_clock, FakeAri, KEY_SPACING_MS};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The published lab-only zone PIN key the peer and the daemon share
/// (never use it anywhere real).
pub const LAB_ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";
/// The merchant's card acceptor id (F42) in the scenarios.
pub const ACCEPTOR_ID: &str = "VOICEPAYSHOP001";
/// Its key id (`bank.iso8583.zone_pin_key_id`).
pub const LAB_ZPK_ID: &str = "lab-zpk";
/// F32 the daemon sends.
pub const ACQUIRER_ID: &str = "12345678";
/// F41 the daemon sends (8 characters).
pub const TERMINAL_ID: &str = "VPTERM01";

/// The default test cards (src/bank/test_cards.toml, which the peer reads
/// too) and their published secrets.
pub const DEBIT: &str = "6222000000000017";
pub const DEBIT_PIN: &str = "805137";
pub const CREDIT: &str = "6250000000000012";
/// A credit card's expiry as the cardholder keys it (MMYY) and as F14
/// carries it (YYMM).
pub const CREDIT_EXPIRY_MMYY: &str = "1230";
pub const CREDIT_EXPIRY_YYMM: &str = "3012";
pub const CREDIT_CVN2: &str = "123";
/// The holder of both cards.
pub const HOLDER: &str = "11010519491231002X";
/// A PIN that is not the debit card's.
pub const WRONG_PIN: &str = "111111";

/// The venv's python when pyiso8583 and psec import there; `None` (the
/// caller skips) or a panic under `CI=true` otherwise.
pub fn peer_python() -> Option<PathBuf> {
    let venv = std::env::var("VOICEPAY_VENV").unwrap_or_else(|_| "/var/cache/voicepay/venv".into());
    let python = PathBuf::from(venv).join("bin/python");
    let usable = Command::new(&python)
        .args(["-W", "ignore", "-c", "import iso8583, psec"])
        .output()
        .is_ok_and(|o| o.status.success());
    if usable {
        return Some(python);
    }
    let why = format!(
        "{} cannot import pyiso8583 and psec (scripts/test installs them: ensure_iso8583_peer)",
        python.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {why}"
    );
    eprintln!("skipping: {why}");
    None
}

/// The Python issuer peer, on free ports of 127.0.0.1; killed when dropped.
pub struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    /// The acquirer link's port (`bank.iso8583.address`).
    pub port: u16,
    /// The control channel's port (one command a line, one JSON line back).
    pub control_port: u16,
}

impl Peer {
    /// Starts the peer with voicepay's default card table, logging at DEBUG
    /// into its own folder; `None` without the venv (see [`peer_python`]).
    pub fn start() -> Option<Peer> {
        let python = peer_python()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../iso8583_peer/peer.py");
        let log = std::fs::File::create(dir.path().join("peer.log")).expect("peer log");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--port", "0", "--control-port", "0", "--zpk", LAB_ZPK])
            .arg("--ledger")
            .arg(dir.path().join("ledger.jsonl"))
            .args(["--log-level", "DEBUG", "--exit-with-stdin"])
            // held open by the child handle: if the test process dies, the
            // pipe closes and the peer exits with it
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python runs peer.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("the peer's first line");
        let ready: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.path().join("peer.log")).unwrap_or_default();
            panic!("the peer did not start ({e}): {first:?}\n{log}")
        });
        assert_eq!(ready["ready"], true, "the peer's first line: {ready}");
        let port = |k: &str| ready[k].as_u64().expect("port") as u16;
        Some(Peer {
            port: port("port"),
            control_port: port("control_port"),
            child,
            dir,
        })
    }

    /// Stops the peer and keeps its folder (ledger, log) for a look after a
    /// failed run; its path.
    pub fn keep_files(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        dir.keep()
    }

    /// `127.0.0.1:PORT`, the daemon's `bank.iso8583.address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The peer's log (stderr): masked PAN, MTI, STAN, F39 only.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("peer.log")
    }

    /// The peer's ledger file (JSONL, one money movement a line).
    pub fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.jsonl")
    }

    /// One control command; its JSON answer, whatever `ok` says.
    pub async fn try_control(&self, cmd: &str) -> Value {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.control_port))
            .await
            .expect("the peer's control port");
        let mut io = tokio::io::BufReader::new(tcp);
        io.get_mut()
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("control write");
        let mut line = String::new();
        io.read_line(&mut line).await.expect("control read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{cmd}: {e}: {line:?}"))
    }

    /// One control command that must succeed (`hold-next-0210`,
    /// `release-held`, `send-unsolicited`, `send-duplicate-0210`,
    /// `drop-link`, `fail-next F39`, `drop-next-0430 N`, `delay-0210 MS`,
    /// `stats`, `ledger`: peer.py's docstring).
    pub async fn control(&self, cmd: &str) -> Value {
        let v = self.try_control(cmd).await;
        assert_eq!(v["ok"], true, "peer command {cmd}: {v}");
        v
    }

    pub async fn stats(&self) -> Value {
        self.control("stats").await
    }

    /// The ledger: `{"kind": "debit"|"credit"|"reversal", "pan": masked,
    /// "amount": fen, "key": "F7/F11/F32", "original": key|null, …}`.
    pub async fn ledger(&self) -> Vec<Value> {
        self.control("ledger").await["ledger"]
            .as_array()
            .expect("ledger")
            .clone()
    }

    /// Waits until the peer's `stats` satisfy `ok` (`what` names the
    /// condition in the failure); returns them.
    pub async fn stats_until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        crate::wait_for(Duration::from_secs(60), async || {
            let s = self.stats().await;
            if ok(&s) {
                Ok(s)
            } else {
                Err(format!("gave up waiting for {what}: {s}"))
            }
        })
        .await
    }

    /// A card's balance in the peer's books, in fen; `masked` as the peer
    /// keys it (`622200******0017`).
    pub async fn balance(&self, masked: &str) -> i64 {
        let s = self.stats().await;
        s["balances"][masked]
            .as_i64()
            .unwrap_or_else(|| panic!("no balance for {masked}: {s}"))
    }

    /// Waits until the peer has received `n` requests of `mti` (e.g.
    /// `"0200"`, `"0420"`); returns its stats then.
    pub async fn received(&self, mti: &str, n: u64) -> Value {
        crate::wait_for(Duration::from_secs(60), async || {
            let s = self.stats().await;
            if s["received"][mti].as_u64().unwrap_or(0) >= n {
                Ok(s)
            } else {
                Err(format!("the peer never received {n} × {mti}: {s}"))
            }
        })
        .await
    }

    /// Asserts the peer saw no frame it could not decode or that broke the
    /// field layout.
    pub async fn assert_no_protocol_error(&self) {
        let s = self.stats().await;
        assert_eq!(
            s["protocol_errors"], 0,
            "the peer found protocol errors: {}",
            s["protocol_error_reasons"]
        );
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `voicepay bank serve --listen 127.0.0.1:0`: voicepay's own ISO 8583
/// issuer host around the stub issuer (the same test cards), with its own
/// state file and the lab zone PIN key; SIGKILLed when dropped.
pub struct BankHost {
    child: Child,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `127.0.0.1:PORT` from its ready line.
    pub address: String,
}

impl BankHost {
    pub fn start(bin: impl Into<PathBuf>) -> BankHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = bin.into();
        let log = std::fs::File::create(dir.path().join("host.log")).expect("host log");
        let mut child = Self::command(&bin, dir.path())
            .args(["bank", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("voicepay bank serve");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut ready)
            .expect("the host's ready line");
        let Some(address) = ready
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
        else {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default();
            panic!("voicepay bank serve gave no ready line: {ready:?}\n{log}");
        };
        BankHost {
            child,
            dir,
            bin,
            address,
        }
    }

    fn command(bin: &Path, dir: &Path) -> Command {
        let mut c = Command::new(bin);
        c.current_dir(dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", LAB_ZPK)
            .env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY_ID", LAB_ZPK_ID)
            .env("VOICEPAY__BANK__STUB_STATE", dir.join("stub-bank.jsonl"))
            .env("VOICEPAY__LOG__LEVEL", "trace")
            .env(
                "VOICEPAY__DATABASE__URL",
                format!("sqlite://{}", dir.join("unused.db").display()),
            );
        c
    }

    /// The host's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("host.log")
    }

    /// The host's durable state (the stub issuer's journal).
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("stub-bank.jsonl")
    }

    /// Stops the host (SIGTERM, then waits) and reads every card's
    /// balance from its state with `voicepay bank cards --json`: masked
    /// card → available fen.
    pub fn stop_and_balances(&mut self) -> HashMap<String, i64> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let out = Self::command(&self.bin, self.dir.path())
            .args(["bank", "cards", "--json"])
            .output()
            .expect("voicepay bank cards");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["cards"]
            .as_array()
            .expect("cards")
            .iter()
            .filter_map(|c| Some((c["card"].as_str()?.to_owned(), c["available_fen"].as_i64()?)))
            .collect()
    }
}

impl Drop for BankHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ledger entries of one kind (`debit`, `credit`, `reversal`).
pub fn entries<'a>(ledger: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ledger.iter().filter(|e| e["kind"] == kind).collect()
}

/// Money taken from cards: debits - credits - reversals (a reversal's
/// amount is what it gave back).
pub fn net_fen(ledger: &[Value]) -> i64 {
    ledger
        .iter()
        .map(|e| {
            let a = e["amount"].as_i64().unwrap_or(0);
            if e["kind"] == "debit" {
                a
            } else {
                -a
            }
        })
        .sum()
}

/// One daemon's folder and settings, given as `VOICEPAY__…` variables as
/// an operator's service unit would: its own SQLite database and key file,
/// the fake ARI, and `bank.kind = "iso8583"` pointed at the peer.
pub struct Node {
    dir: tempfile::TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Node {
    /// `bin` is the `voicepay` binary (`env!("CARGO_BIN_EXE_voicepay")` in
    /// the test); `bank` the acquirer host's `host:port` ([`Peer::address`]
    /// or [`BankHost::address`]).
    pub fn new(bin: impl Into<PathBuf>, fake: &FakeAri, bank: &str) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let ari = fake.settings();
        let path = |n: &str| dir.path().join(n).display().to_string();
        let env = [
            ("HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("DATABASE__URL", format!("sqlite://{}", path("voicepay.db"))),
            ("CRYPTO__KEY_FILE", path("voicepay.keys")),
            ("ARI__URL", ari.url),
            ("ARI__USERNAME", ari.username),
            ("ARI__PASSWORD", ari.password),
            ("ARI__APP", ari.app),
            (
                "TELEPHONY__CALLBACK_ENDPOINT",
                "Local/{phone}@voicepay-lab".to_owned(),
            ),
            ("TELEPHONY__MAX_ATTEMPTS", "1".to_owned()),
            // every log line, so the secret scan sees everything
            ("LOG__LEVEL", "trace".to_owned()),
            ("LIMITS__ORDERS_PER_MERCHANT_PER_MINUTE", "0".to_owned()),
            ("LIMITS__ORDERS_PER_PHONE_PER_DAY", "0".to_owned()),
            ("BANK__KIND", "iso8583".to_owned()),
            ("BANK__AUTH_TIMEOUT_SECS", "10".to_owned()),
            ("BANK__ISO8583__ADDRESS", bank.to_owned()),
            ("BANK__ISO8583__ZONE_PIN_KEY", LAB_ZPK.to_owned()),
            ("BANK__ISO8583__ZONE_PIN_KEY_ID", LAB_ZPK_ID.to_owned()),
            ("BANK__ISO8583__ACQUIRER_ID", ACQUIRER_ID.to_owned()),
            ("BANK__ISO8583__TERMINAL_ID", TERMINAL_ID.to_owned()),
            ("BANK__ISO8583__RESPONSE_TIMEOUT_SECS", "3".to_owned()),
            ("BANK__ISO8583__ECHO_INTERVAL_SECS", "60".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("VOICEPAY__{k}"), v))
        .collect();
        Node {
            dir,
            bin: bin.into(),
            env,
        }
    }

    /// Sets (or replaces) `VOICEPAY__{key}`, e.g. `("LOG__LEVEL", "info")`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        let key = format!("VOICEPAY__{key}");
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// The value of `VOICEPAY__{key}` the node runs with.
    pub fn env(&self, key: &str) -> Option<String> {
        let key = format!("VOICEPAY__{key}");
        self.env
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// A file in the node's folder (`voicepay.db`, `daemon.log`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The database files (SQLite and its WAL/SHM when present).
    pub fn db_files(&self) -> Vec<PathBuf> {
        ["voicepay.db", "voicepay.db-wal", "voicepay.db-shm"]
            .iter()
            .map(|n| self.path(n))
            .filter(|p| p.exists())
            .collect()
    }

    /// `voicepay` with this node's settings only (the test's own
    /// `VOICEPAY__…` and `RUST_LOG` removed), run in its folder.
    pub fn voicepay(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `voicepay merchant add --json`: the new merchant's API key. With
    /// `acceptor_id`, the card acceptor id the acquirer assigned it (F42,
    /// `--acceptor-id`), which a purchase over the link must carry.
    pub fn merchant(&self, acceptor_id: Option<&str>) -> String {
        let mut cmd = self.voicepay();
        cmd.args(["merchant", "add", "--name", "ISO shop", "--json"]);
        if let Some(id) = acceptor_id {
            cmd.args(["--acceptor-id", id]);
        }
        let out = cmd.output().expect("voicepay merchant add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: Value = serde_json::from_slice(&out.stdout).expect("json");
        m["api_key"].as_str().expect("api_key").to_owned()
    }

    /// Starts `voicepay serve` and waits until `/readyz` is 200 (ARI
    /// connected, the link signed on). Its log goes to `daemon.log` in the
    /// node's folder (every run of the node appended) and is kept in memory.
    pub async fn serve(&self) -> Daemon {
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
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.log"))
            .expect("daemon.log");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listen=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let _ = writeln!(file, "{line}");
                let mut log = keep.lock().unwrap_or_else(|e| e.into_inner());
                log.extend_from_slice(line.as_bytes());
                log.push(b'\n');
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("join");
        let mut daemon = Daemon {
            child,
            base: String::new(),
            log,
            http: reqwest::Client::new(),
        };
        match addr {
            Ok(a) => daemon.base = format!("http://{a}"),
            Err(_) => {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                panic!(
                    "voicepay serve (bank.kind = iso8583) did not start:\n{}",
                    daemon.log_text()
                );
            }
        }
        daemon.ready().await;
        daemon
    }
}

/// A running `voicepay serve`; SIGKILLed when dropped.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Vec<u8>>>,
    http: reqwest::Client,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything this run logged so far.
    pub fn log(&self) -> Vec<u8> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log()).into_owned()
    }

    /// Waits until `/readyz` answers 200 (the bank link signed on, ARI
    /// connected); fails with its last body and the log otherwise.
    pub async fn ready(&self) {
        let url = format!("{}/readyz", self.base);
        let last =
            crate::poll_until(
                Duration::from_secs(60),
                crate::wait::EVERY,
                async || match self.http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                },
            )
            .await;
        if let Err(why) = last {
            panic!("the daemon never became ready: {why}\n{}", self.log_text());
        }
    }

    /// `GET /readyz`'s body.
    pub async fn readyz(&self) -> Value {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json")
    }

    /// `POST /v1/orders` with `Idempotency-Key` = the merchant order id;
    /// the status and the body.
    pub async fn try_order(&self, key: &str, body: &Value) -> Result<(u16, Value), String> {
        let idem = body["merchant_order_id"].as_str().unwrap_or("x").to_owned();
        let r = self
            .http
            .post(format!("{}/v1/orders", self.base))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v = r.json().await.map_err(|e| e.to_string())?;
        Ok((status, v))
    }

    /// Creates an order (201 asserted); its id.
    pub async fn order(&self, key: &str, body: &Value) -> String {
        let (status, v) = self.try_order(key, body).await.expect("POST /v1/orders");
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// `GET /v1/orders/{id}`.
    pub async fn view(&self, key: &str, id: &str) -> Value {
        self.try_view(key, id).await.expect("GET /v1/orders/{id}")
    }

    pub async fn try_view(&self, key: &str, id: &str) -> Result<Value, String> {
        self.http
            .get(format!("{}/v1/orders/{id}", self.base))
            .bearer_auth(key)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits (a bound against hanging, not a speed assertion) until `done`
    /// holds for the order's view; returns it.
    pub async fn view_until(&self, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        crate::wait_for(Duration::from_secs(90), async || {
            let v = self.view(key, id).await;
            if done(&v) {
                Ok(v)
            } else {
                Err(format!("order {id} never got there; last view {v}"))
            }
        })
        .await
    }

    /// Waits until the order is final (succeeded, failed, cancelled,
    /// expired) and its call attempts are closed; returns its view.
    pub async fn settled(&self, key: &str, id: &str) -> Value {
        self.view_until(key, id, |v| {
            is_final(v)
                && v["attempts"]
                    .as_array()
                    .is_none_or(|a| a.iter().all(|a| !a["ended_at"].is_null()))
        })
        .await
    }

    /// `POST /v1/orders/{id}/refunds` `{amount}`: status and body.
    pub async fn refund(&self, key: &str, id: &str, amount: i64) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/orders/{id}/refunds", self.base))
            .bearer_auth(key)
            .json(&json!({"amount": amount}))
            .send()
            .await
            .expect("POST refunds");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an order's view is final.
pub fn is_final(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "expired")
    )
}

/// A debit callback order for `phone` (11 digits, `1…`) on the debit card.
pub fn debit_order(reference: &str, phone: &str, amount: i64) -> Value {
    json!({
        "merchant_order_id": reference, "amount": amount, "currency": "CNY",
        "phone": format!("+86{phone}"), "card_number": DEBIT,
        "id_number": HOLDER, "mode": "callback", "language": "zh",
    })
}

/// The same on the credit card (expiry + CVN2 keyed).
pub fn credit_order(reference: &str, phone: &str, amount: i64) -> Value {
    let mut v = debit_order(reference, phone, amount);
    v["card_number"] = json!(CREDIT);
    v
}

/// A fresh phone number, `139` + 8 random digits.
pub fn phone() -> String {
    format!("139{:08}", rand_u32() % 100_000_000)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// What one simulated cardholder does and heard.
#[derive(Default)]
struct Cardholder {
    /// What to key at each secret prompt (PIN, or expiry then CVN2), in
    /// order; when none is left at a prompt, they hang up.
    secrets: VecDeque<String>,
}

#[derive(Default)]
struct Shared {
    by_phone: HashMap<String, Cardholder>,
    /// channel id → phone.
    channels: HashMap<String, String>,
    /// channel id → every sound it played (`voicepay/enter-pin`, …).
    heard: HashMap<String, Vec<String>>,
}

/// Cardholders on the fake ARI: each callback the daemon places to a
/// scripted phone is answered, its confirmation keyed (`1`), each secret
/// prompt (`enter-pin`, `enter-expiry`, `enter-cvn2`) answered with the
/// next scripted secret as DTMF, every prompt played to its end, and the
/// hang-up answered as Asterisk does (StasisEnd, ChannelDestroyed). It
/// takes the fake's requests ([`FakeAri::tap`]), so `FakeAri::calls` stays
/// empty; [`Callers::heard`] says what a channel played.
pub struct Callers {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Callers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Callers {
    pub fn start(fake: Arc<FakeAri>) -> Callers {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut requests = fake.tap();
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            while let Some(r) = requests.recv().await {
                on_request(&fake, &sh, &r);
            }
        });
        Callers { shared, task }
    }

    /// The cardholder of `phone` (as in the order, without `+86`) keys
    /// these secrets, one per secret prompt.
    pub fn script(&self, phone: &str, secrets: &[&str]) {
        let mut sh = self.shared.lock().unwrap();
        sh.by_phone.insert(
            phone.to_owned(),
            Cardholder {
                secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
    }

    /// Every sound played on the order's call attempt `n` (channel
    /// `vp-{id}-{n}`), in order, as `voicepay/<name>`.
    pub fn heard(&self, order_id: &str, attempt: u32) -> Vec<String> {
        let ch = format!("vp-{order_id}-{attempt}");
        let sh = self.shared.lock().unwrap();
        sh.heard.get(&ch).cloned().unwrap_or_default()
    }
}

fn push(fake: &FakeAri, v: Value) {
    // false only while no daemon is connected (one was just killed): the
    // event is lost, as a real one would be.
    let _ = fake.try_push(v);
}

fn hang_up(fake: &FakeAri, ch: &str) {
    let c = channel(ch, "Up");
    push(fake, event("StasisEnd", json!({"channel": c})));
    push(
        fake,
        event(
            "ChannelDestroyed",
            json!({"cause": 16, "cause_txt": "Normal Clearing", "channel": c}),
        ),
    );
}

fn press(fake: &FakeAri, ch: &str, keys: &str) {
    let c = channel(ch, "Up");
    for key in keys.chars() {
        let ended = key_clock(KEY_SPACING_MS) + KEY_SPACING_MS;
        push(fake, dtmf(&c, key, ended, 120));
    }
}

/// One REST request of the daemon, answered as the cardholder would.
fn on_request(fake: &FakeAri, shared: &Mutex<Shared>, r: &crate::fake_ari::Recorded) {
    let segs: Vec<String> = r
        .path
        .trim_start_matches("/ari/")
        .split('/')
        .map(|s| s.replace("%3A", ":"))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (r.method.as_str(), segs.as_slice()) {
        ("POST", ["channels", id]) => {
            let endpoint = r.param("endpoint").unwrap_or_default();
            let phone = endpoint
                .trim_start_matches("Local/")
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned();
            let scripted = {
                let mut sh = shared.lock().unwrap();
                let known = sh.by_phone.contains_key(&phone);
                sh.channels.insert((*id).to_owned(), phone);
                known
            };
            if scripted {
                let args: Vec<&str> = r.param("appArgs").unwrap_or_default().split(',').collect();
                push(
                    fake,
                    event(
                        "StasisStart",
                        json!({"args": args, "channel": channel(id, "Up")}),
                    ),
                );
            }
        }
        ("POST", ["channels", id, "play", pb]) => {
            let media: Vec<String> = r
                .params("media")
                .iter()
                .flat_map(|m| m.split(','))
                .map(|m| m.trim_start_matches("sound:").to_owned())
                .collect();
            let next = {
                let mut sh = shared.lock().unwrap();
                sh.heard
                    .entry((*id).to_owned())
                    .or_default()
                    .extend(media.iter().cloned());
                let asks = |n: &str| media.iter().any(|m| m == &format!("voicepay/{n}"));
                if asks("confirm-press") {
                    Some(Some("1".to_owned()))
                } else if asks("enter-pin") || asks("enter-expiry") || asks("enter-cvn2") {
                    let phone = sh.channels.get(*id).cloned().unwrap_or_default();
                    Some(
                        sh.by_phone
                            .get_mut(&phone)
                            .and_then(|c| c.secrets.pop_front()),
                    )
                } else {
                    None
                }
            };
            push(
                fake,
                event(
                    "PlaybackFinished",
                    json!({"playback": {"id": pb, "media_uri": "sound:voicepay/x",
                           "target_uri": format!("channel:{id}"), "state": "done"}}),
                ),
            );
            match next {
                Some(Some(keys)) => press(fake, id, &keys),
                // asked for a secret they do not have: they hang up
                Some(None) => hang_up(fake, id),
                None => {}
            }
        }
        ("DELETE", ["channels", id]) => hang_up(fake, id),
        _ => {}
    }
}

/// The node's pending reversals (migration 0013's `pending_reversals`):
/// (all, not yet acknowledged by a 0430).
pub async fn reversals(node: &Node) -> (i64, i64) {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", node.path("voicepay.db").display());
    let pool = sqlx::AnyPool::connect(&url)
        .await
        .expect("the daemon's database");
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN acknowledged_at IS NULL THEN 1 ELSE 0 END), 0) \
         FROM pending_reversals",
    )
    .fetch_one(&pool)
    .await
    .expect("pending reversals");
    pool.close().await;
    counts
}

/// Every audit event of an order in the node's database: (kind, from
/// status, to status, detail), oldest first.
pub async fn order_events(node: &Node, id: &str) -> Vec<(String, String, String, String)> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", node.path("voicepay.db").display());
    let pool = sqlx::AnyPool::connect(&url)
        .await
        .expect("the daemon's database");
    let rows = sqlx::query_as(
        "SELECT kind, COALESCE(from_status, ''), COALESCE(to_status, ''), COALESCE(detail, '') \
         FROM order_events WHERE order_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("order events");
    pool.close().await;
    rows
}

/// One order of a run, as the merchant API showed it at the end.
#[derive(Debug, Clone)]
pub struct Paid {
    pub id: String,
    /// Fen; unique within the run, which is how a ledger line is tied to
    /// its order.
    pub amount: i64,
    /// The order's status (`succeeded`, `failed`, …, or `not final`).
    pub status: String,
}

/// What the peer's ledger says about a run of [`Paid`] orders.
#[derive(Debug, Default)]
pub struct LedgerCheck {
    /// Orders debited more than once.
    pub double_debits: usize,
    /// Orders whose card did not lose exactly their amount (succeeded) or
    /// nothing (any other status).
    pub money_mismatches: usize,
    /// Of those: orders that did not succeed and whose debit was not
    /// (fully) reversed.
    pub unreversed: usize,
    /// Debits of an amount no order has.
    pub stray: usize,
    /// Debits reversed (0420/0421 matched by F90).
    pub reversed: usize,
    /// One line per problem, for the report.
    pub problems: Vec<String>,
}

impl LedgerCheck {
    pub fn clean(&self) -> bool {
        self.double_debits == 0
            && self.money_mismatches == 0
            && self.unreversed == 0
            && self.stray == 0
    }
}

/// Checks the exactly-once properties of a run against the peer's ledger:
/// at most one debit per order; a succeeded order's card charged its amount
/// once, any other order's card charged nothing in the end (its debit, if
/// any, reversed); no debit of an unknown amount.
pub fn check_ledger(ledger: &[Value], orders: &[Paid]) -> LedgerCheck {
    let mut c = LedgerCheck::default();
    let reversal_of: HashMap<&str, i64> = entries(ledger, "reversal")
        .into_iter()
        .filter_map(|r| Some((r["original"].as_str()?, r["amount"].as_i64()?)))
        .collect();
    let mut debits: HashMap<i64, Vec<&Value>> = HashMap::new();
    for d in entries(ledger, "debit") {
        debits
            .entry(d["amount"].as_i64().unwrap_or(-1))
            .or_default()
            .push(d);
    }
    c.stray = debits
        .keys()
        .filter(|a| !orders.iter().any(|o| o.amount == **a))
        .count();
    for o in orders {
        let mine = debits.get(&o.amount).cloned().unwrap_or_default();
        if mine.len() > 1 {
            c.double_debits += 1;
            c.problems
                .push(format!("order {} was debited {} times", o.id, mine.len()));
        }
        let mut net = 0;
        for d in &mine {
            let back = d["key"].as_str().and_then(|k| reversal_of.get(k));
            if back.is_some() {
                c.reversed += 1;
            }
            net += d["amount"].as_i64().unwrap_or(0) - back.copied().unwrap_or(0);
        }
        let succeeded = o.status == "succeeded";
        let want = if succeeded { o.amount } else { 0 };
        if net != want {
            c.money_mismatches += 1;
            c.problems.push(format!(
                "order {} ({}): the card lost {net} fen, not {want}",
                o.id, o.status
            ));
            if !succeeded && net > 0 {
                c.unreversed += 1;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debit(amount: i64, key: &str) -> Value {
        json!({"kind": "debit", "pan": "622200******0017", "amount": amount, "key": key})
    }

    fn reversal(amount: i64, original: &str) -> Value {
        json!({"kind": "reversal", "amount": amount, "key": format!("r{original}"),
               "original": original})
    }

    fn paid(amount: i64, status: &str) -> Paid {
        Paid {
            id: format!("ord_{amount}"),
            amount,
            status: status.into(),
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let ledger = [debit(1000, "a"), debit(1001, "b"), reversal(1001, "b")];
        let c = check_ledger(
            &ledger,
            &[
                paid(1000, "succeeded"),
                paid(1001, "failed"),
                paid(1002, "failed"),
            ],
        );
        assert!(c.clean(), "{c:?}");
        assert_eq!(c.reversed, 1);
    }

    #[test]
    fn a_double_debit_is_found_even_when_one_is_reversed() {
        let ledger = [debit(1000, "a"), debit(1000, "b"), reversal(1000, "b")];
        let c = check_ledger(&ledger, &[paid(1000, "succeeded")]);
        assert_eq!(c.double_debits, 1, "{c:?}");
        assert!(!c.clean());
    }

    #[test]
    fn an_unreversed_debit_of_a_failed_order_is_found() {
        let c = check_ledger(&[debit(1000, "a")], &[paid(1000, "failed")]);
        assert_eq!((c.unreversed, c.money_mismatches), (1, 1), "{c:?}");
    }

    #[test]
    fn a_succeeded_order_whose_debit_was_reversed_is_found() {
        let ledger = [debit(1000, "a"), reversal(1000, "a")];
        let c = check_ledger(&ledger, &[paid(1000, "succeeded")]);
        assert_eq!((c.money_mismatches, c.unreversed), (1, 0), "{c:?}");
    }

    #[test]
    fn a_debit_no_order_made_is_found() {
        let c = check_ledger(&[debit(7, "x")], &[paid(1000, "failed")]);
        assert_eq!(c.stray, 1, "{c:?}");
    }
}
