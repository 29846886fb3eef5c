//! Wiring: opens the store, loads keys, builds the router, starts background
//! workers (expiry sweep, calls, webhook delivery), and runs until the shutdown token fires.

use crate::api::{self, auth::MerchantCache, AppState};
use crate::bank::{Bank, StubIssuer};
use crate::clock::SystemClock;
use crate::config::{BankKind, Settings};
use crate::crypto::{KeyRing, Vault};
use crate::domain::{OrderStatus, ResultCode};
use crate::matcher::{BankMatcher, MatcherConfig};
use crate::notify::Notifier;
use crate::store::{now_ms, Store, Transition};
use crate::telemetry::{Metrics, Readiness};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often orders left in `authorizing` are looked for again (after the
/// run at start): a node that stopped and never came back leaves its
/// authorizations to the others.
const RECOVER_EVERY: Duration = Duration::from_secs(60);

/// The matcher this daemon runs: the issuer `bank.kind` names.
type DaemonMatcher = BankMatcher<Bank>;

/// How often the reversal worker looks for due reversal advices.
const REVERSALS_EVERY: Duration = Duration::from_secs(1);

/// A built, bound, not yet running voicepay.
pub struct App {
    listener: TcpListener,
    state: AppState,
    /// Joins keyed secrets with orders and authorizes them, once per process
    /// (the stub issuer keeps balances and PIN locks in its state file).
    matcher: Arc<DaemonMatcher>,
    /// The demo page's own listener and its merchant's API key (held in
    /// memory only), when `demo.enabled`.
    demo: Option<(TcpListener, zeroize::Zeroizing<String>)>,
}

/// The issuer `bank.kind` names: the stub issuer with its cards and state
/// file, or the ISO 8583 link (spawned here: it connects and signs on in
/// the background; its zone PIN key's id and check value are logged).
fn build_bank(settings: &Settings, store: &Store, ring: &KeyRing) -> anyhow::Result<Bank> {
    if settings.bank.kind == BankKind::Iso8583 {
        let clock: crate::clock::SharedClock = Arc::new(SystemClock);
        return Bank::iso8583(&settings.bank.iso8583, store.clone(), ring.zpk(), clock);
    }
    let stub_state = settings.stub_state_path();
    let issuer = StubIssuer::load(&settings.bank.stub_cards, ring.zpk())
        .context("loading bank.stub_cards")?
        .with_state_file(&stub_state)
        .with_context(|| format!("opening the stub issuer's state {}", stub_state.display()))?;
    Ok(Bank::Stub(Box::new(issuer)))
}

impl App {
    /// Connects and migrates the database, loads the keys and binds the
    /// listeners (port 0 picks a free port: see [`App::local_addr`] and
    /// [`App::demo_addr`]). With the demo off, its merchant's key is revoked.
    ///
    /// # Errors
    /// A demo listener that is not loopback without `demo.allow_remote`
    /// (before anything is opened), the database, the keys, a port taken.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.demo.validate()?;
        let store = open_store(&settings).await?;
        let ring = KeyRing::load(&settings.crypto)?;
        // Never a key, at any level: its check value identifies it.
        for (key, kcv) in ring.check_values() {
            tracing::info!(key = %key, kcv = %kcv, "key check value");
        }
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", settings.http.listen))?;
        let vault = Arc::new(Vault::new(&ring));
        let issuer = build_bank(&settings, &store, &ring)?;
        let link = issuer.link().cloned();
        let matcher = Arc::new(
            BankMatcher::new(
                store.clone(),
                vault.clone(),
                ring.zpk(),
                issuer,
                MatcherConfig::from_settings(&settings.bank),
            )
            .with_limits(settings.limits.velocity()),
        );
        let metrics = Arc::new(Metrics::default());
        let limits = Arc::new(api::limits::Limits::new(
            &settings,
            store.clone(),
            metrics.clone(),
        ));
        let state = AppState {
            settings: Arc::new(settings),
            store,
            vault,
            metrics,
            limits,
            refunder: matcher.clone(),
            merchant_cache: Arc::new(MerchantCache::new(api::auth::KEY_CACHE_TTL)),
            readiness: Arc::new(Readiness::default()),
            link,
            shutdown: CancellationToken::new(),
        };
        let demo = demo_parts(&state).await?;
        Ok(Self {
            listener,
            state,
            matcher,
            demo,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the demo page listens, when `demo.enabled`.
    pub fn demo_addr(&self) -> Option<SocketAddr> {
        self.demo.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled (SIGTERM), then stops: when
    /// calls run, after their drain (`telephony.drain_secs`, inbound ARI
    /// mode: the HTTP API, the matcher and webhooks serve the calls in
    /// progress until they end), then drains in-flight requests.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Calls only when ARI is configured (a password is set): an API-only
        // daemon never touches an order's call state.
        let calls = if crate::calls::enabled(&self.state.settings) {
            let parts = crate::calls::Parts {
                settings: self.state.settings.clone(),
                store: self.state.store.clone(),
                matcher: self.matcher.clone(),
                readiness: self.state.readiness.clone(),
            };
            Some(crate::calls::start(parts, shutdown.clone())?)
        } else {
            // Said once, at start: a new operator's callback orders would
            // otherwise wait in silence until they expire.
            tracing::warn!(
                "ARI is not configured (ari.password is empty): calls are off; callback orders \
                 wait as pending until they expire and inbound or transfer calls are not \
                 taken; set ari.password (with ari.url and ari.username) to place calls"
            );
            None
        };
        // What everything but the calls stops on: the shutdown request, or
        // the end of the calls' drain after it.
        let (calls, shutdown) = match calls {
            Some(c) => (Some(c.task), c.stop),
            None => (None, shutdown),
        };
        self.state.shutdown = shutdown.clone();
        let sweeper = tokio::spawn(sweep(self.state.clone(), shutdown.clone()));
        // Orders left at the bank (by a previous run of this node, or by a
        // node that stopped and never came back) are settled by query, never
        // by a second authorization: at start, then every RECOVER_EVERY.
        let recovery = tokio::spawn(recover(self.matcher.clone(), shutdown.clone()));
        let reversals = self.start_reversals(&shutdown);
        let notifier = if self.state.settings.webhooks.enabled {
            let n = Notifier::new(
                self.state.store.clone(),
                self.state.vault.clone(),
                &self.state.settings.webhooks,
                Arc::new(SystemClock),
            )?
            .with_metrics(self.state.metrics.clone());
            Some(tokio::spawn(Arc::new(n).run(shutdown.clone())))
        } else {
            None
        };
        tracing::info!(listen = %self.local_addr(), database = ?self.state.store.backend(), "voicepay serving");
        let router = api::router(self.state.clone());
        let demo = self.demo.take().map(|(listener, key)| {
            let app = crate::demo::router(&self.state, key, router.clone());
            serve_demo(listener, app, &self.state, shutdown.clone())
        });
        let stop = shutdown.clone();
        let served = api::serve::serve(
            self.listener,
            router,
            &self.state.settings.limits,
            self.state.metrics.clone(),
            stop,
        )
        .await
        .context("http server");
        shutdown.cancel();
        if let Some(demo) = demo {
            // Ends with the shutdown token, like the API's server.
            let _ = demo.await;
        }
        served?;
        let _ = sweeper.await;
        // Every worker that holds the issuer ends before `run` returns, so a
        // restarted daemon in the same process can take its state file over.
        let _ = recovery.await;
        stop_bank(&self.matcher, reversals).await;
        if let Some(notifier) = notifier {
            let _ = notifier.await;
        }
        if let Some(calls) = calls {
            let _ = calls.await;
        }
        self.state.store.close().await;
        tracing::info!("voicepay stopped");
        Ok(())
    }
}

impl App {
    /// ISO 8583: every node sends the store-and-forward reversals, until
    /// `shutdown`. `None` with the stub issuer.
    fn start_reversals(&self, shutdown: &CancellationToken) -> Option<JoinHandle<()>> {
        let worker = self.matcher.issuer().reversal_worker(
            &self.state.settings.bank.iso8583,
            self.state.store.clone(),
            self.state.vault.clone(),
            format!("node_{}", crate::crypto::random_hex(6)),
        )?;
        Some(tokio::spawn(worker.run(REVERSALS_EVERY, shutdown.clone())))
    }
}

/// Waits for the reversal worker, then closes the acquirer link.
async fn stop_bank(matcher: &DaemonMatcher, reversals: Option<JoinHandle<()>>) {
    if let Some(reversals) = reversals {
        let _ = reversals.await;
    }
    if let Some(link) = matcher.issuer().link() {
        link.shutdown().await;
    }
}

/// Settles orders left at the bank by query (never by a second
/// authorization): at start, then every [`RECOVER_EVERY`], until `stop`.
async fn recover(matcher: Arc<DaemonMatcher>, stop: CancellationToken) {
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = matcher.recover() => r,
        };
        if r.settled + r.unresolved > 0 {
            tracing::info!(
                settled = r.settled,
                unresolved = r.unresolved,
                "authorizations recovered"
            );
        }
        // Refunds a crash (or an issuer that could not be asked) left open.
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = matcher.recover_refunds() => r,
        };
        if r.settled + r.unresolved > 0 {
            tracing::info!(
                settled = r.settled,
                unresolved = r.unresolved,
                "refunds recovered"
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RECOVER_EVERY) => {}
        }
    }
}

/// Serves the demo page on its own listener until `shutdown`, with the
/// API's connection limits (`[limits]`); a failure is logged (the merchant
/// API goes on).
fn serve_demo(
    listener: TcpListener,
    app: axum::Router,
    state: &AppState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let limits = state.settings.limits.clone();
    let metrics = state.metrics.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(url = %format!("http://{addr}/demo"), "demo checkout page on");
    }
    tokio::spawn(async move {
        let served = api::serve::serve(listener, app, &limits, metrics, shutdown).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "demo page server failed");
        }
    })
}

/// With the demo on: its listener (bound now, so a taken port fails the
/// start) and its merchant's key. With it off: the demo merchant's key is
/// revoked, so the merchant API no longer takes it.
async fn demo_parts(
    state: &AppState,
) -> anyhow::Result<Option<(TcpListener, zeroize::Zeroizing<String>)>> {
    let settings = &state.settings.demo;
    if !settings.enabled {
        if crate::demo::revoke_merchant(&state.store)
            .await
            .context("revoking the demo merchant's key")?
        {
            tracing::info!("demo off: the demo merchant's API key is revoked");
        }
        return Ok(None);
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding demo.listen {}", settings.listen))?;
    let key = crate::demo::ensure_merchant(&state.store, &state.vault)
        .await
        .context("creating the demo merchant")?;
    Ok(Some((listener, key)))
}

/// Connects to `database.url` and applies the migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    crate::store::create_sqlite_file_private(&settings.database.url)
        .context("creating the SQLite database file (owner only)")?;
    let store = Store::connect(
        &settings.database.url,
        settings.database.max_connections,
        crate::views::webhook_body,
    )
    .await
    .context("connecting to database.url")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// Expires orders past their window and forgets old idempotency keys.
async fn sweep(state: AppState, shutdown: CancellationToken) {
    let every = Duration::from_secs(state.settings.orders.sweep_interval_secs);
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = expire_due(&state.store).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        if last_purge.elapsed() > Duration::from_secs(600) {
            let ttl = state.settings.orders.idempotency_ttl_secs as i64 * 1000;
            match state.store.purge_idempotency_keys(now_ms() - ttl).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "idempotency keys purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
            last_purge = std::time::Instant::now();
        }
    }
}

/// Moves every order past its `expires_at` (and not yet at the bank) to
/// `expired`. Returns how many it moved.
pub async fn expire_due(store: &Store) -> anyhow::Result<usize> {
    let mut moved = 0;
    for (id, from) in store.due_for_expiry(now_ms(), 500).await? {
        let t = Transition {
            from,
            to: OrderStatus::Expired,
            result: Some(ResultCode::OrderExpired),
            detail: None,
        };
        if store.transition(&id, t, now_ms()).await? {
            tracing::info!(order = %id, "order expired");
            moved += 1;
        }
    }
    Ok(moved)
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}
