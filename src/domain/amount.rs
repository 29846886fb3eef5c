use super::Invalid;

/// An amount in fen (1/100 yuan), strictly positive and under the configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
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
