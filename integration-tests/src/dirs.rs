//! Temporary directories for one test each, and the ipc and tcp endpoints inside or beside them.

use std::path::{Path, PathBuf};

/// The longest ipc path a Unix socket accepts, bytes.
const MAX_IPC_PATH: usize = 107;

/// A temporary directory under `/tmp` for one test (short, so ipc paths fit), removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// Creates `/tmp/nrv-XXXXXX`.
    ///
    /// # Panics
    /// When `/tmp` is not writable.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("nrv-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary directory in /tmp: {e}"));
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ipc://<dir>/<name>`.
    ///
    /// # Panics
    /// When the socket path would be longer than Unix sockets allow.
    pub fn ipc(&self, name: &str) -> String {
        let path = self.join(name);
        let path = path
            .to_str()
            .unwrap_or_else(|| panic!("temporary path {path:?} is not UTF-8"));
        assert!(
            path.len() <= MAX_IPC_PATH,
            "ipc path {path} is over {MAX_IPC_PATH} bytes"
        );
        format!("ipc://{path}")
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

/// A free loopback tcp port (bound to port 0 and released), as `tcp://127.0.0.1:PORT`.
///
/// # Panics
/// When no loopback port can be bound.
pub fn free_tcp_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"));
    drop(listener);
    format!("tcp://127.0.0.1:{port}")
}

/// The path part of an `ipc://` endpoint.
///
/// # Panics
/// When `endpoint` is not `ipc://`.
pub fn ipc_path(endpoint: &str) -> PathBuf {
    PathBuf::from(
        endpoint
            .strip_prefix("ipc://")
            .unwrap_or_else(|| panic!("{endpoint} is not an ipc:// endpoint")),
    )
}
