//! The API layer, no Asterisk: the merchant API and the store on SQLite and
//! PostgreSQL (each both-stores test runs once per database; PostgreSQL
//! only with `VOICEPAY_TEST_DATABASE_URL`), the matcher with the stub
//! issuer, webhooks to a real receiver, the order status stream, the demo
//! page's backend on its own listener, the `voicepay` binary's commands,
//! the `[limits]`, refunds, the Python ISO 8583 issuer peer's self-test, and
//! the ISO 8583 link against that peer.

mod api_bindings;
mod api_orders;
mod assisted_capture;
mod cli;
mod contract;
mod db_outage;
mod demo;
mod iso8583_daemon;
mod iso8583_issuer;
mod iso8583_link;
mod iso8583_peer;
mod key_lifecycle;
mod limits;
mod matcher;
mod matcher_rig;
mod order_events;
mod refunds;
mod store_call_points;
mod store_calls;
mod store_inbound;
mod store_lifecycle;
mod store_link;
mod store_logging;
mod webhook_targets;
mod webhooks;

/// `voicepay ARGS` against `app`'s database and keys, as an operator runs
/// it next to a running daemon; asserts success.
pub(crate) async fn operator_cli(
    app: &voicepay_testkit::TestApp,
    args: &[&str],
) -> std::process::Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_voicepay"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VOICEPAY__") || k == "VOICEPAY_CONFIG" {
            c.env_remove(k);
        }
    }
    c.env("VOICEPAY__DATABASE__URL", &app.settings.database.url)
        .env("VOICEPAY__CRYPTO__KEY_FILE", &app.settings.crypto.key_file)
        .args(args);
    let out = c.output().await.unwrap();
    assert!(
        out.status.success(),
        "voicepay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
