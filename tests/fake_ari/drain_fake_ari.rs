//! The graceful drain on SIGTERM (inbound ARI mode, `telephony.drain_secs`):
//! the daemon finishes the call in progress, claims no callback order and
//! takes no new inbound call meanwhile, says so on `/readyz`, and leaves
//! the due orders to another node.

use super::common::{
    callback_answered, dial_in, get_order, is_var, originate_of, post_order, up as chan, CALLER,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use voicepay::config::Settings;
use voicepay_testkit::fake_ari::{channel, event, request, FakeAri};
use voicepay_testkit::{order_body, test_settings, wait_for, Db};

/// One daemon in this process, stopped through its shutdown token (what
/// SIGTERM cancels).
struct Node {
    base: String,
    key: String,
    http: reqwest::Client,
    sigterm: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Node {
    /// Starts a daemon on `settings` with a merchant of its own; returns
    /// once its ARI client is connected (`/readyz` says so).
    async fn start(settings: Settings) -> Node {
        let app = voicepay::app::App::build(settings).await.unwrap();
        let creds =
            voicepay::merchants::create(&app.state().store, &app.state().vault, "Shop", None)
                .await
                .unwrap();
        let sigterm = CancellationToken::new();
        let node = Node {
            base: format!("http://{}", app.local_addr()),
            key: creds.api_key,
            http: reqwest::Client::new(),
            sigterm: sigterm.clone(),
            task: tokio::spawn(app.run(sigterm)),
        };
        node.readyz_until(|v| v["ari"] == "connected").await;
        node
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn readyz_until(&self, ok: impl Fn(&Value) -> bool) -> (u16, Value) {
        wait_for(Duration::from_secs(10), async || {
            let (status, v) = self.readyz().await;
            if ok(&v) {
                Ok((status, v))
            } else {
                Err(format!("/readyz: {status} {v}"))
            }
        })
        .await
    }

    async fn create(&self, body: &Value) -> String {
        let v = post_order(&self.http, &self.base, &self.key, body).await;
        v["id"].as_str().unwrap().to_owned()
    }

    async fn order_until(&self, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
        wait_for(Duration::from_secs(15), async || {
            let v = get_order(&self.http, &self.base, &self.key, id).await;
            if ok(&v) {
                Ok(v)
            } else {
                Err(format!("order {id}: {v:#}"))
            }
        })
        .await
    }
}

fn on(fake: &FakeAri, mut s: Settings) -> Settings {
    s.ari = fake.settings();
    s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
    s.telephony.max_attempts = 1;
    s.telephony.drain_secs = 120;
    s
}

/// The stub issuer's answers in its journal (`bank.stub_state`).
fn issuer_answers(settings: &Settings) -> usize {
    std::fs::read_to_string(settings.stub_state_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""kind":"answer""#))
        .count()
}

#[tokio::test]
async fn sigterm_finishes_the_call_in_progress_and_leaves_new_orders_to_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let base = test_settings(Db::Sqlite, dir.path()).await.unwrap();
    let fake_a = FakeAri::start().await;
    let settings_a = on(&fake_a, base.clone());
    let a = Node::start(settings_a.clone()).await;

    // A callback in progress: answered, confirmed, half the PIN keyed.
    let (paying, ch) = call_in_progress(&a, &fake_a, "D1").await;

    // SIGTERM.
    a.sigterm.cancel();
    let (status, ready) = a.readyz_until(|v| v["draining"] == true).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");

    // A new inbound call is turned away with congestion (SIP 503: the
    // dispatcher tries the other cell), not answered.
    dial_in(&fake_a, "in-1", CALLER);
    let refused = request(&fake_a, |r| {
        r.method == "DELETE" && r.path == "/ari/channels/in-1"
    })
    .await;
    assert_eq!(refused.param("reason"), Some("congestion"));
    assert!(!fake_a
        .rest_calls()
        .iter()
        .any(|r| r.path == "/ari/channels/in-1/answer"));

    // A callback order due now: the API still takes it, nobody here calls.
    let waiting = a.create(&order_body("D2")).await;

    // The call in progress ends normally: paid, once.
    fake_a.press(&chan(&ch), "137");
    let v = a.order_until(&paying, |v| v["status"] == "succeeded").await;
    assert_eq!(v["result"]["code"], "approved", "{v:#}");
    fake_a.push(event("StasisEnd", json!({"channel": chan(&ch)})));
    // Then the daemon stops by itself.
    a.task.await.unwrap().unwrap();
    assert_eq!(issuer_answers(&settings_a), 1, "one authorization");

    let pool = sqlx::AnyPool::connect(&base.database.url).await.unwrap();
    let (status, claimed_by, attempts): (String, Option<String>, i64) =
        sqlx::query_as("SELECT status, claimed_by, attempts FROM orders WHERE id = $1")
            .bind(&waiting)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), claimed_by, attempts),
        ("pending", None, 0),
        "the draining node claimed nothing"
    );
    assert!(
        !fake_a
            .rest_calls()
            .iter()
            .any(|r| r.path.contains(&waiting)),
        "no call for the new order on the draining node"
    );
    let (paid_attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM orders WHERE id = $1")
        .bind(&paying)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(paid_attempts, 1, "no retry caused by the stop");

    // Another node on the same database claims it and calls.
    let fake_b = FakeAri::start().await;
    let mut settings_b = on(&fake_b, base.clone());
    settings_b.ari.app = "voicepay-node-b".into();
    settings_b.bank.stub_state = dir.path().join("node-b.stub-bank.jsonl");
    let b = Node::start(settings_b).await;
    let placed = request(&fake_b, originate_of(format!("vp-{waiting}-1"))).await;
    assert_eq!(placed.param("app"), Some("voicepay-node-b"));
    let (by,): (Option<String>,) = sqlx::query_as("SELECT claimed_by FROM orders WHERE id = $1")
        .bind(&waiting)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(by.as_deref(), Some("voicepay-node-b"));
    b.sigterm.cancel();
}

/// With `telephony.drain_secs = 0` a SIGTERM stops at once, as before:
/// the call in progress is settled as lost with the node.
#[tokio::test]
async fn without_a_drain_sigterm_ends_the_call_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let base = test_settings(Db::Sqlite, dir.path()).await.unwrap();
    let fake = FakeAri::start().await;
    let mut s = on(&fake, base.clone());
    s.telephony.drain_secs = 0;
    let a = Node::start(s).await;
    let id = a.create(&order_body("D3")).await;
    callback_answered(&fake, &id).await;
    a.order_until(&id, |v| v["status"] == "in_call").await;
    a.sigterm.cancel();
    a.task.await.unwrap().unwrap();
    let pool = sqlx::AnyPool::connect(&base.database.url).await.unwrap();
    let (status,): (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_ne!(status, "succeeded");
    assert_ne!(status, "in_call", "settled when the node stopped");
}

/// A callback of `node` answered on `fake`, confirmed and half its PIN
/// keyed; returns (order id, channel id).
async fn call_in_progress(node: &Node, fake: &FakeAri, reference: &str) -> (String, String) {
    let id = node.create(&order_body(reference)).await;
    let ch = callback_answered(fake, &id).await;
    node.order_until(&id, |v| v["status"] == "in_call").await;
    fake.press(&chan(&ch), "1805");
    (id, ch)
}

/// A transfer call that arrives while the node drains goes straight back
/// to the merchant as `failure`/`service_unavailable` (the dialplan's
/// return path), its order untouched, so the agent can send it again to
/// another node.
#[tokio::test]
async fn a_transfer_call_during_the_drain_goes_back_to_the_merchant() {
    let dir = tempfile::tempdir().unwrap();
    let base = test_settings(Db::Sqlite, dir.path()).await.unwrap();
    let fake = FakeAri::start().await;
    let a = Node::start(on(&fake, base.clone())).await;
    let mut body = order_body("D4");
    body["mode"] = json!("transfer");
    let v = post_order(&a.http, &a.base, &a.key, &body).await;
    let transfer = v["id"].as_str().unwrap().to_owned();
    let code = v["transfer_code"].as_str().unwrap().to_owned();
    let (paying, ch) = call_in_progress(&a, &fake, "D5").await;

    a.sigterm.cancel();
    a.readyz_until(|v| v["draining"] == true).await;
    let tr = "1712345678.40";
    fake.push(event(
        "StasisStart",
        json!({"args": ["transfer", code], "channel": channel(tr, "Up")}),
    ));
    request(&fake, is_var(tr, "VOICEPAY_RESULT", "failure")).await;
    request(&fake, is_var(tr, "VOICEPAY_CODE", "service_unavailable")).await;
    let back = request(&fake, |r| {
        r.method == "POST" && r.path == format!("/ari/channels/{tr}/continue")
    })
    .await;
    assert_eq!(back.param("context"), Some("voicepay-transfer-return"));
    assert!(
        !fake
            .rest_calls()
            .iter()
            .any(|r| r.path.starts_with(&format!("/ari/channels/{tr}/play"))),
        "nothing played to the turned-away caller"
    );
    let v = a.order_until(&transfer, |_| true).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(0), "{v:#}");

    // The call in progress still pays, then the node stops.
    fake.press(&chan(&ch), "137");
    a.order_until(&paying, |v| v["status"] == "succeeded").await;
    fake.push(event("StasisEnd", json!({"channel": chan(&ch)})));
    a.task.await.unwrap().unwrap();
}
