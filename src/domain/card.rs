use super::{mask, Invalid};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A primary account number: 16-19 digits with a valid Luhn check digit.
/// Printing it (`Debug`) shows only the masked form; memory is wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct CardNumber(String);

/// Debit cards are verified by PIN, credit cards by expiry + CVN2.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CardKind {
    /// Debit card: the cardholder keys the PIN.
    Debit,
    /// Credit card: the cardholder keys the expiry and the CVN2.
    Credit,
    /// The BIN is not in the known list; the IVR asks for a PIN, as for debit.
    Unknown,
}

impl CardKind {
    /// The stored and serialized name: `debit`, `credit` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            CardKind::Debit => "debit",
            CardKind::Credit => "credit",
            CardKind::Unknown => "unknown",
        }
    }

    /// `debit`, `credit` or `unknown` as stored; `None` for anything else.
    pub fn parse(s: &str) -> Option<CardKind> {
        match s {
            "debit" => Some(CardKind::Debit),
            "credit" => Some(CardKind::Credit),
            "unknown" => Some(CardKind::Unknown),
            _ => None,
        }
    }
}

/// Reading a stored column: anything but the three names is an error (a
/// corrupt row), never silently `unknown`.
impl TryFrom<String> for CardKind {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s).ok_or_else(|| Invalid::new("invalid_card_kind", "not a card kind"))
    }
}

/// Known issuer BIN prefixes (first six digits). The stub issuer's test cards
/// live here; a real deployment extends this from the acquirer's BIN file.
const BINS: &[(&str, CardKind)] = &[
    ("622200", CardKind::Debit),
    ("621700", CardKind::Debit),
    ("622848", CardKind::Debit),
    ("621226", CardKind::Debit),
    ("625000", CardKind::Credit),
    ("622588", CardKind::Credit),
    ("625800", CardKind::Credit),
];

impl CardNumber {
    /// Accepts 16 to 19 ASCII digits (no spaces or separators) whose last
    /// digit is a valid Luhn check digit.
    ///
    /// # Errors
    /// `invalid_card_number` when the length, a character or the Luhn check
    /// is wrong; the message says which.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if !(16..=19).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "invalid_card_number",
                "card_number must be 16 to 19 digits",
            ));
        }
        if !luhn_valid(s) {
            return Err(Invalid::new(
                "invalid_card_number",
                "card_number fails the Luhn check",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The full number, for encryption and the bank link only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First six and last four digits: the only form shown to anyone.
    pub fn masked(&self) -> String {
        mask(&self.0, 6, 4)
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// Debit or credit from the first six digits (BIN);
    /// [`CardKind::Unknown`] when the BIN is not known.
    pub fn kind(&self) -> CardKind {
        BINS.iter()
            .find(|(bin, _)| self.0.starts_with(bin))
            .map(|(_, kind)| *kind)
            .unwrap_or(CardKind::Unknown)
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber({})", self.masked())
    }
}

/// Luhn mod-10 over an all-digit string.
pub fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_pass_luhn() {
        for pan in [
            "6222000000000017",
            "6217000000000014",
            "6250000000000012",
            "4111111111111111",
        ] {
            assert!(CardNumber::parse(pan).is_ok(), "{pan}");
        }
    }

    #[test]
    fn wrong_check_digit_is_refused() {
        let err = CardNumber::parse("6222000000000018").unwrap_err();
        assert_eq!(err.code, "invalid_card_number");
        assert!(err.message.contains("Luhn"));
    }

    #[test]
    fn length_and_characters_are_checked() {
        assert!(CardNumber::parse("622200000000001").is_err()); // 15
        assert!(CardNumber::parse("62220000000000000000").is_err()); // 20
        assert!(CardNumber::parse("6222 0000 0000 0017").is_err());
        assert!(CardNumber::parse("622200000000001a").is_err());
        assert!(CardNumber::parse("").is_err());
        // 19 digits with a valid check digit
        assert!(CardNumber::parse("6222000000000000004").is_ok());
    }

    #[test]
    fn debug_never_prints_the_number() {
        let pan = CardNumber::parse("6222000000000017").unwrap();
        let shown = format!("{pan:?}");
        assert!(!shown.contains("6222000000000017"));
        assert!(shown.contains("622200******0017"));
    }

    #[test]
    fn kind_comes_from_the_bin() {
        assert_eq!(
            CardNumber::parse("6222000000000017").unwrap().kind(),
            CardKind::Debit
        );
        assert_eq!(
            CardNumber::parse("6250000000000012").unwrap().kind(),
            CardKind::Credit
        );
        assert_eq!(
            CardNumber::parse("4111111111111111").unwrap().kind(),
            CardKind::Unknown
        );
    }
}
