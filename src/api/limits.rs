//! The per-request limits of `[limits]` ([`LimitSettings`]): the order
//! creation rates, the status stream caps and their shared pollers, the
//! memory of wrong API keys, and the request timeout. The connection-level
//! ones (header timeout, connection cap) are in [`super::serve`].

use super::auth::FailedKeys;
use super::orders::feeds::StatusFeeds;
use super::{ApiError, AppState};
use crate::config::{LimitSettings, Settings};
use crate::store::{now_ms, Store};
use crate::telemetry::{LimitLabels, Metrics};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// This node's limit state, shared by every request.
pub struct Limits {
    settings: LimitSettings,
    /// One GCRA token bucket per merchant id (a minute's worth of orders);
    /// `None` when `limits.orders_per_merchant_per_minute` is 0. Bounded by
    /// the number of merchants: only an authenticated merchant gets a bucket.
    orders: Option<DefaultKeyedRateLimiter<String>>,
    /// Wrong API keys, answered 401 without a database read.
    pub failed_keys: FailedKeys,
    /// Live status streams: the caps and one poller per order.
    pub feeds: Arc<StatusFeeds>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// The limits of `settings.limits`, status streams polling `store`
    /// every `settings.http.events_poll_ms`.
    pub fn new(settings: &Settings, store: Store, metrics: Arc<Metrics>) -> Self {
        let l = settings.limits.clone();
        let orders = NonZeroU32::new(l.orders_per_merchant_per_minute)
            .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)));
        Self {
            failed_keys: FailedKeys::new(&l),
            feeds: Arc::new(StatusFeeds::new(settings, store, metrics.clone())),
            orders,
            settings: l,
            metrics,
        }
    }

    /// Takes one order from `merchant_id`'s bucket.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] with the seconds until the next token.
    pub fn take_order(&self, merchant_id: &str) -> Result<(), ApiError> {
        let Some(buckets) = &self.orders else {
            return Ok(());
        };
        buckets.check_key(&merchant_id.to_owned()).map_err(|wait| {
            let secs = wait.wait_time_from(buckets.clock().now()).as_secs() + 1;
            self.refused(
                "merchant_orders",
                secs,
                format!(
                    "more than {} orders a minute; try again in {secs} s",
                    self.settings.orders_per_merchant_per_minute
                ),
            )
        })
    }

    /// Checks that fewer than `limits.orders_per_phone_per_day` orders named
    /// `phone` in the last 24 hours, counted in the database (so the count
    /// holds across restarts and nodes). Two requests racing for the last
    /// place may both pass: the limit can be overshot by the requests in
    /// flight at that moment, never by more.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] until the oldest of those orders is a day
    /// old; [`ApiError::Internal`] when the count cannot be read.
    pub async fn check_phone(&self, store: &Store, phone: &str) -> Result<(), ApiError> {
        let max = self.settings.orders_per_phone_per_day;
        if max == 0 {
            return Ok(());
        }
        let now = now_ms();
        let (count, oldest) = store.orders_for_phone_since(phone, now - DAY_MS).await?;
        if count < i64::from(max) {
            return Ok(());
        }
        let secs = oldest.map_or(3600, |t| ((t + DAY_MS - now).max(0) / 1000 + 1) as u64);
        Err(self.refused(
            "phone_orders",
            secs,
            format!("this phone already has {max} orders in 24 hours; try again in {secs} s"),
        ))
    }

    /// Counts a refusal under `limit` and builds its 429.
    pub(crate) fn refused(&self, limit: &'static str, secs: u64, message: String) -> ApiError {
        self.metrics
            .rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
        ApiError::RateLimited {
            retry_after_secs: secs,
            message,
        }
    }
}

/// Middleware: a request whose response has not started within
/// `limits.request_timeout_secs` is answered 503 `request_timeout`, and its
/// handler is dropped at its next wait (a write already handed to the
/// database may still commit: the client retries with its
/// `Idempotency-Key`). Only the start of a response is timed: a status
/// stream's body runs on.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.settings.limits.request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}
