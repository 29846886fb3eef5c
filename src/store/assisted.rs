//! Assisted calls (mode `assisted`): which of the order's two channels are
//! in voicepay's bridge, and the state of the capture the agent's desktop
//! asks for (table `assisted_calls`, migration 0018). The call task of the
//! node whose bridge holds the call writes the channels and moves a capture
//! `requested` → `running` → `idle`; any node's API moves it `idle` →
//! `requested` and `requested|running` → `cancelling`, each with one
//! conditional update, so two requests never both start a capture.
//!
//! The capture's progress is kept as `capture` rows of the order's audit
//! log (counts only, never a digit), written under the order row's lock as
//! the status rows are, so the live status stream's cursor
//! (`Last-Event-ID`) stays safe (see [`Store::events_after`]).

use super::orders::{put_idempotency, IdempotencyEntry, ORDER_COLUMNS};
use super::{OrderRow, Result, Store};

/// The two parties of an assisted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The cardholder: keys the secret, claims the order.
    Cardholder,
    /// The merchant's agent: never hears or sees a digit.
    Agent,
}

impl Party {
    /// `cardholder` or `agent`, as in `Stasis(voicepay,assisted,<code>,<party>)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Cardholder => "cardholder",
            Party::Agent => "agent",
        }
    }

    /// Exactly `cardholder` or `agent`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cardholder" => Some(Party::Cardholder),
            "agent" => Some(Party::Agent),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            Party::Cardholder => "cardholder_channel",
            Party::Agent => "agent_channel",
        }
    }
}

/// What the API asks of an assisted call's capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMove {
    /// Start one: `idle` → `requested`, only while both parties are in the
    /// bridge and the order is `in_call`.
    Request,
    /// Stop it: `requested|running` → `cancelling`.
    Cancel,
}

impl CaptureMove {
    /// The capture state the move leads to: `requested` or `cancelling`.
    pub fn state(self) -> &'static str {
        match self {
            CaptureMove::Request => "requested",
            CaptureMove::Cancel => "cancelling",
        }
    }

    /// The conditional update (`$1` order id, `$2` now).
    fn sql(self) -> &'static str {
        match self {
            CaptureMove::Request => {
                "UPDATE assisted_calls SET capture = 'requested', captures = captures + 1, \
                 updated_at = $2 WHERE order_id = $1 AND capture = 'idle' \
                 AND cardholder_channel IS NOT NULL AND agent_channel IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM orders WHERE id = $1 AND status = 'in_call')"
            }
            CaptureMove::Cancel => {
                "UPDATE assisted_calls SET capture = 'cancelling', updated_at = $2 \
                 WHERE order_id = $1 AND capture IN ('requested', 'running')"
            }
        }
    }

    /// The audit row's detail.
    fn detail(self) -> &'static str {
        match self {
            CaptureMove::Request => "capture requested",
            CaptureMove::Cancel => "capture cancel requested",
        }
    }
}

/// Why the API's capture request or cancellation changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureRefused {
    /// The cardholder or the agent is not in the bridge (or the order is
    /// not yet `in_call`).
    NotReady,
    /// A capture is already requested or running (or the secret is with
    /// the issuer).
    InProgress,
    /// Cancel: no capture is requested or running.
    NotRunning,
    /// The Idempotency-Key was used before (the caller replays it).
    KeyUsed,
}

/// One order's assisted call as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AssistedRow {
    /// The cardholder's channel while it is in the bridge.
    pub cardholder_channel: Option<String>,
    /// The agent's channel while it is in the bridge.
    pub agent_channel: Option<String>,
    /// `idle`, `requested`, `running` or `cancelling`.
    pub capture: String,
    /// Captures requested so far.
    pub captures: i64,
}

impl Store {
    /// The `pending` or `in_call` assisted order of `code`, still in its
    /// window at `now` (Unix ms): the agent may come before or after the
    /// cardholder claimed it.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn live_assisted_order(&self, code: &str, now: i64) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE call_code = $1 AND mode = 'assisted' \
             AND status IN ('pending', 'in_call') AND expires_at > $2"
        ))
        .bind(code)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Records that `party`'s `channel` is in the bridge of `order_id`'s call
    /// (Some) or has left it (None), at `now`.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn assisted_party(
        &self,
        order_id: &str,
        party: Party,
        channel: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let col = party.column();
        sqlx::query(&format!(
            "INSERT INTO assisted_calls (order_id, {col}, capture, captures, updated_at) \
             VALUES ($1, $2, 'idle', 0, $3) \
             ON CONFLICT (order_id) DO UPDATE SET {col} = EXCLUDED.{col}, updated_at = EXCLUDED.updated_at"
        ))
        .bind(order_id)
        .bind(channel)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The order's assisted call, if one was ever recorded.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn assisted_call(&self, order_id: &str) -> Result<Option<AssistedRow>> {
        Ok(sqlx::query_as::<_, AssistedRow>(
            "SELECT cardholder_channel, agent_channel, capture, captures \
             FROM assisted_calls WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// The API asks for a capture or its cancellation (`to`, see
    /// [`CaptureMove`]): one conditional update, with the merchant's
    /// idempotency entry and an `assisted` audit row written in the same
    /// transaction.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn move_capture(
        &self,
        order_id: &str,
        merchant_id: &str,
        idem: Option<IdempotencyEntry<'_>>,
        now: i64,
        to: CaptureMove,
    ) -> Result<Result<(), CaptureRefused>> {
        let mut tx = self.write.begin().await?;
        if let Some(e) = &idem {
            match put_idempotency(&mut tx, merchant_id, e, now).await {
                Ok(()) => {}
                Err(super::StoreError::Conflict) => return Ok(Err(CaptureRefused::KeyUsed)),
                Err(e) => return Err(e),
            }
        }
        let done = sqlx::query(to.sql())
            .bind(order_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            drop(tx);
            return Ok(Err(self.why_not(order_id, to).await?));
        }
        sqlx::query(
            "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at) \
             VALUES ($1, 'assisted', NULL, NULL, $2, $3)",
        )
        .bind(order_id)
        .bind(to.detail())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Why a capture move found nothing to move.
    async fn why_not(&self, order_id: &str, to: CaptureMove) -> Result<CaptureRefused> {
        let row = self.assisted_call(order_id).await?;
        Ok(match row {
            _ if to == CaptureMove::Cancel => CaptureRefused::NotRunning,
            Some(r) if r.capture != "idle" => CaptureRefused::InProgress,
            Some(r) if r.cardholder_channel.is_some() && r.agent_channel.is_some() => {
                // Both are there: the order is not `in_call` (with the
                // issuer, or final: the API tells those apart).
                CaptureRefused::InProgress
            }
            _ => CaptureRefused::NotReady,
        })
    }

    /// The call begins the requested capture: `requested` → `running`.
    /// False when none is requested.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn begin_capture(&self, order_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE assisted_calls SET capture = 'running', updated_at = $2 \
             WHERE order_id = $1 AND capture = 'requested'",
        )
        .bind(order_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The capture ended (or a request was dropped): back to `idle`.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn end_capture(&self, order_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE assisted_calls SET capture = 'idle', updated_at = $2 WHERE order_id = $1",
        )
        .bind(order_id)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Appends one `capture` row (`progress`: the JSON of
    /// `{step, digits_entered, digits_expected, tries_left}`, counts only)
    /// under the order row's lock, and queues the `capture.progress`
    /// webhook when the order asked for progress (`notify_progress`).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn record_capture_progress(
        &self,
        order_id: &str,
        progress: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        // The row lock orders this row's id with the status rows' (see
        // `events_after`).
        sqlx::query("UPDATE orders SET updated_at = updated_at WHERE id = $1")
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at) \
             VALUES ($1, 'capture', NULL, NULL, $2, $3)",
        )
        .bind(order_id)
        .bind(progress)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.enqueue_event_with(
            &mut tx,
            order_id,
            "capture.progress",
            true,
            now,
            Some(progress),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
