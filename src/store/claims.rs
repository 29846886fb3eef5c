//! Claims on orders held by nodes (`claimed_by`, `claim_until`): what this
//! node drives, renewing them while it lives, and finding and taking over
//! the claims of a node that stopped.

use super::calls::{ActiveCall, StaleClaim};
use super::{status_column, Result, Store};

/// Orders per [`Store::renew_claims`] statement.
const RENEW_CHUNK: usize = 200;

impl Store {
    /// Orders `node` holds in `calling`, `in_call` or `authorizing`, with
    /// their latest channel: what reconciliation compares with Asterisk's
    /// channels. Rows whose status does not parse are left out.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn active_calls(&self, node: &str) -> Result<Vec<ActiveCall>> {
        let rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT o.id, o.status, o.attempts, \
                (SELECT a.channel_id FROM call_attempts a WHERE a.order_id = o.id \
                 ORDER BY a.attempt DESC LIMIT 1) \
             FROM orders o WHERE o.claimed_by = $1 \
               AND o.status IN ('calling', 'in_call', 'authorizing')",
        )
        .bind(node)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(order_id, status, attempts, channel_id)| {
                Ok(ActiveCall {
                    order_id,
                    status: status_column(status)?,
                    attempts,
                    channel_id,
                })
            })
            .collect()
    }

    /// Orders in `calling` or `in_call` whose claim has run out: the node
    /// holding them stopped without settling them (a live node renews its
    /// claims, see [`Store::renew_claims`]): `claim_until` before `now`
    /// (Unix ms). Oldest claim first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn stale_claims(&self, now: i64, limit: i64) -> Result<Vec<StaleClaim>> {
        let rows: Vec<(String, String, i64, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT o.id, o.status, o.attempts, \
                (SELECT a.channel_id FROM call_attempts a WHERE a.order_id = o.id \
                 ORDER BY a.attempt DESC LIMIT 1), o.claimed_by, o.claim_until \
             FROM orders o WHERE o.status IN ('calling', 'in_call') \
               AND o.claimed_by IS NOT NULL AND o.claim_until < $1 \
             ORDER BY o.claim_until LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(order_id, status, attempts, channel_id, node, until)| {
                Ok(StaleClaim {
                    call: ActiveCall {
                        order_id,
                        status: status_column(status)?,
                        attempts,
                        channel_id,
                    },
                    node,
                    claim_until: until,
                })
            })
            .collect()
    }

    /// Moves a stale claim to `node` until `claim_until`, if nobody changed
    /// it meanwhile (the old node came back, or another node took it over
    /// first): exactly one node settles an abandoned call. Returns whether
    /// this node took it. `claim_until` and `now` are Unix ms.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn take_over_claim(
        &self,
        stale: &StaleClaim,
        node: &str,
        claim_until: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE orders SET claimed_by = $1, claim_until = $2, updated_at = $3 \
             WHERE id = $4 AND status = $5 AND claimed_by = $6 AND claim_until = $7",
        )
        .bind(node)
        .bind(claim_until)
        .bind(now)
        .bind(&stale.call.order_id)
        .bind(stale.call.status.as_str())
        .bind(&stale.node)
        .bind(stale.claim_until)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends `node`'s claims on `order_ids` (the calls it is placing or
    /// running) to `claim_until`, for those still in `calling`, `in_call` or
    /// `authorizing` and held by `node`: a live node keeps its claims
    /// however long a call lasts or ARI stays away, so only a stopped
    /// node's claims run out. A claim another node took over, or an order
    /// that ended, is left alone; a claim is never shortened. `claim_until`
    /// is Unix ms. Returns how many claims moved.
    ///
    /// # Errors
    /// [`StoreError::Db`](super::StoreError::Db) on a database error.
    pub async fn renew_claims(
        &self,
        node: &str,
        order_ids: &[String],
        claim_until: i64,
    ) -> Result<u64> {
        let mut renewed = 0;
        for chunk in order_ids.chunks(RENEW_CHUNK) {
            let ids: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "UPDATE orders SET claim_until = $1 \
                 WHERE claimed_by = $2 AND status IN ('calling', 'in_call', 'authorizing') \
                   AND claim_until < $1 AND id IN ({})",
                ids.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(claim_until).bind(node);
            for id in chunk {
                q = q.bind(id);
            }
            renewed += q.execute(&self.write).await?.rows_affected();
        }
        Ok(renewed)
    }
}
