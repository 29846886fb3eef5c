//! `[ivr]`: the payment call's timing and retry limits.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// The payment call's timing and retry limits (`ivr::IvrConfig`), so
/// operators can fit them to their callers without a rebuild.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrSettings {
    /// Seconds a caller may wait after a prompt ends before the first digit.
    pub first_digit_timeout_secs: u64,
    /// Seconds a caller may pause between two digits of one entry.
    pub inter_digit_timeout_secs: u64,
    /// Failed attempts (invalid input or a timeout) per step before the call
    /// ends with `input_timeout`.
    pub attempts_per_step: u8,
    /// Secrets a caller may submit in one call; the bank's daily count can
    /// only lower it.
    pub secret_tries: u8,
    /// The longest a payment call may last from the answer, in seconds.
    pub max_call_secs: u64,
    /// The longest the closing prompt may play before the call is hung up
    /// anyway, in seconds.
    pub final_prompt_limit_secs: u64,
    /// Milliseconds: a report of the same DTMF key whose press began less
    /// than this after the previous report of it ended is the same press
    /// reported again (a relay re-stamping RFC 4733 end packets) and is
    /// dropped (`ivr::repeat`; default 60, 0 to 500; 0 drops only
    /// overlapping reports).
    pub dtmf_repeat_guard_ms: u64,
    /// Milliseconds: after a wrong key at the confirmation (a single-key
    /// menu), each further key less than this after the one before is the
    /// same entry and is discarded, so a burst (a PIN keyed too early)
    /// costs one try (`ivr::confirm`; default 1500, 0 to 5000; 0: every
    /// key is an answer).
    pub burst_gap_ms: u64,
}

impl Default for IvrSettings {
    fn default() -> Self {
        let d = crate::ivr::IvrConfig::default();
        Self {
            first_digit_timeout_secs: d.first_digit_timeout.as_secs(),
            inter_digit_timeout_secs: d.inter_digit_timeout.as_secs(),
            attempts_per_step: d.attempts_per_step,
            secret_tries: d.secret_tries,
            max_call_secs: d.max_call.as_secs(),
            final_prompt_limit_secs: d.final_prompt_limit.as_secs(),
            dtmf_repeat_guard_ms: u64::try_from(
                crate::ivr::repeat::DEFAULT_REPEAT_GUARD.as_millis(),
            )
            .unwrap_or(60),
            burst_gap_ms: u64::try_from(d.burst_gap.as_millis()).unwrap_or(1500),
        }
    }
}

impl From<&IvrSettings> for crate::ivr::IvrConfig {
    fn from(s: &IvrSettings) -> Self {
        use std::time::Duration;
        Self {
            first_digit_timeout: Duration::from_secs(s.first_digit_timeout_secs),
            inter_digit_timeout: Duration::from_secs(s.inter_digit_timeout_secs),
            attempts_per_step: s.attempts_per_step,
            max_call: Duration::from_secs(s.max_call_secs),
            secret_tries: s.secret_tries,
            final_prompt_limit: Duration::from_secs(s.final_prompt_limit_secs),
            burst_gap: Duration::from_millis(s.burst_gap_ms),
        }
    }
}

impl IvrSettings {
    /// A fresh repeat guard for one call (`dtmf_repeat_guard_ms`).
    pub fn repeat_guard(&self) -> crate::ivr::repeat::RepeatGuard {
        crate::ivr::repeat::RepeatGuard::new(std::time::Duration::from_millis(
            self.dtmf_repeat_guard_ms,
        ))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=60).contains(&self.first_digit_timeout_secs) {
            return invalid("ivr.first_digit_timeout_secs", "must be 1 to 60");
        }
        if !(1..=30).contains(&self.inter_digit_timeout_secs) {
            return invalid("ivr.inter_digit_timeout_secs", "must be 1 to 30");
        }
        if !(1..=9).contains(&self.attempts_per_step) {
            return invalid("ivr.attempts_per_step", "must be 1 to 9");
        }
        // DESIGN.md: at most 3 secret tries per call.
        if !(1..=3).contains(&self.secret_tries) {
            return invalid("ivr.secret_tries", "must be 1 to 3");
        }
        if !(30..=1800).contains(&self.max_call_secs) {
            return invalid("ivr.max_call_secs", "must be 30 to 1800");
        }
        if !(1..=120).contains(&self.final_prompt_limit_secs) {
            return invalid("ivr.final_prompt_limit_secs", "must be 1 to 120");
        }
        // Above 500 ms the guard would eat a person's deliberate repeats.
        if self.dtmf_repeat_guard_ms > 500 {
            return invalid("ivr.dtmf_repeat_guard_ms", "must be 0 to 500");
        }
        // Longer, and a caller's deliberate second answer would be eaten.
        if self.burst_gap_ms > 5000 {
            return invalid("ivr.burst_gap_ms", "must be 0 to 5000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::IvrSettings;

    #[test]
    fn the_dtmf_repeat_guard_defaults_to_60_ms_and_is_bounded() {
        let mut s = IvrSettings::default();
        assert_eq!(s.dtmf_repeat_guard_ms, 60);
        s.validate().unwrap();
        for ok in [0, 500] {
            s.dtmf_repeat_guard_ms = ok;
            s.validate().unwrap();
        }
        s.dtmf_repeat_guard_ms = 501;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("ivr.dtmf_repeat_guard_ms"), "{err}");
        // Read from the `[ivr]` table like every other key.
        let s: IvrSettings = toml::from_str("dtmf_repeat_guard_ms = 80").unwrap();
        assert_eq!(s.dtmf_repeat_guard_ms, 80);
    }

    #[test]
    fn the_burst_gap_defaults_to_1500_ms_and_is_bounded() {
        let mut s = IvrSettings::default();
        assert_eq!(s.burst_gap_ms, 1500);
        s.validate().unwrap();
        for ok in [0, 5000] {
            s.burst_gap_ms = ok;
            s.validate().unwrap();
        }
        s.burst_gap_ms = 5001;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("ivr.burst_gap_ms"), "{err}");
        let s: IvrSettings = toml::from_str("burst_gap_ms = 800").unwrap();
        let c = crate::ivr::IvrConfig::from(&s);
        assert_eq!(c.burst_gap, std::time::Duration::from_millis(800));
    }
}
