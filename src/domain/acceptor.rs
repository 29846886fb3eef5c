use super::Invalid;

/// A merchant's card acceptor identification code: ISO 8583 field 42
/// (`ans 15`), assigned by the acquirer and sent with each of the
/// merchant's purchases and refunds. 1 to 15 printable ASCII characters
/// (space to `~`), not starting or ending with a space (the field is
/// space-padded to 15 on the wire, so such spaces could not be told apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorId(String);

impl AcceptorId {
    /// Accepts 1 to 15 printable ASCII characters (0x20-0x7E) with no
    /// leading or trailing space.
    ///
    /// # Errors
    /// `invalid_acceptor_id` for anything else (the message never repeats
    /// the value).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let printable = s.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if (1..=15).contains(&s.len()) && printable && !s.starts_with(' ') && !s.ends_with(' ') {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::new(
                "invalid_acceptor_id",
                "a card acceptor id (ISO 8583 F42) is 1 to 15 printable ASCII characters, \
                 not starting or ending with a space",
            ))
        }
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::AcceptorId;

    #[test]
    fn one_to_fifteen_printable_ascii_characters() {
        for ok in ["1", "123456789012345", "SHOP-01 A/B", "~!@#$%^&*()_+{}"] {
            assert_eq!(AcceptorId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "1234567890123456",
            " lead",
            "trail ",
            "tab\there",
            "new\nline",
            "商户",
            "é",
            "\u{7f}",
        ] {
            assert_eq!(
                AcceptorId::parse(bad).unwrap_err().code,
                "invalid_acceptor_id",
                "{bad:?}"
            );
        }
    }
}
