//! `[log]`: the format and filter of the daemon's traces.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `voicepay=debug,info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl LogSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be text or json");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return invalid("log.level", "is not a valid tracing filter");
        }
        Ok(())
    }
}
