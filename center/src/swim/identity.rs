//! Who a center is in the membership protocol, and the codec that reads and checks it.

use foca::{Codec, Header, Member, PostcardCodec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Longest center name a member identity may carry: 128 bytes (names are host-like labels;
/// this keeps a member update near 200 bytes, so several fit in one datagram).
pub const MAX_NAME_BYTES: usize = 128;

/// A center's identity in SWIM: its name, its CURVE public key (`None` in a ring without
/// keys), the UDP address its membership datagrams come from (the host and port of its
/// `--sync` endpoint), and its epoch: the Unix time in milliseconds when it started, plus one
/// for each time it renewed itself after being declared down (foca's auto-rejoin, the
/// incarnation-above-incarnation of SWIM's section 4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CenterId {
    /// `--name`.
    pub name: String,
    /// The center's CURVE public key (32 bytes).
    pub key: Option<[u8; 32]>,
    /// Where its datagrams come from and go to.
    pub addr: SocketAddr,
    /// Start time in Unix ms, plus renewals.
    pub epoch: u64,
}

impl foca::Identity for CenterId {
    type Addr = SocketAddr;

    /// A center declared down (wrongly: it is still running) rejoins with the next epoch.
    fn renew(&self) -> Option<Self> {
        Some(CenterId {
            epoch: self.epoch.saturating_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Two identities at one address: the later life wins (a restarted center).
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.epoch > adversary.epoch
    }
}

impl CenterId {
    /// Checks what a peer cannot be trusted to get right: a name that is not empty, at most
    /// [`MAX_NAME_BYTES`], without control characters.
    ///
    /// # Errors
    /// What is wrong, for the refusal's log line.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "a member name of {} bytes (1 to {MAX_NAME_BYTES})",
                self.name.len()
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err("a member name with control characters".into());
        }
        Ok(())
    }
}

/// What [`NerveCodec`] refuses in a datagram that decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not postcard of foca's messages.
    #[error("undecodable: {0}")]
    Postcard(#[from] postcard::Error),
    /// An identity that fails [`CenterId::check`].
    #[error("{0}")]
    Invalid(String),
    /// A member key that is not listed with `role=center` (rings with keys only).
    #[error("a member whose key is not listed with role=center")]
    NotCenter,
    /// A new member past [`Guard::max_members`].
    #[error("a new member past the bound of {0} members")]
    TooMany(usize),
}

/// Whether a key is listed with `role=center` now, asked by the codec at each decode.
pub type IsCenter = Arc<dyn Fn(&[u8; 32]) -> bool + Send + Sync>;

/// What the codec checks members against; shared with [`crate::swim::Membership`], which
/// refreshes `known` from foca's member list after every step.
#[derive(Default)]
pub struct Guard {
    /// Addresses foca knows now.
    pub known: HashSet<SocketAddr>,
    /// The bound on members ([`crate::swim::MAX_MEMBERS`]).
    pub max_members: usize,
    /// With keys: the keys listed with `role=center`, asked at each decode (so a reload of
    /// `--authorized-keys` counts at once).
    pub is_center: Option<IsCenter>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("known", &self.known.len())
            .field("max_members", &self.max_members)
            .field("keys", &self.is_center.is_some())
            .finish()
    }
}

impl Guard {
    fn admit(&self, id: &CenterId) -> Result<(), CodecError> {
        id.check().map_err(CodecError::Invalid)?;
        if let Some(is_center) = &self.is_center {
            if !id.key.as_ref().is_some_and(|k| is_center(k)) {
                return Err(CodecError::NotCenter);
            }
        }
        if !self.known.contains(&id.addr) && self.known.len() >= self.max_members {
            return Err(CodecError::TooMany(self.max_members));
        }
        Ok(())
    }
}

/// foca's postcard codec, with every identity it decodes checked by the [`Guard`]: a member
/// of a ring with keys can still gossip identities, so those are bounded and checked too.
#[derive(Debug, Clone)]
pub struct NerveCodec {
    /// Shared with the membership state.
    pub guard: Arc<Mutex<Guard>>,
}

impl NerveCodec {
    fn admit(&self, id: &CenterId) -> Result<(), CodecError> {
        // A poisoned lock means a panic elsewhere; refusing is the safe side.
        let guard = self
            .guard
            .lock()
            .map_err(|_| CodecError::Invalid("membership guard poisoned".into()))?;
        guard.admit(id)
    }
}

impl Codec<CenterId> for NerveCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<CenterId>, buf: impl bytes::BufMut) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, buf: impl bytes::Buf) -> Result<Header<CenterId>, CodecError> {
        let header: Header<CenterId> = PostcardCodec.decode_header(buf)?;
        self.admit(&header.src)?;
        Ok(header)
    }

    fn encode_member(&mut self, member: &Member<CenterId>, buf: impl bytes::BufMut) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl bytes::Buf) -> Result<Member<CenterId>, CodecError> {
        let member: Member<CenterId> = PostcardCodec.decode_member(buf)?;
        self.admit(member.id())?;
        Ok(member)
    }
}
