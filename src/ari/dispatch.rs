//! Per-call ordered dispatch: one unbounded queue per channel id, so the
//! socket reader hands an event over without ever waiting on a slow call,
//! and each call sees its own events in Asterisk's order.
//!
//! Lifecycle of a queue:
//! - It opens on a channel's first event (StasisStart for calls that enter
//!   the app, Dial/ChannelStateChange for an originate still ringing) and is
//!   announced to the supervisor as [`Notice::Call`].
//! - It closes after StasisEnd or ChannelDestroyed: the sender is dropped, so
//!   the call still reads what is queued and then sees the end of its
//!   stream. Later events for that channel (ChannelDestroyed after
//!   StasisEnd, a late playback event) go to [`Notice::Unrouted`] instead of
//!   opening a new call; only a new StasisStart (the channel came back into
//!   the app) opens one.
//! - A masquerade (an attended transfer into the app) brings a
//!   `StasisStart` for a new channel whose `replace_channel` names a
//!   channel with an open queue: that queue moves to the new id and gets
//!   the event, so the same call task goes on there. The old channel's
//!   end events that follow are unrouted (the call did not end); its other
//!   events (a playback started before the move) still reach the call. A
//!   `replace_channel` naming no open queue is an ordinary new call.
//! - On reconnect, queues of channels Asterisk no longer has are closed
//!   (their end was missed while the socket was down); after an Asterisk
//!   restart all are.
//!
//! Nothing is dropped silently: events with no call, or whose call task has
//! gone, are handed to the supervisor as `Unrouted`.

use super::events::{Channel, Event};
use super::rest::AriRest;
use super::Notice;
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::sync::mpsc;

/// How many closed channel ids are remembered to recognise late events.
const RECENTLY_ENDED: usize = 4096;

/// A new call: everything its task needs. Its events arrive in order on
/// `events`; the stream ends when the channel has left the app or is gone.
#[derive(Debug)]
pub struct Call {
    /// The channel id (ours for an originate).
    pub channel_id: String,
    /// The event that opened the queue (StasisStart, or Dial/state change
    /// for a ringing originate). Not repeated on `events`.
    pub first: Event,
    /// The rest of the channel's events, in order.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// A REST client for the call's commands.
    pub rest: AriRest,
}

/// Routes events to per-call queues. Owned by the connection task; IO-free
/// apart from the channel sends.
pub struct Dispatcher {
    queues: HashMap<String, mpsc::UnboundedSender<Event>>,
    /// Channels a call moved away from (masquerade) → the call's channel.
    moved: HashMap<String, String>,
    ended: RecentSet,
    notices: mpsc::UnboundedSender<Notice>,
    rest: AriRest,
}

impl Dispatcher {
    /// A dispatcher that announces calls and unrouted events on `notices`.
    pub fn new(notices: mpsc::UnboundedSender<Notice>, rest: AriRest) -> Self {
        Self {
            queues: HashMap::new(),
            moved: HashMap::new(),
            ended: RecentSet::new(RECENTLY_ENDED),
            notices,
            rest,
        }
    }

    /// Number of open call queues.
    pub fn open_calls(&self) -> usize {
        self.queues.len()
    }

    /// Routes one event. Returns false when the supervisor is gone (nobody
    /// can act on events any more).
    pub fn dispatch(&mut self, event: Event) -> bool {
        let Some(id) = event.channel_id().map(str::to_owned) else {
            return self.unrouted(event);
        };
        if let Some(old) = event.replaced_channel_id() {
            if self.queues.contains_key(old) {
                let old = old.to_owned();
                return self.move_call(old, id, event);
            }
        }
        let reentry = matches!(event, Event::StasisStart { .. });
        if let Some(to) = self.moved.get(&id).cloned() {
            if !reentry {
                return self.left_behind(&id, &to, event);
            }
            self.moved.remove(&id);
        }
        let closes = matches!(
            event,
            Event::StasisEnd { .. } | Event::ChannelDestroyed { .. }
        );
        if let Some(tx) = self.queues.get(&id) {
            if let Err(mpsc::error::SendError(event)) = tx.send(event) {
                // The call task ended early; say so rather than lose it.
                self.close(&id);
                tracing::debug!(channel = %id, "call task gone; event unrouted");
                return self.unrouted(event);
            }
            if closes {
                self.close(&id);
            }
            return true;
        }
        if self.ended.contains(&id) && !reentry {
            return self.unrouted(event);
        }
        self.open(id, event, closes)
    }

    /// Opens the queue of a new call whose first event is `first`.
    fn open(&mut self, id: String, first: Event, closes: bool) -> bool {
        let (tx, rx) = mpsc::unbounded_channel();
        let call = Call {
            channel_id: id.clone(),
            first,
            events: rx,
            rest: self.rest.clone(),
        };
        if closes {
            // A single-event call (e.g. destroyed while we never saw it ring):
            // its stream ends right after `first`.
            drop(tx);
            self.ended.insert(id);
        } else {
            self.queues.insert(id, tx);
        }
        self.notices.send(Notice::Call(call)).is_ok()
    }

    /// A masquerade moved the call on `old` onto `new` (`StasisStart` with
    /// `replace_channel`): the call's queue follows it and gets the
    /// `StasisStart`, so its task goes on with the same payment on `new`.
    /// When that task has ended, `new` is a new call like any other.
    fn move_call(&mut self, old: String, new: String, event: Event) -> bool {
        let Some(tx) = self.queues.remove(&old) else {
            return self.open(new, event, false);
        };
        match tx.send(event) {
            Ok(()) => {
                tracing::info!(from = %old, to = %new, "call moved to a new channel");
                self.queues.insert(new.clone(), tx);
                for to in self.moved.values_mut().filter(|to| **to == old) {
                    to.clone_from(&new);
                }
                self.moved.insert(old, new);
                true
            }
            Err(mpsc::error::SendError(event)) => {
                self.ended.insert(old);
                self.open(new, event, false)
            }
        }
    }

    /// An event of `old`, a channel the call has moved away from (now on
    /// `to`). Its end (`StasisEnd`, hang-up, destroyed) is not the call's:
    /// unrouted. Anything else (a playback started on it before the move)
    /// still goes to the call.
    fn left_behind(&mut self, old: &str, to: &str, event: Event) -> bool {
        if event.ends_channel() {
            if matches!(event, Event::ChannelDestroyed { .. }) {
                self.moved.remove(old);
                self.ended.insert(old.to_owned());
            }
            return self.unrouted(event);
        }
        match self.queues.get(to) {
            Some(tx) => match tx.send(event) {
                Ok(()) => true,
                Err(mpsc::error::SendError(event)) => self.unrouted(event),
            },
            None => self.unrouted(event),
        }
    }

    /// After a reconnect: close the queues whose channel is gone. When
    /// Asterisk restarted, every old channel is gone whatever `channels`
    /// says.
    pub fn reconcile(&mut self, asterisk_restarted: bool, channels: &[Channel]) {
        let alive: HashSet<&str> = channels.iter().map(|c| c.id.as_str()).collect();
        let gone: Vec<String> = self
            .queues
            .keys()
            .filter(|id| asterisk_restarted || !alive.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(channel = %id, "channel gone while disconnected; closing its queue");
            self.close(&id);
        }
    }

    fn close(&mut self, id: &str) {
        if let Some((id, _tx)) = self.queues.remove_entry(id) {
            // The channels the call moved away from end with it.
            let left: Vec<String> = self
                .moved
                .iter()
                .filter(|(_, to)| **to == id)
                .map(|(old, _)| old.clone())
                .collect();
            for old in left {
                self.moved.remove(&old);
                self.ended.insert(old);
            }
            self.ended.insert(id);
        }
    }

    fn unrouted(&mut self, event: Event) -> bool {
        tracing::debug!(event = event.type_name(), channel = ?event.channel_id(), "unrouted ARI event");
        self.notices.send(Notice::Unrouted(event)).is_ok()
    }
}

/// A bounded set that forgets its oldest entries.
struct RecentSet {
    order: VecDeque<String>,
    set: HashSet<String>,
    cap: usize,
}

impl RecentSet {
    fn new(cap: usize) -> Self {
        Self {
            order: VecDeque::new(),
            set: HashSet::new(),
            cap,
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ari::events::parse;
    use crate::config::AriSettings;

    fn rest() -> AriRest {
        AriRest::new(&AriSettings::default()).unwrap()
    }

    fn ev(kind: &str, id: &str) -> Event {
        parse(&format!(
            r#"{{"type":"{kind}","cause":16,"channel":{{"id":"{id}"}}}}"#
        ))
        .unwrap()
    }

    fn setup() -> (Dispatcher, mpsc::UnboundedReceiver<Notice>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Dispatcher::new(tx, rest()), rx)
    }

    fn next_call(rx: &mut mpsc::UnboundedReceiver<Notice>) -> Call {
        match rx.try_recv() {
            Ok(Notice::Call(c)) => c,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    #[test]
    fn a_call_gets_its_events_then_ends_after_stasis_end() {
        let (mut d, mut rx) = setup();
        assert!(d.dispatch(ev("StasisStart", "a")));
        assert!(d.dispatch(ev("ChannelStateChange", "a")));
        assert!(d.dispatch(ev("StasisEnd", "a")));
        let mut call = next_call(&mut rx);
        assert_eq!(call.channel_id, "a");
        assert_eq!(call.first.type_name(), "StasisStart");
        assert_eq!(
            call.events.try_recv().unwrap().type_name(),
            "ChannelStateChange"
        );
        assert_eq!(call.events.try_recv().unwrap().type_name(), "StasisEnd");
        assert!(matches!(
            call.events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(d.open_calls(), 0);
        // A late ChannelDestroyed is unrouted, not a new call.
        d.dispatch(ev("ChannelDestroyed", "a"));
        assert!(matches!(rx.try_recv(), Ok(Notice::Unrouted(_))));
        // Coming back into the app is a new call.
        d.dispatch(ev("StasisStart", "a"));
        assert_eq!(next_call(&mut rx).channel_id, "a");
    }

    fn replacing(new: &str, old: &str) -> Event {
        parse(&format!(
            r#"{{"type":"StasisStart","args":[],"channel":{{"id":"{new}"}},"replace_channel":{{"id":"{old}"}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_masquerade_moves_the_call_to_the_new_channel() {
        let (mut d, mut rx) = setup();
        d.dispatch(ev("StasisStart", "old"));
        let mut call = next_call(&mut rx);
        assert!(d.dispatch(replacing("new", "old")));
        // The old channel's end is not the call's; its other events are.
        d.dispatch(ev("ChannelStateChange", "old"));
        d.dispatch(ev("StasisEnd", "old"));
        d.dispatch(ev("ChannelDestroyed", "old"));
        d.dispatch(ev("ChannelStateChange", "new"));
        assert!(matches!(
            rx.try_recv(),
            Ok(Notice::Unrouted(Event::StasisEnd { .. }))
        ));
        assert!(matches!(
            rx.try_recv(),
            Ok(Notice::Unrouted(Event::ChannelDestroyed { .. }))
        ));
        assert!(rx.try_recv().is_err(), "no new call was opened");
        let got: Vec<(&str, String)> = std::iter::from_fn(|| call.events.try_recv().ok())
            .map(|e| (e.type_name(), e.channel_id().unwrap_or_default().to_owned()))
            .collect();
        let want = [
            ("StasisStart", "new"),
            ("ChannelStateChange", "old"),
            ("ChannelStateChange", "new"),
        ];
        assert_eq!(got, want.map(|(k, c)| (k, c.to_owned())));
        assert_eq!(d.open_calls(), 1);
        // The new channel's end ends the call.
        d.dispatch(ev("StasisEnd", "new"));
        assert_eq!(call.events.try_recv().unwrap().type_name(), "StasisEnd");
        assert!(matches!(
            call.events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(d.open_calls(), 0);
    }

    #[test]
    fn a_replace_channel_we_do_not_drive_is_a_new_call() {
        let (mut d, mut rx) = setup();
        d.dispatch(replacing("new", "stranger"));
        let call = next_call(&mut rx);
        assert_eq!(call.channel_id, "new");
        // Nor one whose task has ended.
        d.dispatch(ev("StasisStart", "old"));
        drop(next_call(&mut rx));
        d.dispatch(replacing("new2", "old"));
        assert_eq!(next_call(&mut rx).channel_id, "new2");
    }

    #[test]
    fn an_event_for_a_finished_task_is_unrouted() {
        let (mut d, mut rx) = setup();
        d.dispatch(ev("StasisStart", "a"));
        drop(next_call(&mut rx));
        d.dispatch(ev("ChannelStateChange", "a"));
        assert!(matches!(rx.try_recv(), Ok(Notice::Unrouted(_))));
        assert_eq!(d.open_calls(), 0);
    }

    #[test]
    fn app_events_are_unrouted() {
        let (mut d, mut rx) = setup();
        d.dispatch(Event::ApplicationReplaced);
        d.dispatch(Event::Unknown);
        assert!(matches!(
            rx.try_recv(),
            Ok(Notice::Unrouted(Event::ApplicationReplaced))
        ));
        assert!(matches!(
            rx.try_recv(),
            Ok(Notice::Unrouted(Event::Unknown))
        ));
    }

    #[test]
    fn reconcile_closes_missing_channels_or_all_after_restart() {
        let (mut d, mut rx) = setup();
        for id in ["a", "b", "c"] {
            d.dispatch(ev("StasisStart", id));
            next_call(&mut rx);
        }
        let alive = [Channel {
            id: "b".into(),
            ..Channel::default()
        }];
        d.reconcile(false, &alive);
        assert_eq!(d.open_calls(), 1);
        d.reconcile(true, &alive);
        assert_eq!(d.open_calls(), 0);
    }

    #[test]
    fn recent_set_forgets_the_oldest() {
        let mut s = RecentSet::new(2);
        for id in ["a", "b", "c"] {
            s.insert(id.into());
        }
        assert!(!s.contains("a") && s.contains("b") && s.contains("c"));
    }

    #[test]
    fn supervisor_gone_is_reported() {
        let (mut d, rx) = setup();
        drop(rx);
        assert!(!d.dispatch(ev("StasisStart", "a")));
    }
}
