//! Process-wide Prometheus series: requests by route and status, request
//! latency (seconds), orders created, orders by status (filled from the
//! database at scrape time by the API's `/metrics`) and webhook delivery
//! attempts by outcome, live status streams and their pollers, API key
//! look-ups and refusals by limit. Written by the HTTP edge and the webhook
//! worker.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of `voicepay_http_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of `voicepay_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Labels of `voicepay_orders`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// Labels of `voicepay_webhook_deliveries`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retry` (failed, will be tried again) or `failed` (given up).
    pub outcome: String,
}

/// Labels of `voicepay_rate_limited`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `merchant_orders`, `phone_orders`, `streams` or `connections`.
    pub limit: &'static str,
}

/// This process's Prometheus registry and the series voicepay keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub orders_created: Counter,
    pub orders: Family<StatusLabels, Gauge>,
    /// Webhook delivery attempts by outcome (this node's worker).
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    /// Live status streams open now.
    pub status_streams: Gauge,
    /// Orders whose status log is being polled now (one poller per order,
    /// however many streams follow it).
    pub status_stream_pollers: Gauge,
    /// Reads of the status log made by the pollers.
    pub status_stream_polls: Counter,
    /// API keys looked up in the database (a wrong key remembered as wrong
    /// costs none).
    pub api_key_lookups: Counter,
    /// Requests and connections refused by a `[limits]` cap, by limit.
    pub rate_limited: Family<LimitLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("voicepay");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let orders_created = Counter::default();
        let orders = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register("orders_created", "Orders accepted", orders_created.clone());
        registry.register("orders", "Orders by current status", orders.clone());
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            webhook_deliveries.clone(),
        );
        let status_streams = Gauge::default();
        registry.register(
            "status_streams",
            "Live status streams open",
            status_streams.clone(),
        );
        let status_stream_pollers = Gauge::default();
        registry.register(
            "status_stream_pollers",
            "Orders whose status log is polled for live streams",
            status_stream_pollers.clone(),
        );
        let status_stream_polls = Counter::default();
        registry.register(
            "status_stream_polls",
            "Status log reads for live streams",
            status_stream_polls.clone(),
        );
        let api_key_lookups = Counter::default();
        registry.register(
            "api_key_lookups",
            "API keys looked up in the database",
            api_key_lookups.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests and connections refused by a limit",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            orders_created,
            orders,
            webhook_deliveries,
            status_streams,
            status_stream_pollers,
            status_stream_polls,
            api_key_lookups,
            rate_limited,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition of every series.
    ///
    /// # Errors
    /// Only when formatting into the string fails (it does not in practice).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
