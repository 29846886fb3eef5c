//! SIP load: debit callback payments through the lab Asterisk 22 and the
//! `carrier` trunk, with one SIPp process as the carrier's handsets.
//!
//!   scripts/bench sip [--calls N] [--concurrent M] [--style prompt|listen]
//!                     [--endpoint 'PJSIP/{phone}@carrier'] [--seconds S] [--peer]
//!                     [--rest-transport http|websocket]
//!
//! `--peer` (prompt style, trunk only): voicepay on `bank.kind = "iso8583"`
//! at one `voicepay bank serve` and without the machine screen, then
//! Asterisk restarted and the do-it-yourself peer (`benches/peer/peer.py`,
//! driven from `sip/peer.rs`) with the same N, M, scenario, keys, amount
//! and issuer host; then a side-by-side table (README "voicepay and the
//! peer side by side").
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
#[path = "sip/peer.rs"]
mod peer;

use common::cpu_seconds;
use lab::{asterisk_pid, pct, prompt_secs, status_kib, ts};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use voicepay::domain::Language;
use voicepay::ivr::speech;
use voicepay_testkit::iso8583::BankHost;
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
    /// `--peer`: voicepay (bank.kind = "iso8583") and then the
    /// do-it-yourself peer (benches/peer/) on the same run, side by side.
    peer: bool,
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
        peer: false,
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
            "--rest-transport" => {
                a.rest_transport = val("http|websocket");
                assert!(
                    matches!(a.rest_transport.as_str(), "http" | "websocket"),
                    "--rest-transport http|websocket (both is for scripts/bench daemon)"
                );
            }
            "--peer" => a.peer = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        a.calls > 0 && a.concurrent > 0,
        "--calls and --concurrent must be at least 1"
    );
    assert!(
        !a.peer || (a.style == "prompt" && a.endpoint.starts_with("PJSIP/")),
        "--peer compares the prompt style on the trunk (the peer dials PJSIP/{{phone}}@carrier \
         and has no machine-detection window for the listen style's waits)"
    );
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if !a.peer {
        rt.block_on(run(&a, None));
        return;
    }
    // One issuer host for both: the peer's FastAGI server and voicepay's
    // ISO 8583 link authorize at the same `voicepay bank serve`.
    let bank = BankHost::start(env!("CARGO_BIN_EXE_voicepay"));
    let ours = rt.block_on(run(&a, Some(&bank.address)));
    // A fresh Asterisk (same binary, same rendered config) for the peer, as
    // `scripts/bench sip` gave voicepay: neither inherits the other's
    // leftovers (the README saw an Asterisk stay busy after a run).
    let ok = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/asterisk"))
        .arg("restart")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "scripts/asterisk restart failed before the peer's run");
    let theirs = rt.block_on(peer::run(&a, &bank.address));
    side_by_side(&a, &ours, theirs.as_ref());
}

/// One implementation's figures for the side-by-side table.
#[derive(Default)]
struct Row {
    calls: usize,
    completed: usize,
    failed: BTreeMap<String, usize>,
    a2r_p50: f64,
    a2r_p99: f64,
    ast_cpu: f64,
    app_cpu: f64,
    ast_rss_mib: f64,
    app_rss_mib: f64,
    placed_per_s: f64,
}

/// The table of `--peer`: voicepay's row and the peer's (its `table:` line),
/// or the peer's run's failure.
fn side_by_side(a: &Args, ours: &Row, theirs: Result<&Row, &String>) {
    println!();
    println!(
        "Side by side: {} debit callbacks, {} at a time, the same SIPp scenario and keys, \
         the same issuer host (voicepay bank serve, ISO 8583), Asterisk restarted before each",
        a.calls, a.concurrent
    );
    println!("| | voicepay (ARI) | peer (dialplan + FastAGI) |");
    println!("|---|---|---|");
    let theirs = match theirs {
        Ok(r) => r,
        Err(why) => {
            println!("(the peer's run failed: {why})");
            return;
        }
    };
    let both = |name: &str, f: &dyn Fn(&Row) -> String| {
        println!("| {name} | {} | {} |", f(ours), f(theirs));
    };
    both("completed / calls (success rate)", &|r| {
        format!(
            "{} / {} ({:.1} %){}",
            r.completed,
            r.calls,
            100.0 * r.completed as f64 / r.calls.max(1) as f64,
            if r.failed.is_empty() {
                String::new()
            } else {
                format!(" {:?}", r.failed)
            }
        )
    });
    both("answer→result p50 / p99", &|r| {
        format!("{:.2} / {:.2} s", r.a2r_p50, r.a2r_p99)
    });
    let per = |r: &Row, s: f64| 1000.0 * s / r.completed.max(1) as f64;
    both("CPU per completed payment: total", &|r| {
        format!("{:.1} ms", per(r, r.ast_cpu + r.app_cpu))
    });
    both("… Asterisk", &|r| {
        format!("{:.1} ms ({:.2} s)", per(r, r.ast_cpu), r.ast_cpu)
    });
    both("… app", &|r| {
        format!("{:.1} ms ({:.2} s)", per(r, r.app_cpu), r.app_cpu)
    });
    both("peak RSS Asterisk / app", &|r| {
        format!("{:.1} / {:.1} MiB", r.ast_rss_mib, r.app_rss_mib)
    });
    both("callbacks placed per second", &|r| {
        format!("{:.1}", r.placed_per_s)
    });
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

/// voicepay's run; with `bank` (`--peer`), on the ISO 8583 issuer host at
/// that address and with the peer's steps (no machine screen).
async fn run(a: &Args, bank: Option<&str>) -> Row {
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
        if let Some(bank) = bank {
            iso8583_bank(&mut c, bank);
        }
        c
    };
    let key = merchant_key(voicepay(), bank.is_some());
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
        let (v, is_final) = lab::order_view(&http, &base, &key, &id).await;
        if is_final {
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
    let row = report(a, &script, &done, &unfinished, created, wall, &usage);
    eprintln!(
        "(run ended after {wall:.1} s; SIPp's log: {})",
        log.display()
    );
    row
}

/// voicepay on the issuer host at `bank` (`bank.kind = "iso8583"`, the lab
/// zone PIN key and ids of the test kit), and, like the peer, no machine
/// screen (`telephony.machine_detection.enabled = false`): the peer's
/// dialplan has none, so both do the same steps.
fn iso8583_bank(c: &mut std::process::Command, bank: &str) {
    use voicepay_testkit::iso8583::{ACQUIRER_ID, LAB_ZPK, LAB_ZPK_ID, TERMINAL_ID};
    c.env("VOICEPAY__BANK__KIND", "iso8583")
        .env("VOICEPAY__BANK__ISO8583__ADDRESS", bank)
        .env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY", LAB_ZPK)
        .env("VOICEPAY__BANK__ISO8583__ZONE_PIN_KEY_ID", LAB_ZPK_ID)
        .env("VOICEPAY__BANK__ISO8583__ACQUIRER_ID", ACQUIRER_ID)
        .env("VOICEPAY__BANK__ISO8583__TERMINAL_ID", TERMINAL_ID)
        .env("VOICEPAY__TELEPHONY__MACHINE_DETECTION__ENABLED", "false");
}

/// The bench merchant's API key; over ISO 8583 it needs the card acceptor
/// id the acquirer assigned it (F42).
fn merchant_key(mut cmd: std::process::Command, iso8583: bool) -> String {
    if !iso8583 {
        return common::merchant_key(cmd);
    }
    cmd.args(["merchant", "add", "--name", "bench", "--json"]);
    cmd.args(["--acceptor-id", voicepay_testkit::iso8583::ACCEPTOR_ID]);
    let out = cmd.output().expect("voicepay merchant add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("merchant JSON")["api_key"]
        .as_str()
        .expect("api_key")
        .to_owned()
}

fn report(
    a: &Args,
    script: &str,
    done: &[serde_json::Value],
    unfinished: &[serde_json::Value],
    created: usize,
    wall: f64,
    u: &Usage,
) -> Row {
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
        "SIP load: {} debit callbacks, {} at a time, style {} (keys {script}), endpoint {}, ari.rest_transport {}, ARI password {}",
        a.calls, a.concurrent, a.style, a.endpoint, a.rest_transport, ari_password_format()
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
    failed_calls(done, unfinished);
    Row {
        calls: a.calls,
        completed: ok.len(),
        failed,
        a2r_p50: pct(&answer_to_result, 0.5),
        a2r_p99: pct(&answer_to_result, 0.99),
        ast_cpu: u.ast_cpu,
        app_cpu: u.daemon_cpu,
        ast_rss_mib: u.ast_rss / 1024.0,
        app_rss_mib: u.daemon_rss / 1024.0,
        placed_per_s,
    }
}

/// Each order that did not succeed, with its last attempt's
/// originate→answer and answer→end (s): when keys are lost, whether the
/// call was one whose answer reached the daemon late (the handset keys
/// from the ACK on, whatever the daemon sees).
fn failed_calls(done: &[serde_json::Value], unfinished: &[serde_json::Value]) {
    let originate_to_answer =
        sorted_secs(done.iter().chain(unfinished), "started_at", "answered_at");
    for v in done
        .iter()
        .chain(unfinished)
        .filter(|v| v["status"] != "succeeded")
    {
        let Some(t) = v["attempts"].as_array().and_then(|a| a.last()) else {
            continue;
        };
        let o2a = ts(&t["answered_at"])
            .zip(ts(&t["started_at"]))
            .map(|(a, s)| a - s);
        let a2e = ts(&t["ended_at"])
            .zip(ts(&t["answered_at"]))
            .map(|(e, a)| e - a);
        let rank = o2a.map(|x| originate_to_answer.iter().filter(|y| **y <= x).count());
        println!(
            "  not paid: {} {}: originate→answer {} (rank {} of {}), answer→end {}",
            v["status"].as_str().unwrap_or("?"),
            v["result"]["code"].as_str().unwrap_or("?"),
            o2a.map_or("-".into(), |x| format!("{x:.2} s")),
            rank.map_or("-".into(), |r| r.to_string()),
            originate_to_answer.len(),
            a2e.map_or("-".into(), |x| format!("{x:.2} s")),
        );
    }
}

/// The last attempts' `to - from` (s) of these orders, sorted.
fn sorted_secs<'a>(
    orders: impl Iterator<Item = &'a serde_json::Value>,
    from: &str,
    to: &str,
) -> Vec<f64> {
    let mut v: Vec<f64> = orders
        .filter_map(|o| {
            let t = o["attempts"].as_array()?.last()?;
            Some(ts(&t[to])? - ts(&t[from])?)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The ARI password format `scripts/asterisk` rendered for this run
/// (`VOICEPAY_ARI_PASSWORD_FORMAT`, `VOICEPAY_ARI_CRYPT_ROUNDS`; crypt at
/// 5,000 rounds when unset), for the report's header.
fn ari_password_format() -> String {
    match std::env::var("VOICEPAY_ARI_PASSWORD_FORMAT").as_deref() {
        Ok("plain") => "plain".into(),
        _ => format!(
            "crypt, {} rounds",
            std::env::var("VOICEPAY_ARI_CRYPT_ROUNDS").unwrap_or_else(|_| "5000".into())
        ),
    }
}
