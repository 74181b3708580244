//! The ZMTP 3.x wire format: greeting, frame headers, commands and metadata properties
//! (ZeroMQ RFC 23 "ZMTP 3.0" and RFC 37 "ZMTP 3.1"). Pure functions over bytes, no I/O, so that
//! every parser can be fed random input in tests.

use bytes::{BufMut, Bytes, BytesMut};

/// Length of a ZMTP 3 greeting, bytes (RFC 23 §2.3).
pub const GREETING_LEN: usize = 64;
/// Length of the signature that starts a greeting, bytes (RFC 23: `%xFF 8%x00 %x7F`).
pub const SIGNATURE_LEN: usize = 10;

/// Frame flag: more frames of this message follow (RFC 23 §2.4).
const FLAG_MORE: u8 = 0x01;
/// Frame flag: the size is 8 bytes (a "long" frame).
const FLAG_LONG: u8 = 0x02;
/// Frame flag: the frame is a command, not message data.
const FLAG_COMMAND: u8 = 0x04;

/// A peer's greeting, as far as Nerve cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Major version (3 for ZMTP 3.x).
    pub major: u8,
    /// Minor version: 0 for ZMTP 3.0, 1 for 3.1 (which adds PING/PONG).
    pub minor: u8,
    /// Mechanism name (`NULL`, `PLAIN`, `CURVE`, …), without the zero padding.
    pub mechanism: Vec<u8>,
    /// The as-server flag (meaningful for PLAIN and CURVE).
    pub as_server: bool,
}

/// Why bytes from a peer are not valid ZMTP. Every variant ends only that connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first 10 bytes are not the ZMTP signature.
    #[error("not a ZMTP peer (bad greeting signature)")]
    Signature,
    /// A ZMTP version below 3.0.
    #[error("ZMTP version {0} is not supported (3.0 or later needed)")]
    Version(u8),
    /// A frame declared more bytes than the connection accepts (checked before allocating).
    #[error("frame of {size} bytes is larger than the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared size, bytes.
        size: u64,
        /// The limit, bytes.
        max: u64,
    },
    /// A frame flags byte with reserved bits set.
    #[error("frame flags {0:#04x} have reserved bits set")]
    Flags(u8),
    /// A command whose body does not match its format.
    #[error("malformed {0} command")]
    Command(&'static str),
    /// Metadata properties that run past their command.
    #[error("malformed metadata in a {0} command")]
    Metadata(&'static str),
}

/// Builds a ZMTP 3.1 greeting for `mechanism` (at most 20 bytes).
pub fn greeting(mechanism: &str, as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    let name = mechanism.as_bytes();
    let n = name.len().min(20);
    g[12..12 + n].copy_from_slice(&name[..n]);
    g[32] = u8::from(as_server);
    g
}

/// Checks the first [`SIGNATURE_LEN`] bytes of a greeting.
///
/// # Errors
/// [`WireError::Signature`] when they are not `FF 00*8 xx` with bit 0 of the tenth byte set.
pub fn check_signature(bytes: &[u8]) -> Result<(), WireError> {
    if bytes.len() < SIGNATURE_LEN || bytes[0] != 0xFF || bytes[9] & 0x01 == 0 {
        return Err(WireError::Signature);
    }
    Ok(())
}

/// Parses a whole greeting.
///
/// # Errors
/// [`WireError::Signature`], or [`WireError::Version`] for a peer older than ZMTP 3.0.
pub fn parse_greeting(bytes: &[u8; GREETING_LEN]) -> Result<Greeting, WireError> {
    check_signature(bytes)?;
    if bytes[10] < 3 {
        return Err(WireError::Version(bytes[10]));
    }
    let mech = &bytes[12..32];
    let end = mech.iter().position(|&b| b == 0).unwrap_or(mech.len());
    Ok(Greeting {
        major: bytes[10],
        minor: bytes[11],
        mechanism: mech[..end].to_vec(),
        as_server: bytes[32] & 0x01 == 1,
    })
}

/// A frame header read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// More frames of this message follow.
    pub more: bool,
    /// The frame is a command.
    pub command: bool,
    /// Body size, bytes (already checked against the limit).
    pub size: usize,
    /// Header length, bytes (2 or 9).
    pub len: usize,
}

/// Parses a frame header at the start of `buf`, refusing a size above `max` before anything
/// is allocated. `Ok(None)` when `buf` does not hold the whole header yet.
///
/// # Errors
/// [`WireError::Flags`] for reserved flag bits, [`WireError::FrameTooLarge`] above `max`.
pub fn parse_header(buf: &[u8], max: u64) -> Result<Option<Header>, WireError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
        return Err(WireError::Flags(flags));
    }
    let (size, len) = if flags & FLAG_LONG != 0 {
        let Some(raw) = buf.get(1..9) else {
            return Ok(None);
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(raw);
        (u64::from_be_bytes(b), 9)
    } else {
        let Some(&s) = buf.get(1) else {
            return Ok(None);
        };
        (u64::from(s), 2)
    };
    if size > max {
        return Err(WireError::FrameTooLarge { size, max });
    }
    let size = usize::try_from(size).map_err(|_| WireError::FrameTooLarge { size, max })?;
    Ok(Some(Header {
        more: flags & FLAG_MORE != 0,
        command: flags & FLAG_COMMAND != 0,
        size,
        len,
    }))
}

/// Appends a frame header (short form up to 255 bytes, long form above).
pub fn put_header(out: &mut BytesMut, more: bool, command: bool, size: usize) {
    let mut flags = 0;
    if more {
        flags |= FLAG_MORE;
    }
    if command {
        flags |= FLAG_COMMAND;
    }
    if size <= 255 {
        out.put_u8(flags);
        out.put_u8(size as u8);
    } else {
        out.put_u8(flags | FLAG_LONG);
        out.put_u64(size as u64);
    }
}

/// Appends a whole frame.
pub fn put_frame(out: &mut BytesMut, more: bool, command: bool, body: &[u8]) {
    put_header(out, more, command, body.len());
    out.put_slice(body);
}

/// Splits a command body into its name and data (RFC 23 §2.4: a name-size byte, the name,
/// then the data).
///
/// # Errors
/// [`WireError::Command`] when the name runs past the body or is empty.
pub fn split_command(body: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let n = *body.first().ok_or(WireError::Command("empty"))? as usize;
    if n == 0 || body.len() < 1 + n {
        return Err(WireError::Command("unnamed"));
    }
    Ok((&body[1..1 + n], &body[1 + n..]))
}

/// A command body: name-size, name, data.
pub fn command(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + name.len() + data.len());
    body.push(name.len() as u8);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    body
}

/// Appends one metadata property (RFC 23 §2.5: name-size byte, name, 4-byte value size, value).
pub fn put_property(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// The properties of a READY command (or a CURVE INITIATE/READY box) that Nerve reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `Socket-Type`, as sent (`DEALER`, `ROUTER`, …).
    pub socket_type: Option<Vec<u8>>,
    /// `Identity`, when present and not empty.
    pub identity: Option<Bytes>,
}

/// Parses metadata properties; names compare case-insensitively (RFC 23), unknown ones are
/// skipped. `command` names the command in errors.
///
/// # Errors
/// [`WireError::Metadata`] when a property runs past the data.
pub fn parse_metadata(mut data: &[u8], command: &'static str) -> Result<Metadata, WireError> {
    let mut meta = Metadata::default();
    while !data.is_empty() {
        let n = data[0] as usize;
        let name = data.get(1..1 + n).ok_or(WireError::Metadata(command))?;
        let size = data.get(1 + n..5 + n).ok_or(WireError::Metadata(command))?;
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let value = data
            .get(5 + n..(5 + n).saturating_add(size))
            .ok_or(WireError::Metadata(command))?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            meta.socket_type = Some(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"Identity") && !value.is_empty() {
            meta.identity = Some(Bytes::copy_from_slice(value));
        }
        data = &data[5 + n + size..];
    }
    Ok(meta)
}

/// Parses the data of an ERROR command: a size byte and the reason (RFC 23 §2.4).
pub fn parse_error(data: &[u8]) -> String {
    let n = data.first().copied().unwrap_or(0) as usize;
    let reason = data.get(1..1 + n).unwrap_or(&data[data.len().min(1)..]);
    String::from_utf8_lossy(reason).into_owned()
}

/// The data of an ERROR command with `reason` (cut to 255 bytes).
pub fn error_data(reason: &str) -> Vec<u8> {
    let r = &reason.as_bytes()[..reason.len().min(255)];
    let mut data = vec![r.len() as u8];
    data.extend_from_slice(r);
    data
}

/// A PING's data (RFC 37): TTL in tenths of a second (2 bytes) and up to 16 bytes of context.
///
/// # Errors
/// [`WireError::Command`] when shorter than the TTL.
pub fn parse_ping(data: &[u8]) -> Result<(u16, &[u8]), WireError> {
    if data.len() < 2 || data.len() > 18 {
        return Err(WireError::Command("PING"));
    }
    Ok((u16::from_be_bytes([data[0], data[1]]), &data[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    #[test]
    fn greeting_round_trips() {
        let g = greeting("CURVE", true);
        assert_eq!(
            parse_greeting(&g),
            Ok(Greeting {
                major: 3,
                minor: 1,
                mechanism: b"CURVE".to_vec(),
                as_server: true
            })
        );
        let mut old = g;
        old[10] = 2;
        assert_eq!(parse_greeting(&old), Err(WireError::Version(2)));
        let mut bad = g;
        bad[0] = b'G';
        assert_eq!(parse_greeting(&bad), Err(WireError::Signature));
    }

    #[test]
    fn headers_are_checked_before_allocation() {
        let mut huge = vec![0x06];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(
            parse_header(&huge, 1 << 20),
            Err(WireError::FrameTooLarge {
                size: 1 << 40,
                max: 1 << 20
            })
        );
        assert_eq!(parse_header(&huge[..5], 1 << 20), Ok(None));
        assert_eq!(parse_header(&[0x80, 1], 10), Err(WireError::Flags(0x80)));
        let mut out = BytesMut::new();
        put_header(&mut out, true, false, 300);
        assert_eq!(
            parse_header(&out, 1000),
            Ok(Some(Header {
                more: true,
                command: false,
                size: 300,
                len: 9
            }))
        );
        out.clear();
        put_header(&mut out, false, true, 5);
        assert_eq!(&out[..], &[0x04, 5]);
    }

    #[test]
    fn metadata_round_trips_case_insensitively() {
        let mut data = Vec::new();
        put_property(&mut data, "socket-type", b"DEALER");
        put_property(&mut data, "X-Other", b"x");
        put_property(&mut data, "IDENTITY", b"abc");
        let meta = parse_metadata(&data, "READY");
        assert_eq!(
            meta,
            Ok(Metadata {
                socket_type: Some(b"DEALER".to_vec()),
                identity: Some(Bytes::from_static(b"abc"))
            })
        );
        assert_eq!(
            parse_metadata(&data[..data.len() - 1], "READY"),
            Err(WireError::Metadata("READY"))
        );
    }

    #[test]
    fn commands_split_and_errors_parse() {
        let body = command("ERROR", &error_data("no"));
        let (name, data) = split_command(&body).unwrap_or_default();
        assert_eq!(name, b"ERROR");
        assert_eq!(parse_error(data), "no");
        assert!(split_command(&[]).is_err());
        assert!(split_command(&[9, b'a']).is_err());
        assert_eq!(parse_ping(&[0, 10, 1, 2]), Ok((10, &[1u8, 2][..])));
        assert!(parse_ping(&[0]).is_err());
    }

    /// No parser panics on any input.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for _ in 0..20_000 {
            let len = rng.random_range(0..80);
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            if rng.random_bool(0.3) && len >= SIGNATURE_LEN {
                buf[0] = 0xFF;
                buf[9] = 0x7F;
            }
            let _ = check_signature(&buf);
            if let Ok(g) = <&[u8; GREETING_LEN]>::try_from(&buf[..len.min(GREETING_LEN)]) {
                let _ = parse_greeting(g);
            }
            let _ = parse_header(&buf, rng.random_range(0..1 << 20));
            let _ = split_command(&buf);
            let _ = parse_metadata(&buf, "READY");
            let _ = parse_error(&buf);
            let _ = parse_ping(&buf);
        }
    }
}
