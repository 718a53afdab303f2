//! Out-of-memory kills in containers, as events for the host (containerd's TaskOOM).
//!
//! The kernel counts the OOM kills of a cgroup in its `memory.events` (`oom_kill N`) and
//! notifies inotify watchers when that file changes (`Documentation/admin-guide/cgroup-v2.rst`,
//! "memory.events"). One thread reads the notifications for every container; when a
//! container's count rises, its id goes to every subscriber.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::broadcast;

use crate::containers::lock;

/// How many events wait for a slow subscriber before it misses the oldest.
const BACKLOG: usize = 64;

#[derive(Debug)]
struct Watched {
    container_id: String,
    file: PathBuf,
    kills: u64,
}

/// Watches containers' cgroups for OOM kills.
#[derive(Debug)]
pub struct OomWatch {
    inotify: Inotify,
    watched: Mutex<HashMap<WatchDescriptor, Watched>>,
    events: broadcast::Sender<String>,
}

impl OomWatch {
    /// Starts the thread that reads the notifications.
    pub fn start() -> io::Result<Arc<OomWatch>> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
        let (events, _) = broadcast::channel(BACKLOG);
        let watch = Arc::new(OomWatch {
            inotify,
            watched: Mutex::new(HashMap::new()),
            events,
        });
        let reader = Arc::clone(&watch);
        std::thread::Builder::new()
            .name("oom".into())
            .spawn(move || reader.read_notifications())?;
        Ok(watch)
    }

    /// Watches the container whose cgroup is `cgroup_dir`.
    pub fn watch(&self, container_id: &str, cgroup_dir: &Path) -> io::Result<()> {
        let file = cgroup_dir.join("memory.events");
        let kills = oom_kills(&file)?;
        let wd = self.inotify.add_watch(&file, AddWatchFlags::IN_MODIFY)?;
        let watched = Watched {
            container_id: container_id.to_string(),
            file,
            kills,
        };
        lock(&self.watched).insert(wd, watched);
        Ok(())
    }

    /// Stops watching a container (before its cgroup goes).
    pub fn unwatch(&self, container_id: &str) {
        let mut watched = lock(&self.watched);
        let wds: Vec<WatchDescriptor> = watched
            .iter()
            .filter(|(_, w)| w.container_id == container_id)
            .map(|(wd, _)| *wd)
            .collect();
        for wd in wds {
            watched.remove(&wd);
            let _ = self.inotify.rm_watch(wd);
        }
    }

    /// The ids of containers with an OOM kill from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    fn read_notifications(&self) {
        loop {
            let notifications = match self.inotify.read_events() {
                Ok(notifications) => notifications,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "reading OOM notifications; no more OOM events");
                    return;
                }
            };
            for notification in notifications {
                let mut watched = lock(&self.watched);
                let Some(w) = watched.get_mut(&notification.wd) else {
                    continue;
                };
                match oom_kills(&w.file) {
                    Ok(kills) if kills > w.kills => {
                        w.kills = kills;
                        tracing::warn!(container = %w.container_id, kills, "OOM kill");
                        // No subscriber is not an error: nobody asked.
                        let _ = self.events.send(w.container_id.clone());
                    }
                    Ok(_) => {}
                    // The cgroup went away between the notification and the read.
                    Err(e) => tracing::debug!(file = %w.file.display(), error = %e, "reading"),
                }
            }
        }
    }
}

/// The `oom_kill` count of a `memory.events` file.
fn oom_kills(file: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(file)?;
    parse_oom_kills(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no oom_kill count", file.display()),
        )
    })
}

fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let count = line.strip_prefix("oom_kill ")?;
        count.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const EVENTS: &str = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";

    #[test]
    fn test_parse_oom_kills_from_memory_events() {
        assert_eq!(parse_oom_kills(EVENTS), Some(1));
        assert_eq!(parse_oom_kills("oom 2\noom_kill 17\n"), Some(17));
    }

    #[test]
    fn test_parse_oom_kills_missing_or_malformed_is_none() {
        assert_eq!(parse_oom_kills("low 0\noom 1\n"), None);
        assert_eq!(parse_oom_kills("oom_kill lots\n"), None);
        assert_eq!(parse_oom_kills("oom_kill -1\n"), None);
        assert_eq!(parse_oom_kills(""), None);
    }

    /// A directory standing in for a cgroup: inotify sees writes to a plain file the same way.
    fn fake_cgroup(kills: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.events"),
            format!("oom 0\noom_kill {kills}\n"),
        )
        .unwrap();
        dir
    }

    fn next(rx: &mut broadcast::Receiver<String>) -> Option<String> {
        for _ in 0..200 {
            match rx.try_recv() {
                Ok(id) => return Some(id),
                Err(broadcast::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        }
        None
    }

    #[test]
    fn test_rising_count_is_an_event_for_that_container_only() {
        let watch = OomWatch::start().unwrap();
        let (a, b) = (fake_cgroup(0), fake_cgroup(2));
        watch.watch("a", a.path()).unwrap();
        watch.watch("b", b.path()).unwrap();
        let mut rx = watch.subscribe();

        // Same count (another field changed): no event. Then b's count rises.
        std::fs::write(a.path().join("memory.events"), "oom 1\noom_kill 0\n").unwrap();
        std::fs::write(b.path().join("memory.events"), "oom 3\noom_kill 3\n").unwrap();

        assert_eq!(next(&mut rx).as_deref(), Some("b"));
        std::fs::write(a.path().join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(next(&mut rx).as_deref(), Some("a"));
    }

    #[test]
    fn test_unwatched_container_no_event_and_bad_cgroup_refused() {
        let watch = OomWatch::start().unwrap();
        let a = fake_cgroup(0);
        watch.watch("a", a.path()).unwrap();
        let mut rx = watch.subscribe();

        watch.unwatch("a");
        std::fs::write(a.path().join("memory.events"), "oom_kill 5\n").unwrap();
        let missing = watch.watch("m", &a.path().join("absent"));
        std::fs::write(a.path().join("memory.events"), "garbage\n").unwrap();
        let malformed = watch.watch("g", a.path());

        assert_eq!(next(&mut rx), None);
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(malformed.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
