//! The inbound flow's wrong order codes in the store, on SQLite and
//! PostgreSQL: counted per caller ID per day, every concurrent increment
//! kept; and the pending inbound order a keyed code names (a withheld
//! caller's lookup).

use voicepay::store::{now_ms, Store};
use voicepay_testkit::{on_both_stores, order_body, TestApp};

async fn store(app: &TestApp) -> Store {
    Store::connect(&app.settings.database.url, 4, voicepay::views::webhook_body)
        .await
        .unwrap()
}

async fn wrong_codes_are_counted_per_caller_id_and_day(app: TestApp) {
    let store = store(&app).await;
    let (a, b) = ("13700000001", "13700000002");
    assert_eq!(store.order_code_tries(a, "2026-11-30").await.unwrap(), 0);
    for n in 1..=3 {
        let got = store
            .record_wrong_order_code(a, "2026-11-30", now_ms())
            .await
            .unwrap();
        assert_eq!(got, n);
    }
    assert_eq!(store.order_code_tries(a, "2026-11-30").await.unwrap(), 3);
    assert_eq!(store.order_code_tries(b, "2026-11-30").await.unwrap(), 0);
    assert_eq!(store.order_code_tries(a, "2026-12-01").await.unwrap(), 0);
    // Calls from one caller ID at once: no increment is lost.
    let racing = (0..8).map(|_| {
        let s = store.clone();
        tokio::spawn(async move {
            s.record_wrong_order_code(b, "2026-11-30", now_ms())
                .await
                .unwrap()
        })
    });
    let mut seen: Vec<i64> = Vec::new();
    for t in racing {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=8).collect::<Vec<i64>>());
    assert_eq!(store.order_code_tries(b, "2026-11-30").await.unwrap(), 8);
}

/// The code names only a `pending` inbound order: not a transfer order's
/// code, not an unknown one, not an order that left `pending`.
async fn an_order_code_names_its_pending_inbound_order_only(app: TestApp) {
    let store = store(&app).await;
    let mut codes = Vec::new();
    for (reference, mode, field) in [
        ("SC1", "inbound", "order_code"),
        ("SC2", "transfer", "transfer_code"),
    ] {
        let mut body = order_body(reference);
        body["mode"] = mode.into();
        let res = app.create_order(&body).await;
        assert_eq!(res.status(), 201);
        let v: serde_json::Value = res.json().await.unwrap();
        let code = v[field].as_str().unwrap().to_owned();
        codes.push((v["id"].as_str().unwrap().to_owned(), code));
    }
    let (inbound, code) = &codes[0];
    let found = store
        .pending_inbound_order_by_code(code, now_ms())
        .await
        .unwrap();
    assert_eq!(found.map(|o| o.id).as_ref(), Some(inbound));
    let transfer_code = &codes[1].1;
    for other in [transfer_code.as_str(), "", "1234567"] {
        let found = store
            .pending_inbound_order_by_code(other, now_ms())
            .await
            .unwrap();
        assert!(found.is_none(), "{other:?}");
    }
    let now = now_ms();
    let claimed = store
        .claim_live_call(inbound, "node-t", "ch-1", "test call", now, now + 60_000)
        .await
        .unwrap();
    assert!(claimed.is_some());
    let found = store
        .pending_inbound_order_by_code(code, now_ms())
        .await
        .unwrap();
    assert!(found.is_none(), "an order in a call is no longer pending");
}

on_both_stores!(
    wrong_codes_are_counted_per_caller_id_and_day,
    an_order_code_names_its_pending_inbound_order_only
);
