//! `spawn_app()`: a real voicepay on port 0 with its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database), and a merchant to call it as.

use sqlx::AnyPool;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voicepay::app::App;
use voicepay::config::Settings;

use crate::wait::{poll_until, wait_for};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub api_key: String,
    pub merchant_id: String,
    /// The merchant's webhook secret (`whsec_…`), as `merchant add` shows it.
    pub webhook_secret: String,
    /// A second connection to the same database, for assertions.
    pub pool: AnyPool,
    pub db: Db,
    /// The SQLite file (and its folder), when `db` is SQLite.
    pub sqlite_path: Option<std::path::PathBuf>,
    pub settings: Settings,
    /// The demo page's listener (`http://127.0.0.1:PORT`), when
    /// `demo.enabled`: see [`crate::demo`].
    pub demo_base: Option<String>,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Base URL of a PostgreSQL server that tests may create databases on, from
/// `VOICEPAY_TEST_DATABASE_URL` (scripts/test sets it). Without it the test is
/// skipped, except under `CI=true`, where that is a failure.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var("VOICEPAY_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but VOICEPAY_TEST_DATABASE_URL is not set: PostgreSQL tests cannot be skipped in CI (run scripts/test)")
        }
        _ => {
            eprintln!("skipping: PostgreSQL not configured (set VOICEPAY_TEST_DATABASE_URL or run scripts/test)");
            None
        }
    }
}

/// A fresh, empty PostgreSQL database; returns its URL.
pub async fn fresh_postgres_db(base: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("vp_test_{}", voicepay::crypto::random_hex(6));
    let admin = AnyPool::connect(base).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at VOICEPAY_TEST_DATABASE_URL is not reachable: {e}")
    });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let mut url = reqwest::Url::parse(base).expect("VOICEPAY_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Settings for a test instance on `db`, with fixed test keys.
pub async fn test_settings(db: Db, dir: &std::path::Path) -> Option<Settings> {
    let mut s = Settings::default();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.demo.listen = "127.0.0.1:0".parse().unwrap();
    s.database.max_connections = 4;
    s.crypto.key_file = dir.join("voicepay.keys");
    // Test receivers are plain http on loopback; each test lists its own
    // (`Receiver::allow`), so every other loopback port stays refused.
    s.webhooks.allow_http = true;
    s.database.url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.join("voicepay.db").display()),
        Db::Postgres => fresh_postgres_db(&postgres_base_url()?).await,
    };
    Some(s)
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, |_| {}).await
}

/// Like [`spawn_app`], letting the test adjust the settings first.
pub async fn spawn_app_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    crate::log::init();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(db, dir.path()).await?;
    tweak(&mut settings);
    let app = App::build(settings.clone()).await.expect("voicepay builds");
    let addr = app.local_addr();
    let demo_base = app.demo_addr().map(|a| format!("http://{a}"));
    let creds =
        voicepay::merchants::create(&app.state().store, &app.state().vault, "Test shop", None)
            .await
            .expect("merchant");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let pool = AnyPool::connect(&settings.database.url)
        .await
        .expect("assertion pool");
    Some(TestApp {
        addr,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        api_key: creds.api_key,
        merchant_id: creds.merchant_id,
        webhook_secret: creds.webhook_secret,
        pool,
        db,
        sqlite_path: (db == Db::Sqlite).then(|| dir.path().join("voicepay.db")),
        settings,
        demo_base,
        _dir: dir,
        shutdown,
        server: Some(server),
    })
}

impl TestApp {
    /// Binds order `order_id`'s phone to its card, as the matcher does after
    /// a first success (the matcher's own tests show that path), and returns
    /// the binding id. Asserts the phone had no binding.
    pub async fn bind_order_card(&self, order_id: &str) -> String {
        use voicepay::store::{NewBinding, Store};
        let store = Store::connect(
            &self.settings.database.url,
            1,
            voicepay::views::webhook_body,
        )
        .await
        .expect("store");
        let o = store.order(order_id).await.unwrap().expect("order");
        let binding_id = format!("bnd_{}", voicepay::crypto::random_hex(12));
        let created = store
            .bind_card_if_unbound(&NewBinding {
                id: &binding_id,
                merchant_id: &o.merchant_id,
                phone: &o.phone,
                card_enc: &o.card_enc,
                card_masked: &o.card_masked,
                card_type: o.card_type,
                card_fp: &o.card_fp,
                id_enc: &o.id_enc,
                id_masked: &o.id_masked,
                created_at: voicepay::store::now_ms(),
            })
            .await
            .unwrap();
        assert!(created, "the phone was bound already");
        store.close().await;
        binding_id
    }

    /// Stops the daemon (graceful shutdown, waited for) and starts a new one
    /// on the same database, keys and settings, on a new port.
    pub async fn restart(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("daemon task")
                .expect("daemon stopped cleanly");
        }
        let app = App::build(self.settings.clone())
            .await
            .expect("voicepay builds again");
        self.addr = app.local_addr();
        self.base = format!("http://{}", self.addr);
        self.demo_base = app.demo_addr().map(|a| format!("http://{a}"));
        self.shutdown = CancellationToken::new();
        self.server = Some(tokio::spawn(app.run(self.shutdown.clone())));
    }

    /// A second merchant on the same instance: (id, api key).
    pub async fn another_merchant(&self) -> (String, String) {
        let out = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .expect("alive");
        assert!(out.status().is_success());
        // Merchants are created through the library, as the CLI does.
        let store = voicepay::store::Store::connect(
            &self.settings.database.url,
            1,
            voicepay::views::webhook_body,
        )
        .await
        .expect("store");
        let ring = voicepay::crypto::KeyRing::load(&self.settings.crypto).expect("keys");
        let vault = voicepay::crypto::Vault::new(&ring);
        let m = voicepay::merchants::create(&store, &vault, "Other shop", None)
            .await
            .expect("merchant");
        store.close().await;
        (m.merchant_id, m.api_key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /v1/orders as this app's merchant.
    pub async fn create_order(&self, body: &serde_json::Value) -> reqwest::Response {
        self.post_json("/v1/orders", &self.api_key, body).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// The Prometheus text of `GET /metrics` (no key: it is for the operator's scraper).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The OpenAPI document the daemon serves (no key needed).
    pub async fn openapi(&self) -> serde_json::Value {
        self.http
            .get(self.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET path` as `key`, its body read as JSON (whatever the status).
    pub async fn get_json(&self, path: &str, key: &str) -> serde_json::Value {
        self.get(path, key).await.json().await.unwrap()
    }

    /// The order as the merchant sees it (`GET /v1/orders/{id}`).
    pub async fn order_view(&self, id: &str) -> serde_json::Value {
        self.get_json(&format!("/v1/orders/{id}"), &self.api_key)
            .await
    }

    /// Polls the order (up to 15 s) until its view satisfies `done`.
    pub async fn order_until(
        &self,
        id: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(Duration::from_secs(15), async || {
            let v = self.order_view(id).await;
            if done(&v) {
                Ok(v)
            } else {
                Err(format!("order never got there: {v:#}"))
            }
        })
        .await
    }

    /// The details of the order's audit events, oldest first, read
    /// straight from the database.
    pub async fn event_details(&self, id: &str) -> Vec<String> {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT detail FROM order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .expect("events")
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
    }

    /// Rows in a table, read straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Polls the order until it is final and every call it had has ended
    /// (an attempt closes when the call hangs up, after the result prompt);
    /// panics with its last view after `within`.
    pub async fn final_view(&self, id: &str, within: Duration) -> serde_json::Value {
        // Every 250 ms: the real-Asterisk tests wait here for whole calls.
        poll_until(within, Duration::from_millis(250), async || {
            let v: serde_json::Value = self
                .get(&format!("/v1/orders/{id}"), &self.api_key)
                .await
                .json()
                .await
                .expect("order json");
            let status = v["status"].as_str().unwrap_or_default();
            let calls_ended = v["attempts"]
                .as_array()
                .is_some_and(|a| a.iter().all(|a| !a["ended_at"].is_null()));
            if matches!(status, "succeeded" | "failed" | "cancelled" | "expired") && calls_ended {
                Ok(v)
            } else {
                Err(format!("order not final in time: {v:#}"))
            }
        })
        .await
        .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Orders, events and idempotency keys: what a rejected request must not change.
    pub async fn footprint(&self) -> (i64, i64, i64) {
        (
            self.count("orders").await,
            self.count("order_events").await,
            self.count("idempotency_keys").await,
        )
    }
}

/// A valid new-card order body; `merchant_order_id` varies per call.
pub fn order_body(merchant_order_id: &str) -> serde_json::Value {
    serde_json::json!({
        "merchant_order_id": merchant_order_id,
        "amount": 12345,
        "currency": "CNY",
        "description": "Membership top-up",
        "phone": "+8613800138000",
        "card_number": "6222000000000017",
        "id_number": "11010519491231002X",
        "language": "zh",
    })
}

/// Runs each listed test once on SQLite and once on PostgreSQL, as
/// `sqlite::NAME` and `postgres::NAME` in the calling module. Without
/// `VOICEPAY_TEST_DATABASE_URL` the PostgreSQL runs skip (fail under
/// `CI=true`, see [`postgres_base_url`]).
///
/// ```text
/// // async fn NAME(app: TestApp), the app from `spawn_app(db)`:
/// on_both_stores!(creates_an_order, refuses_a_bad_card);
/// // the app from the module's own `async fn spawn(db: Db) -> Option<TestApp>`:
/// on_both_stores!(spawn = spawn; streams_events);
/// // async fn NAME(db: Db) that starts what it needs itself (and returns
/// // when spawn_app gives None):
/// on_both_stores!(db: retries_a_webhook);
/// ```
#[macro_export]
macro_rules! on_both_stores {
    (@apps [$spawn:path] $($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = $spawn($crate::Db::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $spawn($crate::Db::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
    (db: $($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name($crate::Db::Sqlite).await; } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name($crate::Db::Postgres).await; } )*
        }
    };
    (spawn = $spawn:ident; $($name:ident),* $(,)?) => {
        $crate::on_both_stores!(@apps [super::$spawn] $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_stores!(@apps [$crate::spawn_app] $($name),*);
    };
}
