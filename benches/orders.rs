//! Order-creation throughput and latency over real HTTP, against the real
//! `voicepay serve` binary (release build) on SQLite and on PostgreSQL.
//!
//!   cargo bench --bench orders -- [--store sqlite|postgres|both] [--clients N] [--seconds S]
//!
//! or `scripts/bench`, which also starts the private PostgreSQL. Prints
//! orders/s, p50/p99/p99.9 latency and the daemon's CPU time per order.

mod common;

use common::cpu_seconds;
use hdrhistogram::Histogram;
use std::process::Command;
use std::time::{Duration, Instant};

struct Args {
    stores: Vec<String>,
    clients: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        stores: vec!["sqlite".into(), "postgres".into()],
        clients: 32,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" => {
                let s = it.next().expect("--store sqlite|postgres|both");
                a.stores = if s == "both" {
                    vec!["sqlite".into(), "postgres".into()]
                } else {
                    vec![s]
                };
            }
            "--clients" => a.clients = it.next().and_then(|v| v.parse().ok()).expect("--clients N"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--bench" => {} // added by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn voicepay(dir: &std::path::Path, db_url: &str) -> Command {
    let mut c = common::voicepay(dir, db_url);
    c.env("VOICEPAY__DATABASE__MAX_CONNECTIONS", "16");
    c
}

fn postgres_url() -> String {
    if let Ok(u) = std::env::var("VOICEPAY_TEST_DATABASE_URL") {
        return u;
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres"))
        .arg("up")
        .output()
        .expect("scripts/postgres up");
    assert!(out.status.success(), "PostgreSQL did not start");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn fresh_pg_db(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("vp_bench_{}", std::process::id());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("PostgreSQL reachable");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(base).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("store     clients  seconds  orders   orders/s  p50 ms  p99 ms  p99.9 ms  errors  daemon CPU ms/order");
    for store in &a.stores {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match store.as_str() {
            "sqlite" => common::sqlite_url(dir.path()),
            "postgres" => rt.block_on(fresh_pg_db(&postgres_url())),
            other => panic!("unknown store {other}"),
        };
        let key = common::merchant_key(voicepay(dir.path(), &db_url));
        let (mut child, addr) = common::serve(voicepay(dir.path(), &db_url));
        let cpu_before = cpu_seconds(child.id());
        let (hist, errors) =
            rt.block_on(load(&addr, &key, a.clients, Duration::from_secs(a.seconds)));
        let cpu = cpu_seconds(child.id()) - cpu_before;
        let _ = child.kill();
        let _ = child.wait();
        let n = hist.len();
        println!(
            "{store:<9} {:>7}  {:>7}  {n:>6}  {:>9.0}  {:>6.2}  {:>6.2}  {:>8.2}  {errors:>6}  {:>8.3}",
            a.clients,
            a.seconds,
            n as f64 / a.seconds as f64,
            hist.value_at_quantile(0.50) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.value_at_quantile(0.999) as f64 / 1000.0,
            cpu * 1000.0 / n.max(1) as f64,
        );
    }
}

/// `clients` concurrent loops creating orders until `dur` has passed.
/// Latencies in microseconds.
async fn load(addr: &str, key: &str, clients: usize, dur: Duration) -> (Histogram<u64>, u64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let url = format!("http://{addr}/v1/orders");
    let deadline = Instant::now() + dur;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, auth) = (http.clone(), url.clone(), format!("Bearer {key}"));
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                // A pre-shaped body keeps the load generator's own CPU low.
                let body = format!(
                    r#"{{"merchant_order_id":"B{c}x{i}","amount":12345,"currency":"CNY","phone":"13800138000","card_number":"6222000000000017","id_number":"11010519491231002X"}}"#
                );
                let t = Instant::now();
                let ok = matches!(http.post(&url).header("authorization", &auth).header("content-type", "application/json").body(body).send().await, Ok(r) if r.status() == 201);
                if ok {
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                } else {
                    errors += 1;
                }
            }
            (hist, errors)
        }));
    }
    let mut all = Histogram::<u64>::new(3).unwrap();
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.unwrap();
        all.add(h).unwrap();
        errors += e;
    }
    (all, errors)
}
