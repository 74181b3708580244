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

/// The length and a 64-bit FNV-1a hash of a byte stream, fed in chunks of any size: for
/// comparing hundreds of megabytes without keeping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Bytes fed so far.
    pub len: u64,
    /// FNV-1a over those bytes (chunking does not change it).
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

impl Digest {
    /// Of no bytes.
    pub const fn new() -> Digest {
        Digest {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut digest = Digest::new();
        digest.update(bytes);
        digest
    }

    /// Feeds `bytes` after what was fed before.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }

    /// The digest of everything `reader` yields until end of file.
    ///
    /// # Errors
    /// A read error.
    pub fn read_all(reader: impl std::io::Read) -> std::io::Result<Digest> {
        let mut digest = Digest::new();
        digest.feed(reader)?;
        Ok(digest)
    }

    /// Feeds everything `reader` yields until end of file.
    ///
    /// # Errors
    /// A read error.
    pub fn feed(&mut self, mut reader: impl std::io::Read) -> std::io::Result<()> {
        let mut chunk = vec![0u8; 1024 * 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => self.update(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
