//! Framing: each message is preceded by its length as 2 bytes, big-endian
//! (the length of the message alone, not counting the prefix); no TPDU.

use tokio_util::bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{CodecError, Message};

/// The default largest message accepted or sent, in bytes. voicepay's own
/// messages are a few hundred bytes; a peer's may carry long private fields.
pub const DEFAULT_MAX_FRAME: usize = 8192;

/// The 2-byte length prefix can say at most this.
const PREFIX_MAX: usize = u16::MAX as usize;

/// A connection-level failure: after it the byte stream cannot be trusted,
/// so the link drops the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading or writing the socket failed.
    #[error("ISO 8583 connection: {0}")]
    Io(#[from] std::io::Error),
    /// A length prefix over the configured maximum (or a message to send
    /// that is over it).
    #[error("ISO 8583 frame of {len} bytes is over the maximum of {max}")]
    TooLarge {
        /// The announced (or encoded) length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A zero length prefix: no message can be empty.
    #[error("ISO 8583 frame of length 0")]
    Empty,
}

/// `tokio_util` codec for `Framed<TcpStream, FrameCodec>`: it yields one
/// item per frame, `Ok(Message)` or `Err(CodecError)` for a frame that does
/// not decode, so one bad message is reported without losing the
/// connection (the prefix already told where the next one starts). Frames
/// over `max_frame` bytes, or of length 0, end the stream with a
/// [`FrameError`].
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec accepting and sending messages of at most `max_frame` bytes
    /// (capped at 65535, all the prefix can say).
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.min(PREFIX_MAX),
        }
    }

    /// The largest message length accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Message, CodecError>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < 2 + len {
            src.reserve(2 + len - src.len());
            return Ok(None);
        }
        src.advance(2);
        let frame = src.split_to(len);
        Ok(Some(Message::decode(&frame)))
    }
}

impl Encoder<Message> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&msg, dst)
    }
}

impl Encoder<&Message> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        let raw = zeroize::Zeroizing::new(msg.encode());
        if raw.len() > self.max_frame {
            return Err(FrameError::TooLarge {
                len: raw.len(),
                max: self.max_frame,
            });
        }
        dst.reserve(2 + raw.len());
        // Fits: max_frame <= 65535.
        dst.put_u16(raw.len() as u16);
        dst.put_slice(&raw);
        Ok(())
    }
}
