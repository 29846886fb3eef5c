//! Group commit for the matcher's writes (and every other order move) on
//! SQLite: the `in_call` → `authorizing` move, the wrong-secret counts, the
//! audit entries, the result and its webhook outbox row, the binding.
//!
//! SQLite has one writer, reached through sqlx's worker thread: written one
//! transaction at a time, each write paid for a wait on the write
//! connection, `BEGIN`, its statements and `COMMIT`, every one a hand-off to
//! that thread and back. Here one task owns the writes, as `batch.rs` does
//! for new orders: it takes every write waiting at that moment (up to
//! [`MAX_GROUP`]), runs them one after the other in one transaction and
//! commits once. Each caller waits for its own result, given only after the
//! commit: nothing is acknowledged before it is durable (or, a crash before
//! the commit, ever happened).
//!
//! A member that fails rolls the whole group back; then every member runs
//! again alone, in its own transaction, so the failing one gets its own
//! precise error and the others commit as if the group had not been
//! tried. A member is therefore a function of the transaction that can run
//! twice (the first run's effects were rolled back).
//!
//! PostgreSQL runs each write in its own transaction on the pool
//! ([`Store::write_tx`]): its writers do not serialise behind one thread,
//! and concurrent commits already share WAL flushes.

use super::{Result, Store, StoreError};
use futures_util::future::BoxFuture;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

/// Most writes in one transaction.
pub const MAX_GROUP: usize = 64;

/// The transaction a member writes in.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

type Output = Box<dyn std::any::Any + Send>;

/// One write: run in the group's transaction, or again alone.
type Work = Box<dyn for<'c> Fn(&'c mut Tx) -> BoxFuture<'c, Result<Output>> + Send + Sync>;

struct Job {
    work: Work,
    done: oneshot::Sender<Result<Output>>,
}

/// Handle to the write task; cheap to clone.
#[derive(Clone)]
pub(super) struct WriteGroup {
    jobs: mpsc::Sender<Job>,
}

impl WriteGroup {
    /// Starts the task on the current tokio runtime. It ends when every
    /// handle is dropped.
    pub(super) fn start(pool: AnyPool) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(pool, rx));
        Self { jobs }
    }

    /// Runs `work` in the next group's transaction and returns its result
    /// once that transaction is committed (or, the group having failed,
    /// `work`'s own result alone).
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + Sync + 'static,
    {
        let work: Work = Box::new(move |tx| {
            let fut = work(tx);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Output) })
        });
        let (done, answer) = oneshot::channel();
        let closed = || StoreError::Db(sqlx::Error::PoolClosed);
        self.jobs
            .send(Job { work, done })
            .await
            .map_err(|_| closed())?;
        let out = answer.await.map_err(|_| closed())??;
        Ok(*out
            .downcast::<T>()
            .expect("each member is answered with its own output"))
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut batch, MAX_GROUP).await > 0 {
        if batch.len() > 1 {
            if let Ok(outs) = together(&pool, &batch).await {
                for (job, out) in batch.drain(..).zip(outs) {
                    let _ = job.done.send(Ok(out));
                }
                continue;
            }
        }
        for job in batch.drain(..) {
            let result = alone(&pool, &job.work).await;
            // The caller may have gone (its call ended); the write stands.
            let _ = job.done.send(result);
        }
    }
}

/// Every member in one transaction; the first error rolls all back.
async fn together(pool: &AnyPool, batch: &[Job]) -> Result<Vec<Output>> {
    let mut tx = pool.begin().await?;
    let mut outs = Vec::with_capacity(batch.len());
    for job in batch {
        outs.push((job.work)(&mut tx).await?);
    }
    tx.commit().await?;
    Ok(outs)
}

async fn alone(pool: &AnyPool, work: &Work) -> Result<Output> {
    let mut tx = pool.begin().await?;
    let out = work(&mut tx).await?;
    tx.commit().await?;
    Ok(out)
}

impl Store {
    /// Runs `work` in a write transaction and returns its result once
    /// committed: on SQLite in the group commit (see the module docs), on
    /// PostgreSQL in its own transaction. `work` may run twice on SQLite
    /// (the first run rolled back), so it must take what it writes from
    /// what it owns, not from what it did before.
    ///
    /// # Errors
    /// `work`'s own error, or [`StoreError::Db`] when the transaction
    /// cannot begin or commit.
    pub(super) async fn write_tx<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + Sync + 'static,
    {
        if let Some(group) = &self.group {
            return group.write(work).await;
        }
        let mut tx = self.write.begin().await?;
        let out = work(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("group.db").display());
        let store = Store::connect(&url, 2, crate::views::webhook_body)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Inserts `key` (a unique column, no conflict clause: a second insert
    /// of one key fails), counting its runs in `runs`.
    async fn insert_key(
        store: &Store,
        key: &str,
        runs: Arc<AtomicUsize>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        store
            .write_tx(move |tx| {
                let (key, runs) = (key.clone(), runs.clone());
                Box::pin(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    sqlx::query("INSERT INTO pin_try_keys (auth_key, created_at) VALUES ($1, 1)")
                        .bind(key)
                        .execute(&mut **tx)
                        .await
                        .map_err(super::super::conflict_aware)?;
                    Ok(())
                })
            })
            .await
    }

    async fn stored(store: &Store, key: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM pin_try_keys WHERE auth_key = $1")
            .bind(key)
            .fetch_one(&store.read)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_failing_member_gets_its_own_error_and_the_others_commit_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        insert_key(&store, "taken", Arc::default()).await.unwrap();
        let runs: Vec<Arc<AtomicUsize>> = (0..11).map(|_| Arc::default()).collect();
        // All eleven are queued in one poll, so they form one group; the
        // sixth repeats a key that is already stored.
        let keys: Vec<String> = (0..11)
            .map(|i| {
                if i == 5 {
                    "taken".into()
                } else {
                    format!("k{i}")
                }
            })
            .collect();
        let results = futures_util::future::join_all(
            keys.iter()
                .zip(&runs)
                .map(|(k, r)| insert_key(&store, k, r.clone())),
        )
        .await;
        for (i, r) in results.iter().enumerate() {
            if i == 5 {
                assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
            } else {
                assert!(r.is_ok(), "member {i}: {r:?}");
                assert_eq!(stored(&store, &keys[i]).await, 1, "{}", keys[i]);
            }
        }
        assert_eq!(stored(&store, "taken").await, 1);
        // The group was tried together up to the failing member, rolled
        // back, and each member run again alone: the rows above are from
        // the last runs only.
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        assert_eq!(runs, [2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]);
    }

    #[tokio::test]
    async fn each_caller_is_answered_only_after_its_write_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let keys: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        let checks = keys.iter().map(|k| {
            let store = store.clone();
            async move {
                insert_key(&store, k, Arc::default()).await.unwrap();
                // Seen at once from another connection: committed before
                // the answer.
                stored(&store, k).await
            }
        });
        let seen = futures_util::future::join_all(checks).await;
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }
}
