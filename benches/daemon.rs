//! The daemon alone: the scripted fake ARI server plays Asterisk for N
//! concurrent simulated payment calls.
//!
//!   scripts/bench daemon [--calls 1000] [--think-ms 0] [--database sqlite|postgres]
//!                        [--binary PATH] [--rest-transport http|websocket|both]
//!
//! Starts the release `voicepay serve` (SQLite, or a fresh database on the
//! PostgreSQL of `scripts/postgres up`; stub bank) against the fake
//! ARI of the tests (`voicepay_testkit::fake_ari`: WebSocket + keep-alive
//! REST, in this process), creates N debit callback orders (1 fen each,
//! distinct phones) while the fake still refuses the events socket, then lets
//! the daemon connect. Each call goes through the daemon's real path:
//! originate → StasisStart → answer and the confirmation prompt → (all N
//! calls are held there at once: the memory figure) → PlaybackFinished, `1` →
//! the PIN prompt → PlaybackFinished, 805137 → the matcher and the stub bank
//! → the result prompt → PlaybackFinished → hang-up → StasisEnd and
//! ChannelDestroyed. A simulated caller answers each command at once, or
//! after a random think time up to `--think-ms`.
//!
//! Prints calls completed and failed (checked against the daemon's own
//! `voicepay_orders` gauge), events/s while the N calls run, the event →
//! command latency (from the fake queueing an event to the daemon's REST
//! request it causes; p50/p99/max, overall and per step), the daemon's CPU
//! seconds, and memory per call: the daemon's RSS with every call up minus
//! its RSS before the first call, divided by N. The bank step's throughput
//! is authorizations/s: N over the time from the first last PIN digit to the
//! last result prompt (in a burst, every PIN arrives in the same instant).
//! `--binary PATH` runs another build of the daemon (e.g. the release binary
//! of an older commit, copied aside) so two builds compare in one session.
//!
//! `--rest-transport` sets the daemon's `ari.rest_transport` (default
//! `http`); `both` runs the whole measurement once per transport, one after
//! the other in this invocation (a fresh daemon and fake each time), so the
//! two are compared under the same machine load.

mod common;

use common::cpu_seconds;
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voicepay_testkit::fake_ari::{channel, event, FakeAri, Recorded};

/// Which event caused the command that is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// StasisStart → answer.
    Start,
    /// Confirmation `1` → the PIN prompt.
    Confirm,
    /// The sixth PIN digit → "please wait" (the bank is asked after it).
    Pin,
    /// The sixth PIN digit → the result prompt: the matcher, the PIN block,
    /// the stub bank and the order's writes (not an event → command hop:
    /// reported apart).
    Bank,
    /// The result prompt finished → hang-up.
    Finished,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Start => "StasisStart → answer",
            Step::Confirm => "digit 1 → PIN prompt",
            Step::Pin => "last PIN digit → please-wait",
            Step::Bank => "last PIN digit → result prompt (bank)",
            Step::Finished => "result played → hang-up",
        }
    }
}

/// What the simulated callers share with the request reader.
struct Sim {
    fake: FakeAri,
    think: Duration,
    /// Channel → (when the causing event was queued, which step).
    pending: Mutex<HashMap<String, (Instant, Step)>>,
    /// Channel → when its last PIN digit was queued.
    pin_sent: Mutex<HashMap<String, Instant>>,
    /// When the first last PIN digit was queued (the bank step's start).
    first_pin: Mutex<Option<Instant>>,
    events: AtomicU64,
}

impl Sim {
    /// Queues `frames` for `channel` after the caller's think time; the
    /// last one is what the next command from the daemon answers.
    fn send(self: &Arc<Self>, channel: &str, frames: Vec<serde_json::Value>, step: Option<Step>) {
        self.send_after(self.think, channel, frames, step)
    }

    /// Like `send`, after up to `think` (zero: now).
    fn send_after(
        self: &Arc<Self>,
        think: Duration,
        channel: &str,
        frames: Vec<serde_json::Value>,
        step: Option<Step>,
    ) {
        let think = if think.is_zero() {
            Duration::ZERO
        } else {
            self.think.mul_f64(rand::random::<f64>())
        };
        let this = self.clone();
        let channel = channel.to_owned();
        let go = move || {
            let n = frames.len();
            for (i, f) in frames.into_iter().enumerate() {
                if i + 1 == n {
                    let now = Instant::now();
                    if let Some(step) = step {
                        this.pending
                            .lock()
                            .unwrap()
                            .insert(channel.clone(), (now, step));
                        if step == Step::Pin {
                            this.pin_sent.lock().unwrap().insert(channel.clone(), now);
                            this.first_pin.lock().unwrap().get_or_insert(now);
                        }
                    }
                }
                // False only once the daemon has stopped, after the run.
                if this.fake.try_push(f) {
                    this.events.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        if think.is_zero() {
            go();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(think).await;
                go();
            });
        }
    }
}

fn dtmf(ch: &str, d: char) -> serde_json::Value {
    event(
        "ChannelDtmfReceived",
        json!({"digit": d.to_string(), "duration_ms": 100, "channel": channel(ch, "Up")}),
    )
}

fn finished(ch: &str, pb: &str) -> serde_json::Value {
    event(
        "PlaybackFinished",
        json!({"playback": {"id": pb, "media_uri": "sound:voicepay/x",
                            "target_uri": format!("channel:{ch}"), "state": "done"}}),
    )
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The command line.
struct Args {
    calls: usize,
    think: Duration,
    postgres: bool,
    /// Another build of the daemon; this build's when `None`.
    binary: Option<PathBuf>,
    /// `ari.rest_transport` values to measure, one run each.
    transports: Vec<&'static str>,
}

fn args() -> Args {
    let mut a = Args {
        calls: 1000,
        think: Duration::ZERO,
        postgres: false,
        binary: None,
        transports: vec!["http"],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" => a.calls = args.next().and_then(|v| v.parse().ok()).expect("--calls N"),
            "--think-ms" => {
                a.think = Duration::from_millis(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--think-ms MS"),
                )
            }
            "--database" => {
                a.postgres = match args.next().as_deref() {
                    Some("sqlite") => false,
                    Some("postgres") => true,
                    _ => panic!("--database sqlite|postgres"),
                }
            }
            "--binary" => a.binary = Some(args.next().expect("--binary PATH").into()),
            "--rest-transport" => {
                a.transports = match args.next().as_deref() {
                    Some("http") => vec!["http"],
                    Some("websocket") => vec!["websocket"],
                    Some("both") => vec!["http", "websocket"],
                    _ => panic!("--rest-transport http|websocket|both"),
                }
            }
            "--bench" => {}
            other => panic!(
                "unknown argument {other} (--calls N, --think-ms MS, --database sqlite|postgres, --binary PATH, --rest-transport http|websocket|both)"
            ),
        }
    }
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for &transport in &a.transports {
        println!("== ari.rest_transport = {transport}");
        rt.block_on(run(&a, transport));
    }
}

/// The URL of the PostgreSQL server `scripts/postgres up` runs (or
/// `VOICEPAY_TEST_DATABASE_URL`).
fn postgres_url() -> String {
    if let Ok(u) = std::env::var("VOICEPAY_TEST_DATABASE_URL") {
        return u;
    }
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
        .arg("up")
        .output()
        .expect("scripts/postgres up");
    assert!(out.status.success(), "PostgreSQL did not start");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A fresh database for this run on the server at `base`.
async fn fresh_pg_db(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("vp_daemon_bench_{}", std::process::id());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("PostgreSQL reachable");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    let mut url = reqwest::Url::parse(base).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn run(a: &Args, transport: &'static str) {
    let (calls, think) = (a.calls, a.think);
    let fake = FakeAri::start().await;
    fake.open_upgrades(false);
    let mut requests = fake.tap();
    let ari = fake.settings();
    let dir = tempfile::tempdir().unwrap();
    let db_url = if a.postgres {
        fresh_pg_db(&postgres_url()).await
    } else {
        common::sqlite_url(dir.path())
    };
    let voicepay = || {
        let mut c = match &a.binary {
            Some(b) => common::voicepay_binary(b, dir.path(), &db_url),
            None => common::voicepay(dir.path(), &db_url),
        };
        c.env("VOICEPAY__ARI__URL", &ari.url)
            .env("VOICEPAY__ARI__USERNAME", &ari.username)
            .env("VOICEPAY__ARI__PASSWORD", &ari.password)
            .env("VOICEPAY__ARI__APP", &ari.app)
            .env("VOICEPAY__ARI__REST_TRANSPORT", transport)
            .env(
                "VOICEPAY__TELEPHONY__MAX_CONCURRENT_CALLS",
                calls.to_string(),
            )
            .env(
                "VOICEPAY__TELEPHONY__CALLBACK_ENDPOINT",
                "Local/{phone}@bench",
            );
        c
    };
    let key = common::merchant_key(voicepay());
    let (mut child, addr) = common::serve(voicepay());
    let pid = child.id();
    eprintln!("daemon pid {pid} (perf record -p {pid})");
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    // The orders, 16 requests at a time, before any call exists.
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, base, key, next) = (http.clone(), base.clone(), key.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls as u64 {
                    return;
                }
                let body = json!({
                    "merchant_order_id": format!("D{i}"), "amount": 1, "currency": "CNY",
                    "phone": (13_600_000_000u64 + i).to_string(),
                    "card_number": "6222000000000017", "id_number": "11010519491231002X",
                });
                let r = http
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid, "VmRSS:");

    let sim = Arc::new(Sim {
        fake,
        think,
        pending: Mutex::new(HashMap::new()),
        pin_sent: Mutex::new(HashMap::new()),
        first_pin: Mutex::new(None),
        events: AtomicU64::new(0),
    });
    sim.fake.open_upgrades(true);
    let started = Instant::now();

    let mut all = histogram();
    let mut by_step: BTreeMap<Step, Histogram<u64>> = BTreeMap::new();
    let mut parked: Vec<(String, String)> = Vec::new();
    let mut rss_live = 0;
    let mut drive_start = None;
    let (mut events0, mut cpu0) = (0, 0.0);
    let (mut succeeded, mut failed) = (0usize, 0usize);
    let mut result_of: HashMap<String, bool> = HashMap::new();
    let mut last_result = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while succeeded + failed < calls {
        let r: Recorded = match tokio::time::timeout_at(deadline.into(), requests.recv()).await {
            Ok(Some(r)) => r,
            _ => break,
        };
        let segs: Vec<&str> = r.path.trim_start_matches("/ari/").split('/').collect();
        let ch = match segs.as_slice() {
            ["channels", id, ..] => id.to_string(),
            ["playbacks", pb] => pb.rsplit_once(':').map_or("", |(c, _)| c).to_string(),
            _ => continue,
        };
        if let Some((t0, step)) = sim.pending.lock().unwrap().remove(&ch) {
            let us = r.at.saturating_duration_since(t0).as_micros().max(1) as u64;
            all.saturating_record(us);
            by_step
                .entry(step)
                .or_insert_with(histogram)
                .saturating_record(us);
        }
        match (r.method.as_str(), segs.as_slice()) {
            ("POST", ["channels", id]) => {
                let args: Vec<String> = r
                    .param("appArgs")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                let start = event(
                    "StasisStart",
                    json!({"args": args, "channel": channel(id, "Up")}),
                );
                sim.send(id, vec![start], Some(Step::Start));
            }
            ("POST", ["channels", id, "play", pb]) => {
                let media = r.param("media").unwrap_or_default().to_owned();
                if media.contains("voicepay/welcome") {
                    parked.push((id.to_string(), pb.to_string()));
                    if parked.len() == calls {
                        // Every call is up and waiting on its prompt.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        rss_live = rss_kib(pid, "VmRSS:");
                        drive_start = Some(Instant::now());
                        events0 = sim.events.load(Ordering::Relaxed);
                        cpu0 = cpu_seconds(pid);
                        eprintln!(
                            "all {calls} calls up after {:.1} s; driving them",
                            started.elapsed().as_secs_f64()
                        );
                        for (id, pb) in parked.drain(..) {
                            sim.send(
                                &id,
                                vec![finished(&id, &pb), dtmf(&id, '1')],
                                Some(Step::Confirm),
                            );
                        }
                    }
                } else if media.contains("voicepay/enter-pin") {
                    let mut frames = vec![finished(id, pb)];
                    frames.extend("805137".chars().map(|d| dtmf(id, d)));
                    sim.send(id, frames, Some(Step::Pin));
                } else if media.contains("voicepay/success") || media.contains("voicepay/fail-") {
                    if let Some(t0) = sim.pin_sent.lock().unwrap().remove(*id) {
                        let us = r.at.saturating_duration_since(t0).as_micros().max(1) as u64;
                        by_step
                            .entry(Step::Bank)
                            .or_insert_with(histogram)
                            .saturating_record(us);
                    }
                    last_result = Some(r.at);
                    result_of.insert(id.to_string(), media.contains("voicepay/success"));
                    sim.send(id, vec![finished(id, pb)], Some(Step::Finished));
                }
            }
            ("DELETE", ["channels", id]) => {
                let ok = result_of.remove(*id).unwrap_or(false);
                if ok {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
                // Asterisk's answer to a hang-up: no caller think time.
                sim.send_after(
                    Duration::ZERO,
                    id,
                    vec![
                        event("StasisEnd", json!({"channel": channel(id, "Up")})),
                        event(
                            "ChannelDestroyed",
                            json!({"cause": 16, "cause_txt": "Normal Clearing", "channel": channel(id, "Up")}),
                        ),
                    ],
                    None,
                );
            }
            _ => {}
        }
    }
    let drive = drive_start.map_or(Duration::ZERO, |t| t.elapsed());
    // Every event has been queued: the last ones went with the hang-ups.
    let events = sim.events.load(Ordering::Relaxed) - events0;
    // The attempts close after the last StasisEnd; let them land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let peak = rss_kib(pid, "VmHWM:");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |status: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("voicepay_orders{") && l.contains(&format!("\"{status}\"")))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let _ = child.kill();
    let _ = child.wait();

    let tcp = sim.fake.tcp_connections();
    let per_call = (rss_live.saturating_sub(rss_before)) as f64 / calls as f64;
    let bank_window = match (*sim.first_pin.lock().unwrap(), last_result) {
        (Some(t0), Some(t1)) => t1.saturating_duration_since(t0),
        _ => Duration::ZERO,
    };
    println!(
        "calls {calls}  think ≤ {} ms  database {}  binary {}",
        think.as_millis(),
        if a.postgres { "postgres" } else { "sqlite" },
        a.binary
            .as_deref()
            .map_or_else(|| "this build".into(), |b| b.display().to_string()),
    );
    println!(
        "completed {succeeded}  failed {}  (daemon's gauge: succeeded {}, failed {})",
        calls - succeeded,
        gauge("succeeded"),
        gauge("failed"),
    );
    println!(
        "drive phase {:.2} s: {events} events, {:.0} events/s; daemon CPU {cpu:.2} s; {tcp} TCP connections to ARI in all",
        drive.as_secs_f64(),
        events as f64 / drive.as_secs_f64().max(1e-9),
    );
    println!(
        "event → command latency: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max()),
        all.len()
    );
    println!(
        "bank step: {calls} authorizations in {:.3} s (first last PIN digit → last result prompt): {:.0} authorizations/s",
        bank_window.as_secs_f64(),
        calls as f64 / bank_window.as_secs_f64().max(1e-9),
    );
    for (step, h) in &by_step {
        println!(
            "  {:<40} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            step.name(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    println!(
        "memory: RSS {:.1} MiB before the calls, {:.1} MiB with all {calls} up: {per_call:.1} KiB per call; peak RSS {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_live as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}
