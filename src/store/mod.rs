//! The repository layer: every SQL statement lives under this module, written
//! once in the dialect both SQLite and PostgreSQL understand (`$1` parameters,
//! `BIGINT` times in Unix milliseconds, `TEXT` everywhere else) and run through
//! sqlx's `Any` driver, so the code above never knows which database it has.

#![warn(missing_docs)]

mod assisted;
mod authorizations;
mod batch;
mod bindings;
mod call_points;
mod calls;
mod claims;
mod group;
mod idempotency;
mod inbound;
mod lifecycle;
mod merchants;
mod orders;
mod refunds;
mod requests;
mod reversals;
mod stans;
mod status;
mod webhooks;

pub use assisted::{AssistedRow, CaptureMove, CaptureRefused, Party};
pub use bindings::{BindingRow, NewBinding};
pub use call_points::{CallPoint, ResumeStep, StoredPoint};
pub use calls::{ActiveCall, StaleClaim};
pub use idempotency::StoredResponse;
pub use merchants::{MerchantRow, MerchantSummary, WebhookSecrets};
pub use orders::{AttemptRow, EventRow, IdempotencyEntry, OrderRow, Transition};
pub use refunds::{RefundAnswer, RefundCreated, RefundError, RefundRow, RefundStatus};
pub use requests::{AcquirerRequest, NewRequest, RequestStatus};
pub use reversals::{reversal_backoff_ms, NewReversal, PendingReversal, ReversalStatus};
pub use status::{event_type, WebhookBody, WebhookEvent};
pub use webhooks::{Delivery, OutboxRow, Redelivery, WebhookFilter};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database sits under the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local SQLite file (`sqlite:` URL): one writer, group-committed
    /// order inserts (`batch`) and order moves and matcher writes (`group`).
    Sqlite,
    /// PostgreSQL (`postgres://` URL), which several nodes may share.
    Postgres,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; nothing was changed.
    #[error("conflict with an existing row")]
    Conflict,
    /// The database failed or could not be reached, or a stored column
    /// could not be read as its type (a corrupt row).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A migration failed ([`Store::migrate`]).
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A bug: the lifecycle has no such edge.
    #[error("illegal order transition {from:?} -> {to:?}")]
    IllegalTransition {
        /// The status the move was asked from.
        from: crate::domain::OrderStatus,
        /// The status the move was asked to.
        to: crate::domain::OrderStatus,
    },
}

impl StoreError {
    /// Whether the database could not be reached: no connection within the
    /// pool's acquire timeout, a closed pool, a broken connection, or the
    /// server refusing or ending connections (SQLSTATE class 08, 57P01-57P03
    /// shutting down). Nothing was written; the same request may succeed
    /// once the database is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            StoreError::Db(sqlx::Error::Io(_)) => true,
            StoreError::Db(sqlx::Error::Database(d)) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }
}

/// The store's result: [`StoreError`] unless said otherwise.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict_aware(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

/// Connection pools. SQLite allows one writer at a time, so writes go through
/// a single connection (queued fairly by the pool instead of spinning on
/// `SQLITE_BUSY`) while reads use several; PostgreSQL uses one pool for both.
#[derive(Clone)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    /// SQLite only: group commit of new orders (see `batch`).
    batcher: Option<batch::OrderBatcher>,
    /// SQLite only: group commit of order moves and the matcher's writes
    /// (see `group`).
    group: Option<group::WriteGroup>,
    /// Renders the body of each webhook event queued with a status change.
    webhook_body: WebhookBody,
}

impl Store {
    /// Opens `url` (`sqlite:…` or `postgres://…`) with at most
    /// `max_connections` connections per pool; webhook bodies are rendered
    /// with `webhook_body`. Does not migrate: see [`Store::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Db`] when the database cannot be opened or reached.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        webhook_body: WebhookBody,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = sqlite_url(url);
            let write = sqlite_pool(&url, 1).await?;
            let read = sqlite_pool(&url, max_connections).await?;
            let batcher = Some(batch::OrderBatcher::start(write.clone()));
            let group = Some(group::WriteGroup::start(write.clone()));
            Ok(Self {
                write,
                read,
                backend: Backend::Sqlite,
                batcher,
                group,
                webhook_body,
            })
        } else {
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(5))
                // PostgreSQL's NOTICEs (sqlx logs each at INFO, e.g.
                // "relation \"_sqlx_migrations\" already exists, skipping"
                // at every start) are not sent; warnings still are.
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET client_min_messages TO warning").await?;
                        Ok(())
                    })
                })
                .connect_with(quiet(url)?)
                .await?;
            Ok(Self {
                write: pool.clone(),
                read: pool,
                backend: Backend::Postgres,
                batcher: None,
                group: None,
                webhook_body,
            })
        }
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations for this backend that have not run yet.
    ///
    /// # Errors
    /// [`StoreError::Migrate`] when the database cannot be reached, a
    /// migration fails, or the database records migrations this build does
    /// not have (or has with other contents).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.write).await?;
        Ok(())
    }

    /// Whether the database answers, for `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Creates the SQLite database file of `url` (`sqlite://path…`) mode 0600
/// if it is missing, and takes group and other permissions off it and its
/// `-wal` and `-shm` files if they exist, before SQLite opens it: SQLite
/// creates the `-wal` and `-shm` files with the database file's mode, so all
/// three stay owner-only whatever the umask. Nothing for an in-memory URL
/// or another database.
///
/// # Errors
/// The file cannot be created or its mode changed.
pub fn create_sqlite_file_private(url: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return Ok(());
    }
    let path = std::path::Path::new(path);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if file.exists() {
            owner_only(&file)?;
        }
    }
    Ok(())
}

/// Takes group and other permissions off `path` (a data file voicepay
/// owns: the database, the stub issuer's journal).
///
/// # Errors
/// The file's mode cannot be read or changed.
pub fn owner_only(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// `sqlite://file.db` → created if missing.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// A statement slower than this is logged by sqlx, at WARN.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// The connect options of `url` with sqlx's statement logging out of the
/// daemon's INFO and DEBUG logs: each statement at TRACE (sqlx's default
/// is DEBUG), one slower than [`SLOW_STATEMENT`] at WARN.
fn quiet(url: &str) -> Result<AnyConnectOptions> {
    let options: AnyConnectOptions = url.parse()?;
    Ok(options
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT))
}

async fn sqlite_pool(url: &str, max: u32) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A local file cannot drop like a socket: skip the ping round trip
        // that would otherwise precede every query.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(quiet(url)?)
        .await?)
}

/// Reads an optional column without failing on SQL NULL.
fn opt<'r, T>(row: &'r AnyRow, col: &str) -> sqlx::Result<Option<T>>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get::<Option<T>, _>(col)
}

/// Reads the typed value stored as text in column `col`: a value that is
/// not one of the type's names is a corrupt row, a column decode error,
/// never skipped or read as another value.
fn typed<T: TryFrom<String, Error = crate::domain::Invalid>>(
    col: &str,
    s: String,
) -> sqlx::Result<T> {
    T::try_from(s).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.into(),
        source: Box::new(e),
    })
}

/// A status read from a column (see [`typed`]), as [`StoreError::Db`].
fn status_column(s: String) -> Result<crate::domain::OrderStatus> {
    Ok(typed("status", s)?)
}

/// Now, in milliseconds since the Unix epoch (UTC): the unit of every time
/// column ([`crate::clock::now_ms`]).
pub use crate::clock::now_ms;
