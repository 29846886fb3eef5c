//! `[demo]`: the demo checkout page.

use serde::{Deserialize, Serialize};

/// The demo checkout page (`/demo`): a small merchant front end for the lab.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Serve `/demo`. The daemon then keeps a demo merchant whose API key
    /// never leaves the server. Off by default; `scripts/run` turns it on.
    pub enabled: bool,
}
