//! When to try a failed delivery again: exponential backoff with jitter,
//! for at most `max_age` after the event was queued (or redelivered).

use crate::config::WebhookSettings;

/// The retry schedule from `[webhooks]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub initial_ms: i64,
    pub max_ms: i64,
    pub jitter: f64,
    pub max_age_ms: i64,
}

impl Schedule {
    pub fn from_settings(w: &WebhookSettings) -> Self {
        Self {
            initial_ms: w.retry_initial_ms as i64,
            max_ms: w.retry_max_ms as i64,
            jitter: w.retry_jitter,
            max_age_ms: w.max_age_secs as i64 * 1000,
        }
    }

    /// The delay after failed attempt number `attempt` (1 = the first
    /// attempt), before jitter: `initial × 2^(attempt−1)`, at most `max`.
    pub fn base_delay_ms(&self, attempt: i64) -> i64 {
        let doublings = (attempt.max(1) - 1).min(40) as u32;
        self.initial_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }

    /// The delay with jitter applied; `unit` is a random draw in `[0, 1)`
    /// (passed in so tests can pin it).
    pub fn delay_ms(&self, attempt: i64, unit: f64) -> i64 {
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        ((self.base_delay_ms(attempt) as f64) * factor)
            .round()
            .max(1.0) as i64
    }

    /// When to try again after failed attempt `attempt` at `now`, or `None`
    /// when that is past the window that started at `schedule_start`.
    pub fn next_attempt_at(
        &self,
        attempt: i64,
        now: i64,
        schedule_start: i64,
        unit: f64,
    ) -> Option<i64> {
        let at = now + self.delay_ms(attempt, unit);
        (at <= schedule_start + self.max_age_ms).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule::from_settings(&WebhookSettings::default())
    }

    #[test]
    fn the_default_delays_double_up_to_an_hour() {
        let s = schedule();
        let secs: Vec<i64> = (1..=9).map(|a| s.base_delay_ms(a) / 1000).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(s.base_delay_ms(500), 3_600_000);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let s = schedule();
        assert_eq!(s.delay_ms(1, 0.0), 24_000);
        assert_eq!(s.delay_ms(1, 0.5), 30_000);
        assert!(s.delay_ms(1, 0.999_999) <= 36_000);
        let none = Schedule { jitter: 0.0, ..s };
        assert_eq!(none.delay_ms(3, 0.9), 120_000);
    }

    #[test]
    fn retries_stop_after_the_window() {
        let s = schedule();
        let start = 1_000_000;
        // Walking the schedule with average jitter reaches the 24 h limit.
        let (mut now, mut attempt) = (start, 1);
        while let Some(at) = s.next_attempt_at(attempt, now, start, 0.5) {
            assert!(at <= start + 86_400_000);
            now = at;
            attempt += 1;
        }
        assert!((28..=35).contains(&attempt), "{attempt} attempts in a day");
        assert!(now > start + 86_400_000 - 3_600_000 * 2);
    }
}
