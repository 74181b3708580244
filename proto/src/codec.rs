//! Framing of one message into one ZeroMQ frame: a version prefix, then postcard.

use serde::{de::DeserializeOwned, Serialize};

/// The protocol version carried by every frame, as a big-endian `u16` before the body.
///
/// Bump it on any change other than adding an enum variant at the end.
pub const PROTOCOL_VERSION: u16 = 4;

/// The largest frame (prefix and body, in bytes) that [`decode`] accepts: 1 MiB.
///
/// Output chunks are at most [`crate::MAX_OUTPUT_CHUNK`] (64 KiB), so every well-formed
/// message is far below this; anything larger is refused before it is decoded.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

const PREFIX: usize = 2;

/// Why a frame could not be decoded. Every variant is a property of the bytes received;
/// none of them is fatal to the receiver, which should log it and keep serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is longer than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes is over the maximum of {max} bytes")]
    TooLarge {
        /// Length of the frame received, bytes.
        len: usize,
        /// The limit, bytes ([`MAX_FRAME_BYTES`]).
        max: usize,
    },
    /// The frame is too short to hold the version prefix.
    #[error("frame of {len} bytes is too short for the 2-byte version prefix")]
    Truncated {
        /// Length of the frame received, bytes.
        len: usize,
    },
    /// The frame comes from another protocol version; upgrade the older side.
    #[error("frame is protocol version {got}, this side speaks version {expected}; run the same Nerve version on both sides")]
    Version {
        /// Version found in the frame's prefix.
        got: u16,
        /// [`PROTOCOL_VERSION`].
        expected: u16,
    },
    /// The body is not a valid message of the expected kind (garbage, or cut short).
    #[error("frame body is not a valid message: {0}")]
    Corrupt(String),
    /// A valid message was followed by extra bytes.
    #[error("frame has {0} bytes after the end of the message")]
    TrailingBytes(usize),
}

/// The length of [`encode`]`(msg)` in bytes, counted without encoding or allocating.
///
/// # Panics
/// As [`encode`]: never for Nerve's own message types.
pub fn encoded_len<T: Serialize>(msg: &T) -> usize {
    #[allow(clippy::expect_used)]
    let body = postcard::experimental::serialized_size(msg).expect("Nerve's message types always serialize");
    PREFIX + body
}

/// Encodes `msg` as one frame: `[PROTOCOL_VERSION as u16 BE][postcard(msg)]`.
///
/// # Panics
/// Never for Nerve's own message types: postcard serialization into a `Vec` only fails for
/// types serde cannot describe (such as maps with unknown length), which this crate has none of.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    #[allow(clippy::expect_used)]
    postcard::to_io(msg, &mut out).expect("postcard encodes Nerve's message types into a Vec");
    out
}

/// Decodes one frame made by [`encode`].
///
/// # Errors
/// [`DecodeError`]: the size is checked first, then the version prefix, then the body.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let Some((prefix, body)) = frame.split_first_chunk::<PREFIX>() else {
        return Err(DecodeError::Truncated { len: frame.len() });
    };
    let got = u16::from_be_bytes(*prefix);
    if got != PROTOCOL_VERSION {
        return Err(DecodeError::Version {
            got,
            expected: PROTOCOL_VERSION,
        });
    }
    let (msg, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}
