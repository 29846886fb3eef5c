use super::Invalid;

/// The merchant's own order reference: 1-32 ASCII letters and digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantOrderId(String);

impl MerchantOrderId {
    /// Accepts 1 to 32 ASCII letters or digits.
    ///
    /// # Errors
    /// `invalid_merchant_order_id` for anything else.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::new(
                "invalid_merchant_order_id",
                "merchant_order_id must be 1 to 32 letters or digits",
            ))
        }
    }

    /// The reference as the merchant sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text description shown to the merchant, never spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Accepts at most 128 characters (Unicode scalar values, empty allowed)
    /// with no control characters.
    ///
    /// # Errors
    /// `invalid_description` when longer or when it holds a control character.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.chars().count() > 128 || s.chars().any(char::is_control) {
            return Err(Invalid::new(
                "invalid_description",
                "description must be at most 128 characters with no control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The text as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where webhooks for an order go: an absolute http(s) URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyUrl(String);

impl NotifyUrl {
    /// Accepts an absolute `http` or `https` URL of at most 2048 bytes with a
    /// host and no user name or password in it.
    ///
    /// # Errors
    /// `invalid_notify_url` when unparsable, too long, of another scheme,
    /// without a host, or carrying credentials.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                "invalid_notify_url",
                "notify_url must be an absolute http or https URL of at most 2048 characters",
            )
        };
        if s.len() > 2048 {
            return Err(bad());
        }
        let url = reqwest::Url::parse(s).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                "invalid_notify_url",
                "notify_url must not carry credentials; webhooks are signed instead",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The URL exactly as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_order_id_rules() {
        assert!(MerchantOrderId::parse("A1").is_ok());
        assert!(MerchantOrderId::parse(&"a".repeat(32)).is_ok());
        assert!(MerchantOrderId::parse(&"a".repeat(33)).is_err());
        assert!(MerchantOrderId::parse("").is_err());
        assert!(MerchantOrderId::parse("order-1").is_err());
        assert!(MerchantOrderId::parse("订单1").is_err());
    }

    #[test]
    fn notify_url_rules() {
        assert!(NotifyUrl::parse("https://shop.example/hook").is_ok());
        assert!(NotifyUrl::parse("http://127.0.0.1:9000/h").is_ok());
        assert!(NotifyUrl::parse("ftp://shop.example/hook").is_err());
        assert!(NotifyUrl::parse("javascript:alert(1)").is_err());
        assert!(NotifyUrl::parse("/relative").is_err());
        assert!(NotifyUrl::parse("https://user:pw@shop.example/").is_err());
    }

    #[test]
    fn description_rules() {
        assert!(Description::parse("会员充值 100 元").is_ok());
        assert!(Description::parse("a\nb").is_err());
        assert!(Description::parse(&"x".repeat(129)).is_err());
    }
}
