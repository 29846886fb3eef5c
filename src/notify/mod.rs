//! `notify`: telling merchants, reliably, with signed webhooks.
//!
//! Events are written to `webhook_outbox` by the store in the same
//! transaction as the status change (`store::webhooks`); this module turns
//! them into HTTP requests: the event body (rendered by
//! [`crate::views::webhook_body`] when it was queued), its signature
//! ([`signature`]), when to try again ([`schedule`]) and the worker that
//! leases due rows and sends them ([`worker`]). Everything a delivery needs
//! is in the database, so deliveries survive restarts and move between
//! nodes.

pub mod schedule;
pub mod signature;
pub mod worker;

pub use schedule::Schedule;
pub use signature::{sign, signature_header};
pub use worker::Notifier;

use std::sync::atomic::{AtomicI64, Ordering};

/// Wall-clock time in Unix milliseconds, injectable so the retry schedule
/// can be tested without waiting.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
