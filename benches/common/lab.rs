//! What the real-call benchmarks (`calls`, `sip`) share about the lab
//! Asterisk and their figures: its pid, /proc readings, prompt lengths,
//! percentiles and API timestamps. Included with `#[path]` by those two
//! only, so the other benchmarks do not carry it.

use std::path::Path;
use std::process::Command;

/// Seconds of an 8 kHz 16-bit mono WAV prompt (`sound:voicepay/x` → file).
pub fn prompt_secs(media: &str) -> f64 {
    let name = media.trim_start_matches("sound:voicepay/");
    let path = format!(
        "{}/sounds/zh/voicepay/{name}.wav",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::metadata(&path)
        .unwrap_or_else(|_| panic!("{path}"))
        .len();
    (bytes.saturating_sub(44)) as f64 / 16_000.0
}

/// A KiB figure of `/proc/{pid}/status` (`field` with its colon, e.g.
/// `VmHWM:` for the peak RSS); 0 when the process is gone.
pub fn status_kib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The lab Asterisk's pid, from its run folder (`scripts/asterisk logdir`).
pub fn asterisk_pid() -> u32 {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/asterisk"))
        .arg("logdir")
        .output()
        .expect("scripts/asterisk");
    let logdir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let pidfile = Path::new(&logdir)
        .with_file_name("run")
        .join("asterisk.pid");
    std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|_| {
            panic!(
                "Asterisk is not running ({}): scripts/asterisk up",
                pidfile.display()
            )
        })
        .trim()
        .parse()
        .expect("pid")
}

/// The `q` quantile (0-1) of sorted values; NaN when there are none.
pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// An RFC 3339 time of the API as Unix seconds.
pub fn ts(v: &serde_json::Value) -> Option<f64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// `GET /v1/orders/{id}` as the merchant (`key`) on the daemon at `base`,
/// with whether the order is final (succeeded, failed, cancelled or
/// expired).
pub async fn order_view(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> (serde_json::Value, bool) {
    let v: serde_json::Value = http
        .get(format!("{base}/v1/orders/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let done = matches!(
        v["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "expired")
    );
    (v, done)
}
