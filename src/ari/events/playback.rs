//! A playback as its events describe it, and the playback ids that name
//! their channel.

use serde::{Deserialize, Serialize};

/// A playback (a prompt on a channel or bridge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Playback {
    /// The playback id; ours are `<channelId>:<n>` (see [`playback_id`]).
    pub id: String,
    /// The media playing now.
    #[serde(default)]
    pub media_uri: String,
    /// The media that plays next, for a list.
    #[serde(default)]
    pub next_media_uri: Option<String>,
    /// `channel:<id>` or `bridge:<id>`.
    #[serde(default)]
    pub target_uri: String,
    /// Language used for sound files.
    #[serde(default)]
    pub language: Option<String>,
    /// Its state; `done` and `failed` are final.
    #[serde(default = "PlaybackState::unknown")]
    pub state: PlaybackState,
}

impl Playback {
    /// The channel this playback plays on: its `channel:` target, or the
    /// channel named in our id convention.
    pub fn channel_id(&self) -> Option<&str> {
        self.target_uri
            .strip_prefix("channel:")
            .filter(|id| !id.is_empty())
            .or_else(|| playback_channel(&self.id))
    }
}

/// The playback id for the `n`th prompt of a call: `<channelId>:<n>`. ARI
/// accepts any client-chosen id; naming the channel in it lets a playback
/// event be routed even without a `channel:` target, and makes ids unique
/// across calls without coordination.
pub fn playback_id(channel_id: &str, n: u64) -> String {
    format!("{channel_id}:{n}")
}

/// The channel named by a playback id made with [`playback_id`], if it
/// follows the convention.
pub fn playback_channel(playback_id: &str) -> Option<&str> {
    let (channel, n) = playback_id.rsplit_once(':')?;
    let numbered = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (numbered && !channel.is_empty()).then_some(channel)
}

open_enum! {
    /// A playback's state, as in the swagger's `Playback.state` list plus
    /// `paused`, which Asterisk returns though the model omits it.
    PlaybackState {
        /// Waiting to start.
        Queued = "queued",
        /// Playing.
        Playing = "playing",
        /// Moving to the next media of a list.
        Continuing = "continuing",
        /// Finished: played out or stopped.
        Done = "done",
        /// Could not play (e.g. missing sound file).
        Failed = "failed",
        /// Paused by a control request.
        Paused = "paused",
    }
}

impl PlaybackState {
    fn unknown() -> Self {
        PlaybackState::Other(String::new())
    }
}
