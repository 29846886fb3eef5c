//! `scripts/bench sip --peer`: the do-it-yourself peer's run
//! (benches/peer/peer.py: dialplan `Playback()`/`Read()` + a FastAGI server
//! on panoramisk) with the same N, M, SIPp scenario and key script as
//! voicepay's run, on the issuer host voicepay used. Its figures come from
//! its `table:` JSON line (benches/peer/peer.py `report`).

use super::{handset, scenario, Args, Row, AMOUNT_FEN};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use voicepay_testkit::iso8583::LAB_ZPK;
use voicepay_testkit::sipp::{KeyPresses, Sipp};

/// Runs the peer against the lab Asterisk (restarted by the caller) and the
/// issuer host at `bank`; at most `--seconds` + 120 s, then it is killed.
/// Its summary lines are printed as they come (not its line per call).
pub async fn run(a: &Args, bank: &str) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (wait_ms, script) = handset(&a.style);
    let keys = KeyPresses::parse(&script).map_err(|e| e.to_string())?;
    let xml = scenario(dir.path(), wait_ms);
    let sipp = Sipp::uas(xml.to_str().expect("a UTF-8 path"))
        .keys(keys)
        .calls(u32::MAX / 2)
        .timeout(Duration::from_secs(a.seconds + 180))
        .spawn()
        .map_err(|e| format!("starting SIPp: {e}"))?;
    ari_ready(Duration::from_secs(30)).await?;
    let venv = std::env::var("VOICEPAY_VENV").unwrap_or_else(|_| "/var/cache/voicepay/venv".into());
    let mut child = Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/peer.py"))
        .args(["--calls", &a.calls.to_string()])
        .args(["--concurrent", &a.concurrent.to_string()])
        .args(["--amount", &AMOUNT_FEN.to_string()])
        .args(["--issuer", bank])
        .args(["--asterisk-pid", &super::lab::asterisk_pid().to_string()])
        .args(["--keys", &format!("{wait_ms} ms, then {script}")])
        // As voicepay: `telephony.max_concurrent_originates` (8) at a time.
        // 64 new HTTP connections at once had some reset by Asterisk.
        .args(["--originates", "8"])
        .env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", LAB_ZPK)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{venv}/bin/python benches/peer/peer.py: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut table = None;
        println!();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("table: ") {
                table = serde_json::from_str::<serde_json::Value>(json).ok();
            } else if !line.starts_with("call ") {
                println!("{line}");
            }
        }
        table
    });
    let deadline = Instant::now() + Duration::from_secs(a.seconds + 120);
    let killed = loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break false;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let table = reader.join().ok().flatten();
    let _ = sipp.finish(Duration::from_millis(100)).await;
    if killed {
        return Err(format!("killed after {} s", a.seconds + 120));
    }
    let t = table.ok_or("no `table:` line from peer.py")?;
    let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    let failed: BTreeMap<String, usize> = t["failed"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0) as usize))
                .collect()
        })
        .unwrap_or_default();
    Ok(Row {
        calls: t["calls"].as_u64().unwrap_or(0) as usize,
        completed: t["completed"].as_u64().unwrap_or(0) as usize,
        failed,
        a2r_p50: f("answer_to_result_p50_s"),
        a2r_p99: f("answer_to_result_p99_s"),
        ast_cpu: f("cpu_asterisk_s"),
        app_cpu: f("cpu_app_s"),
        ast_rss_mib: t["peak_rss_mib"]["asterisk"].as_f64().unwrap_or(f64::NAN),
        app_rss_mib: t["peak_rss_mib"]["app"].as_f64().unwrap_or(f64::NAN),
        placed_per_s: f("placed_per_s"),
    })
}

/// Waits until the restarted Asterisk answers ARI (`GET /ari/asterisk/ping`)
/// and then 1 s more, as voicepay's run waits for its `/readyz`: right
/// after a restart, early originates were reset (12 of 200 in one run).
async fn ari_ready(within: Duration) -> Result<(), String> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        let ok = http
            .get(format!("{}/ari/asterisk/ping", var("VOICEPAY__ARI__URL")))
            .basic_auth(
                var("VOICEPAY__ARI__USERNAME"),
                Some(var("VOICEPAY__ARI__PASSWORD")),
            )
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ARI did not answer within {} s of the restart",
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
