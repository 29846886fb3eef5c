//! A call that ends while the database refuses writes (the cells' db-loss
//! drill, issue #15), against the scripted fake ARI server. The caller has
//! already heard the result when the order's move fails: the call settles
//! the order once the database answers again, rather than leaving it
//! `in_call` until its claim runs out (then settled as a lost call: called
//! again, or an inbound order put back to `pending`). And an inbound call
//! that reaches a node cut off from its database is refused unanswered,
//! for a dispatcher to send it to another cell.

use super::common::{
    callback_answered, daemon_on, dial_in, finished, hung_up, inbound_order, new_order, up,
    wait_plays, CALLER,
};
use sqlx::Connection;
use std::time::Duration;
use voicepay_testkit::fake_ari::{request, FakeAri};
use voicepay_testkit::{spawn_app_with, Db};

/// From here every update of an order fails, as with the database gone
/// (SQLite aborts the statement); reads still work.
async fn refuse_order_updates(pool: &sqlx::AnyPool) {
    sqlx::query(
        "CREATE TRIGGER outage BEFORE UPDATE ON orders \
         BEGIN SELECT RAISE(ABORT, 'database unavailable'); END",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_call_that_ends_while_the_database_refuses_writes_settles_its_order_afterwards() {
    let fake = FakeAri::start().await;
    let app = daemon_on(&fake, |s| {
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.max_attempts = 1;
        s.telephony.machine_detection.enabled = false;
    })
    .await;
    let id = new_order(&app, "DB1").await;
    let ch = callback_answered(&fake, &id).await;
    app.order_until(&id, |v| v["status"] == "in_call").await;

    // The database goes; the cardholder declines (key 2) and hears so.
    refuse_order_updates(&app.pool).await;
    fake.press(&up(&ch), "2");
    let p = wait_plays(&fake, &ch, 2).await;
    let closing = &p[1];
    assert!(
        closing
            .1
            .iter()
            .any(|m| m.ends_with("fail-caller_cancelled")),
        "{p:#?}"
    );
    // The closing prompt plays out and the call is hung up: the order's
    // move (issued with the prompt, before the hang-up) has failed by now.
    finished(&fake, &ch, &closing.0);
    hung_up(&fake, &ch).await;
    assert_eq!(app.order_view(&id).await["status"], "in_call");

    // The database is back: the order ends as the caller was told, on its
    // one call, and no other call is placed.
    sqlx::query("DROP TRIGGER outage")
        .execute(&app.pool)
        .await
        .unwrap();
    let v = app.order_until(&id, |v| v["status"] == "failed").await;
    assert_eq!(v["result"]["code"], "caller_cancelled", "{v:#}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "{v:#}");
    let originates = fake
        .rest_calls()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&format!("/ari/channels/vp-{id}-")))
        .filter(|r| !r.path[format!("/ari/channels/vp-{id}-").len()..].contains('/'))
        .count();
    assert_eq!(originates, 1);
}

/// PostgreSQL (`VOICEPAY_TEST_DATABASE_URL`; skipped without it, except
/// under `CI=true`): the daemon is cut off from its database (no new
/// connection allowed, its open ones ended) when a caller with a pending
/// inbound order dials in. Nothing is answered or said, the channel is hung
/// up with cause 34 (Asterisk answers the carrier 503), and the order is
/// left as it was, for the call that reaches another cell.
#[tokio::test]
async fn a_node_cut_off_from_its_database_refuses_an_inbound_call_unanswered() {
    let fake = FakeAri::start().await;
    let ari = fake.settings();
    let Some(app) = spawn_app_with(Db::Postgres, move |s| {
        s.ari = ari;
        s.inbound.require_order_code = false;
    })
    .await
    else {
        return;
    };
    fake.wait_connections(1, Duration::from_secs(10)).await;
    let (id, _) = inbound_order(&app, "DB2", CALLER).await;

    // From the server's admin database: a database cannot shut itself.
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let base = std::env::var("VOICEPAY_TEST_DATABASE_URL").unwrap();
    let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
    for sql in [
        format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"),
        format!(
            "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }

    let ch = "1700000000.1";
    dial_in(&fake, ch, CALLER);
    let hangup = request(&fake, |r| {
        r.method == "DELETE" && r.path == format!("/ari/channels/{ch}")
    })
    .await;
    assert_eq!(hangup.param("reason"), Some("congestion"));
    let calls = fake.rest_calls();
    let touched: Vec<_> = calls
        .iter()
        .filter(|r| r.path.starts_with(&format!("/ari/channels/{ch}/")))
        .collect();
    assert!(touched.is_empty(), "answered or played to: {touched:#?}");

    sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    let v = app.order_view(&id).await;
    assert_eq!(v["status"], "pending", "{v:#}");
    assert_eq!(v["attempts"].as_array().map(Vec::len), Some(0), "{v:#}");
}
