//! Real payment calls through a real Asterisk 22 with lab handsets.
//!
//!   scripts/bench calls [--calls N] [--style prompt|listen|both]
//!
//! Starts the release `voicepay serve` (SQLite, stub bank, its own Stasis
//! app) against the lab Asterisk (`scripts/asterisk up`, `scripts/lab.env`),
//! scripts N lab handsets, creates N debit callback orders at once and waits
//! for all of them. A `prompt` caller keys as soon as the call is answered
//! (barge-in); a `listen` caller waits for every prompt to finish (the
//! prompt lengths are read from `sounds/zh/voicepay/*.wav`). Prints completed
//! and failed calls, order→result and answer→result p50/p99, the daemon's
//! CPU seconds and peak RSS, and Asterisk's CPU seconds over the same run.

mod common;
#[path = "common/lab.rs"]
mod lab;

use common::cpu_seconds;
use lab::{asterisk_pid, pct, prompt_secs, ts};
use std::time::{Duration, Instant};
use voicepay::domain::Language;
use voicepay::ivr::speech;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through scripts/bench calls"))
}

/// The lab handset script for a caller of this style.
fn script(style: &str) -> String {
    match style {
        "prompt" => "answer=1;delay=0.5;keys=1w805137;hold=40".into(),
        "listen" => {
            let mut confirm = vec![
                "sound:voicepay/welcome".to_owned(),
                "sound:voicepay/confirm-paying".into(),
            ];
            confirm.extend(speech::amount(12345, Language::Zh));
            confirm.push("sound:voicepay/confirm-card-ending".into());
            confirm.extend(speech::digits("0017", Language::Zh));
            confirm.push("sound:voicepay/confirm-press".into());
            let confirm_secs: f64 = confirm.iter().map(|m| prompt_secs(m)).sum();
            let pin_secs = prompt_secs("sound:voicepay/enter-pin");
            let waits = "W".repeat((pin_secs + 1.0).ceil() as usize);
            format!(
                "answer=1;delay={:.1};keys=1{waits}805137;hold=60",
                confirm_secs + 0.5
            )
        }
        other => panic!("unknown style {other}"),
    }
}

fn main() {
    let mut calls = 20usize;
    let mut styles = vec!["prompt".to_owned(), "listen".to_owned()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--calls" => calls = args.next().and_then(|v| v.parse().ok()).expect("--calls N"),
            "--style" => {
                let s = args.next().expect("--style prompt|listen|both");
                styles = if s == "both" {
                    vec!["prompt".into(), "listen".into()]
                } else {
                    vec![s]
                };
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("style    calls  succeeded  failed  order→result p50/p99 s  answer→result p50/p99 s  daemon CPU s  daemon peak RSS MiB  Asterisk CPU s  daemon/Asterisk CPU");
    for style in &styles {
        rt.block_on(run(style, calls));
    }
}

async fn run(style: &str, calls: usize) {
    let dir = tempfile::tempdir().unwrap();
    let app_name = format!("vpbench{}", std::process::id());
    let voicepay = || {
        let mut c = common::voicepay(dir.path(), &common::sqlite_url(dir.path()));
        c.env("VOICEPAY__ARI__APP", &app_name)
            .env(
                "VOICEPAY__TELEPHONY__MAX_CONCURRENT_CALLS",
                calls.to_string(),
            )
            .env("VOICEPAY__TELEPHONY__RING_TIMEOUT_SECS", "30");
        c
    };
    let key = common::merchant_key(voicepay());
    let (mut child, addr) = common::serve(voicepay());
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    // Wait for the ARI connection.
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

    let ari = env("VOICEPAY__ARI__URL");
    let (user, pass) = (
        env("VOICEPAY__ARI__USERNAME"),
        env("VOICEPAY__ARI__PASSWORD"),
    );
    let first = 13_600_000_000u64 + u64::from(std::process::id() % 50_000) * 100;
    let script = script(style);
    for i in 0..calls as u64 {
        let phone = (first + i).to_string();
        let r = http
            .post(format!("{ari}/ari/asterisk/variable"))
            .basic_auth(&user, Some(&pass))
            .query(&[
                ("variable", format!("LAB_{phone}")),
                ("value", script.clone()),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "setting the handset script: {}",
            r.status()
        );
    }

    let ast = asterisk_pid();
    let (daemon_cpu0, ast_cpu0) = (cpu_seconds(child.id()), cpu_seconds(ast));
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..calls as u64 {
        let body = serde_json::json!({
            "merchant_order_id": format!("CB{i}"), "amount": 12345, "currency": "CNY",
            "phone": (first + i).to_string(), "card_number": "6222000000000017", "id_number": "11010519491231002X",
        });
        let r = http
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut done: Vec<serde_json::Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ids.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut left = Vec::new();
        for id in ids {
            let (v, is_final) = lab::order_view(&http, &base, &key, &id).await;
            if is_final {
                done.push(v);
            } else {
                left.push(id);
            }
        }
        ids = left;
    }
    let wall = started.elapsed();
    let daemon_cpu = cpu_seconds(child.id()) - daemon_cpu0;
    let ast_cpu = cpu_seconds(ast) - ast_cpu0;
    let rss = lab::status_kib(child.id(), "VmHWM:") / 1024.0;
    let _ = child.kill();
    let _ = child.wait();

    let succeeded = done.iter().filter(|v| v["status"] == "succeeded").count();
    let mut order_to_result: Vec<f64> = done
        .iter()
        .filter_map(|v| Some(ts(&v["updated_at"])? - ts(&v["created_at"])?))
        .collect();
    let mut answer_to_result: Vec<f64> = done
        .iter()
        .filter_map(|v| {
            Some(ts(&v["updated_at"])? - ts(&v["attempts"].as_array()?.last()?["answered_at"])?)
        })
        .collect();
    order_to_result.sort_by(f64::total_cmp);
    answer_to_result.sort_by(f64::total_cmp);
    println!(
        "{style:<7} {calls:>6}  {succeeded:>9}  {:>6}  {:>10.1} / {:<10.1}  {:>11.1} / {:<11.1}  {daemon_cpu:>12.2}  {rss:>19.1}  {ast_cpu:>14.2}  {:>18.1}%",
        calls - succeeded,
        pct(&order_to_result, 0.5),
        pct(&order_to_result, 0.99),
        pct(&answer_to_result, 0.5),
        pct(&answer_to_result, 0.99),
        100.0 * daemon_cpu / ast_cpu.max(0.001),
    );
    eprintln!(
        "({style}: all {calls} orders final after {:.1} s)",
        wall.as_secs_f64()
    );
    // Orders that needed more than one call, and why the earlier ones ended.
    let mut retried: std::collections::BTreeMap<String, usize> = Default::default();
    for v in &done {
        let Some(attempts) = v["attempts"].as_array().filter(|a| a.len() > 1) else {
            continue;
        };
        for a in &attempts[..attempts.len() - 1] {
            let why = format!("{} {}", a["outcome"], a["cause"]);
            *retried.entry(why).or_default() += 1;
        }
    }
    if !retried.is_empty() {
        eprintln!("({style}: attempts that were retried, by outcome and cause: {retried:?})");
    }
}
