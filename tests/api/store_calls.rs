//! Callback claims and call attempts in the store, on SQLite and PostgreSQL:
//! a due order is claimed once, however many workers ask; a retry waits for
//! its time; attempts are recorded per channel.

use crate::store_lifecycle::new_order;
use voicepay::domain::OrderStatus;
use voicepay::store::{now_ms, Store};
use voicepay_testkit::{on_both_stores, TestApp};

/// Node `node-a` claims the due callback (that of `id`) and places its
/// first call at `now`: attempt 1 on channel `vp-{id}-1`, returned.
async fn first_call(store: &Store, id: &str, now: i64) -> String {
    store
        .claim_callback("node-a", now, now + 60_000)
        .await
        .unwrap()
        .expect("due");
    let channel = format!("vp-{id}-1");
    store.insert_attempt(id, 1, &channel, now).await.unwrap();
    channel
}

async fn a_due_order_is_claimed_once_and_retried_on_schedule(app: TestApp) {
    let (store, id) = new_order(&app, "C1").await;
    let now = now_ms();
    let claimed = store
        .claim_callback("node-a", now, now + 60_000)
        .await
        .unwrap()
        .expect("the pending callback order is due");
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.status(), OrderStatus::Calling);
    assert_eq!(claimed.attempts, 1);
    assert!(store
        .claim_callback("node-b", now, now + 60_000)
        .await
        .unwrap()
        .is_none());

    let channel = format!("vp-{id}-1");
    store.insert_attempt(&id, 1, &channel, now).await.unwrap();
    let active = store.active_calls("node-a").await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].channel_id.as_deref(), Some(channel.as_str()));
    assert!(store.active_calls("node-b").await.unwrap().is_empty());
    store
        .attempt_ended(&channel, "no_answer", Some("19"), now)
        .await
        .unwrap();

    assert!(store
        .retry_callback_later(&id, now + 60_000, "no_answer", now)
        .await
        .unwrap());
    assert!(store
        .claim_callback("node-a", now + 1_000, now + 61_000)
        .await
        .unwrap()
        .is_none());
    let again = store
        .claim_callback("node-b", now + 60_000, now + 120_000)
        .await
        .unwrap()
        .expect("due again after the retry interval");
    assert_eq!(again.attempts, 2);
    let attempts = store.attempts_for(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("no_answer"));
}

async fn racing_workers_claim_each_order_exactly_once(app: TestApp) {
    let mut ids = Vec::new();
    let mut store = None;
    for n in 0..5 {
        let (s, id) = new_order(&app, &format!("R{n}")).await;
        ids.push(id);
        store = Some(s);
    }
    let store = store.unwrap();
    let now = now_ms();
    let claims = (0..8).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(o) = store
                .claim_callback(&format!("w{w}"), now, now + 60_000)
                .await
                .unwrap()
            {
                got.push(o.id);
            }
            got
        })
    });
    let mut claimed: Vec<String> = Vec::new();
    for c in claims {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids);
}

async fn claim_of(app: &TestApp, id: &str) -> (Option<String>, Option<i64>) {
    sqlx::query_as("SELECT claimed_by, claim_until FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A live node renews its own claims on orders still in a call; another
/// node's stale claim, an order that left its call and a claim that is
/// already longer are left alone.
async fn a_node_renews_only_its_own_live_claims(app: TestApp) {
    let mut store = None;
    for n in 0..3 {
        store = Some(new_order(&app, &format!("N{n}")).await.0);
    }
    let store = store.unwrap();
    let now = now_ms();
    let mine = store
        .claim_callback("node-a", now, now + 60_000)
        .await
        .unwrap()
        .unwrap()
        .id;
    // Another node's claim that ran out (that node stopped).
    let stale = store
        .claim_callback("node-b", now, now - 1_000)
        .await
        .unwrap()
        .unwrap()
        .id;
    // Ours once, but back in the queue since (no claim any more).
    let requeued = store
        .claim_callback("node-a", now, now + 60_000)
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(store
        .retry_callback_later(&requeued, now + 60_000, "no_answer", now)
        .await
        .unwrap());
    let all = vec![mine.clone(), stale.clone(), requeued.clone()];

    let until = now + 120_000;
    assert_eq!(store.renew_claims("node-a", &all, until).await.unwrap(), 1);
    assert_eq!(
        claim_of(&app, &mine).await,
        (Some("node-a".into()), Some(until))
    );
    assert_eq!(
        claim_of(&app, &stale).await,
        (Some("node-b".into()), Some(now - 1_000))
    );
    assert_eq!(claim_of(&app, &requeued).await, (None, None));
    // Never shortened.
    assert_eq!(
        store
            .renew_claims("node-a", &all, now + 90_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(claim_of(&app, &mine).await.1, Some(until));
    // Only the other node's claim is stale.
    let stale_now: Vec<String> = store
        .stale_claims(now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.call.order_id)
        .collect();
    assert_eq!(stale_now, vec![stale]);
    // Nor does node-b's renewal of someone else's order touch it, once
    // node-a has taken it over; an empty list is a no-op.
    let claim = store.stale_claims(now, 10).await.unwrap().remove(0);
    assert!(store
        .take_over_claim(&claim, "node-a", now + 60_000, now)
        .await
        .unwrap());
    assert_eq!(store.renew_claims("node-b", &all, until).await.unwrap(), 0);
    assert_eq!(store.renew_claims("node-a", &[], until).await.unwrap(), 0);
}

async fn a_moved_call_keeps_its_attempt_row_under_the_new_channel(app: TestApp) {
    let (store, id) = new_order(&app, "M1").await;
    let now = now_ms();
    let old = first_call(&store, &id, now).await;
    assert!(store
        .attempt_moved(&id, &old, "1712345678.9", now)
        .await
        .unwrap());
    // Once only, and never another order's row.
    assert!(!store
        .attempt_moved(&id, &old, "1712345678.9", now)
        .await
        .unwrap());
    assert!(!store
        .attempt_moved("ord_other", "1712345678.9", "x", now)
        .await
        .unwrap());
    assert!(store.call_placed_for(&id, "1712345678.9").await.unwrap());
    assert!(!store.call_placed_for(&id, &old).await.unwrap());
    let active = store.active_calls("node-a").await.unwrap();
    assert_eq!(active[0].channel_id.as_deref(), Some("1712345678.9"));
    let attempts = store.attempts_for(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].channel_id, "1712345678.9");
    let detail = format!("call moved from channel {old} to 1712345678.9 (transfer)");
    assert_eq!(store.count_events(&id, "call", &detail).await.unwrap(), 1);
    // An ended attempt no longer moves.
    store
        .attempt_ended("1712345678.9", "answered", Some("approved"), now)
        .await
        .unwrap();
    assert!(!store
        .attempt_moved(&id, "1712345678.9", "later", now)
        .await
        .unwrap());
}

/// The answer of a callback is one write: the attempt answered, `calling`
/// → `in_call` with its event, the order as moved; a second answer (or one
/// after the order stopped ringing) moves nothing and keeps the first time.
async fn an_answered_callback_moves_the_order_and_its_attempt_in_one_write(app: TestApp) {
    let (store, id) = new_order(&app, "A1").await;
    let now = now_ms();
    let channel = first_call(&store, &id, now).await;
    let order = store
        .answer_callback(&id, &channel, now + 5)
        .await
        .unwrap()
        .expect("the calling order moves");
    assert_eq!(order.id, id);
    assert_eq!(order.status(), OrderStatus::InCall);
    assert_eq!(order.updated_at, now + 5);
    let stored = store.order(&id).await.unwrap().unwrap();
    assert_eq!(stored.status(), OrderStatus::InCall);
    assert_eq!(
        store.attempts_for(&id).await.unwrap()[0].answered_at,
        Some(now + 5)
    );
    let moves = |events: &[voicepay::store::EventRow]| {
        events
            .iter()
            .filter(|e| {
                e.from_status == Some(OrderStatus::Calling)
                    && e.to_status == Some(OrderStatus::InCall)
            })
            .count()
    };
    assert_eq!(moves(&store.events_for(&id).await.unwrap()), 1);
    // Again: nothing moves, the first answer's time stays, no second event.
    assert!(store
        .answer_callback(&id, &channel, now + 9)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.attempts_for(&id).await.unwrap()[0].answered_at,
        Some(now + 5)
    );
    assert_eq!(moves(&store.events_for(&id).await.unwrap()), 1);

    // An order cancelled while ringing is not moved; its attempt is still
    // marked answered (the cardholder did pick up).
    let (store, other) = new_order(&app, "A2").await;
    let ch2 = first_call(&store, &other, now).await;
    store
        .stop_order(
            &other,
            OrderStatus::Cancelled,
            voicepay::domain::ResultCode::MerchantCancelled,
        )
        .await
        .unwrap()
        .expect("cancelled while ringing");
    assert!(store
        .answer_callback(&other, &ch2, now + 7)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.order(&other).await.unwrap().unwrap().status(),
        OrderStatus::Cancelled
    );
    assert_eq!(
        store.attempts_for(&other).await.unwrap()[0].answered_at,
        Some(now + 7)
    );
}

/// The matcher's first read and its move: the order with whether the
/// channel was placed for it, in one read; the move into `authorizing`
/// counts the attempt and writes its `bank` note in the same write, and a
/// second attempt (after a wrong secret) is number 2.
async fn the_move_into_authorizing_counts_the_attempt_and_writes_its_note(app: TestApp) {
    let (store, id) = new_order(&app, "M1").await;
    let now = now_ms();
    let channel = first_call(&store, &id, now).await;
    store
        .answer_callback(&id, &channel, now)
        .await
        .unwrap()
        .expect("answered");
    let (order, placed) = store
        .order_with_call(&id, &channel)
        .await
        .unwrap()
        .expect("the order");
    assert_eq!((order.id.as_str(), placed), (id.as_str(), true));
    let (_, placed) = store
        .order_with_call(&id, "vp-someone-else-1")
        .await
        .unwrap()
        .unwrap();
    assert!(!placed, "a channel not placed for the order");
    assert!(store
        .order_with_call("ord_000000000000000000000000", &channel)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .tries_today(&order.card_fp, "no-such-phone", "2026-12-01")
            .await
            .unwrap(),
        (0, 0)
    );

    let note = |n: i64| Some(format!("authorize attempt {n}"));
    let (moved, n) = store
        .start_authorization_attempt(&id, "PIN submitted", now + 1, note)
        .await
        .unwrap()
        .expect("in_call moves");
    assert_eq!((moved.status(), n), (OrderStatus::Authorizing, 1));
    // Taken already: nothing moves, no second note.
    assert!(store
        .start_authorization_attempt(&id, "PIN submitted", now + 2, note)
        .await
        .unwrap()
        .is_none());
    let back = voicepay::store::Transition {
        from: OrderStatus::Authorizing,
        to: OrderStatus::InCall,
        result: None,
        detail: Some("wrong secret"),
    };
    assert!(store.transition(&id, back, now + 3).await.unwrap());
    let (_, n) = store
        .start_authorization_attempt(&id, "PIN submitted", now + 4, note)
        .await
        .unwrap()
        .expect("in_call again");
    assert_eq!(n, 2);
    assert_eq!(store.authorization_attempts(&id).await.unwrap(), 2);
    let notes: Vec<String> = store
        .events_for(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "bank")
        .filter_map(|e| e.detail)
        .collect();
    assert_eq!(notes, ["authorize attempt 1", "authorize attempt 2"]);
}

/// A node settling its own call late (the database was away when the call
/// ended) moves the order only while it still holds the claim: once
/// another node took the claim over, the late move changes nothing.
async fn a_late_settle_moves_the_order_only_while_the_node_holds_its_claim(app: TestApp) {
    use voicepay::domain::ResultCode;
    use voicepay::store::Transition;
    let failed = || Transition {
        from: OrderStatus::InCall,
        to: OrderStatus::Failed,
        result: Some(ResultCode::InputTimeout),
        detail: None,
    };
    // Taken over: node-a's claim ran out, node-b took it.
    let (store, id) = new_order(&app, "L1").await;
    let now = now_ms();
    let channel = first_call(&store, &id, now).await;
    store.answer_callback(&id, &channel, now + 5).await.unwrap();
    let claim = store
        .stale_claims(now + 3_600_000, 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claim.call.order_id, id);
    assert!(store
        .take_over_claim(&claim, "node-b", now + 3_700_000, now + 3_600_000)
        .await
        .unwrap());
    assert!(!store
        .transition_claimed(&id, "node-a", failed(), now + 3_600_001)
        .await
        .unwrap());
    let order = store.order(&id).await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::InCall);
    assert_eq!(claim_of(&app, &id).await.0.as_deref(), Some("node-b"));
    // Still its own: the late move settles it, with its result.
    let (store, mine) = new_order(&app, "L2").await;
    let channel = first_call(&store, &mine, now).await;
    store
        .answer_callback(&mine, &channel, now + 5)
        .await
        .unwrap();
    assert!(store
        .transition_claimed(&mine, "node-a", failed(), now + 10)
        .await
        .unwrap());
    let order = store.order(&mine).await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Failed);
    assert_eq!(order.result_code.as_deref(), Some("input_timeout"));
}

on_both_stores!(
    a_late_settle_moves_the_order_only_while_the_node_holds_its_claim,
    an_answered_callback_moves_the_order_and_its_attempt_in_one_write,
    the_move_into_authorizing_counts_the_attempt_and_writes_its_note,
    a_due_order_is_claimed_once_and_retried_on_schedule,
    racing_workers_claim_each_order_exactly_once,
    a_node_renews_only_its_own_live_claims,
    a_moved_call_keeps_its_attempt_row_under_the_new_channel,
);
