//! The one place a `ChannelDtmfReceived` becomes a key for any stage of a
//! call (the order-code entry in `live`, the IVR in `runner`; the call's
//! [`super::line::Line`] asks before it hands a DTMF event on): repeated
//! reports of one press are dropped here ([`RepeatGuard`],
//! `ivr.dtmf_repeat_guard_ms`), before a stage can count them.

use crate::ari::events::DtmfDigit;
use crate::ivr::repeat::{Judged, RepeatGuard, Report};

/// The key a `ChannelDtmfReceived` stands for, or None when it is no single
/// key or only a repeated report of the previous press (logged without the
/// key: nothing is dropped silently).
pub(super) fn pressed(
    keys: &mut RepeatGuard,
    digit: &DtmfDigit,
    duration_ms: i64,
    ended_at_ms: Option<i64>,
) -> Option<char> {
    let key = digit.expose()?;
    let report = Report {
        key,
        ended_at_ms,
        duration_ms,
    };
    match keys.judge(report) {
        Judged::NewPress => Some(key),
        Judged::Repeat { gap_ms } => {
            // The gap tells an operator how close a repeat came to the
            // guard (`ivr.dtmf_repeat_guard_ms`); never the key.
            tracing::info!(
                duration_ms,
                gap_ms,
                "repeated DTMF report of one key press dropped"
            );
            None
        }
    }
}
