//! Store-and-forward reversals for the ISO 8583 link: when a request's
//! outcome is unknown (no answer in time, the link dropped with it in
//! flight, or the daemon died after sending it), the link records a
//! reversal here *before* giving up on the request, then sends it as 0420
//! (repeated as 0421 with back-off) until a 0430 acknowledges it. The table
//! is the queue: a reversal survives a restart or a `kill -9` and is sent
//! by whichever node is alive. Rows are leased to one node at a time
//! (`locked_by`/`locked_until`, as `webhook_outbox`), so two nodes never
//! send one reversal at once and a crashed node's lease simply runs out.
//!
//! No PAN is kept: a reversal names its order, and the link re-reads the
//! order's sealed card (`orders.card_enc`) when it builds the message.

use super::{conflict_aware, typed, Result, Store, StoreError};
use crate::domain::{Invalid, OriginalRequest};

/// A reversal to record ([`Store::record_reversal`]).
#[derive(Debug, Clone)]
pub struct NewReversal<'a> {
    /// The order whose request is reversed: its sealed card is the PAN.
    pub order_id: &'a str,
    /// Set when the reversed request is a refund (`rfd_…`).
    pub refund_id: Option<&'a str>,
    /// The request reversed.
    pub original: OriginalRequest,
    /// The original's processing code (F3): `000000` purchase, `200000`
    /// refund.
    pub processing_code: &'a str,
    /// The original's amount (F4), in fen.
    pub amount: i64,
}

/// Where a reversal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalStatus {
    /// Still to be sent, or sent and not yet acknowledged.
    Pending,
    /// A 0430 arrived: done.
    Acknowledged,
}

impl ReversalStatus {
    /// The stored name: `pending` or `acknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Acknowledged => "acknowledged",
        }
    }
}

/// Reading a stored column: anything but the two names is a corrupt row.
impl TryFrom<String> for ReversalStatus {
    type Error = Invalid;

    fn try_from(s: String) -> std::result::Result<Self, Invalid> {
        match s.as_str() {
            "pending" => Ok(Self::Pending),
            "acknowledged" => Ok(Self::Acknowledged),
            _ => Err(Invalid::new("invalid_status", "not a reversal status")),
        }
    }
}

/// One row of `pending_reversals`.
#[derive(Debug, Clone)]
pub struct PendingReversal {
    /// voicepay's id, `rvs_` + 24 hex digits.
    pub id: String,
    /// The order whose request is reversed.
    pub order_id: String,
    /// The refund reversed, when it is one.
    pub refund_id: Option<String>,
    /// The request reversed, as F90 names it.
    pub original: OriginalRequest,
    /// The original's processing code (F3).
    pub processing_code: String,
    /// The original's amount, in fen.
    pub amount: i64,
    /// Pending or acknowledged.
    pub status: ReversalStatus,
    /// Advices sent (or about to be) so far: 0 before the first 0420.
    pub attempts: i64,
    /// Unix ms: when the next advice is due.
    pub next_attempt_at: i64,
    /// Why the latest advice went unanswered, for operators
    /// ([`Store::note_reversal_error`]).
    pub last_error: Option<String>,
    /// Unix ms: recorded.
    pub created_at: i64,
    /// Unix ms of the 0430; `None` until acknowledged.
    pub acknowledged_at: Option<i64>,
}

impl PendingReversal {
    /// The message type of the next advice: `0420` the first time, `0421`
    /// (a repeat) after that.
    pub fn mti(&self) -> &'static str {
        if self.attempts == 0 {
            "0420"
        } else {
            "0421"
        }
    }
}

/// Unix ms to wait, beyond the response timeout, after the `attempt`-th
/// advice (1 = the first): 5 s, doubling, at most 5 minutes. A reversal is never given up:
/// it stays pending until acknowledged.
pub fn reversal_backoff_ms(attempt: i64) -> i64 {
    let doublings = u32::try_from((attempt - 1).clamp(0, 16)).unwrap_or(16);
    (5_000_i64 << doublings).min(300_000)
}

const REVERSAL_COLUMNS: &str = "id, order_id, refund_id, original_mti, stan, transmitted_at, \
     acquirer_id, processing_code, amount, status, attempts, next_attempt_at, last_error, \
     created_at, acknowledged_at";

type ReversalTuple = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    Option<String>,
    i64,
    Option<i64>,
);

/// A query on any backend, as [`bind_original`] extends it.
pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the request `o` names (MTI, STAN, F7, F32: the four columns
/// `acquirer_requests` and `pending_reversals` both keep it in, in that
/// order) as the query's next four parameters.
pub(super) fn bind_original<'q>(q: AnyQuery<'q>, o: &'q OriginalRequest) -> AnyQuery<'q> {
    q.bind(&o.mti)
        .bind(o.stan.to_string())
        .bind(&o.transmitted_at)
        .bind(&o.acquirer_id)
}

/// The request as F90 names it, from those four columns as read back; a
/// STAN that is not 6 digits is a corrupt row ([`StoreError::Db`]).
pub(super) fn original_request(
    mti: String,
    stan: String,
    transmitted_at: String,
    acquirer_id: String,
) -> Result<OriginalRequest> {
    Ok(OriginalRequest {
        mti,
        stan: typed("stan", stan)?,
        transmitted_at,
        acquirer_id,
    })
}

fn reversal_row(t: ReversalTuple) -> Result<PendingReversal> {
    Ok(PendingReversal {
        id: t.0,
        order_id: t.1,
        refund_id: t.2,
        original: original_request(t.3, t.4, t.5, t.6)?,
        processing_code: t.7,
        amount: t.8,
        status: typed("status", t.9)?,
        attempts: t.10,
        next_attempt_at: t.11,
        last_error: t.12,
        created_at: t.13,
        acknowledged_at: t.14,
    })
}

fn rows(v: Vec<ReversalTuple>) -> Result<Vec<PendingReversal>> {
    v.into_iter().map(reversal_row).collect()
}

/// The insert of [`Store::record_reversal`], on any executor (a
/// transaction: the request journal moves with it).
pub(super) async fn insert_reversal<'e, E>(ex: E, r: &NewReversal<'_>, now: i64) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let id = format!("rvs_{}", crate::crypto::random_hex(12));
    let q = sqlx::query(
        "INSERT INTO pending_reversals (id, order_id, refund_id, original_mti, stan, \
            transmitted_at, acquirer_id, processing_code, amount, status, attempts, \
            next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10) \
         ON CONFLICT (original_mti, stan, transmitted_at, acquirer_id) DO NOTHING",
    )
    .bind(&id)
    .bind(r.order_id)
    .bind(r.refund_id);
    bind_original(q, &r.original)
        .bind(r.processing_code)
        .bind(r.amount)
        .bind(now)
        .execute(ex)
        .await
        .map_err(conflict_aware)?;
    Ok(())
}

impl Store {
    /// Records a reversal of `r.original`, due at once (`now`, Unix ms).
    /// Idempotent per original request: recording it again (the timeout
    /// and the dropped link both noticed it, or recovery after a restart)
    /// returns the row already there, unchanged. Record it before the
    /// request is given up, so a crash right after still reverses it.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error (including an unknown
    /// `order_id`).
    pub async fn record_reversal(&self, r: &NewReversal<'_>, now: i64) -> Result<PendingReversal> {
        insert_reversal(&self.write, r, now).await?;
        self.reversal_of(&r.original)
            .await?
            .ok_or(StoreError::Conflict)
    }

    /// The reversal of `original` (as a 0430's F90 names it), if recorded.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn reversal_of(&self, original: &OriginalRequest) -> Result<Option<PendingReversal>> {
        let sql = format!(
            "SELECT {REVERSAL_COLUMNS} FROM pending_reversals WHERE original_mti = $1 \
             AND stan = $2 AND transmitted_at = $3 AND acquirer_id = $4"
        );
        let row: Option<ReversalTuple> = sqlx::query_as(&sql)
            .bind(&original.mti)
            .bind(original.stan.to_string())
            .bind(&original.transmitted_at)
            .bind(&original.acquirer_id)
            .fetch_optional(&self.write)
            .await?;
        row.map(reversal_row).transpose()
    }

    /// The reversals recorded for an order, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn reversals_for(&self, order_id: &str) -> Result<Vec<PendingReversal>> {
        let sql = format!(
            "SELECT {REVERSAL_COLUMNS} FROM pending_reversals WHERE order_id = $1 \
             ORDER BY created_at, id"
        );
        rows(
            sqlx::query_as(&sql)
                .bind(order_id)
                .fetch_all(&self.write)
                .await?,
        )
    }

    /// Leases up to `limit` pending reversals due at `now` to `node` until
    /// `lease_until` (both Unix ms), oldest due first: only this node sends
    /// them until it counts the advice ([`Store::reversal_sending`]) or
    /// the lease runs out. One
    /// conditional update: two nodes claiming at once never get one row.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error or a corrupt row.
    pub async fn due_reversals(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<PendingReversal>> {
        // PostgreSQL: rows another node is leasing right now are skipped,
        // not waited for, so two nodes claiming at once share the due rows.
        // The outer conditions repeat the inner ones: under READ COMMITTED
        // a row another node leased meanwhile is re-checked, and skipped.
        let skip_locked = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE pending_reversals SET locked_by = $1, locked_until = $2 \
             WHERE id IN (SELECT id FROM pending_reversals WHERE status = 'pending' \
                    AND next_attempt_at <= $3 AND (locked_until IS NULL OR locked_until <= $3) \
                    ORDER BY next_attempt_at, id LIMIT $4{skip_locked}) \
               AND status = 'pending' AND (locked_until IS NULL OR locked_until <= $3) \
             RETURNING {REVERSAL_COLUMNS}"
        );
        let mut due = rows(
            sqlx::query_as(&sql)
                .bind(node)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.write)
                .await?,
        )?;
        due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(due)
    }

    /// Counts the advice `node` is about to send for reversal `r` (a row of
    /// its lease, from [`Store::due_reversals`]), *before* it is written to
    /// the link, so that after a crash the next advice is a repeat (0421):
    /// one more attempt, the next due at `now` + `answer_within_ms` (the
    /// link's response timeout) + [`reversal_backoff_ms`], the lease given
    /// back (the row is not due again before then, and a 0430 meanwhile
    /// ends it). Times in Unix ms. Returns false, and the advice must not be
    /// sent, when `node`'s lease ran out, another attempt was counted
    /// meanwhile, or it was acknowledged.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn reversal_sending(
        &self,
        r: &PendingReversal,
        node: &str,
        answer_within_ms: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE pending_reversals SET attempts = attempts + 1, next_attempt_at = $1, \
                locked_by = NULL, locked_until = NULL \
             WHERE id = $2 AND locked_by = $3 AND locked_until > $4 AND attempts = $5 \
               AND status = 'pending'",
        )
        .bind(now + answer_within_ms.max(0) + reversal_backoff_ms(r.attempts + 1))
        .bind(&r.id)
        .bind(node)
        .bind(now)
        .bind(r.attempts)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps why the latest advice of reversal `id` went unanswered (no
    /// 0430 in time, the link down), for operators; never a secret.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn note_reversal_error(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE pending_reversals SET last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks the reversal of `original` acknowledged at `now` (Unix ms): a
    /// 0430 arrived, whichever node sent the advice. Returns false when
    /// there is no such reversal or it was acknowledged already (a
    /// duplicate 0430), so the caller logs it and moves on.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn acknowledge_reversal(&self, original: &OriginalRequest, now: i64) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE pending_reversals SET status = 'acknowledged', acknowledged_at = $1, \
                locked_by = NULL, locked_until = NULL \
             WHERE original_mti = $2 AND stan = $3 AND transmitted_at = $4 \
               AND acquirer_id = $5 AND status = 'pending'",
        )
        .bind(now);
        let done = bind_original(q, original).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::reversal_backoff_ms;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let s: Vec<i64> = (1..=9).map(reversal_backoff_ms).collect();
        assert_eq!(
            s,
            [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]
        );
    }
}
