//! Framing of one message into one ZeroMQ frame: a version prefix, then postcard.

use serde::{de::DeserializeOwned, Serialize};

/// The protocol version carried by every frame, as a big-endian `u16` before the body.
///
/// Bump it on any change other than adding an enum variant at the end.
pub const PROTOCOL_VERSION: u16 = 5;

/// The largest frame (prefix and body, in bytes) that [`decode`] accepts: 1 MiB.
///
/// Output chunks are at most [`crate::MAX_OUTPUT_CHUNK`] (256 KiB), so every well-formed
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
    // Sized once (a walk of the message, no copy): an output event's bytes are copied into the
    // frame once, not into a buffer that grows.
    let mut out = Vec::with_capacity(encoded_len(msg));
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

/// An output event seen in its frame without decoding it: where its bytes are, so a receiver
/// can use them in place (the center writes them to the output file from the frame it read;
/// [`decode`] would copy them into a `Vec` first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputView {
    /// The event's seq.
    pub seq: u64,
    /// The event's time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Which stream.
    pub stream: crate::Stream,
    /// Where the output bytes are in the frame: always up to its end.
    pub data: std::ops::Range<usize>,
}

/// Postcard's variant index of `WatcherMsg::Event` and of `EventKind::Output` (their places in
/// the enums, counted from 0); a unit test holds them to what [`encode`] writes.
const EVENT_VARIANT: u64 = 1;
const OUTPUT_VARIANT: u64 = 1;

/// One LEB128 varint (postcard's encoding of integers, lengths and variant indexes) from
/// `frame` at `*at`, moving `*at` past it.
fn varint(frame: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *frame.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The [`OutputView`] of `frame` when it is a `WatcherMsg::Event` of an `EventKind::Output`
/// of this [`PROTOCOL_VERSION`] whose bytes run exactly to the frame's end, within
/// [`MAX_FRAME_BYTES`]; `None` for any other frame (which [`decode`] then judges). Exactly
/// what [`decode`] would give for such a frame, without the copy.
pub fn peek_output(frame: &[u8]) -> Option<OutputView> {
    if frame.len() > MAX_FRAME_BYTES || frame.get(..PREFIX)? != PROTOCOL_VERSION.to_be_bytes() {
        return None;
    }
    let mut at = PREFIX;
    if varint(frame, &mut at)? != EVENT_VARIANT {
        return None;
    }
    let seq = varint(frame, &mut at)?;
    let time_ms = varint(frame, &mut at)?;
    if varint(frame, &mut at)? != OUTPUT_VARIANT {
        return None;
    }
    let stream = match varint(frame, &mut at)? {
        0 => crate::Stream::Stdout,
        1 => crate::Stream::Stderr,
        _ => return None,
    };
    let len = usize::try_from(varint(frame, &mut at)?).ok()?;
    (frame.len().checked_sub(at)? == len).then_some(OutputView {
        seq,
        time_ms,
        stream,
        data: at..frame.len(),
    })
}

/// Room an output buffer keeps in front of its bytes for [`output_frame`] to write the frame's
/// header there: 40 bytes (the prefix, two variant indexes, the stream and four varints of at
/// most 10 bytes each would be 35).
pub const OUTPUT_HEADROOM: usize = 40;

/// Appends `value` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The frame of an output event, built around its bytes where they are: `buf` holds
/// [`OUTPUT_HEADROOM`] bytes of room, then the output; the header is written at the end of the
/// room and the frame is `buf[start..]`. Returns `buf` and `start`. The same bytes as
/// [`encode`] of `WatcherMsg::Event(Event { seq, time_ms, kind: EventKind::Output { stream,
/// data } })`, without copying `data` (the watcher reads the child's pipe straight into `buf`).
///
/// # Panics
/// When `buf` is shorter than [`OUTPUT_HEADROOM`].
pub fn output_frame(seq: u64, time_ms: u64, stream: crate::Stream, mut buf: Vec<u8>) -> (Vec<u8>, usize) {
    let len = buf.len() - OUTPUT_HEADROOM;
    let mut head = Vec::with_capacity(OUTPUT_HEADROOM);
    head.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    put_varint(&mut head, EVENT_VARIANT);
    put_varint(&mut head, seq);
    put_varint(&mut head, time_ms);
    put_varint(&mut head, OUTPUT_VARIANT);
    put_varint(&mut head, stream as u64);
    put_varint(&mut head, len as u64);
    let start = OUTPUT_HEADROOM - head.len();
    buf[start..OUTPUT_HEADROOM].copy_from_slice(&head);
    (buf, start)
}

#[cfg(test)]
mod peek_tests {
    use super::*;
    use crate::{Event, EventKind, Stream, WatcherMsg};

    fn output(seq: u64, time_ms: u64, stream: Stream, data: Vec<u8>) -> WatcherMsg {
        WatcherMsg::Event(Event {
            seq,
            time_ms,
            kind: EventKind::Output { stream, data },
        })
    }

    #[test]
    fn peek_output_finds_what_decode_finds() {
        for (seq, time_ms, stream, len) in [
            (1, 0, Stream::Stdout, 0),
            (127, 128, Stream::Stderr, 1),
            (u64::MAX, 1_764_633_600_000, Stream::Stdout, 300),
            (1 << 35, u64::MAX, Stream::Stderr, crate::MAX_OUTPUT_CHUNK),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let frame = encode(&output(seq, time_ms, stream, data.clone()));
            let view = peek_output(&frame).expect("an output event");
            assert_eq!((view.seq, view.time_ms, view.stream), (seq, time_ms, stream));
            assert_eq!(&frame[view.data.clone()], &data[..]);
            assert_eq!(decode::<WatcherMsg>(&frame), Ok(output(seq, time_ms, stream, data)));
        }
    }

    #[test]
    fn output_frame_writes_what_encode_writes() {
        for (seq, time_ms, stream, len) in [
            (1, 0, Stream::Stdout, 0),
            (u64::MAX, u64::MAX, Stream::Stderr, crate::MAX_OUTPUT_CHUNK),
            (300, 1_764_633_600_000, Stream::Stdout, 127),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let mut buf = vec![0xee; OUTPUT_HEADROOM];
            buf.extend_from_slice(&data);
            let (buf, start) = output_frame(seq, time_ms, stream, buf);
            assert_eq!(
                buf[start..],
                encode(&output(seq, time_ms, stream, data))[..],
                "{seq} {len}"
            );
        }
    }

    #[test]
    fn peek_output_leaves_every_other_frame_to_decode() {
        let state = WatcherMsg::Event(Event {
            seq: 1,
            time_ms: 2,
            kind: EventKind::Goodbye,
        });
        let good = encode(&output(5, 6, Stream::Stdout, b"hello".to_vec()));
        let mut trailing = good.clone();
        trailing.push(0);
        let mut old = good.clone();
        old[1] ^= 1;
        for (frame, why) in [
            (encode(&WatcherMsg::Heartbeat), "a heartbeat"),
            (encode(&state), "another event"),
            (trailing, "a byte after the data"),
            (good[..good.len() - 1].to_vec(), "cut short"),
            (old, "another version"),
            (vec![0u8; 1], "shorter than the prefix"),
        ] {
            assert_eq!(peek_output(&frame), None, "{why}");
        }
    }
}
