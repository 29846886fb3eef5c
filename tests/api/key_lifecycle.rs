//! Key lifecycle as an operator runs it (`voicepay merchant rotate-key |
//! revoke-key | disable | enable | rotate-webhook-secret`, the real binary
//! against the daemon's database) and as the merchant then sees it: the API
//! answers, the calls started, and the webhooks' signatures.

use crate::operator_cli as cli;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voicepay::clock::FakeClock;
use voicepay::crypto::{sha256_hex, KeyRing, Vault};
use voicepay::notify::Notifier;
use voicepay::store::{now_ms, Store};
use voicepay_testkit::receiver::{spawn_app_with_receiver, verify};
use voicepay_testkit::{on_both_stores, order_body, spawn_app_with, wait_until, Db, TestApp};

async fn cli_json(app: &TestApp, args: &[&str]) -> Value {
    serde_json::from_slice(&cli(app, args).await.stdout).unwrap()
}

/// The status and error code of `GET /v1/orders/{id}` with `key`.
async fn get_order(app: &TestApp, key: &str, id: &str) -> (u16, Value) {
    let resp = app.get(&format!("/v1/orders/{id}"), key).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn new_order(app: &TestApp, key: &str, reference: &str, extra: Value) -> String {
    let mut body = order_body(reference);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp = app.post_json("/v1/orders", key, &body).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn store(app: &TestApp) -> Store {
    Store::connect(&app.settings.database.url, 2, voicepay::views::webhook_body)
        .await
        .unwrap()
}

async fn worker(app: &TestApp, clock: Arc<FakeClock>) -> Arc<Notifier> {
    let vault = Arc::new(Vault::new(&KeyRing::load(&app.settings.crypto).unwrap()));
    Arc::new(Notifier::new(store(app).await, vault, &app.settings.webhooks, clock).unwrap())
}

fn quiet(s: &mut voicepay::config::Settings) {
    s.webhooks.enabled = false;
}

on_both_stores!(
    db:
    revoke_key_makes_the_key_unusable_and_rotate_key_issues_a_new_one,
    rotate_key_honours_the_overlap_and_only_the_overlap,
    a_disabled_merchant_is_refused_and_nothing_is_stored_called_or_sent,
    a_rotated_webhook_secret_signs_twice_during_its_overlap_then_once,
);

async fn revoke_key_makes_the_key_unusable_and_rotate_key_issues_a_new_one(db: Db) {
    let Some(app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let id = new_order(&app, &app.api_key, "K1", json!({})).await;
    let (_, other_key) = app.another_merchant().await;
    let other = new_order(&app, &other_key, "K1", json!({})).await;

    let out = cli(&app, &["merchant", "revoke-key", &app.merchant_id]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    // The running daemon stops trusting a looked-up key within its key
    // cache's TTL (a second): waited for, not slept for.
    let old = app.api_key.clone();
    wait_until(
        Duration::from_secs(20),
        "the revoked key still works",
        || async { get_order(&app, &old, &id).await.0 == 401 },
    )
    .await;
    let (status, body) = get_order(&app, &old, &id).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let before = app.count("orders").await;
    let resp = app.post_json("/v1/orders", &old, &order_body("K2")).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(app.count("orders").await, before, "nothing stored");
    // the other merchant is untouched
    assert_eq!(get_order(&app, &other_key, &other).await.0, 200);

    let k = cli_json(
        &app,
        &["merchant", "rotate-key", &app.merchant_id, "--json"],
    )
    .await;
    let new = k["api_key"].as_str().unwrap();
    assert!(new.starts_with("vpk_") && new != old);
    assert_eq!(k["old_key_valid_until_ms"], Value::Null);
    let (status, body) = get_order(&app, new, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(
        get_order(&app, &old, &id).await.0,
        401,
        "a revoked key never comes back"
    );
    let stored: String = sqlx::query_scalar("SELECT api_key_hash FROM merchants WHERE id = $1")
        .bind(&app.merchant_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        sha256_hex(new.as_bytes()),
        "only the key's hash is kept"
    );

    let unknown = voicepay(&app, &["merchant", "revoke-key", "mch_nope"]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no merchant mch_nope"));
}

async fn voicepay(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_voicepay"))
        .env("VOICEPAY__DATABASE__URL", &app.settings.database.url)
        .env("VOICEPAY__CRYPTO__KEY_FILE", &app.settings.crypto.key_file)
        .args(args)
        .output()
        .await
        .unwrap()
}

async fn rotate_key_honours_the_overlap_and_only_the_overlap(db: Db) {
    let Some(mut app) = spawn_app_with(db, |_| {}).await else {
        return;
    };
    let id = new_order(&app, &app.api_key, "O1", json!({})).await;
    let old = app.api_key.clone();
    let k = cli_json(
        &app,
        &[
            "merchant",
            "rotate-key",
            &app.merchant_id,
            "--overlap-seconds",
            "3600",
            "--json",
        ],
    )
    .await;
    let new = k["api_key"].as_str().unwrap().to_owned();
    let until = k["old_key_valid_until_ms"].as_i64().unwrap();
    assert!(
        (now_ms() + 3_590_000..=now_ms() + 3_600_000).contains(&until),
        "{k}"
    );
    // A fresh daemon (no cached keys) shows what the database says.
    app.restart().await;
    assert_eq!(
        get_order(&app, &old, &id).await.0,
        200,
        "old key in its overlap"
    );
    assert_eq!(get_order(&app, &new, &id).await.0, 200, "new key");
    // The overlap ends at `until`, by the database's rule.
    let s = store(&app).await;
    let old_hash = sha256_hex(old.as_bytes());
    let at = |t| s.merchant_by_key_hash(&old_hash, t);
    assert_eq!(at(until - 1).await.unwrap().unwrap().id, app.merchant_id);
    assert!(at(until).await.unwrap().is_none(), "overlap over");

    // revoke-key --previous ends the overlap early and keeps the new key.
    cli(
        &app,
        &["merchant", "revoke-key", &app.merchant_id, "--previous"],
    )
    .await;
    app.restart().await;
    let (status, body) = get_order(&app, &old, &id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(get_order(&app, &new, &id).await.0, 200);

    // Without an overlap the replaced key stops at once.
    let k = cli_json(
        &app,
        &["merchant", "rotate-key", &app.merchant_id, "--json"],
    )
    .await;
    let newer = k["api_key"].as_str().unwrap();
    app.restart().await;
    assert_eq!(get_order(&app, &new, &id).await.0, 401);
    assert_eq!(get_order(&app, newer, &id).await.0, 200);
    s.close().await;
}

async fn a_disabled_merchant_is_refused_and_nothing_is_stored_called_or_sent(db: Db) {
    let Some((mut app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    let due_call = new_order(&app, &app.api_key, "D1", json!({})).await;
    let inbound = new_order(&app, &app.api_key, "D5", json!({"mode": "inbound"})).await;
    let hooked = new_order(&app, &app.api_key, "D2", json!({"notify_url": rx.url})).await;
    let resp = app
        .post_json(
            &format!("/v1/orders/{hooked}/cancel"),
            &app.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let (_, other_key) = app.another_merchant().await;

    cli(&app, &["merchant", "disable", &app.merchant_id]).await;
    app.restart().await;
    let footprint = (app.count("orders").await, app.count("webhook_outbox").await);
    let resp = app.create_order(&order_body("D3")).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "merchant_disabled", "{body}");
    let (status, body) = get_order(&app, &app.api_key, &due_call).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("merchant_disabled"))
    );
    let resp = app.get("/v1/webhooks/events", &app.api_key).await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .post_json(
            &format!("/v1/orders/{due_call}/cancel"),
            &app.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        (app.count("orders").await, app.count("webhook_outbox").await),
        footprint,
        "nothing stored"
    );
    assert_eq!(
        get_order(&app, &app.api_key, &due_call).await.1["error"]["code"],
        "merchant_disabled"
    );

    // No call is started for its pending order, no webhook is sent.
    let s = store(&app).await;
    let now = now_ms();
    assert!(s
        .claim_callback("node_t", now, now + 60_000)
        .await
        .unwrap()
        .is_none());
    let clock = Arc::new(FakeClock::at(now + 1000));
    let w = worker(&app, clock.clone()).await;
    assert_eq!(w.run_once().await.unwrap(), 0);
    assert!(rx.got().is_empty(), "nothing sent");
    // another merchant carries on
    new_order(&app, &other_key, "D4", json!({})).await;

    // enable: the API answers again, the call is due, the webhook is sent.
    cli(&app, &["merchant", "enable", &app.merchant_id]).await;
    app.restart().await;
    assert_eq!(get_order(&app, &app.api_key, &due_call).await.0, 200);
    let claimed = s
        .claim_callback("node_t", now, now + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, due_call, "the held order is called first");
    let offered = s.pending_inbound_orders("13800138000", now).await.unwrap();
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0].id, inbound);
    assert_eq!(w.run_once().await.unwrap(), 1);
    assert_eq!(rx.got().len(), 1);
    s.close().await;
}

/// The hex `v1=` values of a `Voicepay-Signature` header.
fn v1s(header: &str) -> Vec<&str> {
    header
        .split(',')
        .filter_map(|p| p.strip_prefix("v1="))
        .collect()
}

async fn a_rotated_webhook_secret_signs_twice_during_its_overlap_then_once(db: Db) {
    let Some((app, rx)) = spawn_app_with_receiver(db, quiet).await else {
        return;
    };
    let old = app.webhook_secret.clone();
    let r = cli_json(
        &app,
        &[
            "merchant",
            "rotate-webhook-secret",
            &app.merchant_id,
            "--overlap-seconds",
            "600",
            "--json",
        ],
    )
    .await;
    let new = r["webhook_secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let until = r["old_secret_signs_until_ms"].as_i64().unwrap();
    let (now_enc, old_enc): (String, String) = sqlx::query_as(
        "SELECT webhook_secret_enc, prev_webhook_secret_enc FROM merchants WHERE id = $1",
    )
    .bind(&app.merchant_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for sealed in [&now_enc, &old_enc] {
        assert!(sealed.starts_with("v1.") && !sealed.contains(&new) && !sealed.contains(&old));
    }

    let cancel = |id: String| {
        let app = &app;
        async move {
            let resp = app
                .post_json(&format!("/v1/orders/{id}/cancel"), &app.api_key, &json!({}))
                .await;
            assert_eq!(resp.status(), 200);
        }
    };
    cancel(new_order(&app, &app.api_key, "W1", json!({"notify_url": rx.url})).await).await;
    let t0 = now_ms() + 1000;
    assert!(t0 < until);
    let clock = Arc::new(FakeClock::at(t0));
    let w = worker(&app, clock.clone()).await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    let got = rx.got();
    let header = got[0].header("voicepay-signature");
    let t = t0 / 1000;
    assert_eq!(v1s(header).len(), 2, "{header}");
    verify(&new, header, &got[0].body, t).expect("the new secret verifies");
    verify(&old, header, &got[0].body, t).expect("the old secret verifies");
    assert_eq!(
        verify("whsec_other", header, &got[0].body, t),
        Err("bad signature")
    );

    // After the overlap: one signature, the new secret's.
    cancel(new_order(&app, &app.api_key, "W2", json!({"notify_url": rx.url})).await).await;
    clock.set(until);
    assert_eq!(w.run_once().await.unwrap(), 1);
    let got = rx.got();
    let header = got[1].header("voicepay-signature");
    let t = until / 1000;
    assert_eq!(v1s(header).len(), 1, "{header}");
    verify(&new, header, &got[1].body, t).expect("the new secret verifies");
    assert_eq!(verify(&old, header, &got[1].body, t), Err("bad signature"));
}
