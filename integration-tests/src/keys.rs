//! CURVE key pairs made by `nrv-ctl keygen` for the tests that encrypt.

use crate::binaries::base_command;
use crate::{binaries, run, Input, TestDir, WAIT};
use std::fs;
use std::path::PathBuf;

/// A key pair made by `nrv-ctl keygen --out DIR/NAME`: the paths of `NAME.key` and `NAME.pub`,
/// and the public key text.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// The secret key file (mode 0600).
    pub secret: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The public key, 40 characters of Z85.
    pub public_key: String,
}

/// Runs `nrv-ctl keygen --out DIR/NAME` and returns what it wrote.
///
/// # Panics
/// When keygen fails or its files are not as documented.
pub fn keygen(dir: &TestDir, name: &str) -> KeyFiles {
    let prefix = dir.join(name);
    let prefix = prefix.to_str().unwrap_or_else(|| panic!("{prefix:?} is not UTF-8"));
    let mut cmd = base_command(&binaries().ctl, dir.path());
    cmd.args(["keygen", "--out", prefix]);
    let out = run(cmd, Input::Null, WAIT, "nrv-ctl keygen");
    assert_eq!(out.code(), Some(0), "nrv-ctl keygen: {}", out.describe());
    let public = PathBuf::from(format!("{prefix}.pub"));
    let public_key = fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("{}: {e}", public.display()))
        .trim()
        .to_string();
    assert_eq!(public_key.len(), 40, "public key {public_key:?}");
    KeyFiles {
        secret: PathBuf::from(format!("{prefix}.key")),
        public,
        public_key,
    }
}
