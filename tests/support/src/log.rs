//! `TEST_LOG=1 cargo test …` shows the daemon's tracing output beside each
//! test's own output (captured with it, printed when it fails or with
//! `--nocapture`). The filter is `RUST_LOG` (default `debug`). Unset, empty
//! or `0`: no subscriber, as before.
//!
//! The helpers that start something ([`crate::spawn_app`], the fake ARI, the
//! lab) call [`init`], so every test gets the switch without asking.

use std::io::IsTerminal;
use std::sync::Once;
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
