//! The cardholder's secrets as values: a PIN, or a credit card's expiry and
//! CVN2, and the [`Verification`] that carries one from the IVR to the
//! matcher. Every type here wipes its memory when dropped, prints `***` in
//! `Debug`, and has no `Display` or `Serialize`: a secret can reach a log or
//! a database only by someone calling `expose()` on purpose (the PIN block
//! and the issuer link do).

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Compares without an early exit, so timing does not tell how many leading
/// digits matched.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

macro_rules! secret_digits {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The only way in: exactly the type's number of ASCII digits
            /// (6 for a PIN, 3 for a CVN2, 4 for an expiry), nothing else;
            /// `None` otherwise (no [`Invalid`](super::Invalid): a secret is
            /// keyed on the phone, where the IVR counts it as an invalid entry).
            pub fn parse(digits: &str) -> Option<Self> {
                let bytes = digits.as_bytes();
                (bytes.len() == $len && all_digits(bytes)).then(|| {
                    let mut out = [0u8; $len];
                    out.copy_from_slice(bytes);
                    Self(out)
                })
            }

            /// The ASCII digits, for the PIN block or the bank link only.
            pub fn expose(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                same_bytes(&self.0, &other.0)
            }
        }

        impl Eq for $name {}
    };
}

secret_digits!(
    /// A debit card's 6-digit PIN, as keyed. It becomes a PIN block as soon
    /// as the matcher gets it.
    PinDigits,
    6
);

secret_digits!(
    /// A credit card's 3-digit security code from the back of the card.
    Cvn2,
    3
);

secret_digits!(
    /// A credit card's expiry as keyed, MMYY. `parse` checks only the shape;
    /// [`Expiry::month_ok`] and [`Expiry::is_past`] check the meaning.
    Expiry,
    4
);

/// A calendar month, the IVR's idea of "today" for expiry checks. Passed in
/// with the call so the machine never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    /// Full year, e.g. 2025.
    pub year: u16,
    /// 1-12.
    pub month: u8,
}

impl Expiry {
    fn month(&self) -> u8 {
        (self.0[0] - b'0') * 10 + (self.0[1] - b'0')
    }

    /// Whether MM is a month, 01-12.
    pub fn month_ok(&self) -> bool {
        (1..=12).contains(&self.month())
    }

    /// Whether the card expired before `today`'s month. A card is good
    /// through the end of its expiry month. YY is taken in today's century,
    /// or the next one when that would be more than 50 years back.
    pub fn is_past(&self, today: YearMonth) -> bool {
        let yy = u16::from(self.0[2] - b'0') * 10 + u16::from(self.0[3] - b'0');
        let mut year = today.year - today.year % 100 + yy;
        if year + 50 < today.year {
            year += 100;
        }
        (year, self.month()) < (today.year, today.month)
    }
}

/// The secret leaving the IVR for the matcher: the only action that carries
/// one, so it is the only thing the runner must never log.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    /// Debit card.
    Pin(PinDigits),
    /// Credit card.
    Card {
        /// MMYY.
        expiry: Expiry,
        /// The 3 digits on the back.
        cvn2: Cvn2,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_length_and_digits() {
        assert!(PinDigits::parse("123456").is_some());
        assert!(PinDigits::parse("12345").is_none());
        assert!(PinDigits::parse("12345a").is_none());
        assert!(Cvn2::parse("123").is_some());
        assert!(Cvn2::parse("1234").is_none());
        assert_eq!(PinDigits::parse("654321").unwrap().expose(), b"654321");
    }

    #[test]
    fn debug_hides_the_digits() {
        let v = Verification::Card {
            expiry: Expiry::parse("1230").unwrap(),
            cvn2: Cvn2::parse("987").unwrap(),
        };
        let shown = format!("{v:?} {:?}", PinDigits::parse("135790").unwrap());
        assert_eq!(
            shown,
            "Card { expiry: Expiry(***), cvn2: Cvn2(***) } PinDigits(***)"
        );
    }

    #[test]
    fn expiry_month_and_past() {
        let today = YearMonth {
            year: 2025,
            month: 6,
        };
        let e = |s| Expiry::parse(s).unwrap();
        assert!(!e("1325").month_ok());
        assert!(!e("0025").month_ok());
        assert!(e("1225").month_ok());
        assert!(!e("0625").is_past(today));
        assert!(e("0525").is_past(today));
        assert!(e("1224").is_past(today));
        assert!(!e("0130").is_past(today));
        let late = YearMonth {
            year: 2098,
            month: 1,
        };
        assert!(!e("0101").is_past(late)); // 2101
    }
}
