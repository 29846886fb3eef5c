use super::{mask, Invalid};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A PRC resident identity number (GB 11643-1999): 17 digits, a check
/// character (0-9 or X), and a real birth date in positions 7-14.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct IdNumber(String);

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

impl IdNumber {
    /// Accepts 18 characters: 17 digits and a check character (a digit, or
    /// `X` in either case, kept upper-case) that matches the GB 11643 weights,
    /// with a real calendar date between 1900 and today in positions 7-14.
    ///
    /// # Errors
    /// `invalid_id_number` for a wrong length or character, a wrong check
    /// character or an impossible or future birth date.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let upper = s.to_ascii_uppercase();
        let b = upper.as_bytes();
        if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
            return Err(Invalid::new(
                "invalid_id_number",
                "id_number must be 17 digits followed by a digit or X",
            ));
        }
        let sum: u32 = b[..17]
            .iter()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        if CHECK[(sum % 11) as usize] != b[17] {
            return Err(Invalid::new(
                "invalid_id_number",
                "id_number has a wrong check character",
            ));
        }
        if !birth_date_valid(&upper[6..14]) {
            return Err(Invalid::new(
                "invalid_id_number",
                "id_number does not contain a real birth date",
            ));
        }
        Ok(Self(upper))
    }

    /// The full number, for encryption and the bank link only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First six and last four characters, the rest `*`.
    pub fn masked(&self) -> String {
        mask(&self.0, 6, 4)
    }
}

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

fn birth_date_valid(yyyymmdd: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        yyyymmdd[0..4].parse::<i32>(),
        yyyymmdd[4..6].parse::<u8>(),
        yyyymmdd[6..8].parse::<u8>(),
    ) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(m) else {
        return false;
    };
    let Ok(date) = time::Date::from_calendar_date(y, month, d) else {
        return false;
    };
    let today = time::OffsetDateTime::now_utc().date();
    y >= 1900 && date <= today
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_example_is_valid() {
        let id = IdNumber::parse("11010519491231002X").unwrap();
        assert_eq!(id.masked(), "110105********002X");
        // lower-case x is accepted and normalised
        assert_eq!(
            IdNumber::parse("11010519491231002x").unwrap().expose(),
            "11010519491231002X"
        );
        assert!(IdNumber::parse("310115198506154322").is_ok());
    }

    #[test]
    fn wrong_check_character_is_refused() {
        for bad in [
            "110105194912310021",
            "110105194912310020",
            "11010519491231002Y",
        ] {
            assert!(IdNumber::parse(bad).is_err(), "{bad}");
        }
    }

    /// 17 digits plus their correct check character.
    fn with_check(body: &str) -> String {
        let sum: u32 = body
            .bytes()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        format!("{body}{}", CHECK[(sum % 11) as usize] as char)
    }

    #[test]
    fn thirtieth_of_february_is_refused() {
        let id = with_check("11010519900230001");
        let err = IdNumber::parse(&id).unwrap_err();
        assert!(err.message.contains("birth date"), "{err}");
    }

    #[test]
    fn future_birth_dates_and_wrong_lengths_are_refused() {
        assert!(IdNumber::parse(&with_check("11010530000101001")).is_err());
        assert!(IdNumber::parse("11010519491231002").is_err());
        assert!(IdNumber::parse("110105194912310020X").is_err());
    }

    #[test]
    fn debug_is_masked() {
        let id = IdNumber::parse("11010519491231002X").unwrap();
        assert!(!format!("{id:?}").contains("11010519491231002X"));
    }
}
