//! The field table: every data element's length type, maximum length and
//! encoding, exactly as the `default` specification of the Python library
//! pyiso8583 4.0.1 (`iso8583/specs.py`, MIT) declares it, which is the
//! ISO 8583:1987 layout with a binary bitmap and ASCII fields. The
//! `numeric` flag adds what pyiso8583 does not check: ISO 8583:1987 types
//! these fields `n`, so a byte other than `0`–`9` is refused both ways.

/// How a field's length is carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenType {
    /// Always exactly `max_len` bytes, no prefix.
    Fixed,
    /// Two ASCII digits giving the byte count (00–99), then the data.
    LlVar,
    /// Three ASCII digits giving the byte count (000–999), then the data.
    LllVar,
}

impl LenType {
    /// The number of ASCII length digits before the data (0 for fixed).
    pub fn prefix_digits(self) -> usize {
        match self {
            LenType::Fixed => 0,
            LenType::LlVar => 2,
            LenType::LllVar => 3,
        }
    }
}

/// How a field's data bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// ASCII text (bytes 0x00–0x7F); pyiso8583's `ascii`.
    Ascii,
    /// Raw bytes (pyiso8583's `b`; its dict shows them as a hex string).
    Binary,
}

/// One data element of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Fixed, LLVAR or LLLVAR.
    pub len_type: LenType,
    /// The fixed length, or the maximum for a variable field, in bytes.
    pub max_len: usize,
    /// ASCII or binary data.
    pub encoding: Encoding,
    /// ISO 8583:1987 type `n`: digits only.
    pub numeric: bool,
    /// pyiso8583's description of the field.
    pub desc: &'static str,
}

use Encoding::{Ascii as A, Binary as B};
use LenType::{Fixed as F, LlVar as LL, LllVar as LLL};

const fn f(
    len_type: LenType,
    max_len: usize,
    encoding: Encoding,
    numeric: bool,
    desc: &'static str,
) -> FieldSpec {
    FieldSpec {
        len_type,
        max_len,
        encoding,
        numeric,
        desc,
    }
}

/// Fields 2 to 128, in order (index 0 is field 2). Field 1 (the secondary
/// bitmap) is not a data element here: the bitmap code handles it.
static FIELDS: [FieldSpec; 127] = [
    f(LL, 19, A, true, "Primary Account Number (PAN)"),
    f(F, 6, A, true, "Processing Code"),
    f(F, 12, A, true, "Amount, Transaction"),
    f(F, 12, A, true, "Amount, Settlement"),
    f(F, 12, A, true, "Amount, Cardholder Billing"),
    f(F, 10, A, true, "Transmission Date and Time"),
    f(F, 8, A, true, "Amount, Cardholder Billing Fee"),
    f(F, 8, A, true, "Conversion Rate, Settlement"),
    f(F, 8, A, true, "Conversion Rate, Cardholder Billing"),
    f(F, 6, A, true, "System Trace Audit Number"),
    f(F, 6, A, true, "Time, Local Transaction"),
    f(F, 4, A, true, "Date, Local Transaction"),
    f(F, 4, A, true, "Date, Expiration"),
    f(F, 4, A, true, "Date, Settlement"),
    f(F, 4, A, true, "Date, Conversion"),
    f(F, 4, A, true, "Date, Capture"),
    f(F, 4, A, true, "Merchant Type"),
    f(F, 3, A, true, "Acquiring Institution Country Code"),
    f(F, 3, A, true, "PAN Country Code"),
    f(F, 3, A, true, "Forwarding Institution Country Code"),
    f(F, 3, A, true, "Point-of-Service Entry Mode"),
    f(F, 3, A, true, "PAN Sequence Number"),
    f(F, 3, A, true, "Network International ID (NII)"),
    f(F, 2, A, true, "Point-of-Service Condition Code"),
    f(F, 2, A, true, "Point-of-Service Capture Code"),
    f(F, 1, A, true, "Authorizing ID Response Length"),
    f(F, 9, A, false, "Amount, Transaction Fee"),
    f(F, 9, A, false, "Amount, Settlement Fee"),
    f(F, 9, A, false, "Amount, Transaction Processing Fee"),
    f(F, 9, A, false, "Amount, Settlement Processing Fee"),
    f(LL, 11, A, true, "Acquiring Institution ID Code"),
    f(LL, 11, A, true, "Forwarding Institution ID Code"),
    f(LL, 28, A, false, "Primary Account Number, Extended"),
    f(LL, 37, A, false, "Track 2 Data"),
    f(LLL, 104, A, false, "Track 3 Data"),
    f(F, 12, A, false, "Retrieval Reference Number"),
    f(F, 6, A, false, "Authorization ID Response"),
    f(F, 2, A, false, "Response Code"),
    f(F, 3, A, false, "Service Restriction Code"),
    f(F, 8, A, false, "Card Acceptor Terminal ID"),
    f(F, 15, A, false, "Card Acceptor ID Code"),
    f(F, 40, A, false, "Card Acceptor Name/Location"),
    f(LL, 25, A, false, "Additional Response Data"),
    f(LL, 76, A, false, "Track 1 Data"),
    f(LLL, 999, A, false, "Additional Data - ISO"),
    f(LLL, 999, A, false, "Additional Data - National"),
    f(LLL, 999, A, false, "Additional Data - Private"),
    f(F, 3, A, true, "Currency Code, Transaction"),
    f(F, 3, A, true, "Currency Code, Settlement"),
    f(F, 3, A, true, "Currency Code, Cardholder Billing"),
    f(F, 8, B, false, "PIN"),
    f(F, 16, A, true, "Security-Related Control Information"),
    f(LLL, 240, A, false, "Additional Amounts"),
    f(LLL, 255, B, false, "ICC data"),
    f(LLL, 999, A, false, "Reserved ISO"),
    f(LLL, 999, A, false, "Reserved National"),
    f(LLL, 999, A, false, "Reserved National"),
    f(LLL, 999, A, false, "Reserved National"),
    f(LLL, 999, A, false, "Reserved National"),
    f(LLL, 999, A, false, "Reserved Private"),
    f(LLL, 999, A, false, "Reserved Private"),
    f(LLL, 999, A, false, "Reserved Private"),
    f(F, 8, B, false, "MAC"),
    f(F, 8, B, false, "Bitmap, Extended"),
    f(F, 1, A, true, "Settlement Code"),
    f(F, 2, A, true, "Extended Payment Code"),
    f(F, 3, A, true, "Receiving Institution Country Code"),
    f(F, 3, A, true, "Settlement Institution Country Code"),
    f(F, 3, A, true, "Network Management Information Code"),
    f(F, 4, A, true, "Message Number"),
    f(F, 4, A, true, "Message Number, Last"),
    f(F, 6, A, true, "Date, Action"),
    f(F, 10, A, true, "Credits, Number"),
    f(F, 10, A, true, "Credits, Reversal Number"),
    f(F, 10, A, true, "Debits, Number"),
    f(F, 10, A, true, "Debits, Reversal Number"),
    f(F, 10, A, true, "Transfer, Number"),
    f(F, 10, A, true, "Transfer, Reversal Number"),
    f(F, 10, A, true, "Inquiries, Number"),
    f(F, 10, A, true, "Authorizations, Number"),
    f(F, 12, A, true, "Credits, Processing Fee Amount"),
    f(F, 12, A, true, "Credits, Transaction Fee Amount"),
    f(F, 12, A, true, "Debits, Processing Fee Amount"),
    f(F, 12, A, true, "Debits, Transaction Fee Amount"),
    f(F, 16, A, true, "Credits, Amount"),
    f(F, 16, A, true, "Credits, Reversal Amount"),
    f(F, 16, A, true, "Debits, Amount"),
    f(F, 16, A, true, "Debits, Reversal Amount"),
    f(F, 42, A, true, "Original Data Elements"),
    f(F, 1, A, false, "File Update Code"),
    f(F, 2, A, false, "File Security Code"),
    f(F, 5, A, false, "Response Indicator"),
    f(F, 7, A, false, "Service Indicator"),
    f(F, 42, A, false, "Replacement Amounts"),
    f(F, 8, B, false, "Message Security Code"),
    f(F, 17, A, false, "Amount, Net Settlement"),
    f(F, 25, A, false, "Payee"),
    f(LL, 11, A, true, "Settlement Institution ID Code"),
    f(LL, 11, A, true, "Receiving Institution ID Code"),
    f(LL, 17, A, false, "File Name"),
    f(LL, 28, A, false, "Account ID 1"),
    f(LL, 28, A, false, "Account ID 2"),
    f(LLL, 100, A, false, "Transaction Description"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for ISO Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for National Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(LLL, 999, A, false, "Reserved for Private Use"),
    f(F, 8, B, false, "MAC"),
];

/// The specification of data element `field` (2–128); `None` for field 0,
/// field 1 (the secondary bitmap) and anything above 128.
pub fn spec(field: u8) -> Option<&'static FieldSpec> {
    match field {
        2..=128 => Some(&FIELDS[usize::from(field) - 2]),
        _ => None,
    }
}
