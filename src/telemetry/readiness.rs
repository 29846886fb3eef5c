//! What `/readyz` reports beyond the database: set by the components that
//! start after the HTTP edge (the ARI connection), read by the edge.

use std::sync::Mutex;

/// The ARI connection's state as the readiness probe sees it.
#[derive(Debug, Default)]
pub struct Readiness {
    /// `None` while no ARI client runs in this process.
    ari_connected: Mutex<Option<bool>>,
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
}
