//! ISO 9564-1 format 0 PIN blocks under a double-length TDES zone PIN key,
//! the form the ISO 8583 acquirer link carries in F52, and the one audited
//! translation from voicepay's own AES format 4 blocks into it.
//!
//! Format 0 (ISO 9564-1:2017 §9.3.2, also "ANSI X9.8 / ISO-0"), 64 bits:
//!
//! - PIN field, 16 nibbles: control `0`, PIN length N (4-12), the N PIN
//!   digits, fill `F` up to nibble 16;
//! - PAN field, 16 nibbles: `0000`, then the rightmost 12 digits of the PAN
//!   excluding its check digit (so the PAN must have 13 to 19 digits);
//! - enciphered block = TDES-EDE2-ECB(ZPK, PIN field XOR PAN field).
//!
//! In production this translation (decipher under one zone key, re-encipher
//! under another, never showing the PIN) is what a payment HSM does, e.g.
//! Thales payShield's `CA` "translate a PIN from TPK to ZPK" or `CC` "ZPK to
//! ZPK" commands. voicepay does it in-process in
//! [`translate_format4_to_format0`], the only code that ever holds a clear
//! PIN field of either format: every intermediate (the clear format 4 field,
//! the PIN digits, the clear format 0 block) sits in [`Scratch`], which is
//! wiped before the function returns, on success and on every error.

use super::pinblock::{
    pack_into, read_pin_digits, write_pin_nibbles, xor_into, PinBlock, PinBlockError, ZonePinKey,
};
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde2;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::config::zpk_bytes;
pub use crate::config::ZpkError;

/// A double-length (112-bit, 2-key, K1‖K2) TDES zone PIN key shared with
/// the acquirer, with the id both sides know it by.
///
/// Accepted only as 32 hex digits whose halves differ and whose every byte
/// has odd parity: ANSI X9.24-1 and ISO 11568 define DES key bytes with odd
/// parity, payment HSMs refuse to import a key without it, and a mistyped
/// hex digit breaks it, so a typo is caught at start-up rather than as
/// "wrong PIN" on every payment. Equal halves are refused because
/// TDES(K‖K) is single DES. The key schedule is wiped on drop (`des` with
/// its `zeroize` feature), for every clone; `Debug` shows the id and the
/// check value only.
#[derive(Clone)]
pub struct Zpk {
    id: String,
    cipher: TdesEde2,
    kcv: String,
}

impl Zpk {
    /// The key `id` (1-32 of `A-Za-z0-9-_`) from 32 hex digits (either case).
    pub fn from_hex(id: &str, hex_key: &str) -> Result<Self, ZpkError> {
        let raw = zpk_bytes(id, hex_key)?;
        let cipher = TdesEde2::new_from_slice(&*raw).expect("16 bytes");
        let mut block = GenericArray::from([0u8; 8]);
        cipher.encrypt_block(&mut block);
        Ok(Self {
            id: id.to_owned(),
            cipher,
            kcv: hex::encode_upper(&block[..3]),
        })
    }

    /// The key id (`bank.iso8583.zone_pin_key_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key check value: the first 3 bytes, as 6 upper-case hex digits,
    /// of the key TDES-encrypting an all-zero 8-byte block (ANSI X9.24-1
    /// "key check value", the KCV that HSMs and key custodians print). Safe
    /// to log and to compare with the acquirer's key form.
    pub fn kcv(&self) -> &str {
        &self.kcv
    }

    fn encrypt(&self, block: &mut [u8; 8]) {
        self.cipher
            .encrypt_block(GenericArray::from_mut_slice(block));
    }

    fn decrypt(&self, block: &mut [u8; 8]) {
        self.cipher
            .decrypt_block(GenericArray::from_mut_slice(block));
    }
}

impl std::fmt::Debug for Zpk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Zpk(id={}, kcv={})", self.id, self.kcv)
    }
}

/// Checks the shape [`Zpk::from_hex`] accepts on 16 raw bytes: halves differ,
/// every byte has odd parity.
/// An enciphered ISO 9564 format 0 PIN block (8 bytes, the F52 of an ISO
/// 8583 request). Safe to hold: without the ZPK and the PAN it says nothing
/// about the PIN. Unlike format 4 it has no random part, so the same PIN on
/// the same card under the same key always gives the same block. `Debug`
/// shows only the first two bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PinBlock0([u8; 8]);

impl std::fmt::Debug for PinBlock0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinBlock0({}…)", hex::encode(&self.0[..2]))
    }
}

impl PinBlock0 {
    /// The 8 enciphered bytes, for F52.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// A block received from elsewhere (F52 of a request, a test vector).
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// Enciphers `pin` (4-12 ASCII digits) for `pan` (13-19 ASCII digits)
    /// under `zpk`: the issuer side's and the tests' way to make a block;
    /// the acquirer side uses [`translate_format4_to_format0`].
    pub fn encipher(pin: &[u8], pan: &str, zpk: &Zpk) -> Result<Self, PinBlockError> {
        let mut block = pin_field0(pin)?;
        xor_into(&mut block, &pan_field0(pan)?);
        zpk.encrypt(&mut block);
        Ok(Self(*block))
    }

    /// The PIN as ASCII digits, wiped on drop, after checking that the block
    /// deciphers under `zpk` for `pan` to a well-formed format 0 PIN field
    /// (control 0, length 4-12, digits 0-9, fill F). The stub issuer host
    /// uses this to check the PIN of an ISO 8583 purchase.
    ///
    /// Errors: [`PinBlockError::BadPan`] for a PAN that is not 13-19 digits,
    /// [`PinBlockError::Invalid`] for a wrong key, a wrong PAN or a block
    /// that is not format 0 (indistinguishable on purpose).
    pub fn decipher(&self, pan: &str, zpk: &Zpk) -> Result<Zeroizing<Vec<u8>>, PinBlockError> {
        let pan_field = pan_field0(pan)?;
        let mut block = Zeroizing::new(self.0);
        zpk.decrypt(&mut block);
        xor_into(&mut block, &pan_field);
        read_pin_field0(&block)
    }

    /// Whether the block carries `expected_pin` for `pan` under `zpk`,
    /// compared in constant time. `false` for any block that does not
    /// decipher (see [`PinBlock0::decipher`]).
    pub fn verify(&self, pan: &str, zpk: &Zpk, expected_pin: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.decipher(pan, zpk)
            .is_ok_and(|pin| bool::from(pin.as_slice().ct_eq(expected_pin)))
    }
}

/// Every clear intermediate of one translation, wiped on drop and at the end
/// of [`translate_with`].
#[derive(Default, Zeroize, ZeroizeOnDrop)]
struct Scratch {
    /// The PIN digits (ASCII) recovered from format 4, `len` of them.
    pin: [u8; 12],
    len: usize,
    /// The clear format 0 block (PIN field XOR PAN field) before TDES.
    clear0: [u8; 8],
}

/// Re-enciphers a format 4 PIN block (AES, under voicepay's own
/// `crypto.zone_pin_key`) as a format 0 block under the acquirer's TDES
/// `zpk`, for the same `pan` (13-19 ASCII digits: the card number of the
/// order). This is the in-process stand-in for an HSM's PIN translation
/// (see the module documentation); the clear PIN never leaves this function
/// and every clear buffer is wiped before it returns.
///
/// Errors: [`PinBlockError::BadPan`] for a PAN that is not 13-19 digits;
/// [`PinBlockError::Invalid`] when `block4` does not decipher under `from`
/// for `pan` (wrong key, wrong PAN, tampered block).
pub fn translate_format4_to_format0(
    block4: &PinBlock,
    from: &ZonePinKey,
    pan: &str,
    zpk: &Zpk,
) -> Result<PinBlock0, PinBlockError> {
    let mut scratch = Scratch::default();
    translate_with(&mut scratch, block4, from, pan, zpk)
}

/// [`translate_format4_to_format0`] with the scratch space given, so a test
/// can check that it is wiped.
fn translate_with(
    s: &mut Scratch,
    block4: &PinBlock,
    from: &ZonePinKey,
    pan: &str,
    zpk: &Zpk,
) -> Result<PinBlock0, PinBlockError> {
    let out = (|| {
        let pan_field = pan_field0(pan)?;
        // `decipher` wipes its own clear format 4 field; the digits it
        // returns are wiped when `pin` drops at the end of this block.
        let pin = block4.decipher(pan, from)?;
        s.len = pin.len();
        s.pin[..s.len].copy_from_slice(&pin);
        drop(pin);
        fill_pin_field0(&s.pin[..s.len], &mut s.clear0)?;
        xor_into(&mut s.clear0, &pan_field);
        let mut block = s.clear0;
        zpk.encrypt(&mut block);
        Ok(PinBlock0(block))
    })();
    s.zeroize();
    out
}

/// The clear format 0 PIN field of `pin` (4-12 ASCII digits).
fn pin_field0(pin: &[u8]) -> Result<Zeroizing<[u8; 8]>, PinBlockError> {
    let mut field = Zeroizing::new([0u8; 8]);
    fill_pin_field0(pin, &mut field)?;
    Ok(field)
}

fn fill_pin_field0(pin: &[u8], field: &mut [u8; 8]) -> Result<(), PinBlockError> {
    let mut nibbles = Zeroizing::new([0xFu8; 16]);
    write_pin_nibbles(pin, 0, &mut nibbles[..])?;
    pack_into(&nibbles[..], field);
    Ok(())
}

/// The format 0 PAN field: `0000` and the 12 digits before the check digit.
fn pan_field0(pan: &str) -> Result<[u8; 8], PinBlockError> {
    let digits = pan.as_bytes();
    if !(13..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PinBlockError::BadPan);
    }
    let twelve = &digits[digits.len() - 13..digits.len() - 1];
    let mut field = [0u8; 8];
    for (i, pair) in twelve.chunks(2).enumerate() {
        field[2 + i] = (pair[0] - b'0') << 4 | (pair[1] - b'0');
    }
    Ok(field)
}

fn read_pin_field0(field: &[u8; 8]) -> Result<Zeroizing<Vec<u8>>, PinBlockError> {
    read_pin_digits(field, 0, 0xF)
}

#[cfg(test)]
#[path = "format0_tests.rs"]
mod tests;
