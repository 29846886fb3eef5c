//! Settling calls that ended without a bank decision: a callback that was
//! not answered, and a call lost with Asterisk, with a previous run of the
//! daemon, or with a node that stopped. The order goes back to the queue
//! while attempts remain, else it fails; a lost call's channel, when it is
//! still up, is ended.

use super::desk::Desk;
use super::transfer::{hand_back, hand_back_to};
use crate::ari::{AriCommands, HangupReason};
use crate::domain::{Mode, OrderStatus, ResultCode};
use crate::store::{now_ms, ActiveCall, Transition};

/// Settles a call lost with its IVR state: the attempt closed as
/// `call_lost`, an `in_call` order back to `calling`, then retried or
/// failed with `call_failed`.
pub(super) async fn settle_lost<M>(desk: &Desk<M>, call: &ActiveCall) {
    tracing::warn!(status = ?call.status, "call lost; settling the order");
    if let Some(channel) = &call.channel_id {
        desk.end_attempt(channel, "failed", Some("call_lost")).await;
    }
    if call.status == OrderStatus::InCall
        && !back_to_calling(desk, &call.order_id, "call lost").await
    {
        return;
    }
    retry_or_fail(desk, &call.order_id, call.attempts, ResultCode::CallFailed).await;
}

/// Moves an order whose call ended undecided from `in_call` back to
/// `calling` (recording `detail`), so that [`retry_or_fail`] can queue
/// another attempt. `false` when the order left `in_call` meanwhile (it was
/// decided, cancelled or expired) or the store failed: nothing more to do.
pub(super) async fn back_to_calling<M>(desk: &Desk<M>, order_id: &str, detail: &str) -> bool {
    let back = Transition {
        from: OrderStatus::InCall,
        to: OrderStatus::Calling,
        result: None,
        detail: Some(detail),
    };
    match desk.store.transition(order_id, back, now_ms()).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!("order left in_call meanwhile");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot put the order back to calling");
            false
        }
    }
}

/// From `calling`: back to the queue while attempts remain, else
/// `failed` with `result`.
pub(super) async fn retry_or_fail<M>(
    desk: &Desk<M>,
    order_id: &str,
    attempts: i64,
    result: ResultCode,
) {
    let t = &desk.settings.telephony;
    let now = now_ms();
    let outcome = if attempts < i64::from(t.max_attempts) {
        let at = now + t.retry_interval_secs as i64 * 1000;
        desk.store
            .retry_callback_later(order_id, at, result.code(), now)
            .await
    } else {
        let fail = Transition {
            from: OrderStatus::Calling,
            to: OrderStatus::Failed,
            result: Some(result),
            detail: Some("no attempts left"),
        };
        desk.store.transition(order_id, fail, now).await
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => tracing::info!("order left calling meanwhile"),
        Err(e) => tracing::warn!(error = %e, "cannot settle the order"),
    }
}

/// Ends a still-live call whose IVR state was lost: hung up, except a
/// transferred caller, who goes back to the merchant's agent with
/// `failure`/`service_unavailable` (as when voicepay is down), and an
/// assisted call's cardholder, who goes back the same way to
/// `voicepay-assisted-return,cardholder`.
pub(super) async fn drop_lost_channel<M>(desk: &Desk<M>, order_id: &str, channel: &str) {
    let mode = match desk.store.order(order_id).await {
        Ok(Some(o)) => Some(o.mode),
        _ => None,
    };
    match mode {
        Some(Mode::Transfer) => {
            hand_back(&desk.rest, channel, "failure", "service_unavailable").await
        }
        Some(Mode::Assisted) => {
            let (context, party) = (super::assisted::RETURN_CONTEXT, "cardholder");
            let rest = &desk.rest;
            hand_back_to(
                rest,
                channel,
                context,
                party,
                "failure",
                "service_unavailable",
            )
            .await
        }
        _ => {
            // A channel already gone answers 404: nothing left to do.
            let _ = desk.rest.hangup(channel, HangupReason::Normal).await;
        }
    }
}
