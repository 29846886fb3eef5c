//! Time: one injectable [`Clock`] for the components whose tests move time
//! (the matcher's order windows, the Asia/Shanghai day of PIN tries in the
//! matcher and the stub issuer, webhook retry schedules), so tests can cross
//! midnight or skip a retry window without waiting; [`now_ms`] is the wall
//! clock for code that takes no clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// Now as Unix milliseconds (the store's time unit).
    fn now_ms(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// The wall clock as Unix milliseconds: for code that takes no injected
/// clock (the store's callers, the API, the sweeps).
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// A clock shared by the components built from one configuration.
pub type SharedClock = Arc<dyn Clock>;

/// Any `Fn() -> OffsetDateTime` is a clock: tests write
/// `Arc::new(move || start + skew)`.
impl<F: Fn() -> OffsetDateTime + Send + Sync> Clock for F {
    fn now(&self) -> OffsetDateTime {
        self()
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to (tests), in Unix milliseconds.
#[derive(Debug, Default)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    /// Stopped at `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    /// Moves to `ms` (Unix milliseconds).
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves forward by `ms` milliseconds.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now_ms()) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_told() {
        let c = FakeClock::at(1_795_610_096_340);
        assert_eq!(c.now_ms(), 1_795_610_096_340);
        assert_eq!(c.now().unix_timestamp(), 1_795_610_096);
        c.advance(660);
        assert_eq!(c.now_ms(), 1_795_610_097_000);
        c.set(0);
        assert_eq!(c.now(), OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn a_closure_is_a_clock() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let c: SharedClock = Arc::new(move || t);
        assert_eq!(c.now_ms(), 86_400_000);
    }
}
