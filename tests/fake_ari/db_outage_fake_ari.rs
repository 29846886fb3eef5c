//! A call that ends while the database refuses writes (the cells' db-loss
//! drill, issue #15), against the scripted fake ARI server. The caller has
//! already heard the result when the order's move fails: the call settles
//! the order once the database answers again, rather than leaving it
//! `in_call` until its claim runs out (then settled as a lost call: called
//! again, or an inbound order put back to `pending`).

use super::common::{daemon_on, finished, hung_up, new_order, originate_of, up, wait_plays};
use serde_json::json;
use voicepay_testkit::fake_ari::{event, request, FakeAri};

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
    let ch = format!("vp-{id}-1");
    request(&fake, originate_of(ch.clone())).await;
    fake.push(event(
        "StasisStart",
        json!({"args": ["callback", id], "channel": up(&ch)}),
    ));
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
