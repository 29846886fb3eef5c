//! [`Iso8583Issuer`]: the [`IssuerLink`] over the ISO 8583 acquirer link.
//!
//! One authorization is one 0200 purchase (a refund one 0200 with F3
//! `200000` naming its purchase in F90), carried by an [`Exchange`] (the
//! `link::Link` transport in production). Exactly-once rests on the
//! request journal (`acquirer_requests`, [`Store::arm_request`]):
//!
//! 1. a key already journalled is never sent again: its recorded answer is
//!    final, and a request without one answers `Timeout` (being reversed);
//! 2. the request is *armed* (journalled `sent`) before it is written;
//! 3. the 0210 moves it `sent` → `answered` (conditional: a late answer to a
//!    request already being reversed changes nothing and answers
//!    `Timeout`);
//! 4. no answer (`LinkError::Timeout`, `Dropped`, a malformed answer) →
//!    [`Store::reverse_request`]: `reversing` plus a store-and-forward
//!    reversal advice (0420/0421, sent by
//!    [`super::ReversalWorker`]) in one transaction, and `Timeout`;
//!    never sent (`LinkError::NotSent`) → the armed row is dropped and the
//!    answer is `Unavailable` (nothing was processed).
//!
//! ISO 8583 has no query: [`IssuerLink::query`] answers from the journal,
//! and [`IssuerLink::unknown_outcome`] is [`UnknownOutcome::Reverse`].
//!
//! Field layout (README "ISO 8583 wire format", ISO 8583:1987): F2, F3,
//! F4 (fen), F7 (UTC `MMDDhhmmss`), F11 (a STAN from
//! [`Store::next_stan`] for the Asia/Shanghai day), F12/F13 (Asia/Shanghai),
//! F22, F25 `08`, F32, F41, F42 (when the merchant has an acceptor id),
//! F49 `156`; debit: F52 (ISO 9564 format 0 under the link's TDES zone PIN
//! key, translated from voicepay's format 4 block at send time by
//! [`translate_format4_to_format0`]) and F53 [`SECURITY_CONTROL_FORMAT0`];
//! credit: F14; F61 the cardholder's ID (and CVN2 for credit). Nothing of
//! F2 (unmasked), F14, F52, F53's key or F61 is logged.

use super::exchange::Exchange;
use super::fields::{CardholderAuth, EntryMode, F39Outcome, ProcessingCode, ResponseCode};
use super::link::LinkError;
use super::{Message, Mti};
use crate::bank::{
    shanghai_day, AuthRequest, AuthResponse, Decision, IssuerError, IssuerLink, RefundRequest,
    Secret, UnknownOutcome,
};
use crate::clock::{SharedClock, SystemClock};
use crate::crypto::{translate_format4_to_format0, ZonePinKey, Zpk};
use crate::domain::{Amount, CardNumber, OriginalRequest, ResultCode, Stan};
use crate::store::{AcquirerRequest, NewRequest, RequestStatus, Store};
use std::sync::Arc;
use time::OffsetDateTime;

/// F53 with a format 0 F52: `1600000000000000` (UnionPay's convention: `1`
/// ANSI X9.8 / ISO 9564 format 0 with the PAN, `6` double-length TDES,
/// zeros).
pub const SECURITY_CONTROL_FORMAT0: &str = "1600000000000000";

/// Who voicepay is on the link: F32 (acquiring institution, 1-11 digits)
/// and F41 (terminal id, 8 characters), from `[bank.iso8583]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// F32.
    pub acquirer_id: String,
    /// F41.
    pub terminal_id: String,
}

/// The [`IssuerLink`] over an ISO 8583 [`Exchange`], with the request
/// journal in the [`Store`]. Holds both PIN keys: voicepay's own AES zone
/// PIN key (`crypto.zone_pin_key`, under which the matcher forms format 4
/// blocks) and the link's TDES [`Zpk`] (`bank.iso8583.zone_pin_key`).
pub struct Iso8583Issuer<E> {
    link: E,
    store: Store,
    pin_from: ZonePinKey,
    zpk: Zpk,
    terminal: Terminal,
    clock: SharedClock,
}

impl<E> std::fmt::Debug for Iso8583Issuer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iso8583Issuer")
            .field("zpk", &self.zpk)
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

/// What one journalled request's answer means, from the one F39 table
/// ([`ResponseCode::outcome`]): `00` approved (F38 the approval code), `55`
/// a wrong secret (the tries left are voicepay's own count), a mapped
/// decline, or [`ResultCode::IssuerDeclined`] for a code the table does
/// not know.
pub fn decision(f39: ResponseCode, approval_code: Option<&str>) -> Decision {
    match f39.outcome() {
        F39Outcome::Approved => Decision::Approved {
            auth_code: approval_code.unwrap_or_default().to_owned(),
        },
        F39Outcome::WrongSecret => Decision::WrongSecret { tries_left: None },
        F39Outcome::Declined(code) => Decision::Declined(code),
        F39Outcome::UnknownDecline(_) => Decision::Declined(ResultCode::IssuerDeclined),
    }
}

/// The merchant's card acceptor id (F42), which every 0200 carries; a
/// merchant without one cannot be paid over the link (nothing is sent, the
/// operator is told how to set it).
fn acceptor_id<'a>(id: Option<&'a str>, order_id: &str) -> Result<&'a str, IssuerError> {
    id.ok_or_else(|| {
        tracing::error!(
            order = %order_id,
            "the merchant has no card acceptor id (F42); nothing sent: set one with \
             `voicepay merchant set-acceptor-id`"
        );
        IssuerError::Unavailable
    })
}

/// A store failure before anything was sent: nothing was processed.
fn unavailable(e: impl std::fmt::Display) -> IssuerError {
    tracing::error!(error = %e, "acquirer link: store failure before sending");
    IssuerError::Unavailable
}

impl<E: Exchange> Iso8583Issuer<E> {
    /// An issuer sending over `link`, journalling in `store`, translating
    /// PIN blocks from `pin_from` (format 4, AES) to `zpk` (format 0,
    /// TDES), as `terminal`; on the wall clock.
    pub fn new(link: E, store: Store, pin_from: ZonePinKey, zpk: Zpk, terminal: Terminal) -> Self {
        Self {
            link,
            store,
            pin_from,
            zpk,
            terminal,
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock (F7, F12/F13 and the STAN's day).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The link the requests go over.
    pub fn link(&self) -> &E {
        &self.link
    }

    /// The fields every 0200 shares: F2, F3, F4, F7, F11, F12/F13, F25,
    /// F32, F41, F42, F49.
    fn financial(
        &self,
        card: &CardNumber,
        code: ProcessingCode,
        amount: Amount,
        acceptor_id: &str,
        stan: Stan,
        now: OffsetDateTime,
    ) -> Result<Message, super::CodecError> {
        let mut m = Message::new(Mti::FINANCIAL_REQUEST);
        m.set_pan(card)?
            .set_processing_code(code)?
            .set_amount(amount)?
            .set_transmission_time(now)?
            .set_stan(stan)?
            .set_local_time(now)?
            .set_telephone_order()?
            .set_acquirer_id(&self.terminal.acquirer_id)?
            .set_terminal_id(&self.terminal.terminal_id)?
            .set_currency_cny()?
            .set_acceptor_id(acceptor_id)?;
        Ok(m)
    }

    /// The 0200 purchase for `req`. `None` (logged, nothing sent) when it
    /// cannot be built: a PIN block that does not decipher under the zone
    /// PIN key for this card, or a field out of range.
    fn purchase(
        &self,
        req: &AuthRequest,
        acceptor_id: &str,
        stan: Stan,
        now: OffsetDateTime,
    ) -> Option<Message> {
        let built = (|| -> Result<Message, String> {
            let mut m = self
                .financial(
                    &req.card,
                    ProcessingCode::Purchase,
                    req.amount,
                    acceptor_id,
                    stan,
                    now,
                )
                .map_err(|e| e.to_string())?;
            let cvn2 = match &req.secret {
                Secret::PinBlock(block4) => {
                    let block0 = translate_format4_to_format0(
                        block4,
                        &self.pin_from,
                        req.card.expose(),
                        &self.zpk,
                    )
                    .map_err(|e| format!("PIN translation: {e}"))?;
                    m.set_pin_block(block0.as_bytes())
                        .and_then(|m| m.set_security_control(SECURITY_CONTROL_FORMAT0))
                        .and_then(|m| m.set_entry_mode(EntryMode::KeyedWithPin))
                        .map_err(|e| e.to_string())?;
                    None
                }
                Secret::PinBlock0(block0) => {
                    m.set_pin_block(block0.as_bytes())
                        .and_then(|m| m.set_security_control(SECURITY_CONTROL_FORMAT0))
                        .and_then(|m| m.set_entry_mode(EntryMode::KeyedWithPin))
                        .map_err(|e| e.to_string())?;
                    None
                }
                Secret::Card { expiry, cvn2 } => {
                    m.set_expiry(expiry)
                        .and_then(|m| m.set_entry_mode(EntryMode::KeyedNoPin))
                        .map_err(|e| e.to_string())?;
                    Some(cvn2)
                }
            };
            let auth = CardholderAuth {
                id_number: &req.id_number,
                cvn2,
            };
            m.set_cardholder_auth(&auth).map_err(|e| e.to_string())?;
            Ok(m)
        })();
        built
            .map_err(|why| {
                tracing::error!(order = %req.order_id, card = %req.card.masked(), why, "cannot build the 0200; nothing sent");
            })
            .ok()
    }

    /// The request journalled under `key`, as an answer: `None` when the
    /// key was never armed.
    async fn journalled(&self, key: &str) -> Result<Option<AcquirerRequest>, IssuerError> {
        self.store.acquirer_request(key).await.map_err(unavailable)
    }

    /// The final answer of a journalled request: its recorded answer, or
    /// `Timeout` while it has none (sent and unanswered, or reversing).
    fn final_answer(row: &AcquirerRequest) -> Result<AuthResponse, IssuerError> {
        match (
            row.status,
            row.resp_code.as_deref().and_then(ResponseCode::parse),
        ) {
            (RequestStatus::Answered, Some(f39)) => Ok(AuthResponse::new(decision(
                f39,
                row.approval_code.as_deref(),
            ))),
            _ => Err(IssuerError::Timeout),
        }
    }

    /// Arms `new`, sends `msg`, and records what came of it (see the
    /// module docs).
    async fn send(&self, new: NewRequest<'_>, msg: Message) -> Result<AuthResponse, IssuerError> {
        let key = new.key;
        let armed = self
            .store
            .arm_request(&new, self.clock.now_ms())
            .await
            .map_err(unavailable)?;
        if !armed {
            // Another call armed this key first: its answer is the answer.
            return match self.journalled(key).await? {
                Some(row) => Self::final_answer(&row),
                None => Err(IssuerError::Unavailable),
            };
        }
        let pan = msg.pan_masked().unwrap_or_default();
        let stan = new.original.stan;
        tracing::info!(order = %new.order_id, card = %pan, mti = %msg.mti(), %stan, "sending to the acquirer");
        match self.link.exchange(msg).await {
            Ok(answer) => self.answered(&new, answer).await,
            Err(LinkError::NotSent(why)) => {
                tracing::warn!(order = %new.order_id, %stan, why, "acquirer link: not sent");
                if let Err(e) = self.store.unarm_request(key).await {
                    // Left `sent`: a query answers Timeout, so it is reversed.
                    tracing::error!(order = %new.order_id, error = %e, "cannot drop the unsent request");
                }
                Err(IssuerError::Unavailable)
            }
            Err(e) => {
                tracing::warn!(order = %new.order_id, %stan, error = %e, "acquirer link: outcome unknown; reversing");
                self.reverse_now(key).await;
                Err(IssuerError::Timeout)
            }
        }
    }

    /// Records the answer to the armed request `new`.
    async fn answered(
        &self,
        new: &NewRequest<'_>,
        answer: Message,
    ) -> Result<AuthResponse, IssuerError> {
        let stan = new.original.stan;
        let f39 = match answer.response_code() {
            Some(f39) if answer.mti() == Mti::FINANCIAL_RESPONSE => f39,
            _ => {
                tracing::warn!(order = %new.order_id, %stan, mti = %answer.mti(), "acquirer link: malformed answer (no F39 or not a 0210); reversing");
                self.reverse_now(new.key).await;
                return Err(IssuerError::Timeout);
            }
        };
        let recorded = self
            .store
            .answer_request(
                new.key,
                f39.as_str(),
                answer.approval_code(),
                answer.rrn(),
                self.clock.now_ms(),
            )
            .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(order = %new.order_id, %stan, f39 = f39.as_str(), "acquirer link: answer after the request was reversed; ignored");
                return Err(IssuerError::Timeout);
            }
            Err(e) => {
                tracing::error!(order = %new.order_id, error = %e, "cannot record the acquirer's answer; reversing");
                self.reverse_now(new.key).await;
                return Err(IssuerError::Timeout);
            }
        }
        tracing::info!(order = %new.order_id, %stan, f39 = f39.as_str(), "acquirer answered");
        if let F39Outcome::UnknownDecline(raw) = f39.outcome() {
            let detail = format!(
                "issuer answered F39 {} (not in the table): issuer_declined",
                raw.as_str()
            );
            let logged = self
                .store
                .append_event(new.order_id, "bank", &detail, self.clock.now_ms())
                .await;
            if let Err(e) = logged {
                tracing::error!(order = %new.order_id, error = %e, "cannot log the unknown F39");
            }
        }
        Ok(AuthResponse::new(decision(f39, answer.approval_code())))
    }

    /// Records the reversal of `key` (store-and-forward); a failure is
    /// logged (the row stays `sent`, and recovery reverses it).
    async fn reverse_now(&self, key: &str) {
        if let Err(e) = self.store.reverse_request(key, self.clock.now_ms()).await {
            tracing::error!(key, error = %e, "cannot record the reversal; recovery will");
        }
    }

    /// F90 of a request: the original as the journal armed it.
    fn original(&self, stan: Stan, msg: &Message) -> OriginalRequest {
        OriginalRequest {
            mti: Mti::FINANCIAL_REQUEST.as_str().to_owned(),
            stan,
            transmitted_at: msg.transmission_time().unwrap_or_default().to_owned(),
            acquirer_id: self.terminal.acquirer_id.clone(),
        }
    }

    async fn next_stan(&self, now: OffsetDateTime) -> Result<Stan, IssuerError> {
        self.store
            .next_stan(shanghai_day(now))
            .await
            .map_err(unavailable)
    }
}

impl<E: Exchange> IssuerLink for Iso8583Issuer<E> {
    async fn authorize(&self, req: AuthRequest) -> Result<AuthResponse, IssuerError> {
        if let Some(row) = self.journalled(&req.idempotency_key).await? {
            return Self::final_answer(&row);
        }
        let acceptor_id = acceptor_id(req.acceptor_id.as_deref(), &req.order_id)?;
        let now = self.clock.now();
        let stan = self.next_stan(now).await?;
        let Some(msg) = self.purchase(&req, acceptor_id, stan, now) else {
            return Err(IssuerError::Unavailable);
        };
        let new = NewRequest {
            key: &req.idempotency_key,
            order_id: &req.order_id,
            refund_id: None,
            original: self.original(stan, &msg),
            processing_code: ProcessingCode::Purchase.as_str(),
            amount: req.amount.fen(),
        };
        self.send(new, msg).await
    }

    async fn query(&self, idempotency_key: &str) -> Result<Option<AuthResponse>, IssuerError> {
        match self.journalled(idempotency_key).await? {
            None => Ok(None),
            Some(row) => Self::final_answer(&row).map(Some),
        }
    }

    async fn reverse(&self, idempotency_key: &str) -> Result<bool, IssuerError> {
        self.store
            .reverse_request(idempotency_key, self.clock.now_ms())
            .await
            .map_err(|e| {
                tracing::error!(key = idempotency_key, error = %e, "cannot record the reversal");
                IssuerError::Unavailable
            })
    }

    async fn refund(&self, req: RefundRequest) -> Result<AuthResponse, IssuerError> {
        if let Some(row) = self.journalled(&req.refund_id).await? {
            return Self::final_answer(&row);
        }
        let purchase = self.journalled(&req.purchase_key).await?;
        let Some(purchase) = purchase.filter(|p| {
            p.status == RequestStatus::Answered && p.resp_code.as_deref() == Some("00")
        }) else {
            tracing::error!(order = %req.order_id, refund = %req.refund_id, "the refund names no approved purchase on the acquirer link; nothing sent");
            return Err(IssuerError::Unavailable);
        };
        let acceptor_id = acceptor_id(req.acceptor_id.as_deref(), &req.order_id)?;
        let now = self.clock.now();
        let stan = self.next_stan(now).await?;
        let built = self
            .financial(
                &req.card,
                ProcessingCode::Refund,
                req.amount,
                acceptor_id,
                stan,
                now,
            )
            .and_then(|mut m| {
                m.set_original(&purchase.original)?;
                Ok(m)
            });
        let msg = built.map_err(|e| {
            tracing::error!(order = %req.order_id, error = %e, "cannot build the refund; nothing sent");
            IssuerError::Unavailable
        })?;
        let new = NewRequest {
            key: &req.refund_id,
            order_id: &req.order_id,
            refund_id: Some(&req.refund_id),
            original: self.original(stan, &msg),
            processing_code: ProcessingCode::Refund.as_str(),
            amount: req.amount.fen(),
        };
        // The refund shows its STAN and F7 (as the journal keeps them).
        let (stan, f7) = (new.original.stan, new.original.transmitted_at.clone());
        if let Err(e) = self.store.refund_sent(&req.refund_id, stan, &f7).await {
            tracing::warn!(refund = %req.refund_id, error = %e, "cannot note the refund's STAN");
        }
        self.send(new, msg).await
    }

    fn unknown_outcome(&self) -> UnknownOutcome {
        UnknownOutcome::Reverse
    }
}
