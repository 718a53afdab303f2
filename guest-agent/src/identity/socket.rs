//! Where the Workload API listens: a Unix socket (SPIFFE_Workload_Endpoint.md §3, the
//! transport the standard prefers), `/run/zone/spiffe/workload.sock` in the zone. Any user of
//! any container may connect (the directory is 0755, the socket 0666): the API has no client
//! authentication, the zone is the unit of identity.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tonic::transport::Server;

use super::connection_limit::{self, MAX_CONNECTIONS};
use super::workload_api::WorkloadApi;
use crate::request_error::report;

/// The agent's directory holding the Workload API socket.
pub const WORKLOAD_API_DIR: &str = "/run/zone/spiffe";
/// The socket's name in that directory.
pub const SOCKET_NAME: &str = "workload.sock";
const DIR_MODE: u32 = 0o755;
const SOCKET_MODE: u32 = 0o666;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("creating the directory {0}")]
    Directory(PathBuf, #[source] io::Error),
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("removing the stale socket {0}")]
    Stale(PathBuf, #[source] io::Error),
    #[error("binding {0}")]
    Bind(PathBuf, #[source] io::Error),
    #[error("setting the mode of {0}")]
    Mode(PathBuf, #[source] io::Error),
}

/// Listens on `dir`/workload.sock: makes `dir` (mode 0755), replaces a socket left from
/// before, and opens the socket to everyone (0666). Needs a Tokio runtime.
pub fn bind(dir: &Path) -> Result<UnixListener, SocketError> {
    fs::create_dir_all(dir).map_err(|e| SocketError::Directory(dir.to_path_buf(), e))?;
    set_mode(dir, DIR_MODE)?;
    let socket = dir.join(SOCKET_NAME);
    match fs::symlink_metadata(&socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(&socket).map_err(|e| SocketError::Stale(socket.clone(), e))?;
        }
        Ok(_) => return Err(SocketError::NotASocket(socket)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SocketError::Stale(socket, e)),
    }
    let listener = UnixListener::bind(&socket).map_err(|e| SocketError::Bind(socket.clone(), e))?;
    set_mode(&socket, SOCKET_MODE)?;
    Ok(listener)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SocketError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| SocketError::Mode(path.to_path_buf(), e))
}

/// Serves `api` on `dir`/workload.sock from a task of its own, until the runtime ends.
pub fn start(api: WorkloadApi, dir: &Path) -> Result<JoinHandle<()>, SocketError> {
    let listener = bind(dir)?;
    let socket = dir.join(SOCKET_NAME);
    tracing::info!(socket = %socket.display(), "serving the SPIFFE Workload API");
    Ok(tokio::spawn(async move {
        let served = Server::builder()
            .add_service(api.into_service())
            .serve_with_incoming(connection_limit::limit(listener, MAX_CONNECTIONS))
            .await;
        if let Err(e) = served {
            tracing::error!(socket = %socket.display(), error = %report(&e), "the SPIFFE Workload API stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_bind_modes_and_stale_socket_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run/zone/spiffe");

        let first = bind(&dir).unwrap();
        drop(first);
        let again = bind(&dir);

        assert!(again.is_ok(), "{:?}", again.err());
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join(SOCKET_NAME)), 0o666);
    }

    #[tokio::test]
    async fn test_bind_refuses_to_remove_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(SOCKET_NAME), "data").unwrap();

        let err = bind(tmp.path()).unwrap_err();

        assert!(matches!(err, SocketError::NotASocket(_)), "{err}");
        assert!(tmp.path().join(SOCKET_NAME).is_file());
    }
}
