//! Exactly once, measured (issue 13): N payments while the daemon is
//! SIGKILLed and restarted at random moments, then the issuer's ledger is
//! checked.
//!
//!   scripts/bench exactly-once [--payments 100]   (the measured run)
//!   scripts/test                                   (10 payments, a step of its own)
//!   cargo test --test exactly_once -- --payments N
//!
//! The `voicepay serve` binary (a child process, SQLite, `bank.kind =
//! "iso8583"`) authorizes at the Python issuer peer
//! (tests/iso8583_peer/peer.py), which answers every 0200 1 s late
//! (`delay-0210 1000`) so that a kill often lands while a purchase is in
//! flight. Cardholders on the fake ARI answer each callback, confirm and
//! key the PIN (`voicepay_testkit::iso8583::Callers`); at most 8 payments
//! run at once. Every 2-6 s (random) the daemon is SIGKILLed and started
//! again on the same folder, at most N/5 times. Each order has its own
//! amount (1000 + i fen), which is how a ledger line is tied to its order
//! without trusting anything voicepay wrote.
//!
//! When every order is final, the driver waits for the reversals to settle
//! and checks, from the peer's ledger and the merchant API only:
//! - at most one debit per order (double debits = 0);
//! - money: a succeeded order's card lost its amount once, any other
//!   order's card lost nothing (every debit of an order that did not
//!   succeed, i.e. a purchase without a final answer, was reversed);
//! - every order is final; the peer saw no protocol error.
//!
//! Prints the figures (payments, kills, approved, failed by result code,
//! purchases sent, reversed, 0421 repeats, double debits, time) and exits 1
//! when a check fails. A harness-less test binary (`harness = false`,
//! `test = false` in Cargo.toml): plain `cargo test` does not run it; it
//! needs the peer's venv (skips without it, fails under `CI=true`).
//! Bounded: the whole run stops after 60 s + 5 s a payment, at most 10
//! minutes.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voicepay_testkit::fake_ari::FakeAri;
use voicepay_testkit::iso8583::{
    check_ledger, debit_order, is_final, reversals, Callers, LedgerCheck, Node, Paid, Peer,
    ACCEPTOR_ID, DEBIT_PIN,
};

/// Payments running at once.
const CONCURRENT: usize = 8;
/// The whole run, kills and settling included: 60 s + 5 s a payment, at
/// most 10 minutes.
fn budget(payments: usize) -> Duration {
    Duration::from_secs((60 + 5 * payments as u64).min(600))
}
/// How late the peer answers every 0200.
const ANSWER_DELAY_MS: u64 = 1000;

fn main() {
    let mut payments = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--payments" => {
                payments = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--payments N (N > 0)")
            }
            // what `cargo test` may pass to any test binary
            "--nocapture" | "--quiet" | "-q" | "--bench" => {}
            other => panic!("unknown argument {other} (--payments N)"),
        }
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ok = rt.block_on(run(payments));
    std::process::exit(if ok { 0 } else { 1 });
}

/// One order of the run.
struct Order {
    id: String,
    amount: i64,
}

/// The daemon that runs now, and how many times one was killed.
struct Killer {
    node: Arc<Node>,
    base: Arc<Mutex<String>>,
    kills: AtomicUsize,
    /// No more kills.
    calm: AtomicBool,
    /// The run is over: the last daemon may go.
    stop: AtomicBool,
}

impl Killer {
    /// Every 2-6 s: SIGKILL the daemon and start it again, at most `max`
    /// times, until told to stop. Ends with a daemon running.
    async fn run(self: Arc<Self>, mut daemon: voicepay_testkit::iso8583::Daemon, max: usize) {
        while !self.calm.load(Ordering::SeqCst) && self.kills.load(Ordering::SeqCst) < max {
            let wait = Duration::from_millis(2000 + rand_below(4000));
            // time passing is the point here: a kill at a random moment
            tokio::time::sleep(wait).await;
            if self.calm.load(Ordering::SeqCst) {
                break;
            }
            daemon.kill();
            let n = self.kills.fetch_add(1, Ordering::SeqCst) + 1;
            eprintln!("kill {n} after {} ms", wait.as_millis());
            daemon = self.node.serve().await;
            *self.base.lock().unwrap() = daemon.base.clone();
        }
        // the last daemon settles what is left (the reversal worker)
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(daemon);
    }
}

fn rand_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() % n
}

async fn run(payments: usize) -> bool {
    let started = Instant::now();
    let Some(peer) = Peer::start() else {
        println!("exactly-once: skipped (no venv with pyiso8583 and psec)");
        return true;
    };
    peer.control(&format!("delay-0210 {ANSWER_DELAY_MS}")).await;
    let fake = Arc::new(FakeAri::start().await);
    let callers = Callers::start(fake.clone());
    let mut node = Node::new(env!("CARGO_BIN_EXE_voicepay"), &fake, &peer.address());
    node.set("LOG__LEVEL", "info");
    // a restarted node takes over the calls its killed self left after a
    // claim period: 2 s here, not the default 30, so a kill does not stall
    // the run
    node.set("TELEPHONY__CLAIM_RENEW_SECS", "2");
    let node = Arc::new(node);
    let key = node.merchant(Some(ACCEPTOR_ID));
    let daemon = node.serve().await;
    let killer = Arc::new(Killer {
        node: node.clone(),
        base: Arc::new(Mutex::new(daemon.base.clone())),
        kills: AtomicUsize::new(0),
        calm: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let kill_task = tokio::spawn(killer.clone().run(daemon, (payments / 5).max(1)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http");
    let base = || killer.base.lock().unwrap().clone();

    let mut orders: Vec<Order> = Vec::new();
    let mut views: HashMap<String, Value> = HashMap::new();
    let mut pending: Vec<usize> = Vec::new();
    let deadline = started + budget(payments) * 4 / 5;
    while (orders.len() < payments || !pending.is_empty()) && Instant::now() < deadline {
        while pending.len() < CONCURRENT && orders.len() < payments {
            let i = orders.len();
            let phone = format!("13800{i:06}");
            callers.script(&phone, &[DEBIT_PIN]);
            let amount = 1000 + i as i64;
            let body = debit_order(&format!("EO{i:05}"), &phone, amount);
            match create(&http, &base(), &key, &body).await {
                Some(id) => {
                    orders.push(Order { id, amount });
                    pending.push(i);
                }
                // the daemon is down (killed, not yet up): the same request
                // again later, under the same Idempotency-Key
                None => break,
            }
        }
        let mut still = Vec::new();
        for i in pending {
            match view(&http, &base(), &key, &orders[i].id).await {
                Some(v) if is_final(&v) => {
                    views.insert(orders[i].id.clone(), v);
                }
                _ => still.push(i),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // at least one kill, even in a short run that was quicker than it
    while killer.kills.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // no more kills; the daemon left running settles the reversals
    killer.calm.store(true, Ordering::SeqCst);
    let kills_done = killer.kills.load(Ordering::SeqCst);
    eprintln!(
        "{:.1} s: {} orders final, {kills_done} kills; settling",
        started.elapsed().as_secs_f64(),
        views.len()
    );
    let checks = settle(&peer, &orders, &views, started + budget(payments)).await;
    killer.stop.store(true, Ordering::SeqCst);
    let _ = kill_task.await;

    let (reversals_total, reversals_open) = reversals(&node).await;
    let elapsed = started.elapsed();
    let stats = peer.stats().await;
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    for v in views.values() {
        let code = v["result"]["code"].as_str().unwrap_or("-");
        *by_code
            .entry(format!("{}:{code}", v["status"].as_str().unwrap_or("?")))
            .or_default() += 1;
    }
    let approved = views
        .values()
        .filter(|v| v["status"] == "succeeded")
        .count();
    println!(
        "exactly-once: payments {payments}, kills {kills_done}, approved {approved}, not approved {} {by_code:?}",
        views.len() - approved
    );
    println!(
        "  at the peer: purchases (0200) {}, reversed {}, 0420 {}, 0421 {}, protocol errors {}; pending reversals at voicepay {reversals_total}, not acknowledged {reversals_open}",
        stats["financial"]["000000"].as_u64().unwrap_or(0),
        checks.reversed,
        stats["received"]["0420"].as_u64().unwrap_or(0),
        stats["received"]["0421"].as_u64().unwrap_or(0),
        stats["protocol_errors"]
    );
    println!(
        "  double debits {}, money mismatches {}, debits of unsucceeded orders not reversed {}, stray debits {}, orders not final {}, created {}/{payments}; {:.1} s",
        checks.double_debits,
        checks.money_mismatches,
        checks.unreversed,
        checks.stray,
        orders.len() - views.len(),
        orders.len(),
        elapsed.as_secs_f64()
    );
    let ok = checks.clean()
        && reversals_open == 0
        && orders.len() == payments
        && views.len() == payments
        && stats["protocol_errors"] == 0;
    if !ok {
        for p in &checks.problems {
            println!("  ✗ {p}");
        }
        // keep the files for a look: the peer's, and the daemon's beside them
        let kept = peer.keep_files();
        for f in [
            "daemon.log",
            "voicepay.db",
            "voicepay.db-wal",
            "voicepay.db-shm",
        ] {
            let _ = std::fs::copy(node.path(f), kept.join(f));
        }
        println!(
            "  the peer's ledger and log, the daemon's log and database: {}",
            kept.display()
        );
    }
    println!("exactly-once: {}", if ok { "PASSED" } else { "FAILED" });
    ok
}

async fn create(http: &reqwest::Client, base: &str, key: &str, body: &Value) -> Option<String> {
    let r = http
        .post(format!("{base}/v1/orders"))
        .bearer_auth(key)
        .header("Idempotency-Key", body["merchant_order_id"].as_str()?)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.ok()?;
    if status != 201 {
        eprintln!("POST /v1/orders: {status} {v}");
        return None;
    }
    v["id"].as_str().map(str::to_owned)
}

async fn view(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Option<Value> {
    let r = http
        .get(format!("{base}/v1/orders/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Waits (until `deadline`) for the ledger to agree with the orders, as
/// pending reversals go out with back-off; the checks of the last look.
async fn settle(
    peer: &Peer,
    orders: &[Order],
    views: &HashMap<String, Value>,
    deadline: Instant,
) -> LedgerCheck {
    let paid: Vec<Paid> = orders
        .iter()
        .map(|o| Paid {
            id: o.id.clone(),
            amount: o.amount,
            status: views
                .get(&o.id)
                .and_then(|v| v["status"].as_str())
                .unwrap_or("not final")
                .to_owned(),
        })
        .collect();
    loop {
        let checks = check_ledger(&peer.ledger().await, &paid);
        if checks.clean() || Instant::now() >= deadline {
            return checks;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
