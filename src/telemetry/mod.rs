//! Telemetry of the process: tracing output ([`init`]), Prometheus
//! [`Metrics`], and the [`Readiness`] the health probe reports.

mod metrics;
mod readiness;

pub use metrics::{LimitLabels, Metrics, OutcomeLabels, RequestLabels, RouteLabels, StatusLabels};
pub use readiness::Readiness;

use crate::config::LogSettings;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global tracing subscriber: text or JSON lines on stderr.
/// `RUST_LOG` overrides `log.level` when set.
pub fn init(cfg: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = if cfg.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
