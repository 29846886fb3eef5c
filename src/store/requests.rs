//! The ISO 8583 link's request journal (`acquirer_requests`, migration
//! 0014): every financial request (a 0200 purchase or refund) is *armed*
//! here before it is written to the link, so an unknown outcome (no answer
//! in time, the link dropped, the daemon died after sending) is always
//! known to be one and can be reversed. ISO 8583 has no "query", so the
//! journal is what answers [`crate::bank::IssuerLink::query`] for the link.
//!
//! Keys: an authorization attempt's idempotency key (`{order id}:{n}`), or
//! a refund's id (`rfd_…`). Status moves, each one conditional:
//! `sent` → `answered` (the 0210), `sent` → `reversing` (unknown outcome),
//! `answered` (approved) → `reversing` (an approval that must be undone).
//! Moving to `reversing` and recording the reversal advice
//! ([`Store::record_reversal`]) are one transaction. No PAN, PIN block,
//! expiry, CVN2 or ID number is stored.

use super::reversals::{bind_original, insert_reversal, original_request, NewReversal};
use super::{typed, Result, Store};
use crate::domain::{Invalid, OriginalRequest};

/// A request to arm ([`Store::arm_request`]).
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The attempt's idempotency key or the refund's id.
    pub key: &'a str,
    /// The order the request is for.
    pub order_id: &'a str,
    /// Set for a refund (`rfd_…`).
    pub refund_id: Option<&'a str>,
    /// MTI, STAN (F11), F7 and F32: what a reversal's F90 will name.
    pub original: OriginalRequest,
    /// F3: `000000` purchase, `200000` refund.
    pub processing_code: &'a str,
    /// F4, in fen.
    pub amount: i64,
}

/// Where a journalled request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Armed: written to the link, or about to be; no answer yet.
    Sent,
    /// Its answer (0210) arrived and is recorded.
    Answered,
    /// Its reversal is recorded (unknown outcome, or an approval undone).
    Reversing,
}

impl RequestStatus {
    /// The stored name: `sent`, `answered` or `reversing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Answered => "answered",
            Self::Reversing => "reversing",
        }
    }
}

/// Reading a stored column: anything but the three names is a corrupt row.
impl TryFrom<String> for RequestStatus {
    type Error = Invalid;

    fn try_from(s: String) -> std::result::Result<Self, Invalid> {
        match s.as_str() {
            "sent" => Ok(Self::Sent),
            "answered" => Ok(Self::Answered),
            "reversing" => Ok(Self::Reversing),
            _ => Err(Invalid::new("invalid_status", "not a request status")),
        }
    }
}

/// One row of `acquirer_requests`.
#[derive(Debug, Clone)]
pub struct AcquirerRequest {
    /// The attempt's idempotency key or the refund's id.
    pub key: String,
    /// The order.
    pub order_id: String,
    /// Set for a refund.
    pub refund_id: Option<String>,
    /// The request as F90 names it.
    pub original: OriginalRequest,
    /// F3.
    pub processing_code: String,
    /// F4, in fen.
    pub amount: i64,
    /// Sent, answered or reversing.
    pub status: RequestStatus,
    /// F39 of the answer, when it came (kept when it is later reversed).
    pub resp_code: Option<String>,
    /// F38 of the answer (approvals).
    pub approval_code: Option<String>,
    /// F37 of the answer.
    pub rrn: Option<String>,
    /// Unix ms: armed.
    pub created_at: i64,
    /// Unix ms: the answer arrived.
    pub answered_at: Option<i64>,
}

impl AcquirerRequest {
    /// The reversal advice that undoes this request.
    pub fn reversal(&self) -> NewReversal<'_> {
        NewReversal {
            order_id: &self.order_id,
            refund_id: self.refund_id.as_deref(),
            original: self.original.clone(),
            processing_code: &self.processing_code,
            amount: self.amount,
        }
    }
}

const COLUMNS: &str = "request_key, order_id, refund_id, mti, stan, transmitted_at, \
     acquirer_id, processing_code, amount, status, resp_code, approval_code, rrn, created_at, \
     answered_at";

type Tuple = (
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
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);

fn request_row(t: Tuple) -> Result<AcquirerRequest> {
    Ok(AcquirerRequest {
        key: t.0,
        order_id: t.1,
        refund_id: t.2,
        original: original_request(t.3, t.4, t.5, t.6)?,
        processing_code: t.7,
        amount: t.8,
        status: typed("status", t.9)?,
        resp_code: t.10,
        approval_code: t.11,
        rrn: t.12,
        created_at: t.13,
        answered_at: t.14,
    })
}

impl Store {
    /// Arms request `r` (status `sent`) at `now` (Unix ms), before it is
    /// written to the link. Returns false, and writes nothing, when its key
    /// is journalled already: the first request under a key is the only
    /// one ever sent (its answer, or its reversal, is final).
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error (an unknown order
    /// included).
    pub async fn arm_request(&self, r: &NewRequest<'_>, now: i64) -> Result<bool> {
        let q = sqlx::query(
            "INSERT INTO acquirer_requests (request_key, order_id, refund_id, mti, stan, \
                transmitted_at, acquirer_id, processing_code, amount, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'sent', $10) \
             ON CONFLICT (request_key) DO NOTHING",
        )
        .bind(r.key)
        .bind(r.order_id)
        .bind(r.refund_id);
        let done = bind_original(q, &r.original)
            .bind(r.processing_code)
            .bind(r.amount)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The journalled request under `key`, if any.
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error or a corrupt row.
    pub async fn acquirer_request(&self, key: &str) -> Result<Option<AcquirerRequest>> {
        let sql = format!("SELECT {COLUMNS} FROM acquirer_requests WHERE request_key = $1");
        let row: Option<Tuple> = sqlx::query_as(&sql)
            .bind(key)
            .fetch_optional(&self.write)
            .await?;
        row.map(request_row).transpose()
    }

    /// The order's journalled requests, oldest first.
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error or a corrupt row.
    pub async fn acquirer_requests_for(&self, order_id: &str) -> Result<Vec<AcquirerRequest>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM acquirer_requests WHERE order_id = $1 \
             ORDER BY created_at, request_key"
        );
        let rows: Vec<Tuple> = sqlx::query_as(&sql)
            .bind(order_id)
            .fetch_all(&self.write)
            .await?;
        rows.into_iter().map(request_row).collect()
    }

    /// Records the answer (F39, F38, F37) to the request under `key` at
    /// `now`: `sent` → `answered`. Returns false, and changes nothing, when
    /// the request is not `sent` any more (it is being reversed: a late
    /// answer must not undo that) or was never armed.
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error.
    pub async fn answer_request(
        &self,
        key: &str,
        resp_code: &str,
        approval_code: Option<&str>,
        rrn: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE acquirer_requests SET status = 'answered', resp_code = $1, \
                approval_code = $2, rrn = $3, answered_at = $4 \
             WHERE request_key = $5 AND status = 'sent'",
        )
        .bind(resp_code)
        .bind(approval_code)
        .bind(rrn)
        .bind(now)
        .bind(key)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the armed request under `key` because it was never written
    /// to the link (the link was down): `sent` rows only. A later
    /// [`Store::acquirer_request`] finds nothing, so a query says "never
    /// sent". Returns whether a row went.
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error.
    pub async fn unarm_request(&self, key: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM acquirer_requests WHERE request_key = $1 AND status = 'sent'")
                .bind(key)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Undoes the request under `key` at `now` (Unix ms): in one
    /// transaction, moves it to `reversing` — from `sent` (unknown
    /// outcome), or from `answered` when the answer was an approval (F39
    /// `00`) — and records its reversal advice
    /// ([`Store::record_reversal`], due at once). Idempotent: a request
    /// already `reversing` keeps its one reversal and returns true again.
    /// Returns false when there is nothing to reverse: no such request, or
    /// its answer was a decline.
    ///
    /// # Errors
    /// [`super::StoreError::Db`] on a database error or a corrupt row.
    pub async fn reverse_request(&self, key: &str, now: i64) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE acquirer_requests SET status = 'reversing' WHERE request_key = $1 \
               AND (status IN ('sent', 'reversing') OR (status = 'answered' AND resp_code = '00')) \
             RETURNING {COLUMNS}"
        );
        let row: Option<Tuple> = sqlx::query_as(&sql)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row.map(request_row).transpose()? else {
            return Ok(false);
        };
        insert_reversal(&mut *tx, &row.reversal(), now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
