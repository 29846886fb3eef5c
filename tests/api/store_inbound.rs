//! The inbound flow's wrong order codes in the store, on SQLite and
//! PostgreSQL: counted per caller ID per day, every concurrent increment
//! kept.

use voicepay::store::{now_ms, Store};
use voicepay_testkit::{on_both_stores, TestApp};

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

on_both_stores!(wrong_codes_are_counted_per_caller_id_and_day);
