//! The multiplexer's bookkeeping: requests waiting to be written (each with
//! a [`Ticket`] deciding, race-free, whether the actor writes it or its
//! caller gives up on it) and the answers awaited, by (F11, F41).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::Message;
use super::LinkError;
use crate::domain::Stan;

/// Where an exchange's result goes.
pub(super) type Answer = oneshot::Sender<Result<Message, LinkError>>;

/// A request on its way from [`super::Link::exchange`] to the actor.
pub(super) struct Outgoing {
    /// The request, with F11 and F41 set (checked by `exchange`).
    pub request: Message,
    /// Who has it: still queued, written by the actor, or given up.
    pub ticket: std::sync::Arc<Ticket>,
    /// The exchange's result.
    pub answer: Answer,
}

const QUEUED: u8 = 0;
const CLAIMED: u8 = 1;
const ABANDONED: u8 = 2;

/// One atomic decision per request: either the actor claims it (and then
/// always sends a result) or the caller abandons it (and the actor never
/// writes it). So a caller that stops waiting can say `NotSent` truthfully.
#[derive(Debug, Default)]
pub(super) struct Ticket(AtomicU8);

impl Ticket {
    /// The actor's side: whether it may write the request.
    pub fn claim(&self) -> bool {
        self.swap_from_queued(CLAIMED)
    }

    /// The caller's side: whether the request is now never to be written.
    pub fn abandon(&self) -> bool {
        self.swap_from_queued(ABANDONED)
    }

    /// Whether the actor took it (so it may have been written).
    pub fn claimed(&self) -> bool {
        self.0.load(Ordering::Acquire) == CLAIMED
    }

    fn swap_from_queued(&self, to: u8) -> bool {
        self.0
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Who waits for an answer.
pub(super) enum Waiter {
    /// An exchange.
    Caller(Answer),
    /// The link's own echo test.
    Echo,
}

struct Entry {
    waiter: Waiter,
    deadline: Instant,
}

/// (F11, F41 without padding).
pub(super) type Key = (Stan, String);

/// The key of a message, owned.
pub(super) fn key_of(msg: &Message) -> Option<Key> {
    msg.match_key().map(|(stan, tid)| (stan, tid.to_owned()))
}

/// What happened to an answer handed to [`InFlight::answer`].
pub(super) enum Matched {
    /// An exchange got it.
    Caller,
    /// It answered the link's echo.
    Echo,
    /// Nobody waits for it (late, duplicate, unsolicited, or its caller
    /// went away): log and drop.
    Nobody(Message),
}

/// The answers awaited on one connection.
#[derive(Default)]
pub(super) struct InFlight {
    entries: HashMap<Key, Entry>,
}

impl InFlight {
    /// Whether an answer with this key is awaited.
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// Awaits the answer keyed `key` until `deadline`.
    pub fn insert(&mut self, key: Key, waiter: Waiter, deadline: Instant) {
        self.entries.insert(key, Entry { waiter, deadline });
    }

    /// Takes back an entry whose request could not be written after all.
    pub fn remove(&mut self, key: &Key) -> Option<Waiter> {
        self.entries.remove(key).map(|e| e.waiter)
    }

    /// Whether the link's echo is awaiting its answer.
    pub fn echo_outstanding(&self) -> bool {
        self.entries
            .values()
            .any(|e| matches!(e.waiter, Waiter::Echo))
    }

    /// Hands an answer to whoever waits for its key.
    pub fn answer(&mut self, msg: Message) -> Matched {
        let Some(entry) = key_of(&msg).and_then(|k| self.entries.remove(&k)) else {
            return Matched::Nobody(msg);
        };
        match entry.waiter {
            Waiter::Echo => Matched::Echo,
            Waiter::Caller(tx) => match tx.send(Ok(msg)) {
                Ok(()) => Matched::Caller,
                Err(Ok(msg)) => Matched::Nobody(msg),
                Err(Err(_)) => unreachable!("sent Ok"),
            },
        }
    }

    /// The earliest deadline, if anything is awaited.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.deadline).min()
    }

    /// Ends every exchange whose deadline has passed with
    /// [`LinkError::Timeout`]; returns how many, and whether the echo was
    /// among them (the connection is then dead).
    pub fn expire(&mut self, now: Instant) -> (usize, bool) {
        let due: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut echo = false;
        for key in &due {
            match self.entries.remove(key).map(|e| e.waiter) {
                Some(Waiter::Caller(tx)) => {
                    tracing::warn!(stan = %key.0, terminal = %key.1,
                        "ISO 8583 link: no answer within the response timeout");
                    let _ = tx.send(Err(LinkError::Timeout));
                }
                Some(Waiter::Echo) => echo = true,
                None => {}
            }
        }
        (due.len(), echo)
    }

    /// The connection dropped: every exchange in flight ends
    /// [`LinkError::Dropped`]; returns how many.
    pub fn drop_all(&mut self) -> usize {
        let mut n = 0;
        for (_, entry) in self.entries.drain() {
            if let Waiter::Caller(tx) = entry.waiter {
                n += 1;
                let _ = tx.send(Err(LinkError::Dropped));
            }
        }
        n
    }
}
