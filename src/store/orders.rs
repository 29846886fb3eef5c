use super::{conflict_aware, typed, Result, Store};
use crate::domain::{CardKind, Language, Mode, OrderStatus, ResultCode};

/// One order as stored. Card and ID numbers only in sealed or masked form.
/// Typed columns are checked when read: a stored value that is not one of
/// the type's names fails the read ([`StoreError::Db`], a column decode
/// error) instead of becoming another value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    /// voicepay's id, `ord_` + 24 hex digits.
    pub id: String,
    /// The merchant that created it.
    pub merchant_id: String,
    /// The merchant's own reference, unique per merchant.
    pub merchant_order_id: String,
    /// Where the order is in its life.
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    /// How the cardholder is reached.
    #[sqlx(try_from = "String")]
    pub mode: Mode,
    /// In fen (0.01 CNY).
    pub amount: i64,
    /// ISO 4217, `CNY`.
    pub currency: String,
    /// Shown to nobody but the merchant.
    pub description: Option<String>,
    /// The cardholder's phone, normalised (`Phone::parse`).
    pub phone: String,
    /// The prompts' language.
    #[sqlx(try_from = "String")]
    pub language: Language,
    /// Where this order's webhooks go (else the merchant's URL).
    pub notify_url: Option<String>,
    /// The card number, sealed (`Vault`, column `card_number`).
    pub card_enc: String,
    /// First six and last four digits.
    pub card_masked: String,
    /// Debit (PIN) or credit (expiry + CVN2).
    #[sqlx(try_from = "String")]
    pub card_type: CardKind,
    /// Keyed HMAC of the card number: counts wrong PINs per card.
    pub card_fp: String,
    /// The cardholder ID number, sealed (column `id_number`).
    pub id_enc: String,
    /// The ID number, masked.
    pub id_masked: String,
    /// Set when the card came from the phone's binding.
    pub binding_id: Option<String>,
    /// The one-time code a call presents for this order until it ends: the
    /// transfer code (transfer mode) or the order code the caller keys
    /// (inbound mode).
    pub call_code: Option<String>,
    /// The final result's snake_case code (`ResultCode::code`).
    pub result_code: Option<String>,
    /// The issuer's numeric response code, when the bank decided.
    pub resp_code: Option<String>,
    /// The final result in words.
    pub result_message: Option<String>,
    /// Calls placed or taken so far.
    pub attempts: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last change.
    pub updated_at: i64,
    /// Unix ms: the end of the order's window.
    pub expires_at: i64,
    /// 1 when the merchant asked for progress webhooks (`order.calling`,
    /// `order.answered`, `order.authorizing`), 0 for final ones only.
    pub notify_progress: i64,
}

impl OrderRow {
    /// Where the order is in its life.
    pub fn status(&self) -> OrderStatus {
        self.status
    }
}

/// One call placed or taken for an order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    /// The attempt's number for its order, from 1.
    pub attempt: i64,
    /// The Asterisk channel id (`vp-<order>-<n>` for a callback).
    pub channel_id: String,
    /// Unix ms: placed (callback) or taken (transfer, inbound).
    pub started_at: i64,
    /// Unix ms the cardholder answered; `None` if never.
    pub answered_at: Option<i64>,
    /// Unix ms the call ended; `None` while it lasts.
    pub ended_at: Option<i64>,
    /// `answered`, `no_answer`, `busy` or `failed`; `None` while it lasts.
    pub outcome: Option<String>,
    /// Why it ended, for people: a Q.850 cause or a code such as `call_lost`.
    pub cause: Option<String>,
}

/// One entry of the append-only order event log. A status column holding
/// anything but a status name fails the read (a corrupt row).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Increasing per database; orders the log.
    pub id: i64,
    /// `created`, `status`, or another audit kind such as `bank`.
    pub kind: String,
    /// The status left (`status` rows only).
    pub from_status: Option<OrderStatus>,
    /// The status reached (`created` and `status` rows).
    pub to_status: Option<OrderStatus>,
    /// Free text for people; never a secret.
    pub detail: Option<String>,
    /// Unix ms.
    pub created_at: i64,
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for EventRow {
    fn from_row(r: &'r sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        let status = |col: &str| -> sqlx::Result<Option<OrderStatus>> {
            r.try_get::<Option<String>, _>(col)?
                .map(|s| typed(col, s))
                .transpose()
        };
        Ok(Self {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            from_status: status("from_status")?,
            to_status: status("to_status")?,
            detail: r.try_get("detail")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

/// A conditional move of an order from one status to another.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// The status the order must still be in for the move to happen.
    pub from: OrderStatus,
    /// The status it moves to; must be an edge of [`OrderStatus::can_become`].
    pub to: OrderStatus,
    /// Recorded on the order when set (final outcomes).
    pub result: Option<ResultCode>,
    /// Free text for the audit log; never a secret.
    pub detail: Option<&'a str>,
}

/// Writes `merchant_id`'s idempotency entry `e` (created at `now`, Unix ms)
/// in `tx`, replacing a stale entry for the key.
///
/// # Errors
/// [`StoreError::Conflict`](super::StoreError::Conflict) when a live entry
/// holds the key; [`StoreError::Db`](super::StoreError::Db) on a database
/// error.
pub(super) async fn put_idempotency(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    merchant_id: &str,
    e: &IdempotencyEntry<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND created_at < $3",
    )
    .bind(merchant_id)
    .bind(e.key)
    .bind(e.stale_before)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, key, request_hash, status_code, response_body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(merchant_id)
    .bind(e.key)
    .bind(e.request_hash)
    .bind(i64::from(e.status_code))
    .bind(e.body)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(conflict_aware)?;
    Ok(())
}

/// An idempotency entry written in the same transaction as the order.
pub struct IdempotencyEntry<'a> {
    /// The merchant's `Idempotency-Key` header.
    pub key: &'a str,
    /// SHA-256 (hex) of the request body.
    pub request_hash: &'a str,
    /// The HTTP status to replay (201).
    pub status_code: u16,
    /// The JSON response body to replay.
    pub body: &'a str,
    /// Unix ms: entries for the key created before this are stale and are
    /// replaced.
    pub stale_before: i64,
}

pub(super) const ORDER_COLUMNS: &str =
    "id, merchant_id, merchant_order_id, status, mode, amount, currency, \
    description, phone, language, notify_url, card_enc, card_masked, card_type, card_fp, id_enc, \
    id_masked, binding_id, call_code, result_code, resp_code, result_message, attempts, \
    created_at, updated_at, expires_at, notify_progress";

impl Store {
    /// Inserts a new order, its `created` event and (optionally) the
    /// idempotency entry, atomically. On SQLite without an idempotency key
    /// the insert is group-committed with others; it returns once committed.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the order id, the merchant order id, the
    /// call code or the live idempotency key is taken (nothing is written);
    /// [`StoreError::Db`] on a database error.
    pub async fn create_order(
        &self,
        o: &OrderRow,
        idem: Option<IdempotencyEntry<'_>>,
    ) -> Result<()> {
        // The `created` event comes from a trigger on `orders`, so without an
        // idempotency key the whole write is one statement (one round trip).
        let Some(e) = idem else {
            if let Some(batcher) = &self.batcher {
                return batcher.insert(o.clone()).await;
            }
            insert_order(o)
                .execute(&self.write)
                .await
                .map_err(conflict_aware)?;
            return Ok(());
        };
        let mut tx = self.write.begin().await?;
        put_idempotency(&mut tx, &o.merchant_id, &e, o.created_at).await?;
        insert_order(o)
            .execute(&mut *tx)
            .await
            .map_err(conflict_aware)?;
        tx.commit().await?;
        Ok(())
    }

    /// The order if it exists and belongs to this merchant, else `None`.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error, or a typed column holding an unknown name.
    pub async fn order_for_merchant(
        &self,
        merchant_id: &str,
        id: &str,
    ) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND merchant_id = $2"
        ))
        .bind(id)
        .bind(merchant_id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// The order by id, whoever owns it (internal use: calls, matcher).
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error, or a typed column holding an unknown name.
    pub async fn order(&self, id: &str) -> Result<Option<OrderRow>> {
        Ok(sqlx::query_as::<_, OrderRow>(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Whether this merchant already used `merchant_order_id`.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn merchant_order_exists(
        &self,
        merchant_id: &str,
        merchant_order_id: &str,
    ) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE merchant_id = $1 AND merchant_order_id = $2",
        )
        .bind(merchant_id)
        .bind(merchant_order_id)
        .fetch_one(&self.write)
        .await?;
        Ok(n > 0)
    }

    /// How many orders named `phone` (any merchant) were created at or after
    /// `since` (Unix ms), and the oldest of their creation times: what
    /// `limits.orders_per_phone_per_day` counts. Index `orders_phone_created`.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn orders_for_phone_since(
        &self,
        phone: &str,
        since: i64,
    ) -> Result<(i64, Option<i64>)> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM orders WHERE phone = $1 AND created_at >= $2",
        )
        .bind(phone)
        .bind(since)
        .fetch_one(&self.read)
        .await?)
    }

    /// Order counts by status name, for `/metrics`.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn order_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status")
                .fetch_all(&self.read)
                .await?,
        )
    }

    /// The order's call attempts, oldest (attempt 1) first.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn attempts_for(&self, order_id: &str) -> Result<Vec<AttemptRow>> {
        Ok(sqlx::query_as::<_, AttemptRow>(
            "SELECT attempt, channel_id, started_at, answered_at, ended_at, outcome, cause \
             FROM call_attempts WHERE order_id = $1 ORDER BY attempt",
        )
        .bind(order_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// The order's whole audit log, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn events_for(&self, order_id: &str) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as::<_, EventRow>(
            "SELECT id, kind, from_status, to_status, detail, created_at \
             FROM order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// The order's status events (`created` and `status` rows, and an
    /// assisted call's `capture` progress rows) with an id above
    /// `after_id`, oldest first (at most 100): what a live status stream
    /// has not sent yet.
    ///
    /// Only these rows: they (`capture` rows too, which take the order
    /// row's lock first, see `Store::record_capture_progress`) are written with the order row updated in
    /// the same transaction, so the row lock serializes them per order and
    /// their ids commit in order; `after_id` is then a safe cursor. Other
    /// audit rows (`bank` …) are written in transactions of their own, and
    /// on PostgreSQL an id is taken at insert, not at commit: a later-id
    /// bank row can be visible before an earlier-id status row, and a
    /// cursor moved past it would skip that status for good.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a database error.
    pub async fn events_after(&self, order_id: &str, after_id: i64) -> Result<Vec<EventRow>> {
        Ok(sqlx::query_as::<_, EventRow>(
            "SELECT id, kind, from_status, to_status, detail, created_at \
             FROM order_events WHERE order_id = $1 AND id > $2 \
               AND kind IN ('created', 'status', 'capture') ORDER BY id LIMIT 100",
        )
        .bind(order_id)
        .bind(after_id)
        .fetch_all(&self.read)
        .await?)
    }
}

/// `INSERT INTO orders …` with every column bound.
pub(super) fn insert_order(o: &OrderRow) -> AnyQuery<'_> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24, $25, $26, $27)"
        )
    });
    bind_order(sqlx::query(sql), o)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the 27 columns of [`ORDER_COLUMNS`], in order.
pub(super) fn bind_order<'q>(q: AnyQuery<'q>, o: &'q OrderRow) -> AnyQuery<'q> {
    q.bind(&o.id)
        .bind(&o.merchant_id)
        .bind(&o.merchant_order_id)
        .bind(o.status.as_str())
        .bind(o.mode.as_str())
        .bind(o.amount)
        .bind(&o.currency)
        .bind(&o.description)
        .bind(&o.phone)
        .bind(o.language.as_str())
        .bind(&o.notify_url)
        .bind(&o.card_enc)
        .bind(&o.card_masked)
        .bind(o.card_type.as_str())
        .bind(&o.card_fp)
        .bind(&o.id_enc)
        .bind(&o.id_masked)
        .bind(&o.binding_id)
        .bind(&o.call_code)
        .bind(&o.result_code)
        .bind(&o.resp_code)
        .bind(&o.result_message)
        .bind(o.attempts)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.expires_at)
        .bind(o.notify_progress)
}
