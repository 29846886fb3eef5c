use super::Invalid;

/// An amount in fen (1/100 yuan), strictly positive and under the configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// Accepts `fen` (1 fen = 0.01 CNY) when `1 <= fen <= max`, `max` being
    /// the cap in fen (the API passes the configured `orders.max_amount`).
    ///
    /// # Errors
    /// `invalid_amount` when `fen < 1`; `amount_too_large` when `fen > max`.
    pub fn parse(fen: i64, max: i64) -> Result<Self, Invalid> {
        if fen < 1 {
            return Err(Invalid::new(
                "invalid_amount",
                "amount must be a positive integer number of fen",
            ));
        }
        if fen > max {
            return Err(Invalid::new(
                "amount_too_large",
                format!("amount must be at most {max} fen"),
            ));
        }
        Ok(Self(fen))
    }

    /// The amount in fen (0.01 CNY).
    pub fn fen(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Amount;

    #[test]
    fn bounds() {
        assert!(Amount::parse(0, 100).is_err());
        assert!(Amount::parse(-5, 100).is_err());
        assert_eq!(Amount::parse(1, 100).unwrap().fen(), 1);
        assert_eq!(Amount::parse(100, 100).unwrap().fen(), 100);
        assert_eq!(
            Amount::parse(101, 100).unwrap_err().code,
            "amount_too_large"
        );
    }
}
