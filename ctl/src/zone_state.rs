//! A zone's recorded state, `/run/zones/<id>/state.json`, and finding zones by name or id.
//!
//! The file is written whole, atomically (a temporary file renamed over it), by the process
//! that owns the zone: `zonectl run` in the foreground, else its supervisor
//! (`zonectl supervise`). Other verbs only read it, except `stop` when the supervisor is gone.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::zone_proc;

/// The state file's name inside a zone's directory.
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {0}")]
    Read(PathBuf, #[source] io::Error),
    #[error("{0} is not a zone state file")]
    Parse(PathBuf, #[source] serde_json::Error),
    #[error("writing {0}")]
    Write(PathBuf, #[source] io::Error),
    #[error("listing zones in {0}")]
    List(PathBuf, #[source] io::Error),
    #[error("no zone {0:?}: see `zonectl ps -a`")]
    NotFound(String),
    #[error("{reference:?} matches several zones ({}): give more of the id", .ids.join(", "))]
    Ambiguous { reference: String, ids: Vec<String> },
}

/// Where a zone is in its life, as its owner last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The VMM is being started.
    Starting,
    /// The VMM runs the command.
    Running,
    /// The command ended; `exit_code` holds its status.
    Exited,
    /// Stopped by `zonectl stop` (or a signal to its supervisor) before the command ended.
    Stopped,
    /// The VMM exited (or was killed) while the command ran.
    VmmDied,
    /// The zone could not be started or the agent failed; `error` says why.
    Failed,
}

/// The contents of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    /// File system type of the container root on /dev/vda, if the zone has one.
    #[serde(default)]
    pub rootfs_fstype: Option<String>,
    pub command: Vec<String>,
    /// The main process's environment, which `zonectl exec` gives its processes too.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub supervisor_pid: Option<i32>,
    pub vmm_pid: Option<i32>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Remove the state directory when the zone ends (`run -d --rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// What the zone booted, for `zonectl attest`'s manifest.
    #[serde(default)]
    pub boot: Option<BootRecord>,
    /// The zone's network (`--network`), undone when the zone ends; `None`: loopback only.
    #[serde(default)]
    pub network: Option<crate::network::NetworkRecord>,
}

/// What a zone booted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    pub vmm: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The zone has a vTPM.
    pub tpm: bool,
    pub image_manifest_digest: Option<String>,
    pub oci_config_digest: Option<String>,
}

impl ZoneState {
    /// Reads `<zone_dir>/state.json`.
    pub fn load(zone_dir: &Path) -> Result<Self, StateError> {
        let path = zone_dir.join(STATE_FILE);
        let text = fs::read(&path).map_err(|e| StateError::Read(path.clone(), e))?;
        serde_json::from_slice(&text).map_err(|e| StateError::Parse(path, e))
    }

    /// Writes `<zone_dir>/state.json` atomically: readers see the old or the new file whole.
    pub fn save(&self, zone_dir: &Path) -> Result<(), StateError> {
        let path = zone_dir.join(STATE_FILE);
        let temp = zone_dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            serde_json::to_writer_pretty(&mut file, self).map_err(io::Error::from)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            StateError::Write(path, e)
        })
    }

    /// Whether the zone should be running: its recorded status says so.
    pub fn is_active(&self) -> bool {
        matches!(self.status, Status::Starting | Status::Running)
    }

    /// The status as `ps` shows it, checking the recorded processes against the live ones.
    pub fn status_text(&self) -> String {
        let vmm_alive = self
            .vmm_pid
            .is_some_and(|pid| zone_proc::owned_alive(pid, &self.id));
        let supervisor_alive = self
            .supervisor_pid
            .is_some_and(|pid| zone_proc::owned_alive(pid, &self.id));
        render_status(self, vmm_alive, supervisor_alive)
    }
}

/// The status text for `state` given which of its processes are alive.
pub fn render_status(state: &ZoneState, vmm_alive: bool, supervisor_alive: bool) -> String {
    match state.status {
        Status::Starting if !supervisor_alive => "failed (supervisor died)".to_string(),
        Status::Starting => "starting".to_string(),
        Status::Running if !vmm_alive => "vmm died".to_string(),
        Status::Running => "running".to_string(),
        Status::Exited => match state.exit_code {
            Some(code) => format!("exited ({code})"),
            None => "exited".to_string(),
        },
        Status::Stopped => "stopped".to_string(),
        Status::VmmDied => "vmm died".to_string(),
        Status::Failed => "failed".to_string(),
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// "N seconds ago" and the like, for `created` at `now`.
pub fn ago(created: u64, now: u64) -> String {
    let secs = now.saturating_sub(created);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

/// Every zone under `root` that has a readable state file, oldest first. Directories without
/// one (a zone being created, debris) are skipped.
pub fn list(root: &Path) -> Result<Vec<ZoneState>, StateError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateError::List(root.to_path_buf(), e)),
    };
    let mut zones = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StateError::List(root.to_path_buf(), e))?;
        match ZoneState::load(&entry.path()) {
            Ok(state) => zones.push(state),
            Err(e) => tracing::debug!(path = %entry.path().display(), error = %e, "skipped"),
        }
    }
    zones.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(zones)
}

/// Finds the zone `reference` names: an exact name, an exact id, or a unique id prefix.
pub fn resolve<'a>(zones: &'a [ZoneState], reference: &str) -> Result<&'a ZoneState, StateError> {
    if reference.is_empty() {
        return Err(StateError::NotFound(String::new()));
    }
    if let Some(zone) = zones
        .iter()
        .find(|z| z.name.as_deref() == Some(reference) || z.id == reference)
    {
        return Ok(zone);
    }
    let matches: Vec<&ZoneState> = zones
        .iter()
        .filter(|z| z.id.starts_with(reference))
        .collect();
    match matches.as_slice() {
        [zone] => Ok(zone),
        [] => Err(StateError::NotFound(reference.to_string())),
        several => Err(StateError::Ambiguous {
            reference: reference.to_string(),
            ids: several.iter().map(|z| z.id.clone()).collect(),
        }),
    }
}

/// Finds the zone `reference` names among those under `root`.
pub fn find(root: &Path, reference: &str) -> Result<ZoneState, StateError> {
    let zones = list(root)?;
    resolve(&zones, reference).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, name: Option<&str>) -> ZoneState {
        ZoneState {
            rootfs_fstype: None,
            id: id.to_string(),
            name: name.map(str::to_string),
            image: "busybox".to_string(),
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            env: Vec::new(),
            created: 1_700_000_000,
            supervisor_pid: Some(10),
            vmm_pid: Some(11),
            status: Status::Running,
            exit_code: None,
            error: None,
            auto_remove: false,
            boot: None,
            network: None,
        }
    }

    #[test]
    fn test_zone_state_save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = state("abcdef012345", Some("web"));
        original.status = Status::Exited;
        original.exit_code = Some(3);

        original.save(dir.path()).unwrap();
        let loaded = ZoneState::load(dir.path()).unwrap();

        assert_eq!(loaded, original);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let text = fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(text.contains("\"status\": \"exited\""), "{text}");
    }

    #[test]
    fn test_zone_state_load_garbage_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"{nope").unwrap();

        let err = ZoneState::load(dir.path()).unwrap_err();

        assert!(matches!(err, StateError::Parse(..)), "{err:?}");
    }

    #[test]
    fn test_list_skips_dirs_without_state_sorted_by_created() {
        let root = tempfile::tempdir().unwrap();
        for (id, created) in [("bbb", 2), ("aaa", 1)] {
            let dir = root.path().join(id);
            fs::create_dir(&dir).unwrap();
            let mut s = state(id, None);
            s.created = created;
            s.save(&dir).unwrap();
        }
        fs::create_dir(root.path().join("empty")).unwrap();

        let zones = list(root.path()).unwrap();

        let ids: Vec<&str> = zones.iter().map(|z| z.id.as_str()).collect();
        assert_eq!(ids, ["aaa", "bbb"]);
    }

    #[test]
    fn test_list_missing_root_empty() {
        let root = tempfile::tempdir().unwrap();

        assert!(list(&root.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn test_resolve_name_id_and_unique_prefix_found() {
        let zones = [state("abc111", Some("web")), state("abd222", None)];

        assert_eq!(resolve(&zones, "web").unwrap().id, "abc111");
        assert_eq!(resolve(&zones, "abd222").unwrap().id, "abd222");
        assert_eq!(resolve(&zones, "abc").unwrap().id, "abc111");
    }

    #[test]
    fn test_resolve_shared_prefix_ambiguous() {
        let zones = [state("abc111", Some("web")), state("abd222", None)];

        let err = resolve(&zones, "ab").unwrap_err();

        assert!(
            matches!(&err, StateError::Ambiguous { ids, .. } if ids.len() == 2),
            "{err:?}"
        );
        assert!(err.to_string().contains("abc111, abd222"), "{err}");
    }

    #[test]
    fn test_resolve_unknown_or_empty_not_found() {
        let zones = [state("abc111", Some("web"))];

        assert!(matches!(
            resolve(&zones, "db"),
            Err(StateError::NotFound(_))
        ));
        assert!(matches!(resolve(&zones, ""), Err(StateError::NotFound(_))));
    }

    #[test]
    fn test_resolve_name_wins_over_id_prefix() {
        let zones = [state("cafe01", None), state("beef02", Some("cafe"))];

        assert_eq!(resolve(&zones, "cafe").unwrap().id, "beef02");
    }

    #[test]
    fn test_render_status_each_state_text() {
        let mut s = state("abc", None);
        assert_eq!(render_status(&s, true, true), "running");
        assert_eq!(render_status(&s, false, true), "vmm died");
        s.status = Status::Exited;
        s.exit_code = Some(7);
        assert_eq!(render_status(&s, false, false), "exited (7)");
        s.status = Status::Stopped;
        assert_eq!(render_status(&s, false, false), "stopped");
        s.status = Status::VmmDied;
        assert_eq!(render_status(&s, false, true), "vmm died");
        s.status = Status::Starting;
        assert_eq!(render_status(&s, false, true), "starting");
        assert_eq!(render_status(&s, false, false), "failed (supervisor died)");
    }

    #[test]
    fn test_ago_units_and_plural() {
        assert_eq!(ago(100, 101), "1 second ago");
        assert_eq!(ago(100, 100 + 125), "2 minutes ago");
        assert_eq!(ago(100, 100 + 7200), "2 hours ago");
        assert_eq!(ago(200, 100), "0 seconds ago");
    }
}
