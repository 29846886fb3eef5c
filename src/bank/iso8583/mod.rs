//! voicepay's ISO 8583 wire format, layered like mini-redis: [`spec`] (the
//! field table), [`Message`] (encode/decode with no IO), typed fields and
//! the response-code table ([`fields`]), and [`FrameCodec`] (the 2-byte
//! length prefix, as a `tokio_util` codec), the [`link`] that keeps a
//! signed-on connection to the acquirer host and multiplexes requests over
//! it. Above them: the [`Exchange`] seam to that transport (implemented by
//! [`Link`]), the [`Iso8583Issuer`] (the `IssuerLink` over it, with the
//! request journal) and the [`ReversalWorker`] (store-and-forward
//! reversals). The [`host`] is the server side: voicepay's own issuer host
//! (`voicepay bank serve`).
//!
//! Protocol sources: ISO 8583:1987 (message structure, field types, F90
//! layout, F25/F70 codes), and the `default` specification of the Python
//! library pyiso8583 4.0.1 (`iso8583/specs.py`), which any peer can use to
//! read our frames: binary primary/secondary bitmap, ASCII fields, F52 and
//! F64/F128 as 8 raw bytes. The README's "ISO 8583 wire format" section is
//! the interface document.
//!
//! Nothing here puts a PAN (other than masked), a PIN block, an expiry or
//! F61 into a `Debug` or an error: errors name the field, never its data.

mod exchange;
pub mod fields;
mod frame;
pub mod host;
mod issuer;
pub mod link;
mod message;
mod reversal;
pub mod spec;

pub use exchange::Exchange;
pub use fields::{
    CardholderAuth, EntryMode, F39Outcome, NetworkCode, ProcessingCode, ResponseCode,
    CONDITION_TELEPHONE_ORDER, CURRENCY_CNY, ECHOED_FIELDS, RESPONSE_ID_MISMATCH,
};
pub use frame::{FrameCodec, FrameError, DEFAULT_MAX_FRAME};
pub use issuer::{decision, Iso8583Issuer, Terminal, SECURITY_CONTROL_FORMAT0};
pub use link::{Link, LinkError, LinkSettings, LinkStatus, StanSource};
pub use message::{mask_pan, Message, Mti, Part};
pub use reversal::{ReversalRound, ReversalWorker};

/// Why a message could not be built, encoded or decoded. Errors name a
/// field and lengths, never the field's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The MTI is not four ASCII digits.
    #[error("the MTI is not four digits")]
    BadMti,
    /// The message ended inside `part`.
    #[error("truncated message: {part} needs {needed} bytes, {available} left")]
    Truncated {
        /// Where the bytes ran out.
        part: Part,
        /// Bytes the part needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A bitmap bit announces a field the interface does not have (bit 65,
    /// a third bitmap).
    #[error("bitmap bit {bit} is not a field of this interface")]
    UnknownBitmapBit {
        /// The bit (field number).
        bit: u8,
    },
    /// Field 0, 1, 65 or above 128 was set.
    #[error("field {field} is not a data element of this interface")]
    NoSuchField {
        /// The field number.
        field: u8,
    },
    /// A variable field (or its length prefix) is over the field's maximum.
    #[error("field {field}: {len} bytes is more than its maximum of {max}")]
    TooLong {
        /// The field number.
        field: u8,
        /// The length given.
        len: usize,
        /// The field's maximum.
        max: usize,
    },
    /// A fixed field has the wrong length.
    #[error("field {field}: {len} bytes where the field is exactly {expected}")]
    WrongLength {
        /// The field number.
        field: u8,
        /// The length given.
        len: usize,
        /// The fixed length.
        expected: usize,
    },
    /// A numeric (`n`) field holds something other than `0`–`9`.
    #[error("field {field}: a numeric field holds a non-digit")]
    NotNumeric {
        /// The field number.
        field: u8,
    },
    /// An ASCII field holds a byte above 0x7F.
    #[error("field {field}: not ASCII")]
    NotAscii {
        /// The field number.
        field: u8,
    },
    /// An LLVAR/LLLVAR length prefix is not ASCII digits.
    #[error("field {field}: the length prefix is not digits")]
    BadLengthPrefix {
        /// The field number.
        field: u8,
    },
    /// Bytes after the last field the bitmap announced.
    #[error("{count} bytes after the last field")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A typed value is out of its range (e.g. an amount over 12 digits).
    #[error("field {field}: value out of range")]
    OutOfRange {
        /// The field number.
        field: u8,
    },
}

#[cfg(test)]
mod tests;
