//! A watcher's resume secret: what makes a process id belong to the watcher that chose it.
//!
//! The id is not picked at random and then defended: it is *derived* from a 256-bit secret
//! the watcher draws at start, `id = the first 8 bytes of XSalsa20(key = secret, nonce =
//! ID_NONCE)`'s keystream, read little-endian. A hello proves ownership of its id by carrying
//! the secret; any center checks it with this one function, with no key file and no state, so
//! the proof holds across a center restart, a center with another logdir or another ring
//! member. This is a one-way function built from a PRF (the Salsa20 keystream is a PRF of its
//! key and nonce: Bernstein, "The Salsa20 family of stream ciphers", 2008; XSalsa20's
//! 24-byte nonce: Bernstein, "Extending the Salsa20 nonce", 2011): forging a secret for
//! someone else's id means inverting it, about 2^64 keystream computations for one 64-bit
//! target (the id's width is the wire format's).
//!
//! Why not a secret handed out by the center (a keyed hash of the id under a center key)?
//! After a restart a center knows no id, so it must accept a first hello without a secret
//! for any id; a peer that says hello for a victim's id before the victim reconnects would be
//! handed the victim's secret, for good. A derived id cannot be claimed that way.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ProcessId;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use salsa20::XSalsa20;

/// The XSalsa20 nonce of the id derivation: a fixed label, so the keystream is used for
/// nothing else.
const ID_NONCE: &[u8; 24] = b"nerve process id v1\0\0\0\0\0";

/// A watcher's secret (32 random bytes) whose derived id ([`ResumeSecret::id`]) is the
/// process id; sent in every [`crate::Hello`] as the proof of ownership. Its `Debug` output
/// hides the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeSecret(pub [u8; 32]);

impl ResumeSecret {
    /// The process id this secret owns.
    pub fn id(&self) -> ProcessId {
        let mut stream = XSalsa20::new(&self.0.into(), ID_NONCE.into());
        let mut out = [0u8; 8];
        stream.apply_keystream(&mut out);
        ProcessId(u64::from_le_bytes(out))
    }

    /// Whether this secret owns `id`. The id is public and the comparison is of public
    /// values, so it need not run in constant time.
    pub fn owns(&self, id: ProcessId) -> bool {
        self.id() == id
    }
}

impl fmt::Debug for ResumeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_fixed_function_of_its_secret() {
        // Pinned: a change here would orphan every running watcher across an upgrade.
        assert_eq!(ResumeSecret([0; 32]).id(), ResumeSecret([0; 32]).id());
        assert_eq!(ResumeSecret([0; 32]).id().to_string(), PINNED_ZERO);
        assert_eq!(ResumeSecret([7; 32]).id().to_string(), PINNED_SEVEN);
    }

    const PINNED_ZERO: &str = "5af85a16b78c59fc";
    const PINNED_SEVEN: &str = "f72a276643260ae9";

    #[test]
    fn a_secret_owns_its_own_id_only() {
        let a = ResumeSecret([1; 32]);
        let mut b = a;
        b.0[31] ^= 1;
        assert!(a.owns(a.id()));
        assert!(b.owns(b.id()));
        assert_ne!(a.id(), b.id(), "one bit of the secret changes the id");
        assert!(!b.owns(a.id()));
        assert!(!a.owns(ProcessId(a.id().0 ^ 1)));
    }

    #[test]
    fn debug_hides_the_bytes() {
        assert_eq!(format!("{:?}", ResumeSecret([0xab; 32])), "ResumeSecret(<redacted>)");
    }

    #[test]
    fn a_hello_with_a_secret_round_trips() {
        let secret = ResumeSecret([9; 32]);
        let bytes = postcard::to_allocvec(&Some(secret)).expect("encodes");
        assert_eq!(bytes.len(), 33, "Some tag + 32 raw bytes");
        let back: Option<ResumeSecret> = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, Some(secret));
    }
}
