//! A zone's state directory, `/run/zones/<id>/`: created for one zone, removed when dropped.
//!
//! It holds the VMM's vsock socket (`vsock.sock`), the listener the agent's connection arrives
//! at (`vsock.sock_1024`: guest-initiated connections to port N reach `<socket>_N`) and the
//! serial console log (`console.log`); for zones started with `zonectl run` also the zone's
//! state (`state.json`, see `zone_state`), and for detached ones the command's output
//! (`stdout.log`, `stderr.log`) and the supervisor's own log (`supervisor.log`).

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Where zones' state directories live.
pub const DEFAULT_STATE_ROOT: &str = "/run/zones";

/// Length of a zone id in hex characters.
const ID_HEX_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum ZoneDirError {
    #[error("creating the state root {0}")]
    CreateRoot(PathBuf, #[source] io::Error),
    #[error("reading random bytes for a zone id")]
    RandomId(#[source] io::Error),
    #[error("creating the zone directory {0}")]
    CreateDir(PathBuf, #[source] io::Error),
}

/// One zone's state directory; removed with everything in it on drop.
#[derive(Debug)]
pub struct ZoneDir {
    id: String,
    path: PathBuf,
    remove_on_drop: bool,
}

impl ZoneDir {
    /// Creates `<root>/<random id>/` (and `root` if missing), readable by root only.
    pub fn create(root: &Path) -> Result<Self, ZoneDirError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .map_err(|e| ZoneDirError::CreateRoot(root.to_path_buf(), e))?;
        loop {
            let id = random_id().map_err(ZoneDirError::RandomId)?;
            let path = root.join(&id);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(ZoneDir {
                        id,
                        path,
                        remove_on_drop: true,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ZoneDirError::CreateDir(path, e)),
            }
        }
    }

    /// An existing zone's directory, `<root>/<id>/`; kept on drop.
    pub fn open(root: &Path, id: &str) -> Self {
        ZoneDir {
            id: id.to_string(),
            path: root.join(id),
            remove_on_drop: false,
        }
    }

    /// Whether dropping this removes the directory.
    pub fn set_remove_on_drop(&mut self, remove: bool) {
        self.remove_on_drop = remove;
    }

    /// Removes the directory with everything in it now.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The VMM's vsock Unix socket (`--vsock`).
    pub fn vsock_socket(&self) -> PathBuf {
        self.path.join("vsock.sock")
    }

    /// Where connections the guest opens to host port `port` arrive.
    pub fn vsock_listener(&self, port: u32) -> PathBuf {
        self.path.join(format!("vsock.sock_{port}"))
    }

    /// The command's standard output, written when it ends (detached zones).
    pub fn stdout_log(&self) -> PathBuf {
        self.path.join("stdout.log")
    }

    /// The command's standard error, written when it ends (detached zones).
    pub fn stderr_log(&self) -> PathBuf {
        self.path.join("stderr.log")
    }

    /// The supervisor's stdout and stderr (detached zones).
    pub fn supervisor_log(&self) -> PathBuf {
        self.path.join("supervisor.log")
    }

    /// The serial console log (`--serial-log`).
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }

    /// The zone's vTPM state (swtpm's), removed with the zone.
    pub fn vtpm_dir(&self) -> PathBuf {
        self.path.join("vtpm")
    }

    /// The measured-boot event log the VMM wrote.
    pub fn tpm_event_log(&self) -> PathBuf {
        self.path.join(zone_identity::EVENT_LOG_FILE)
    }

    /// The vTPM's EK public (TPM2B_PUBLIC) as the VMM read it before the zone ran.
    pub fn tpm_ek_public(&self) -> PathBuf {
        self.path.join(zone_identity::EK_PUBLIC_FILE)
    }

    /// What the identity authority decided for the zone (`zonectl identity`).
    pub fn identity_record(&self) -> PathBuf {
        self.path.join(zone_identity::RECORD_FILE)
    }
}

impl Drop for ZoneDir {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        match self.remove() {
            Ok(()) => tracing::debug!(path = %self.path.display(), "zone state removed"),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "removing zone state")
            }
        }
    }
}

fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; ID_HEX_LEN / 2];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_zone_dir_create_then_drop_removed() {
        let root = tempfile::tempdir().unwrap();
        let state_root = root.path().join("zones");

        let zone = ZoneDir::create(&state_root).unwrap();
        let path = zone.path().to_path_buf();
        fs::write(zone.console_log(), b"boot").unwrap();
        let created = path.is_dir();
        drop(zone);

        assert!(created);
        assert!(!path.exists());
        assert!(state_root.is_dir(), "the shared root stays");
    }

    #[test]
    fn test_zone_dir_id_12_hex_and_paths_inside() {
        let root = tempfile::tempdir().unwrap();

        let zone = ZoneDir::create(root.path()).unwrap();

        assert_eq!(zone.id().len(), 12);
        assert!(zone.id().chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(zone.path(), root.path().join(zone.id()));
        assert_eq!(zone.vsock_socket(), zone.path().join("vsock.sock"));
        assert_eq!(
            zone.vsock_listener(1024),
            zone.path().join("vsock.sock_1024")
        );
    }

    #[test]
    fn test_zone_dir_kept_then_opened_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let mut zone = ZoneDir::create(root.path()).unwrap();
        zone.set_remove_on_drop(false);
        let id = zone.id().to_string();
        drop(zone);

        let opened = ZoneDir::open(root.path(), &id);
        let kept = opened.path().is_dir();
        drop(opened);
        let still = root.path().join(&id).is_dir();
        ZoneDir::open(root.path(), &id).remove().unwrap();

        assert!(kept && still);
        assert!(!root.path().join(&id).exists());
    }

    #[test]
    fn test_zone_dir_two_zones_distinct() {
        let root = tempfile::tempdir().unwrap();

        let a = ZoneDir::create(root.path()).unwrap();
        let b = ZoneDir::create(root.path()).unwrap();

        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn test_zone_dir_root_is_a_file_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        fs::write(&file, b"").unwrap();

        let err = ZoneDir::create(&file).unwrap_err();

        assert!(matches!(
            err,
            ZoneDirError::CreateRoot(..) | ZoneDirError::CreateDir(..)
        ));
    }
}
