//! Domain values: every piece of outside input enters through a `parse()` that
//! is the only way to build the type, so the rest of the program never sees an
//! unchecked card number, ID number, phone or amount.

#![warn(missing_docs)]

mod acceptor;
mod amount;
mod card;
mod id_number;
mod order;
mod phone;
mod secret;
mod stan;
mod text;

pub use acceptor::AcceptorId;
pub use amount::Amount;
pub use card::{CardKind, CardNumber};
pub use id_number::IdNumber;
pub use order::{DeliveryErrorClass, DeliveryStatus, Language, Mode, OrderStatus, ResultCode};
pub use phone::{CallerNumber, Phone};
pub use secret::{Cvn2, Expiry, PinDigits, Verification, YearMonth};
pub use stan::{OriginalRequest, Stan};
pub use text::{Description, MerchantOrderId, NotifyUrl};

/// Why a value was refused: a stable machine code and a sentence for people.
/// Never carries the refused value itself (it may be a card number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Stable snake_case code, e.g. `invalid_card_number`; part of the API.
    pub code: &'static str,
    /// An English sentence saying what is wrong, without the value.
    pub message: String,
}

impl Invalid {
    /// A refusal with a stable `code` and a `message` for people.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::error::Error for Invalid {}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// Masks all but the first `head` and last `tail` characters with `*`; a
/// value of at most `head + tail` characters is masked entirely.
pub fn mask(value: &str, head: usize, tail: usize) -> String {
    let n = value.chars().count();
    if n <= head + tail {
        return "*".repeat(n);
    }
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn mask_keeps_head_and_tail() {
        assert_eq!(mask("6222000000000017", 6, 4), "622200******0017");
        assert_eq!(mask("1234", 6, 4), "****");
    }
}
