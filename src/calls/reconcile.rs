//! Reconciliation after the events socket (re)connects: the orders this
//! node holds in a call that nobody drives any more are settled.

use super::desk::{call_span, lost_call_span, record_order, Desk, Placed};
use super::points::resume_calls;
use super::settle::{drop_lost_channel, settle_lost};
use crate::ari;
use crate::config::WebsocketMode;
use crate::domain::OrderStatus;
use crate::matcher::Matcher;
use crate::store::ActiveCall;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tracing::Instrument;

/// After a (re)connect: settles the orders this node holds in `calling`
/// or `in_call` whose call nobody is driving any more (a previous run of
/// the daemon, or an originate whose channel vanished with an Asterisk
/// restart). Calls with a running task are left to it: if their channel
/// is gone, their event stream ends and the task settles them. So are
/// originates whose `POST /channels` is still in flight: their channel
/// may be created after `channels` was read, and a failed POST settles
/// them in the callback flow. An order a previous run left in
/// `authorizing` only loses its call (hung up, the attempt closed): the
/// bank decides it, through the matcher's start-up recovery.
///
/// With `ari.websocket = "outbound"` the calls a previous run handed over
/// (or was driving when it was killed) are resumed first, at their kept
/// point ([`super::points::resume_calls`]); those whose channel is gone
/// are settled here as before, and a callback it placed that still rings
/// is adopted as this run's originate.
pub async fn reconcile<M: Matcher + 'static>(
    desk: &Arc<Desk<M>>,
    asterisk_restarted: bool,
    channels: &[ari::Channel],
) {
    let alive: HashSet<&str> = if asterisk_restarted {
        HashSet::new()
    } else {
        channels.iter().map(|c| c.id.as_str()).collect()
    };
    let mut placed = desk.placed.lock().await;
    placed.retain(|channel, p| p.running || p.originating || alive.contains(channel.as_str()));
    desk.resumed.forget_gone(&alive);
    if desk.settings.ari.websocket == WebsocketMode::Outbound {
        resume_calls(desk, &alive, &mut placed).await;
    }
    let active = match desk.store.active_calls(&desk.node).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "reconciliation: cannot list active calls");
            return;
        }
    };
    let outbound = desk.settings.ari.websocket == WebsocketMode::Outbound;
    for call in active {
        let channel = call.channel_id.as_deref().unwrap_or("");
        if placed.contains_key(channel) {
            continue;
        }
        if outbound && call.status == OrderStatus::Calling && alive.contains(channel) {
            adopt_ringing(desk, &call, &mut placed);
            continue;
        }
        let span = lost_call_span(&call.order_id, call.channel_id.as_deref());
        settle_unattended(desk, &call, alive.contains(channel))
            .instrument(span)
            .await;
    }
}

/// `ari.websocket = "outbound"`: a callback a previous run placed that
/// still rings (or was answered while no daemon ran: its `StasisStart` is
/// queued for us) is this run's originate from now on. Its events reach
/// the callback flow as those of an originate of ours, so an answer runs
/// the IVR and an end settles it as unanswered.
fn adopt_ringing<M>(desk: &Desk<M>, call: &ActiveCall, placed: &mut HashMap<String, Placed>) {
    let Some(channel) = call.channel_id.clone() else {
        return;
    };
    tracing::info!(order = %call.order_id, %channel, "adopting a callback placed before the restart");
    let span = call_span("callback", &channel);
    record_order(&span, &call.order_id);
    placed.insert(
        channel,
        Placed {
            order_id: call.order_id.clone(),
            attempt: call.attempts,
            permit: desk.permits.clone().try_acquire_owned().ok(),
            running: false,
            originating: false,
            span,
            rang_from: tokio::time::Instant::now(),
        },
    );
}

/// Settles one call nobody drives; `alive` when its channel is still up.
async fn settle_unattended<M>(desk: &Desk<M>, call: &ActiveCall, alive: bool) {
    if alive {
        // A call from before our restart: its IVR state is lost.
        if let Some(channel) = &call.channel_id {
            drop_lost_channel(desk, &call.order_id, channel).await;
        }
    }
    if call.status == OrderStatus::Authorizing {
        if let Some(channel) = &call.channel_id {
            desk.end_attempt(channel, "answered", Some("call_lost"))
                .await;
        }
        return;
    }
    settle_lost(desk, call).await;
}
