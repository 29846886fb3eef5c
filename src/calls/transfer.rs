//! The transfer flow (一线通, DESIGN.md flow 2): the merchant's call centre
//! sends the cardholder's live call into our app with the order's one-time
//! code (`Stasis(app, transfer, <code>)`, dialplan/transfer.conf). The code
//! finds the `pending` transfer order, the IVR runs as for a callback, and
//! instead of hanging up we set `VOICEPAY_RESULT` (`success` | `failure`)
//! and `VOICEPAY_CODE` (`approved`, the result code, or
//! `transfer_code_invalid`) on the channel and `continue` it to
//! `voicepay-transfer-return,s,1`, which returns it to the merchant.
//!
//! The code is a bearer token for the order: it is logged only masked
//! (first two digits), and it is cleared from the order when the order
//! ends, so a used code is unknown. A caller who hangs up fails the order
//! with `caller_hung_up`, as in a callback.

use super::desk::{call_span, record_order, Desk};

use super::live::{play_prompts, Heard};
use super::runner::CallEnd;
use super::session::run_order;
use crate::ari::{AriCommands, Call};
use crate::domain::mask;
use crate::ivr::CallOutcome;
use crate::matcher::{Matcher, Via};
use crate::store::{now_ms, OrderRow};
use std::sync::Arc;
use tracing::Span;

/// Where the call goes back to the merchant (dialplan/transfer.conf).
pub const RETURN_CONTEXT: &str = "voicepay-transfer-return";

/// `VOICEPAY_CODE` when the code finds no payable order.
pub const CODE_INVALID: &str = "transfer_code_invalid";

/// Whether `code` has the shape of a transfer code: exactly 8 digits.
pub fn valid_code(code: &str) -> bool {
    code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The code as logs may show it: its first two digits.
pub fn masked_code(code: &str) -> String {
    if valid_code(code) {
        mask(code, 2, 0)
    } else {
        format!("<{} chars>", code.chars().count())
    }
}

/// The channel variables handed back for an outcome; None when the caller
/// is gone (there is no call to hand back).
pub fn result_vars(outcome: Option<CallOutcome>) -> Option<(&'static str, &'static str)> {
    match outcome {
        Some(CallOutcome::Approved) => Some(("success", "approved")),
        Some(CallOutcome::Failed(crate::domain::ResultCode::CallerHungUp))
        | Some(CallOutcome::HungUpAwaitingBank)
        | None => None,
        Some(CallOutcome::Failed(code)) => Some(("failure", code.code())),
        // Only callbacks are screened for machines.
        Some(CallOutcome::NotReached) => Some(("failure", "no_answer")),
    }
}

/// Takes a call that entered the app with `["transfer", code]` and runs
/// it on its own task.
pub fn take_transfer<M: Matcher + 'static>(desk: &Arc<Desk<M>>, call: Call, code: String) {
    let span = call_span("transfer", &call.channel_id);
    let this = desk.clone();
    desk.spawn_call(span, async move { transfer(&this, call, code).await });
}

async fn transfer<M: Matcher + 'static>(desk: &Desk<M>, call: Call, code: String) {
    let Call {
        channel_id,
        first,
        events,
        ..
    } = call;
    let mut line = desk.line(channel_id, events);
    let channel_lang = match &first {
        crate::ari::Event::StasisStart { channel, .. } => channel.language.clone(),
        _ => None,
    };
    let masked = masked_code(&code);
    tracing::info!(code = %masked, "transferred call");
    let claimed = match find_order(desk, &code).await {
        Some(o) => {
            record_order(&Span::current(), &o.id);
            desk.claim_incoming(&o.id, line.id(), "transferred call")
                .await
        }
        None => None,
    };
    let Some(order) = claimed else {
        tracing::info!(code = %masked, "unknown, used or expired transfer code");
        let heard = play_prompts(
            &desk.rest,
            &mut line,
            1,
            &["transfer-code-invalid"],
            channel_lang.as_deref(),
        )
        .await;
        if heard == Heard::Played {
            hand_back(&desk.rest, line.id(), "failure", CODE_INVALID).await;
        }
        return;
    };
    tracing::info!("transfer call claimed the order");
    // The code goes with the call to the matcher, which checks it is
    // still this order's.
    let via = Via::Transfer { code };
    let outcome = run_order(desk, &order, &via, &mut line, CallEnd::ReturnToDialplan).await;
    // To the channel the call is on now: a masquerade may have moved it.
    if let Some((result, code)) = result_vars(outcome) {
        hand_back(&desk.rest, line.id(), result, code).await;
    }
    desk.release(line.id()).await;
}

/// The `pending` transfer order of `code`, if the code has the right shape
/// and finds one.
async fn find_order<M>(desk: &Desk<M>, code: &str) -> Option<OrderRow> {
    if !valid_code(code) {
        return None;
    }
    match desk.store.pending_transfer_order(code, now_ms()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "transfer code lookup failed");
            None
        }
    }
}

/// Sets the result variables and returns the call to the merchant. Runs
/// in the call's span.
pub(super) async fn hand_back<A: AriCommands>(ari: &A, channel_id: &str, result: &str, code: &str) {
    hand_back_to(ari, channel_id, RETURN_CONTEXT, "s", result, code).await;
}

/// Sets the result variables and continues the channel at
/// `context,extension,1` (the assisted flow returns each party to its own
/// extension). Runs in the call's span.
pub(super) async fn hand_back_to<A: AriCommands>(
    ari: &A,
    channel_id: &str,
    context: &str,
    extension: &str,
    result: &str,
    code: &str,
) {
    for (name, value) in [("VOICEPAY_RESULT", result), ("VOICEPAY_CODE", code)] {
        if let Err(e) = ari.set_variable(channel_id, name, value).await {
            tracing::debug!(error = %e, "cannot set {name}");
        }
    }
    match ari
        .continue_in_dialplan(channel_id, context, extension, 1)
        .await
    {
        Ok(()) => {
            tracing::info!(%result, %code, "call handed back to the merchant")
        }
        Err(e) => {
            tracing::info!(error = %e, "cannot hand the call back (gone?)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ResultCode;

    #[test]
    fn codes_are_eight_digits() {
        assert!(valid_code("01234567"));
        for bad in [
            "",
            "1234567",
            "123456789",
            "1234567a",
            "１２３４５６７８",
            "1234 567",
        ] {
            assert!(!valid_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn logs_see_two_digits_of_the_code() {
        assert_eq!(masked_code("12345678"), "12******");
        assert_eq!(masked_code("secret-ish"), "<10 chars>");
    }

    #[test]
    fn outcomes_become_the_return_contract() {
        assert_eq!(
            result_vars(Some(CallOutcome::Approved)),
            Some(("success", "approved"))
        );
        assert_eq!(
            result_vars(Some(CallOutcome::Failed(ResultCode::WrongSecret))),
            Some(("failure", "wrong_secret"))
        );
        assert_eq!(
            result_vars(Some(CallOutcome::Failed(ResultCode::CallerCancelled))),
            Some(("failure", "caller_cancelled"))
        );
        assert_eq!(
            result_vars(Some(CallOutcome::Failed(ResultCode::CallerHungUp))),
            None
        );
        assert_eq!(result_vars(Some(CallOutcome::HungUpAwaitingBank)), None);
        assert_eq!(result_vars(None), None);
    }
}
