//! The system trace audit number (ISO 8583 field 11), and the original
//! request a reversal or refund names (field 90), whose key it is part of.

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

/// A request the acquirer link sent, as ISO 8583:1987 field 90 (original
/// data elements) names it when a reversal (0420/0421) or a refund refers
/// to it: its MTI, STAN (F11), transmission date-time (F7) and acquiring
/// institution (F32). The issuer matches reversals to originals, and
/// detects duplicates, by these four.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginalRequest {
    /// The original message type, four digits, e.g. `0200`.
    pub mti: String,
    /// Its STAN (F11).
    pub stan: Stan,
    /// Its transmission date and time (F7): `MMDDhhmmss`, UTC.
    pub transmitted_at: String,
    /// Its acquiring institution id (F32): 1 to 11 digits.
    pub acquirer_id: String,
}

impl OriginalRequest {
    /// Field 90, `n42` (ISO 8583:1987): MTI (4), STAN (6), F7 (10), F32 (11,
    /// zero-filled on the left), forwarding institution (11, zeros).
    ///
    /// # Errors
    /// [`Invalid`] `invalid_original` when the MTI is not 4 digits, F7 not
    /// 10 digits or F32 not 1 to 11 digits.
    pub fn to_f90(&self) -> Result<String, Invalid> {
        let digits = |s: &str, lens: std::ops::RangeInclusive<usize>| {
            lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !(digits(&self.mti, 4..=4)
            && digits(&self.transmitted_at, 10..=10)
            && digits(&self.acquirer_id, 1..=11))
        {
            return Err(Invalid::new(
                "invalid_original",
                "field 90 needs a 4-digit MTI, a 10-digit F7 and a 1 to 11 digit F32",
            ));
        }
        Ok(format!(
            "{}{}{}{:0>11}00000000000",
            self.mti, self.stan, self.transmitted_at, self.acquirer_id
        ))
    }

    /// Reads field 90's 42 digits (leading zeros of the acquirer id dropped,
    /// at least one digit kept); `None` when the layout does not hold.
    pub fn from_f90(s: &str) -> Option<Self> {
        if s.len() != 42 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let acquirer = s[20..31].trim_start_matches('0');
        Some(Self {
            mti: s[..4].to_owned(),
            stan: Stan::parse(&s[4..10]).ok()?,
            transmitted_at: s[10..20].to_owned(),
            acquirer_id: if acquirer.is_empty() { "0" } else { acquirer }.to_owned(),
        })
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
