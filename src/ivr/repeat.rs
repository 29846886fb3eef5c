//! The DTMF repeat guard: one key press reported twice is one digit.
//!
//! Relays (SBCs, rtpengine, some phones) re-stamp the end packets of one
//! RFC 4733 event with a new RTP timestamp; Asterisk then takes each
//! re-stamped end for a new event and reports the digit two or three times
//! (`ChannelDtmfReceived`; seen on Asterisk 22.10.1). Counted as digits,
//! `8` `8` `0` `5` `1` `3` `7` submits `880513`: a wrong PIN that costs the
//! card one of its daily tries.
//!
//! Asterisk sends `ChannelDtmfReceived` when the tone *ends*, with the
//! tone's `duration_ms`, so a report places its press in time: it began at
//! `timestamp − duration_ms`. A report of the **same** key whose press would
//! have begun before the previous report of that key ended, or less than the
//! guard after it, cannot be a new press and is dropped. The default guard,
//! [`DEFAULT_REPEAT_GUARD`], is 60 ms:
//! - the shortest pause the DTMF standards know is 40 ms (ITU-T Q.24's
//!   receivers recognise pauses from 40 ms; North American senders leave
//!   at least 45 ms off, with a tone-on to tone-on cycle of at least
//!   100 ms): nothing shorter can be the pause between two presses;
//! - Asterisk itself spaces the digits it passes on by at least 45 ms
//!   (`AST_MIN_DTMF_GAP`, main/channel.c), so a duplicate Asterisk delays
//!   can look like a press starting 45 ms after the first ended: the guard
//!   must be above that;
//! - a person cannot release a key and press it again that fast (a
//!   deliberate repeat leaves well over 100 ms). A machine that sends the
//!   same digit twice at the standards' minimum pause (40-59 ms) would lose
//!   the second one: lower the guard (e.g. to 40) for such callers.
//!
//! Measured on the lab's Asterisk 22.10.1 with a SIPp recording whose 2nd
//! and 3rd end packets carry a new RTP timestamp
//! (`tests/asterisk/carrier_e2e.rs`): both repeats came with the press's
//! 160 ms and began 117 and 158 ms *before* the first report ended, so a
//! repeat there is an overlap whatever the guard.
//!
//! A different key is never dropped, nor a same key after a real gap. A
//! report without a time (no readable `timestamp`) is always kept: it cannot
//! be placed, and dropping a real digit is worse than today's behaviour. A
//! missing or zero `duration_ms` counts as a press of no length, so only the
//! gap between the two ends is compared (the lenient reading).
//!
//! Operators tune the guard with `ivr.dtmf_repeat_guard_ms`; 0 drops only
//! reports whose press overlaps the previous one.

use std::time::Duration;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The default guard: 60 ms (see the module docs for its sources).
pub const DEFAULT_REPEAT_GUARD: Duration = Duration::from_millis(60);

/// One `ChannelDtmfReceived` as the guard sees it.
#[derive(Clone, Copy)]
pub struct Report {
    /// The key: 0-9, A-D, `*` or `#`. Possibly a PIN digit.
    pub key: char,
    /// When the tone ended (the event's `timestamp`), in milliseconds since
    /// any fixed origin; None when unknown.
    pub ended_at_ms: Option<i64>,
    /// How long the tone lasted, in milliseconds; 0 (or less) when unknown.
    pub duration_ms: i64,
}

/// Hand-written so that a report never prints its key.
impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Report")
            .field("key", &"*")
            .field("ended_at_ms", &self.ended_at_ms)
            .field("duration_ms", &self.duration_ms)
            .finish()
    }
}

/// The guard's reading of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// A key press: count it.
    NewPress,
    /// The previous press of the same key reported again: drop it.
    Repeat {
        /// Milliseconds from the end of the previous report of the key to
        /// the start of this one's press (negative: they overlap); below
        /// the guard.
        gap_ms: i64,
    },
}

/// Remembers the last key reported on one call and tells a new press from
/// a repeated report of the same one. Pure: the caller gives the times.
/// Keep one per call for every stage that reads keys (order code, IVR), so
/// a repeat that crosses from one stage to the next is caught too. The
/// remembered key may be a PIN digit: it is wiped on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RepeatGuard {
    guard_ms: i64,
    /// The last report's key (ASCII), 0 when there is none to compare with.
    last_key: u8,
    /// When the last press of `last_key` ended, duplicates included.
    last_end_ms: i64,
}

impl RepeatGuard {
    /// A guard for one call: a same-key report whose press began less than
    /// `guard` after the previous one ended is a repeat.
    pub fn new(guard: Duration) -> Self {
        Self {
            guard_ms: i64::try_from(guard.as_millis()).unwrap_or(i64::MAX),
            last_key: 0,
            last_end_ms: 0,
        }
    }

    /// Whether `report` is a new key press (true) or a repeated report of
    /// the previous one (false: drop it).
    pub fn admit(&mut self, report: Report) -> bool {
        self.judge(report) == Judged::NewPress
    }

    /// Like [`RepeatGuard::admit`], saying how a repeat was told.
    pub fn judge(&mut self, report: Report) -> Judged {
        let Some(ended) = report.ended_at_ms else {
            // Cannot be placed in time: keep it, and compare no later report
            // with a press whose end is unknown.
            self.last_key = 0;
            return Judged::NewPress;
        };
        let key = u8::try_from(report.key).unwrap_or(0);
        let began = ended.saturating_sub(report.duration_ms.max(0));
        let gap_ms = began.saturating_sub(self.last_end_ms);
        if key != 0 && key == self.last_key && gap_ms < self.guard_ms {
            // A third report is compared with the second: they chain.
            self.last_end_ms = self.last_end_ms.max(ended);
            return Judged::Repeat { gap_ms };
        }
        self.last_key = key;
        self.last_end_ms = ended;
        Judged::NewPress
    }
}

impl Default for RepeatGuard {
    fn default() -> Self {
        Self::new(DEFAULT_REPEAT_GUARD)
    }
}

/// Shows the guard, never the remembered key.
impl std::fmt::Debug for RepeatGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepeatGuard")
            .field("guard_ms", &self.guard_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: char, ended_at_ms: i64, duration_ms: i64) -> Report {
        Report {
            key,
            ended_at_ms: Some(ended_at_ms),
            duration_ms,
        }
    }

    /// The keys a guard lets through, for reports in order.
    fn kept(guard: &mut RepeatGuard, reports: &[Report]) -> String {
        reports
            .iter()
            .filter(|r| guard.admit(**r))
            .map(|r| r.key)
            .collect()
    }

    #[test]
    fn a_press_reported_twice_20_ms_apart_is_one_digit() {
        let mut g = RepeatGuard::default();
        // The example: `8` twice (a re-stamped end), then 05137.
        let reports = [
            at('8', 10_000, 280),
            at('8', 10_020, 280),
            at('0', 10_500, 120),
            at('5', 10_900, 120),
            at('1', 11_300, 120),
            at('3', 11_700, 120),
            at('7', 12_100, 120),
        ];
        assert_eq!(kept(&mut g, &reports), "805137");
    }

    #[test]
    fn three_reports_of_one_press_chain_into_one() {
        let mut g = RepeatGuard::default();
        // Short or zero durations: each report is compared with the last.
        let reports = [at('5', 1_000, 100), at('5', 1_050, 0), at('5', 1_100, 0)];
        assert_eq!(kept(&mut g, &reports), "5");
    }

    #[test]
    fn the_same_key_after_a_real_gap_is_kept() {
        let mut g = RepeatGuard::default();
        // 0 0 0: 100 ms tones, 150 ms apart (a quick but human repeat).
        let reports = [
            at('0', 1_000, 100),
            at('0', 1_250, 100),
            at('0', 1_500, 100),
        ];
        assert_eq!(kept(&mut g, &reports), "000");
        // Exactly the guard after the end: a new press.
        let mut g = RepeatGuard::default();
        assert_eq!(
            kept(&mut g, &[at('4', 1_000, 80), at('4', 1_140, 80)]),
            "44"
        );
        // One millisecond less: a repeat.
        let mut g = RepeatGuard::default();
        assert_eq!(kept(&mut g, &[at('4', 1_000, 80), at('4', 1_139, 80)]), "4");
    }

    #[test]
    fn different_keys_are_never_dropped() {
        let mut g = RepeatGuard::default();
        // Even overlapping in time (impossible for a person, but not ours to judge).
        let reports = [
            at('1', 1_000, 100),
            at('2', 1_001, 100),
            at('1', 1_002, 100),
        ];
        assert_eq!(kept(&mut g, &reports), "121");
        // `#` after the last digit of a code is kept as well.
        assert_eq!(
            kept(&mut g, &[at('7', 2_000, 100), at('#', 2_010, 100)]),
            "7#"
        );
    }

    #[test]
    fn zero_or_missing_duration_compares_the_ends() {
        let mut g = RepeatGuard::default();
        // No duration: 40 ms between ends is below the guard…
        assert_eq!(kept(&mut g, &[at('9', 1_000, 0), at('9', 1_040, 0)]), "9");
        // …200 ms is a new press. A negative duration counts as 0.
        let mut g = RepeatGuard::default();
        assert_eq!(kept(&mut g, &[at('9', 1_000, 0), at('9', 1_200, -5)]), "99");
    }

    #[test]
    fn a_report_without_a_time_is_kept_and_never_compared() {
        let mut g = RepeatGuard::default();
        let untimed = Report {
            key: '6',
            ended_at_ms: None,
            duration_ms: 100,
        };
        assert_eq!(kept(&mut g, &[at('6', 1_000, 100), untimed]), "66");
        // The next timed report has nothing to be compared with.
        assert_eq!(kept(&mut g, &[at('6', 1_010, 100)]), "6");
    }

    #[test]
    fn the_guard_is_configurable_and_zero_drops_only_overlaps() {
        let mut g = RepeatGuard::new(Duration::ZERO);
        // Overlapping press: dropped; back-to-back with a 10 ms gap: kept.
        let reports = [
            at('3', 1_000, 200),
            at('3', 1_020, 200),
            at('3', 1_130, 100),
        ];
        assert_eq!(kept(&mut g, &reports), "33");
        let mut g = RepeatGuard::new(Duration::from_millis(300));
        assert_eq!(
            kept(&mut g, &[at('3', 1_000, 100), at('3', 1_350, 100)]),
            "3"
        );
    }

    #[test]
    fn a_repeat_says_how_far_it_began_from_the_previous_end() {
        let mut g = RepeatGuard::default();
        assert_eq!(g.judge(at('8', 1_000, 280)), Judged::NewPress);
        // Re-stamped 20 ms later with the press's whole length: it overlaps.
        assert_eq!(
            g.judge(at('8', 1_020, 280)),
            Judged::Repeat { gap_ms: -260 }
        );
        assert_eq!(g.judge(at('8', 1_100, 30)), Judged::Repeat { gap_ms: 50 });
        assert_eq!(g.judge(at('0', 1_110, 30)), Judged::NewPress);
    }

    #[test]
    fn the_remembered_key_never_prints() {
        let mut g = RepeatGuard::default();
        g.admit(at('8', 1_000, 100));
        let shown = format!("{g:?} {:?}", at('8', 1_000, 100));
        assert!(!shown.contains('8'), "{shown}");
    }
}
