//! The one place a `ChannelDtmfReceived` becomes a key for any stage of a
//! call (the order-code entry in `live`, the IVR in `runner`): repeated
//! reports of one press are dropped here ([`RepeatGuard`],
//! `ivr.dtmf_repeat_guard_ms`), before a stage can count them.

use crate::ari::events::DtmfDigit;
use crate::ivr::repeat::{RepeatGuard, Report};

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
    if keys.admit(report) {
        Some(key)
    } else {
        tracing::info!(duration_ms, "repeated DTMF report of one key press dropped");
        None
    }
}
