//! What `/readyz` reports beyond the database: set by the components that
//! start after the HTTP edge (the ARI connection), read by the edge.

use std::sync::Mutex;

/// The ARI connection's state as the readiness probe sees it.
#[derive(Debug, Default)]
pub struct Readiness {
    /// `None` while no ARI client runs in this process.
    ari_connected: Mutex<Option<bool>>,
    /// Shutting down gracefully: the node finishes its calls and takes no
    /// new ones (a balancer should stop sending here).
    draining: std::sync::atomic::AtomicBool,
}

impl Readiness {
    /// Records the ARI connection's state: `Some(up)` once a client runs.
    pub fn set_ari(&self, up: Option<bool>) {
        *self.ari_connected.lock().unwrap_or_else(|e| e.into_inner()) = up;
    }

    /// `None` when no ARI client runs, else whether it is connected.
    pub fn ari(&self) -> Option<bool> {
        *self.ari_connected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the node drains its calls before stopping.
    pub fn set_draining(&self, on: bool) {
        self.draining
            .store(on, std::sync::atomic::Ordering::Release);
    }

    /// Whether the node drains its calls before stopping.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Acquire)
    }
}
