use super::Invalid;
use serde::Serialize;

/// Where an order is in its life. Transitions only go forward, and only along
/// the edges of [`OrderStatus::can_become`]; the store enforces them with
/// conditional updates so two workers can never both move one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created and waiting: a callback for its (next) attempt, a transfer or
    /// inbound order for the cardholder's call.
    Pending,
    /// A node has claimed the callback and is placing the call (ringing).
    Calling,
    /// The cardholder is on the line in the IVR: answered, transferred in or
    /// dialled in.
    InCall,
    /// The keyed secret has gone to the issuer; the order can no longer be
    /// cancelled or expire, only the bank's answer (or a query) settles it.
    Authorizing,
    /// Final: the issuer approved the payment.
    Succeeded,
    /// Final: declined by the issuer, or the call ended without a payment
    /// (see the order's [`ResultCode`]).
    Failed,
    /// Final: cancelled by the merchant before authorization.
    Cancelled,
    /// Final: the order's deadline passed before authorization.
    Expired,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::Calling,
        OrderStatus::InCall,
        OrderStatus::Authorizing,
        OrderStatus::Succeeded,
        OrderStatus::Failed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ];

    /// The snake_case name used in the database, the API and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Calling => "calling",
            OrderStatus::InCall => "in_call",
            OrderStatus::Authorizing => "authorizing",
            OrderStatus::Succeeded => "succeeded",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    /// The status named `s` (as [`OrderStatus::as_str`] writes it); `None`
    /// for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Succeeded, failed, cancelled or expired: no edge leaves it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Succeeded
                | OrderStatus::Failed
                | OrderStatus::Cancelled
                | OrderStatus::Expired
        )
    }

    /// Whether the order may still be cancelled or expire: nothing has been
    /// sent to the bank yet.
    pub fn before_authorization(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending | OrderStatus::Calling | OrderStatus::InCall
        )
    }

    /// The allowed edges of the lifecycle:
    /// `pending → calling → in_call → authorizing → succeeded | failed`,
    /// `pending | calling | in_call → cancelled | expired | failed`
    /// (a call outcome such as no answer fails the order before the bank),
    /// `calling → pending` (a retry waits for its slot), `in_call → calling`
    /// (a lost call is placed again) and `authorizing → in_call` (a wrong
    /// secret with tries left goes back to the caller).
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Calling | InCall)
                | (Calling, InCall | Pending)
                | (InCall, Authorizing | Calling)
                | (Authorizing, Succeeded | Failed | InCall)
                | (Pending | Calling | InCall, Cancelled | Expired | Failed)
        )
    }
}

/// How the cardholder is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// voicepay calls the cardholder back.
    Callback,
    /// The merchant's call centre transfers the live call with a one-time code.
    Transfer,
    /// The cardholder dials voicepay's access number.
    Inbound,
    /// The merchant's agent stays on the line: cardholder and agent share a
    /// bridge voicepay owns, and the secret is captured from the cardholder
    /// alone on the agent's request (`POST /v1/orders/{id}/capture`).
    Assisted,
}

impl Mode {
    /// The snake_case name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Callback => "callback",
            Mode::Transfer => "transfer",
            Mode::Inbound => "inbound",
            Mode::Assisted => "assisted",
        }
    }

    /// Accepts exactly `callback`, `transfer`, `inbound` or `assisted`.
    ///
    /// # Errors
    /// `invalid_mode` for any other string.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "callback" => Ok(Mode::Callback),
            "transfer" => Ok(Mode::Transfer),
            "inbound" => Ok(Mode::Inbound),
            "assisted" => Ok(Mode::Assisted),
            _ => Err(Invalid::new(
                "invalid_mode",
                "mode must be one of callback, transfer, inbound, assisted",
            )),
        }
    }
}

/// The language of the voice prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Mandarin Chinese, the default.
    Zh,
    /// English.
    En,
}

impl Language {
    /// The code used in the database and the API: `zh` or `en`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }

    /// Accepts exactly `zh` or `en`.
    ///
    /// # Errors
    /// `invalid_language` for any other string.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "zh" => Ok(Language::Zh),
            "en" => Ok(Language::En),
            _ => Err(Invalid::new(
                "invalid_language",
                "language must be zh or en",
            )),
        }
    }
}

/// The outcome of a final order, with the UnionPay-style response code where
/// the bank gave one. The snake_case names are a stable API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    /// `approved`, respCode `00`: the issuer approved the payment.
    Approved,
    /// `invalid_card`, respCode `61`: the card number is not valid at the
    /// issuer.
    InvalidCard,
    /// `insufficient_funds`, respCode `64`.
    InsufficientFunds,
    /// `wrong_secret`, respCode `65`: wrong PIN, or wrong expiry / CVN2.
    WrongSecret,
    /// `id_mismatch`, respCode `66`: the ID number is not the cardholder's.
    /// Kept in the audit log only: callers and merchants are told
    /// `wrong_secret`, so nobody learns which half was wrong.
    IdMismatch,
    /// `pin_tries_exceeded`, respCode `67`: too many wrong secrets (PINs, or
    /// expiry / CVN2) today for the card or keyed on the phone; payments are
    /// locked until the next day.
    PinTriesExceeded,
    /// `input_timeout`, respCode `69`: the cardholder did not key the input
    /// in time.
    InputTimeout,
    /// `card_expired`, respCode `73`.
    CardExpired,
    /// `card_restricted`, respCode `63`: reported lost or blocked.
    CardRestricted,
    /// `over_limit`, respCode `33`: the amount is over the card's limit.
    OverLimit,
    /// `issuer_unavailable`, respCode `03`: the issuer could not be reached or
    /// never saw the authorization.
    IssuerUnavailable,
    /// `issuer_declined`, respCode `05` ("do not honour"): the issuer
    /// declined with a response code voicepay's table does not know (an
    /// ISO 8583 F39 outside `bank::iso8583::ResponseCode::outcome`); the
    /// raw code is kept in the order's audit log.
    IssuerDeclined,
    /// `no_answer`, no respCode: the callback was not answered.
    NoAnswer,
    /// `busy`, no respCode: the cardholder's line was busy.
    Busy,
    /// `call_failed`, no respCode: the call could not be placed, or was cut
    /// off by the telephone system with no attempt left.
    CallFailed,
    /// `caller_hung_up`, no respCode: the cardholder hung up before the
    /// payment completed.
    CallerHungUp,
    /// `caller_cancelled`, no respCode: the cardholder cancelled on the phone.
    CallerCancelled,
    /// `merchant_cancelled`, no respCode: the merchant cancelled the order.
    MerchantCancelled,
    /// `order_expired`, no respCode: the order expired before it was paid.
    OrderExpired,
}

impl ResultCode {
    /// Every result code, in declaration order.
    pub const ALL: [ResultCode; 19] = [
        ResultCode::Approved,
        ResultCode::InvalidCard,
        ResultCode::InsufficientFunds,
        ResultCode::WrongSecret,
        ResultCode::IdMismatch,
        ResultCode::PinTriesExceeded,
        ResultCode::InputTimeout,
        ResultCode::CardExpired,
        ResultCode::CardRestricted,
        ResultCode::OverLimit,
        ResultCode::IssuerUnavailable,
        ResultCode::IssuerDeclined,
        ResultCode::NoAnswer,
        ResultCode::Busy,
        ResultCode::CallFailed,
        ResultCode::CallerHungUp,
        ResultCode::CallerCancelled,
        ResultCode::MerchantCancelled,
        ResultCode::OrderExpired,
    ];

    /// The stable snake_case name (the API's `result.code`).
    pub fn code(self) -> &'static str {
        use ResultCode::*;
        match self {
            Approved => "approved",
            InvalidCard => "invalid_card",
            InsufficientFunds => "insufficient_funds",
            WrongSecret => "wrong_secret",
            IdMismatch => "id_mismatch",
            PinTriesExceeded => "pin_tries_exceeded",
            InputTimeout => "input_timeout",
            CardExpired => "card_expired",
            CardRestricted => "card_restricted",
            OverLimit => "over_limit",
            IssuerUnavailable => "issuer_unavailable",
            IssuerDeclined => "issuer_declined",
            NoAnswer => "no_answer",
            Busy => "busy",
            CallFailed => "call_failed",
            CallerHungUp => "caller_hung_up",
            CallerCancelled => "caller_cancelled",
            MerchantCancelled => "merchant_cancelled",
            OrderExpired => "order_expired",
        }
    }

    /// The UnionPay two-digit respCode (the API's `result.resp_code`), for the
    /// outcomes that have one; `None` for call and order outcomes.
    pub fn resp_code(self) -> Option<&'static str> {
        use ResultCode::*;
        Some(match self {
            Approved => "00",
            InvalidCard => "61",
            InsufficientFunds => "64",
            WrongSecret => "65",
            IdMismatch => "66",
            PinTriesExceeded => "67",
            InputTimeout => "69",
            CardExpired => "73",
            CardRestricted => "63",
            OverLimit => "33",
            IssuerUnavailable => "03",
            IssuerDeclined => "05",
            _ => return None,
        })
    }

    /// A one-sentence English explanation for the merchant (the API's
    /// `result.message`).
    pub fn message(self) -> &'static str {
        use ResultCode::*;
        match self {
            Approved => "Payment approved",
            InvalidCard => "The card number is not valid at the issuer",
            InsufficientFunds => "Insufficient funds",
            WrongSecret => "Wrong PIN or wrong expiry date / CVN2",
            IdMismatch => "The ID number does not match the cardholder",
            PinTriesExceeded => {
                "Too many wrong PIN or card detail tries today; payments are locked until tomorrow"
            }
            InputTimeout => "The cardholder did not key the input in time",
            CardExpired => "The card has expired",
            CardRestricted => "The card is restricted (reported lost or blocked)",
            OverLimit => "The amount is over the card's limit",
            IssuerUnavailable => "The issuing bank is unavailable",
            IssuerDeclined => "The issuing bank declined the payment",
            NoAnswer => "The cardholder did not answer the call",
            Busy => "The cardholder's line was busy",
            CallFailed => "The call could not be placed or was cut off by the telephone system",
            CallerHungUp => "The cardholder hung up before the payment completed",
            CallerCancelled => "The cardholder cancelled the payment on the phone",
            MerchantCancelled => "The merchant cancelled the order",
            OrderExpired => "The order expired before it was paid",
        }
    }

    /// The result named `code` (as [`ResultCode::code`] writes it); `None`
    /// for any other string.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Where a webhook event's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Being delivered, or waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// The retry window ended without a 2xx.
    Failed,
}

impl DeliveryStatus {
    /// The stored and shown name: `pending`, `delivered`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status named `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Why a webhook delivery attempt failed, as coarsely as a merchant is
/// told: enough to fix their receiver, nothing about what answered inside
/// voicepay's network (the detailed reason stays in the operator's log and
/// the `webhooks list` CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryErrorClass {
    /// The receiver answered with a status other than 2xx (a 3xx included:
    /// redirects are not followed).
    HttpStatus,
    /// No answer within `webhooks.timeout_secs`.
    Timeout,
    /// No HTTP answer: the connection was refused, reset or unreachable, or
    /// the name did not resolve.
    ConnectionRefused,
    /// The TLS handshake failed (certificate not trusted, expired, for
    /// another name…).
    TlsError,
    /// The URL's host is, or resolves to, an address webhooks may not reach
    /// (loopback, private, link-local…), or plain http while
    /// `webhooks.allow_http` is off. Nothing was sent.
    BlockedAddress,
    /// voicepay could not prepare the request (e.g. the merchant's webhook
    /// secret could not be read). Nothing was sent.
    Internal,
}

impl DeliveryErrorClass {
    const ALL: [Self; 6] = [
        Self::HttpStatus,
        Self::Timeout,
        Self::ConnectionRefused,
        Self::TlsError,
        Self::BlockedAddress,
        Self::Internal,
    ];

    /// The stored and shown name, e.g. `blocked_address`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpStatus => "http_status",
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::TlsError => "tls_error",
            Self::BlockedAddress => "blocked_address",
            Self::Internal => "internal",
        }
    }

    /// The class named `s`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Reading a stored column: anything but the three names is an error.
impl TryFrom<String> for DeliveryStatus {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s).ok_or_else(|| Invalid::new("invalid_status", "not a delivery status"))
    }
}

/// Reading a stored column: a value that is not one of the names is an
/// error (a corrupt row), never silently another status.
impl TryFrom<String> for OrderStatus {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s).ok_or_else(|| Invalid::new("invalid_status", "not an order status"))
    }
}

/// Reading a stored column (see [`Mode::parse`]).
impl TryFrom<String> for Mode {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
}

/// Reading a stored column (see [`Language::parse`]).
impl TryFrom<String> for Language {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};
    use super::ResultCode;

    const ALLOWED: &[(OrderStatus, OrderStatus)] = &[
        (Pending, Calling),
        (Pending, InCall),
        (Calling, InCall),
        (Calling, Pending),
        (InCall, Authorizing),
        (InCall, Calling),
        (Authorizing, Succeeded),
        (Authorizing, Failed),
        (Authorizing, InCall),
        (Pending, Cancelled),
        (Calling, Cancelled),
        (InCall, Cancelled),
        (Pending, Expired),
        (Calling, Expired),
        (InCall, Expired),
        (Pending, Failed),
        (Calling, Failed),
        (InCall, Failed),
    ];

    #[test]
    fn every_allowed_transition_is_allowed_and_nothing_else() {
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let expected = ALLOWED.contains(&(from, to));
                assert_eq!(from.can_become(to), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn final_states_go_nowhere() {
        for from in [Succeeded, Failed, Cancelled, Expired] {
            assert!(from.is_final());
            assert!(OrderStatus::ALL.iter().all(|to| !from.can_become(*to)));
        }
    }

    #[test]
    fn authorizing_can_no_longer_be_cancelled_or_expire() {
        assert!(!Authorizing.can_become(Cancelled));
        assert!(!Authorizing.can_become(Expired));
        assert!(!Authorizing.before_authorization());
    }

    #[test]
    fn status_and_result_names_round_trip() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        for c in ResultCode::ALL {
            assert_eq!(ResultCode::parse(c.code()), Some(c));
        }
        assert_eq!(ResultCode::WrongSecret.resp_code(), Some("65"));
        assert_eq!(ResultCode::NoAnswer.resp_code(), None);
        assert_eq!(ResultCode::IssuerDeclined.code(), "issuer_declined");
        assert_eq!(ResultCode::IssuerDeclined.resp_code(), Some("05"));
    }
}
