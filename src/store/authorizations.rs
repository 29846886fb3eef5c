//! What the matcher keeps beside the order itself: the day's wrong-secret
//! counts per card and per phone, the attempt number behind each idempotency key, and the
//! `bank` entries of the audit log. Nothing here is a secret: cards appear
//! only as keyed fingerprints, attempts only as numbers.
//!
//! Writes go through the group commit (`Store::write_tx`); reads use the
//! read pool, which sees every write once its caller has been answered (an
//! answer is given only after the commit).

use super::{Result, Store};

impl Store {
    /// Wrong secrets (PIN, or expiry and CVN2) recorded for the card (by
    /// fingerprint) on `day` (`YYYY-MM-DD`, Asia/Shanghai); 0 when none.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn pin_tries(&self, card_fp: &str, day: &str) -> Result<i64> {
        self.day_count(DayCount::Card, card_fp, day).await
    }

    /// Counts the wrong secret (PIN, or expiry and CVN2) answered to
    /// authorization `auth_key` for the card on `day`, once however often that answer is recorded, and at
    /// least `at_least` (the issuer's lock raises it to the daily limit at
    /// once). Returns the day's count. One transaction: the key and the
    /// count move together, and concurrent calls never lose an increment.
    /// `now` is Unix milliseconds.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn record_wrong_pin(
        &self,
        card_fp: &str,
        day: &str,
        auth_key: &str,
        at_least: i64,
        now: i64,
    ) -> Result<i64> {
        let (card_fp, day, auth_key) = (card_fp.to_owned(), day.to_owned(), auth_key.to_owned());
        self.write_tx(move |tx| {
            let (card_fp, day, auth_key) = (card_fp.clone(), day.clone(), auth_key.clone());
            Box::pin(async move {
                let first = first_answer(tx, CARD_ANSWERS, &auth_key, now).await?;
                let sql = if first {
                    "INSERT INTO pin_tries (card_fp, day, count, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (card_fp, day) DO UPDATE SET \
                        count = CASE WHEN pin_tries.count + 1 > $3 THEN pin_tries.count + 1 ELSE $3 END, \
                        updated_at = $4 \
                     RETURNING count"
                } else {
                    "INSERT INTO pin_tries (card_fp, day, count, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (card_fp, day) DO UPDATE SET \
                        count = CASE WHEN pin_tries.count > $3 THEN pin_tries.count ELSE $3 END, \
                        updated_at = $4 \
                     RETURNING count"
                };
                Ok(sqlx::query_scalar(sql)
                    .bind(card_fp)
                    .bind(day)
                    .bind(at_least.max(1))
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?)
            })
        })
        .await
    }

    /// [`Store::pin_tries`] and [`Store::phone_secret_tries`] in one read:
    /// the day's wrong secrets for the card (by fingerprint) and for the
    /// phone (by fingerprint), each 0 when none.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn tries_today(
        &self,
        card_fp: &str,
        phone_fp: &str,
        day: &str,
    ) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COALESCE((SELECT count FROM pin_tries WHERE card_fp = $1 AND day = $3), 0), \
                    COALESCE((SELECT count FROM phone_secret_tries WHERE phone_fp = $2 AND day = $3), 0)",
        )
        .bind(card_fp)
        .bind(phone_fp)
        .bind(day)
        .fetch_one(&self.read)
        .await?)
    }

    /// Wrong secrets keyed on the phone (by fingerprint) on `day`
    /// (`YYYY-MM-DD`, Asia/Shanghai), over every card; 0 when none.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn phone_secret_tries(&self, phone_fp: &str, day: &str) -> Result<i64> {
        self.day_count(DayCount::Phone, phone_fp, day).await
    }

    /// Counts the wrong secret answered to authorization `auth_key` against
    /// the phone on `day`, once however often that answer is recorded.
    /// Returns the day's count. One transaction, as
    /// [`Store::record_wrong_pin`]. `now` is Unix milliseconds.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn record_wrong_secret_on_phone(
        &self,
        phone_fp: &str,
        day: &str,
        auth_key: &str,
        now: i64,
    ) -> Result<i64> {
        let (phone_fp, day, auth_key) = (phone_fp.to_owned(), day.to_owned(), auth_key.to_owned());
        self.write_tx(move |tx| {
            let (phone_fp, day, auth_key) = (phone_fp.clone(), day.clone(), auth_key.clone());
            Box::pin(async move {
                let first = first_answer(tx, PHONE_ANSWERS, &auth_key, now).await?;
                let step: i64 = if first { 1 } else { 0 };
                Ok(sqlx::query_scalar(
                    "INSERT INTO phone_secret_tries (phone_fp, day, count, updated_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (phone_fp, day) DO UPDATE SET \
                        count = phone_secret_tries.count + $3, updated_at = $4 \
                     RETURNING count",
                )
                .bind(phone_fp)
                .bind(day)
                .bind(step)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?)
            })
        })
        .await
    }

    /// How many audit entries of `kind` with exactly `detail` the order
    /// has, e.g. the issuer's ID mismatches on it.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn count_events(&self, order_id: &str, kind: &str, detail: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM order_events WHERE order_id = $1 AND kind = $2 AND detail = $3",
        )
        .bind(order_id)
        .bind(kind)
        .bind(detail)
        .fetch_one(&self.read)
        .await?)
    }

    /// How many times the order has moved `in_call` → `authorizing`: the
    /// number of the current authorization attempt while it is
    /// `authorizing` (no other move can happen until it leaves). Derived
    /// from the append-only log, so it survives a crash and recovery finds
    /// the same idempotency key the matcher used.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn authorization_attempts(&self, order_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(ATTEMPTS)
            .bind(order_id)
            .fetch_one(&self.read)
            .await?)
    }

    /// At most `limit` orders in `authorizing`, oldest move first, as
    /// (id, `updated_at` in Unix milliseconds).
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn authorizing_orders(&self, limit: i64) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, updated_at FROM orders WHERE status = 'authorizing' \
             ORDER BY updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.write)
        .await?)
    }

    /// Appends an audit entry that is not a status change, e.g. kind `bank`
    /// with "authorize attempt 2" or "query 1: no record", at `now` (Unix
    /// milliseconds). Never a secret.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn append_event(
        &self,
        order_id: &str,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        let (id, kind, detail) = (order_id.to_owned(), kind.to_owned(), detail.to_owned());
        self.write_tx(move |tx| {
            let (id, kind, detail) = (id.clone(), kind.clone(), detail.clone());
            Box::pin(async move { insert_event(tx, &id, &kind, &detail, now).await })
        })
        .await
    }
}

/// An audit entry that is not a status change, in `tx`.
pub(super) async fn insert_event(
    tx: &mut super::group::Tx,
    order_id: &str,
    kind: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, created_at) \
         VALUES ($1, $2, NULL, NULL, $3, $4)",
    )
    .bind(order_id)
    .bind(kind)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The number of the order's authorization attempts: its `in_call` →
/// `authorizing` moves in the log.
const ATTEMPTS: &str = "SELECT COUNT(*) FROM order_events WHERE order_id = $1 \
     AND kind = 'status' AND from_status = 'in_call' AND to_status = 'authorizing'";

/// The number of the attempt a move into `authorizing` starts, as a column
/// of that move's `UPDATE orders … RETURNING`: the moves before it, plus
/// one (the move's own status entry is written after the update).
pub(super) const NEXT_ATTEMPT: &str = "(SELECT COUNT(*) FROM order_events e \
     WHERE e.order_id = orders.id AND e.kind = 'status' AND e.from_status = 'in_call' \
     AND e.to_status = 'authorizing') + 1 AS next_attempt";

/// The per-day counters of wrong tries: each a table of `(key, day, count)`
/// (a keyed fingerprint or a normalised phone, a Shanghai `YYYY-MM-DD`).
#[derive(Clone, Copy)]
pub(super) enum DayCount {
    /// Wrong secrets per card fingerprint (`pin_tries`).
    Card,
    /// Wrong secrets per phone fingerprint (`phone_secret_tries`).
    Phone,
    /// Wrong order codes per caller ID (`order_code_tries`).
    OrderCode,
}

impl DayCount {
    fn select(self) -> &'static str {
        match self {
            DayCount::Card => "SELECT count FROM pin_tries WHERE card_fp = $1 AND day = $2",
            DayCount::Phone => {
                "SELECT count FROM phone_secret_tries WHERE phone_fp = $1 AND day = $2"
            }
            DayCount::OrderCode => {
                "SELECT count FROM order_code_tries WHERE caller = $1 AND day = $2"
            }
        }
    }
}

impl Store {
    /// The day's count of `counter` for `key`; 0 when none.
    pub(super) async fn day_count(&self, counter: DayCount, key: &str, day: &str) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar(counter.select())
            .bind(key)
            .bind(day)
            .fetch_optional(&self.read)
            .await?;
        Ok(n.unwrap_or(0))
    }
}

/// The authorizations whose wrong secret a card's count holds already.
const CARD_ANSWERS: &str = "INSERT INTO pin_try_keys (auth_key, created_at) VALUES ($1, $2) \
     ON CONFLICT (auth_key) DO NOTHING";
/// The authorizations whose wrong secret a phone's count holds already.
const PHONE_ANSWERS: &str = "INSERT INTO phone_secret_try_keys (auth_key, created_at) \
     VALUES ($1, $2) ON CONFLICT (auth_key) DO NOTHING";

/// Notes (with `answers`, one of the two above) that authorization
/// `auth_key`'s answer is being counted: whether this is the first time, so
/// that one answer recorded twice counts once.
async fn first_answer(
    tx: &mut super::group::Tx,
    answers: &'static str,
    auth_key: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(answers)
        .bind(auth_key)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
