//! Resume points of live calls (`call_points`, migration 0019) on SQLite
//! and PostgreSQL: written at each step change, listed per node, taken
//! once for a resume, deleted when the call ends. No digit is stored.

use crate::store_lifecycle::new_order;
use voicepay::store::{now_ms, CallPoint, ResumeStep};
use voicepay_testkit::{on_both_stores, TestApp};

fn point(order_id: &str, step: ResumeStep) -> CallPoint {
    CallPoint {
        order_id: order_id.into(),
        node: "node-a".into(),
        channel_id: format!("vp-{order_id}-1"),
        attempt: 1,
        flow: "callback".into(),
        step,
        step_failures: 1,
        tries_left: 2,
        playback_seq: 4,
    }
}

async fn a_call_point_is_rewritten_per_step_and_taken_once(app: TestApp) {
    let (store, id) = new_order(&app, "P1").await;
    let now = now_ms();
    assert_eq!(
        store
            .save_call_point(&point(&id, ResumeStep::Confirm), now)
            .await
            .unwrap(),
        1
    );
    let pin = CallPoint {
        step_failures: 0,
        playback_seq: 6,
        ..point(&id, ResumeStep::Pin)
    };
    assert_eq!(store.save_call_point(&pin, now + 1).await.unwrap(), 2);

    let points = store.call_points("node-a").await.unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].point, pin);
    assert_eq!(points[0].seq, 2);
    assert!(store.call_points("node-b").await.unwrap().is_empty());

    // Two resumers with the same seq: exactly one takes it.
    assert!(store.take_call_point(&id, 2, now + 2).await.unwrap());
    assert!(!store.take_call_point(&id, 2, now + 2).await.unwrap());

    store.drop_call_point(&id).await.unwrap();
    assert!(store.call_points("node-a").await.unwrap().is_empty());
    store.drop_call_point(&id).await.unwrap();
    assert_eq!(app.count("call_points").await, 0);
}

on_both_stores!(a_call_point_is_rewritten_per_step_and_taken_once);
