//! ISO 9564-1 format 4 PIN blocks: the only form a PIN takes once the
//! cardholder has keyed it. Format 4 is the AES format (128-bit block):
//!
//! - plain-text PIN field, 32 nibbles: control `4`, PIN length N (4-12), the
//!   N PIN digits, fill `A` up to nibble 16, then 64 random bits;
//! - PAN field, 32 nibbles: M = PAN length − 12 (0 when the PAN has 12
//!   digits or fewer), the PAN left-justified (a PAN shorter than 12 digits
//!   is right-justified in 12 digits, zero-padded on the left), then `0`s;
//! - enciphered block = AES(K, AES(K, PIN field) XOR PAN field).
//!
//! Deciphering runs the steps backwards and refuses a block whose control
//! nibble, length or fill is wrong, which is what a wrong key, a wrong PAN or
//! a tampered block produce. The random half makes the same PIN on the same
//! card encipher differently every time. Every buffer that holds PIN digits
//! is wiped before it is dropped.

use crate::domain::CardNumber;
use crate::domain::PinDigits;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use zeroize::{Zeroize, Zeroizing};

/// Why a PIN block could not be made or read. Never carries a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinBlockError {
    #[error("a PIN must be 4 to 12 digits")]
    BadPin,
    #[error("a PAN must be 1 to 19 digits")]
    BadPan,
    #[error("a zone PIN key must be 16, 24 or 32 bytes")]
    BadKey,
    /// Wrong key, wrong PAN, a tampered block or not format 4 at all: the
    /// causes cannot be told apart, and saying which would help an attacker.
    #[error("the PIN block does not decipher to a valid format 4 PIN field")]
    Invalid,
}

/// The zone PIN key (ZPK) shared by the PIN-enciphering side (the matcher)
/// and the issuer link. AES-128, -192 or -256; the key schedule is wiped on
/// drop.
#[derive(Clone)]
pub enum ZonePinKey {
    #[doc(hidden)]
    Aes128(Aes128),
    #[doc(hidden)]
    Aes192(Aes192),
    #[doc(hidden)]
    Aes256(Aes256),
}

impl ZonePinKey {
    /// A key from its raw bytes (16, 24 or 32).
    pub fn from_bytes(key: &[u8]) -> Result<Self, PinBlockError> {
        Ok(match key.len() {
            16 => Self::Aes128(Aes128::new_from_slice(key).map_err(|_| PinBlockError::BadKey)?),
            24 => Self::Aes192(Aes192::new_from_slice(key).map_err(|_| PinBlockError::BadKey)?),
            32 => Self::Aes256(Aes256::new_from_slice(key).map_err(|_| PinBlockError::BadKey)?),
            _ => return Err(PinBlockError::BadKey),
        })
    }

    fn encrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Self::Aes128(c) => c.encrypt_block(b),
            Self::Aes192(c) => c.encrypt_block(b),
            Self::Aes256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Self::Aes128(c) => c.decrypt_block(b),
            Self::Aes192(c) => c.decrypt_block(b),
            Self::Aes256(c) => c.decrypt_block(b),
        }
    }
}

impl std::fmt::Debug for ZonePinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Aes128(_) => "ZonePinKey(AES-128)",
            Self::Aes192(_) => "ZonePinKey(AES-192)",
            Self::Aes256(_) => "ZonePinKey(AES-256)",
        })
    }
}

/// An enciphered format 4 PIN block. Safe to hold and pass around: without
/// the zone PIN key and the PAN it says nothing about the PIN. `Debug` shows
/// only the first four bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PinBlock([u8; 16]);

impl std::fmt::Debug for PinBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinBlock({}…)", hex::encode(&self.0[..4]))
    }
}

impl PinBlock {
    /// The keyed PIN enciphered for `pan`. The IVR's PIN is always 6 digits
    /// and a [`CardNumber`] 16-19, so this cannot fail.
    pub fn from_pin(pin: &PinDigits, pan: &CardNumber, key: &ZonePinKey) -> Self {
        Self::encipher(pin.expose(), pan.expose(), key)
            .expect("a 6-digit PIN and a 16-19 digit PAN always make a block")
    }

    /// Enciphers `pin` (4-12 ASCII digits) for `pan` (1-19 ASCII digits)
    /// with fresh random fill.
    pub fn encipher(pin: &[u8], pan: &str, key: &ZonePinKey) -> Result<Self, PinBlockError> {
        use rand::RngCore;
        let mut fill = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut fill);
        Self::encipher_with_fill(pin, pan, key, fill)
    }

    /// [`PinBlock::encipher`] with the random half given, for test vectors.
    fn encipher_with_fill(
        pin: &[u8],
        pan: &str,
        key: &ZonePinKey,
        fill: [u8; 8],
    ) -> Result<Self, PinBlockError> {
        let pan_field = pan_field(pan)?;
        let mut block = pin_field(pin, fill)?;
        key.encrypt(&mut block);
        xor_into(&mut block, &pan_field);
        key.encrypt(&mut block);
        Ok(Self(*block))
    }

    /// The PIN as ASCII digits, checking that the block deciphers with `key`
    /// for `pan` to a well-formed format 4 PIN field.
    pub fn decipher(
        &self,
        pan: &str,
        key: &ZonePinKey,
    ) -> Result<Zeroizing<Vec<u8>>, PinBlockError> {
        let pan_field = pan_field(pan)?;
        let mut block = Zeroizing::new(self.0);
        key.decrypt(&mut block);
        xor_into(&mut block, &pan_field);
        key.decrypt(&mut block);
        read_pin_field(&block)
    }

    /// The 16 enciphered bytes, for the bank link.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A block received from elsewhere (the bank link, a test vector).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// XORs `other` into `block` (a PIN field with a PAN field), for the
/// 16-byte format 4 and the 8-byte format 0 blocks alike.
pub(super) fn xor_into<const N: usize>(block: &mut [u8; N], other: &[u8; N]) {
    block.iter_mut().zip(other).for_each(|(a, b)| *a ^= b);
}

/// Packs nibbles (values 0-15) two to a byte into `out`, which is half as
/// long as `nibbles`.
pub(super) fn pack_into(nibbles: &[u8], out: &mut [u8]) {
    for (byte, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
}

/// Packs 32 nibbles into a 16-byte block.
fn pack(nibbles: &[u8; 32]) -> Zeroizing<[u8; 16]> {
    let mut out = Zeroizing::new([0u8; 16]);
    pack_into(nibbles, &mut out[..]);
    out
}

/// Writes the head of an ISO 9564 clear PIN field into `nibbles` (already
/// filled with the format's fill nibble): the `control` nibble (0 for
/// format 0, 4 for format 4), the PIN length, the PIN digits.
///
/// # Errors
/// [`PinBlockError::BadPin`] unless `pin` is 4-12 ASCII digits.
pub(super) fn write_pin_nibbles(
    pin: &[u8],
    control: u8,
    nibbles: &mut [u8],
) -> Result<(), PinBlockError> {
    if !(4..=12).contains(&pin.len()) || !pin.iter().all(u8::is_ascii_digit) {
        return Err(PinBlockError::BadPin);
    }
    nibbles[0] = control;
    nibbles[1] = pin.len() as u8;
    for (n, d) in nibbles[2..].iter_mut().zip(pin) {
        *n = d - b'0';
    }
    Ok(())
}

fn nibble(block: &[u8], i: usize) -> u8 {
    let b = block[i / 2];
    if i.is_multiple_of(2) {
        b >> 4
    } else {
        b & 0x0f
    }
}

fn pin_field(pin: &[u8], fill: [u8; 8]) -> Result<Zeroizing<[u8; 16]>, PinBlockError> {
    let mut nibbles = Zeroizing::new([0xAu8; 32]);
    write_pin_nibbles(pin, 4, &mut nibbles[..])?;
    let mut field = pack(&nibbles);
    field[8..].copy_from_slice(&fill);
    Ok(field)
}

fn pan_field(pan: &str) -> Result<[u8; 16], PinBlockError> {
    let digits = pan.as_bytes();
    if !(1..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinBlockError::BadPan);
    }
    let mut nibbles = [0u8; 32];
    nibbles[0] = digits.len().saturating_sub(12) as u8;
    let start = 1 + 12usize.saturating_sub(digits.len());
    for (n, d) in nibbles[start..].iter_mut().zip(digits) {
        *n = d - b'0';
    }
    Ok(*pack(&nibbles))
}

fn read_pin_field(field: &[u8; 16]) -> Result<Zeroizing<Vec<u8>>, PinBlockError> {
    read_pin_digits(field, 4, 0xA)
}

/// The PIN of a clear ISO 9564 PIN field whose first nibble is `format`:
/// control nibble, length nibble (4-12), the digits, then `fill` up to the
/// 16th nibble (format 4: `A`, format 0: `F`; a format 4 field's second
/// half is random and not checked).
pub(super) fn read_pin_digits(
    field: &[u8],
    format: u8,
    fill: u8,
) -> Result<Zeroizing<Vec<u8>>, PinBlockError> {
    let len = usize::from(nibble(field, 1));
    if nibble(field, 0) != format || !(4..=12).contains(&len) {
        return Err(PinBlockError::Invalid);
    }
    // Check every nibble before answering, so the time taken does not say
    // which check failed.
    let mut pin = Zeroizing::new(Vec::with_capacity(12));
    let mut ok = true;
    for i in 2..field.len() * 2 {
        let mut n = nibble(field, i);
        if i < 2 + len {
            ok &= n <= 9;
            pin.push(b'0' + n);
        } else if i < 16 {
            ok &= n == fill;
        }
        n.zeroize();
    }
    if ok {
        Ok(pin)
    } else {
        Err(PinBlockError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_key: &str) -> ZonePinKey {
        ZonePinKey::from_bytes(&hex::decode(hex_key).unwrap()).unwrap()
    }

    fn block(hex_block: &str) -> PinBlock {
        PinBlock::from_bytes(hex::decode(hex_block).unwrap().try_into().unwrap())
    }

    /// ANSI X9.24-3:2017 supplement test vectors ("Calculation of AES PIN
    /// Block Format 4"): PIN 1234 and PAN 4111111111111111 give the PIN field
    /// 441234AAAAAAAAAA‖random and the PAN field 4411111111111111 1000000000000000.
    /// As quoted in openemv/pinblock, test/pinblock_format4_test.c.
    #[test]
    fn x9_24_3_pin_and_pan_fields() {
        let fill = [0x55; 8];
        let field = pin_field(b"1234", fill).unwrap();
        assert_eq!(hex::encode_upper(&field[..8]), "441234AAAAAAAAAA");
        assert_eq!(field[8..], fill);
        assert_eq!(
            hex::encode_upper(pan_field("4111111111111111").unwrap()),
            "44111111111111111000000000000000"
        );
    }

    /// The PAN field for the other lengths: 18 digits (M = 6) from
    /// knovichikhin/psec tests/test_pinblock.py, and a PAN shorter than 12
    /// digits, right-justified in 12 with M = 0.
    #[test]
    fn pan_field_lengths() {
        assert_eq!(
            hex::encode_upper(pan_field("112233445566778899").unwrap()),
            "61122334455667788990000000000000"
        );
        assert_eq!(
            hex::encode_upper(pan_field("123456789").unwrap()),
            "00001234567890000000000000000000"
        );
        assert_eq!(pan_field(""), Err(PinBlockError::BadPan));
        assert_eq!(
            pan_field("12345678901234567890"),
            Err(PinBlockError::BadPan)
        );
        assert_eq!(pan_field("41111111111x1111"), Err(PinBlockError::BadPan));
    }

    /// ep2 (eft/pos 2000) Security Specification 8.0.0, §8.4 "PIN
    /// Encryption": AES-128 key C1D0…EF0D, PAN 432198765432109870, PIN 1234.
    /// As quoted in knovichikhin/psec, tests/test_pinblock.py.
    #[test]
    fn ep2_published_vector_deciphers() {
        let k = key("C1D0F8FB4958670DBA40AB1F3752EF0D");
        let b = block("CC17F65586BFD0953010226C4FC5B3CA");
        assert_eq!(&**b.decipher("432198765432109870", &k).unwrap(), b"1234");
    }

    /// Deterministic vector from knovichikhin/psec tests/test_pinblock.py
    /// (random half all FF): key 0011…EEFF, PIN 1234, PAN 1234567890123456789.
    #[test]
    fn psec_vector_enciphers_exactly() {
        let k = key("00112233445566778899AABBCCDDEEFF");
        let b =
            PinBlock::encipher_with_fill(b"1234", "1234567890123456789", &k, [0xFF; 8]).unwrap();
        assert_eq!(
            hex::encode_upper(b.as_bytes()),
            "28B41FDDD29B743E93124BD8E32D921E"
        );
        assert_eq!(&**b.decipher("1234567890123456789", &k).unwrap(), b"1234");
        // the short-PAN vector of the same file: PAN "1", PIN 123456
        let short = block("39B69B1B91FE05D48F7EF0D68EB2CBD6");
        assert_eq!(&**short.decipher("1", &k).unwrap(), b"123456");
    }

    #[test]
    fn round_trip_with_aes_256_and_fresh_randomness() {
        let k = ZonePinKey::from_bytes(&[9u8; 32]).unwrap();
        let pin = PinDigits::parse("805137").unwrap();
        let pan = CardNumber::parse("6222000000000017").unwrap();
        let a = PinBlock::from_pin(&pin, &pan, &k);
        let b = PinBlock::from_pin(&pin, &pan, &k);
        assert_ne!(a, b, "random fill makes every block different");
        assert_eq!(&**a.decipher(pan.expose(), &k).unwrap(), b"805137");
        assert_eq!(&**b.decipher(pan.expose(), &k).unwrap(), b"805137");
        for pin in ["1234", "12345", "123456789012"] {
            let blk = PinBlock::encipher(pin.as_bytes(), "6217000000000014", &k).unwrap();
            assert_eq!(
                &**blk.decipher("6217000000000014", &k).unwrap(),
                pin.as_bytes()
            );
        }
    }

    #[test]
    fn wrong_pan_key_or_tampering_fails() {
        let k = ZonePinKey::from_bytes(&[9u8; 32]).unwrap();
        let b = PinBlock::encipher(b"805137", "6222000000000017", &k).unwrap();
        assert_eq!(
            b.decipher("6222000000000025", &k),
            Err(PinBlockError::Invalid)
        );
        let other = ZonePinKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(
            b.decipher("6222000000000017", &other),
            Err(PinBlockError::Invalid)
        );
        for i in [0, 7, 15] {
            let mut bytes = *b.as_bytes();
            bytes[i] ^= 0x01;
            assert_eq!(
                PinBlock::from_bytes(bytes).decipher("6222000000000017", &k),
                Err(PinBlockError::Invalid),
                "byte {i}"
            );
        }
    }

    #[test]
    fn bad_fields_are_refused() {
        let k = ZonePinKey::from_bytes(&[9u8; 16]).unwrap();
        for pin in [&b"123"[..], b"1234567890123", b"12a4", b""] {
            assert_eq!(
                PinBlock::encipher(pin, "6222000000000017", &k),
                Err(PinBlockError::BadPin)
            );
        }
        assert_eq!(
            ZonePinKey::from_bytes(&[0u8; 20]).unwrap_err(),
            PinBlockError::BadKey
        );
        // a field with the wrong control nibble, length or fill, enciphered
        // properly, is still refused
        let pan = "6222000000000017";
        let encipher_raw = |field: [u8; 16]| {
            let mut b = field;
            k.encrypt(&mut b);
            xor_into(&mut b, &pan_field(pan).unwrap());
            k.encrypt(&mut b);
            PinBlock::from_bytes(b)
        };
        let good = *pin_field(b"1234", [0; 8]).unwrap();
        assert!(encipher_raw(good).decipher(pan, &k).is_ok());
        let mut control = good;
        control[0] = 0x34;
        let mut length = good;
        length[0] = 0x43;
        let mut fill = good;
        fill[7] = 0xAB;
        let mut digit = good;
        digit[1] = 0x1B;
        for bad in [control, length, fill, digit] {
            assert_eq!(
                encipher_raw(bad).decipher(pan, &k),
                Err(PinBlockError::Invalid)
            );
        }
    }

    #[test]
    fn debug_is_short_and_hides_keys() {
        let k = ZonePinKey::from_bytes(&[9u8; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "ZonePinKey(AES-256)");
        let b = block("CC17F65586BFD0953010226C4FC5B3CA");
        assert_eq!(format!("{b:?}"), "PinBlock(cc17f655…)");
    }
}
