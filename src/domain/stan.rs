//! The system trace audit number (ISO 8583 field 11).

use super::Invalid;

/// A system trace audit number: ISO 8583:1987 field 11, `n6`, 000001–999999
/// (000000 is not used). voicepay numbers its requests to the acquirer with
/// it, per Asia/Shanghai day, from the database
/// ([`crate::store::Store::next_stan`]) so that nodes sharing a database
/// never send the same STAN twice in a day. Shown and sent as six digits,
/// zero-padded (`000042`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stan(u32);

impl Stan {
    /// The smallest STAN, `000001`.
    pub const MIN: u32 = 1;
    /// The largest STAN, `999999`.
    pub const MAX: u32 = 999_999;

    /// The STAN numbered `n`.
    ///
    /// # Errors
    /// [`Invalid`] `invalid_stan` when `n` is outside 1–999999.
    pub fn new(n: u32) -> Result<Self, Invalid> {
        if (Self::MIN..=Self::MAX).contains(&n) {
            Ok(Self(n))
        } else {
            Err(Invalid::new("invalid_stan", "a STAN is 000001 to 999999"))
        }
    }

    /// Reads field 11 as sent: exactly six ASCII digits, not `000000`.
    ///
    /// # Errors
    /// [`Invalid`] `invalid_stan` for anything else.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new("invalid_stan", "a STAN is six digits"));
        }
        Self::new(s.parse().unwrap_or(0))
    }

    /// Its number, 1–999999.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Six digits, zero-padded: the field 11 text.
impl std::fmt::Display for Stan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// Reading a stored column (six digits, see [`Stan::parse`]).
impl TryFrom<String> for Stan {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::Stan;

    #[test]
    fn six_digits_zero_padded_both_ways() {
        let s = Stan::new(42).unwrap();
        assert_eq!(s.to_string(), "000042");
        assert_eq!(Stan::parse("000042").unwrap(), s);
        assert_eq!(Stan::parse("999999").unwrap().get(), 999_999);
    }

    #[test]
    fn refuses_zero_too_long_and_non_digits() {
        for bad in [
            "000000", "1234567", "12345", "12a456", "-12345", " 12345", "",
        ] {
            assert_eq!(
                Stan::parse(bad).unwrap_err().code,
                "invalid_stan",
                "{bad:?}"
            );
        }
        assert!(Stan::new(0).is_err());
        assert!(Stan::new(1_000_000).is_err());
    }
}
