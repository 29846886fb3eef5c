//! Where webhooks may go (issue #11, item 1, SSRF): an internal address in
//! any spelling is refused when the order is created (422
//! `invalid_notify_url`, nothing stored), a name that resolves to one is
//! refused when connecting (`last_error_class` `blocked_address`, a local
//! listener gets no connection), also on redeliver; the operator's
//! allow-list lets a listed receiver through; plain http needs
//! `webhooks.allow_http`. On SQLite and on PostgreSQL.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use voicepay::clock::FakeClock;
use voicepay::config::Settings;
use voicepay::crypto::{KeyRing, Vault};
use voicepay::notify::Notifier;
use voicepay::store::{now_ms, Store};
use voicepay_testkit::receiver::{spawn_app_with_receiver, Receiver};
use voicepay_testkit::{on_both_stores, order_body, spawn_app_with, Db, TestApp};

on_both_stores!(
    db:
    internal_notify_urls_are_refused_at_create_time_and_nothing_is_stored,
    plain_http_is_refused_unless_allow_http,
    a_name_resolving_to_loopback_is_blocked_at_connect_time_and_on_redeliver,
    localhost_as_a_merchants_default_url_is_blocked_at_connect_time,
    a_literal_address_is_checked_again_at_connect_time,
    the_allow_list_lets_the_listed_receiver_through_and_nothing_else,
    a_tls_failure_is_told_as_tls_error,
);

/// A daemon that queues events but sends none (the test runs a worker).
fn quiet(s: &mut Settings) {
    s.webhooks.enabled = false;
}

/// Rows in every table an order or its webhooks would touch.
async fn stored(app: &TestApp) -> [i64; 4] {
    [
        app.count("orders").await,
        app.count("order_events").await,
        app.count("idempotency_keys").await,
        app.count("webhook_outbox").await,
    ]
}

/// A local listener nobody may reach; `accept` never blocks.
fn trap() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Whether anything connected to `l` (pending in its backlog). The worker's
/// pass has finished before this is asked, so a connection it made would
/// be there.
fn reached(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

/// A resolver that answers `ip` for every name, as a hostile or rebinding
/// DNS server would.
struct Answers(IpAddr);

impl Resolve for Answers {
    fn resolve(&self, _: Name) -> Resolving {
        let addr = SocketAddr::new(self.0, 0);
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// A worker for the app's database, with `tweak`ed settings, on a clock a
/// second ahead (so what was made due just before is due for it).
async fn worker(app: &TestApp, tweak: impl FnOnce(&mut Settings)) -> Notifier {
    let mut s = app.settings.clone();
    tweak(&mut s);
    let store = Store::connect(&s.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap();
    let vault = Arc::new(Vault::new(&KeyRing::load(&s.crypto).unwrap()));
    Notifier::new(
        store,
        vault,
        &s.webhooks,
        Arc::new(FakeClock::at(now_ms() + 1000)),
    )
    .unwrap()
}

async fn create(app: &TestApp, key: &str, reference: &str, url: Option<&str>) -> reqwest::Response {
    let mut body = order_body(reference);
    if let Some(u) = url {
        body["notify_url"] = json!(u);
    }
    app.post_json("/v1/orders", key, &body).await
}

/// Creates and cancels an order (one `order.cancelled` event); its id.
async fn cancelled_order(app: &TestApp, key: &str, reference: &str, url: Option<&str>) -> String {
    let resp = create(app, key, reference, url).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .post_json(&format!("/v1/orders/{id}/cancel"), key, &json!({}))
        .await;
    assert_eq!(resp.status(), 200);
    id
}

/// (status, attempts, last_error_class) of the order's one event.
async fn event(app: &TestApp, order_id: &str) -> (String, i64, Option<String>) {
    sqlx::query_as(
        "SELECT status, attempts, last_error_class FROM webhook_outbox WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// The merchant's view of its one event.
/// The order's event was attempted once, refused as `blocked_address` and
/// left pending, and no connection reached `listener`.
async fn assert_blocked_unreached(app: &TestApp, order_id: &str, listener: &TcpListener) {
    assert_eq!(
        event(app, order_id).await,
        ("pending".into(), 1, Some("blocked_address".into()))
    );
    assert!(
        !reached(listener),
        "a connection reached the local listener"
    );
}

async fn merchant_view(app: &TestApp, key: &str) -> Value {
    let list: Value = app.get_json("/v1/webhooks/events", key).await;
    let events = list["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{list}");
    events[0].clone()
}

fn assert_refused_field(err: &Value, url: &str) {
    assert_eq!(err["error"]["code"], "invalid_request", "{url}: {err}");
    let fields = err["error"]["fields"].as_array().expect("fields listed");
    assert_eq!(fields.len(), 1, "{url}: {err}");
    assert_eq!(fields[0]["field"], "notify_url", "{url}");
    assert_eq!(fields[0]["code"], "invalid_notify_url", "{url}");
    let message = fields[0]["message"].as_str().unwrap();
    assert!(!message.is_empty(), "{url}");
    assert!(
        !message.contains("127.0.0.1"),
        "the URL is not echoed: {message}"
    );
}

// ---------------------------------------------------------------------------

async fn internal_notify_urls_are_refused_at_create_time_and_nothing_is_stored(db: Db) {
    // Plain http allowed (test settings), no allow-list: only the address
    // decides.
    let Some(app) = spawn_app_with(db, quiet).await else {
        return;
    };
    let spellings = [
        // The examples: the ARI port and the cloud metadata service.
        "http://127.0.0.1:8088/ari/asterisk/info",
        "http://169.254.169.254/latest/meta-data/",
        // Loopback in every IPv4 spelling the WHATWG parser accepts.
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001:8088/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.0.1./",
        "http://evil@127.0.0.1/",
        "http://0/",
        // IPv6 forms.
        "http://[::1]:8088/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:0:0:1]/",
        "http://[::]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        // Names that are loopback by definition.
        "http://localhost:8088/",
        "http://LocalHost./",
        "http://ari.localhost/",
        // Private, CGNAT, benchmark, reserved, multicast, broadcast, docs.
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://198.18.0.1/",
        "http://240.0.0.1/",
        "http://224.0.0.251/",
        "http://255.255.255.255/",
        "http://192.0.2.10/",
        "https://0.0.0.0/",
    ];
    for (i, url) in spellings.iter().enumerate() {
        let before = stored(&app).await;
        let resp = create(&app, &app.api_key, &format!("S{i}"), Some(url)).await;
        assert_eq!(resp.status(), 422, "{url}");
        assert_refused_field(&resp.json().await.unwrap(), url);
        assert_eq!(stored(&app).await, before, "{url}: something was stored");
    }
    // With an Idempotency-Key too: no key is kept for a refused order.
    let resp = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", "ssrf-1")
        .json(&{
            let mut b = order_body("SK1");
            b["notify_url"] = json!("http://[::1]:8088/ari/asterisk/info");
            b
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(stored(&app).await, [0, 0, 0, 0]);
}

async fn plain_http_is_refused_unless_allow_http(db: Db) {
    let Some(app) = spawn_app_with(db, |s| {
        quiet(s);
        s.webhooks.allow_http = false;
    })
    .await
    else {
        return;
    };
    let resp = create(
        &app,
        &app.api_key,
        "H1",
        Some("http://hooks.shop.example/w"),
    )
    .await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    assert_refused_field(&err, "http");
    assert!(
        err["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("https"),
        "{err}"
    );
    assert_eq!(stored(&app).await, [0, 0, 0, 0]);
    let resp = create(
        &app,
        &app.api_key,
        "H2",
        Some("https://hooks.shop.example/w"),
    )
    .await;
    assert_eq!(resp.status(), 201);

    // allow_http on (as the tests and the lab have it): the same URL passes.
    let Some(lab) = spawn_app_with(db, quiet).await else {
        return;
    };
    let resp = create(
        &lab,
        &lab.api_key,
        "H3",
        Some("http://hooks.shop.example/w"),
    )
    .await;
    assert_eq!(resp.status(), 201);
}

async fn a_name_resolving_to_loopback_is_blocked_at_connect_time_and_on_redeliver(db: Db) {
    let (listener, port) = trap();
    let Some(app) = spawn_app_with(db, quiet).await else {
        return;
    };
    // A public-looking name: accepted at create time (names are checked
    // when resolved) …
    let url = format!("http://hooks.shop.example:{port}/hook");
    let id = cancelled_order(&app, &app.api_key, "N1", Some(&url)).await;
    // … and resolved, when sent, to the local listener.
    let loopback = || async {
        let w = worker(&app, |_| {}).await;
        Arc::new(
            w.with_lookup(Arc::new(Answers("127.0.0.1".parse().unwrap())))
                .unwrap(),
        )
    };
    let w = loopback().await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_blocked_unreached(&app, &id, &listener).await;
    let view = merchant_view(&app, &app.api_key).await;
    assert_eq!(view["last_error_class"], "blocked_address", "{view}");
    assert!(view.get("last_error").is_none(), "raw error shown: {view}");
    assert!(!view.to_string().contains("127.0.0.1"), "{view}");

    // Redeliver goes through the same check.
    let path = format!(
        "/v1/webhooks/events/{}/redeliver",
        view["id"].as_str().unwrap()
    );
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    let w = loopback().await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(
        event(&app, &id).await,
        ("pending".into(), 2, Some("blocked_address".into()))
    );
    assert!(!reached(&listener), "redeliver reached the local listener");

    // The metadata address by name: blocked the same way.
    let resp = app.post_json(&path, &app.api_key, &json!({})).await;
    assert_eq!(resp.status(), 200);
    let w = worker(&app, |_| {}).await;
    let metadata = Answers("169.254.169.254".parse().unwrap());
    let w = Arc::new(w.with_lookup(Arc::new(metadata)).unwrap());
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(
        event(&app, &id).await,
        ("pending".into(), 3, Some("blocked_address".into()))
    );
}

async fn localhost_as_a_merchants_default_url_is_blocked_at_connect_time(db: Db) {
    let (listener, port) = trap();
    let Some(app) = spawn_app_with(db, quiet).await else {
        return;
    };
    // The merchant's default URL (set by the operator, not checked by the
    // order API) names localhost; the system resolver answers loopback.
    let store = Store::connect(&app.settings.database.url, 1, voicepay::views::webhook_body)
        .await
        .unwrap();
    let vault = Vault::new(&KeyRing::load(&app.settings.crypto).unwrap());
    let url = format!("http://localhost:{port}/hook");
    let m = voicepay::merchants::create(&store, &vault, "Local shop", Some(&url))
        .await
        .unwrap();
    let id = cancelled_order(&app, &m.api_key, "L1", None).await;
    let w = Arc::new(worker(&app, |_| {}).await);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_blocked_unreached(&app, &id, &listener).await;
    let view = merchant_view(&app, &m.api_key).await;
    assert_eq!(view["last_error_class"], "blocked_address", "{view}");
}

async fn a_literal_address_is_checked_again_at_connect_time(db: Db) {
    // Listed when the order was made; no longer listed (or http no longer
    // allowed) when the event is sent: nothing is sent.
    let (listener, port) = trap();
    let Some(app) = spawn_app_with(db, |s| {
        quiet(s);
        s.webhooks.allowed_private_targets = vec![format!("127.0.0.1:{port}")];
    })
    .await
    else {
        return;
    };
    let url = format!("http://0x7f.1:{port}/hook");
    let id = cancelled_order(&app, &app.api_key, "C1", Some(&url)).await;
    let w = Arc::new(worker(&app, |s| s.webhooks.allowed_private_targets.clear()).await);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_blocked_unreached(&app, &id, &listener).await;

    let path = format!(
        "/v1/webhooks/events/{}/redeliver",
        merchant_view(&app, &app.api_key).await["id"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        app.post_json(&path, &app.api_key, &json!({}))
            .await
            .status(),
        200
    );
    let w = Arc::new(worker(&app, |s| s.webhooks.allow_http = false).await);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(
        event(&app, &id).await,
        ("pending".into(), 2, Some("blocked_address".into()))
    );
    assert!(!reached(&listener));
}

async fn the_allow_list_lets_the_listed_receiver_through_and_nothing_else(db: Db) {
    let rx = Receiver::start().await;
    let (listener, port) = trap();
    let Some(app) = spawn_app_with(db, |s| {
        quiet(s);
        rx.allow(s);
    })
    .await
    else {
        return;
    };
    let id = cancelled_order(&app, &app.api_key, "A1", Some(&rx.url)).await;
    let w = Arc::new(worker(&app, |_| {}).await);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(event(&app, &id).await, ("delivered".into(), 1, None));
    assert_eq!(rx.got().len(), 1);
    assert_eq!(rx.got()[0].json()["data"]["id"], id.as_str());

    // Another port on the same host is not listed.
    let before = stored(&app).await;
    let other = format!("http://127.0.0.1:{port}/hook");
    let resp = create(&app, &app.api_key, "A2", Some(&other)).await;
    assert_eq!(resp.status(), 422);
    assert_refused_field(&resp.json().await.unwrap(), &other);
    assert_eq!(stored(&app).await, before);
    assert!(!reached(&listener));
}

async fn a_tls_failure_is_told_as_tls_error(db: Db) {
    // https to a listed receiver that speaks plain http: the handshake fails.
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    let url = rx.url.replace("http://", "https://");
    let id = cancelled_order(&app, &app.api_key, "T1", Some(&url)).await;
    let w = Arc::new(worker(&app, |_| {}).await);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(
        event(&app, &id).await,
        ("pending".into(), 1, Some("tls_error".into()))
    );
    let view = merchant_view(&app, &app.api_key).await;
    assert_eq!(view["last_error_class"], "tls_error", "{view}");
    assert!(rx.got().is_empty());
}
