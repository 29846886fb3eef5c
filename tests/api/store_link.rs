//! What the ISO 8583 link and refunds keep in the store, on SQLite and
//! PostgreSQL: STANs numbered by the database, store-and-forward reversals
//! leased to one node at a time, and refunds checked against the order's
//! balance in one transaction. "Nodes" are separate `Store` connections to
//! one database, as separate daemons would hold.

use std::collections::HashSet;
use time::macros::date;
use voicepay::domain::{OrderStatus, OriginalRequest, ResultCode, Stan};
use voicepay::store::{
    now_ms, NewReversal, RefundAnswer, RefundCreated, RefundError, RefundStatus, ReversalStatus,
    Store, Transition,
};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

async fn node(app: &TestApp) -> Store {
    Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
        .await
        .unwrap()
}

async fn new_order(app: &TestApp, reference: &str) -> String {
    let resp = app.create_order(&order_body(reference)).await;
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An order of 12345 fen taken through a call to `succeeded`.
async fn succeeded_order(app: &TestApp, store: &Store, reference: &str) -> String {
    use OrderStatus::*;
    let id = new_order(app, reference).await;
    for (from, to) in [(Pending, Calling), (Calling, InCall)] {
        let t = Transition {
            from,
            to,
            result: None,
            detail: None,
        };
        assert!(store.transition(&id, t, now_ms()).await.unwrap());
    }
    let held = store.start_authorization(&id, "PIN submitted", now_ms());
    assert!(held.await.unwrap().is_some());
    let done = Transition {
        from: Authorizing,
        to: Succeeded,
        result: Some(ResultCode::Approved),
        detail: None,
    };
    assert!(store.transition(&id, done, now_ms()).await.unwrap());
    id
}

// ---- STANs ----

async fn concurrent_stans_from_several_nodes_are_all_distinct(app: TestApp) {
    let nodes = [node(&app).await, node(&app).await, node(&app).await];
    let day = date!(2026 - 11 - 30);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..150 {
        let store = nodes[i % nodes.len()].clone();
        tasks.spawn(async move { store.next_stan(day).await.unwrap() });
    }
    let mut seen = HashSet::new();
    while let Some(stan) = tasks.join_next().await {
        let stan = stan.unwrap();
        assert!(seen.insert(stan), "STAN {stan} handed out twice");
    }
    let expected: HashSet<Stan> = (1..=150).map(|n| Stan::new(n).unwrap()).collect();
    assert_eq!(seen, expected, "the day's STANs are 000001..000150, no gap");
    // Another day numbers from 000001 again; this one goes on.
    let next_day = nodes[0].next_stan(date!(2026 - 12 - 01)).await.unwrap();
    assert_eq!(next_day.to_string(), "000001");
    let same_day = nodes[1].next_stan(day).await.unwrap();
    assert_eq!(same_day.to_string(), "000151");
}

async fn the_stan_after_999999_is_000001(app: TestApp) {
    let store = node(&app).await;
    sqlx::query("INSERT INTO stan_counters (day, last) VALUES ('2026-11-30', 999998)")
        .execute(&app.pool)
        .await
        .unwrap();
    let day = date!(2026 - 11 - 30);
    assert_eq!(store.next_stan(day).await.unwrap().to_string(), "999999");
    assert_eq!(store.next_stan(day).await.unwrap().to_string(), "000001");
}

// ---- Reversals ----

fn original(stan: u32) -> OriginalRequest {
    OriginalRequest {
        mti: "0200".into(),
        stan: Stan::new(stan).unwrap(),
        transmitted_at: "1130142301".into(),
        acquirer_id: "12345678".into(),
    }
}

fn reversal(order_id: &str, stan: u32) -> NewReversal<'_> {
    NewReversal {
        order_id,
        refund_id: None,
        original: original(stan),
        processing_code: "000000",
        amount: 12345,
    }
}

async fn a_reversal_is_recorded_once_per_original(app: TestApp) {
    let store = node(&app).await;
    let id = new_order(&app, "R1").await;
    let first = store
        .record_reversal(&reversal(&id, 7), 1_000)
        .await
        .unwrap();
    assert!(first.id.starts_with("rvs_"));
    assert_eq!(first.status, ReversalStatus::Pending);
    assert_eq!((first.attempts, first.next_attempt_at), (0, 1_000));
    assert_eq!(first.mti(), "0420");
    // The timeout and the dropped link both notice it; recovery again.
    let again = store
        .record_reversal(&reversal(&id, 7), 9_000)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.created_at, 1_000, "the first record stands");
    assert_eq!(app.count("pending_reversals").await, 1);
    // Another original of the same order is another reversal.
    store
        .record_reversal(&reversal(&id, 8), 1_001)
        .await
        .unwrap();
    let all = store.reversals_for(&id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].original, original(7));
    assert_eq!(all[0].amount, 12345);
    assert_eq!(all[0].processing_code, "000000");
}

async fn two_nodes_claiming_at_once_never_share_a_reversal(app: TestApp) {
    let (a, b) = (node(&app).await, node(&app).await);
    let id = new_order(&app, "R2").await;
    for stan in 1..=20 {
        a.record_reversal(&reversal(&id, stan), 1_000)
            .await
            .unwrap();
    }
    // Both nodes poll at once, again and again, until nothing is left
    // (PostgreSQL may hand out fewer than asked when rows are taken under
    // it; they come on the next poll).
    let mut leased: Vec<String> = Vec::new();
    loop {
        let (got_a, got_b) = tokio::join!(
            a.due_reversals("node-a", 2_000, 60_000, 7),
            b.due_reversals("node-b", 2_000, 60_000, 7)
        );
        let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
        if got_a.is_empty() && got_b.is_empty() {
            break;
        }
        leased.extend(got_a.into_iter().chain(got_b).map(|r| r.id));
    }
    let distinct: HashSet<_> = leased.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        leased.len(),
        "a reversal leased twice: {leased:?}"
    );
    assert_eq!(distinct.len(), 20, "every due reversal leased");
    // While leased, nobody else gets them; after the lease runs out (a
    // crashed node), another node does.
    assert!(b
        .due_reversals("node-b", 59_999, 120_000, 50)
        .await
        .unwrap()
        .is_empty());
    let taken_over = b
        .due_reversals("node-b", 60_000, 120_000, 50)
        .await
        .unwrap();
    assert_eq!(taken_over.len(), 20);
}

async fn an_unanswered_advice_is_repeated_as_0421_after_timeout_and_backoff(app: TestApp) {
    let store = node(&app).await;
    let id = new_order(&app, "R3").await;
    store
        .record_reversal(&reversal(&id, 9), 1_000)
        .await
        .unwrap();
    let due = store
        .due_reversals("node-a", 1_000, 31_000, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].mti(), "0420");
    // Another node may not send a row it does not hold.
    let sending = store.reversal_sending(&due[0], "node-b", 10_000, 2_000);
    assert!(!sending.await.unwrap());
    // Counted before it goes out: 10 s for the 0430, then 5 s.
    let sending = store.reversal_sending(&due[0], "node-a", 10_000, 2_000);
    assert!(sending.await.unwrap());
    store
        .note_reversal_error(&due[0].id, "no 0430 in 10 s")
        .await
        .unwrap();
    // Counted twice (a retry of the same call): once.
    let again = store.reversal_sending(&due[0], "node-a", 10_000, 2_000);
    assert!(!again.await.unwrap());
    let early = store.due_reversals("node-a", 16_999, 60_000, 10).await;
    assert!(early.unwrap().is_empty());
    let due = store
        .due_reversals("node-b", 17_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "due again for any node");
    assert_eq!((due[0].attempts, due[0].mti()), (1, "0421"));
    assert_eq!(due[0].last_error.as_deref(), Some("no 0430 in 10 s"));
    // A lease that ran out (the node stalled) may not send any more.
    let stale = store.reversal_sending(&due[0], "node-b", 10_000, 60_000);
    assert!(!stale.await.unwrap());
    let sending = store.reversal_sending(&due[0], "node-b", 10_000, 18_000);
    assert!(sending.await.unwrap());
    let r = store.reversals_for(&id).await.unwrap().remove(0);
    assert_eq!((r.attempts, r.next_attempt_at), (2, 38_000), "then 10 s");
}

async fn an_acknowledged_reversal_is_never_sent_again(app: TestApp) {
    let store = node(&app).await;
    let id = new_order(&app, "R4").await;
    store
        .record_reversal(&reversal(&id, 11), 1_000)
        .await
        .unwrap();
    let due = store
        .due_reversals("node-a", 1_000, 31_000, 10)
        .await
        .unwrap();
    assert!(store
        .acknowledge_reversal(&original(11), 1_500)
        .await
        .unwrap());
    assert!(
        !store
            .acknowledge_reversal(&original(11), 1_600)
            .await
            .unwrap(),
        "a duplicate 0430 changes nothing"
    );
    assert!(!store
        .acknowledge_reversal(&original(12), 1_600)
        .await
        .unwrap());
    let late = store.reversal_sending(&due[0], "node-a", 10_000, 1_700);
    assert!(!late.await.unwrap(), "an acknowledged reversal is not sent");
    let r = store.reversal_of(&original(11)).await.unwrap().unwrap();
    assert_eq!(r.status, ReversalStatus::Acknowledged);
    assert_eq!(r.acknowledged_at, Some(1_500));
    assert!(store
        .due_reversals("node-b", 10_000_000, 10_000_100, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_pending_reversal_survives_a_restart(mut app: TestApp) {
    let id = new_order(&app, "R5").await;
    {
        let store = node(&app).await;
        store
            .record_reversal(&reversal(&id, 13), 1_000)
            .await
            .unwrap();
        store
            .due_reversals("node-a", 1_000, 31_000, 10)
            .await
            .unwrap();
        store.close().await;
    }
    app.restart().await;
    let store = node(&app).await;
    let due = store
        .due_reversals("node-b", 31_000, 61_000, 10)
        .await
        .unwrap();
    assert_eq!(
        due.len(),
        1,
        "the dead node's reversal goes out from another"
    );
    assert_eq!(due[0].original, original(13));
    assert_eq!(due[0].order_id, id);
}

// ---- Refunds ----

fn created(r: Result<RefundCreated, RefundError>) -> voicepay::store::RefundRow {
    match r {
        Ok(RefundCreated::New(row)) => row,
        other => panic!("expected a new refund, got {other:?}"),
    }
}

async fn only_a_succeeded_order_is_refundable(app: TestApp) {
    let store = node(&app).await;
    let id = new_order(&app, "F1").await;
    let refused = store.create_refund(&id, 100, None, now_ms()).await;
    assert!(
        matches!(refused, Err(RefundError::NotRefundable)),
        "{refused:?}"
    );
    let missing = store.create_refund("ord_nope", 100, None, now_ms()).await;
    assert!(
        matches!(missing, Err(RefundError::OrderNotFound)),
        "{missing:?}"
    );
    let ok = succeeded_order(&app, &store, "F1b").await;
    for bad in [0, -5] {
        let refused = store.create_refund(&ok, bad, None, now_ms()).await;
        assert!(
            matches!(refused, Err(RefundError::InvalidAmount)),
            "{refused:?}"
        );
    }
    assert_eq!(app.count("refunds").await, 0, "nothing stored");
    let order = store.order(&ok).await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Succeeded);
}

async fn refunds_never_exceed_the_order_amount(app: TestApp) {
    let store = node(&app).await;
    let id = succeeded_order(&app, &store, "F2").await;
    let first = created(store.create_refund(&id, 10_000, None, 1_000).await);
    assert!(first.id.starts_with("rfd_"));
    assert_eq!(
        (first.status, first.amount),
        (RefundStatus::Pending, 10_000)
    );
    let over = store.create_refund(&id, 2_346, None, 2_000).await;
    assert!(
        matches!(over, Err(RefundError::ExceedsBalance { left: 2_345 })),
        "{over:?}"
    );
    assert_eq!(app.count("refunds").await, 1, "nothing stored");
    // A declined refund gives its amount back.
    let failed = RefundAnswer {
        resp_code: Some("05"),
        ..Default::default()
    };
    let settled = store.settle_refund(&first.id, RefundStatus::Failed, &failed, 3_000);
    let settled = settled.await.unwrap().unwrap();
    assert_eq!(
        (settled.status, settled.decided_at),
        (RefundStatus::Failed, Some(3_000))
    );
    let all = created(store.create_refund(&id, 12_345, None, 4_000).await);
    assert_eq!(
        store.refunded_amount(&id).await.unwrap(),
        0,
        "nothing given back yet"
    );
    let approved = RefundAnswer {
        rrn: Some("433412345678"),
        approval_code: Some("A1B2C3"),
        resp_code: Some("00"),
    };
    let done = store.settle_refund(&all.id, RefundStatus::Succeeded, &approved, 5_000);
    let done = done.await.unwrap().unwrap();
    assert_eq!(done.rrn.as_deref(), Some("433412345678"));
    assert_eq!(done.approval_code.as_deref(), Some("A1B2C3"));
    assert_eq!(store.refunded_amount(&id).await.unwrap(), 12_345);
    let none_left = store.create_refund(&id, 1, None, 6_000).await;
    assert!(matches!(
        none_left,
        Err(RefundError::ExceedsBalance { left: 0 })
    ));
    let listed: Vec<_> = store
        .refunds_for(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [first.id, all.id]);
    assert_eq!(
        store.order(&id).await.unwrap().unwrap().status(),
        OrderStatus::Succeeded
    );
}

async fn two_refunds_racing_for_the_last_balance_only_one_fits(app: TestApp) {
    let nodes = [
        node(&app).await,
        node(&app).await,
        node(&app).await,
        node(&app).await,
    ];
    for round in 0..4 {
        let id = succeeded_order(&app, &nodes[0], &format!("F3x{round}")).await;
        created(nodes[0].create_refund(&id, 2_345, None, 1_000).await);
        // 10000 fen left; eight refunds of 5000 race for it from four
        // nodes: two fit, the other six are refused.
        let mut race = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (store, id) = (nodes[i % nodes.len()].clone(), id.clone());
            race.spawn(async move { store.create_refund(&id, 5_000, None, 2_000).await });
        }
        let (mut wins, mut refused) = (0, 0);
        while let Some(r) = race.join_next().await {
            match r.unwrap() {
                Ok(RefundCreated::New(_)) => wins += 1,
                Err(RefundError::ExceedsBalance { left }) => {
                    assert!(left < 5_000, "refused with {left} fen left");
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((wins, refused), (2, 6), "round {round}");
        let total: i64 = nodes[1]
            .refunds_for(&id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.amount)
            .sum();
        assert_eq!(total, 12_345, "never more than the order's 12345 fen");
    }
}

async fn an_idempotency_key_returns_the_first_refund(app: TestApp) {
    let store = node(&app).await;
    let id = succeeded_order(&app, &store, "F4").await;
    let first = created(store.create_refund(&id, 3_000, Some("k1"), 1_000).await);
    match store.create_refund(&id, 3_000, Some("k1"), 2_000).await {
        Ok(RefundCreated::Existing(row)) => assert_eq!(row.id, first.id),
        other => panic!("expected the first refund, got {other:?}"),
    }
    assert_eq!(app.count("refunds").await, 1);
    created(store.create_refund(&id, 3_000, Some("k2"), 3_000).await);
    created(store.create_refund(&id, 3_000, None, 3_000).await);
    assert_eq!(app.count("refunds").await, 3);
}

async fn a_refund_settles_once(app: TestApp) {
    let store = node(&app).await;
    let id = succeeded_order(&app, &store, "F5").await;
    let r = created(store.create_refund(&id, 1_000, None, 1_000).await);
    assert!(store
        .refund_sent(&r.id, Stan::new(42).unwrap(), "1130142301")
        .await
        .unwrap());
    assert!(
        !store
            .refund_sent(&r.id, Stan::new(43).unwrap(), "1130142302")
            .await
            .unwrap(),
        "the request sent is the one recorded"
    );
    let none = RefundAnswer::default();
    let unknown = store.settle_refund(&r.id, RefundStatus::Unknown, &none, 2_000);
    let unknown = unknown.await.unwrap().unwrap();
    assert_eq!(
        (unknown.status, unknown.decided_at),
        (RefundStatus::Unknown, None)
    );
    assert_eq!(unknown.stan.as_deref(), Some("000042"));
    assert_eq!(unknown.transmitted_at.as_deref(), Some("1130142301"));
    let failed = store.settle_refund(&r.id, RefundStatus::Failed, &none, 3_000);
    assert!(failed.await.unwrap().is_some());
    for to in [
        RefundStatus::Succeeded,
        RefundStatus::Unknown,
        RefundStatus::Pending,
    ] {
        let late = store.settle_refund(&r.id, to, &none, 4_000).await.unwrap();
        assert!(late.is_none(), "{to:?} after failed");
    }
    let row = store.refund(&r.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.decided_at),
        (RefundStatus::Failed, Some(3_000))
    );
    assert_eq!(store.refunded_amount(&id).await.unwrap(), 0);
}

on_both_stores!(
    concurrent_stans_from_several_nodes_are_all_distinct,
    the_stan_after_999999_is_000001,
    a_reversal_is_recorded_once_per_original,
    two_nodes_claiming_at_once_never_share_a_reversal,
    an_unanswered_advice_is_repeated_as_0421_after_timeout_and_backoff,
    an_acknowledged_reversal_is_never_sent_again,
    a_pending_reversal_survives_a_restart,
    only_a_succeeded_order_is_refundable,
    refunds_never_exceed_the_order_amount,
    two_refunds_racing_for_the_last_balance_only_one_fits,
    an_idempotency_key_returns_the_first_refund,
    a_refund_settles_once,
);
