//! `TEST_LOG=1 cargo test …` shows the daemon's tracing output beside each
//! test's own output (captured with it, printed when it fails or with
//! `--nocapture`). The filter is `RUST_LOG` (default `debug`). Unset, empty
//! or `0`: no subscriber, as before.
//!
//! The helpers that start something ([`crate::spawn_app`], the fake ARI, the
//! lab) call [`init`], so every test gets the switch without asking.
//!
//! A test that asserts on what the daemon logs uses [`capture`].

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, Once};
use tracing_subscriber::EnvFilter;

/// Whether `TEST_LOG` asks for traces: any value but empty and `0`.
pub fn enabled() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Installs the test subscriber once per test binary when [`enabled`].
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !enabled() {
            return;
        }
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
        // Another subscriber already set (a test of its own) wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(std::io::stdout().is_terminal())
            .try_init();
    });
}

/// What the daemon traced (at every level, TRACE included) on the test's
/// thread since [`capture`]; keep it alive for the whole test.
pub struct Captured {
    sink: Sink,
    _guard: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

impl Captured {
    /// Everything logged so far, as text (no colours).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.sink.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Captures what the daemon logs, for a `#[tokio::test]` (its runtime is
/// single-threaded: the daemon's tasks all log through this thread's
/// subscriber).
///
/// A second, do-nothing dispatcher lives as long as the capture: with only
/// one dispatcher registered, tracing-core takes a callsite's interest from
/// the default dispatcher of whichever thread hits it first, so another
/// test's thread (no subscriber) would switch that log line off for good,
/// and the capture would miss it when tests run in parallel. With two,
/// every registered dispatcher is asked.
pub fn capture() -> Captured {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    Captured {
        sink,
        _guard: tracing::subscriber::set_default(subscriber),
        _second: second,
    }
}

/// Where [`capture`]'s subscriber writes.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
