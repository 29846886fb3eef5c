//! Payment calls: the flows that turn orders into phone calls and phone
//! calls into verified payments (DESIGN.md "Payment flows").
//!
//! - [`desk`]: what the flows of one node share: its calls and their
//!   claims, the call permits, the ARI connection state, the call tasks.
//! - [`callback`]: claim due callback orders, originate, retry.
//! - [`transfer`]: a call centre's live call with a one-time code, handed
//!   back to the merchant's dialplan with the result.
//! - [`inbound`]: a cardholder dialling the access number, found by caller ID.
//! - [`assisted`]: the cardholder and the merchant's agent in a bridge we
//!   own; the secret captured from the cardholder alone on request.
//! - [`line`](mod@line): a call's channel and events, following the call when a
//!   masquerade (an attended transfer into the app) moves it onto a new
//!   channel.
//! - `live`: the prompts and key entry transfer and inbound run outside
//!   the IVR.
//! - `session`: one order's IVR on a channel, which every flow ends in;
//!   [`runner`] drives the call: ARI events ⇄ the pure IVR ⇄ commands.
//! - `settle`: calls that ended without a bank decision (unanswered, lost).
//! - [`claims`]: renewing this node's claims, taking over stopped nodes'.
//! - [`reconcile`]: after a (re)connect, orders whose call nobody drives.
//!
//! [`start`] runs it all for `voicepay serve` when ARI is configured: the
//! ARI client, the supervisor that consumes its notices (readiness,
//! reconciliation, one task per call), the callback worker and the claim
//! renewals.

pub mod assisted;
pub mod callback;
pub mod claims;
pub mod desk;
pub mod inbound;
pub mod line;
mod live;
#[cfg(test)]
mod placeholder;
pub mod points;
pub mod reconcile;
pub mod runner;
mod session;
mod settle;
pub mod transfer;

pub use desk::Desk;
pub use runner::{CallEnd, CallRunner, Hooks, Ran};

use crate::ari::{self, AriClient, AriCommands, HangupReason, Notice};
use crate::config::{Settings, WebsocketMode};
use crate::matcher::Matcher;
use crate::store::Store;
use crate::telemetry::Readiness;
use anyhow::Context;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Whether this configuration runs calls: ARI is switched on by giving it a
/// password (`ari.password`; Asterisk's ARI always requires one), so a
/// daemon without telephony settings serves the API alone and never touches
/// an order's call state.
pub fn enabled(settings: &Settings) -> bool {
    !settings.ari.password.is_empty()
}

/// What the call code runs on, handed over by the wiring ([`crate::app`]).
pub struct Parts<M> {
    /// `[ari]` and `[telephony]` are read from here.
    pub settings: Arc<Settings>,
    /// Orders and their call attempts.
    pub store: Store,
    /// Where keyed secrets go.
    pub matcher: Arc<M>,
    /// Told whether ARI is connected.
    pub readiness: Arc<Readiness>,
}

/// Starts the ARI client, the supervisor, the callback worker and the
/// claim renewals. The returned task ends after `shutdown` once the socket
/// is closed and every call task has ended: closing the socket ends every
/// call's event stream, so the calls end on their own (settled like any
/// call lost with Asterisk when they had no decision yet), while the store
/// and the matcher are still open. With `ari.websocket = "outbound"` the
/// calls are handed over first instead ([`hand_over`]).
///
/// # Errors
/// When the ARI client cannot be built from `[ari]` (a bad URL).
pub fn start<M: Matcher + 'static>(
    parts: Parts<M>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    // Closed by `stop_ari` once the calls are dealt with.
    let ari_stop = CancellationToken::new();
    let client = AriClient::start(&parts.settings.ari, ari_stop.clone())
        .context("starting the ARI client")?;
    parts.readiness.set_ari(Some(false));
    let desk = Desk::new(
        parts.store,
        parts.settings,
        client.rest.clone(),
        parts.matcher,
    );
    let readiness = parts.readiness;
    let renewals = tokio::spawn(claims::keep_claims(desk.clone(), shutdown.clone()));
    let worker = tokio::spawn(callback::run_worker(desk.clone(), shutdown.clone()));
    tokio::spawn(stop_ari(desk.clone(), shutdown.clone(), ari_stop));
    Ok(tokio::spawn(async move {
        supervise(&readiness, client, &desk, shutdown).await;
        // Both end with `shutdown`; a panic in either is already logged.
        let _ = worker.await;
        let _ = renewals.await;
        desk.calls_ended().await;
    }))
}

/// On `shutdown`: deals with the live calls as the events socket's mode
/// requires, then closes the ARI client (`ari_stop`).
async fn stop_ari<M>(desk: Arc<Desk<M>>, shutdown: CancellationToken, ari_stop: CancellationToken) {
    shutdown.cancelled().await;
    match desk.settings.ari.websocket {
        WebsocketMode::Outbound => hand_over(&desk),
        // Today's behaviour: the socket closes, the calls end with it.
        WebsocketMode::Inbound => {}
    }
    ari_stop.cancel();
}

/// `ari.websocket = "outbound"`: every live call saves its point and is
/// left up in Asterisk, which keeps the app and queues the calls' events
/// until the next run connects and resumes them (README "Daemon restarts
/// that drop no call"). Nothing is hung up or settled. Called before the
/// socket closes: a call task sees the hand-over before its stream's end.
fn hand_over<M>(desk: &Desk<M>) {
    tracing::info!("handing the live calls over to the next run (ari.websocket = outbound)");
    desk.handover.cancel();
}

/// Consumes the client's notices in order until shutdown.
async fn supervise<M: Matcher + 'static>(
    readiness: &Readiness,
    mut client: AriClient,
    desk: &Arc<Desk<M>>,
    shutdown: CancellationToken,
) {
    let ready = |up: bool| readiness.set_ari(Some(up));
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = client.notices.recv() => match n {
                Some(n) => n,
                None => break,
            },
        };
        match notice {
            Notice::Connected {
                entity_id,
                asterisk_restarted,
                channels,
            } => {
                tracing::info!(%entity_id, asterisk_restarted, channels = channels.len(), "ARI connected");
                reconcile::reconcile(desk, asterisk_restarted, &channels).await;
                ready(true);
                desk.set_connected(true);
            }
            Notice::Disconnected { reason } => {
                tracing::warn!(%reason, "ARI disconnected");
                ready(false);
                desk.set_connected(false);
            }
            Notice::ConnectFailed { error, retry_in } => {
                tracing::warn!(%error, ?retry_in, "ARI connection failed");
                ready(false);
                desk.set_connected(false);
            }
            Notice::Call(call) => route(desk, &client.rest, call).await,
            // Type and channel only: a channel snapshot carries its
            // dialplan `app_data`, which can hold what a peer keyed
            // (`SendDTMF(…)`) or a transfer code (`Stasis(…,transfer,…)`).
            Notice::Unrouted(event) => tracing::debug!(
                event = event.type_name(),
                channel = ?event.channel_id(),
                "unrouted ARI event"
            ),
        }
    }
    ready(false);
    let _ = (&mut client.task).await;
}

/// Hands a new call to its flow by its Stasis arguments: `transfer,<code>`,
/// `assisted,<code>,<party>` and `inbound` come from the dialplan; our originates (`callback,<order>`
/// and their ringing events) are known by channel id. Anything else in our
/// app is hung up rather than left hanging, including a masquerade's
/// `StasisStart` (no args, `replace_channel`) whose old channel is no call
/// of ours: one replacing a call we drive never comes here, the
/// dispatcher hands it to that call's own queue ([`line`](mod@line)).
async fn route<M: Matcher + 'static>(desk: &Arc<Desk<M>>, rest: &ari::AriRest, call: ari::Call) {
    // A call this run resumed gets its channel's events once they come.
    let Some(call) = desk.resumed.feed(call) else {
        return;
    };
    let args = match &call.first {
        ari::Event::StasisStart { args, .. } => Some(args.clone()),
        _ => None,
    };
    match args.as_deref() {
        Some([flow, code]) if flow == "transfer" => {
            transfer::take_transfer(desk, call, code.clone());
            return;
        }
        Some([flow]) if flow == "transfer" => {
            transfer::take_transfer(desk, call, String::new());
            return;
        }
        Some([flow, code, party]) if flow == "assisted" => {
            assisted::take_assisted(desk, call, code.clone(), party.clone());
            return;
        }
        Some([flow]) if flow == "inbound" => {
            inbound::take_inbound(desk, call);
            return;
        }
        _ => {}
    }
    let channel_id = call.channel_id.clone();
    if !callback::take_call(desk, call).await && args.is_some() {
        tracing::info!(channel = %channel_id, "unknown call in our app; hanging up");
        let _ = rest.hangup(&channel_id, HangupReason::Normal).await;
    }
}

#[cfg(test)]
mod tests;
