//! Graceful drain on SIGTERM (inbound ARI mode, `ari.websocket` as today):
//! the node stops taking new calls and lets the calls in progress end
//! normally before it closes its ARI socket (README "Rolling restarts").
//!
//! From the shutdown request on:
//! - the callback worker has stopped: no due callback order is claimed
//!   (nor a stopped node's call taken over); another node claims them;
//! - a new inbound call is hung up with cause 34 (congestion: SIP 503
//!   while it is not answered, so a dispatcher such as Kamailio's failure
//!   route sends it to another cell), and a new transfer call is handed
//!   back to the merchant with `failure`/`service_unavailable`; the
//!   parties of assisted calls are still taken (the second party of a
//!   live room must be able to join);
//! - `/readyz` answers 503 with `"draining": true`, so a balancer stops
//!   sending orders and calls here;
//! - the claims of the live calls are still renewed, the matcher and the
//!   issuer link still answer, webhooks are still delivered.
//!
//! The node then waits until its live calls have ended, at most
//! `telephony.drain_secs`, and stops as without a drain: what is still up
//! then is settled like a call lost with Asterisk.

use super::desk::Desk;
use super::transfer;
use crate::ari::{self, AriCommands, AriRest, HangupReason};
use crate::config::Settings;
use crate::telemetry::Readiness;
use std::time::Duration;
use tracing::Instrument;

/// How often the drain looks at the live calls.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Whether a shutdown request in inbound ARI mode (the daemon's own
/// WebSocket to Asterisk) drains this node's calls first: with a non-zero
/// `telephony.drain_secs`. In outbound mode the calls are handed over
/// instead (`calls::stop_after_drain`).
pub(super) fn applies(settings: &Settings) -> bool {
    settings.telephony.drain_secs > 0
}

/// Drains the node (see the module docs): marks it draining (desk and
/// `/readyz`), then waits for its live calls to end, at most
/// `telephony.drain_secs`. The callback worker must have stopped before
/// this is called, so no claim starts after it. Returns how many calls
/// were still up when it gave up (0: all ended normally).
pub(super) async fn drain<M>(desk: &Desk<M>, readiness: &Readiness) -> usize {
    desk.start_draining();
    readiness.set_draining(true);
    let limit = Duration::from_secs(desk.settings.telephony.drain_secs);
    let live = desk.live_calls().await;
    tracing::info!(
        live_calls = live,
        drain_secs = limit.as_secs(),
        "draining: no new calls; waiting for the calls in progress to end"
    );
    let started = tokio::time::Instant::now();
    let waited = wait_for_calls(desk, limit).await;
    let left = desk.live_calls().await;
    if waited {
        tracing::info!(
            waited_ms = started.elapsed().as_millis() as u64,
            "drained: every call ended"
        );
    } else {
        tracing::warn!(
            live_calls = left,
            drain_secs = limit.as_secs(),
            "drain time over: the calls still up are ended now"
        );
    }
    left
}

/// Waits until the node has no live call, at most `limit`; false when
/// calls were still up at the limit.
pub(super) async fn wait_for_calls<M>(desk: &Desk<M>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while desk.live_calls().await > 0 {
            tokio::time::sleep(LOOK_EVERY).await;
        }
    })
    .await
    .is_ok()
}

/// Turns away a new call from the dialplan while the node drains: an
/// inbound call is hung up with congestion (SIP 503 before the answer:
/// the dispatcher tries another cell), a transfer call goes back to the
/// merchant as `failure`/`service_unavailable`. False for other calls
/// (assisted parties, our own originates), which are taken as usual.
pub(super) async fn turn_away(rest: &AriRest, call: &ari::Call) -> bool {
    let flow = match &call.first {
        ari::Event::StasisStart { args, .. } => args.first().map(String::as_str),
        _ => None,
    };
    let channel_id = call.channel_id.as_str();
    match flow {
        Some("inbound") => {
            tracing::info!(channel = %channel_id, "draining: inbound call turned away");
            let _ = rest.hangup(channel_id, HangupReason::Congestion).await;
            true
        }
        Some("transfer") => {
            let span = super::desk::call_span("transfer", channel_id);
            async {
                tracing::info!("draining: transfer call handed back");
                transfer::hand_back(rest, channel_id, "failure", "service_unavailable").await;
            }
            .instrument(span)
            .await;
            true
        }
        _ => false,
    }
}
