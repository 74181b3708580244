//! Showing and comparing bytes in failure messages without dumping megabytes.

/// Up to `max` bytes of `bytes`, lossy UTF-8, noting how much was cut.
pub fn shorten(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        format!(
            "{}… ({} more bytes)",
            String::from_utf8_lossy(&bytes[..max]),
            bytes.len() - max
        )
    }
}

/// Asserts that `got` is `want`, byte for byte; on a difference it reports both lengths and the
/// first differing offset with the bytes around it (never dumping megabytes).
///
/// # Panics
/// When the bytes differ.
pub fn assert_bytes_eq(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |bytes: &[u8]| -> String {
        let from = first.saturating_sub(8);
        let to = (first + 24).min(bytes.len());
        bytes
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    panic!(
        "{what}: got {} bytes, expected {} bytes; first difference at byte {first}\n  got      (from byte {}): {}\n  expected (from byte {}): {}",
        got.len(),
        want.len(),
        first.saturating_sub(8),
        around(got),
        first.saturating_sub(8),
        around(want)
    );
}
