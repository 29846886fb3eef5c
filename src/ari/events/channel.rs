//! A channel as events and `GET /channels` describe it.

use serde::{Deserialize, Serialize};

/// A channel as ARI describes it in events and in `GET /channels`. Only `id`
/// is required here; everything else defaults, so a channel from an older
/// or newer Asterisk still parses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Channel {
    /// Unique id: Asterisk's (`1712345678.42`) or the one we chose.
    pub id: String,
    /// Channel name, e.g. `PJSIP/trunk-00000001`.
    #[serde(default)]
    pub name: String,
    /// Its state (Up once answered).
    #[serde(default)]
    pub state: ChannelState,
    /// The caller's id: who calls us, or whom we called.
    #[serde(default)]
    pub caller: CallerId,
    /// The other party's id as connected-line information.
    #[serde(default)]
    pub connected: CallerId,
    /// Account code, usually empty.
    #[serde(default)]
    pub accountcode: String,
    /// Where the channel is in the dialplan (absent in some events).
    #[serde(default)]
    pub dialplan: Option<DialplanCep>,
    /// When the channel was created (ARI's date string).
    #[serde(default)]
    pub creationtime: Option<String>,
    /// The channel's language, for prompts.
    #[serde(default)]
    pub language: Option<String>,
    /// Channel variables configured in ari.conf's `channelvars`, if any.
    #[serde(default)]
    pub channelvars: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A caller id pair; either part may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallerId {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Number, as the network gave it.
    #[serde(default)]
    pub number: String,
}

/// A dialplan location: context, extension, priority.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DialplanCep {
    /// Context.
    #[serde(default)]
    pub context: String,
    /// Extension.
    #[serde(default)]
    pub exten: String,
    /// Priority.
    #[serde(default)]
    pub priority: i64,
    /// The application running there (e.g. `Stasis`).
    #[serde(default)]
    pub app_name: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub app_data: Option<String>,
}

open_enum! {
    /// A channel's state, as in the swagger's `Channel.state` list.
    ChannelState {
        /// Down: available.
        Down = "Down",
        /// Reserved.
        Rsrved = "Rsrved",
        /// Off hook.
        OffHook = "OffHook",
        /// Digits being dialed.
        Dialing = "Dialing",
        /// Ringing out (we are calling).
        Ring = "Ring",
        /// Ringing here (we are called).
        Ringing = "Ringing",
        /// Answered.
        Up = "Up",
        /// Line busy.
        Busy = "Busy",
        /// Dialing while off hook.
        DialingOffhook = "Dialing Offhook",
        /// Before ringing.
        PreRing = "Pre-ring",
        /// Asterisk's own "Unknown" state.
        Unknown = "Unknown",
    }
}

/// A channel whose state was not sent is in no state we know.
impl Default for ChannelState {
    fn default() -> Self {
        ChannelState::Unknown
    }
}
