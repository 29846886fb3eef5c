//! Group commit for new orders on SQLite.
//!
//! SQLite has one writer, and every statement travels to sqlx's SQLite worker
//! thread and back; under load, new orders were serialized through that
//! thread's wake-ups rather than through SQLite itself. Here one task owns
//! the inserts: it takes every order waiting at that moment (up to
//! [`MAX_BATCH`]) and writes them with one multi-row `INSERT`, a single round
//! trip and a single commit. If that statement fails (one duplicate
//! `merchant_order_id` fails the whole statement), each order of the batch is
//! written on its own so that each caller gets its own precise answer.
//! Callers wait for their own result: nothing is acknowledged before it is
//! committed.

use super::orders::{bind_order, insert_order, ORDER_COLUMNS};
use super::{conflict_aware, OrderRow, Result, StoreError};
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

/// Most orders written by one statement (27 parameters each, far under
/// SQLite's 32,766-parameter limit).
pub const MAX_BATCH: usize = 64;

/// Columns bound per order (see `orders::bind_order`).
const ORDER_PARAMS: usize = 27;

type Job = (OrderRow, oneshot::Sender<Result<()>>);

/// Handle to the insert task; cheap to clone.
#[derive(Clone)]
pub struct OrderBatcher {
    jobs: mpsc::Sender<Job>,
}

impl OrderBatcher {
    /// Starts the task on the current tokio runtime. It ends when every
    /// handle is dropped.
    pub fn start(pool: AnyPool) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(pool, rx));
        Self { jobs }
    }

    /// Inserts one order (its `created` event comes from the trigger) and
    /// returns once it is committed, or why not.
    pub async fn insert(&self, row: OrderRow) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let closed = || StoreError::Db(sqlx::Error::PoolClosed);
        self.jobs.send((row, done)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if batch.len() > 1 && insert_many(&pool, &batch).await.is_ok() {
            for (_, done) in batch.drain(..) {
                let _ = done.send(Ok(()));
            }
            continue;
        }
        for (row, done) in batch.drain(..) {
            let result = insert_order(&row)
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(conflict_aware);
            let _ = done.send(result);
        }
    }
}

async fn insert_many(pool: &AnyPool, batch: &[Job]) -> Result<()> {
    let mut sql = format!("INSERT INTO orders ({ORDER_COLUMNS}) VALUES ");
    for i in 0..batch.len() {
        let base = i * ORDER_PARAMS;
        let params: Vec<String> = (1..=ORDER_PARAMS)
            .map(|p| format!("${}", base + p))
            .collect();
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        sql.push_str(&params.join(","));
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for (row, _) in batch {
        q = bind_order(q, row);
    }
    q.execute(pool).await.map_err(conflict_aware)?;
    Ok(())
}
