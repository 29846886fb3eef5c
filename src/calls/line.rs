//! The channel a call is on, and its events. A call keeps its line when
//! Asterisk moves it onto another channel: a masquerade (an attended
//! transfer into our app, some pickups) sends `StasisStart` for the new
//! channel with no args and `replace_channel` naming the old one, then the
//! old channel's `StasisEnd` (res_stasis.c, `channel_replaced_cb`;
//! ARI-NOTES.md). The dispatcher already hands that `StasisStart` to the
//! call's own queue ([`crate::ari::Dispatcher`]); here the line switches to
//! the new channel id, has the desk follow it (ownership, the attempt row:
//! [`Follow`]), and keeps ending events of a channel it left from ending
//! the call. Every command a flow sends afterwards (prompts, hang-up, the
//! hand-back to the dialplan) names [`Line::id`], so it reaches the new
//! channel.
//!
//! The line is also where a `ChannelDtmfReceived` that only repeats the
//! previous press (a relay re-stamping RFC 4733 end packets) is dropped,
//! once for every stage of the call (the order-code entry, the IVR):
//! [`crate::ivr::repeat`], `ivr.dtmf_repeat_guard_ms`.

use crate::ari;
use crate::ivr::repeat::{Judged, RepeatGuard, Report};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc::UnboundedReceiver;

/// What follows a call onto its new channel besides the line itself: the
/// desk re-registers the call under the new id and records it on the
/// call's attempt row. Must be safe to run again for the same move (a
/// cancelled [`Line::next`] runs it again).
pub trait Follow: Send + Sync {
    /// The call on channel `from` is now on channel `to`.
    fn follow<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// What [`Line::next`] gives.
// Returned and matched at once, never stored or queued: boxing every event
// to shrink the rare `Moved` would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Next {
    /// An event of the call's channel (or, for a playback started before
    /// a move, of the channel it left).
    Event(ari::Event),
    /// The call moved onto a new channel ([`Line::id`] now); `from` is the
    /// channel it left. The `StasisStart` that said so is not repeated.
    Moved {
        /// The channel the call left.
        from: String,
    },
}

/// One call's channel and event stream (see the module docs).
pub struct Line<'a> {
    id: String,
    /// Channels the call has left, oldest first.
    left: Vec<String>,
    /// A move received but not yet followed (see [`Line::next`]).
    moving: Option<String>,
    events: UnboundedReceiver<ari::Event>,
    follow: Option<&'a dyn Follow>,
    /// Drops repeated reports of one key press, for the whole call.
    keys: RepeatGuard,
}

impl<'a> Line<'a> {
    /// The line of the call on `channel_id`, fed by its dispatcher queue;
    /// `follow` is told of every move (None: nothing besides the line
    /// needs to know, e.g. in tests).
    pub fn new(
        channel_id: impl Into<String>,
        events: UnboundedReceiver<ari::Event>,
        follow: Option<&'a dyn Follow>,
    ) -> Self {
        Self {
            id: channel_id.into(),
            left: Vec::new(),
            moving: None,
            events,
            follow,
            keys: RepeatGuard::default(),
        }
    }

    /// The line with the call's DTMF repeat guard
    /// (`IvrSettings::repeat_guard`, `ivr.dtmf_repeat_guard_ms`) in place
    /// of the default one ([`crate::ivr::repeat::DEFAULT_REPEAT_GUARD`]).
    #[must_use]
    pub fn guarding(mut self, keys: RepeatGuard) -> Self {
        self.keys = keys;
        self
    }

    /// The channel the call is on now.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `channel_id` is a channel this call has moved away from.
    pub fn left(&self, channel_id: &str) -> bool {
        self.left.iter().any(|l| l == channel_id)
    }

    /// The call's next event, in Asterisk's order; None when the stream
    /// has ended (the channel left the app or is gone). A `StasisStart`
    /// replacing the call's channel moves the line (see [`Next::Moved`]);
    /// the end events (`StasisEnd`, hang-up request, destroyed) of a
    /// channel the call left are skipped.
    ///
    /// Cancel-safe: a move received before a cancellation is followed on
    /// the next call.
    pub async fn next(&mut self) -> Option<Next> {
        loop {
            if let Some(to) = self.moving.clone() {
                if let Some(follow) = self.follow {
                    follow.follow(&self.id, &to).await;
                }
                self.moving = None;
                let from = std::mem::replace(&mut self.id, to);
                tracing::info!(%from, to = %self.id, "the call moved to a new channel; continuing there");
                self.left.push(from.clone());
                return Some(Next::Moved { from });
            }
            let event = self.events.recv().await?;
            if event.replaced_channel_id() == Some(self.id.as_str()) {
                self.moving = event.channel_id().map(str::to_owned);
                continue;
            }
            let stale = event.ends_channel() && event.channel_id().is_some_and(|c| self.left(c));
            if !stale && !self.repeated(&event) {
                return Some(Next::Event(event));
            }
        }
    }
}

impl Line<'_> {
    /// Whether `event` is a DTMF report that is no new key press: no
    /// single key at all, or a repeat of the previous press (logged
    /// without the key: nothing is dropped silently).
    fn repeated(&mut self, event: &ari::Event) -> bool {
        let ari::Event::ChannelDtmfReceived {
            digit,
            duration_ms,
            ended_at_ms,
            ..
        } = event
        else {
            return false;
        };
        let Some(key) = digit.expose() else {
            return true;
        };
        let report = Report {
            key,
            ended_at_ms: *ended_at_ms,
            duration_ms: *duration_ms,
        };
        match self.keys.judge(report) {
            Judged::NewPress => false,
            Judged::Repeat { gap_ms } => {
                // The gap tells an operator how close a repeat came to the
                // guard (`ivr.dtmf_repeat_guard_ms`); never the key.
                tracing::info!(
                    duration_ms,
                    gap_ms,
                    "repeated DTMF report of one key press dropped"
                );
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    fn ev(v: serde_json::Value) -> ari::Event {
        ari::events::parse(&v.to_string()).unwrap()
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, String)>>);

    impl Follow for Seen {
        fn follow<'a>(
            &'a self,
            from: &'a str,
            to: &'a str,
        ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            self.0.lock().unwrap().push((from.into(), to.into()));
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test]
    async fn a_masquerade_moves_the_line_and_the_old_end_is_skipped() {
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Seen::default();
        let mut line = Line::new("old", rx, Some(&seen));
        let start = json!({"type": "StasisStart", "args": [], "channel": {"id": "new"},
                           "replace_channel": {"id": "old"}});
        tx.send(ev(start)).unwrap();
        tx.send(ev(json!({"type": "StasisEnd", "channel": {"id": "old"}})))
            .unwrap();
        tx.send(ev(
            json!({"type": "ChannelDtmfReceived", "digit": "1", "channel": {"id": "new"}}),
        ))
        .unwrap();
        tx.send(ev(json!({"type": "StasisEnd", "channel": {"id": "new"}})))
            .unwrap();
        drop(tx);
        assert!(matches!(line.next().await, Some(Next::Moved { from }) if from == "old"));
        assert_eq!(line.id(), "new");
        assert_eq!(*seen.0.lock().unwrap(), [("old".into(), "new".into())]);
        let Some(Next::Event(e)) = line.next().await else {
            panic!("a digit")
        };
        assert_eq!(e.type_name(), "ChannelDtmfReceived");
        let Some(Next::Event(e)) = line.next().await else {
            panic!("the new channel's end")
        };
        assert_eq!(e.channel_id(), Some("new"));
        assert!(line.next().await.is_none());
    }

    #[tokio::test]
    async fn a_start_replacing_another_channel_is_only_an_event() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut line = Line::new("mine", rx, None);
        let start = json!({"type": "StasisStart", "args": [], "channel": {"id": "new"},
                           "replace_channel": {"id": "other"}});
        tx.send(ev(start)).unwrap();
        assert!(matches!(line.next().await, Some(Next::Event(_))));
        assert_eq!(line.id(), "mine");
    }
}
