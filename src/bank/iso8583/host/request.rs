//! What a request asks, read from its fields with no IO: the
//! [`IssuerLink`](crate::bank::IssuerLink) call it maps onto, or why it
//! cannot be processed (the F39 to answer with). Reasons name fields, never
//! their data.

use crate::bank::iso8583::{Message, Mti, NetworkCode, ProcessingCode};
use crate::bank::{AuthRequest, RefundRequest, Secret};
use crate::crypto::PinBlock0;
use crate::domain::{Amount, CardNumber, Cvn2, Expiry, IdNumber, OriginalRequest};

/// The issuer's key for one request: its F32 (leading zeros dropped, as F90
/// carries it zero-filled), F7 and F11, the three ISO 8583:1987 names a
/// request by. A duplicate 0200 has the same key; a reversal or refund
/// finds its original by the key of its F90.
pub fn request_key(original: &OriginalRequest) -> String {
    let acquirer = original.acquirer_id.trim_start_matches('0');
    let acquirer = if acquirer.is_empty() { "0" } else { acquirer };
    format!(
        "iso8583:{acquirer}:{}:{}",
        original.transmitted_at, original.stan
    )
}

/// One request the host knows how to process.
#[derive(Debug)]
pub(super) enum Request {
    /// 0800 sign-on, sign-off or echo test.
    Network,
    /// 0200 with F3 `000000`; `key` is its [`request_key`].
    Purchase { key: String, auth: AuthRequest },
    /// 0200 with F3 `200000`; `refund.refund_id` is its own key,
    /// `refund.purchase_key` its F90's.
    Refund { refund: RefundRequest },
    /// 0420 / 0421: undo the request its F90 names (by that key).
    Reversal { original_key: String },
}

/// Why a request is answered without being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// F39 `30` format error: a mandatory field is missing or malformed.
    Format(&'static str),
    /// F39 `14` invalid card number: F2 is not a card number (length, Luhn).
    InvalidCard,
    /// F39 `13` invalid amount: F4 is zero.
    InvalidAmount,
    /// F39 `12` invalid transaction: an MTI, F3 or F70 this host does not
    /// process.
    Unsupported(&'static str),
}

impl Refusal {
    /// The F39 to answer with.
    pub(super) fn code(self) -> &'static str {
        match self {
            Refusal::Format(_) => "30",
            Refusal::InvalidCard => "14",
            Refusal::InvalidAmount => "13",
            Refusal::Unsupported(_) => "12",
        }
    }

    /// For the log: which field, never its data.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refusal::Format(why) | Refusal::Unsupported(why) => why,
            Refusal::InvalidCard => "F2 is not a card number",
            Refusal::InvalidAmount => "F4 is zero",
        }
    }
}

/// Reads `msg` (a request or advice; answers are never passed here).
pub(super) fn read(msg: &Message) -> Result<Request, Refusal> {
    match msg.mti() {
        Mti::NETWORK_REQUEST => match msg.network_code() {
            Some(NetworkCode::SignOn | NetworkCode::SignOff | NetworkCode::Echo) => {
                Ok(Request::Network)
            }
            None if msg.has(70) => Err(Refusal::Unsupported("an F70 code this host lacks")),
            None => Err(Refusal::Format("0800 lacks F70")),
        },
        Mti::FINANCIAL_REQUEST => match msg.processing_code() {
            Some(ProcessingCode::Purchase) => purchase(msg),
            Some(ProcessingCode::Refund) => refund(msg),
            None if msg.has(3) => Err(Refusal::Unsupported("an F3 this host does not process")),
            None => Err(Refusal::Format("0200 lacks F3")),
        },
        Mti::REVERSAL_ADVICE | Mti::REVERSAL_ADVICE_REPEAT => {
            let original = msg
                .original()
                .ok_or(Refusal::Format("reversal lacks a valid F90"))?;
            Ok(Request::Reversal {
                original_key: request_key(&original),
            })
        }
        _ => Err(Refusal::Unsupported("an MTI this host does not process")),
    }
}

/// The request's own name (F11, F7, F32): its key, and what F90 names it by.
fn own_name(msg: &Message) -> Result<OriginalRequest, Refusal> {
    Ok(OriginalRequest {
        mti: msg.mti().as_str().to_owned(),
        stan: msg.stan().ok_or(Refusal::Format("lacks a valid F11"))?,
        transmitted_at: msg
            .transmission_time()
            .ok_or(Refusal::Format("lacks F7"))?
            .to_owned(),
        acquirer_id: msg
            .acquirer_id()
            .ok_or(Refusal::Format("lacks F32"))?
            .to_owned(),
    })
}

fn card(msg: &Message) -> Result<CardNumber, Refusal> {
    let pan = msg.text(2).ok_or(Refusal::Format("lacks F2"))?;
    CardNumber::parse(pan).map_err(|_| Refusal::InvalidCard)
}

fn amount(msg: &Message) -> Result<Amount, Refusal> {
    let fen = msg.amount_fen().ok_or(Refusal::Format("lacks F4"))?;
    let fen = i64::try_from(fen).map_err(|_| Refusal::InvalidAmount)?;
    Amount::parse(fen, i64::MAX).map_err(|_| Refusal::InvalidAmount)
}

fn purchase(msg: &Message) -> Result<Request, Refusal> {
    let key = request_key(&own_name(msg)?);
    let card = card(msg)?;
    let amount = amount(msg)?;
    let (id_number, cvn2) = cardholder_auth(msg)?;
    let secret = if let Some(block) = msg.pin_block() {
        let block: [u8; 8] = block
            .try_into()
            .map_err(|_| Refusal::Format("F52 is not 8 bytes"))?;
        Secret::PinBlock0(PinBlock0::from_bytes(block))
    } else if let Some(yymm) = msg.get(14) {
        let expiry = expiry_from_f14(yymm).ok_or(Refusal::Format("F14 is not YYMM"))?;
        let cvn2 = cvn2.ok_or(Refusal::Format("F61 lacks the CVN2 of a credit card"))?;
        Secret::Card { expiry, cvn2 }
    } else {
        return Err(Refusal::Format("0200 purchase has neither F52 nor F14"));
    };
    Ok(Request::Purchase {
        auth: AuthRequest {
            idempotency_key: key.clone(),
            order_id: key.clone(),
            acceptor_id: msg.acceptor_id().map(str::to_owned),
            amount,
            card,
            id_number,
            secret,
        },
        key,
    })
}

fn refund(msg: &Message) -> Result<Request, Refusal> {
    let refund_id = request_key(&own_name(msg)?);
    let original = msg
        .original()
        .ok_or(Refusal::Format("refund lacks a valid F90"))?;
    let purchase_key = request_key(&original);
    Ok(Request::Refund {
        refund: RefundRequest {
            refund_id,
            order_id: purchase_key.clone(),
            purchase_key,
            amount: amount(msg)?,
            card: card(msg)?,
            acceptor_id: msg.acceptor_id().map(str::to_owned),
        },
    })
}

/// F14 is `YYMM`; voicepay's [`Expiry`] is `MMYY` as keyed.
fn expiry_from_f14(yymm: &[u8]) -> Option<Expiry> {
    let [y1, y2, m1, m2] = <[u8; 4]>::try_from(yymm).ok()?;
    let mmyy = zeroize::Zeroizing::new([m1, m2, y1, y2]);
    Expiry::parse(std::str::from_utf8(&*mmyy).ok()?)
}

/// F61 in voicepay's layout ([`crate::bank::iso8583::CardholderAuth`]): ID
/// type `01`, the ID number (18, right-padded with spaces), and a credit
/// card's CVN2 (3).
fn cardholder_auth(msg: &Message) -> Result<(IdNumber, Option<Cvn2>), Refusal> {
    const ID_END: usize = 20;
    let f61 = msg.text(61).ok_or(Refusal::Format("lacks F61"))?;
    if !matches!(f61.len(), 20 | 23) || !f61.is_char_boundary(ID_END) {
        return Err(Refusal::Format("F61 is not 20 or 23 characters"));
    }
    if !f61.starts_with(crate::bank::iso8583::CardholderAuth::ID_TYPE_RESIDENT_CARD) {
        return Err(Refusal::Format("F61 ID type is not 01"));
    }
    let id = IdNumber::parse(f61[2..ID_END].trim_end())
        .map_err(|_| Refusal::Format("F61 ID number is malformed"))?;
    let cvn2 = match &f61[ID_END..] {
        "" => None,
        digits => Some(Cvn2::parse(digits).ok_or(Refusal::Format("F61 CVN2 is not 3 digits"))?),
    };
    Ok((id, cvn2))
}
