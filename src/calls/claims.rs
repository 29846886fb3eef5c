//! Keeping this node's claims alive, and taking over the claims of nodes
//! that stopped.
//!
//! Every `telephony.claim_renew_secs`, connected to ARI or not, the node
//! renews its claims on the orders of the calls it is placing or running
//! ([`keep_claims`]), so only a stopped node's claims run out; then
//! another node takes each over and settles it ([`reclaim_stale`]).

use super::desk::{lost_call_span, Desk};
use super::settle::{drop_lost_channel, settle_lost};
use crate::store::{now_ms, StaleClaim};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Stale claims settled per look.
const RECLAIM_BATCH: i64 = 100;

/// Renews the claims of the calls this node places or runs, every
/// [`Desk::renew_every`], until `shutdown`, whether or not ARI is
/// connected (a call held through an outage keeps its claim).
pub async fn keep_claims<M>(desk: Arc<Desk<M>>, shutdown: CancellationToken) {
    let every = desk.renew_every();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        renew_claims(&desk, now_ms()).await;
    }
}

/// Extends the claims on the orders of every call this node is placing
/// or running to `now` + the claim length. Returns how many moved.
pub async fn renew_claims<M>(desk: &Desk<M>, now: i64) -> u64 {
    let orders: Vec<String> = {
        let placed = desk.placed.lock().await;
        let mut ids: Vec<String> = placed.values().map(|p| p.order_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    if orders.is_empty() {
        return 0;
    }
    match desk
        .store
        .renew_claims(&desk.node, &orders, now + desk.claim_hold_ms())
        .await
    {
        Ok(n) => {
            tracing::debug!(calls = orders.len(), renewed = n, "claims renewed");
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot renew this node's claims");
            0
        }
    }
}

/// Settles the calls of nodes that stopped renewing their claims (a
/// crashed or removed node): each is taken over first, so exactly one
/// node acts, then the order is retried or failed like any lost call.
///
/// Each node has its own Asterisk, so a stale call's channel is usually
/// not on ours. Only a callback channel (our id, `vp-<order>-<n>`,
/// unique) is hung up through this node's Asterisk, which answers 404
/// when the channel is elsewhere. A transferred or inbound call's
/// channel id is Asterisk's own (`<epoch>.<seq>`) and could name an
/// unrelated call here, so it is left alone.
/// Returns how many were settled.
pub async fn reclaim_stale<M>(desk: &Desk<M>, now: i64) -> usize {
    let stale = match desk.store.stale_claims(now, RECLAIM_BATCH).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list stale claims");
            return 0;
        }
    };
    let mut settled = 0;
    for claim in stale {
        let span = lost_call_span(&claim.call.order_id, claim.call.channel_id.as_deref());
        if reclaim(desk, &claim, now).instrument(span).await {
            settled += 1;
        }
    }
    settled
}

/// Takes one stale claim over and settles its call; false when it is not
/// ours to settle (still driven here, or taken by another node).
async fn reclaim<M>(desk: &Desk<M>, claim: &StaleClaim, now: i64) -> bool {
    let channel = claim.call.channel_id.clone().unwrap_or_default();
    if claim.node == desk.node && desk.placed.lock().await.contains_key(&channel) {
        return false; // ours and still driven: its task settles it
    }
    match desk
        .store
        .take_over_claim(claim, &desk.node, now + desk.claim_hold_ms(), now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take over a stale claim");
            return false;
        }
    }
    tracing::warn!(node = %claim.node, "claim ran out; settling the abandoned call");
    if channel.starts_with("vp-") {
        drop_lost_channel(desk, &claim.call.order_id, &channel).await;
    }
    settle_lost(desk, &claim.call).await;
    true
}
