//! The fast path of [`super::parse`]: the frame's `type` first (borrowed,
//! every other field skipped without allocating), then that one variant's
//! fields straight from the text. serde's derive for an internally tagged
//! enum (`#[serde(tag = "type")]`, kept on [`Event`] for other callers)
//! first copies the whole frame into an owned tree of `Content` values
//! (every key and string allocated) and then reads the variant from that
//! copy: a quarter of the event reader's CPU under load (perf, README
//! "SIP load"). Each struct here mirrors its variant's fields and serde
//! attributes exactly; `tests.rs` checks both paths give the same event.

use super::{ari_time_ms, Channel, DtmfDigit, Event, Playback};
use serde::Deserialize;
use std::borrow::Cow;

/// The `type` of a frame, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct StasisStart {
    #[serde(default)]
    args: Vec<String>,
    channel: Channel,
    #[serde(default)]
    replace_channel: Option<Box<Channel>>,
}

#[derive(Deserialize)]
struct OnChannel {
    channel: Channel,
}

#[derive(Deserialize)]
struct Dtmf {
    digit: DtmfDigit,
    #[serde(default)]
    duration_ms: i64,
    #[serde(default, rename = "timestamp", deserialize_with = "ari_time_ms")]
    ended_at_ms: Option<i64>,
    channel: Channel,
}

#[derive(Deserialize)]
struct OnPlayback {
    playback: Playback,
}

#[derive(Deserialize)]
struct HangupRequest {
    #[serde(default)]
    cause: Option<i64>,
    #[serde(default)]
    tech_cause: Option<i64>,
    #[serde(default)]
    soft: Option<bool>,
    channel: Channel,
}

#[derive(Deserialize)]
struct Destroyed {
    cause: i64,
    #[serde(default)]
    cause_txt: String,
    #[serde(default)]
    tech_cause: Option<i64>,
    channel: Channel,
}

#[derive(Deserialize)]
struct Dial {
    dialstatus: String,
    peer: Channel,
    #[serde(default)]
    caller: Option<Box<Channel>>,
    #[serde(default)]
    dialstring: Option<String>,
    #[serde(default)]
    forward: Option<String>,
    #[serde(default)]
    forwarded: Option<Box<Channel>>,
}

#[derive(Deserialize)]
struct TalkingFinished {
    channel: Channel,
    #[serde(default)]
    duration: i64,
}

/// One frame as an [`Event`]: the same result (and, for a bad frame, an
/// error of the same category) as `serde_json::from_str::<Event>`.
pub(super) fn parse(text: &str) -> serde_json::Result<Event> {
    use serde_json::from_str as read;
    let tag: Tag<'_> = read(text)?;
    Ok(match &*tag.kind {
        "StasisStart" => {
            let f: StasisStart = read(text)?;
            Event::StasisStart {
                args: f.args,
                channel: f.channel,
                replace_channel: f.replace_channel,
            }
        }
        "StasisEnd" => Event::StasisEnd {
            channel: read::<OnChannel>(text)?.channel,
        },
        "ChannelDtmfReceived" => {
            let f: Dtmf = read(text)?;
            Event::ChannelDtmfReceived {
                digit: f.digit,
                duration_ms: f.duration_ms,
                ended_at_ms: f.ended_at_ms,
                channel: f.channel,
            }
        }
        "PlaybackStarted" => Event::PlaybackStarted {
            playback: read::<OnPlayback>(text)?.playback,
        },
        "PlaybackContinuing" => Event::PlaybackContinuing {
            playback: read::<OnPlayback>(text)?.playback,
        },
        "PlaybackFinished" => Event::PlaybackFinished {
            playback: read::<OnPlayback>(text)?.playback,
        },
        "ChannelHangupRequest" => {
            let f: HangupRequest = read(text)?;
            Event::ChannelHangupRequest {
                cause: f.cause,
                tech_cause: f.tech_cause,
                soft: f.soft,
                channel: f.channel,
            }
        }
        "ChannelDestroyed" => {
            let f: Destroyed = read(text)?;
            Event::ChannelDestroyed {
                cause: f.cause,
                cause_txt: f.cause_txt,
                tech_cause: f.tech_cause,
                channel: f.channel,
            }
        }
        "ChannelStateChange" => Event::ChannelStateChange {
            channel: read::<OnChannel>(text)?.channel,
        },
        "Dial" => {
            let f: Dial = read(text)?;
            Event::Dial {
                dialstatus: f.dialstatus,
                peer: f.peer,
                caller: f.caller,
                dialstring: f.dialstring,
                forward: f.forward,
                forwarded: f.forwarded,
            }
        }
        "ChannelTalkingStarted" => Event::ChannelTalkingStarted {
            channel: read::<OnChannel>(text)?.channel,
        },
        "ChannelTalkingFinished" => {
            let f: TalkingFinished = read(text)?;
            Event::ChannelTalkingFinished {
                channel: f.channel,
                duration: f.duration,
            }
        }
        "ApplicationReplaced" => Event::ApplicationReplaced,
        _ => Event::Unknown,
    })
}
