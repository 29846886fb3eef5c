//! The `voicepay` binary as an operator uses it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn voicepay(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voicepay"));
    c.current_dir(dir);
    // The caller's environment must not leak lab settings into these tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `voicepay ARGS` in `dir` and asserts that it succeeded (its stderr
/// is the failure message).
fn succeeds(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = voicepay(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn merchant_add_prints_credentials_once_and_stores_only_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(dir.path(), &["merchant", "add", "--name", "Shop", "--json"]);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = m["api_key"].as_str().unwrap();
    assert!(m["merchant_id"].as_str().unwrap().starts_with("mch_"));
    assert!(key.starts_with("vpk_") && key.len() > 40);
    assert!(m["webhook_secret"].as_str().unwrap().starts_with("whsec_"));
    let mut db = std::fs::read(dir.path().join("voicepay.db")).unwrap();
    db.extend(std::fs::read(dir.path().join("voicepay.db-wal")).unwrap_or_default());
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(key), "the API key is stored in plain text");
    assert!(
        !db.contains(m["webhook_secret"].as_str().unwrap()),
        "the webhook secret is stored in plain text"
    );
    let keys = std::fs::metadata(dir.path().join("voicepay.keys")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(keys.permissions().mode() & 0o777, 0o600);

    let bad = voicepay(dir.path())
        .args(["merchant", "add", "--name", "X", "--notify-url", "ftp://x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--notify-url"));
}

#[test]
fn config_check_masks_secrets_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vp.toml");
    std::fs::write(
        &file,
        "[ari]\npassword = \"s3cret-pw\"\n[http]\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let out = succeeds(
        dir.path(),
        &["--config", file.to_str().unwrap(), "config", "check"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(!text.contains("s3cret-pw"));
    assert!(text.contains("password = \"****\""));

    // the environment overrides the file
    let out = voicepay(dir.path())
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:7777")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:7777"));

    for (var, value, key) in [
        ("VOICEPAY__HTTP__LISTEN", "not-an-address", "http.listen"),
        (
            "VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT",
            "PJSIP/carrier",
            "telephony.callback_endpoint",
        ),
        ("VOICEPAY__DATABASE__URL", "mysql://x", "database.url"),
        ("VOICEPAY__ORDERS__MAX_AMOUNT", "-1", "orders.max_amount"),
    ] {
        let out = voicepay(dir.path())
            .args(["config", "check"])
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "error for {var} does not name {key}: {err}"
        );
    }
    let out = voicepay(dir.path())
        .args(["config", "check"])
        .env("VOICEPAY__HTTP__LISTN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt key is refused");
}

#[test]
fn serve_runs_on_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = voicepay(dir.path())
        .arg("serve")
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr on a thread so a missing line fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut start = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("serve did not log its listen address within 30 s")
        });
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        start.push(line);
    };
    // The defaults have no ARI password: the operator is told at start.
    assert!(
        start.iter().any(|l| l.contains("WARN")
            && l.contains("ari.password")
            && l.contains("calls are off")),
        "no warning naming ari.password: {start:#?}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(async {
        let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        let status = r.status();
        (status, r.json::<serde_json::Value>().await.unwrap())
    });
    assert_eq!(status, 200);
    assert_eq!(body["ari"], "not_configured", "{body}");
    assert!(
        dir.path().join("voicepay.db").exists(),
        "the SQLite file is created on first start"
    );
    unsafe { libc_kill(child.id() as i32, 15) };
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let rest: Vec<String> = rx.iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("voicepay stopped")),
        "{rest:?}"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn the_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/voicepay.example.toml");
    let out = succeeds(dir.path(), &["--config", example, "config", "check"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("# configuration is valid"));
}

#[test]
fn webhooks_list_and_redeliver_on_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(dir.path(), &["webhooks", "list", "--failed"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no events");
    let out = voicepay(dir.path())
        .args(["webhooks", "redeliver", "evt_nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no webhook event evt_nope"));
}

#[test]
fn bank_cards_lists_the_test_cards_masked_with_their_balances() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(dir.path(), &["bank", "cards", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cards = v["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 10, "{v}");
    let first = &cards[0];
    assert_eq!(first["card"], "622200******0017");
    assert_eq!(first["bank"], "Test Bank 1");
    assert_eq!(first["available_fen"], 10_000_000);
    assert_eq!(first["wrong_pins_today"], 0);
    assert!(
        v["state"]
            .as_str()
            .unwrap()
            .ends_with("voicepay.stub-bank.jsonl"),
        "{v}"
    );
    assert!(!text.contains("6222000000000017"), "{text}");
    // only reads: neither a state file nor a key file is created by looking
    assert!(!dir.path().join("voicepay.stub-bank.jsonl").exists());
    assert!(!dir.path().join("voicepay.keys").exists());
}

#[test]
fn webhook_target_settings_load_from_the_environment_and_bad_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(dir.path(), &["config", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("allow_http = false"), "{text}");
    assert!(text.contains("allowed_private_targets = []"), "{text}");
    let out = voicepay(dir.path())
        .args(["config", "check"])
        .env("VOICEPAY__WEBHOOKS__ALLOW_HTTP", "true")
        .env(
            "VOICEPAY__WEBHOOKS__ALLOWED_PRIVATE_TARGETS",
            "127.0.0.1:9000,[::1]:9001",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("allow_http = true"), "{text}");
    // Nested settings print as the table a `--config` file uses.
    assert!(
        text.contains("[telephony.machine_detection]\nenabled = true\n"),
        "{text}"
    );
    assert!(
        text.contains(r#"allowed_private_targets = ["127.0.0.1:9000", "[::1]:9001"]"#),
        "{text}"
    );
    for bad in ["127.0.0.1", "127.0.0.1:0", "hooks:http", ":9000", "u@h:1"] {
        let out = voicepay(dir.path())
            .args(["config", "check"])
            .env("VOICEPAY__WEBHOOKS__ALLOWED_PRIVATE_TARGETS", bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("webhooks.allowed_private_targets"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn merchant_add_refuses_an_internal_notify_url() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://0x7f.1:8088/ari/asterisk/info",
        "https://localhost/hook",
        "http://hooks.shop.example/hook", // plain http, allow_http off
    ] {
        let out = voicepay(dir.path())
            .args(["merchant", "add", "--name", "Shop", "--notify-url", url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--notify-url"), "{url}: {err}");
    }
    assert!(
        !dir.path().join("voicepay.db").exists(),
        "a refused merchant was stored"
    );
    succeeds(
        dir.path(),
        &[
            "merchant",
            "add",
            "--name",
            "Shop",
            "--notify-url",
            "https://hooks.shop.example/h",
        ],
    );
}

/// Starts `voicepay serve` in `dir` under `umask 000` (so only the modes
/// voicepay sets itself count), waits for its listen address, and returns
/// the child (the caller stops and waits for it), the address, the log
/// lines so far and the rest to come.
#[allow(clippy::zombie_processes, clippy::type_complexity)]
fn serve_with_umask_000(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut c = voicepay(dir);
    c.args(["serve"]);
    let mut sh = Command::new("sh");
    sh.current_dir(dir)
        .arg("-c")
        .arg("umask 000 && exec \"$0\" serve")
        .arg(c.get_program());
    for (k, _) in std::env::vars() {
        if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" {
            sh.env_remove(k);
        }
    }
    sh.env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        sh.env(k, v);
    }
    let mut child = sh.stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("serve did not log its listen address: {lines:?}")
        };
        lines.push(line.clone());
        if let Some(rest) = line.split("listen=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return (child, addr, lines, rx);
        }
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn serve_prints_key_check_values_never_keys_and_creates_data_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Known keys, so the check values are known (openssl enc -aes-*-ecb
    // -nopad over a zero block) and the keys can be looked for in the log.
    let keys = dir.path().join("voicepay.keys");
    std::fs::write(
        &keys,
        r#"{"active_key":"k1","keys":{"k1":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
            "fingerprint_key":"ERERERERERERERERERERERERERERERERERERERERERE=",
            "zone_pin_key":"K34VFiiu0qar9xWICc9PPA=="}"#,
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut child, addr, mut lines, rx) =
        serve_with_umask_000(dir.path(), &[("RUST_LOG", "trace")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    for file in [
        "voicepay.db",
        "voicepay.db-wal",
        "voicepay.db-shm",
        "voicepay.stub-bank.jsonl",
    ] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    unsafe { libc_kill(child.id() as i32, 15) };
    assert!(child.wait().unwrap().success());
    lines.extend(rx.iter());
    let log = lines.join("\n");
    for (key, kcv) in [
        ("data:k1", "F29000"),
        ("fingerprint", "20EC0F"),
        ("zone_pin", "7DF76B"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("key check value") && l.contains(key) && l.contains(kcv)),
            "no KCV {kcv} for {key} in the start-up log:\n{log}"
        );
    }
    for secret in [
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "000102030405060708090a0b0c0d0e0f",
        "ERERERERERERERERERERERERERERERERERERERERERE",
        "11111111111111111111111111111111",
        "K34VFiiu0qar9xWICc9PPA",
        "2b7e151628aed2a6abf7158809cf4f3c",
    ] {
        assert!(
            !log.to_lowercase().contains(&secret.to_lowercase()),
            "key material {secret} in the log"
        );
    }
}

#[test]
fn serve_refuses_ignored_key_material_and_a_key_file_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let b64 = "ERERERERERERERERERERERERERERERERERERERERERE=";
    for (var, key) in [
        ("VOICEPAY__CRYPTO__ZONE_PIN_KEY", "crypto.zone_pin_key"),
        (
            "VOICEPAY__CRYPTO__FINGERPRINT_KEY",
            "crypto.fingerprint_key",
        ),
        ("VOICEPAY__CRYPTO__ACTIVE_KEY", "crypto.active_key"),
    ] {
        let out = voicepay(dir.path())
            .arg("serve")
            .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
            .env(
                var,
                if var.ends_with("ACTIVE_KEY") {
                    "k9"
                } else {
                    b64
                },
            )
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var} without crypto.keys accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains("crypto.keys"), "{err}");
        assert!(!err.contains(b64), "the key is echoed: {err}");
    }
    assert!(!dir.path().join("voicepay.db").exists(), "nothing created");

    // A key file the group may read is refused before anything starts.
    succeeds(dir.path(), &["merchant", "add", "--name", "Shop"]);
    let keys = dir.path().join("voicepay.keys");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = voicepay(dir.path())
        .arg("serve")
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 0640 key file accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("crypto.key_file") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!dir.path().join("voicepay.stub-bank.jsonl").exists());
}

/// `[bank.iso8583]`: given by the environment as an operator would (a
/// terminal id and acquirer id with leading zeros, an all-digit ZPK stay
/// text), shown by `config check` with the zone PIN key masked, each bad
/// value named by its key; and `serve` with `bank.kind = "iso8583"` starts
/// the link, logging the key's id and check value, never the key.
#[test]
fn bank_iso8583_settings_are_checked_masked_and_the_link_starts() {
    let dir = tempfile::tempdir().unwrap();
    // all digits, odd parity, halves different
    let zpk = "01013737454567677676545432321010";
    let link = [
        ("VOICEPAY__BANK__KIND", "iso8583"),
        ("VOICEPAY__BANK__ISO8583__ADDRESS", "127.0.0.1:8583"),
        ("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", zpk),
        ("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY_ID", "zpk-2026"),
        ("VOICEPAY__BANK__ISO8583__ACQUIRER_ID", "00012345"),
        ("VOICEPAY__BANK__ISO8583__TERMINAL_ID", "00000001"),
        ("VOICEPAY__BANK__ISO8583__MAX_IN_FLIGHT", "4"),
    ];
    let out = voicepay(dir.path())
        .args(["config", "check"])
        .envs(link)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shown in [
        "kind = \"iso8583\"",
        "[bank.iso8583]",
        "terminal_id = \"00000001\"",
        "acquirer_id = \"00012345\"",
        "zone_pin_key_id = \"zpk-2026\"",
        "max_in_flight = 4",
        "zone_pin_key = \"****\"",
    ] {
        assert!(text.contains(shown), "{shown} missing in {text}");
    }
    assert!(!text.contains(zpk), "the zone PIN key is shown");

    for (var, value) in [
        ("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", "0123456789ABCDEF"),
        (
            "VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY",
            "0123456789ABCDEFFEDCBA9876543211",
        ),
        ("VOICEPAY__BANK__ISO8583__TERMINAL_ID", "1"),
        ("VOICEPAY__BANK__ISO8583__ACQUIRER_ID", "12a"),
        ("VOICEPAY__BANK__ISO8583__ADDRESS", "nowhere"),
        ("VOICEPAY__BANK__ISO8583__RESPONSE_TIMEOUT_SECS", "0"),
        ("VOICEPAY__BANK__KIND", "tcp"),
    ] {
        let out = voicepay(dir.path())
            .args(["config", "check"])
            .envs(link)
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let key = var
            .trim_start_matches("VOICEPAY__")
            .replace("__", ".")
            .to_lowercase();
        let key = if key == "bank.kind" { "kind" } else { &key };
        assert!(err.contains(key), "{var}: {err}");
        assert!(
            !err.contains("0123456789ABCDEF"),
            "the key is echoed: {err}"
        );
    }

    // `serve` starts with the link (nobody listens at its address: it keeps
    // reconnecting) and logs the zone PIN key's id and check value, never
    // the key.
    let mut child = voicepay(dir.path())
        .arg("serve")
        .envs(link)
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
        .env("VOICEPAY__BANK__ISO8583__ADDRESS", "127.0.0.1:9")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("voicepay serving") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(log.contains("voicepay serving"), "{log}");
    // the KCV of 0101373745456767 7676545432321010, from psec 1.3.0
    // `generate_kcv(key, 3)`
    assert!(
        log.contains("bank.iso8583:zpk-2026") && log.contains("810813"),
        "{log}"
    );
    assert!(log.contains("ISO 8583 acquirer link started"), "{log}");
    assert!(!log.contains(zpk), "the zone PIN key is printed: {log}");
}

/// `voicepay merchant list --json`, one object per merchant.
fn merchants(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = succeeds(dir, &["merchant", "list", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `voicepay ARGS`, asserts that it failed, and returns its stderr.
fn fails(dir: &std::path::Path, args: &[&str]) -> String {
    let out = voicepay(dir).args(args).output().unwrap();
    assert!(!out.status.success(), "voicepay {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn merchant_acceptor_ids_are_set_shown_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a bad one on `add` stops before anything exists
    for bad in ["", "1234567890123456", "商户", "tab\there", " lead"] {
        let err = fails(
            d,
            &["merchant", "add", "--name", "Shop", "--acceptor-id", bad],
        );
        assert!(
            err.contains("--acceptor-id") && err.contains("1 to 15 printable ASCII"),
            "{err}"
        );
    }
    assert!(!d.join("voicepay.db").exists(), "nothing was created");

    let out = succeeds(
        d,
        &[
            "merchant",
            "add",
            "--name",
            "Shop",
            "--acceptor-id",
            "SHOP 000000001",
            "--json",
        ],
    );
    let shop: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shop_id = shop["merchant_id"].as_str().unwrap();
    let out = succeeds(d, &["merchant", "add", "--name", "Plain", "--json"]);
    let plain: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plain_id = plain["merchant_id"].as_str().unwrap();

    let listed = merchants(d);
    assert_eq!(listed.len(), 2);
    let by_id = |id: &str| {
        merchants(d)
            .into_iter()
            .find(|m| m["merchant_id"] == id)
            .unwrap()
    };
    assert_eq!(by_id(shop_id)["acceptor_id"], "SHOP 000000001");
    assert_eq!(by_id(plain_id)["acceptor_id"], serde_json::Value::Null);
    // the list shows no key or secret
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(shop["api_key"].as_str().unwrap()));
    assert!(!text.contains("whsec_"));
    let human = succeeds(d, &["merchant", "list"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(shop_id) && human.contains("SHOP 000000001"),
        "{human}"
    );

    succeeds(
        d,
        &["merchant", "set-acceptor-id", plain_id, "123456789012345"],
    );
    assert_eq!(by_id(plain_id)["acceptor_id"], "123456789012345");

    // bad ids and unknown merchants change nothing
    let err = fails(
        d,
        &["merchant", "set-acceptor-id", plain_id, "1234567890123456"],
    );
    assert!(err.contains("1 to 15 printable ASCII"), "{err}");
    let err = fails(d, &["merchant", "set-acceptor-id", plain_id, "caf\u{e9}"]);
    assert!(err.contains("1 to 15 printable ASCII"), "{err}");
    let err = fails(
        d,
        &["merchant", "set-acceptor-id", "mch_0000000000000000", "X1"],
    );
    assert!(err.contains("no merchant mch_0000000000000000"), "{err}");
    fails(d, &["merchant", "set-acceptor-id", plain_id]);
    assert_eq!(by_id(plain_id)["acceptor_id"], "123456789012345");
    assert_eq!(by_id(shop_id)["acceptor_id"], "SHOP 000000001");

    succeeds(d, &["merchant", "set-acceptor-id", plain_id, "--clear"]);
    assert_eq!(by_id(plain_id)["acceptor_id"], serde_json::Value::Null);
    assert_eq!(merchants(d).len(), 2);
}

/// `voicepay bank --help` names both of its commands, and `merchant list
/// --help` gives the columns in the order the list prints them.
#[test]
fn bank_and_merchant_list_help_say_what_the_commands_print() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let help = |args: &[&str]| String::from_utf8_lossy(&succeeds(d, args).stdout).into_owned();
    let bank = help(&["bank", "--help"]);
    let about = bank.lines().next().unwrap_or_default();
    assert!(
        about.contains("test cards") && about.contains("ISO 8583 issuer host"),
        "{bank}"
    );

    let list_help = help(&["merchant", "list", "--help"]);
    let about = list_help.lines().next().unwrap_or_default();
    let at = |text: &str, what: &str| {
        text.find(what)
            .unwrap_or_else(|| panic!("{what:?} not in {text:?}"))
    };
    let order = ["id", "acceptor id", "enabled/disabled", "name"].map(|c| at(about, c));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{about}");

    let out = succeeds(
        d,
        &[
            "merchant",
            "add",
            "--name",
            "Columns shop",
            "--acceptor-id",
            "COLS00000000001",
            "--json",
        ],
    );
    let shop: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = shop["merchant_id"].as_str().unwrap();
    let line = help(&["merchant", "list"]);
    let printed = [id, "COLS00000000001", "enabled", "Columns shop"].map(|c| at(&line, c));
    assert!(printed.windows(2).all(|w| w[0] < w[1]), "{line}");
}
