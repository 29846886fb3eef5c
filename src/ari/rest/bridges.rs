//! Bridges, for the assisted flow (`crate::calls::assisted`): one mixing
//! bridge per assisted call holds the cardholder's and the agent's
//! channels, and the cardholder's channel is re-added with `absorbDTMF` and
//! `mute` while the secret is keyed (ARI `bridges.json`, Asterisk 22:
//! `POST /bridges/{bridgeId}?type=mixing`, `POST
//! /bridges/{bridgeId}/addChannel?channel=&absorbDTMF=&mute=`, `POST
//! /bridges/{bridgeId}/removeChannel?channel=`, `DELETE
//! /bridges/{bridgeId}`; `POST|DELETE /channels/{channelId}/mute?direction=`
//! from `channels.json`). A channel's bridge features are set when it
//! joins: adding a channel that is already in the bridge changes nothing,
//! so changing them means removing it and adding it again.

use super::{AriError, AriRest, Result};
use reqwest::Method;

impl AriRest {
    /// Creates a mixing bridge with our id (`type=mixing`: media between all
    /// members; DTMF of members added with `absorbDTMF` is kept from it).
    pub async fn create_bridge(&self, bridge_id: &str) -> Result<()> {
        let req = self
            .request(Method::POST, &["bridges", bridge_id])
            .query(&[("type", "mixing")]);
        self.send(req).await
    }

    /// Shuts a bridge down; one already gone counts as done. Its channels
    /// stay in our app.
    pub async fn destroy_bridge(&self, bridge_id: &str) -> Result<()> {
        let req = self.request(Method::DELETE, &["bridges", bridge_id]);
        match self.send(req).await {
            Err(AriError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// Adds a channel to a bridge: with `absorb_dtmf` its DTMF never reaches
    /// the other members; with `mute` its audio does not either.
    pub async fn add_to_bridge(
        &self,
        bridge_id: &str,
        channel_id: &str,
        absorb_dtmf: bool,
        mute: bool,
    ) -> Result<()> {
        let flag = |b: bool| if b { "true" } else { "false" };
        let req = self
            .request(Method::POST, &["bridges", bridge_id, "addChannel"])
            .query(&[
                ("channel", channel_id),
                ("absorbDTMF", flag(absorb_dtmf)),
                ("mute", flag(mute)),
            ]);
        self.send(req).await
    }

    /// Takes a channel out of a bridge; it stays in our app.
    pub async fn remove_from_bridge(&self, bridge_id: &str, channel_id: &str) -> Result<()> {
        let req = self
            .request(Method::POST, &["bridges", bridge_id, "removeChannel"])
            .query(&[("channel", channel_id)]);
        self.send(req).await
    }

    /// Mutes (`on`) or unmutes the audio coming *from* the channel
    /// (`direction=in`): whoever it is bridged with hears silence, while
    /// its DTMF still reaches us.
    pub async fn mute_in(&self, channel_id: &str, on: bool) -> Result<()> {
        let method = if on { Method::POST } else { Method::DELETE };
        let req = self
            .request(method, &["channels", channel_id, "mute"])
            .query(&[("direction", "in")]);
        self.send(req).await
    }
}
