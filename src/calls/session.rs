//! One order's IVR on a channel: the session every flow ends in once its
//! call holds the order `in_call`. The callback flow enters it when the
//! cardholder answers ([`answered`]: `calling` → `in_call`); transfer and
//! inbound calls after claiming the order ([`Desk::claim_incoming`]).
//!
//! A callback is first screened for an answering machine when
//! `telephony.machine_detection` is on (TALK_DETECT set on the answered
//! channel, the talk events fed to the IVR, see `ivr::screen`); a machine's
//! attempt is `not_reached` and the order is retried, `no_answer` at the end.
//!
//! [`run_order`] answers the channel, runs the [`CallRunner`] (ARI events
//! ⇄ the pure IVR ⇄ commands), settles the order when the call is lost
//! with Asterisk, and closes the attempt row.

use super::desk::Desk;
use super::line::Line;
use super::points::{resumed_ivr, Keep};
use super::runner::{CallEnd, CallRunner, Hooks, Ran};
use super::settle::{back_to_calling, retry_or_fail, settle_lost};
use crate::ari::{AriCommands, HangupReason};
use crate::config::WebsocketMode;
use crate::domain::{Language, OrderStatus, ResultCode, YearMonth};
use crate::ivr::{CallInfo, CallOutcome, Ivr, IvrConfig, MachineScreen};
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, ActiveCall, OrderRow};

/// The cardholder answered our callback: `calling` → `in_call`, the IVR,
/// the order settled by the runner. An order cancelled or expired while
/// ringing is not paid: the call is hung up.
pub(super) async fn answered<M: Matcher>(desk: &Desk<M>, order_id: &str, line: &mut Line<'_>) {
    let channel_id = line.id().to_owned();
    let channel_id = channel_id.as_str();
    // First, so that a greeting that starts at once is heard.
    let screen = listen_for_machines(desk, channel_id).await;
    // One write before the first command: the attempt answered, `calling`
    // → `in_call`, and the order as moved.
    let order = match desk
        .store
        .answer_callback(order_id, channel_id, now_ms())
        .await
    {
        Ok(order) => order,
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
    let outcome = run_screened(desk, &order, &Via::Callback, line, CallEnd::Hangup, screen).await;
    if outcome == Some(CallOutcome::NotReached) {
        not_reached(desk, &order, line.id()).await;
    }
}

/// Sets Asterisk's talk detection (`TALK_DETECT(set)`, func_talkdetect)
/// on an answered callback when `telephony.machine_detection` is on, so
/// that `ChannelTalkingStarted`/`Finished` reach the call. None (the call
/// is not screened, as with detection off) when it is off or Asterisk
/// refused it (func_talkdetect not loaded).
async fn listen_for_machines<M>(desk: &Desk<M>, channel_id: &str) -> Option<MachineScreen> {
    let m = &desk.settings.telephony.machine_detection;
    if !m.enabled {
        return None;
    }
    let value = m.talk_detect_value();
    match desk
        .rest
        .set_variable(channel_id, "TALK_DETECT(set)", &value)
        .await
    {
        Ok(()) => Some(MachineScreen::from(m)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot set TALK_DETECT (is func_talkdetect loaded?): callback not screened for machines");
            None
        }
    }
}

/// A machine answered the callback: the attempt is closed as
/// `not_reached`, the order goes back to `calling` and is retried while
/// attempts remain, else fails with `no_answer`.
async fn not_reached<M>(desk: &Desk<M>, order: &OrderRow, channel_id: &str) {
    tracing::info!("callback answered by a machine; not reached");
    desk.end_attempt(channel_id, "not_reached", Some("machine"))
        .await;
    if back_to_calling(desk, &order.id, "answered by a machine").await {
        retry_or_fail(desk, &order.id, order.attempts, ResultCode::NoAnswer).await;
    }
}

/// Runs the IVR for `order`, already `in_call` on `line`: answers
/// the channel (harmless when it is up already), settles the order when
/// the call ends without a decision or is lost with Asterisk (see
/// [`settle_lost`]), and closes the attempt row.
/// Shared by the callback, transfer and inbound flows. When a masquerade
/// moves the call onto a new channel meanwhile, the IVR goes on there and
/// the attempt row is closed under the new channel's id.
pub(super) async fn run_order<M: Matcher>(
    desk: &Desk<M>,
    order: &OrderRow,
    via: &Via,
    line: &mut Line<'_>,
    end: CallEnd,
) -> Option<CallOutcome> {
    run_screened(desk, order, via, line, end, None).await
}

/// [`run_order`], screening the call for an answering machine first when
/// `screen` is set; a machine's call ends [`CallOutcome::NotReached`] with
/// its attempt left open for the caller to close. With `ari.websocket =
/// "outbound"` a callback or inbound call keeps its point for a restarted
/// daemon ([`super::points`]).
async fn run_screened<M: Matcher>(
    desk: &Desk<M>,
    order: &OrderRow,
    via: &Via,
    line: &mut Line<'_>,
    end: CallEnd,
    screen: Option<MachineScreen>,
) -> Option<CallOutcome> {
    let keep = keep_for(desk, order, via);
    run_kept(desk, order, via, line, (end, screen), keep).await
}

/// A call resumed by this run at `keep`'s point (see [`super::points`]).
pub(super) async fn run_resumed<M: Matcher>(
    desk: &Desk<M>,
    order: &OrderRow,
    via: &Via,
    line: &mut Line<'_>,
    keep: Keep,
) {
    run_kept(desk, order, via, line, (CallEnd::Hangup, None), Some(keep)).await;
}

/// What a new call keeps for a restarted daemon: only with `ari.websocket
/// = "outbound"` (where Asterisk keeps the call for the next run), and
/// for callback and inbound calls.
fn keep_for<M>(desk: &Desk<M>, order: &OrderRow, via: &Via) -> Option<Keep> {
    if desk.settings.ari.websocket != WebsocketMode::Outbound {
        return None;
    }
    let flow = match via {
        Via::Callback => "callback",
        Via::Inbound { .. } | Via::InboundByCode => "inbound",
        _ => return None,
    };
    Some(Keep {
        node: desk.node.clone(),
        attempt: order.attempts,
        flow,
        handover: desk.handover.clone(),
        from: None,
    })
}

/// Runs the IVR (see [`run_order`]) with its point kept when `keep` is
/// set; a call handed over at shutdown is left as it is (None).
async fn run_kept<M: Matcher>(
    desk: &Desk<M>,
    order: &OrderRow,
    via: &Via,
    line: &mut Line<'_>,
    (end, screen): (CallEnd, Option<MachineScreen>),
    keep: Option<Keep>,
) -> Option<CallOutcome> {
    let order_id = order.id.as_str();
    if keep.as_ref().is_none_or(|k| k.from.is_none()) {
        if let Err(e) = desk.rest.answer(line.id()).await {
            tracing::debug!(error = %e, "answer failed (already up?)");
        }
    }
    let lang = order.language;
    let mut ivr = Ivr::new(IvrConfig::from(&desk.settings.ivr), call_info(order, lang));
    if let Some(screen) = screen {
        ivr = ivr.screened(screen);
    }
    if let Some(k) = &keep {
        ivr = resumed_ivr(ivr, k);
    }
    let runner = CallRunner {
        ari: &desk.rest,
        matcher: desk.matcher.as_ref(),
        store: &desk.store,
        order_id,
        node: &desk.node,
        via,
        lang: lang.as_str(),
        end,
    };
    let hooks = Hooks {
        keep: keep.as_ref(),
        ..Hooks::default()
    };
    let outcome = match runner.run_with(ivr, line, hooks).await {
        Ran::HandedOver => return None,
        Ran::Ended(outcome) => outcome,
        Ran::Stopped => None,
    };
    if keep.is_some() {
        if let Err(e) = desk.store.drop_call_point(order_id).await {
            tracing::warn!(error = %e, "cannot delete the call's point");
        }
    }
    settle_call(desk, order, line.id(), outcome).await
}

/// Closes the attempt of a call that ended with `outcome`; a call lost
/// with Asterisk (None) is settled as lost.
async fn settle_call<M>(
    desk: &Desk<M>,
    order: &OrderRow,
    channel_id: &str,
    outcome: Option<CallOutcome>,
) -> Option<CallOutcome> {
    let code = match outcome {
        Some(CallOutcome::Approved) => "approved",
        Some(CallOutcome::Failed(c)) => c.code(),
        Some(CallOutcome::HungUpAwaitingBank) => "hung_up_awaiting_bank",
        Some(CallOutcome::NotReached) => return outcome,
        None => {
            // Lost with Asterisk: settled like a call found lost at
            // reconciliation (retried while attempts remain, else
            // `call_failed`), never as the caller's hang-up.
            let lost = ActiveCall {
                order_id: order.id.clone(),
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
pub(super) fn call_info(order: &OrderRow, language: Language) -> CallInfo {
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
