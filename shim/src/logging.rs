//! The shim's log: containerd's `log` FIFO in the bundle (it shows up in containerd's own
//! log) and, when `ZONES_SHIM_LOG` names a file, that file too. Nothing goes to stdout or
//! stderr: containerd reads `start`'s and `delete`'s combined output as their answer.
//! Writes to the FIFO never block: while containerd is not reading (a restart), lines are
//! dropped rather than stalling the shim.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Sinks(Arc<Vec<File>>);

impl Write for Sinks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for mut file in self.0.iter() {
            let _ = file.write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `tracing` output to the log FIFO in `bundle` (if it is there) and `ZONES_SHIM_LOG`.
pub fn init(bundle: &Path, debug: bool) {
    let mut files = Vec::new();
    if let Ok(fifo) = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"))
    {
        files.push(fifo);
    }
    if let Some(path) = std::env::var_os("ZONES_SHIM_LOG").filter(|p| !p.is_empty()) {
        if let Ok(file) = OpenOptions::new().create(true).append(true).open(path) {
            files.push(file);
        }
    }
    let sinks = Sinks(Arc::new(files));
    let level = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZONES_SHIM_LOG_LEVEL")
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{level},h2=info,hyper=info,tower=info"))
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || sinks.clone())
        .try_init();
}
