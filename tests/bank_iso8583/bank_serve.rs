//! `voicepay bank serve` as an operator runs it: the binary as a child
//! process with its settings in `VOICEPAY__…` variables and its own stub
//! state file, driven over TCP — by voicepay's codec (a purchase, SIGTERM,
//! a restart on the same state file answering the duplicate from it), and
//! by the Python self-test (`tests/iso8583_peer/selftest.py --against`),
//! frames built by pyiso8583 and PIN blocks by psec.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use futures_util::{SinkExt, StreamExt};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use voicepay::bank::iso8583::{
    CardholderAuth, EntryMode, FrameCodec, Message, Mti, NetworkCode, ProcessingCode,
};
use voicepay::crypto::{PinBlock0, Zpk};
use voicepay::domain::{Amount, CardNumber, IdNumber, Stan};

/// The lab zone PIN key of tests/iso8583_peer/selftest.py (published).
const LAB_ZPK: &str = "0123456789ABCDEFFEDCBA9876543210";
const DEBIT: &str = "6222000000000017";
const HOLDER: &str = "11010519491231002X";
const PIN: &str = "805137";
const START_FEN: i64 = 10_000_000;

/// A folder with the host's state file and log.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn voicepay(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_voicepay"));
        c.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", LAB_ZPK)
            .env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY_ID", "lab-zpk")
            .env("VOICEPAY__BANK__STUB_STATE", self.path("stub-bank.jsonl"))
            .env(
                "VOICEPAY__DATABASE__URL",
                format!("sqlite://{}", self.path("unused.db").display()),
            );
        c
    }

    /// Starts `voicepay bank serve --listen 127.0.0.1:0`; its log goes to
    /// `log_name`.
    fn serve(&self, log_name: &str) -> Host {
        let log = std::fs::File::create(self.path(log_name)).unwrap();
        let mut child = self
            .voicepay()
            .args(["bank", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("voicepay starts");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        let addr = ready
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(self.path(log_name)).unwrap_or_default();
                panic!("no ready line: {ready:?}\n{log}")
            })
            .to_owned();
        Host { child, addr, ready }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// What `voicepay bank cards --json` says the card has now.
    fn available_fen(&self, masked: &str) -> i64 {
        let out = self
            .voicepay()
            .args(["bank", "cards", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["card"] == masked)
            .and_then(|c| c["available_fen"].as_i64())
            .unwrap()
    }
}

struct Host {
    child: Child,
    addr: String,
    ready: String,
}

impl Host {
    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn purchase(stan: u32, at: OffsetDateTime) -> Message {
    let zpk = Zpk::from_hex("lab-zpk", LAB_ZPK).unwrap();
    let mut m = Message::new(Mti::FINANCIAL_REQUEST);
    m.set_pan(&CardNumber::parse(DEBIT).unwrap()).unwrap();
    m.set_processing_code(ProcessingCode::Purchase).unwrap();
    m.set_amount(Amount::parse(4321, i64::MAX).unwrap())
        .unwrap();
    m.set_transmission_time(at).unwrap();
    m.set_stan(Stan::new(stan).unwrap()).unwrap();
    m.set_local_time(at).unwrap();
    m.set_entry_mode(EntryMode::KeyedWithPin).unwrap();
    m.set_telephone_order().unwrap();
    m.set_acquirer_id("12345678").unwrap();
    m.set_terminal_id("VPTERM01").unwrap();
    m.set_currency_cny().unwrap();
    let block = PinBlock0::encipher(PIN.as_bytes(), DEBIT, &zpk).unwrap();
    m.set_pin_block(block.as_bytes()).unwrap();
    m.set_cardholder_auth(&CardholderAuth {
        id_number: &IdNumber::parse(HOLDER).unwrap(),
        cvn2: None,
    })
    .unwrap();
    m
}

async fn exchange(addr: &str, requests: &[&Message]) -> Vec<Message> {
    let mut conn = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        FrameCodec::default(),
    );
    let mut answers = Vec::new();
    for req in requests {
        conn.send(*req).await.unwrap();
        let answer = conn.next().await.expect("an answer").unwrap().unwrap();
        assert_eq!(answer.stan(), req.stan());
        answers.push(answer);
    }
    answers
}

fn assert_no_secret(log: &str, block: &[u8]) {
    for secret in [PIN, HOLDER, DEBIT, LAB_ZPK, &hex::encode_upper(block)] {
        assert!(!log.contains(secret), "the host's log holds a secret");
    }
}

#[tokio::test]
async fn a_restarted_host_answers_a_duplicate_from_its_state_file_and_debits_once() {
    let setup = Setup::new();
    let host = setup.serve("first.log");
    let kcv = Zpk::from_hex("lab-zpk", LAB_ZPK).unwrap().kcv().to_owned();
    assert!(
        host.ready.contains("lab-zpk") && host.ready.contains(&kcv),
        "the ready line names the key: {:?}",
        host.ready
    );
    let mut sign_on = Message::new(Mti::NETWORK_REQUEST);
    sign_on.set_stan(Stan::new(1).unwrap()).unwrap();
    sign_on.set_network_code(NetworkCode::SignOn).unwrap();
    let request = purchase(2, OffsetDateTime::now_utc());
    let answers = exchange(&host.addr, &[&sign_on, &request]).await;
    assert_eq!(answers[0].text(39), Some("00"));
    assert_eq!(answers[1].text(39), Some("00"));
    assert!(answers[1].approval_code().is_some());
    let status = host.terminate();
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
    assert_eq!(setup.available_fen("622200******0017"), START_FEN - 4321);

    // Started again on the same state: the repeat gets the first answer.
    let host = setup.serve("second.log");
    let again = exchange(&host.addr, &[&request]).await;
    assert_eq!(again[0], answers[1]);
    assert!(host.terminate().success());
    assert_eq!(setup.available_fen("622200******0017"), START_FEN - 4321);

    // The sign-on has no card: its line leaves `pan=` out (not `pan=` empty).
    let first = setup.log("first.log");
    let answered = |mti: &str| {
        first
            .lines()
            .find(|l| l.contains("ISO 8583 host: answered") && l.contains(&format!("mti={mti}")))
            .unwrap_or_else(|| panic!("no answered {mti} line:\n{first}"))
            .to_owned()
    };
    assert!(!answered("0800").contains("pan="), "{first}");
    assert!(answered("0200").contains("pan=622200******0017"), "{first}");
    let block = request.pin_block().unwrap();
    for log in ["first.log", "second.log"] {
        let text = setup.log(log);
        assert!(text.contains("622200******0017"), "{text}");
        assert_no_secret(&text, block);
    }
}

#[test]
fn a_remote_listen_or_a_missing_zone_pin_key_is_refused() {
    let setup = Setup::new();
    let out = setup
        .voicepay()
        .args(["bank", "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(out.stdout.is_empty(), "no ready line");

    let out = setup
        .voicepay()
        .env_remove("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY")
        .env_remove("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY_ID")
        .args(["bank", "serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bank.iso8583.zone_pin_key"), "{err}");
    assert!(
        !Path::new(&setup.path("stub-bank.jsonl")).exists(),
        "nothing opened"
    );
}

/// The Python self-test's scenarios (tests/iso8583_peer/selftest.py:
/// sign-on, echo, purchases, declines, duplicates, reversals, refunds)
/// against a fresh `voicepay bank serve`.
#[test]
fn the_python_selftest_passes_against_voicepay_bank_serve() {
    let Some(python) = super::python() else {
        return;
    };
    let setup = Setup::new();
    let host = setup.serve("host.log");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/iso8583_peer/selftest.py"
    );
    let out = Command::new(python)
        .args([script, "--against", &host.addr])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(host.terminate().success());
    assert!(
        out.status.success(),
        "the self-test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("selftest passed"), "{stdout}");
    let log = setup.log("host.log");
    for secret in [
        PIN,
        "246810",
        "111111",
        HOLDER,
        "310115198506154322",
        LAB_ZPK,
    ] {
        assert!(!log.contains(secret), "the host's log holds a secret");
    }
}
