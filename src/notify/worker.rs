//! The delivery worker: leases due outbox rows, sends each in its own task,
//! records the outcome.
//!
//! Fairness: each merchant has a semaphore of `max_in_flight_per_merchant`
//! permits on this node. A merchant whose permits are all taken is left out
//! of the next claim, and a claim takes at most that many rows of any one
//! merchant, so a slow or dead receiver holds its own permits and nothing
//! else; every request has a timeout. The lease is renewed right before
//! the send and the whole delivery is bounded well inside it, so a row is
//! not sent by two nodes at once (as long as the nodes' clocks agree within
//! a few seconds), and a crashed node's rows come back when their lease ends.

use super::target::{BlockedAddress, GuardedResolver, SystemLookup, Target, TargetPolicy};
use super::{signature_header_multi, Schedule};
use crate::clock::Clock;
use crate::config::WebhookSettings;
use crate::crypto::Vault;
use crate::domain::DeliveryErrorClass;
use crate::store::{Delivery, OutboxRow, Store};
use crate::telemetry::Metrics;
use anyhow::Context;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Rows taken per claim.
const CLAIM_BATCH: i64 = 100;

/// Sends webhooks for one node.
pub struct Notifier {
    store: Store,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    /// For every target but the listed ones: names resolve through
    /// [`GuardedResolver`], so only checked addresses are connected to.
    guarded: reqwest::Client,
    /// For `webhooks.allowed_private_targets` only: no address check.
    listed: reqwest::Client,
    policy: TargetPolicy,
    schedule: Schedule,
    settings: WebhookSettings,
    node: String,
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Option<Arc<Metrics>>,
}

impl Notifier {
    /// A worker sending with the system resolver.
    ///
    /// # Errors
    /// When an HTTP client cannot be built (TLS set-up).
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        settings: &WebhookSettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            vault,
            clock,
            guarded: client(settings, Some(Arc::new(SystemLookup)))?,
            listed: client(settings, None)?,
            policy: TargetPolicy::new(settings),
            schedule: Schedule::from_settings(settings),
            settings: settings.clone(),
            node: format!("node_{}", crate::crypto::random_hex(6)),
            gates: Mutex::new(HashMap::new()),
            metrics: None,
        })
    }

    /// Resolves names with `lookup` instead of the system resolver (tests:
    /// a name that resolves to loopback); the answers are checked all the
    /// same ([`GuardedResolver`]).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn with_lookup(mut self, lookup: Arc<dyn reqwest::dns::Resolve>) -> anyhow::Result<Self> {
        self.guarded = client(&self.settings, Some(lookup))?;
        Ok(self)
    }

    /// Counts outcomes in `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Polls until `shutdown`, then waits for the deliveries in flight
    /// (each bounded by the request timeout).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let every = Duration::from_millis(self.settings.poll_interval_ms);
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            match self.dispatch(&mut running).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(started = n, "webhook deliveries started"),
                Err(e) => tracing::warn!(error = %e, "webhook claim failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// One pass, for tests: sends every event due now (as far as the
    /// per-merchant limit allows) and waits for the outcomes. Returns how
    /// many deliveries were attempted.
    pub async fn run_once(self: &Arc<Self>) -> anyhow::Result<usize> {
        let mut running = JoinSet::new();
        let n = self.dispatch(&mut running).await?;
        while running.join_next().await.is_some() {}
        Ok(n)
    }

    /// How long a lease lasts: the whole delivery (bounded by
    /// [`Self::delivery_bound`]) fits in it with room to record the outcome.
    fn lease_ms(&self) -> i64 {
        (self.settings.timeout_secs as i64 + 30) * 1000
    }

    /// The most one delivery (secret lookup, connect, request, response)
    /// may take: well inside a lease renewed right before it.
    fn delivery_bound(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs + 15)
    }

    /// Claims due rows and starts a task for each one this node may send now.
    async fn dispatch(self: &Arc<Self>, running: &mut JoinSet<()>) -> anyhow::Result<usize> {
        let now = self.clock.now_ms();
        let lease_until = now + self.lease_ms();
        let rows = self
            .store
            .claim_webhooks(
                &self.node,
                now,
                lease_until,
                self.settings.max_in_flight_per_merchant as i64,
                CLAIM_BATCH,
                &self.busy_merchants(),
            )
            .await?;
        let mut started = 0;
        for row in rows {
            match self.gate(&row.merchant_id).try_acquire_owned() {
                Ok(permit) => {
                    started += 1;
                    let me = self.clone();
                    running.spawn(async move { me.deliver(row, permit).await });
                }
                Err(_) => self.store.release_webhook(&row.id, &self.node).await?,
            }
        }
        Ok(started)
    }

    fn gate(&self, merchant_id: &str) -> Arc<Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(merchant_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_in_flight_per_merchant)))
            .clone()
    }

    /// Merchants with every permit in use on this node.
    fn busy_merchants(&self) -> Vec<String> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .iter()
            .filter(|(_, g)| g.available_permits() == 0)
            .map(|(m, _)| m.clone())
            .collect()
    }

    async fn deliver(&self, row: OutboxRow, _permit: OwnedSemaphorePermit) {
        let attempt = row.attempts + 1;
        // The lease is renewed right before the send and the send is bounded
        // well inside it, so no other node can claim the row while this one
        // is sending it. A row whose lease ran out meanwhile (another node
        // may hold it now) is not sent.
        let now = self.clock.now_ms();
        match self
            .store
            .renew_webhook_lease(&row.id, &self.node, now, now + self.lease_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event = %row.id, "webhook lease lost before sending; not sent");
                return;
            }
            Err(e) => {
                tracing::warn!(event = %row.id, error = %e, "renewing a webhook lease failed");
                return;
            }
        }
        let sent = match tokio::time::timeout(self.delivery_bound(), self.send(&row)).await {
            Ok(sent) => sent,
            Err(_) => Err(Failure::new(
                DeliveryErrorClass::Timeout,
                format!("timed out after {} s", self.delivery_bound().as_secs()),
            )),
        };
        let outcome = self.outcome(&row, sent);
        let label = match &outcome {
            Delivery::Delivered => "delivered",
            Delivery::Retry { .. } => "retry",
            Delivery::Failed { .. } => "failed",
        };
        if let Some(m) = &self.metrics {
            m.webhook_deliveries
                .get_or_create(&crate::telemetry::OutcomeLabels {
                    outcome: label.into(),
                })
                .inc();
        }
        match &outcome {
            Delivery::Retry { error, class, .. } | Delivery::Failed { error, class } => {
                tracing::info!(
                    event = %row.id, order = %row.order_id, attempt, outcome = label,
                    class = class.as_str(), error = %error, "webhook not delivered"
                )
            }
            Delivery::Delivered => tracing::info!(
                event = %row.id, order = %row.order_id, attempt, "webhook delivered"
            ),
        }
        let now = self.clock.now_ms();
        match self
            .store
            .finish_webhook(&row.id, &self.node, &outcome, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(event = %row.id, "webhook lease lost before recording"),
            Err(e) => {
                tracing::warn!(event = %row.id, error = %e, "recording a webhook attempt failed")
            }
        }
    }

    /// What to record for an attempt that ended with `sent`: delivered, a
    /// retry on the schedule, or failed once the window is over.
    fn outcome(&self, row: &OutboxRow, sent: Result<(), Failure>) -> Delivery {
        let Err(Failure {
            class,
            detail: error,
        }) = sent
        else {
            return Delivery::Delivered;
        };
        let now = self.clock.now_ms();
        let unit: f64 = rand::random();
        // The backoff counts the attempts since the schedule started
        // (creation or the last redeliver).
        match self
            .schedule
            .next_attempt_at(row.schedule_attempt(), now, row.schedule_start, unit)
        {
            Some(next_attempt_at) => Delivery::Retry {
                next_attempt_at,
                error,
                class,
            },
            None => Delivery::Failed { error, class },
        }
    }

    /// One signed POST to a checked target. `Err` carries the class a
    /// merchant sees and a reason for the operator: never the secret, the
    /// signature or the body.
    async fn send(&self, row: &OutboxRow) -> Result<(), Failure> {
        let internal = |detail: String| Failure::new(DeliveryErrorClass::Internal, detail);
        let blocked = |detail: String| Failure::new(DeliveryErrorClass::BlockedAddress, detail);
        let url = url::Url::parse(&row.notify_url)
            .map_err(|_| blocked("notify_url is not a URL".into()))?;
        let http = match self.policy.check(&url) {
            Ok(Target::Listed) => &self.listed,
            Ok(Target::Public(_) | Target::Name(_)) => &self.guarded,
            Err(refused) => return Err(blocked(refusal(&refused))),
        };
        let secrets = self.secrets(&row.merchant_id).await.map_err(internal)?;
        let t = self.clock.now_ms().div_euclid(1000);
        let keys: Vec<&[u8]> = secrets.iter().map(|s| s.as_slice()).collect();
        let signature = signature_header_multi(&keys, t, row.payload.as_bytes());
        let resp = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Voicepay-Signature", signature)
            .header("Voicepay-Event-Id", &row.id)
            .header("Voicepay-Event-Type", &row.event_type)
            .body(row.payload.clone())
            .send()
            .await
            .map_err(|e| self.describe(&e))?;
        let status = resp.status();
        let failed = |detail| Failure::new(DeliveryErrorClass::HttpStatus, detail);
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(failed(format!(
                "HTTP {} (redirects are not followed)",
                status.as_u16()
            )))
        } else {
            Err(failed(format!("HTTP {}", status.as_u16())))
        }
    }

    /// The merchant's webhook secrets, opened: the current one, then the one
    /// a rotation replaced while its overlap lasts (by this worker's clock).
    async fn secrets(&self, merchant_id: &str) -> Result<Vec<Zeroizing<Vec<u8>>>, String> {
        let sealed = self
            .store
            .merchant_webhook_secrets(merchant_id)
            .await
            .map_err(|_| "database error reading the merchant".to_owned())?
            .ok_or_else(|| "merchant not found".to_owned())?;
        let open = |s: &str| {
            self.vault
                .open("webhook_secret", s)
                .map_err(|_| "the merchant's webhook secret cannot be opened".to_owned())
        };
        let mut out = vec![open(&sealed.current_enc)?];
        if let Some((old, until)) = &sealed.previous {
            if *until > self.clock.now_ms() {
                out.push(open(old)?);
            }
        }
        Ok(out)
    }

    fn describe(&self, e: &reqwest::Error) -> Failure {
        let mut chain = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source());
        if let Some(b) = chain.find_map(|e| e.downcast_ref::<BlockedAddress>()) {
            return Failure::new(DeliveryErrorClass::BlockedAddress, b.to_string());
        }
        if e.is_timeout() {
            return Failure::new(
                DeliveryErrorClass::Timeout,
                format!("timed out after {} s", self.settings.timeout_secs),
            );
        }
        if let Some(tls) = tls_error(e) {
            return Failure::new(DeliveryErrorClass::TlsError, format!("TLS: {tls}"));
        }
        let detail = if e.is_connect() {
            "connection failed (refused, unreachable or no address)"
        } else {
            "request failed before a response"
        };
        Failure::new(DeliveryErrorClass::ConnectionRefused, detail.into())
    }
}

/// The operator's reason for a refused target.
fn refusal(r: &super::Refused) -> String {
    match r {
        super::Refused::Address { range } => format!("blocked: a {range} address"),
        other => format!("blocked: {other}"),
    }
}

/// The rustls error somewhere in `e`'s causes. An `io::Error` hides the
/// error it wraps from `source()` (and the connector wraps it in another
/// `io::Error`), hence the look inside each one, down to the bottom.
fn tls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let chain = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source());
    chain.into_iter().find_map(|cause| {
        let mut inner: &(dyn std::error::Error + 'static) = cause;
        loop {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => inner = wrapped,
                None => return None,
            }
        }
    })
}

/// Why one attempt failed: the class a merchant sees, the detail an
/// operator sees.
struct Failure {
    class: DeliveryErrorClass,
    detail: String,
}

impl Failure {
    fn new(class: DeliveryErrorClass, detail: String) -> Self {
        Self { class, detail }
    }
}

/// The webhook HTTP client: no redirects (a 3xx is an answer like any
/// other non-2xx: a failure; following it would send a signed event where
/// the merchant never set, unchecked), no proxy (it would resolve and
/// connect unchecked), every request bounded. With `lookup`, names resolve
/// through a [`GuardedResolver`] over it.
fn client(
    settings: &WebhookSettings,
    lookup: Option<Arc<dyn reqwest::dns::Resolve>>,
) -> anyhow::Result<reqwest::Client> {
    let timeout = Duration::from_secs(settings.timeout_secs);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("voicepay-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(lookup) = lookup {
        builder = builder.dns_resolver(Arc::new(GuardedResolver::new(lookup)));
    }
    builder.build().context("building the webhook HTTP client")
}
