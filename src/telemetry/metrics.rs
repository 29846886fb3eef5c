//! Process-wide Prometheus series: requests by route and status, request
//! latency (seconds), orders created, orders by status (filled from the
//! database at scrape time by the API's `/metrics`) and webhook delivery
//! attempts by outcome. Written by the HTTP edge and the webhook worker.

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

/// This process's Prometheus registry and the series voicepay keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub orders_created: Counter,
    pub orders: Family<StatusLabels, Gauge>,
    /// Webhook delivery attempts by outcome (this node's worker).
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
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
        Self {
            registry,
            requests,
            latency,
            orders_created,
            orders,
            webhook_deliveries,
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
