//! `[telephony]`: placing callbacks and how many calls a node runs.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonySettings {
    /// Dial string for callbacks; `{phone}` is replaced by the cardholder's number.
    pub callback_endpoint: String,
    /// Caller ID presented on callbacks, e.g. `Shop <4000000000>`: the
    /// operator's own service number. Empty (the default): voicepay sets
    /// none and the carrier trunk's own caller ID is used; no organisation's
    /// real number ships as a default.
    pub caller_id: String,
    /// How long a callback rings before it counts as no answer, in seconds.
    pub ring_timeout_secs: u64,
    /// Callback attempts per order (first call included).
    pub max_attempts: u32,
    /// Pause between callback attempts, in seconds.
    pub retry_interval_secs: u64,
    /// Calls this node runs at once, ringing or answered; further due
    /// callback orders wait in `pending` until one ends (never failed).
    pub max_concurrent_calls: usize,
    /// Callback originates (`POST /channels`) this node has in flight at
    /// once; more due orders wait their turn.
    pub max_concurrent_originates: usize,
    /// How often a node renews its claims on the orders whose calls it is
    /// placing or running (whether or not ARI is connected), and looks for
    /// calls abandoned by a stopped node, in seconds.
    pub claim_renew_secs: u64,
    /// Slack on top of the longest call in the length of a claim on an
    /// order (ring time, `ivr.max_call_secs`, `ivr.final_prompt_limit_secs`
    /// and this, added), in seconds: how long after a node stopped renewing
    /// another node takes its call over. At least `claim_renew_secs` (a running node's
    /// claim never lapses between two renewals), at most 3600.
    pub claim_margin_secs: u64,
    /// On SIGTERM (inbound ARI mode): how long, in seconds, the node waits
    /// for its live calls to end normally before it stops, having stopped
    /// claiming callback orders and taking new inbound and transfer calls
    /// (`/readyz` answers 503 with `"draining": true` meanwhile). 0: no
    /// drain, the calls in progress are ended at once. At most 3600; the
    /// service manager's stop timeout must exceed it.
    pub drain_secs: u64,
    /// Telling a callback answered by a machine (voicemail, a network
    /// announcement) from a person: `[telephony.machine_detection]`.
    pub machine_detection: MachineDetectionSettings,
}

/// `[telephony.machine_detection]`: Asterisk's talk detection
/// (`TALK_DETECT`, func_talkdetect) on each answered callback. Nothing is
/// played until the first moments of the call tell a person from a
/// machine: continuous talk that starts within `answer_window_ms` of the
/// answer and lasts `machine_talk_ms` with no key pressed is a machine, and
/// the attempt counts as not reached (retried; `no_answer` when attempts
/// run out). All times in milliseconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MachineDetectionSettings {
    /// Off: callbacks are not screened (the welcome plays at once).
    pub enabled: bool,
    /// Talk must start this soon after the answer to count (1-10000);
    /// with no talk by then, the call goes on as a person's.
    pub answer_window_ms: u64,
    /// Continuous talk this long makes the call a machine's (1000-60000);
    /// must exceed `silence_ms`, since talk ends only after that silence.
    pub machine_talk_ms: u64,
    /// Silence that ends a stretch of talk (TALK_DETECT's
    /// `dsp_silence_threshold`, 100-10000): pauses shorter than this inside
    /// a greeting do not end it.
    pub silence_ms: u64,
    /// Average sample magnitude above which audio is talk (TALK_DETECT's
    /// `dsp_talking_threshold`, 1-32768; not a time).
    pub talking_threshold: u32,
}

impl Default for MachineDetectionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            answer_window_ms: 2000,
            machine_talk_ms: 5000,
            silence_ms: 1200,
            talking_threshold: 256,
        }
    }
}

impl From<&MachineDetectionSettings> for crate::ivr::MachineScreen {
    fn from(m: &MachineDetectionSettings) -> Self {
        Self {
            answer_window: std::time::Duration::from_millis(m.answer_window_ms),
            machine_talk: std::time::Duration::from_millis(m.machine_talk_ms),
        }
    }
}

impl MachineDetectionSettings {
    /// The value for `TALK_DETECT(set)`: `dsp_silence_threshold,dsp_talking_threshold`
    /// (Asterisk 22, func_talkdetect).
    pub fn talk_detect_value(&self) -> String {
        format!("{},{}", self.silence_ms, self.talking_threshold)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        const KEY: &str = "telephony.machine_detection.";
        if !(1..=10_000).contains(&self.answer_window_ms) {
            return invalid(
                "telephony.machine_detection.answer_window_ms",
                "must be 1 to 10000",
            );
        }
        if !(100..=10_000).contains(&self.silence_ms) {
            return invalid(
                "telephony.machine_detection.silence_ms",
                "must be 100 to 10000",
            );
        }
        if !(1000..=60_000).contains(&self.machine_talk_ms)
            || self.machine_talk_ms <= self.silence_ms
        {
            return invalid(
                "telephony.machine_detection.machine_talk_ms",
                &format!("must be 1000 to 60000 and above {KEY}silence_ms"),
            );
        }
        if !(1..=32_768).contains(&self.talking_threshold) {
            return invalid(
                "telephony.machine_detection.talking_threshold",
                "must be 1 to 32768",
            );
        }
        Ok(())
    }
}

impl Default for TelephonySettings {
    fn default() -> Self {
        Self {
            callback_endpoint: "PJSIP/{phone}@carrier".into(),
            caller_id: String::new(),
            ring_timeout_secs: 30,
            max_attempts: 3,
            retry_interval_secs: 60,
            max_concurrent_calls: 100,
            max_concurrent_originates: 8,
            claim_renew_secs: 30,
            claim_margin_secs: 60,
            // The longest default call: 30 s ringing, 180 s talking, 30 s goodbye.
            drain_secs: 240,
            machine_detection: MachineDetectionSettings::default(),
        }
    }
}

impl TelephonySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.callback_endpoint.contains("{phone}") {
            return invalid("telephony.callback_endpoint", "must contain {phone}");
        }
        if self.max_attempts == 0 {
            return invalid("telephony.max_attempts", "must be at least 1");
        }
        if self.max_concurrent_calls == 0 {
            return invalid("telephony.max_concurrent_calls", "must be at least 1");
        }
        if self.max_concurrent_originates == 0 {
            return invalid("telephony.max_concurrent_originates", "must be at least 1");
        }
        if self.ring_timeout_secs == 0 {
            return invalid("telephony.ring_timeout_secs", "must be at least 1");
        }
        // Well under the shortest claim (ring + 30 s call + 1 s prompt + the margin).
        if !(1..=60).contains(&self.claim_renew_secs) {
            return invalid("telephony.claim_renew_secs", "must be 1 to 60");
        }
        if self.claim_margin_secs < self.claim_renew_secs || self.claim_margin_secs > 3600 {
            return invalid(
                "telephony.claim_margin_secs",
                "must be at least telephony.claim_renew_secs and at most 3600",
            );
        }
        if self.drain_secs > 3600 {
            return invalid("telephony.drain_secs", "must be 0 to 3600");
        }
        self.machine_detection.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_detection_is_on_by_default_and_bounded() {
        let t = TelephonySettings::default();
        assert!(t.machine_detection.enabled);
        t.validate().unwrap();
        assert_eq!(t.machine_detection.talk_detect_value(), "1200,256");
        type Spoil = fn(&mut MachineDetectionSettings);
        let cases: [(Spoil, &str); 6] = [
            (|m| m.answer_window_ms = 0, "answer_window_ms"),
            (|m| m.silence_ms = 50, "silence_ms"),
            (|m| m.machine_talk_ms = 999, "machine_talk_ms"),
            // Talk ends only after `silence_ms` of silence: a shorter
            // machine time would take every "hello" for a machine.
            (|m| m.machine_talk_ms = m.silence_ms, "machine_talk_ms"),
            (|m| m.talking_threshold = 0, "talking_threshold"),
            (|m| m.talking_threshold = 40_000, "talking_threshold"),
        ];
        for (spoil, key) in cases {
            let mut t = TelephonySettings::default();
            spoil(&mut t.machine_detection);
            let err = t.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("telephony.machine_detection.{key}")),
                "{err}"
            );
        }
    }
}
