//! How many orders the demo places: at most `per_session` per rolling
//! minute for one browser session and `global` for all of them together
//! (`demo.orders_per_session_per_minute`, `demo.orders_per_minute`).
//!
//! Written here rather than taken from a rate-limit crate: the settings
//! promise a count per rolling minute (not a smoothed rate), and a place is
//! given back when the API refused the order (a typo costs no call, so it
//! costs no place). Per node: each node counts its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window both limits count in.
const WINDOW: Duration = Duration::from_secs(60);

/// The two sliding windows.
pub struct Limiter {
    per_session: usize,
    global: usize,
    inner: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    /// When each counted order was placed, oldest first.
    all: VecDeque<Instant>,
    /// The same, by session tag; a session with no place left in the
    /// window is dropped, so there are never more than `global` of them.
    sessions: HashMap<String, VecDeque<Instant>>,
}

/// A place taken in both windows, to [`Limiter::give_back`] when no order
/// was created.
#[derive(Debug)]
pub struct Ticket {
    session: String,
    at: Instant,
}

impl Limiter {
    pub fn new(per_session: u32, global: u32) -> Self {
        Self {
            per_session: per_session as usize,
            global: global as usize,
            inner: Mutex::default(),
        }
    }

    /// Takes a place for `session` at `now`, or says how long until one
    /// frees up (whole seconds, at least 1: what `Retry-After` carries).
    pub fn take(&self, session: &str, now: Instant) -> Result<Ticket, u64> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let w = &mut *guard;
        prune(&mut w.all, now);
        if w.sessions.len() > self.global {
            w.sessions.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        let mine = w.sessions.entry(session.to_owned()).or_default();
        prune(mine, now);
        // A full window frees its oldest place WINDOW after it was taken.
        let wait = |times: &VecDeque<Instant>, limit: usize| {
            (times.len() >= limit)
                .then(|| {
                    times
                        .front()
                        .map(|t| (*t + WINDOW).saturating_duration_since(now))
                })
                .flatten()
        };
        if let Some(longest) = [wait(mine, self.per_session), wait(&w.all, self.global)]
            .into_iter()
            .flatten()
            .max()
        {
            return Err(whole_secs(longest));
        }
        mine.push_back(now);
        w.all.push_back(now);
        Ok(Ticket {
            session: session.to_owned(),
            at: now,
        })
    }

    /// Returns a place that placed no order.
    pub fn give_back(&self, ticket: Ticket) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        remove_one(&mut w.all, ticket.at);
        if let Some(times) = w.sessions.get_mut(&ticket.session) {
            remove_one(times, ticket.at);
            if times.is_empty() {
                w.sessions.remove(&ticket.session);
            }
        }
    }
}

/// Drops the times that have left the window.
fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

fn remove_one(times: &mut VecDeque<Instant>, at: Instant) {
    if let Some(i) = times.iter().position(|t| *t == at) {
        times.remove(i);
    }
}

/// Rounded up, at least 1.
fn whole_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gets_its_share_per_rolling_minute() {
        let l = Limiter::new(2, 100);
        let t0 = Instant::now();
        l.take("a", t0).unwrap();
        l.take("a", t0 + Duration::from_secs(10)).unwrap();
        // The first place frees up 60 s after it was taken: 50 s from here.
        assert_eq!(l.take("a", t0 + Duration::from_secs(10)).unwrap_err(), 50);
        assert_eq!(
            l.take("a", t0 + Duration::from_millis(59_500)).unwrap_err(),
            1
        );
        // Another session is not held back by this one.
        l.take("b", t0 + Duration::from_secs(10)).unwrap();
        l.take("a", t0 + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn all_sessions_together_get_the_global_share() {
        let l = Limiter::new(5, 3);
        let t0 = Instant::now();
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            l.take(s, t0 + Duration::from_secs(i as u64)).unwrap();
        }
        assert_eq!(l.take("d", t0 + Duration::from_secs(30)).unwrap_err(), 30);
        l.take("d", t0 + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn a_place_given_back_can_be_taken_again() {
        let l = Limiter::new(1, 10);
        let t0 = Instant::now();
        let ticket = l.take("a", t0).unwrap();
        assert!(l.take("a", t0).is_err());
        l.give_back(ticket);
        l.take("a", t0 + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let l = Limiter::new(1, 2);
        let t0 = Instant::now();
        for i in 0..50u64 {
            l.take(&format!("s{i}"), t0 + Duration::from_secs(60 * i))
                .unwrap();
        }
        let w = l.inner.lock().unwrap();
        assert!(w.sessions.len() <= 3, "{}", w.sessions.len());
    }
}
