//! [`Bank`]: the issuer link the daemon runs, chosen by `bank.kind`.

use super::iso8583::{Iso8583Issuer, Link, LinkSettings, LinkStatus, ReversalWorker, Terminal};
use super::{
    AuthRequest, AuthResponse, IssuerError, IssuerLink, RefundRequest, StubIssuer, UnknownOutcome,
};
use crate::clock::SharedClock;
use crate::config::Iso8583Settings;
use crate::crypto::{Vault, ZonePinKey, Zpk};
use crate::store::Store;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// The issuer behind the daemon's matcher: the in-process stub
/// (`bank.kind = "stub"`) or the ISO 8583 acquirer link (`"iso8583"`).
pub enum Bank {
    /// The stub issuer (test cards, durable journal file). Both variants
    /// are boxed: each is large (key schedules, card tables).
    Stub(Box<StubIssuer>),
    /// [`Iso8583Issuer`] over a [`Link`] to `bank.iso8583.address`.
    Iso8583(Box<Iso8583Issuer<Link>>),
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bank::Stub(_) => f.write_str("Bank::Stub"),
            Bank::Iso8583(i) => write!(f, "Bank::Iso8583({i:?})"),
        }
    }
}

impl Bank {
    /// The ISO 8583 bank: spawns the [`Link`] to `s.address` (it connects
    /// and signs on in the background, for ever; STANs of its own 0800s
    /// from `store`), with an [`Iso8583Issuer`] over it translating PIN
    /// blocks from voicepay's `pin_from` (`crypto.zone_pin_key`) to the
    /// link's key `bank.iso8583.zone_pin_key`, whose id and check value are
    /// logged (never the key).
    ///
    /// # Errors
    /// A zone PIN key that `crypto::Zpk::from_hex` refuses.
    pub fn iso8583(
        s: &Iso8583Settings,
        store: Store,
        pin_from: ZonePinKey,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let zpk = Zpk::from_hex(&s.zone_pin_key_id, &s.zone_pin_key)
            .context("bank.iso8583.zone_pin_key")?;
        tracing::info!(key = %format!("bank.iso8583:{}", zpk.id()), kcv = %zpk.kcv(), "key check value");
        let stans = Arc::new(super::iso8583::link::StoreStans::new(
            store.clone(),
            clock.clone(),
        ));
        let link = Link::spawn(LinkSettings::from_settings(s), stans);
        tracing::info!(address = %s.address, terminal = %s.terminal_id, acquirer = %s.acquirer_id, "ISO 8583 acquirer link started");
        let issuer = Iso8583Issuer::new(link, store, pin_from, zpk, terminal(s)).with_clock(clock);
        Ok(Bank::Iso8583(Box::new(issuer)))
    }

    /// `stub` or `iso8583`, for `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Bank::Stub(_) => "stub",
            Bank::Iso8583(_) => "iso8583",
        }
    }

    /// The acquirer link, when this bank has one.
    pub fn link(&self) -> Option<&Link> {
        match self {
            Bank::Stub(_) => None,
            Bank::Iso8583(i) => Some(i.link()),
        }
    }

    /// The link's state, when this bank has one (`/readyz`).
    pub fn link_status(&self) -> Option<LinkStatus> {
        self.link().map(Link::status)
    }

    /// The reversal worker for this bank's link (every node runs one),
    /// leasing as `node`, its rounds only while the link is signed on;
    /// `None` for the stub.
    pub fn reversal_worker(
        &self,
        s: &Iso8583Settings,
        store: Store,
        vault: Arc<Vault>,
        node: String,
    ) -> Option<ReversalWorker<Link>> {
        let link = self.link()?.clone();
        let timeout = Duration::from_secs(s.response_timeout_secs);
        let probe = link.clone();
        let signed_on = Arc::new(move || probe.status().is_signed_on());
        Some(
            ReversalWorker::new(link, store, vault, terminal(s), timeout, node)
                .with_ready(signed_on),
        )
    }
}

fn terminal(s: &Iso8583Settings) -> Terminal {
    Terminal {
        acquirer_id: s.acquirer_id.clone(),
        terminal_id: s.terminal_id.clone(),
    }
}

impl IssuerLink for Bank {
    async fn authorize(&self, req: AuthRequest) -> Result<AuthResponse, IssuerError> {
        match self {
            Bank::Stub(s) => s.authorize(req).await,
            Bank::Iso8583(i) => i.authorize(req).await,
        }
    }

    async fn query(&self, key: &str) -> Result<Option<AuthResponse>, IssuerError> {
        match self {
            Bank::Stub(s) => s.query(key).await,
            Bank::Iso8583(i) => i.query(key).await,
        }
    }

    async fn reverse(&self, key: &str) -> Result<bool, IssuerError> {
        match self {
            Bank::Stub(s) => s.reverse(key).await,
            Bank::Iso8583(i) => i.reverse(key).await,
        }
    }

    async fn refund(&self, req: RefundRequest) -> Result<AuthResponse, IssuerError> {
        match self {
            Bank::Stub(s) => s.refund(req).await,
            Bank::Iso8583(i) => i.refund(req).await,
        }
    }

    fn unknown_outcome(&self) -> UnknownOutcome {
        match self {
            Bank::Stub(s) => s.unknown_outcome(),
            Bank::Iso8583(i) => i.unknown_outcome(),
        }
    }
}
