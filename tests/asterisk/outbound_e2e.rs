//! `ari.websocket = "outbound"` on the real lab Asterisk 22: Asterisk opens
//! the events socket to the daemon's `ari.listen` (the persistent
//! connection `scripts/asterisk` renders with
//! `VOICEPAY__ARI__WEBSOCKET=outbound`, README "Outbound ARI WebSocket"),
//! and a callback payment runs over it end to end.
//!
//! Runs when the lab was started with `VOICEPAY__ARI__WEBSOCKET=outbound`
//! (scripts/test restarts Asterisk that way for this test, then back to
//! inbound); otherwise it says so and skips, since the inbound lab has no
//! connection to serve the app.

use super::common::{assert_final, lab_daemon, phone_in, wait_ari_connected, DEBIT};
use std::time::Duration;
use voicepay::config::WebsocketMode;
use voicepay_testkit::lab;

#[tokio::test]
async fn debit_callback_succeeds_over_the_outbound_websocket() {
    if lab::lab_setting("VOICEPAY__ARI__WEBSOCKET") != "outbound" {
        eprintln!(
            "skipping: the lab runs inbound (VOICEPAY__ARI__WEBSOCKET=outbound scripts/asterisk restart)"
        );
        return;
    }
    let Some(lab) = lab::require_asterisk() else {
        return;
    };
    let _log = lab::log_window().await;
    let listen = lab::lab_setting("VOICEPAY__ARI__LISTEN");
    let app_name = lab::lab_setting("VOICEPAY__ARI__APP");
    // The connection Asterisk keeps: to our listen address, for our app.
    let shown = lab
        .cli("ari show outbound-websocket voicepay-out")
        .await
        .expect("asterisk cli");
    assert!(
        shown.contains(&format!("ws://{listen}/voicepay")) && shown.contains(&app_name),
        "Asterisk's outbound connection is not to {listen} for {app_name}:\n{shown}"
    );
    // The app is Asterisk's own (registered at start), so a daemon with an
    // inbound socket could not serve it: only Asterisk's connection does.
    let app = lab_daemon(app_name, |s| {
        s.ari.websocket = WebsocketMode::Outbound;
        s.ari.listen = listen.clone();
        s.telephony.callback_endpoint = "Local/{phone}@voicepay-lab".into();
        s.telephony.ring_timeout_secs = 4;
        s.telephony.max_attempts = 1;
    })
    .await;
    wait_ari_connected(&app).await;
    let phone = phone_in("1380017");
    lab.script_handset(&phone, "answer=1;delay=1;keys=1wwww805137;hold=30")
        .await
        .expect("script");
    let v = super::common::order(&app, &phone, DEBIT, "callback").await;
    let id = v["id"].as_str().expect("order id").to_string();
    let v = app.final_view(&id, Duration::from_secs(90)).await;
    let _ = lab.clear_handset(&phone).await;
    assert_final(&v, "succeeded", "approved", &["answered"]);
}
