//! Typed access to the data elements voicepay uses, and the response-code
//! table. Values and layouts follow ISO 8583:1987 unless a doc says it is
//! voicepay's own choice (F39 `ID`, the F61 layout); the real network's
//! values must be confirmed against its specification.

use std::fmt;

use time::{macros::offset, OffsetDateTime};
use zeroize::Zeroizing;

use super::{CodecError, Message};
use crate::domain::{
    Amount, CardNumber, Cvn2, Expiry, IdNumber, OriginalRequest, ResultCode, Stan,
};

/// F25 point-of-service condition code `08`: mail/telephone order (ISO
/// 8583:1987), what every voicepay payment is.
pub const CONDITION_TELEPHONE_ORDER: &str = "08";
/// F49 currency code: ISO 4217 numeric `156`, Chinese yuan.
pub const CURRENCY_CNY: &str = "156";
/// F39 code voicepay's interface uses for "the ID number in F61 is not the
/// cardholder's": `63`, ISO 8583:1987's "security violation" (the 1987
/// table has no code for a cardholder ID mismatch); the Python issuer peer
/// (tests/iso8583_peer/peer.py) answers the same.
pub const RESPONSE_ID_MISMATCH: &str = "63";

/// F3 processing codes voicepay sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingCode {
    /// `000000`: goods and services, default accounts.
    Purchase,
    /// `200000`: return (refund), default accounts.
    Refund,
}

impl ProcessingCode {
    /// The six digits.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingCode::Purchase => "000000",
            ProcessingCode::Refund => "200000",
        }
    }

    /// The code for these six digits; `None` for others.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Purchase, Self::Refund]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// F22 point-of-service entry mode: PAN keyed (`01`), then the PIN
/// capability digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// `011`: PAN keyed, PIN included (debit cards).
    KeyedWithPin,
    /// `012`: PAN keyed, no PIN (credit cards: expiry and CVN2).
    KeyedNoPin,
}

impl EntryMode {
    /// The three digits.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryMode::KeyedWithPin => "011",
            EntryMode::KeyedNoPin => "012",
        }
    }
}

/// F70 network management information codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkCode {
    /// `001` sign-on, after every connect.
    SignOn,
    /// `002` sign-off.
    SignOff,
    /// `301` echo test, when the link has been idle.
    Echo,
}

impl NetworkCode {
    /// The three digits.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkCode::SignOn => "001",
            NetworkCode::SignOff => "002",
            NetworkCode::Echo => "301",
        }
    }

    /// The code for these digits; `None` for others.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::SignOn, Self::SignOff, Self::Echo]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// F39 response code: two ASCII characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode([u8; 2]);

/// What a response code means for the payment, from the one table in
/// [`ResponseCode::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F39Outcome {
    /// `00`: approved.
    Approved,
    /// `55`: wrong PIN (or expiry/CVN2); the tries left come from
    /// voicepay's own count, not the issuer.
    WrongSecret,
    /// A mapped decline.
    Declined(ResultCode),
    /// A code the table does not know: a decline; keep the raw code in the
    /// audit log.
    UnknownDecline(ResponseCode),
}

impl ResponseCode {
    /// `00`.
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");

    /// Two ASCII characters.
    pub fn parse(s: &str) -> Option<Self> {
        let b: [u8; 2] = s.as_bytes().try_into().ok()?;
        b.is_ascii().then_some(ResponseCode(b))
    }

    /// The two characters.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The response-code table (README, "ISO 8583 wire format"): `00`
    /// approved; `51` insufficient_funds; `55` wrong_secret; `75`
    /// pin_tries_exceeded; `54` card_expired; `14` invalid_card; `62`
    /// card_restricted; `61` over_limit; `91`, `96` issuer_unavailable;
    /// [`RESPONSE_ID_MISMATCH`] id_mismatch; anything else a decline
    /// with the raw code kept.
    pub fn outcome(self) -> F39Outcome {
        use ResultCode::*;
        F39Outcome::Declined(match &self.0 {
            b"00" => return F39Outcome::Approved,
            b"55" => return F39Outcome::WrongSecret,
            b"51" => InsufficientFunds,
            b"75" => PinTriesExceeded,
            b"54" => CardExpired,
            b"14" => InvalidCard,
            b"62" => CardRestricted,
            b"61" => OverLimit,
            b"91" | b"96" => IssuerUnavailable,
            b"63" => IdMismatch,
            _ => return F39Outcome::UnknownDecline(self),
        })
    }

    /// The code a host answers with for `result` (the inverse of
    /// [`ResponseCode::outcome`], for voicepay's own issuer host; `91`,
    /// issuer inoperative, for issuer_unavailable, as the Python peer
    /// answers); `None` for results an issuer never gives.
    pub fn for_result(result: ResultCode) -> Option<Self> {
        use ResultCode::*;
        let code = match result {
            Approved => "00",
            WrongSecret => "55",
            InsufficientFunds => "51",
            PinTriesExceeded => "75",
            CardExpired => "54",
            InvalidCard => "14",
            CardRestricted => "62",
            OverLimit => "61",
            IssuerUnavailable => "91",
            IdMismatch => RESPONSE_ID_MISMATCH,
            _ => return None,
        };
        Self::parse(code)
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseCode({:?})", self.as_str())
    }
}

/// F61 cardholder authentication data, voicepay's layout (confirm the
/// real network's subfield positions against its specification): ID type
/// (2 digits, `01` = resident identity card), the ID number (18
/// characters), then, for credit cards only, CVN2 (3 digits). 20 or 23
/// ASCII characters in the LLLVAR field.
pub struct CardholderAuth<'a> {
    /// The cardholder's ID number.
    pub id_number: &'a IdNumber,
    /// CVN2, for a credit card.
    pub cvn2: Option<&'a Cvn2>,
}

impl CardholderAuth<'_> {
    /// ID type `01`: resident identity card.
    pub const ID_TYPE_RESIDENT_CARD: &'static str = "01";
}

fn digits(n: u64, width: usize, field: u8) -> Result<String, CodecError> {
    let s = format!("{n:0width$}");
    if s.len() == width {
        Ok(s)
    } else {
        Err(CodecError::OutOfRange { field })
    }
}

/// Typed setters and getters. Setters return the same errors as
/// [`Message::set`]; getters return `None` when the field is absent or
/// does not hold the type.
impl Message {
    /// F2, the card number (LLVAR n..19).
    pub fn set_pan(&mut self, card: &CardNumber) -> Result<&mut Self, CodecError> {
        self.set_text(2, card.expose())
    }

    /// F2 masked (first six, last four): the only form to log.
    pub fn pan_masked(&self) -> Option<String> {
        self.get(2).map(super::mask_pan)
    }

    /// F3.
    pub fn set_processing_code(&mut self, code: ProcessingCode) -> Result<&mut Self, CodecError> {
        self.set_text(3, code.as_str())
    }

    /// F3, when it is one voicepay knows.
    pub fn processing_code(&self) -> Option<ProcessingCode> {
        ProcessingCode::parse(self.text(3)?)
    }

    /// F4, the amount in fen (n12, zero-filled).
    pub fn set_amount(&mut self, amount: Amount) -> Result<&mut Self, CodecError> {
        let fen = u64::try_from(amount.fen()).map_err(|_| CodecError::OutOfRange { field: 4 })?;
        self.set_text(4, &digits(fen, 12, 4)?)
    }

    /// F4 in fen.
    pub fn amount_fen(&self) -> Option<u64> {
        self.text(4)?.parse().ok()
    }

    /// F7, transmission date and time `MMDDhhmmss` in UTC.
    pub fn set_transmission_time(&mut self, at: OffsetDateTime) -> Result<&mut Self, CodecError> {
        let t = at.to_offset(offset!(UTC));
        let s = format!(
            "{:02}{:02}{:02}{:02}{:02}",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        self.set_text(7, &s)
    }

    /// F7 as sent (`MMDDhhmmss`, UTC).
    pub fn transmission_time(&self) -> Option<&str> {
        self.text(7)
    }

    /// F11.
    pub fn set_stan(&mut self, stan: Stan) -> Result<&mut Self, CodecError> {
        self.set_text(11, &stan.to_string())
    }

    /// F11.
    pub fn stan(&self) -> Option<Stan> {
        Stan::parse(self.text(11)?).ok()
    }

    /// F12 `hhmmss` and F13 `MMDD`, local time in Asia/Shanghai (UTC+8, no
    /// daylight saving).
    pub fn set_local_time(&mut self, at: OffsetDateTime) -> Result<&mut Self, CodecError> {
        let t = at.to_offset(offset!(+8));
        self.set_text(
            12,
            &format!("{:02}{:02}{:02}", t.hour(), t.minute(), t.second()),
        )?;
        self.set_text(13, &format!("{:02}{:02}", u8::from(t.month()), t.day()))
    }

    /// F14, the card's expiry as `YYMM` (voicepay keys it `MMYY`).
    pub fn set_expiry(&mut self, expiry: &Expiry) -> Result<&mut Self, CodecError> {
        let mmyy = expiry.expose();
        let yymm = Zeroizing::new([mmyy[2], mmyy[3], mmyy[0], mmyy[1]]);
        self.set(14, &yymm[..])
    }

    /// F22.
    pub fn set_entry_mode(&mut self, mode: EntryMode) -> Result<&mut Self, CodecError> {
        self.set_text(22, mode.as_str())
    }

    /// F25 `08`, telephone order.
    pub fn set_telephone_order(&mut self) -> Result<&mut Self, CodecError> {
        self.set_text(25, CONDITION_TELEPHONE_ORDER)
    }

    /// F32, the acquiring institution id (LLVAR n..11).
    pub fn set_acquirer_id(&mut self, id: &str) -> Result<&mut Self, CodecError> {
        self.set_text(32, id)
    }

    /// F32.
    pub fn acquirer_id(&self) -> Option<&str> {
        self.text(32)
    }

    /// F37, retrieval reference number (an12).
    pub fn set_rrn(&mut self, rrn: &str) -> Result<&mut Self, CodecError> {
        self.set_text(37, rrn)
    }

    /// F37.
    pub fn rrn(&self) -> Option<&str> {
        self.text(37)
    }

    /// F38, the approval code (an6).
    pub fn set_approval_code(&mut self, code: &str) -> Result<&mut Self, CodecError> {
        self.set_text(38, code)
    }

    /// F38.
    pub fn approval_code(&self) -> Option<&str> {
        self.text(38)
    }

    /// F39.
    pub fn set_response_code(&mut self, code: ResponseCode) -> Result<&mut Self, CodecError> {
        self.set(39, &code.0)
    }

    /// F39.
    pub fn response_code(&self) -> Option<ResponseCode> {
        ResponseCode::parse(self.text(39)?)
    }

    /// F41, the terminal id (ans8), right-padded with spaces.
    pub fn set_terminal_id(&mut self, id: &str) -> Result<&mut Self, CodecError> {
        self.set_padded(41, id, 8)
    }

    /// F41 without its padding.
    pub fn terminal_id(&self) -> Option<&str> {
        self.text(41).map(|s| s.trim_end_matches(' '))
    }

    /// F42, the card acceptor (merchant) id (ans15), right-padded with
    /// spaces.
    pub fn set_acceptor_id(&mut self, id: &str) -> Result<&mut Self, CodecError> {
        self.set_padded(42, id, 15)
    }

    /// F42 without its padding.
    pub fn acceptor_id(&self) -> Option<&str> {
        self.text(42).map(|s| s.trim_end_matches(' '))
    }

    fn set_padded(&mut self, field: u8, s: &str, width: usize) -> Result<&mut Self, CodecError> {
        if s.len() > width {
            return Err(CodecError::TooLong {
                field,
                len: s.len(),
                max: width,
            });
        }
        self.set_text(field, &format!("{s:<width$}"))
    }

    /// F49 `156`.
    pub fn set_currency_cny(&mut self) -> Result<&mut Self, CodecError> {
        self.set_text(49, CURRENCY_CNY)
    }

    /// F52, the format 0 PIN block under the zone PIN key (8 bytes).
    pub fn set_pin_block(&mut self, block: &[u8; 8]) -> Result<&mut Self, CodecError> {
        self.set(52, block)
    }

    /// F52 (secret: for the issuer side only).
    pub fn pin_block(&self) -> Option<&[u8]> {
        self.get(52)
    }

    /// F53, security related control information (n16).
    pub fn set_security_control(&mut self, info: &str) -> Result<&mut Self, CodecError> {
        self.set_text(53, info)
    }

    /// F61 in voicepay's layout ([`CardholderAuth`]).
    pub fn set_cardholder_auth(
        &mut self,
        auth: &CardholderAuth<'_>,
    ) -> Result<&mut Self, CodecError> {
        let mut data = Zeroizing::new(Vec::with_capacity(23));
        data.extend_from_slice(CardholderAuth::ID_TYPE_RESIDENT_CARD.as_bytes());
        data.extend_from_slice(auth.id_number.expose().as_bytes());
        if let Some(cvn2) = auth.cvn2 {
            data.extend_from_slice(cvn2.expose());
        }
        self.set(61, &data)
    }

    /// F70.
    pub fn set_network_code(&mut self, code: NetworkCode) -> Result<&mut Self, CodecError> {
        self.set_text(70, code.as_str())
    }

    /// F70, when voicepay knows the code.
    pub fn network_code(&self) -> Option<NetworkCode> {
        NetworkCode::parse(self.text(70)?)
    }

    /// F90.
    ///
    /// # Errors
    /// [`CodecError::OutOfRange`] (field 90) when the original's F7 is not
    /// 10 digits or its F32 not 1 to 11 digits.
    pub fn set_original(&mut self, original: &OriginalRequest) -> Result<&mut Self, CodecError> {
        let f90 = original
            .to_f90()
            .map_err(|_| CodecError::OutOfRange { field: 90 })?;
        self.set_text(90, &f90)
    }

    /// F90.
    pub fn original(&self) -> Option<OriginalRequest> {
        OriginalRequest::from_f90(self.text(90)?)
    }
}

/// Fields an answer echoes from its request (ISO 8583:1987 "mandatory
/// echo"), as [`Message::reply`] copies them. F2 is left out: the answer
/// never needs the PAN, so it never carries it.
pub const ECHOED_FIELDS: [u8; 13] = [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];

/// Requests, answers and the multiplexer's matching.
impl Message {
    /// The answer skeleton for this request or advice: the response MTI and
    /// the [`ECHOED_FIELDS`] it carries; the host adds F38/F39. `None` when
    /// this message is itself an answer.
    pub fn reply(&self) -> Option<Message> {
        let mut out = Message::new(self.mti().response()?);
        for field in ECHOED_FIELDS {
            if let Some(data) = self.get(field) {
                // Copied from a validated message: cannot fail.
                out.set(field, data).ok()?;
            }
        }
        Some(out)
    }

    /// What the link matches an answer to its request by: F11 and F41
    /// (without padding). `None` when either is missing.
    pub fn match_key(&self) -> Option<(Stan, &str)> {
        Some((self.stan()?, self.terminal_id()?))
    }
}
