//! Digit collection: the keyed digits before they become a secret value
//! ([`crate::domain::PinDigits`], …). The buffer wipes its memory when
//! cleared and on drop, and `Debug` shows only how many digits it holds.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Digits as they are keyed. Fixed-size so the buffer never reallocates and
/// leaves copies behind; wiped on clear and on drop. `Debug` shows only how
/// many digits there are.
#[derive(Default, Zeroize, ZeroizeOnDrop)]
pub(crate) struct DigitBuf {
    digits: [u8; 8],
    len: usize,
}

impl DigitBuf {
    /// Adds an ASCII digit; a full buffer keeps its digits, and the step
    /// completes before it can fill anyway.
    pub(crate) fn push(&mut self, d: u8) {
        if self.len < self.digits.len() {
            self.digits[self.len] = d;
            self.len += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Wipes the digits (`*`, a completed or failed entry, a hang-up).
    pub(crate) fn clear(&mut self) {
        self.zeroize();
    }

    /// The digits as text for the `parse` of a secret type, then wipes them.
    /// The copy lives only inside the secret type it is parsed into.
    pub(crate) fn take<T>(&mut self, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let out = std::str::from_utf8(&self.digits[..self.len])
            .ok()
            .and_then(parse);
        self.clear();
        out
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> &[u8; 8] {
        &self.digits
    }
}

impl std::fmt::Debug for DigitBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigitBuf({} digits)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PinDigits;

    #[test]
    fn buffer_is_wiped() {
        let mut b = DigitBuf::default();
        for d in b"4321" {
            b.push(*d);
        }
        assert_eq!(format!("{b:?}"), "DigitBuf(4 digits)");
        b.clear();
        assert_eq!(b.raw(), &[0u8; 8]);
        assert!(b.is_empty());
        for d in b"123456" {
            b.push(*d);
        }
        let pin = b.take(PinDigits::parse).unwrap();
        assert_eq!(pin.expose(), b"123456");
        assert_eq!(b.raw(), &[0u8; 8]);
    }
}
