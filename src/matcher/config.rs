//! How long the matcher waits on the issuer link, and when recovery may
//! take an order over.

use crate::config::BankSettings;
use std::time::Duration;

/// Timing of the bank conversation. Tests shorten it; production takes it
/// from `[bank]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherConfig {
    /// How long one `authorize` may take before the attempt is resolved by
    /// query.
    pub auth_timeout: Duration,
    /// The pauses before each query of an unanswered attempt.
    pub query_backoff: Vec<Duration>,
    /// How long one `query` may take before it counts as unanswered.
    pub query_timeout: Duration,
    /// How long an order must have sat in `authorizing` before
    /// [`BankMatcher::recover`] settles it, so that recovery never races a
    /// live authorization (another node's, or this one's before a restart).
    pub recover_after: Duration,
}

impl MatcherConfig {
    /// The production timing: the configured timeout, queries after 1, 2, 4
    /// and 8 s, recovery once all of that plus a margin has passed.
    pub fn from_settings(bank: &BankSettings) -> Self {
        Self::with_timeout(Duration::from_secs(bank.auth_timeout_secs))
    }

    fn with_timeout(auth_timeout: Duration) -> Self {
        let query_backoff: Vec<Duration> = [1, 2, 4, 8].map(Duration::from_secs).to_vec();
        let query_timeout = Duration::from_secs(2);
        let queries = query_timeout * u32::try_from(query_backoff.len()).unwrap_or(u32::MAX);
        let recover_after = auth_timeout
            + query_backoff.iter().sum::<Duration>()
            + queries
            + Duration::from_secs(5);
        Self {
            auth_timeout,
            query_backoff,
            query_timeout,
            recover_after,
        }
    }

    /// Longest one verification can keep an order in `authorizing`.
    pub(super) fn longest_authorization(&self) -> Duration {
        let queries = self.query_timeout * u32::try_from(self.query_backoff.len()).unwrap_or(0);
        self.auth_timeout
            + self.query_backoff.iter().sum::<Duration>()
            + queries
            + Duration::from_secs(2)
    }
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self::with_timeout(Duration::from_secs(10))
    }
}
