//! What the live status streams share: one poller per order, and the caps
//! on open streams.
//!
//! However many streams follow one order, one task reads its status log,
//! every `http.events_poll_ms`, and publishes what it has read so far on a
//! `tokio::sync::watch` channel; each stream keeps its own cursor over that
//! list (its `Last-Event-ID`). The poller stops, and leaves the registry,
//! when the last stream of its order is gone, when the order reaches a
//! final status, or at shutdown. A stream is refused (429 `rate_limited`)
//! when `limits.max_streams` are open on the node or
//! `limits.max_streams_per_merchant` for its merchant.

use super::super::ApiError;
use crate::store::{EventRow, Store};
use crate::telemetry::{LimitLabels, Metrics};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a refused stream is told to wait, in seconds.
const STREAM_RETRY_SECS: u64 = 5;

/// An order's status log as its poller has read it.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// `created` and `status` rows, oldest first.
    pub rows: Vec<EventRow>,
    /// The order's result code, once the final status is among `rows`.
    pub result_code: Option<String>,
    /// Reads of the log completed so far.
    pub reads: u64,
    /// Nothing more will come: the final status is in `rows`, or the
    /// poller stopped (a database error, or shutdown; the client reconnects
    /// with `Last-Event-ID` and misses nothing).
    pub ended: bool,
}

/// The pollers by order id, and the open streams by merchant.
pub struct StatusFeeds {
    store: Store,
    metrics: Arc<Metrics>,
    poll: Duration,
    max_streams: usize,
    max_per_merchant: usize,
    pollers: Mutex<HashMap<String, watch::Sender<Arc<Snapshot>>>>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_merchant: HashMap<String, usize>,
}

/// One open stream's place under the caps; given back on drop (when the
/// client goes away or the stream ends).
pub struct StreamSlot {
    feeds: Arc<StatusFeeds>,
    merchant_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.feeds.open);
        open.total -= 1;
        if let Some(n) = open.by_merchant.get_mut(&self.merchant_id) {
            *n -= 1;
            if *n == 0 {
                open.by_merchant.remove(&self.merchant_id);
            }
        }
        self.feeds.metrics.status_streams.dec();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StatusFeeds {
    pub fn new(settings: &crate::config::Settings, store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            poll: Duration::from_millis(settings.http.events_poll_ms),
            max_streams: settings.limits.max_streams,
            max_per_merchant: settings.limits.max_streams_per_merchant,
            pollers: Mutex::default(),
            open: Mutex::default(),
        }
    }

    /// A place for one more stream of `merchant_id`.
    ///
    /// # Errors
    /// [`ApiError::RateLimited`] when the node or the merchant is at its cap.
    pub fn open(self: &Arc<Self>, merchant_id: &str) -> Result<StreamSlot, ApiError> {
        let mut open = lock(&self.open);
        let mine = open.by_merchant.get(merchant_id).copied().unwrap_or(0);
        let full = if open.total >= self.max_streams {
            Some("this node has too many live status streams open")
        } else if mine >= self.max_per_merchant {
            Some("this merchant has too many live status streams open")
        } else {
            None
        };
        if let Some(why) = full {
            self.metrics
                .rate_limited
                .get_or_create(&LimitLabels { limit: "streams" })
                .inc();
            return Err(ApiError::RateLimited {
                retry_after_secs: STREAM_RETRY_SECS,
                message: format!("{why}; close one or try again later"),
            });
        }
        open.total += 1;
        *open.by_merchant.entry(merchant_id.to_owned()).or_default() += 1;
        self.metrics.status_streams.inc();
        Ok(StreamSlot {
            feeds: self.clone(),
            merchant_id: merchant_id.to_owned(),
        })
    }

    /// Follows `order_id`'s status log: joins its poller, or starts one
    /// (which ends with `shutdown`).
    pub fn subscribe(
        self: &Arc<Self>,
        order_id: &str,
        shutdown: &CancellationToken,
    ) -> watch::Receiver<Arc<Snapshot>> {
        let mut pollers = lock(&self.pollers);
        if let Some(tx) = pollers.get(order_id) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        pollers.insert(order_id.to_owned(), tx.clone());
        self.metrics.status_stream_pollers.inc();
        let me = self.clone();
        let (id, stop) = (order_id.to_owned(), shutdown.clone());
        tokio::spawn(async move {
            me.run_poller(&id, &tx, stop).await;
            let mut pollers = lock(&me.pollers);
            if pollers.get(&id).is_some_and(|t| t.same_channel(&tx)) {
                pollers.remove(&id);
            }
            me.metrics.status_stream_pollers.dec();
            // Streams still holding a receiver see `ended` (or the closed
            // channel) and finish.
        });
        rx
    }

    /// Reads the log until the order is final, its last stream leaves, or
    /// `stop`.
    async fn run_poller(
        &self,
        order_id: &str,
        tx: &watch::Sender<Arc<Snapshot>>,
        stop: CancellationToken,
    ) {
        let mut snap = Snapshot::default();
        loop {
            let full_page = self.read(order_id, &mut snap).await;
            tx.send_replace(Arc::new(snap.clone()));
            if snap.ended {
                return;
            }
            if !full_page {
                tokio::select! {
                    _ = stop.cancelled() => {
                        snap.ended = true;
                        tx.send_replace(Arc::new(snap));
                        return;
                    }
                    _ = tx.closed() => {}
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
            // Decided and done under the registry's lock, so that no stream
            // joins a poller that is leaving.
            let mut pollers = lock(&self.pollers);
            if tx.receiver_count() == 0 {
                if pollers.get(order_id).is_some_and(|t| t.same_channel(tx)) {
                    pollers.remove(order_id);
                }
                return;
            }
        }
    }

    /// One read of the log into `snap`; true when a full page came back
    /// (more may be waiting).
    async fn read(&self, order_id: &str, snap: &mut Snapshot) -> bool {
        let after = snap.rows.last().map_or(0, |r| r.id);
        self.metrics.status_stream_polls.inc();
        let rows = match self.store.events_after(order_id, after).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(order = %order_id, error = %e, "status stream read failed");
                snap.ended = true;
                return false;
            }
        };
        let full_page = rows.len() >= 100;
        for row in rows {
            let last = row.to_status.is_some_and(|s| s.is_final());
            snap.rows.push(row);
            if last {
                snap.ended = true;
                snap.result_code = match self.store.order(order_id).await {
                    Ok(order) => order.and_then(|o| o.result_code),
                    Err(e) => {
                        tracing::warn!(order = %order_id, error = %e, "reading the result failed");
                        None
                    }
                };
                break;
            }
        }
        snap.reads += 1;
        full_page && !snap.ended
    }
}
