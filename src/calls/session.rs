//! One order's IVR on a channel: the session every flow ends in once its
//! call holds the order `in_call`. The callback flow enters it when the
//! cardholder answers ([`answered`]: `calling` → `in_call`); transfer and
//! inbound calls after claiming the order ([`Desk::claim_incoming`]).
//!
//! [`run_order`] answers the channel, runs the [`CallRunner`] (ARI events
//! ⇄ the pure IVR ⇄ commands), settles the order when the call is lost
//! with Asterisk, and closes the attempt row.

use super::desk::Desk;
use super::runner::{CallEnd, CallRunner};
use super::settle::settle_lost;
use crate::ari::{self, AriCommands, HangupReason};
use crate::domain::{Language, OrderStatus, YearMonth};
use crate::ivr::repeat::RepeatGuard;
use crate::ivr::{CallInfo, CallOutcome, Ivr, IvrConfig};
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, ActiveCall, OrderRow, Transition};
use tokio::sync::mpsc::UnboundedReceiver;

/// The cardholder answered our callback: `calling` → `in_call`, the IVR,
/// the order settled by the runner. An order cancelled or expired while
/// ringing is not paid: the call is hung up.
pub(super) async fn answered<M: Matcher>(
    desk: &Desk<M>,
    order_id: &str,
    channel_id: &str,
    events: &mut UnboundedReceiver<ari::Event>,
) {
    let now = now_ms();
    // The attempt row is what the merchant sees of the call: a failed
    // write is logged; the order's own move below still decides.
    if let Err(e) = desk.store.attempt_answered(channel_id, now).await {
        tracing::warn!(error = %e, "cannot record the call attempt");
    }
    let t = Transition {
        from: OrderStatus::Calling,
        to: OrderStatus::InCall,
        result: None,
        detail: Some("answered"),
    };
    let order = match desk.store.transition(order_id, t, now).await {
        Ok(true) => desk.store.order(order_id).await.ok().flatten(),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot move order to in_call");
            None
        }
    };
    let Some(order) = order else {
        // Cancelled or expired while ringing: nothing to pay.
        // A channel already gone answers 404: nothing left to do.
        let _ = desk.rest.hangup(channel_id, HangupReason::Normal).await;
        desk.end_attempt(channel_id, "answered", Some("order_not_payable"))
            .await;
        return;
    };
    run_order(
        desk,
        &order,
        channel_id,
        &Via::Callback,
        events,
        CallEnd::Hangup,
        desk.settings.ivr.repeat_guard(),
    )
    .await;
}

/// Runs the IVR for `order`, already `in_call` on `channel_id`: answers
/// the channel (harmless when it is up already), settles the order when
/// the call ends without a decision or is lost with Asterisk (see
/// [`settle_lost`]), and closes the attempt row.
/// Shared by the callback, transfer and inbound flows; `keys` is the
/// call's DTMF repeat guard as the flow's own entry left it.
pub(super) async fn run_order<M: Matcher>(
    desk: &Desk<M>,
    order: &OrderRow,
    channel_id: &str,
    via: &Via,
    events: &mut UnboundedReceiver<ari::Event>,
    end: CallEnd,
    keys: RepeatGuard,
) -> Option<CallOutcome> {
    let order_id = order.id.as_str();
    if let Err(e) = desk.rest.answer(channel_id).await {
        tracing::debug!(error = %e, "answer failed (already up?)");
    }
    let lang = order.language;
    let ivr = Ivr::new(IvrConfig::from(&desk.settings.ivr), call_info(order, lang));
    let runner = CallRunner {
        ari: &desk.rest,
        matcher: desk.matcher.as_ref(),
        store: &desk.store,
        order_id,
        channel_id,
        via,
        lang: lang.as_str(),
        end,
        keys,
    };
    let outcome = runner.run(ivr, events).await;
    let code = match outcome {
        Some(CallOutcome::Approved) => "approved",
        Some(CallOutcome::Failed(c)) => c.code(),
        Some(CallOutcome::HungUpAwaitingBank) => "hung_up_awaiting_bank",
        None => {
            // Lost with Asterisk: settled like a call found lost at
            // reconciliation (retried while attempts remain, else
            // `call_failed`), never as the caller's hang-up.
            let lost = ActiveCall {
                order_id: order_id.to_owned(),
                status: OrderStatus::InCall,
                attempts: order.attempts,
                channel_id: Some(channel_id.to_owned()),
            };
            settle_lost(desk, &lost).await;
            return None;
        }
    };
    desk.end_attempt(channel_id, "answered", Some(code)).await;
    outcome
}

/// What the IVR says about the order: amount, last four digits (from the
/// masked card number the order keeps, `622202******1234`: the sealed
/// card is never opened for a call), card kind.
fn call_info(order: &OrderRow, language: Language) -> CallInfo {
    let today = time::OffsetDateTime::now_utc();
    CallInfo {
        language,
        amount_fen: order.amount,
        card_last4: last4(&order.card_masked),
        card_kind: order.card_type,
        bound: order.binding_id.is_some(),
        today: YearMonth {
            year: u16::try_from(today.year()).unwrap_or(2000),
            month: u8::from(today.month()),
        },
    }
}

/// The last four characters of a masked card number (it keeps them in
/// clear).
fn last4(card_masked: &str) -> String {
    let tail = card_masked
        .char_indices()
        .rev()
        .nth(3)
        .map_or(0, |(i, _)| i);
    card_masked[tail..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::last4;
    use crate::domain::CardNumber;

    #[test]
    fn the_last_four_digits_come_from_the_masked_number() {
        let card = CardNumber::parse("6222000000000017").unwrap();
        assert_eq!(last4(&card.masked()), card.last4());
        assert_eq!(last4("12"), "12");
        assert_eq!(last4(""), "");
    }
}
