//! The message: an MTI, a bitmap and data elements, encoded and decoded
//! with no IO. Layout (ISO 8583:1987 as pyiso8583 4.0.1's `default` spec
//! reads it): 4 ASCII digits of MTI, an 8-byte binary primary bitmap, an
//! 8-byte binary secondary bitmap when bit 1 is set (any field 65–128),
//! then each present field in ascending order as [`super::spec`] says.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::Zeroizing;

use super::spec::{spec, Encoding, FieldSpec, LenType};
use super::CodecError;

/// A message type identifier: version `0` (ISO 8583:1987), class, function,
/// origin, as four ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

impl Mti {
    /// `0200` financial transaction request (a purchase, or a refund by its
    /// processing code).
    pub const FINANCIAL_REQUEST: Mti = Mti(*b"0200");
    /// `0210` financial transaction response.
    pub const FINANCIAL_RESPONSE: Mti = Mti(*b"0210");
    /// `0420` acquirer reversal advice.
    pub const REVERSAL_ADVICE: Mti = Mti(*b"0420");
    /// `0421` acquirer reversal advice, repeat.
    pub const REVERSAL_ADVICE_REPEAT: Mti = Mti(*b"0421");
    /// `0430` reversal advice response.
    pub const REVERSAL_RESPONSE: Mti = Mti(*b"0430");
    /// `0800` network management request (sign-on, echo).
    pub const NETWORK_REQUEST: Mti = Mti(*b"0800");
    /// `0810` network management response.
    pub const NETWORK_RESPONSE: Mti = Mti(*b"0810");

    /// Four ASCII digits.
    ///
    /// # Errors
    /// [`CodecError::BadMti`] for anything else.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        match <[u8; 4]>::try_from(bytes) {
            Ok(mti) if mti.iter().all(u8::is_ascii_digit) => Ok(Mti(mti)),
            _ => Err(CodecError::BadMti),
        }
    }

    /// The four digits, e.g. `"0200"`.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// What voicepay calls the types it speaks; `None` for others.
    pub fn name(&self) -> Option<&'static str> {
        Some(match &self.0 {
            b"0200" => "financial request",
            b"0210" => "financial response",
            b"0420" => "reversal advice",
            b"0421" => "reversal advice repeat",
            b"0430" => "reversal response",
            b"0800" => "network management request",
            b"0810" => "network management response",
            _ => return None,
        })
    }

    /// The MTI of the answer to this request or advice (`0200` → `0210`,
    /// `0420`/`0421` → `0430`, `0800` → `0810`); `None` when this is itself
    /// an answer.
    pub fn response(&self) -> Option<Mti> {
        let mut out = self.0;
        match out[2] {
            b'0' | b'2' => {
                out[2] += 1;
                out[3] = b'0';
                Some(Mti(out))
            }
            _ => None,
        }
    }

    /// Whether the message function (third digit) is a response (1) or an
    /// advice response (3).
    pub fn is_response(&self) -> bool {
        matches!(self.0[2], b'1' | b'3')
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields whose data is never shown: a `Debug` prints only their length.
/// (PAN fields are masked instead: first six and last four digits.)
const REDACTED: [u8; 7] = [14, 35, 36, 45, 52, 55, 61];
/// PAN fields, shown masked.
const PAN_FIELDS: [u8; 2] = [2, 34];
/// ISO 8583:1987's "Bitmap, extended": it announces a third bitmap (fields
/// 129–192), which voicepay's interface does not have.
const TERTIARY_BITMAP: u8 = 65;

/// One ISO 8583 message. Field data is kept as validated wire bytes (ASCII
/// text, or raw bytes for binary fields) and zeroized when dropped; every
/// setter checks the field against the spec, so [`Message::encode`] cannot
/// fail. `Debug` masks the PAN and hides the PIN block, the expiry, track
/// data and F61.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    mti: Mti,
    fields: BTreeMap<u8, Zeroizing<Vec<u8>>>,
}

impl Message {
    /// An empty message of this type.
    pub fn new(mti: Mti) -> Self {
        Self {
            mti,
            fields: BTreeMap::new(),
        }
    }

    /// The message type.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Sets data element `field` (2–128 except 65) to `data` (the text of
    /// an ASCII field, the bytes of a binary one).
    ///
    /// # Errors
    /// [`CodecError::NoSuchField`], [`CodecError::WrongLength`] (fixed
    /// fields), [`CodecError::TooLong`], [`CodecError::NotAscii`],
    /// [`CodecError::NotNumeric`]; the message is unchanged then.
    pub fn set(&mut self, field: u8, data: &[u8]) -> Result<&mut Self, CodecError> {
        let spec = match spec(field) {
            Some(s) if field != TERTIARY_BITMAP => s,
            _ => return Err(CodecError::NoSuchField { field }),
        };
        check(field, spec, data)?;
        self.fields.insert(field, Zeroizing::new(data.to_vec()));
        Ok(self)
    }

    /// [`Message::set`] with text.
    ///
    /// # Errors
    /// As [`Message::set`].
    pub fn set_text(&mut self, field: u8, text: &str) -> Result<&mut Self, CodecError> {
        self.set(field, text.as_bytes())
    }

    /// The data of `field`, if present.
    pub fn get(&self, field: u8) -> Option<&[u8]> {
        self.fields.get(&field).map(|d| d.as_slice())
    }

    /// The data of an ASCII `field` as text (`None` if absent or binary).
    pub fn text(&self, field: u8) -> Option<&str> {
        let spec = spec(field)?;
        if spec.encoding != Encoding::Ascii {
            return None;
        }
        self.get(field).and_then(|d| std::str::from_utf8(d).ok())
    }

    /// Whether `field` is present.
    pub fn has(&self, field: u8) -> bool {
        self.fields.contains_key(&field)
    }

    /// Removes `field`; whether it was present.
    pub fn remove(&mut self, field: u8) -> bool {
        self.fields.remove(&field).is_some()
    }

    /// The present fields, ascending.
    pub fn field_numbers(&self) -> impl Iterator<Item = u8> + '_ {
        self.fields.keys().copied()
    }

    /// The wire form (without the 2-byte length prefix, which
    /// [`super::FrameCodec`] adds).
    pub fn encode(&self) -> Vec<u8> {
        let mut bitmap = [0u8; 16];
        let secondary = self.fields.keys().any(|&f| f > 64);
        if secondary {
            bitmap[0] |= 0x80;
        }
        for &f in self.fields.keys() {
            let i = usize::from(f - 1);
            bitmap[i / 8] |= 0x80 >> (i % 8);
        }
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.mti.0);
        out.extend_from_slice(&bitmap[..if secondary { 16 } else { 8 }]);
        for (&f, data) in &self.fields {
            let Some(spec) = spec(f) else { continue };
            let digits = spec.len_type.prefix_digits();
            if digits > 0 {
                out.extend_from_slice(format!("{:0digits$}", data.len()).as_bytes());
            }
            out.extend_from_slice(data);
        }
        out
    }

    /// Reads one message (the frame without its length prefix).
    ///
    /// # Errors
    /// [`CodecError::Truncated`], [`CodecError::BadMti`],
    /// [`CodecError::UnknownBitmapBit`], [`CodecError::BadLengthPrefix`],
    /// [`CodecError::TooLong`], [`CodecError::NotAscii`],
    /// [`CodecError::NotNumeric`], [`CodecError::TrailingBytes`]. Never
    /// panics, whatever the bytes.
    pub fn decode(raw: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { raw, pos: 0 };
        let mti = Mti::parse(r.take(4, Part::Mti)?)?;
        let mut bitmap = [0u8; 16];
        bitmap[..8].copy_from_slice(r.take(8, Part::PrimaryBitmap)?);
        if bitmap[0] & 0x80 != 0 {
            bitmap[8..].copy_from_slice(r.take(8, Part::SecondaryBitmap)?);
        }
        let mut msg = Message::new(mti);
        for field in 2..=128u8 {
            let i = usize::from(field - 1);
            if bitmap[i / 8] & (0x80 >> (i % 8)) == 0 {
                continue;
            }
            let spec = match spec(field) {
                Some(s) if field != TERTIARY_BITMAP => s,
                _ => return Err(CodecError::UnknownBitmapBit { bit: field }),
            };
            let data = read_field(&mut r, field, spec)?;
            check(field, spec, data)?;
            msg.fields.insert(field, Zeroizing::new(data.to_vec()));
        }
        match raw.len() - r.pos {
            0 => Ok(msg),
            count => Err(CodecError::TrailingBytes { count }),
        }
    }
}

fn read_field<'a>(r: &mut Reader<'a>, field: u8, spec: &FieldSpec) -> Result<&'a [u8], CodecError> {
    let len = match spec.len_type {
        LenType::Fixed => spec.max_len,
        lt => {
            let prefix = r.take(lt.prefix_digits(), Part::Field(field))?;
            if !prefix.iter().all(u8::is_ascii_digit) {
                return Err(CodecError::BadLengthPrefix { field });
            }
            let len = prefix
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            if len > spec.max_len {
                return Err(CodecError::TooLong {
                    field,
                    len,
                    max: spec.max_len,
                });
            }
            len
        }
    };
    r.take(len, Part::Field(field))
}

/// Checks `data` against the field's spec; errors name the field, never the
/// data.
fn check(field: u8, spec: &FieldSpec, data: &[u8]) -> Result<(), CodecError> {
    let len = data.len();
    match spec.len_type {
        LenType::Fixed if len != spec.max_len => {
            return Err(CodecError::WrongLength {
                field,
                len,
                expected: spec.max_len,
            });
        }
        _ if len > spec.max_len => {
            return Err(CodecError::TooLong {
                field,
                len,
                max: spec.max_len,
            });
        }
        _ => {}
    }
    if spec.encoding == Encoding::Ascii {
        if !data.is_ascii() {
            return Err(CodecError::NotAscii { field });
        }
        if spec.numeric && !data.iter().all(u8::is_ascii_digit) {
            return Err(CodecError::NotNumeric { field });
        }
    }
    Ok(())
}

/// Where in a message a read ran out of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The 4-digit MTI.
    Mti,
    /// The primary bitmap.
    PrimaryBitmap,
    /// The secondary bitmap (bit 1 was set).
    SecondaryBitmap,
    /// A data element (its length prefix or its data).
    Field(u8),
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Mti => f.write_str("the MTI"),
            Part::PrimaryBitmap => f.write_str("the primary bitmap"),
            Part::SecondaryBitmap => f.write_str("the secondary bitmap"),
            Part::Field(n) => write!(f, "field {n}"),
        }
    }
}

struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, part: Part) -> Result<&'a [u8], CodecError> {
        let available = self.raw.len() - self.pos;
        if n > available {
            return Err(CodecError::Truncated {
                part,
                needed: n,
                available,
            });
        }
        let out = &self.raw[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
}

/// First six and last four of a PAN, the rest `*`; all `*` when too short
/// to mask safely (under 13 digits).
pub fn mask_pan(pan: &[u8]) -> String {
    if pan.len() < 13 {
        return "*".repeat(pan.len());
    }
    crate::domain::mask(&String::from_utf8_lossy(pan), 6, 4)
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Shown<'a>(u8, &'a [u8]);
        impl fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Shown(field, data) = *self;
                if REDACTED.contains(&field) {
                    write!(f, "<{} bytes redacted>", data.len())
                } else if PAN_FIELDS.contains(&field) {
                    write!(f, "{:?}", mask_pan(data))
                } else if spec(field).is_some_and(|s| s.encoding == Encoding::Binary) {
                    write!(f, "{}", hex::encode_upper(data))
                } else {
                    write!(f, "{:?}", String::from_utf8_lossy(data))
                }
            }
        }
        let mut map = f.debug_map();
        map.entry(&"mti", &self.mti);
        for (&field, data) in &self.fields {
            map.entry(&field, &Shown(field, data));
        }
        map.finish()
    }
}
