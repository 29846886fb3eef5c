//! `[limits]`: what a client cannot make the daemon spend without bound
//! (issue #11, item 5). Each limit is set low in its test, hit, and the
//! refusal checked as a client sees it (status, error body, `Retry-After`)
//! with nothing stored. Durations are only deadlines against a hang.

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voicepay::config::Settings;
use voicepay::domain::OrderStatus;
use voicepay::store::{now_ms, Store, Transition};
use voicepay_testkit::{on_both_stores, order_body, spawn_app_with, wait_until, Db, TestApp};

/// A deadline against a hang, never a speed check.
const HANG: Duration = Duration::from_secs(60);

/// Everything a connection sends until the daemon closes it.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the daemon never closed the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `request` on `conn` and reads one whole response (headers and a
/// `Content-Length` body), leaving the connection open.
async fn exchange(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the answer was whole");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return;
                }
            }
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&got).into_owned()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: voicepay\r\n\r\n";

/// One metric's value in the exposition (`name value`, no labels).
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The `voicepay_http_requests_total` series, by label set.
fn request_series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("voicepay_http_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .filter(|s| !s.contains("route=\"/metrics\""))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn assert_rate_limited(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    body
}

async fn spawn(db: Db, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    spawn_app_with(db, |s| {
        s.http.events_poll_ms = 50;
        tweak(s);
    })
    .await
}

#[tokio::test]
async fn made_up_methods_add_no_metric_series() {
    let app = spawn(Db::Sqlite, |_| {}).await.unwrap();
    let send = |m: String, path: &'static str| {
        let req = app.http.request(
            reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
            app.url(path),
        );
        async move { req.send().await.unwrap().status() }
    };
    for i in 0..3 {
        send(format!("FOO{i}"), "/healthz").await;
        send(format!("FOO{i}"), "/v1/orders").await;
        send(format!("FOO{i}"), "/no/such/path").await;
    }
    let first = request_series(&app.metrics().await);
    for i in 3..40 {
        send(format!("FOO{i}"), "/healthz").await;
        send(format!("FOO{i}"), "/v1/orders").await;
        send(format!("FOO{i}"), "/no/such/path").await;
    }
    let metrics = app.metrics().await;
    assert!(!metrics.contains("FOO"), "{metrics}");
    let after = request_series(&metrics);
    assert_eq!(after, first, "new series from made-up methods");
    assert!(
        after
            .iter()
            .any(|s| s.contains("method=\"other\"") && s.contains("route=\"/healthz\"")),
        "{metrics}"
    );
    assert!(
        after
            .iter()
            .any(|s| s.contains("method=\"other\"") && s.contains("route=\"unmatched\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn(Db::Sqlite, |s| s.limits.header_read_timeout_secs = 1)
        .await
        .unwrap();
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: voicepay\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_to_close(&mut conn).await;
    assert!(!got.contains(" 200 "), "a half header was answered: {got}");
    // The daemon still serves a whole request.
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    assert!(exchange(&mut conn, HEALTHZ)
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_and_closed() {
    let app = spawn(Db::Sqlite, |s| s.limits.max_connections = 2)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        assert!(exchange(&mut conn, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ.as_bytes()).await.unwrap();
    let got = read_to_close(&mut third).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    let lower = got.to_ascii_lowercase();
    assert!(
        lower.contains("retry-after: 1") && lower.contains("connection: close"),
        "{got}"
    );
    let body: Value = serde_json::from_str(got.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // The held ones still work; one closed frees a place.
    assert!(exchange(&mut held[0], HEALTHZ)
        .await
        .starts_with("HTTP/1.1 200"));
    held.pop();
    wait_until(HANG, "the freed place was never given back", || async {
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        exchange(&mut conn, HEALTHZ)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("voicepay_rate_limited_total{limit=\"connections\"}"));
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503_and_stores_nothing() {
    let app = spawn(Db::Sqlite, |s| s.limits.request_timeout_secs = 1)
        .await
        .unwrap();
    let before = app.footprint().await;
    let body = order_body("SLOW1").to_string();
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: voicepay\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        body.len()
    );
    // Headers whole, then half the body, and no more.
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let got = read_to_close(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    let json: Value = serde_json::from_str(got.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(json["error"]["code"], "request_timeout");
    assert_eq!(app.footprint().await, before);
}

async fn new_order(app: &TestApp, key: &str, phone: &str) -> String {
    let mut body = order_body(&format!("L{:x}", rand::random::<u32>()));
    body["phone"] = phone.into();
    let res = app.post_json("/v1/orders", key, &body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn open_stream(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.get(&format!("/v1/orders/{id}/events"), key).await
}

async fn the_status_stream_is_not_buffered_by_a_proxy(app: TestApp) {
    let id = new_order(&app, &app.api_key, "+8613800138000").await;
    let resp = open_stream(&app, &app.api_key, &id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
}

async fn streams_past_the_merchant_or_node_cap_get_429(db: Db) {
    let Some(app) = spawn(db, |s| {
        s.limits.max_streams = 3;
        s.limits.max_streams_per_merchant = 2;
    })
    .await
    else {
        return;
    };
    let (_, other_key) = app.another_merchant().await;
    let mine = new_order(&app, &app.api_key, "+8613800138000").await;
    let theirs = new_order(&app, &other_key, "+8613900139000").await;
    let mut a1 = open_stream(&app, &app.api_key, &mine).await;
    let a2 = open_stream(&app, &app.api_key, &mine).await;
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    let before = app.footprint().await;
    let body = assert_rate_limited(open_stream(&app, &app.api_key, &mine).await).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("merchant"));
    // The other merchant has its own place, the node's last.
    let b1 = open_stream(&app, &other_key, &theirs).await;
    assert_eq!(b1.status(), 200);
    let body = assert_rate_limited(open_stream(&app, &other_key, &theirs).await).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("node"));
    assert_eq!(
        app.footprint().await,
        before,
        "a refused stream changed something"
    );
    // The open ones run on: a new status reaches them.
    let mut got = String::new();
    while !got.contains("event: pending") {
        got.push_str(&String::from_utf8_lossy(
            &a1.chunk().await.unwrap().unwrap(),
        ));
    }
    let store = Store::connect(&app.settings.database.url, 1, voicepay::views::webhook_body)
        .await
        .unwrap();
    let t = Transition {
        from: OrderStatus::Pending,
        to: OrderStatus::Calling,
        result: None,
        detail: None,
    };
    assert!(store.transition(&mine, t, now_ms()).await.unwrap());
    while !got.contains("event: calling") {
        got.push_str(&String::from_utf8_lossy(
            &a1.chunk().await.unwrap().unwrap(),
        ));
    }
    // A closed stream gives its place back.
    drop(a2);
    wait_until(
        HANG,
        "the closed stream's place never came back",
        || async { open_stream(&app, &app.api_key, &mine).await.status() == 200 },
    )
    .await;
    drop(b1);
}

async fn streams_of_one_order_share_one_poller(app: TestApp) {
    let id = new_order(&app, &app.api_key, "+8613800138000").await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut s = open_stream(&app, &app.api_key, &id).await;
        assert_eq!(s.status(), 200);
        let first = s.chunk().await.unwrap().expect("the creation event");
        assert!(String::from_utf8_lossy(&first).contains("event: pending"));
        streams.push(s);
    }
    let metrics = app.metrics().await;
    assert_eq!(
        gauge(&metrics, "voicepay_status_streams"),
        Some(4),
        "{metrics}"
    );
    assert_eq!(
        gauge(&metrics, "voicepay_status_stream_pollers"),
        Some(1),
        "{metrics}"
    );
    // Another order, another poller.
    let other = new_order(&app, &app.api_key, "+8613900139000").await;
    let s = open_stream(&app, &app.api_key, &other).await;
    assert_eq!(s.status(), 200);
    let metrics = app.metrics().await;
    assert_eq!(
        gauge(&metrics, "voicepay_status_stream_pollers"),
        Some(2),
        "{metrics}"
    );
    drop(s);
    drop(streams);
    wait_until(HANG, "pollers outlived their streams", || async {
        let m = app.metrics().await;
        gauge(&m, "voicepay_status_stream_pollers") == Some(0)
            && gauge(&m, "voicepay_status_streams") == Some(0)
    })
    .await;
}

async fn a_merchant_past_its_order_rate_gets_429_and_nothing_is_stored(db: Db) {
    let Some(app) = spawn(db, |s| s.limits.orders_per_merchant_per_minute = 2).await else {
        return;
    };
    new_order(&app, &app.api_key, "+8613800138000").await;
    new_order(&app, &app.api_key, "+8613800138001").await;
    let before = app.footprint().await;
    let resp = app.create_order(&order_body("RATE3")).await;
    let body = assert_rate_limited(resp).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a minute"));
    assert_eq!(app.footprint().await, before);
    assert_eq!(app.count("call_attempts").await, 0);
    // Another merchant has its own bucket.
    let (_, other_key) = app.another_merchant().await;
    new_order(&app, &other_key, "+8613800138002").await;
}

async fn a_phone_past_its_daily_orders_gets_429_across_merchants_and_restarts(db: Db) {
    let Some(mut app) = spawn(db, |s| s.limits.orders_per_phone_per_day = 2).await else {
        return;
    };
    let (_, other_key) = app.another_merchant().await;
    let phone = "+8613800138000";
    new_order(&app, &app.api_key, phone).await;
    new_order(&app, &other_key, phone).await;
    let before = app.footprint().await;
    let mut body = order_body("PHONE3");
    body["phone"] = phone.into();
    let resp = app.post_json("/v1/orders", &app.api_key, &body).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > 23 * 3600,
        "the first order ages out in a day: {retry}"
    );
    let err = assert_rate_limited(resp).await;
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("24 hours"));
    assert_eq!(app.footprint().await, before);
    assert_eq!(app.count("call_attempts").await, 0);
    // Counted in the database: a restarted daemon still refuses.
    app.restart().await;
    let resp = app.post_json("/v1/orders", &other_key, &body).await;
    assert_rate_limited(resp).await;
    assert_eq!(app.footprint().await, before);
    // Another phone is not concerned.
    new_order(&app, &app.api_key, "+8613900139000").await;
}

async fn a_wrong_key_costs_one_database_read(app: TestApp) {
    let lookups = |m: &str| gauge(m, "voicepay_api_key_lookups_total");
    assert_eq!(lookups(&app.metrics().await), Some(0));
    for _ in 0..5 {
        let resp = app.get("/v1/orders/ord_x", "vpk_wrong").await;
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert_eq!(lookups(&app.metrics().await), Some(1));
    // The right key is looked up (once) as before.
    let res = app.get("/v1/orders/ord_x", &app.api_key).await;
    assert_eq!(res.status(), 404);
    assert_eq!(lookups(&app.metrics().await), Some(2));
}

async fn spawn_default(db: Db) -> Option<TestApp> {
    spawn(db, |_| {}).await
}

on_both_stores!(
    spawn = spawn_default;
    the_status_stream_is_not_buffered_by_a_proxy,
    streams_of_one_order_share_one_poller,
    a_wrong_key_costs_one_database_read,
);

mod own {
    use super::*;
    on_both_stores!(db:
        streams_past_the_merchant_or_node_cap_get_429,
        a_merchant_past_its_order_rate_gets_429_and_nothing_is_stored,
        a_phone_past_its_daily_orders_gets_429_across_merchants_and_restarts,
    );
}
