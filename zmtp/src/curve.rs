//! CURVE security: CurveZMQ (ZeroMQ RFC 26) as carried by ZMTP (RFC 25, RFC 37 §CURVE).
//!
//! Keys are Curve25519 key pairs written as 40 characters of Z85 (RFC 32), the form
//! `zmq_curve_keypair` and pyzmq's `zmq.curve_keypair()` produce, so keys made by either side
//! work in the other. The boxes are NaCl's `crypto_box` (X25519 + XSalsa20-Poly1305) and
//! `crypto_secretbox`, from the RustCrypto `crypto_box` and `crypto_secretbox` crates.
//!
//! # Handshake (RFC 26 §2)
//!
//! ```text
//! client C (long-term), C' (per connection)        server S (long-term), S' (per connection)
//!   HELLO    C', Box[64 zeros](C'→S)          →
//!                                             ←   WELCOME  Box[S' + cookie](S→C')
//!   INITIATE cookie, Box[C + vouch + meta](C'→S') →   vouch = Box[C' + S](C→S')
//!                                             ←   READY    Box[meta](S'→C')   or ERROR "400"
//!   MESSAGE  Box[flags + frame](C'↔S'), 8-byte nonces strictly increasing on each side
//! ```
//!
//! The server keeps no state between connections: the cookie (the client's C' and the
//! server's s', sealed with a key made for that connection) is checked when INITIATE comes.
//! After INITIATE, the server asks its [`Authorizer`] about the client's long-term key C;
//! a refusal is answered with a plain ERROR command whose reason is `400`, as libzmq's ZAP
//! handler does.

use crate::z85;
use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::generic_array::GenericArray;
use crypto_box::aead::rand_core::RngCore;
use crypto_box::aead::{AeadInPlace, KeyInit, OsRng};
use crypto_box::SalsaBox;
use crypto_secretbox::XSalsa20Poly1305;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Length of a CURVE key, bytes.
pub const KEY_LEN: usize = 32;
/// Length of a CURVE key in Z85 text, characters.
pub const KEY_Z85_LEN: usize = 40;
/// Poly1305 tag length, bytes (the `crypto_box` overhead).
const TAG_LEN: usize = 16;

/// A CURVE public key (32 bytes; Z85 text of 40 characters when displayed).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurvePublicKey(pub [u8; KEY_LEN]);

/// A CURVE secret key (32 bytes). Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct CurveSecretKey([u8; KEY_LEN]);

/// A long-term key pair.
#[derive(Clone, Debug)]
pub struct CurveKeyPair {
    /// The public half, safe to share.
    pub public: CurvePublicKey,
    /// The secret half.
    pub secret: CurveSecretKey,
}

/// A key that cannot be read. Messages name the file or say where the text came from, never
/// the key material itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not 40 characters of Z85.
    #[error(
        "{source_name}: not a CURVE key (expected 40 characters of Z85, as zmq_curve_keypair or nrv-ctl keygen write)"
    )]
    Format {
        /// Where the text came from (a path or a flag).
        source_name: String,
    },
    /// A file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        error: std::io::Error,
    },
    /// A secret key file that users other than its owner can read or write, refused as ssh
    /// refuses an unprotected private key (`ssh(1)`, FILES: "not accessible by others").
    #[error("{}: the secret key file is mode {mode:04o}, open to other users; run chmod 600 {} (ssh refuses such a key too)", path.display(), path.display())]
    Unprotected {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An authorized-keys file that users other than its owner can write (they could add
    /// their own keys), or that belongs to another user: refused as sshd's `StrictModes`
    /// refuses such an `authorized_keys`.
    #[error("{}: {why}; the authorized-keys file decides who may connect, so only its owner (this user or root) may write it: run chmod go-w {} (sshd's StrictModes refuses such a file too)", path.display(), path.display())]
    OpenToWriters {
        /// The file.
        path: PathBuf,
        /// What is wrong (`mode 0666, writable by others`, `owned by uid 1001`).
        why: String,
    },
    /// A file that is not a regular file or a pipe (a device such as `/dev/zero`, a directory),
    /// or one longer than a key file can be.
    #[error("{}: not a key file ({why})", path.display())]
    NotAKeyFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// A line of an authorized-keys file is not `[role=center|read|control] KEY [comment]`.
    #[error("{}:{line}: {why}", path.display())]
    AuthorizedLine {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
}

fn key_from_z85(text: &str, source_name: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let format = || KeyError::Format {
        source_name: source_name.to_string(),
    };
    if text.len() != KEY_Z85_LEN {
        return Err(format());
    }
    let bytes = z85::decode(text).ok_or_else(format)?;
    bytes.try_into().map_err(|_| format())
}

impl CurvePublicKey {
    /// Parses 40 characters of Z85. `source_name` says where the text came from, for errors.
    ///
    /// # Errors
    /// [`KeyError::Format`].
    pub fn from_z85(text: &str, source_name: &str) -> Result<CurvePublicKey, KeyError> {
        key_from_z85(text.trim(), source_name).map(CurvePublicKey)
    }

    /// The key as 40 characters of Z85.
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurvePublicKey({})", self.to_z85())
    }
}

impl CurveSecretKey {
    /// Parses 40 characters of Z85. `source_name` says where the text came from, for errors.
    ///
    /// # Errors
    /// [`KeyError::Format`].
    pub fn from_z85(text: &str, source_name: &str) -> Result<CurveSecretKey, KeyError> {
        key_from_z85(text.trim(), source_name).map(CurveSecretKey)
    }

    /// The key as 40 characters of Z85 (for writing a key file; never log it).
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0).unwrap_or_default()
    }

    /// The matching public key (X25519 scalar multiplication of the base point).
    pub fn public_key(&self) -> CurvePublicKey {
        CurvePublicKey(*self.to_box_key().public_key().as_bytes())
    }

    fn to_box_key(&self) -> crypto_box::SecretKey {
        crypto_box::SecretKey::from(self.0)
    }
}

impl fmt::Debug for CurveSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurveSecretKey(…)")
    }
}

impl CurveKeyPair {
    /// A new random key pair, from the operating system's random source.
    pub fn generate() -> CurveKeyPair {
        let secret = crypto_box::SecretKey::generate(&mut OsRng);
        CurveKeyPair::from_secret(CurveSecretKey(secret.to_bytes()))
    }

    /// The precomputed box between this pair and `peer`'s public key, for sealing datagrams
    /// to that peer and opening the ones it sealed to us (the ring's membership datagrams).
    pub fn peer_box(&self, peer: &CurvePublicKey) -> PeerBox {
        PeerBox(salsa_box(&peer.0, &self.secret.0))
    }

    /// The pair whose secret half is `secret`.
    pub fn from_secret(secret: CurveSecretKey) -> CurveKeyPair {
        CurveKeyPair {
            public: secret.public_key(),
            secret,
        }
    }
}

/// The most a key file is read: 4 KiB. `nrv-ctl keygen` writes about 200 bytes; a larger file
/// (or `/dev/zero`) is not a key file, and is refused after this many bytes instead of being
/// read until memory runs out.
pub const MAX_KEY_FILE_BYTES: u64 = 4 * 1024;
/// The most an authorized-keys file is read: 1 MiB, some ten thousand keys with comments.
pub const MAX_AUTHORIZED_KEYS_BYTES: u64 = 1024 * 1024;

/// What a key file must be besides small.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Anyone may read it (public keys, authorized keys).
    Public,
    /// A secret: a regular file must be closed to group and others.
    Secret,
    /// Who may connect: a regular file must be owned by this user or root and closed to
    /// writers other than its owner.
    Authorized,
}

/// The text of a key file: at most `max` bytes of a regular file or a pipe (`<(…)` works),
/// valid UTF-8; for [`Check::Secret`] a regular file must not be open to group or others.
fn read_key_file(path: &Path, max: u64, check: Check) -> Result<String, KeyError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io = |error| KeyError::Io {
        path: path.to_owned(),
        error,
    };
    let not_key = |why: String| KeyError::NotAKeyFile {
        path: path.to_owned(),
        why,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    if kind.is_file() {
        let mode = meta.permissions().mode() & 0o7777;
        if check == Check::Secret && mode & 0o077 != 0 {
            return Err(KeyError::Unprotected {
                path: path.to_owned(),
                mode,
            });
        }
        if check == Check::Authorized {
            use std::os::unix::fs::MetadataExt;
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            let why = if mode & 0o022 != 0 {
                Some(format!("mode {mode:04o}, writable by users other than its owner"))
            } else if meta.uid() != me && meta.uid() != 0 {
                Some(format!(
                    "owned by uid {}, not by this user (uid {me}) or root",
                    meta.uid()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(KeyError::OpenToWriters {
                    path: path.to_owned(),
                    why,
                });
            }
        }
    } else if !kind.is_fifo() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(not_key(format!("it is {what}; give the file nrv-ctl keygen wrote")));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(not_key(format!("longer than {max} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| not_key("not UTF-8 text".into()))
}

/// The key text in a key file: the first word of the first line that is neither empty nor a
/// `#` comment. Works for the files `nrv-ctl keygen` writes and for a bare Z85 key. At most
/// [`MAX_KEY_FILE_BYTES`] are read.
///
/// # Errors
/// [`KeyError::Io`] when the file cannot be read, [`KeyError::NotAKeyFile`] when it is too
/// long or a device, [`KeyError::Format`] when it holds no key.
pub fn read_key_text(path: &Path) -> Result<String, KeyError> {
    key_text(path, Check::Public)
}

/// [`read_key_text`], with `check` on the file.
fn key_text(path: &Path, check: Check) -> Result<String, KeyError> {
    let text = read_key_file(path, MAX_KEY_FILE_BYTES, check)?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| KeyError::Format {
            source_name: path.display().to_string(),
        })
}

/// Reads a secret key file (see [`read_key_text`]) into a key pair. Like ssh with a private
/// key, a regular file that group or others can read or write is refused.
///
/// # Errors
/// As [`read_key_text`], and [`KeyError::Unprotected`] with the `chmod 600` to run.
pub fn read_secret_key_file(path: &Path) -> Result<CurveKeyPair, KeyError> {
    let text = key_text(path, Check::Secret)?;
    CurveSecretKey::from_z85(&text, &path.display().to_string()).map(CurveKeyPair::from_secret)
}

/// The environment variable `nrv-open` and `nrv-ctl` read for `--curve-server-key`.
pub const SERVER_KEY_ENV: &str = "NERVE_CURVE_SERVER_KEY";
/// The environment variable `nrv-open` and `nrv-ctl` read for `--curve-secret-key`.
pub const SECRET_KEY_ENV: &str = "NERVE_CURVE_SECRET_KEY";

/// The client side of CURVE from the two settings clients take: the server's public key (40
/// characters of Z85, or the path of a file holding it) and the path of the client's own
/// secret key file (its public half is derived). Neither: NULL. Only one: an error.
///
/// # Errors
/// A message naming the setting or file that is wrong (never the key material).
pub fn client_security(server_key: Option<&str>, secret_key_file: Option<&Path>) -> Result<crate::Security, String> {
    match (server_key, secret_key_file) {
        (None, None) => Ok(crate::Security::Null),
        (Some(_), None) => Err(format!(
            "--curve-server-key (or {SERVER_KEY_ENV}) needs --curve-secret-key FILE (or {SECRET_KEY_ENV}): this client's own key, made with nrv-ctl keygen"
        )),
        (None, Some(_)) => Err(format!(
            "--curve-secret-key (or {SECRET_KEY_ENV}) needs --curve-server-key (or {SERVER_KEY_ENV}): the center's public key"
        )),
        (Some(server), Some(file)) => {
            let server_key = if server.trim().len() == KEY_Z85_LEN && !Path::new(server).exists() {
                CurvePublicKey::from_z85(server, "--curve-server-key").map_err(|e| e.to_string())?
            } else {
                let path = Path::new(server);
                let text = read_key_text(path).map_err(|e| format!("--curve-server-key: {e}"))?;
                CurvePublicKey::from_z85(&text, &path.display().to_string()).map_err(|e| e.to_string())?
            };
            let keys = read_secret_key_file(file).map_err(|e| format!("--curve-secret-key: {e}"))?;
            Ok(crate::Security::CurveClient { server_key, keys })
        }
    }
}

/// What an authorized key may do, the option before the key on its line of an
/// authorized-keys file (`role=center|read|control`, written as ssh's `authorized_keys`
/// writes its options: before the key). A line without one is [`Role::Control`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A peer center of a ring: may connect to sync endpoints, and nothing else.
    Center,
    /// The read requests only (`ps`, `info`, `tail`, `events`, `ring`, `version`).
    Read,
    /// Everything a client can do (the default, and all there was before roles).
    Control,
}

impl Role {
    /// `center`, `read` or `control`, as written after `role=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Center => "center",
            Role::Read => "read",
            Role::Control => "control",
        }
    }

    /// The role written after `role=`; `None` for any other word.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "center" => Some(Role::Center),
            "read" => Some(Role::Read),
            "control" => Some(Role::Control),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CURVE client the [`Authorizer`] let in: its long-term public key (proven in the
/// handshake, RFC 26 §2), and what its line of the authorized keys says about it. Every message
/// of the connection carries it ([`crate::Incoming::curve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The client's long-term public key.
    pub key: CurvePublicKey,
    /// What it may do.
    pub role: Role,
    /// The comment after the key on its line (`ops-laptop`), empty when there is none.
    pub comment: String,
}

impl Authorized {
    /// How messages name it: `the key "ops-laptop"`, or `the key KEY` when it has no comment.
    pub fn describe(&self) -> String {
        if self.comment.is_empty() {
            format!("the key {}", self.key)
        } else {
            format!("the key {:?}", self.comment)
        }
    }
}

/// Decides whether a CURVE client may connect (the job of libzmq's ZAP handler).
pub trait Authorizer: Send + Sync {
    /// `Some` to accept the client whose long-term public key is `client_key`, connecting
    /// from `peer_address` (`IP:PORT`, or the ipc path), with what it may do; `None` to refuse
    /// it (ERROR "400"). Called once per handshake, from the connection's task: keep it quick.
    fn authorize(&self, peer_address: &str, client_key: &CurvePublicKey) -> Option<Authorized>;
}

/// Every client key is accepted, as [`Role::Control`] (CURVE then only encrypts; it does not
/// restrict who connects).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAny;

impl Authorizer for AllowAny {
    fn authorize(&self, _peer_address: &str, client_key: &CurvePublicKey) -> Option<Authorized> {
        Some(Authorized {
            key: *client_key,
            role: Role::Control,
            comment: String::new(),
        })
    }
}

/// What one line of an authorized-keys file says about its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// What the key may do.
    pub role: Role,
    /// The comment after the key (empty when none).
    pub comment: String,
}

/// Client public keys read from a file like SSH's `authorized_keys`: one key per line,
/// `[role=center|read|control] KEY [comment]` (the option before the key, as ssh writes
/// its options; no option means `role=control`), the key 40 characters of Z85, the comment
/// the rest of the line; empty lines and lines starting with `#` are skipped.
/// [`AuthorizedKeys::reload`] reads the file again (the center does on SIGHUP).
#[derive(Debug)]
pub struct AuthorizedKeys {
    path: PathBuf,
    keys: RwLock<HashMap<CurvePublicKey, KeyEntry>>,
}

impl AuthorizedKeys {
    /// Reads `path`.
    ///
    /// # Errors
    /// [`KeyError::Io`], or [`KeyError::AuthorizedLine`] naming the first bad line.
    pub fn load(path: &Path) -> Result<AuthorizedKeys, KeyError> {
        let keys = Self::read(path)?;
        Ok(AuthorizedKeys {
            path: path.to_owned(),
            keys: RwLock::new(keys),
        })
    }

    /// Reads the file again and, only if all of it is valid, replaces the keys. Returns how
    /// many keys are authorized now.
    ///
    /// # Errors
    /// As [`AuthorizedKeys::load`]; the previous keys stay in force.
    pub fn reload(&self) -> Result<usize, KeyError> {
        let keys = Self::read(&self.path)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(n)
    }

    /// How many keys are authorized.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no key is authorized (every client is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file says about `key` now, if it lists it.
    pub fn get(&self, key: &CurvePublicKey) -> Option<KeyEntry> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn read(path: &Path) -> Result<HashMap<CurvePublicKey, KeyEntry>, KeyError> {
        let text = read_key_file(path, MAX_AUTHORIZED_KEYS_BYTES, Check::Authorized)?;
        parse_authorized_keys(&text).map_err(|(line, why)| KeyError::AuthorizedLine {
            path: path.to_owned(),
            line,
            why,
        })
    }
}

impl Authorizer for AuthorizedKeys {
    fn authorize(&self, _peer_address: &str, client_key: &CurvePublicKey) -> Option<Authorized> {
        self.get(client_key).map(|e| Authorized {
            key: *client_key,
            role: e.role,
            comment: e.comment,
        })
    }
}

/// Parses authorized-keys text (see [`AuthorizedKeys`]); `Err((line number, why))` for the
/// first line that is not `[role=center|read|control] KEY [comment]`. A key listed twice keeps
/// its last line.
pub fn parse_authorized_keys(text: &str) -> Result<HashMap<CurvePublicKey, KeyEntry>, (usize, String)> {
    let mut keys = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (first, rest) = split_word(line);
        // Z85 has `=` in its alphabet: a word that is a key is the key, whatever it holds.
        let is_key = CurvePublicKey::from_z85(first, "authorized key").is_ok();
        let (role, key_word, rest) = match first.strip_prefix("role=").filter(|_| !is_key) {
            Some(name) => {
                let role = Role::parse(name).ok_or_else(|| {
                    (
                        i + 1,
                        format!("unknown role {name:?}: give role=center (a peer center), role=read (ps, info, tail, events, ring, version) or role=control (everything; the default)"),
                    )
                })?;
                let (key, rest) = split_word(rest);
                (role, key, rest)
            }
            None if !is_key && first.contains('=') => {
                return Err((
                    i + 1,
                    format!("unknown option {first:?}: the only option is role=center|read|control, before the key"),
                ))
            }
            None => (Role::Control, first, rest),
        };
        let key = CurvePublicKey::from_z85(key_word, "authorized key").map_err(|_| {
            (
                i + 1,
                "not a CURVE public key (expected [role=center|read|control], then 40 characters of Z85, then optionally a comment)".to_string(),
            )
        })?;
        keys.insert(
            key,
            KeyEntry {
                role,
                comment: rest.trim().to_string(),
            },
        );
    }
    Ok(keys)
}

/// The first whitespace-separated word of `text` and what follows it.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], &text[at..]),
        None => (text, ""),
    }
}

// ---------------------------------------------------------------------------------------------
// Boxes
// ---------------------------------------------------------------------------------------------

/// Why a CURVE handshake or message failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurveError {
    /// A command of the wrong size or name.
    #[error("malformed CURVE {0} command")]
    Malformed(&'static str),
    /// A box that does not open: wrong keys, or bytes changed on the way.
    #[error("CURVE {0} box does not open (wrong keys or tampered data)")]
    Open(&'static str),
    /// A message nonce that did not increase (a replay).
    #[error("CURVE message nonce did not increase")]
    Nonce,
    /// The cookie or vouch does not match this connection.
    #[error("CURVE {0} does not match this connection")]
    Mismatch(&'static str),
}

fn nonce24(prefix: &[u8], tail: &[u8]) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..prefix.len() + tail.len()].copy_from_slice(tail);
    n
}

/// A `crypto_box` (Curve25519, XSalsa20, Poly1305: NaCl's box) precomputed between our key
/// pair and one peer's public key ([`CurveKeyPair::peer_box`]). Both ends compute the same
/// shared key, so a box sealed by either opens only for the other, and opening proves the
/// sender holds the secret half of its key.
pub struct PeerBox(SalsaBox);

impl fmt::Debug for PeerBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerBox(…)")
    }
}

impl PeerBox {
    /// `plaintext` sealed under `nonce` (24 bytes, never reused with this peer: pick it at
    /// random): 16 bytes of tag, then the ciphertext, as long as the plaintext.
    pub fn seal(&self, nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.0, nonce, plaintext)
    }

    /// Opens what [`PeerBox::seal`] made on the other end; `None` when it does not
    /// authenticate (forged, altered, truncated, or sealed for another key).
    pub fn open(&self, nonce: &[u8; 24], boxed: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, nonce, boxed)
    }
}

/// `Box[plaintext]` in NaCl layout: the 16-byte tag, then the ciphertext.
fn seal(cipher: &impl AeadInPlace, nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; TAG_LEN + plaintext.len()];
    out[TAG_LEN..].copy_from_slice(plaintext);
    // Encryption fails only for inputs beyond the cipher's limit (2^38 bytes); frames are
    // bounded far below that, so an empty tag cannot be produced in practice.
    if let Ok(tag) = cipher.encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", &mut out[TAG_LEN..]) {
        out[..TAG_LEN].copy_from_slice(&tag);
    }
    out
}

/// Opens a box made by [`seal`]; `None` when it does not authenticate.
fn open(cipher: &impl AeadInPlace, nonce: &[u8; 24], boxed: &[u8]) -> Option<Vec<u8>> {
    if boxed.len() < TAG_LEN {
        return None;
    }
    let mut plain = boxed[TAG_LEN..].to_vec();
    let tag = GenericArray::from_slice(&boxed[..TAG_LEN]);
    cipher
        .decrypt_in_place_detached(GenericArray::from_slice(nonce), b"", &mut plain, tag)
        .ok()?;
    Some(plain)
}

fn salsa_box(public: &[u8; KEY_LEN], secret: &[u8; KEY_LEN]) -> SalsaBox {
    SalsaBox::new(
        &crypto_box::PublicKey::from(*public),
        &crypto_box::SecretKey::from(*secret),
    )
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn ephemeral() -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    let secret = crypto_box::SecretKey::generate(&mut OsRng);
    (*secret.public_key().as_bytes(), secret.to_bytes())
}

const HELLO_LEN: usize = 200;
const WELCOME_LEN: usize = 168;
const INITIATE_MIN: usize = 257;
const READY_MIN: usize = 30;
const COOKIE_LEN: usize = 96;

/// The client's side of the handshake.
pub(crate) struct ClientHandshake {
    server: [u8; KEY_LEN],
    long_public: [u8; KEY_LEN],
    long_secret: [u8; KEY_LEN],
    eph_public: [u8; KEY_LEN],
    eph_secret: [u8; KEY_LEN],
    nonce: u64,
    session: Option<SalsaBox>,
    server_eph: [u8; KEY_LEN],
}

impl ClientHandshake {
    pub(crate) fn new(server: &CurvePublicKey, keys: &CurveKeyPair) -> ClientHandshake {
        let (eph_public, eph_secret) = ephemeral();
        ClientHandshake {
            server: server.0,
            long_public: keys.public.0,
            long_secret: keys.secret.0,
            eph_public,
            eph_secret,
            nonce: 1,
            session: None,
            server_eph: [0; KEY_LEN],
        }
    }

    fn next_nonce(&mut self) -> [u8; 8] {
        let n = self.nonce.to_be_bytes();
        self.nonce += 1;
        n
    }

    /// The HELLO command body.
    pub(crate) fn hello(&mut self) -> Vec<u8> {
        let short = self.next_nonce();
        let hello_box = seal(
            &salsa_box(&self.server, &self.eph_secret),
            &nonce24(b"CurveZMQHELLO---", &short),
            &[0u8; 64],
        );
        let mut body = Vec::with_capacity(HELLO_LEN);
        body.extend_from_slice(b"\x05HELLO\x01\x00");
        body.extend_from_slice(&[0u8; 72]);
        body.extend_from_slice(&self.eph_public);
        body.extend_from_slice(&short);
        body.extend_from_slice(&hello_box);
        body
    }

    /// Takes the WELCOME body and returns the INITIATE body carrying `metadata`.
    pub(crate) fn welcome(&mut self, body: &[u8], metadata: &[u8]) -> Result<Vec<u8>, CurveError> {
        if body.len() != WELCOME_LEN || !body.starts_with(b"\x07WELCOME") {
            return Err(CurveError::Malformed("WELCOME"));
        }
        let plain = open(
            &salsa_box(&self.server, &self.eph_secret),
            &nonce24(b"WELCOME-", &body[8..24]),
            &body[24..],
        )
        .ok_or(CurveError::Open("WELCOME"))?;
        let mut server_eph = [0u8; KEY_LEN];
        server_eph.copy_from_slice(&plain[..KEY_LEN]);
        let cookie = &plain[KEY_LEN..KEY_LEN + COOKIE_LEN];

        let vouch_nonce: [u8; 16] = random();
        let mut vouch_plain = Vec::with_capacity(64);
        vouch_plain.extend_from_slice(&self.eph_public);
        vouch_plain.extend_from_slice(&self.server);
        let vouch = seal(
            &salsa_box(&server_eph, &self.long_secret),
            &nonce24(b"VOUCH---", &vouch_nonce),
            &vouch_plain,
        );
        let mut inner = Vec::with_capacity(128 + metadata.len());
        inner.extend_from_slice(&self.long_public);
        inner.extend_from_slice(&vouch_nonce);
        inner.extend_from_slice(&vouch);
        inner.extend_from_slice(metadata);
        let session = salsa_box(&server_eph, &self.eph_secret);
        let short = self.next_nonce();
        let initiate_box = seal(&session, &nonce24(b"CurveZMQINITIATE", &short), &inner);
        self.session = Some(session);
        self.server_eph = server_eph;
        let mut out = Vec::with_capacity(INITIATE_MIN + metadata.len());
        out.extend_from_slice(b"\x08INITIATE");
        out.extend_from_slice(cookie);
        out.extend_from_slice(&short);
        out.extend_from_slice(&initiate_box);
        Ok(out)
    }

    /// Takes the READY body: the server's metadata and the cipher for messages.
    pub(crate) fn ready(self, body: &[u8]) -> Result<(Vec<u8>, Cipher), CurveError> {
        if body.len() < READY_MIN || !body.starts_with(b"\x05READY") {
            return Err(CurveError::Malformed("READY"));
        }
        let session = self.session.ok_or(CurveError::Malformed("READY"))?;
        let keys = (self.server_eph, self.eph_secret);
        let peer_nonce = u64::from_be_bytes(body[6..14].try_into().map_err(|_| CurveError::Malformed("READY"))?);
        let metadata = open(&session, &nonce24(b"CurveZMQREADY---", &body[6..14]), &body[14..])
            .ok_or(CurveError::Open("READY"))?;
        Ok((
            metadata,
            Cipher {
                session,
                keys,
                send_prefix: *b"CurveZMQMESSAGEC",
                recv_prefix: *b"CurveZMQMESSAGES",
                send_nonce: self.nonce,
                recv_nonce: peer_nonce,
            },
        ))
    }
}

/// The server's side of the handshake.
pub(crate) struct ServerHandshake {
    public: [u8; KEY_LEN],
    secret: [u8; KEY_LEN],
    cookie_key: [u8; KEY_LEN],
    eph_public: [u8; KEY_LEN],
    eph_secret: [u8; KEY_LEN],
    client_eph: [u8; KEY_LEN],
    client_nonce: u64,
}

impl ServerHandshake {
    pub(crate) fn new(secret: &CurveSecretKey) -> ServerHandshake {
        let (eph_public, eph_secret) = ephemeral();
        ServerHandshake {
            public: secret.public_key().0,
            secret: secret.0,
            cookie_key: random(),
            eph_public,
            eph_secret,
            client_eph: [0; KEY_LEN],
            client_nonce: 0,
        }
    }

    /// Takes the HELLO body and returns the WELCOME body.
    pub(crate) fn hello(&mut self, body: &[u8]) -> Result<Vec<u8>, CurveError> {
        if body.len() != HELLO_LEN || !body.starts_with(b"\x05HELLO") || body[6] != 1 {
            return Err(CurveError::Malformed("HELLO"));
        }
        self.client_eph.copy_from_slice(&body[80..112]);
        let short = &body[112..120];
        open(
            &salsa_box(&self.client_eph, &self.secret),
            &nonce24(b"CurveZMQHELLO---", short),
            &body[120..],
        )
        .filter(|zeros| zeros.iter().all(|&b| b == 0))
        .ok_or(CurveError::Open("HELLO"))?;

        let cookie_nonce: [u8; 16] = random();
        let mut cookie_plain = Vec::with_capacity(64);
        cookie_plain.extend_from_slice(&self.client_eph);
        cookie_plain.extend_from_slice(&self.eph_secret);
        let cookie_box = seal(
            &XSalsa20Poly1305::new(GenericArray::from_slice(&self.cookie_key)),
            &nonce24(b"COOKIE--", &cookie_nonce),
            &cookie_plain,
        );
        let mut plain = Vec::with_capacity(128);
        plain.extend_from_slice(&self.eph_public);
        plain.extend_from_slice(&cookie_nonce);
        plain.extend_from_slice(&cookie_box);
        let welcome_nonce: [u8; 16] = random();
        let welcome_box = seal(
            &salsa_box(&self.client_eph, &self.secret),
            &nonce24(b"WELCOME-", &welcome_nonce),
            &plain,
        );
        let mut out = Vec::with_capacity(WELCOME_LEN);
        out.extend_from_slice(b"\x07WELCOME");
        out.extend_from_slice(&welcome_nonce);
        out.extend_from_slice(&welcome_box);
        Ok(out)
    }

    /// Takes the INITIATE body: the client's long-term key and its metadata.
    pub(crate) fn initiate(&mut self, body: &[u8]) -> Result<(CurvePublicKey, Vec<u8>), CurveError> {
        if body.len() < INITIATE_MIN || !body.starts_with(b"\x08INITIATE") {
            return Err(CurveError::Malformed("INITIATE"));
        }
        let cookie = &body[9..105];
        let cookie_plain = open(
            &XSalsa20Poly1305::new(GenericArray::from_slice(&self.cookie_key)),
            &nonce24(b"COOKIE--", &cookie[..16]),
            &cookie[16..],
        )
        .ok_or(CurveError::Open("cookie"))?;
        if cookie_plain[..KEY_LEN] != self.client_eph || cookie_plain[KEY_LEN..] != self.eph_secret {
            return Err(CurveError::Mismatch("cookie"));
        }
        let short = &body[105..113];
        let session = salsa_box(&self.client_eph, &self.eph_secret);
        let plain =
            open(&session, &nonce24(b"CurveZMQINITIATE", short), &body[113..]).ok_or(CurveError::Open("INITIATE"))?;
        if plain.len() < 128 {
            return Err(CurveError::Malformed("INITIATE"));
        }
        let mut client_long = [0u8; KEY_LEN];
        client_long.copy_from_slice(&plain[..KEY_LEN]);
        let vouch = open(
            &salsa_box(&client_long, &self.eph_secret),
            &nonce24(b"VOUCH---", &plain[32..48]),
            &plain[48..128],
        )
        .ok_or(CurveError::Open("vouch"))?;
        if vouch[..KEY_LEN] != self.client_eph || vouch[KEY_LEN..] != self.public {
            return Err(CurveError::Mismatch("vouch"));
        }
        self.client_nonce = u64::from_be_bytes(short.try_into().map_err(|_| CurveError::Malformed("INITIATE"))?);
        Ok((CurvePublicKey(client_long), plain[128..].to_vec()))
    }

    /// The READY body carrying `metadata`, and the cipher for messages.
    pub(crate) fn ready(self, metadata: &[u8]) -> (Vec<u8>, Cipher) {
        let session = salsa_box(&self.client_eph, &self.eph_secret);
        let short = 1u64.to_be_bytes();
        let ready_box = seal(&session, &nonce24(b"CurveZMQREADY---", &short), metadata);
        let mut out = Vec::with_capacity(READY_MIN + metadata.len());
        out.extend_from_slice(b"\x05READY");
        out.extend_from_slice(&short);
        out.extend_from_slice(&ready_box);
        (
            out,
            Cipher {
                session,
                keys: (self.client_eph, self.eph_secret),
                send_prefix: *b"CurveZMQMESSAGES",
                recv_prefix: *b"CurveZMQMESSAGEC",
                send_nonce: 2,
                recv_nonce: self.client_nonce,
            },
        )
    }
}

/// Encrypts and decrypts the frames of an established CURVE connection (MESSAGE commands).
pub(crate) struct Cipher {
    session: SalsaBox,
    /// The peer's short-term public key and ours secret one, to make a second session for
    /// [`Cipher::split`] (`SalsaBox` cannot be cloned).
    keys: ([u8; KEY_LEN], [u8; KEY_LEN]),
    send_prefix: [u8; 16],
    recv_prefix: [u8; 16],
    send_nonce: u64,
    recv_nonce: u64,
}

/// Bytes a MESSAGE command adds around a frame: name (8), nonce (8), tag (16), flags (1).
pub(crate) const MESSAGE_OVERHEAD: usize = 33;

impl Cipher {
    /// Two copies sharing the session key: one to seal (the writer's), one to open (the
    /// reader's). Each uses only its own nonce counter.
    pub(crate) fn split(self) -> (Cipher, Cipher) {
        let sealer = Cipher {
            session: salsa_box(&self.keys.0, &self.keys.1),
            keys: self.keys,
            send_prefix: self.send_prefix,
            recv_prefix: self.recv_prefix,
            send_nonce: self.send_nonce,
            recv_nonce: self.recv_nonce,
        };
        (sealer, self)
    }

    /// Appends one whole wire frame: a MESSAGE command sealing `payload` with its `more` and
    /// `command` flags (RFC 26 §2.6; like libzmq, the outer frame carries no flags).
    pub(crate) fn seal_frame(&mut self, out: &mut BytesMut, more: bool, command: bool, payload: &[u8]) {
        let short = self.send_nonce.to_be_bytes();
        self.send_nonce += 1;
        crate::wire::put_header(out, false, false, MESSAGE_OVERHEAD + payload.len());
        out.put_slice(b"\x07MESSAGE");
        out.put_slice(&short);
        let tag_at = out.len();
        out.put_bytes(0, TAG_LEN);
        let plain_at = out.len();
        out.put_u8(u8::from(more) | (u8::from(command) << 1));
        out.put_slice(payload);
        let nonce = nonce24(&self.send_prefix, &short);
        if let Ok(tag) =
            self.session
                .encrypt_in_place_detached(GenericArray::from_slice(&nonce), b"", &mut out[plain_at..])
        {
            out[tag_at..plain_at].copy_from_slice(&tag);
        }
    }

    /// Opens the body of a MESSAGE command: `(more, command, payload)`.
    pub(crate) fn open_frame(&mut self, body: Bytes) -> Result<(bool, bool, Bytes), CurveError> {
        if body.len() < MESSAGE_OVERHEAD || !body.starts_with(b"\x07MESSAGE") {
            return Err(CurveError::Malformed("MESSAGE"));
        }
        let short: [u8; 8] = body[8..16].try_into().map_err(|_| CurveError::Malformed("MESSAGE"))?;
        let n = u64::from_be_bytes(short);
        if n <= self.recv_nonce {
            return Err(CurveError::Nonce);
        }
        let mut plain = BytesMut::from(&body[16 + TAG_LEN..]);
        let nonce = nonce24(&self.recv_prefix, &short);
        self.session
            .decrypt_in_place_detached(
                GenericArray::from_slice(&nonce),
                b"",
                &mut plain,
                GenericArray::from_slice(&body[16..16 + TAG_LEN]),
            )
            .map_err(|_| CurveError::Open("MESSAGE"))?;
        self.recv_nonce = n;
        let flags = plain[0];
        let payload = plain.split_off(1).freeze();
        Ok((flags & 1 != 0, flags & 2 != 0, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_bounded_and_a_secret_one_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = CurveKeyPair::generate();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("# comment\n{}\n", pair.secret.to_z85())).expect("write");
        let chmod = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o644, false),
            (0o640, false),
            (0o604, false),
        ] {
            chmod(mode);
            match read_secret_key_file(&path) {
                Ok(read) => assert!(ok && read.public == pair.public, "{mode:o}"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(!ok, "{mode:o}: {text}");
                    assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
                    assert!(text.contains(&format!("{mode:04o}")), "{text}");
                    assert!(!text.contains(&pair.secret.to_z85()), "never the key: {text}");
                }
            }
        }
        // A public key may be read by anyone.
        assert_eq!(read_key_text(&path).ok(), Some(pair.secret.to_z85()));

        let started = std::time::Instant::now();
        let zero = read_secret_key_file(Path::new("/dev/zero")).expect_err("/dev/zero");
        assert!(
            zero.to_string()
                .contains("/dev/zero: not a key file (it is a character device"),
            "{zero}"
        );
        let dir_err = read_key_text(dir.path()).expect_err("a directory");
        assert!(dir_err.to_string().contains("it is a directory"), "{dir_err}");
        std::fs::write(&path, vec![b'#'; MAX_KEY_FILE_BYTES as usize + 1]).expect("write");
        chmod(0o600);
        let long = read_secret_key_file(&path).expect_err("too long");
        assert!(long.to_string().contains("longer than 4096 bytes"), "{long}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn keys_round_trip_through_z85_and_secret_debug_is_redacted() {
        let pair = CurveKeyPair::generate();
        let text = pair.secret.to_z85();
        assert_eq!(text.len(), KEY_Z85_LEN);
        let again = CurveSecretKey::from_z85(&text, "test").map(|s| s.public_key()).ok();
        assert_eq!(again, Some(pair.public));
        assert_eq!(
            CurvePublicKey::from_z85(&pair.public.to_z85(), "test").ok(),
            Some(pair.public)
        );
        assert!(!format!("{:?}", pair.secret).contains(&text));
        assert!(CurvePublicKey::from_z85("short", "flag").is_err());
    }

    /// The example key pair of the zmq_curve(7) manual page: the public key is
    /// derived from the secret one exactly as `zmq_curve_public` does.
    #[test]
    fn libzmq_key_pair_matches() {
        let secret = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";
        let public = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
        let derived = CurveSecretKey::from_z85(secret, "test").map(|s| s.public_key().to_z85());
        assert_eq!(derived.ok().as_deref(), Some(public));
    }

    #[test]
    fn authorized_keys_take_comments_and_name_bad_lines() {
        let a = CurveKeyPair::generate().public;
        let b = CurveKeyPair::generate().public;
        let text = format!("# watchers\n\n{a} web-1\n  {b}\tctl on laptop\n");
        let keys = parse_authorized_keys(&text).unwrap_or_default();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains_key(&a) && keys.contains_key(&b));
        assert_eq!(keys[&b].comment, "ctl on laptop");
        assert_eq!(
            parse_authorized_keys(&format!("{a}\nnot-a-key\n"))
                .map(|_| ())
                .map_err(|e| e.0),
            Err(2)
        );
    }

    /// Each line's role (none: control) and comment; bad options name their line.
    #[test]
    fn authorized_keys_take_a_role_before_the_key() {
        let [a, b, c, d] = [(); 4].map(|_| CurveKeyPair::generate().public);
        let text = format!("role=center {a} center-b\nrole=read {b} ops-laptop\n{c}\nrole=control\t{d} deploy bot\n");
        let keys = parse_authorized_keys(&text).unwrap_or_default();
        let entry = |k: &CurvePublicKey| keys.get(k).map(|e| (e.role, e.comment.as_str()));
        assert_eq!(entry(&a), Some((Role::Center, "center-b")));
        assert_eq!(entry(&b), Some((Role::Read, "ops-laptop")));
        assert_eq!(entry(&c), Some((Role::Control, "")));
        assert_eq!(entry(&d), Some((Role::Control, "deploy bot")));
        #[rustfmt::skip]
        let bad: [(String, usize, &str); 4] = [
            (format!("{a}\nrole=admin {b}\n"), 2, "unknown role \"admin\""),
            (format!("from=10.0.0.1 {a}\n"), 1, "unknown option \"from=10.0.0.1\""),
            ("role=read\n".to_string(), 1, "not a CURVE public key"),
            (format!("# x\n\nrole=read  {a}x\n"), 3, "not a CURVE public key"),
        ];
        for (text, line, why) in bad {
            match parse_authorized_keys(&text) {
                Err((l, w)) => assert!(l == line && w.contains(why), "{text:?}: line {l}: {w}"),
                Ok(_) => panic!("{text:?} parsed"),
            }
        }
    }

    fn handshake(
        server_secret: &CurveSecretKey,
        server_public: &CurvePublicKey,
    ) -> Result<(Cipher, Cipher), CurveError> {
        let client_keys = CurveKeyPair::generate();
        let mut client = ClientHandshake::new(server_public, &client_keys);
        let mut server = ServerHandshake::new(server_secret);
        let welcome = server.hello(&client.hello())?;
        let initiate = client.welcome(&welcome, b"client-meta")?;
        let (key, meta) = server.initiate(&initiate)?;
        assert_eq!(key, client_keys.public);
        assert_eq!(meta, b"client-meta");
        let (ready, server_cipher) = server.ready(b"server-meta");
        let (meta, client_cipher) = client.ready(&ready)?;
        assert_eq!(meta, b"server-meta");
        Ok((client_cipher, server_cipher))
    }

    #[test]
    fn handshake_and_messages_both_ways() {
        let server = CurveKeyPair::generate();
        let (mut c, mut s) = handshake(&server.secret, &server.public).unwrap_or_else(|e| panic!("{e}"));
        let mut out = BytesMut::new();
        c.seal_frame(&mut out, true, false, b"hello");
        // Skip the 2-byte short header.
        let body = Bytes::copy_from_slice(&out[2..]);
        assert_eq!(
            s.open_frame(body.clone()),
            Ok((true, false, Bytes::from_static(b"hello")))
        );
        assert_eq!(s.open_frame(body), Err(CurveError::Nonce), "a replay is refused");
        let mut out = BytesMut::new();
        s.seal_frame(&mut out, false, true, b"\x04PING");
        let mut body = out[2..].to_vec();
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(c.open_frame(Bytes::from(body)), Err(CurveError::Open("MESSAGE")));
    }

    #[test]
    fn a_client_with_the_wrong_server_key_fails() {
        let server = CurveKeyPair::generate();
        let other = CurveKeyPair::generate();
        assert!(handshake(&server.secret, &other.public).is_err());
    }

    #[test]
    fn garbage_commands_are_errors_not_panics() {
        use rand::{Rng, RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(26);
        let server = CurveKeyPair::generate();
        for _ in 0..300 {
            let len = [200, 168, 257, 300, 30, 33, rng.random_range(0..400)][rng.random_range(0..7)];
            let mut body = vec![0u8; len];
            rng.fill_bytes(&mut body);
            let mut s = ServerHandshake::new(&server.secret);
            assert!(s.hello(&body).is_err());
            assert!(s.initiate(&body).is_err());
            let mut c = ClientHandshake::new(&server.public, &CurveKeyPair::generate());
            assert!(c.welcome(&body, b"").is_err());
        }
    }
}
