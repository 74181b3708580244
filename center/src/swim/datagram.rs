//! Membership datagrams on UDP, sealed with the centers' own CURVE keys.
//!
//! ```text
//! sealed:  "NRM1" 0x01 | sender key (32) | nonce (24) | box( body )   (box: 16 tag + body)
//! open:    "NRM1" 0x00 | body                                         (rings without keys)
//! body:    epoch u64 BE | counter u64 BE | kind u8 | payload
//! ```
//!
//! The box is NaCl's `crypto_box` between the sender's and the receiver's long-term keys
//! ([`zmtp::PeerBox`]), so opening it proves who sent it and that it was meant for us; the
//! nonce is random (24 bytes: XSalsa20's, safe to pick at random). A replayed datagram opens
//! too, so the body carries the sender's epoch (its start time, in ms) and a counter, checked
//! against a 64-wide sliding window per sender ([`ReplayWindow`], as IPsec's anti-replay
//! window, RFC 4303 section 3.4.3). A sender key that is not listed with `role=center` is
//! refused before any crypto is done.

use std::collections::HashMap;
use std::sync::Arc;
use zmtp::{AuthorizedKeys, CurveKeyPair, CurvePublicKey, PeerBox, Role};

/// The largest datagram sent or accepted: 1400 bytes, below a 1500-byte Ethernet MTU with
/// room for IP and UDP headers and a tunnel (RFC 8085 section 3.2).
pub const MAX_DATAGRAM: usize = 1400;
const MAGIC: &[u8; 4] = b"NRM1";
const KEY: usize = 32;
const NONCE: usize = 24;
const TAG: usize = 16;
/// Body bytes before the payload: epoch, counter, kind.
const BODY_HEAD: usize = 8 + 8 + 1;
/// Bytes a sealed datagram adds to its payload.
pub const SEALED_OVERHEAD: usize = MAGIC.len() + 1 + KEY + NONCE + TAG + BODY_HEAD;
/// The largest payload (a foca packet) that fits in [`MAX_DATAGRAM`] once sealed.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - SEALED_OVERHEAD;
/// Peers whose precomputed boxes and replay windows are kept; past it they are all
/// forgotten and computed again (a few µs each), so memory stays bounded whatever arrives.
pub const MAX_PEER_STATE: usize = 4096;

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of foca's packets.
    Swim,
    /// The sender is leaving the ring now (it stops cleanly); the payload is its identity.
    Leave,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Swim => 1,
            Kind::Leave => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Swim),
            2 => Some(Kind::Leave),
            _ => None,
        }
    }
}

/// Why a datagram was refused. A refusal is logged once per source address
/// ([`crate::ratelimit::OncePerSource`]) and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("a datagram of {0} bytes, more than the {MAX_DATAGRAM} allowed")]
    TooBig(usize),
    /// Too short for its header, or not one of ours.
    #[error("not a Nerve membership datagram ({0} bytes)")]
    Malformed(usize),
    /// A sealed datagram in a ring without keys, or an open one in a ring with keys.
    #[error("a {0} datagram, but this ring is {1}")]
    Mode(&'static str, &'static str),
    /// The sender's key is not in `--authorized-keys`.
    #[error("a datagram from key {0}, which --authorized-keys does not list (add it with role=center to let that center in)")]
    UnknownKey(String),
    /// Listed, but not as a center's.
    #[error("a datagram from key {0}, listed with role={1}, not role=center")]
    NotCenter(String, &'static str),
    /// The box did not open: forged, altered, truncated, or sealed for another key.
    #[error("a datagram claiming key {0} whose seal does not open (forged, altered or truncated)")]
    Forged(String),
    /// Opened, but seen before (or from an older life of the sender).
    #[error("a replayed datagram from key {0}")]
    Replayed(String),
    /// Opened, but of no kind we know.
    #[error("a datagram of unknown kind {0}")]
    Kind(u8),
}

/// The anti-replay window of one sender: its newest (epoch, counter) and which of the 63
/// counters below it were seen. A pure state machine, tested as a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    epoch: u64,
    top: u64,
    /// Bit `i`: counter `top - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// True (and remembered) when (`epoch`, `counter`) was not seen before and is not older
    /// than the window: a newer epoch starts a new window; an older one is refused.
    pub fn accept(&mut self, epoch: u64, counter: u64) -> bool {
        if epoch > self.epoch || (epoch == self.epoch && self.seen == 0) {
            *self = ReplayWindow {
                epoch,
                top: counter,
                seen: 1,
            };
            return true;
        }
        if epoch < self.epoch {
            return false;
        }
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter;
            return true;
        }
        let back = self.top - counter;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// A datagram that opened: who sealed it (with keys) and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's key, proven by the seal (`None` in a ring without keys).
    pub key: Option<[u8; 32]>,
    /// What it carries.
    pub kind: Kind,
    /// foca's packet, or the leaving center's identity.
    pub payload: Vec<u8>,
}

/// Seals and opens this center's datagrams.
pub struct Sealer {
    /// With keys: ours, and who may send.
    keys: Option<(CurveKeyPair, Arc<AuthorizedKeys>)>,
    epoch: u64,
    counter: u64,
    boxes: HashMap<[u8; 32], PeerBox>,
    windows: HashMap<[u8; 32], ReplayWindow>,
}

impl Sealer {
    /// A sealer for a ring with keys (`Some`) or without; `epoch` is this center's start time
    /// in Unix ms (it must grow across restarts, for the peers' replay windows).
    pub fn new(keys: Option<(CurveKeyPair, Arc<AuthorizedKeys>)>, epoch: u64) -> Sealer {
        Sealer {
            keys,
            epoch,
            counter: 0,
            boxes: HashMap::new(),
            windows: HashMap::new(),
        }
    }

    /// True when `key` is listed with `role=center` now (always true without keys).
    pub fn is_center(&self, key: &[u8; 32]) -> bool {
        match &self.keys {
            None => true,
            Some((_, authorized)) => authorized
                .get(&CurvePublicKey(*key))
                .is_some_and(|e| e.role == Role::Center),
        }
    }

    fn peer_box(&mut self, key: &[u8; 32]) -> Option<&PeerBox> {
        let (ours, _) = self.keys.as_ref()?;
        if !self.boxes.contains_key(key) && self.boxes.len() >= MAX_PEER_STATE {
            self.boxes.clear();
        }
        Some(
            self.boxes
                .entry(*key)
                .or_insert_with(|| ours.peer_box(&CurvePublicKey(*key))),
        )
    }

    /// One datagram to the center whose key is `to` (ignored without keys).
    ///
    /// # Errors
    /// A message when the payload would not fit in [`MAX_DATAGRAM`], or, with keys, when the
    /// receiver's key is unknown.
    pub fn seal(&mut self, to: Option<&[u8; 32]>, kind: Kind, payload: &[u8]) -> Result<Vec<u8>, String> {
        if payload.len() > MAX_PAYLOAD {
            return Err(format!("a payload of {} bytes, more than {MAX_PAYLOAD}", payload.len()));
        }
        self.counter += 1;
        let mut body = Vec::with_capacity(BODY_HEAD + payload.len());
        body.extend_from_slice(&self.epoch.to_be_bytes());
        body.extend_from_slice(&self.counter.to_be_bytes());
        body.push(kind.byte());
        body.extend_from_slice(payload);
        let mut out = Vec::with_capacity(SEALED_OVERHEAD + payload.len());
        out.extend_from_slice(MAGIC);
        if self.keys.is_none() {
            out.push(0);
            out.extend_from_slice(&body);
            return Ok(out);
        }
        let to = to.ok_or("a member without a key, in a ring with keys")?;
        let ours = self.keys.as_ref().map(|(k, _)| k.public.0).unwrap_or_default();
        let nonce: [u8; NONCE] = rand::random();
        let sealed = self.peer_box(to).map(|b| b.seal(&nonce, &body)).unwrap_or_default();
        out.push(1);
        out.extend_from_slice(&ours);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens one datagram, in this order: size, header, mode, key listed (before any crypto,
    /// so a stranger's flood costs a map lookup a datagram), seal, replay window, kind.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn open(&mut self, datagram: &[u8]) -> Result<Opened, Refusal> {
        let n = datagram.len();
        if n > MAX_DATAGRAM {
            return Err(Refusal::TooBig(n));
        }
        if n < MAGIC.len() + 1 || &datagram[..MAGIC.len()] != MAGIC {
            return Err(Refusal::Malformed(n));
        }
        let rest = &datagram[MAGIC.len() + 1..];
        let (key, body) = match (datagram[MAGIC.len()], self.keys.is_some()) {
            (0, false) => (None, rest.to_vec()),
            (1, true) => {
                if rest.len() < KEY + NONCE + TAG + BODY_HEAD {
                    return Err(Refusal::Malformed(n));
                }
                let mut key = [0u8; KEY];
                key.copy_from_slice(&rest[..KEY]);
                let z85 = CurvePublicKey(key).to_z85();
                if let Some((_, authorized)) = &self.keys {
                    match authorized.get(&CurvePublicKey(key)) {
                        None => return Err(Refusal::UnknownKey(z85)),
                        Some(e) if e.role != Role::Center => return Err(Refusal::NotCenter(z85, e.role.as_str())),
                        Some(_) => {}
                    }
                }
                let mut nonce = [0u8; NONCE];
                nonce.copy_from_slice(&rest[KEY..KEY + NONCE]);
                let body = self
                    .peer_box(&key)
                    .and_then(|b| b.open(&nonce, &rest[KEY + NONCE..]))
                    .ok_or_else(|| Refusal::Forged(z85.clone()))?;
                (Some(key), body)
            }
            (0, true) => return Err(Refusal::Mode("open", "sealed (it has keys)")),
            (1, false) => return Err(Refusal::Mode("sealed", "open (it has no keys)")),
            _ => return Err(Refusal::Malformed(n)),
        };
        if body.len() < BODY_HEAD {
            return Err(Refusal::Malformed(n));
        }
        let epoch = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
        let counter = u64::from_be_bytes(body[8..16].try_into().unwrap_or_default());
        if let Some(k) = key {
            if !self.windows.contains_key(&k) && self.windows.len() >= MAX_PEER_STATE {
                self.windows.clear();
            }
            if !self.windows.entry(k).or_default().accept(epoch, counter) {
                return Err(Refusal::Replayed(CurvePublicKey(k).to_z85()));
            }
        }
        let kind = Kind::from_byte(body[16]).ok_or(Refusal::Kind(body[16]))?;
        Ok(Opened {
            key,
            kind,
            payload: body[BODY_HEAD..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_window_accepts_each_counter_once_and_refuses_older_lives() {
        // (epoch, counter, accepted)
        let cases: &[(u64, u64, bool)] = &[
            (10, 1, true),
            (10, 1, false),  // replayed
            (10, 3, true),   // a gap is fine (UDP loses)
            (10, 2, true),   // late, within the window
            (10, 2, false),  // replayed late
            (10, 70, true),  // far ahead: the window slides
            (10, 6, false),  // now older than the window
            (10, 7, true),   // 63 below the top: still inside
            (9, 100, false), // an older life of the sender
            (11, 1, true),   // a new life starts a new window
            (10, 71, false), // the old life is over
            (11, 1, false),
        ];
        let mut w = ReplayWindow::default();
        for (i, &(epoch, counter, want)) in cases.iter().enumerate() {
            assert_eq!(w.accept(epoch, counter), want, "case {i}: ({epoch}, {counter})");
        }
    }

    fn authorized(lines: &str) -> Arc<AuthorizedKeys> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, lines).unwrap();
        Arc::new(AuthorizedKeys::load(&path).unwrap())
    }

    struct Two {
        a: Sealer,
        b: Sealer,
        b_key: [u8; 32],
    }

    fn two() -> Two {
        let a = CurveKeyPair::generate();
        let b = CurveKeyPair::generate();
        let both = format!("role=center {}\nrole=center {}\n", a.public.to_z85(), b.public.to_z85());
        let b_key = b.public.0;
        Two {
            a: Sealer::new(Some((a, authorized(&both))), 1000),
            b: Sealer::new(Some((b, authorized(&both))), 2000),
            b_key,
        }
    }

    #[test]
    fn a_sealed_datagram_opens_once_for_its_receiver_only() {
        let mut t = two();
        let d = t.a.seal(Some(&t.b_key), Kind::Swim, b"ping").unwrap();
        assert!(d.len() <= MAX_DATAGRAM);
        assert_eq!(d.len(), SEALED_OVERHEAD + 4);
        let opened = t.b.open(&d).unwrap();
        assert_eq!(opened.kind, Kind::Swim);
        assert_eq!(opened.payload, b"ping");
        assert!(matches!(t.b.open(&d), Err(Refusal::Replayed(_))));
        // Sealed for B: A itself (or anyone else) cannot open it.
        let mut c = Sealer::new(
            Some((
                CurveKeyPair::generate(),
                authorized(&format!(
                    "role=center {}\n",
                    CurvePublicKey(d[5..37].try_into().unwrap()).to_z85()
                )),
            )),
            1,
        );
        assert!(matches!(c.open(&d), Err(Refusal::Forged(_))));
    }

    #[test]
    fn forged_truncated_oversized_and_strangers_datagrams_are_refused() {
        let mut t = two();
        let good = t.a.seal(Some(&t.b_key), Kind::Swim, b"hello").unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let stranger = CurveKeyPair::generate();
        let mut by_stranger = good.clone();
        by_stranger[5..37].copy_from_slice(&stranger.public.0);
        let reader = CurveKeyPair::generate();
        let mut s = Sealer::new(
            Some((
                CurveKeyPair::generate(),
                authorized(&format!("role=read {}\n", reader.public.to_z85())),
            )),
            1,
        );
        let mut by_reader = good.clone();
        by_reader[5..37].copy_from_slice(&reader.public.0);
        let mut open_mode = b"NRM1\x00".to_vec();
        open_mode.extend_from_slice(&[0; 17]);
        type Want = fn(&Refusal) -> bool;
        let cases: Vec<(&str, Vec<u8>, Want)> = vec![
            ("flipped bit", flipped, |r| matches!(r, Refusal::Forged(_))),
            ("truncated", good[..good.len() - 3].to_vec(), |r| {
                matches!(r, Refusal::Forged(_))
            }),
            ("header only", good[..40].to_vec(), |r| {
                matches!(r, Refusal::Malformed(_))
            }),
            ("empty", Vec::new(), |r| matches!(r, Refusal::Malformed(0))),
            ("not ours", b"GET / HTTP/1.1\r\n".to_vec(), |r| {
                matches!(r, Refusal::Malformed(_))
            }),
            ("oversized", vec![0; MAX_DATAGRAM + 1], |r| {
                matches!(r, Refusal::TooBig(_))
            }),
            ("stranger's key", by_stranger, |r| matches!(r, Refusal::UnknownKey(_))),
            ("open in a sealed ring", open_mode, |r| matches!(r, Refusal::Mode(..))),
        ];
        for (name, d, want) in cases {
            let got = t.b.open(&d);
            assert!(got.as_ref().is_err_and(want), "{name}: {got:?}");
        }
        assert!(matches!(s.open(&by_reader), Err(Refusal::NotCenter(_, "read"))));
        // The real one still opens after all that.
        assert!(t.b.open(&good).is_ok());
    }

    #[test]
    fn a_payload_past_the_bound_is_not_sealed() {
        let mut t = two();
        assert!(t.a.seal(Some(&t.b_key), Kind::Swim, &vec![0; MAX_PAYLOAD]).is_ok());
        let err =
            t.a.seal(Some(&t.b_key), Kind::Swim, &vec![0; MAX_PAYLOAD + 1])
                .unwrap_err();
        assert!(err.contains("more than"), "{err}");
        assert_eq!(
            t.a.seal(Some(&t.b_key), Kind::Swim, &vec![0; MAX_PAYLOAD])
                .unwrap()
                .len(),
            MAX_DATAGRAM
        );
    }

    #[test]
    fn without_keys_datagrams_are_open_and_sealed_ones_refused() {
        let mut a = Sealer::new(None, 1);
        let mut b = Sealer::new(None, 2);
        let d = a.seal(None, Kind::Leave, b"bye").unwrap();
        assert_eq!(b.open(&d).unwrap().payload, b"bye");
        let mut t = two();
        let sealed = t.a.seal(Some(&t.b_key), Kind::Swim, b"x").unwrap();
        assert!(matches!(b.open(&sealed), Err(Refusal::Mode(..))));
    }
}
