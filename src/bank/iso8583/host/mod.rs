//! voicepay's own ISO 8583 issuer host (`voicepay bank serve`): the server
//! side of the wire format ([`FrameCodec`], [`Message`]) in front of an
//! [`IssuerLink`] — in practice the [`StubIssuer`](crate::bank::StubIssuer)
//! with the test cards, its durable state and
//! [`with_link_zpk`](crate::bank::StubIssuer::with_link_zpk) for F52 — so
//! several voicepay nodes (or any acquirer-side client) can share one issuer
//! over TCP.
//!
//! Layers, as in mini-redis: [`IssuerHost::serve`] accepts connections, one
//! task per connection moves frames, one task per request decides it (a
//! slow card's answer never holds up the connection's other requests), and
//! [`IssuerHost::answer`] maps a request onto the issuer's calls:
//!
//! | request | issuer call | answer |
//! |---|---|---|
//! | 0800 (F70 001, 002, 301) | none | 0810 F39 `00` |
//! | 0200 F3 `000000` | `authorize`, key [`request_key`] of (F32, F7, F11); debit: F52 as [`Secret::PinBlock0`](crate::bank::Secret::PinBlock0); credit: F14 + the CVN2 of F61; F61's ID number; F4 | 0210 F39 from the decision, F38 when approved |
//! | 0200 F3 `200000` | `refund` of the purchase F90 names | 0210 `00`; `25` no such approved purchase; `13` over what is left |
//! | 0420 / 0421 | `reverse` of the request F90 names | 0430 `00`, every time |
//!
//! F39 of a decision: [`ResponseCode::for_result`] (`55` wrong secret, `63`
//! ID mismatch, `91` issuer unavailable, …; an unmapped decline `05`).
//! A duplicate 0200 (same key) is answered with the first answer (the
//! issuer's first answer per key is final) and never processed twice; the
//! answer's F37 is derived from the key, so it is the same too. A request
//! the issuer does not answer (`Err(Timeout)`: the silent test card) gets
//! no answer, as from a real issuer that is down; the acquirer reverses it.
//! A 0200 whose reversal arrived first is never processed (nor answered).
//! A frame that does not decode is logged and dropped; a request missing a
//! mandatory field is answered F39 `30`. The log has the MTI, STAN, masked
//! PAN and F39, never F2 in clear, F14, F52 or F61.
//!
//! Protocol source: ISO 8583:1987 (MTIs, F39 `12`/`13`/`25`/`30`, F90),
//! the README's "ISO 8583 wire format" and "Shared issuer host" sections.

mod request;
#[cfg(test)]
mod tests;

pub use request::request_key;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::{FrameCodec, Message, ResponseCode};
use crate::bank::{AuthRequest, AuthResponse, Decision, IssuerError, IssuerLink, RefundRequest};
use crate::domain::ResultCode;
use request::Request;

/// F39 for a decline the response-code table lacks: `05`, do not honour.
const DO_NOT_HONOUR: &str = "05";
/// F39 when the issuer cannot be reached: `91`, issuer or switch inoperative.
const ISSUER_INOPERATIVE: &str = "91";
/// F39 for a refund whose purchase is unknown, not approved or reversed:
/// `25`, unable to locate record.
const NO_ORIGINAL: &str = "25";
/// F39 for a refund over what is left of its purchase: `13`, invalid amount.
const INVALID_AMOUNT: &str = "13";
/// Answers waiting to be written on one connection.
const WRITE_QUEUE: usize = 64;
/// Requests being decided at once on one connection; beyond it the host
/// stops reading the connection until one is answered (back-pressure on a
/// client that floods or never reads its answers).
const IN_FLIGHT_PER_CONNECTION: usize = 256;

/// The host: an issuer behind the ISO 8583 wire format. Share it in an
/// `Arc`; see the module documentation.
pub struct IssuerHost<I> {
    issuer: I,
    /// Keys of requests reversed before the host saw them (the 0420 came
    /// first, or on another connection): such a 0200 is never processed.
    /// In memory only, for the host's lifetime.
    reversed_unseen: Mutex<HashSet<String>>,
}

impl<I: IssuerLink + 'static> IssuerHost<I> {
    /// A host answering for `issuer`.
    pub fn new(issuer: I) -> Self {
        Self {
            issuer,
            reversed_unseen: Mutex::new(HashSet::new()),
        }
    }

    /// The issuer behind the host.
    pub fn issuer(&self) -> &I {
        &self.issuer
    }

    /// Accepts connections on `listener` until `shutdown` is cancelled; each
    /// connection ends then too (answers being decided are dropped: the
    /// issuer has recorded them, so a repeat gets them).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    tracing::info!(%peer, "ISO 8583 host: acquirer connected");
                    let conn = self.clone().connection(stream, peer, shutdown.clone());
                    tokio::spawn(conn);
                }
                Err(e) => {
                    // e.g. out of file descriptors: keep serving the others.
                    tracing::warn!(error = %e, "ISO 8583 host: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One connection: frames in, one task per request, answers out in the
    /// order they are decided.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        stop: CancellationToken,
    ) {
        let (mut sink, mut frames) = Framed::new(stream, FrameCodec::default()).split();
        let (tx, mut rx) = mpsc::channel::<Message>(WRITE_QUEUE);
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_CONNECTION));
        let writer = tokio::spawn(async move {
            while let Some(answer) = rx.recv().await {
                if let Err(e) = sink.send(answer).await {
                    tracing::warn!(%peer, error = %e, "ISO 8583 host: cannot write an answer");
                    break;
                }
            }
        });
        loop {
            let frame = tokio::select! {
                () = stop.cancelled() => break,
                frame = frames.next() => frame,
            };
            match frame {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "ISO 8583 host: dropping the connection");
                    break;
                }
                Some(Ok(Err(e))) => {
                    // The error names a field or a length, never data.
                    tracing::warn!(%peer, error = %e, "ISO 8583 host: a frame that does not decode, dropped");
                }
                Some(Ok(Ok(request))) => {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let (host, tx) = (self.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(answer) = host.answer(&request).await {
                            let _ = tx.send(answer).await;
                        }
                        drop(slot);
                    });
                }
            }
        }
        drop(tx);
        if stop.is_cancelled() {
            writer.abort();
        }
        tracing::info!(%peer, "ISO 8583 host: acquirer disconnected");
    }

    /// The answer to one request or advice; `None` when none is given (an
    /// answer MTI, the issuer silent, a 0200 already reversed, a reversal
    /// the issuer could not record).
    pub async fn answer(&self, request: &Message) -> Option<Message> {
        let mti = request.mti();
        let stan = request.text(11).unwrap_or("-");
        // Masked; left out of the line when the request has no F2 (0800).
        let pan = request.pan_masked();
        let pan = pan.as_ref().map(tracing::field::display);
        let Some(mut answer) = request.reply() else {
            tracing::warn!(%mti, %stan, pan, "ISO 8583 host: an answer sent to the host, dropped");
            return None;
        };
        let outcome = match request::read(request) {
            Ok(req) => self.process(req).await,
            Err(refusal) => {
                tracing::warn!(%mti, %stan, pan, reason = refusal.reason(), "ISO 8583 host: request refused");
                Some(Outcome::code(refusal.code()))
            }
        };
        let Some(outcome) = outcome else {
            tracing::warn!(%mti, %stan, pan, "ISO 8583 host: no answer given");
            return None;
        };
        outcome.fill(request, &mut answer);
        tracing::info!(%mti, %stan, pan, f39 = outcome.f39.as_str(), "ISO 8583 host: answered");
        Some(answer)
    }

    async fn process(&self, req: Request) -> Option<Outcome> {
        match req {
            Request::Network => Some(Outcome::code("00")),
            Request::Purchase { key, auth } => self.purchase(key, auth).await,
            Request::Refund { refund } => self.refund(refund).await,
            Request::Reversal { original_key } => self.reverse(original_key).await,
        }
    }

    async fn purchase(&self, key: String, auth: AuthRequest) -> Option<Outcome> {
        let mut decided = std::pin::pin!(self.issuer.authorize(auth));
        let first_poll = {
            let reversed = self.reversed_unseen.lock().await;
            if reversed.contains(&key) {
                tracing::warn!(%key, "ISO 8583 host: a 0200 after its reversal, not processed");
                return None;
            }
            // The stub decides and records at the first poll: under the
            // lock, so a reversal cannot slip in between the check above
            // and the debit.
            decided.as_mut().now_or_never()
        };
        let result = match first_poll {
            Some(result) => result,
            None => decided.await,
        };
        match result {
            Ok(response) => Some(Outcome::decision(&response)),
            Err(IssuerError::Unavailable) => Some(Outcome::code(ISSUER_INOPERATIVE)),
            Err(IssuerError::Timeout) => None,
        }
    }

    async fn refund(&self, refund: RefundRequest) -> Option<Outcome> {
        let purchase = self.issuer.query(&refund.purchase_key).await;
        match purchase {
            Ok(Some(p)) if p.is_approved() => {}
            Ok(_) => return Some(Outcome::code(NO_ORIGINAL)),
            Err(IssuerError::Unavailable) => return Some(Outcome::code(ISSUER_INOPERATIVE)),
            Err(IssuerError::Timeout) => return None,
        }
        match self.issuer.refund(refund).await {
            Ok(response) => Some(match response.outcome {
                Decision::Approved { .. } => Outcome::decision(&response),
                Decision::Declined(ResultCode::OverLimit | ResultCode::InsufficientFunds) => {
                    Outcome::code(INVALID_AMOUNT)
                }
                Decision::Declined(ResultCode::IssuerUnavailable) => {
                    Outcome::code(ISSUER_INOPERATIVE)
                }
                Decision::Declined(_) | Decision::WrongSecret { .. } => Outcome::code(NO_ORIGINAL),
            }),
            // Also the trait's temporary default, until the issuer has one.
            Err(IssuerError::Unavailable) => Some(Outcome::code(ISSUER_INOPERATIVE)),
            Err(IssuerError::Timeout) => None,
        }
    }

    /// Reverses the request named `key` if the issuer approved it (once:
    /// the issuer keeps that it did), and acknowledges every time.
    async fn reverse(&self, key: String) -> Option<Outcome> {
        let mut reversed = self.reversed_unseen.lock().await;
        let result = match self.issuer.reverse(&key).await {
            Ok(true) => Ok(()),
            Ok(false) => match self.issuer.query(&key).await {
                Ok(None) => {
                    reversed.insert(key.clone());
                    Ok(())
                }
                Ok(Some(_)) => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Some(Outcome::code("00")),
            Err(e) => {
                // Unacknowledged: the acquirer repeats it (0421).
                tracing::warn!(%key, error = %e, "ISO 8583 host: reversal not recorded");
                None
            }
        }
    }
}

/// What goes into an answer besides the echoed fields.
#[derive(Debug)]
struct Outcome {
    f39: ResponseCode,
    auth_code: Option<String>,
}

impl Outcome {
    /// `f39` is one of this module's two-character literals.
    fn code(f39: &'static str) -> Self {
        Self {
            f39: ResponseCode::parse(f39).expect("a two-character F39"),
            auth_code: None,
        }
    }

    fn decision(response: &AuthResponse) -> Self {
        match &response.outcome {
            Decision::Approved { auth_code } => Self {
                f39: ResponseCode::APPROVED,
                auth_code: Some(auth_code.clone()),
            },
            _ => match ResponseCode::for_result(response.result_code()) {
                Some(f39) => Self {
                    f39,
                    auth_code: None,
                },
                None => Self::code(DO_NOT_HONOUR),
            },
        }
    }

    /// F39, F38 when approved, and F37 (derived from F7 and F11, so a
    /// duplicate gets the same one) when the request had none.
    fn fill(&self, request: &Message, answer: &mut Message) {
        // Each setter is given data of the field's shape: cannot fail.
        let _ = answer.set_response_code(self.f39);
        if let Some(auth_code) = &self.auth_code {
            let _ = answer.set_approval_code(auth_code);
        }
        if !answer.has(37) {
            // F7 is n10 (MMDDhhmmss): hhmmss and the STAN make 12 digits.
            if let (Some(f7), Some(f11)) = (request.transmission_time(), request.text(11)) {
                let _ = answer.set_rrn(&format!("{}{f11}", &f7[4..]));
            }
        }
    }
}
