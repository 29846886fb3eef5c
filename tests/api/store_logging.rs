//! sqlx's own logging stays out of the daemon's INFO and DEBUG logs: each
//! statement at TRACE (sqlx's default is DEBUG), and PostgreSQL's NOTICEs
//! (sqlx logs each at INFO, e.g. `relation "_sqlx_migrations" already
//! exists, skipping` at every start) not sent at all. PostgreSQL only:
//! SQLite runs its statements on a worker thread of its own, out of reach
//! of the test's log capture (its options are set the same way).

use voicepay::store::Store;
use voicepay_testkit::app::{fresh_postgres_db, postgres_base_url};

/// Opens and migrates the database at `url` twice (a daemon's second
/// start), with one query, and returns what was logged meanwhile.
async fn logged_by_two_starts(url: &str) -> String {
    let log = voicepay_testkit::log::capture();
    for _ in 0..2 {
        let store = Store::connect(url, 2, voicepay::views::webhook_body)
            .await
            .expect("store");
        store.migrate().await.expect("migrations");
        assert!(store.ping().await, "the database answers");
        store.close().await;
    }
    log.text()
}

fn assert_quiet(text: &str) {
    let loud: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sqlx::query") || l.contains("sqlx::postgres::notice"))
        .filter(|l| l.contains(" INFO ") || l.contains(" DEBUG "))
        .collect();
    assert!(loud.is_empty(), "sqlx at INFO or DEBUG: {loud:#?}");
    // Statements are still there for whoever turns TRACE on.
    assert!(
        text.lines()
            .any(|l| l.contains(" TRACE ") && l.contains("sqlx::query")),
        "no statement at TRACE:\n{text}"
    );
}

#[tokio::test]
async fn postgres_statements_and_notices_stay_out_of_info_and_debug() {
    let Some(base) = postgres_base_url() else {
        return;
    };
    let url = fresh_postgres_db(&base).await;
    assert_quiet(&logged_by_two_starts(&url).await);
}
