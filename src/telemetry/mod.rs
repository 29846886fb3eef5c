//! Telemetry of the process: tracing output ([`init`]), Prometheus
//! [`Metrics`], and the [`Readiness`] the health probe reports.

mod metrics;
mod readiness;

pub use metrics::{LimitLabels, Metrics, OutcomeLabels, RequestLabels, RouteLabels, StatusLabels};
pub use readiness::Readiness;

use crate::config::LogSettings;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Libraries whose own tracing (or `log` records, bridged) shows what goes
/// over the wire: ARI WebSocket frames (a `ChannelDtmfReceived` frame holds a
/// keyed digit), HTTP request and response bodies and headers (API keys,
/// Basic credentials), TLS records. They stay silent at every level, whatever
/// `RUST_LOG` or `log.level` asks; voicepay's own events say what happened
/// without the bytes.
pub const WIRE_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "axum::rejection",
    "tower_http",
];

/// The filter that silences [`WIRE_TARGETS`] and lets everything else
/// through to the level filter.
pub fn wire_silence() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(WIRE_TARGETS.iter().map(|t| (*t, LevelFilter::OFF)))
}

/// Installs the global tracing subscriber: text or JSON lines on stderr.
/// `RUST_LOG` overrides `log.level` when set; [`WIRE_TARGETS`] are off
/// either way.
pub fn init(cfg: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    use std::io::IsTerminal;
    let fmt = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let fmt = if cfg.format == "json" {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    // The silencer passes everything else at most at the filter's own
    // level: its default of TRACE made the subscriber's level hint TRACE,
    // and `try_init` gives that hint to the `log` bridge, so every
    // `log::trace!` of tungstenite (several per WebSocket frame) was
    // built and dispatched before being dropped (perf, README "SIP load").
    let most = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(wire_silence().with_default(most))
        .with(fmt)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn wire_libraries_are_silent_even_at_trace() {
        let f = wire_silence();
        for target in [
            "tungstenite::protocol",
            "tokio_tungstenite",
            "hyper::proto::h1::io",
            "hyper_util::client::legacy::pool",
            "reqwest::connect",
            "h2::codec::framed_read",
            "rustls::conn",
        ] {
            assert!(!f.would_enable(target, &Level::TRACE), "{target}");
            assert!(!f.would_enable(target, &Level::ERROR), "{target}");
        }
        // voicepay itself, and other libraries, follow the level filter.
        assert!(f.would_enable("voicepay::ari::connection", &Level::TRACE));
        assert!(f.would_enable("sqlx::pool", &Level::DEBUG));
    }
}
