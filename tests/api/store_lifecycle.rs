//! The order lifecycle in the store, on SQLite and PostgreSQL: conditional
//! transitions, so that of two workers racing for one order exactly one wins.

use voicepay::domain::{OrderStatus, ResultCode};
use voicepay::store::{now_ms, Store, StoreError, Transition};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

/// Creates an order (`reference`) through the API of `app`, and a second
/// store on its database: the store as the daemons' workers see it, and
/// the order's id. Shared by the store tests.
pub(crate) async fn new_order(app: &TestApp, reference: &str) -> (Store, String) {
    let resp = app.create_order(&order_body(reference)).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
            .await
            .unwrap(),
        id,
    )
}

fn step(from: OrderStatus, to: OrderStatus) -> Transition<'static> {
    Transition {
        from,
        to,
        result: None,
        detail: None,
    }
}

async fn the_happy_path_moves_step_by_step(app: TestApp) {
    use OrderStatus::*;
    let (store, id) = new_order(&app, "H1").await;
    for (from, to) in [(Pending, Calling), (Calling, InCall)] {
        assert!(
            store
                .transition(&id, step(from, to), now_ms())
                .await
                .unwrap(),
            "{from:?} -> {to:?}"
        );
    }
    // Into `authorizing` only through the matcher's own move.
    let held = store.start_authorization(&id, "PIN submitted", now_ms());
    assert_eq!(held.await.unwrap().unwrap().status(), Authorizing);
    let into = store.transition(&id, step(InCall, Authorizing), now_ms());
    assert!(matches!(
        into.await,
        Err(voicepay::store::StoreError::IllegalTransition { .. })
    ));
    let done = Transition {
        from: Authorizing,
        to: Succeeded,
        result: Some(ResultCode::Approved),
        detail: Some("auth 123456"),
    };
    assert!(store.transition(&id, done, now_ms()).await.unwrap());
    let row = store.order(&id).await.unwrap().unwrap();
    assert_eq!(row.status(), Succeeded);
    assert_eq!(row.result_code.as_deref(), Some("approved"));
    assert_eq!(row.resp_code.as_deref(), Some("00"));
    assert_eq!(store.events_for(&id).await.unwrap().len(), 5);
}

async fn a_stale_expected_status_moves_nothing(app: TestApp) {
    use OrderStatus::*;
    let (store, id) = new_order(&app, "S1").await;
    assert!(!store
        .transition(&id, step(Calling, InCall), now_ms())
        .await
        .unwrap());
    assert_eq!(store.order(&id).await.unwrap().unwrap().status(), Pending);
    assert_eq!(
        store.events_for(&id).await.unwrap().len(),
        1,
        "no event for a move that did not happen"
    );
}

async fn illegal_transitions_are_refused(app: TestApp) {
    use OrderStatus::*;
    let (store, id) = new_order(&app, "I1").await;
    for (from, to) in [
        (Pending, Succeeded),
        (Pending, Authorizing),
        (Succeeded, Pending),
        (Authorizing, Cancelled),
    ] {
        let err = store
            .transition(&id, step(from, to), now_ms())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::IllegalTransition { .. }),
            "{from:?} -> {to:?}"
        );
    }
}

async fn two_workers_racing_for_one_order_one_wins(app: TestApp) {
    use OrderStatus::*;
    for round in 0..5 {
        let (store, id) = new_order(&app, &format!("R{round}")).await;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .transition(&id, step(Pending, Calling), now_ms())
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "exactly one worker claims the order");
        assert_eq!(store.events_for(&id).await.unwrap().len(), 2);
    }
}

async fn cancel_and_authorization_race_cleanly(app: TestApp) {
    use OrderStatus::*;
    for round in 0..5 {
        let (store, id) = new_order(&app, &format!("C{round}")).await;
        store
            .transition(&id, step(Pending, InCall), now_ms())
            .await
            .unwrap();
        let (s1, i1) = (store.clone(), id.clone());
        let auth = tokio::spawn(async move {
            s1.start_authorization(&i1, "secret submitted", now_ms())
                .await
                .unwrap()
                .is_some()
        });
        let (s2, i2) = (store.clone(), id.clone());
        let cancel = tokio::spawn(async move {
            s2.stop_order(&i2, Cancelled, ResultCode::MerchantCancelled)
                .await
                .unwrap()
        });
        let authorized = auth.await.unwrap();
        let cancelled = cancel.await.unwrap().is_some();
        assert!(
            authorized ^ cancelled,
            "exactly one of authorize/cancel wins (round {round})"
        );
        let final_status = store.order(&id).await.unwrap().unwrap().status();
        assert_eq!(
            final_status,
            if authorized { Authorizing } else { Cancelled }
        );
    }
}

on_both_stores!(
    the_happy_path_moves_step_by_step,
    a_stale_expected_status_moves_nothing,
    illegal_transitions_are_refused,
    two_workers_racing_for_one_order_one_wins,
    cancel_and_authorization_race_cleanly,
);
