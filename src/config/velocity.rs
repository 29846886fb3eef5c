//! `[limits]`, the wrong-secret part: voicepay's own velocity limit on
//! wrong secrets (PIN, or expiry and CVN2), per card and per phone, per
//! Asia/Shanghai calendar day. It holds whatever the issuer allows, so
//! guessing a card's secrets across calls (or a phone guessing across
//! cards) stops here before it reaches the bank.

use super::{invalid, ConfigError};

/// The two wrong-secret keys of `[limits]` (read there, in
/// [`LimitSettings`](super::LimitSettings)), as the matcher takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VelocityLimits {
    /// Wrong secrets a card (by keyed fingerprint) may get per Shanghai
    /// day; the last one fails the order `pin_tries_exceeded` (67) and
    /// later orders for the card are refused before the bank until the
    /// next day. A call whose cardholder ID did not match never counts.
    pub wrong_secrets_per_card_day: u32,
    /// Wrong secrets (an ID mismatch included: it answers as one) keyed on
    /// one phone per Shanghai day, over every card; then the same refusal.
    pub wrong_secrets_per_phone_day: u32,
}

impl Default for VelocityLimits {
    fn default() -> Self {
        Self {
            wrong_secrets_per_card_day: 3,
            wrong_secrets_per_phone_day: 6,
        }
    }
}

impl VelocityLimits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.wrong_secrets_per_card_day) {
            return invalid("limits.wrong_secrets_per_card_day", "must be 1-100");
        }
        if !(1..=1000).contains(&self.wrong_secrets_per_phone_day) {
            return invalid("limits.wrong_secrets_per_phone_day", "must be 1-1000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    #[test]
    fn limits_load_from_the_file_and_are_bounded() {
        assert_eq!(Settings::default().limits.wrong_secrets_per_card_day, 3);
        assert_eq!(Settings::default().limits.wrong_secrets_per_phone_day, 6);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.toml");
        let file = "[limits]\nwrong_secrets_per_card_day = 2\nwrong_secrets_per_phone_day = 9\n";
        std::fs::write(&path, file).unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.limits.wrong_secrets_per_card_day, 2);
        assert_eq!(s.limits.wrong_secrets_per_phone_day, 9);
        for (card, phone, key) in [
            (0, 6, "limits.wrong_secrets_per_card_day"),
            (3, 0, "limits.wrong_secrets_per_phone_day"),
        ] {
            let mut s = Settings::default();
            s.limits.wrong_secrets_per_card_day = card;
            s.limits.wrong_secrets_per_phone_day = phone;
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
