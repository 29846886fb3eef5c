use super::Invalid;

/// A mainland China mobile number, stored as the bare 11 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// Accepts a mainland mobile number, `1[3-9]` and 9 more digits, with
    /// `+86`, `0086` or `86` in front of the 11 digits optional and dropped.
    ///
    /// # Errors
    /// `invalid_phone` for anything else (spaces, other countries, landlines).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bare = ["+86", "0086", "86"]
            .iter()
            .find_map(|p| s.strip_prefix(p).filter(|rest| rest.len() == 11))
            .unwrap_or(s);
        let b = bare.as_bytes();
        let ok = b.len() == 11
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1])
            && b.iter().all(u8::is_ascii_digit);
        if ok {
            Ok(Self(bare.to_owned()))
        } else {
            Err(Invalid::new(
                "invalid_phone",
                "phone must be a mainland China mobile number: 1[3-9] and 9 more digits, optionally after +86",
            ))
        }
    }

    /// The bare 11 digits, without a country prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// 138****8000: enough for a person to recognise their own number.
    pub fn masked(&self) -> String {
        super::mask(&self.0, 3, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::Phone;

    #[test]
    fn prefixes_are_removed() {
        for input in [
            "13800138000",
            "+8613800138000",
            "008613800138000",
            "8613800138000",
        ] {
            assert_eq!(
                Phone::parse(input).unwrap().as_str(),
                "13800138000",
                "{input}"
            );
        }
    }

    #[test]
    fn non_mobile_numbers_are_refused() {
        for bad in [
            "12800138000",  // second digit 2
            "1380013800",   // 10 digits
            "138001380000", // 12 digits
            "23800138000",
            "+8612800138000",
            "+1 3800138000",
            "1380013800a",
            "",
            "+86",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masked_form() {
        assert_eq!(Phone::parse("13800138000").unwrap().masked(), "138****8000");
    }
}
