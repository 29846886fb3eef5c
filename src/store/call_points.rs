//! Where each live call is (table `call_points`, migration 0019), so a
//! restarted daemon can resume it at a safe point: README "Daemon restarts
//! that drop no call" (issue #15). Never a digit or a secret: the row says
//! which step to re-prompt, how many failed attempts and tries the caller
//! has used, and which playback ids the previous run took.
//!
//! Written by the call task (`calls::points`, with `ari.websocket =
//! "outbound"`) and read by the reconciliation that resumes calls.

use super::{Result, Store, StoreError};
use crate::ivr::Step;

/// The step a resumed call re-prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeStep {
    /// The confirmation (screening and welcome resume here too).
    Confirm,
    /// A debit card's PIN, from its first digit.
    Pin,
    /// A credit card's expiry, then its CVN2: a keyed expiry was in memory
    /// only, so a call stopped at the CVN2 asks both again.
    Expiry,
    /// The secret is with the bank: the call waits for the order's result
    /// (decided by the matcher's recovery) and never asks again.
    Authorizing,
    /// The result is being said: say it again and hang up.
    Closing,
}

impl ResumeStep {
    /// Where a call at the IVR's `step` resumes; `None` for a capture the
    /// agent cancelled (an assisted call back at idle has nothing to
    /// re-prompt).
    pub fn from_ivr(step: Step) -> Option<Self> {
        match step {
            Step::Confirm => Some(Self::Confirm),
            Step::Pin => Some(Self::Pin),
            Step::Expiry | Step::Cvn2 => Some(Self::Expiry),
            Step::Authorizing => Some(Self::Authorizing),
            Step::Ended => Some(Self::Closing),
            Step::Cancelled => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Pin => "pin",
            Self::Expiry => "expiry",
            Self::Authorizing => "authorizing",
            Self::Closing => "closing",
        }
    }

    /// Exactly one of the stored names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "confirm" => Self::Confirm,
            "pin" => Self::Pin,
            "expiry" => Self::Expiry,
            "authorizing" => Self::Authorizing,
            "closing" => Self::Closing,
            _ => return None,
        })
    }
}

/// One live call's resume point, as written by its call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPoint {
    /// The order.
    pub order_id: String,
    /// The node driving the call (`orders.claimed_by`).
    pub node: String,
    /// The cardholder's channel.
    pub channel_id: String,
    /// `call_attempts.attempt` of this call.
    pub attempt: i64,
    /// `callback`, `inbound` or `assisted`.
    pub flow: String,
    /// The step to re-prompt.
    pub step: ResumeStep,
    /// Failed attempts in this step so far (carried over: a restart never
    /// gives more).
    pub step_failures: i64,
    /// Secrets the caller may still submit.
    pub tries_left: i64,
    /// The highest `n` of the `<channel>:<n>` playback ids used so far.
    pub playback_seq: i64,
}

/// A stored point with its write counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPoint {
    /// What was written.
    pub point: CallPoint,
    /// Bumped on every write; [`Store::take_call_point`] compares it.
    pub seq: i64,
    /// Unix ms of the last write.
    pub updated_at: i64,
}

type PointRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
);

impl Store {
    /// Writes the call's point (inserted, or replaced with `seq` + 1) and
    /// returns the new `seq`. `now` is Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error (the order must exist).
    pub async fn save_call_point(&self, p: &CallPoint, now: i64) -> Result<i64> {
        // In the group commit on SQLite (one write per step change of
        // every live call): see `group.rs`.
        let p = p.clone();
        self.write_tx(move |tx| {
            let p = p.clone();
            Box::pin(async move {
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO call_points (order_id, node, channel_id, attempt, flow, step, \
                        step_failures, tries_left, playback_seq, seq, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10) \
                     ON CONFLICT (order_id) DO UPDATE SET node = $2, channel_id = $3, \
                        attempt = $4, flow = $5, step = $6, step_failures = $7, \
                        tries_left = $8, playback_seq = $9, seq = call_points.seq + 1, \
                        updated_at = $10 \
                     RETURNING seq",
                )
                .bind(p.order_id)
                .bind(p.node)
                .bind(p.channel_id)
                .bind(p.attempt)
                .bind(p.flow)
                .bind(p.step.as_str())
                .bind(p.step_failures)
                .bind(p.tries_left)
                .bind(p.playback_seq)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                Ok(seq)
            })
        })
        .await
    }

    /// The points of the calls `node` was driving, oldest write first.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or an unknown stored step.
    pub async fn call_points(&self, node: &str) -> Result<Vec<StoredPoint>> {
        let rows: Vec<PointRow> = sqlx::query_as(
            "SELECT order_id, node, channel_id, attempt, flow, step, step_failures, \
                tries_left, playback_seq, seq, updated_at \
             FROM call_points WHERE node = $1 ORDER BY updated_at, order_id",
        )
        .bind(node)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(stored_point).collect()
    }

    /// Takes a point for a resume: true when its `seq` was still `seq`
    /// (it is bumped, so a second taker with the same `seq` gets false).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn take_call_point(&self, order_id: &str, seq: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE call_points SET seq = seq + 1, updated_at = $3 \
             WHERE order_id = $1 AND seq = $2",
        )
        .bind(order_id)
        .bind(seq)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the point when the call ends (nothing to delete is fine).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn drop_call_point(&self, order_id: &str) -> Result<()> {
        let order_id = order_id.to_owned();
        self.write_tx(move |tx| {
            let order_id = order_id.clone();
            Box::pin(async move {
                sqlx::query("DELETE FROM call_points WHERE order_id = $1")
                    .bind(order_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}

fn stored_point(r: PointRow) -> Result<StoredPoint> {
    let (order_id, node, channel_id, attempt, flow, step, failures, tries, pb, seq, at) = r;
    let step = ResumeStep::parse(&step).ok_or_else(|| {
        StoreError::Db(sqlx::Error::Decode(
            format!("call_points.step {step:?}").into(),
        ))
    })?;
    Ok(StoredPoint {
        point: CallPoint {
            order_id,
            node,
            channel_id,
            attempt,
            flow,
            step,
            step_failures: failures,
            tries_left: tries,
            playback_seq: pb,
        },
        seq,
        updated_at: at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credit_card_at_its_cvn2_resumes_at_the_expiry() {
        assert_eq!(ResumeStep::from_ivr(Step::Cvn2), Some(ResumeStep::Expiry));
        assert_eq!(ResumeStep::from_ivr(Step::Expiry), Some(ResumeStep::Expiry));
        assert_eq!(ResumeStep::from_ivr(Step::Pin), Some(ResumeStep::Pin));
        assert_eq!(ResumeStep::from_ivr(Step::Ended), Some(ResumeStep::Closing));
        assert_eq!(ResumeStep::from_ivr(Step::Cancelled), None);
        for s in [
            ResumeStep::Confirm,
            ResumeStep::Pin,
            ResumeStep::Expiry,
            ResumeStep::Authorizing,
            ResumeStep::Closing,
        ] {
            assert_eq!(ResumeStep::parse(s.as_str()), Some(s));
        }
        assert_eq!(ResumeStep::parse("cvn2"), None);
    }
}
