//! Requests about Asterisk as a whole rather than one call: which Asterisk
//! answers and since when, every channel it has, global variables.

use super::{AriError, AriRest, Result};
use crate::ari::events::Channel;
use reqwest::Method;
use serde::Deserialize;

/// What `GET /asterisk/info` tells us: which Asterisk this is and when it
/// started. A restart means every channel we knew is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskInfo {
    /// `system.entity_id`: by default derived from the host's MAC address,
    /// so it stays the same across a restart on the same machine (seen on
    /// Asterisk 22.10); it changes when another host answers.
    pub entity_id: String,
    /// `status.startup_time`: changes on every start, so this is what tells
    /// a restart of the same Asterisk apart from a dropped socket. Empty if
    /// Asterisk did not send it.
    pub startup_time: String,
    /// `system.version`.
    pub version: String,
}

impl AsteriskInfo {
    /// Whether `self` is a different run of Asterisk than `before`: another
    /// entity, or the same one started again.
    pub fn restarted_since(&self, before: &AsteriskInfo) -> bool {
        self.entity_id != before.entity_id
            || (!self.startup_time.is_empty()
                && !before.startup_time.is_empty()
                && self.startup_time != before.startup_time)
    }
}

impl AriRest {
    /// `GET /asterisk/info`: the entity id and start time tell a restart
    /// apart from a dropped socket.
    pub async fn asterisk_info(&self) -> Result<AsteriskInfo> {
        #[derive(Deserialize)]
        struct Info {
            system: Option<System>,
            #[serde(default)]
            status: Option<Status>,
        }
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            startup_time: String,
        }
        #[derive(Deserialize)]
        struct System {
            entity_id: String,
            #[serde(default)]
            version: String,
        }
        let info: Info = self
            .send_json(self.request(Method::GET, &["asterisk", "info"]))
            .await?;
        let system = info
            .system
            .ok_or_else(|| AriError::Status(200, "asterisk/info has no system section".into()))?;
        Ok(AsteriskInfo {
            entity_id: system.entity_id,
            startup_time: info.status.map(|s| s.startup_time).unwrap_or_default(),
            version: system.version,
        })
    }

    /// `GET /channels`: every channel Asterisk has (all apps), to reconcile
    /// after a reconnect.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        self.send_json(self.request(Method::GET, &["channels"]))
            .await
    }

    /// Sets a global dialplan variable (`POST /asterisk/variable`), for
    /// switches the dialplan reads (e.g. whether payments are open).
    pub async fn set_global(&self, name: &str, value: &str) -> Result<()> {
        let req = self
            .request(Method::POST, &["asterisk", "variable"])
            .query(&[("variable", name), ("value", value)]);
        self.send(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_start_time_is_a_restart_even_with_the_same_entity_id() {
        let info = |entity: &str, started: &str| AsteriskInfo {
            entity_id: entity.into(),
            startup_time: started.into(),
            version: "22.10.1".into(),
        };
        let before = info("02:fc:00:00:00:01", "2026-11-25T20:44:01.987+0000");
        assert!(!before.restarted_since(&before));
        assert!(info("02:fc:00:00:00:01", "2026-11-25T21:02:11.004+0000").restarted_since(&before));
        assert!(info("02:fc:00:00:00:02", "2026-11-25T20:44:01.987+0000").restarted_since(&before));
        // An Asterisk that sends no start time: only the entity id counts.
        assert!(!info("02:fc:00:00:00:01", "").restarted_since(&before));
    }
}
