//! What the benchmarks need from the daemon process they measure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `voicepay` run in `dir` on the database `db_url`, listening on a free
/// port and logging at `info`, with the `[limits]` raised as a load test
/// must (one merchant and a few phones make every order, far past any real
/// merchant's or phone's rate); a bench adds its own settings.
/// `VOICEPAY_BENCH_BIN=PATH` runs another build of voicepay instead of this
/// one (a before/after comparison in one session).
pub fn voicepay(dir: &std::path::Path, db_url: &str) -> Command {
    let bin: std::path::PathBuf = std::env::var_os("VOICEPAY_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_voicepay").into())
        .into();
    voicepay_binary(&bin, dir, db_url)
}

/// [`voicepay`] with another build of the daemon (`binary`), to compare two
/// builds within one session.
pub fn voicepay_binary(binary: &std::path::Path, dir: &std::path::Path, db_url: &str) -> Command {
    let mut c = Command::new(binary);
    c.current_dir(dir)
        .env("VOICEPAY__DATABASE__URL", db_url)
        .env("VOICEPAY__HTTP__LISTEN", "127.0.0.1:0")
        .env("VOICEPAY__LOG__LEVEL", "info")
        .env("VOICEPAY__LIMITS__ORDERS_PER_MERCHANT_PER_MINUTE", "0")
        .env("VOICEPAY__LIMITS__ORDERS_PER_PHONE_PER_DAY", "0")
        .env("VOICEPAY__LIMITS__MAX_CONNECTIONS", "4096");
    c
}

/// The SQLite database `bench.db` in `dir`, as a `database.url`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("bench.db").display())
}

/// Spawns `voicepay serve` from `cmd` and returns it with the address it
/// logged (`listen=…`); its stderr keeps being drained in the background.
pub fn serve(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .expect("voicepay serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    // `VOICEPAY_BENCH_LOG=FILE` keeps the daemon's log, to see why a call
    // failed.
    let mut keep = std::env::var_os("VOICEPAY_BENCH_LOG")
        .and_then(|p| std::fs::File::create(p).ok())
        .map(std::io::LineWriter::new);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = keep.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("voicepay did not start");
    (child, addr)
}

/// Adds the `bench` merchant with `cmd` (`voicepay` on the bench's
/// database) and returns its API key.
pub fn merchant_key(mut cmd: Command) -> String {
    let out = cmd
        .args(["merchant", "add", "--name", "bench", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// User + system CPU seconds of a process, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}
