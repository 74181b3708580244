//! Z85 text encoding (ZeroMQ RFC 32), used for CURVE keys as `zmq_curve_keypair` writes them:
//! 32 key bytes become 40 printable characters.
//!
//! Written here rather than taken from a crate: the whole codec is a few lines, and the one
//! crate on crates.io for it adds a padding extension that is not part of RFC 32.

/// The 85 characters of Z85, in value order (RFC 32).
const ALPHABET: &[u8; 85] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Encodes `data` (its length must be a multiple of 4) as Z85. `None` for other lengths.
pub fn encode(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut group = [0u8; 5];
        for slot in group.iter_mut().rev() {
            *slot = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(group.iter().map(|&b| b as char));
    }
    Some(out)
}

/// Decodes Z85 text (its length must be a multiple of 5). `None` for other lengths, characters
/// outside the alphabet, or a group above 2^32 − 1.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 5 * 4);
    for group in bytes.chunks_exact(5) {
        let mut value: u64 = 0;
        for &c in group {
            let digit = ALPHABET.iter().position(|&a| a == c)?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value).ok()?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_32_test_vector() {
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&bytes).as_deref(), Some("HelloWorld"));
        assert_eq!(decode("HelloWorld"), Some(bytes.to_vec()));
    }

    #[test]
    fn round_trips_and_refuses_bad_text() {
        let data: Vec<u8> = (0..=255u8).collect();
        let text = encode(&data).unwrap_or_default();
        assert_eq!(text.len(), 320);
        assert_eq!(decode(&text), Some(data));
        assert_eq!(encode(&[1, 2, 3]), None);
        assert_eq!(decode("abcd"), None);
        assert_eq!(decode("abc\"e"), None);
        assert_eq!(decode("#####"), None, "above u32::MAX");
        assert_eq!(decode("%nSc0"), Some(vec![0xff; 4]));
    }
}
