//! Where the link's own 0800s (sign-on, echo) get their STANs (F11).
//!
//! ISO 8583 wants a STAN unique per terminal and day; voicepay numbers
//! every request, the issuer's 0200/0420 and the link's 0800 alike, from
//! one database sequence per Asia/Shanghai day, so nodes sharing a database
//! never reuse one ([`StoreStans`]). Tests use a [`CounterStans`].

use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::future::BoxFuture;

use crate::bank::shanghai_day;
use crate::clock::SharedClock;
use crate::domain::Stan;
use crate::store::Store;

/// A source of fresh STANs for the link's own messages.
pub trait StanSource: Send + Sync {
    /// The next STAN.
    ///
    /// # Errors
    /// Whatever keeps the source from numbering (a database error): the
    /// link then counts a failed sign-on attempt, or skips one echo.
    fn next_stan(&self) -> BoxFuture<'_, anyhow::Result<Stan>>;
}

/// Production's source: [`Store::next_stan`] of the Asia/Shanghai day of
/// `clock`'s now ([`shanghai_day`]), the sequence the issuer's requests
/// draw from too.
pub struct StoreStans {
    store: Store,
    clock: SharedClock,
}

impl StoreStans {
    /// STANs from `store`'s per-day counter, the day taken from `clock`.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
    }
}

impl StanSource for StoreStans {
    fn next_stan(&self) -> BoxFuture<'_, anyhow::Result<Stan>> {
        Box::pin(async move {
            let day = shanghai_day(self.clock.now());
            Ok(self.store.next_stan(day).await?)
        })
    }
}

/// An in-memory counter (tests, and tools without a database): `first`,
/// then one more each call, from 000001 again after 999999. Not unique
/// across processes or restarts.
#[derive(Debug)]
pub struct CounterStans(AtomicU32);

impl CounterStans {
    /// Starts at `first` (taken into 1–999999).
    pub fn new(first: u32) -> Self {
        Self(AtomicU32::new(first.clamp(Stan::MIN, Stan::MAX) - 1))
    }
}

impl StanSource for CounterStans {
    fn next_stan(&self) -> BoxFuture<'_, anyhow::Result<Stan>> {
        let prev = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n % Stan::MAX + 1)
            })
            .unwrap_or(0);
        let stan = Stan::new(prev % Stan::MAX + 1).map_err(|e| anyhow::anyhow!("{e}"));
        Box::pin(std::future::ready(stan))
    }
}
