//! SIP load: debit callback payments through the lab Asterisk 22 and the
//! `carrier` trunk, with one SIPp process as the carrier's handsets.
//!
//!   scripts/bench sip [--calls N] [--concurrent M] [--style prompt|listen]
//!                     [--endpoint 'PJSIP/{phone}@carrier'] [--seconds S]
//!                     [--rest-transport http|websocket]
//!
//! Starts the release `voicepay serve` (SQLite, stub bank, its own Stasis
//! app, `telephony.max_concurrent_calls` = M, callbacks dialled on
//! `--endpoint`, by default the trunk itself) against the lab Asterisk
//! (`scripts/lab.env`), and ONE SIPp UAS on the carrier's address
//! 127.0.0.3:5060 (`tests/sipp/uas_answer.xml`: rings 1 s, answers with
//! PCMU + telephone-event, plays one `keys.pcap` of RFC 4733 events on every
//! call, waits for the BYE). It keeps M orders in flight until N were
//! created (each a new phone, debit card 6222000000000017, 0.01 CNY) and
//! waits for all of them, at most `--seconds` (default 480) from the first
//! order: what is not final then counts as failed (`unfinished`), and SIPp
//! is killed (its `-timeout` is the same bound).
//!
//! A `prompt` handset keys confirm 1 and PIN 805137 right after the ACK
//! (`1WW805137`: barge-in); a `listen`
//! handset waits out the machine-detection window (2 s of silence), the
//! whole confirmation prompt, and the PIN prompt before keying (prompt
//! lengths from `sounds/zh/voicepay/*.wav`).
//!
//! Prints completed / failed (by result code), order→result and
//! answer→result p50/p99 (from the orders' attempts), order→first
//! originate and originate→answer
//! p50/p99, callbacks placed per second (attempts' `started_at`), the most
//! calls up at once (answered..ended), payments per second sustained
//! (completed ÷ first order to last result), CPU seconds of Asterisk and of
//! the daemon (`/proc/PID/stat` user+system, whole run), CPU per completed
//! payment, peak RSS of each (largest `VmRSS` sampled every 0.5 s; the
//! daemon's `VmHWM` too) and the daemon/Asterisk CPU ratio.
//! `--rest-transport` is the daemon's `ari.rest_transport` (default: the
//! lab's `VOICEPAY__ARI__REST_TRANSPORT`, `http`).

mod common;
#[path = "common/lab.rs"]
mod lab;

use common::cpu_seconds;
use lab::{asterisk_pid, pct, prompt_secs, status_kib, ts};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use voicepay::domain::Language;
use voicepay::ivr::speech;
use voicepay_testkit::sipp::{KeyPresses, Sipp};

/// Each payment's amount: 1 fen, so that the stub issuer's balance of the
/// test card (about 100,000 CNY) outlasts any run.
const AMOUNT_FEN: i64 = 1;

/// The handsets' wait after the ACK (ms) and key script (`w` 0.5 s, `W`
/// 1 s) for a style. SIPp's `play_pcap_audio` starts a recording at its
/// first packet (a leading pause in a key script is not played), so a
/// wait before the first key is a `<pause>` in the scenario instead.
fn handset(style: &str) -> (u64, String) {
    match style {
        "prompt" => (0, "1WW805137".into()),
        "listen" => {
            let mut confirm = vec![
                "sound:voicepay/welcome".to_owned(),
                "sound:voicepay/confirm-paying".into(),
            ];
            confirm.extend(speech::amount(AMOUNT_FEN, Language::Zh));
            confirm.push("sound:voicepay/confirm-card-ending".into());
            confirm.extend(speech::digits("0017", Language::Zh));
            confirm.push("sound:voicepay/confirm-press".into());
            // The machine-detection window (2 s) comes before the welcome.
            let confirm_secs: f64 = 2.0 + confirm.iter().map(|m| prompt_secs(m)).sum::<f64>();
            let pin_secs = prompt_secs("sound:voicepay/enter-pin");
            (
                ((confirm_secs + 0.5) * 1000.0).ceil() as u64,
                format!("1{}805137", "W".repeat((pin_secs + 1.0).ceil() as usize)),
            )
        }
        other => panic!("unknown style {other} (prompt|listen)"),
    }
}

/// `tests/sipp/uas_answer.xml` with a pause of `wait_ms` between the ACK
/// and the key presses, written into `dir`.
fn scenario(dir: &Path, wait_ms: u64) -> std::path::PathBuf {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sipp/uas_answer.xml"
    ))
    .expect("tests/sipp/uas_answer.xml");
    let anchor = "<nop>\n    <action>\n      <exec play_pcap_audio";
    assert!(
        src.contains(anchor),
        "uas_answer.xml changed: {anchor:?} not found"
    );
    let out = dir.join("uas_answer_bench.xml");
    let xml = src.replacen(
        anchor,
        &format!("<pause milliseconds=\"{wait_ms}\"/>\n\n  {anchor}"),
        1,
    );
    std::fs::write(&out, xml).expect("writing the scenario");
    out
}

/// Final orders (succeeded, failed, cancelled, expired) by the daemon's
/// `voicepay_orders` gauge on `/metrics`.
async fn final_orders(http: &reqwest::Client, base: &str) -> usize {
    let Ok(r) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("voicepay_orders{"))
        .filter(|l| {
            ["succeeded", "failed", "cancelled", "expired"]
                .iter()
                .any(|s| l.contains(&format!("\"{s}\"")))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Channels up in the lab Asterisk (`GET /ari/channels`); 0 when ARI
/// cannot be read.
async fn asterisk_channels(http: &reqwest::Client) -> usize {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let Ok(r) = http
        .get(format!("{}/ari/channels", var("VOICEPAY__ARI__URL")))
        .basic_auth(
            var("VOICEPAY__ARI__USERNAME"),
            Some(var("VOICEPAY__ARI__PASSWORD")),
        )
        .send()
        .await
    else {
        return 0;
    };
    r.json::<Vec<serde_json::Value>>()
        .await
        .map_or(0, |v| v.len())
}

struct Args {
    calls: usize,
    concurrent: usize,
    style: String,
    endpoint: String,
    seconds: u64,
    rest_transport: String,
}

fn args() -> Args {
    let mut a = Args {
        calls: 20,
        concurrent: 10,
        style: "prompt".into(),
        endpoint: "PJSIP/{phone}@carrier".into(),
        seconds: 480,
        rest_transport: std::env::var("VOICEPAY__ARI__REST_TRANSPORT")
            .unwrap_or_else(|_| "http".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().unwrap_or_else(|| panic!("{arg} {what}"));
        match arg.as_str() {
            "--calls" => a.calls = val("N").parse().expect("--calls N"),
            "--concurrent" => a.concurrent = val("M").parse().expect("--concurrent M"),
            "--style" => a.style = val("prompt|listen"),
            "--endpoint" => a.endpoint = val("ENDPOINT"),
            "--seconds" => a.seconds = val("S").parse().expect("--seconds S"),
            "--rest-transport" => a.rest_transport = val("http|websocket"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        a.calls > 0 && a.concurrent > 0,
        "--calls and --concurrent must be at least 1"
    );
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run(&a));
}

/// What the run measured about the two processes.
#[derive(Default)]
struct Usage {
    daemon_cpu: f64,
    ast_cpu: f64,
    daemon_rss: f64,
    daemon_hwm: f64,
    ast_rss: f64,
}

async fn run(a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let app_name = format!("vpsipbench{}", std::process::id());
    let voicepay = || {
        let mut c = common::voicepay(dir.path(), &common::sqlite_url(dir.path()));
        c.env("VOICEPAY__ARI__APP", &app_name)
            .env("VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT", &a.endpoint)
            .env("VOICEPAY__ARI__REST_TRANSPORT", &a.rest_transport)
            .env(
                "VOICEPAY__TELEPHONY__MAX_CONCURRENT_CALLS",
                a.concurrent.to_string(),
            );
        c
    };
    let key = common::merchant_key(voicepay());
    let (mut child, addr) = common::serve(voicepay());
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not connect to ARI"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (wait_ms, script) = handset(&a.style);
    let keys = KeyPresses::parse(&script).expect("key script");
    let xml = scenario(dir.path(), wait_ms);
    // More calls than orders may come (a retried attempt rings again): SIPp
    // is stopped when the run ends rather than after a count.
    let sipp = Sipp::uas(xml.to_str().expect("a UTF-8 path"))
        .keys(keys)
        .calls(u32::MAX / 2)
        .timeout(Duration::from_secs(a.seconds + 60))
        .spawn()
        .expect("starting SIPp (sip-tester) as the carrier: run as root, under the lab lock");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ast = asterisk_pid();
    let (daemon_cpu0, ast_cpu0) = (cpu_seconds(child.id()), cpu_seconds(ast));
    let mut usage = Usage::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let first = 13_600_000_000u64 + u64::from(std::process::id() % 50_000) * 1000;
    let (mut created, mut finals) = (0usize, 0usize);
    let mut ids = Vec::new();
    while (created < a.calls || finals < created) && Instant::now() < deadline {
        while created < a.calls && created - finals < a.concurrent {
            let body = serde_json::json!({
                "merchant_order_id": format!("SIP{created}"), "amount": AMOUNT_FEN, "currency": "CNY",
                "phone": (first + created as u64).to_string(), "card_number": "6222000000000017",
                "id_number": "11010519491231002X",
            });
            let r = http
                .post(format!("{base}/v1/orders"))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
            let v: serde_json::Value = r.json().await.unwrap();
            ids.push(v["id"].as_str().unwrap().to_owned());
            created += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        usage.daemon_rss = usage.daemon_rss.max(status_kib(child.id(), "VmRSS:"));
        usage.ast_rss = usage.ast_rss.max(status_kib(ast, "VmRSS:"));
        // One scrape rather than a GET per order: the bench's own requests
        // are daemon CPU too.
        finals = final_orders(&http, &base).await;
    }
    let wall = started.elapsed().as_secs_f64();
    // A final order's call still plays the result and hangs up: wait (at
    // most 20 s) until Asterisk has no channel left, so that the calls'
    // ends and their cost are in the figures.
    let grace = Instant::now() + Duration::from_secs(20);
    while Instant::now() < grace && asterisk_channels(&http).await > 0 {
        usage.ast_rss = usage.ast_rss.max(status_kib(ast, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    usage.daemon_cpu = cpu_seconds(child.id()) - daemon_cpu0;
    usage.ast_cpu = cpu_seconds(ast) - ast_cpu0;
    usage.daemon_hwm = status_kib(child.id(), "VmHWM:");
    // Each order read once, after the CPU figures.
    let (mut done, mut unfinished) = (Vec::new(), Vec::new());
    for id in ids {
        let v: serde_json::Value = http
            .get(format!("{base}/v1/orders/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "expired")
        ) {
            done.push(v);
        } else {
            unfinished.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let sipp = sipp.finish(Duration::from_millis(100)).await;
    let log = std::env::temp_dir().join("voicepay-sipbench-sipp.log");
    let _ = std::fs::write(&log, &sipp.log);
    let script = format!("{wait_ms} ms, then {script}");
    report(a, &script, &done, &unfinished, created, wall, &usage);
    eprintln!(
        "(run ended after {wall:.1} s; SIPp's log: {})",
        log.display()
    );
}

fn report(
    a: &Args,
    script: &str,
    done: &[serde_json::Value],
    unfinished: &[serde_json::Value],
    created: usize,
    wall: f64,
    u: &Usage,
) {
    let ok: Vec<&serde_json::Value> = done.iter().filter(|v| v["status"] == "succeeded").collect();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for v in done.iter().filter(|v| v["status"] != "succeeded") {
        let code = v["result"]["code"].as_str().unwrap_or("?");
        *failed
            .entry(format!("{}:{code}", v["status"].as_str().unwrap_or("?")))
            .or_default() += 1;
    }
    if !unfinished.is_empty() {
        failed.insert("unfinished".into(), unfinished.len());
    }
    if created < a.calls {
        failed.insert("never_created".into(), a.calls - created);
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let order_to_result = sorted(
        ok.iter()
            .filter_map(|v| Some(ts(&v["updated_at"])? - ts(&v["created_at"])?))
            .collect(),
    );
    let answer_to_result = sorted(
        ok.iter()
            .filter_map(|v| {
                Some(ts(&v["updated_at"])? - ts(&v["attempts"].as_array()?.last()?["answered_at"])?)
            })
            .collect(),
    );
    let attempts: Vec<&serde_json::Value> = done
        .iter()
        .chain(unfinished)
        .filter_map(|v| v["attempts"].as_array())
        .flatten()
        .collect();
    let originate_to_answer = sorted(
        attempts
            .iter()
            .filter_map(|t| Some(ts(&t["answered_at"])? - ts(&t["started_at"])?))
            .collect(),
    );
    let order_to_originate = sorted(
        done.iter()
            .chain(unfinished)
            .filter_map(|v| {
                Some(ts(&v["attempts"].as_array()?.first()?["started_at"])? - ts(&v["created_at"])?)
            })
            .collect(),
    );
    let starts = sorted(
        attempts
            .iter()
            .filter_map(|t| ts(&t["started_at"]))
            .collect(),
    );
    let placed_per_s = match (starts.first(), starts.last()) {
        (Some(f), Some(l)) if l > f => (starts.len() - 1) as f64 / (l - f),
        _ => f64::NAN,
    };
    // Most calls up at once: +1 at answer, -1 at end.
    let mut edges: Vec<(f64, i32)> = attempts
        .iter()
        .filter_map(|t| Some([(ts(&t["answered_at"])?, 1), (ts(&t["ended_at"])?, -1)]))
        .flatten()
        .collect();
    edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut up, mut peak_up) = (0, 0);
    for (_, d) in edges {
        up += d;
        peak_up = peak_up.max(up);
    }
    let span = done
        .iter()
        .filter_map(|v| ts(&v["updated_at"]))
        .fold(f64::NAN, f64::max)
        - done
            .iter()
            .chain(unfinished)
            .filter_map(|v| ts(&v["created_at"]))
            .fold(f64::NAN, f64::min);
    let n = ok.len().max(1) as f64;
    println!(
        "SIP load: {} debit callbacks, {} at a time, style {} (keys {script}), endpoint {}, ari.rest_transport {}",
        a.calls, a.concurrent, a.style, a.endpoint, a.rest_transport
    );
    println!(
        "  completed {} / failed {} {failed:?}",
        ok.len(),
        a.calls - ok.len()
    );
    println!(
        "  order→result   p50 {:.2} s  p99 {:.2} s",
        pct(&order_to_result, 0.5),
        pct(&order_to_result, 0.99)
    );
    println!(
        "  answer→result  p50 {:.2} s  p99 {:.2} s",
        pct(&answer_to_result, 0.5),
        pct(&answer_to_result, 0.99)
    );
    println!(
        "  order→first originate p50 {:.2} s  p99 {:.2} s",
        pct(&order_to_originate, 0.5),
        pct(&order_to_originate, 0.99)
    );
    println!(
        "  originate→answer p50 {:.2} s  p99 {:.2} s ({} attempts; SIPp rings 1 s)",
        pct(&originate_to_answer, 0.5),
        pct(&originate_to_answer, 0.99),
        attempts.len()
    );
    println!("  callbacks placed {placed_per_s:.2}/s; most calls up at once {peak_up}");
    println!("  payments/s sustained {:.2} (completed ÷ {span:.1} s, first order to last result; bench wall {wall:.1} s)", ok.len() as f64 / span);
    println!("  CPU s: Asterisk {:.2}, daemon {:.2}; per completed payment: Asterisk {:.1} ms, daemon {:.1} ms", u.ast_cpu, u.daemon_cpu, 1000.0 * u.ast_cpu / n, 1000.0 * u.daemon_cpu / n);
    println!(
        "  peak RSS MiB: Asterisk {:.1}, daemon {:.1} (daemon VmHWM {:.1})",
        u.ast_rss / 1024.0,
        u.daemon_rss / 1024.0,
        u.daemon_hwm / 1024.0
    );
    println!(
        "  daemon/Asterisk CPU {:.1} %",
        100.0 * u.daemon_cpu / u.ast_cpu.max(0.001)
    );
    let mut retried: BTreeMap<String, usize> = BTreeMap::new();
    for v in done.iter().chain(unfinished) {
        let Some(att) = v["attempts"].as_array().filter(|a| a.len() > 1) else {
            continue;
        };
        for t in &att[..att.len() - 1] {
            *retried.entry(t["outcome"].to_string()).or_default() += 1;
        }
    }
    if !retried.is_empty() {
        println!("  attempts retried, by outcome: {retried:?}");
    }
}
