//! `[inbound]`: the access number (the inbound flow, src/calls/inbound.rs).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// How an inbound caller reaches their order. The caller ID alone can be
/// spoofed, so by default it only narrows the search: the caller keys the
/// order's `order_code` before anything about the order is said.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundSettings {
    /// Ask every caller whose caller ID is a phone number for the order
    /// code (8 digits, then `#`) before the order is claimed or anything
    /// about it is spoken (default `true`). `false`: a caller with one
    /// pending order goes straight to the IVR, as before; with several the
    /// code chooses. A caller ID that is no mobile (withheld, a landline)
    /// is asked for the code either way.
    pub require_order_code: bool,
    /// Wrong order codes one caller ID may key per Asia/Shanghai calendar
    /// day, across calls (1-100, default 5). At the limit the caller hears
    /// `order-code-refused` and the call ends; further calls that day are
    /// refused before any code is asked for. Callers whose caller ID is no
    /// mobile (withheld, a landline) share one count.
    pub wrong_codes_per_day: u32,
}

impl Default for InboundSettings {
    fn default() -> Self {
        Self {
            require_order_code: true,
            wrong_codes_per_day: 5,
        }
    }
}

impl InboundSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.wrong_codes_per_day) {
            return invalid("inbound.wrong_codes_per_day", "must be 1 to 100");
        }
        Ok(())
    }
}
