//! ARI events as typed values, with no IO: the socket reader parses each text
//! frame with [`parse`] and routes the [`Event`] by [`Event::channel_id`].
//!
//! Every Asterisk release adds event types and enum values, so nothing here
//! may fail an event for something new: unknown event types become
//! [`Event::Unknown`], unknown channel/playback states become `Other(..)`,
//! and every field a channel or playback can lack is optional or defaulted.
//! Shapes follow ARI's swagger (`events.json`, `channels.json`,
//! `playbacks.json`); `tests/fake_ari/ari_swagger.rs` checks them against it.
//!
//! Here: the [`Event`] enum, [`parse`] and the keyed [`DtmfDigit`];
//! `channel.rs` and `playback.rs` hold the objects events carry, and
//! `open_enum.rs` the string enums that never fail on a new value.

#[macro_use]
mod open_enum;
mod channel;
mod playback;
mod wire;

pub use channel::{CallerId, Channel, ChannelState, DialplanCep};
pub use playback::{playback_channel, playback_id, Playback, PlaybackState};

use serde::Deserialize;
use std::borrow::Cow;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// One ARI event, tagged by its `type` field. Only the types a payment call
/// needs have a variant; all others parse as [`Event::Unknown`] so that a
/// newer Asterisk never breaks the stream.
///
/// `Debug` never shows a keyed digit (see [`DtmfDigit`]), but a channel
/// snapshot's dialplan `app_data` is whatever the dialplan ran (a lab
/// peer's `SendDTMF(<keys>)`, a transfer's `Stasis(…,transfer,<code>)`):
/// log an event by its type and channel id, never with `?event`. Rarely
/// present extra channels are boxed to keep every queued event small.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A channel entered our Stasis app: `args` are `Stasis(app,arg1,…)`'s
    /// arguments or the originate's `appArgs`.
    StasisStart {
        /// The application arguments, never a secret.
        #[serde(default)]
        args: Vec<String>,
        /// The channel now under our control.
        channel: Channel,
        /// The channel this one replaces (masquerade, transfer), if any.
        #[serde(default)]
        replace_channel: Option<Box<Channel>>,
    },
    /// The channel left our app (hang-up, `continue`, redirect): we may no
    /// longer control it.
    StasisEnd {
        /// The channel that left.
        channel: Channel,
    },
    /// A DTMF digit ended (ARI reports it when the tone stops).
    ChannelDtmfReceived {
        /// The key: 0-9, A-D, `*` or `#`. Possibly part of a secret.
        digit: DtmfDigit,
        /// How long the key was held, in milliseconds (0 when unknown).
        #[serde(default)]
        duration_ms: i64,
        /// When the tone ended: the event's `timestamp` (ARI's
        /// `2025-01-01T10:00:01.123+0800`), in milliseconds since the Unix
        /// epoch; None when absent or unreadable (the event still parses).
        #[serde(default, rename = "timestamp", deserialize_with = "ari_time_ms")]
        ended_at_ms: Option<i64>,
        /// The channel it was keyed on.
        channel: Channel,
    },
    /// A playback began: timers that wait for input must not start yet.
    PlaybackStarted {
        /// The playback.
        playback: Playback,
    },
    /// A playback with several media moved on to the next one.
    PlaybackContinuing {
        /// The playback.
        playback: Playback,
    },
    /// A playback ended: played out, stopped or failed (see its `state`).
    PlaybackFinished {
        /// The playback.
        playback: Playback,
    },
    /// Someone asked to hang the channel up (usually the caller): the call
    /// is ending even if the channel still exists for a moment.
    ChannelHangupRequest {
        /// Q.850 cause, when known.
        #[serde(default)]
        cause: Option<i64>,
        /// Technology-specific cause (e.g. SIP status), when known.
        #[serde(default)]
        tech_cause: Option<i64>,
        /// A soft hang-up (the channel is asked, not forced).
        #[serde(default)]
        soft: Option<bool>,
        /// The channel.
        channel: Channel,
    },
    /// The channel is gone; the cause tells an unanswered originate's end
    /// (16 normal, 17 busy, 19 no answer, 21 rejected, …).
    ChannelDestroyed {
        /// Q.850 cause.
        cause: i64,
        /// The cause's text.
        #[serde(default)]
        cause_txt: String,
        /// Technology-specific cause, when known.
        #[serde(default)]
        tech_cause: Option<i64>,
        /// The channel.
        channel: Channel,
    },
    /// The channel's state changed (Ringing, Up, …).
    ChannelStateChange {
        /// The channel, with its new state.
        channel: Channel,
    },
    /// Dialing progress of an originated channel (`peer`): `dialstatus` is
    /// empty while ringing, then ANSWER, BUSY, NOANSWER, CONGESTION, …
    Dial {
        /// Empty while in progress, then the final Dial status.
        dialstatus: String,
        /// The channel being dialed: for an originate, the one we created.
        peer: Channel,
        /// The calling channel, absent for an originate.
        #[serde(default)]
        caller: Option<Box<Channel>>,
        /// The dial string, when reported.
        #[serde(default)]
        dialstring: Option<String>,
        /// Where the call was forwarded to, if it was.
        #[serde(default)]
        forward: Option<String>,
        /// The channel created by the forward, if any.
        #[serde(default)]
        forwarded: Option<Box<Channel>>,
    },
    /// Talk began on a channel with `TALK_DETECT` set (func_talkdetect).
    ChannelTalkingStarted {
        /// The channel.
        channel: Channel,
    },
    /// Talk ended on a channel with `TALK_DETECT` set: sent once the
    /// channel has been silent for the set `dsp_silence_threshold`.
    ChannelTalkingFinished {
        /// The channel.
        channel: Channel,
        /// How long talking was detected, in milliseconds.
        #[serde(default)]
        duration: i64,
    },
    /// Another WebSocket took our app name over: this connection will get no
    /// more events for it (each node needs its own app name).
    ApplicationReplaced,
    /// Any event type this version does not model.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The `type` names that have a variant, for checks against the swagger.
    pub const KNOWN_TYPES: &'static [&'static str] = &[
        "StasisStart",
        "StasisEnd",
        "ChannelDtmfReceived",
        "PlaybackStarted",
        "PlaybackContinuing",
        "PlaybackFinished",
        "ChannelHangupRequest",
        "ChannelDestroyed",
        "ChannelStateChange",
        "Dial",
        "ChannelTalkingStarted",
        "ChannelTalkingFinished",
        "ApplicationReplaced",
    ];

    /// The ARI `type` of this event (`"Unknown"` for unmodelled types), for
    /// logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::StasisStart { .. } => "StasisStart",
            Event::StasisEnd { .. } => "StasisEnd",
            Event::ChannelDtmfReceived { .. } => "ChannelDtmfReceived",
            Event::PlaybackStarted { .. } => "PlaybackStarted",
            Event::PlaybackContinuing { .. } => "PlaybackContinuing",
            Event::PlaybackFinished { .. } => "PlaybackFinished",
            Event::ChannelHangupRequest { .. } => "ChannelHangupRequest",
            Event::ChannelDestroyed { .. } => "ChannelDestroyed",
            Event::ChannelStateChange { .. } => "ChannelStateChange",
            Event::Dial { .. } => "Dial",
            Event::ChannelTalkingStarted { .. } => "ChannelTalkingStarted",
            Event::ChannelTalkingFinished { .. } => "ChannelTalkingFinished",
            Event::ApplicationReplaced => "ApplicationReplaced",
            Event::Unknown => "Unknown",
        }
    }

    /// For a `StasisStart` that replaces a channel, the id of the channel it
    /// replaces (`replace_channel`): a masquerade (an attended transfer
    /// into the app, some pickups) moved the call onto this event's new
    /// channel; the old channel's `StasisEnd` follows (res_stasis.c,
    /// `channel_replaced_cb`). None for any other event.
    pub fn replaced_channel_id(&self) -> Option<&str> {
        match self {
            Event::StasisStart {
                replace_channel: Some(old),
                ..
            } => Some(old.id.as_str()),
            _ => None,
        }
    }

    /// Whether this event ends its channel's part in the app: it left
    /// (`StasisEnd`), is being hung up (`ChannelHangupRequest`) or is gone
    /// (`ChannelDestroyed`).
    pub fn ends_channel(&self) -> bool {
        matches!(
            self,
            Event::StasisEnd { .. }
                | Event::ChannelHangupRequest { .. }
                | Event::ChannelDestroyed { .. }
        )
    }

    /// Which call this event belongs to: the channel's id; for `Dial` the
    /// dialed `peer` (the channel we originated); for playbacks the
    /// `channel:<id>` target, or else the channel named by the playback id
    /// (see [`playback_channel`]). `None` for app-wide events.
    pub fn channel_id(&self) -> Option<&str> {
        match self {
            Event::StasisStart { channel, .. }
            | Event::StasisEnd { channel }
            | Event::ChannelDtmfReceived { channel, .. }
            | Event::ChannelHangupRequest { channel, .. }
            | Event::ChannelDestroyed { channel, .. }
            | Event::ChannelStateChange { channel }
            | Event::ChannelTalkingStarted { channel }
            | Event::ChannelTalkingFinished { channel, .. } => Some(&channel.id),
            Event::Dial { peer, .. } => Some(&peer.id),
            Event::PlaybackStarted { playback }
            | Event::PlaybackContinuing { playback }
            | Event::PlaybackFinished { playback } => playback.channel_id(),
            Event::ApplicationReplaced | Event::Unknown => None,
        }
    }
}

/// Why a text frame is not an event. Carries no payload text: a frame can
/// hold a keyed digit, and serde's messages quote the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ARI {event_type} event ({category} error at line {line}, column {column})")]
pub struct ParseError {
    /// The frame's `type`, or `"?"` when even that is unreadable.
    pub event_type: String,
    /// serde_json's error category: syntax, data, eof or io.
    pub category: &'static str,
    /// Where in the frame parsing failed.
    pub line: usize,
    /// Where in the frame parsing failed.
    pub column: usize,
}

/// Parses one text frame of the events socket. Unknown types give
/// [`Event::Unknown`]; an error never quotes the frame (see [`ParseError`]).
/// Reads only the variant the frame's `type` names (see `wire.rs`), not a
/// copy of the whole frame first as serde's internally tagged derive does.
pub fn parse(text: &str) -> Result<Event, ParseError> {
    wire::parse(text).map_err(|e| ParseError {
        event_type: type_of(text).unwrap_or_else(|| "?".into()),
        category: match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        },
        line: e.line(),
        column: e.column(),
    })
}

/// The `type` of a frame, for logging an unknown or malformed event without
/// its content. Limited to a short identifier so a log never carries more.
pub fn type_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
    }
    let tag: Tag<'_> = serde_json::from_str(text).ok()?;
    let ok = tag.kind.len() <= 64 && tag.kind.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| tag.kind.into_owned())
}

/// An ARI `Date` (`Event.timestamp`: Asterisk writes `%FT%T.%q%z`, e.g.
/// `2025-01-01T10:00:01.123+0800`; RFC 3339's `+08:00` is read too) as
/// milliseconds since the Unix epoch. Anything else gives None rather than
/// failing the event: the time only refines how a digit is read.
fn ari_time_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let text: Option<Cow<'de, str>> = Option::deserialize(d)?;
    Ok(text.as_deref().and_then(parse_ari_time_ms))
}

/// See [`ari_time_ms`].
fn parse_ari_time_ms(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let asterisk = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]][offset_hour sign:mandatory][offset_minute]"
    );
    let at = time::OffsetDateTime::parse(text, asterisk)
        .or_else(|_| time::OffsetDateTime::parse(text, &Rfc3339))
        .ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A DTMF key as ARI reported it. It may be a PIN digit, so it is wiped when
/// dropped and prints as `*` in `Debug`; read it with [`DtmfDigit::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct DtmfDigit(String);

impl DtmfDigit {
    /// Wraps a key (tests and fakes; the socket reader gets it from serde).
    pub fn new(digit: impl Into<String>) -> Self {
        Self(digit.into())
    }

    /// The key, when it is one character (ARI always sends one). Only the
    /// IVR machine should look at it.
    pub fn expose(&self) -> Option<char> {
        let mut chars = self.0.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
}

impl std::fmt::Debug for DtmfDigit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtmfDigit(*)")
    }
}

#[cfg(test)]
mod tests;
