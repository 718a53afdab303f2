//! The `zone-vmm` child process: its command line, spawning, waiting and killing.
//!
//! The VMM's command line is the contract between zonectl and the VMM:
//! `zone-vmm --kernel K --initrd I --cmdline C --memory M --cpus N [--disk PATH[,ro]]...
//! --vsock SOCKET [--serial-log FILE]`. It exits 0 when the guest powers off or reboots.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use crate::cli::DiskSpec;
use crate::size::Size;

/// Kernel command line of every zone.
pub const ZONE_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// How much of the VMM's stderr is kept for error reports.
const STDERR_TAIL: usize = 64 << 10;

const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("starting {0}")]
    Spawn(PathBuf, #[source] io::Error),
    #[error("waiting for the VMM")]
    Wait(#[source] io::Error),
}

/// What the VMM is asked to run.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory: Size,
    pub cpus: u32,
    pub disks: Vec<DiskSpec>,
    pub vsock_socket: PathBuf,
    /// `None`: the console goes to the VMM's stdout.
    pub serial_log: Option<PathBuf>,
    /// The zone's vTPM; `None`: the zone has none.
    pub tpm: Option<VmmTpm>,
    /// The zone's network device; `None`: loopback only.
    pub net: Option<VmmNet>,
}

/// A virtio-net device backed by a tap the VMM inherits as descriptor `fd`.
#[derive(Debug, Clone, Copy)]
pub struct VmmNet {
    pub fd: RawFd,
    pub mac: zone_net::MacAddr,
    pub mtu: u32,
}

/// Where the VMM keeps a zone's vTPM and what it measures into PCR 15 besides the boot.
#[derive(Debug, Clone)]
pub struct VmmTpm {
    pub state_dir: PathBuf,
    pub event_log: PathBuf,
    pub ek_public: PathBuf,
    /// `--zone-claim KEY=VALUE` pairs: zone-id, image-manifest-digest, oci-config-digest.
    pub claims: Vec<(String, String)>,
}

/// The VMM's arguments for `config`.
pub fn vmm_args(config: &VmmConfig) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--kernel".into(),
        config.kernel.clone().into(),
        "--initrd".into(),
        config.initrd.clone().into(),
        "--cmdline".into(),
        ZONE_CMDLINE.into(),
        "--memory".into(),
        config.memory.to_string().into(),
        "--cpus".into(),
        config.cpus.to_string().into(),
    ];
    for disk in &config.disks {
        args.extend(["--disk".into(), disk.to_vmm_arg().into()]);
    }
    args.extend(["--vsock".into(), config.vsock_socket.clone().into()]);
    if let Some(net) = &config.net {
        args.extend([
            "--net".into(),
            format!("fd={},mac={},mtu={}", net.fd, net.mac, net.mtu).into(),
        ]);
    }
    if let Some(log) = &config.serial_log {
        args.extend(["--serial-log".into(), log.clone().into()]);
    }
    if let Some(tpm) = &config.tpm {
        args.extend([
            "--tpm".into(),
            tpm.state_dir.clone().into(),
            "--tpm-event-log".into(),
            tpm.event_log.clone().into(),
            "--tpm-ek-public".into(),
            tpm.ek_public.clone().into(),
        ]);
        for (key, value) in &tpm.claims {
            args.extend(["--zone-claim".into(), format!("{key}={value}").into()]);
        }
    }
    args
}

/// A running VMM; killed and waited for on drop unless it already exited.
#[derive(Debug)]
pub struct VmmProcess {
    child: Child,
    status: Option<ExitStatus>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl VmmProcess {
    /// Starts `binary` for `config`. Its stderr is captured unless `show_output` (then the
    /// console and stderr go to ours).
    pub fn spawn(binary: &Path, config: &VmmConfig, show_output: bool) -> Result<Self, VmmError> {
        let mut command = Command::new(binary);
        command
            .args(vmm_args(config))
            .stdin(Stdio::null())
            .stdout(if show_output {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if show_output {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            // Its own process group: a terminal's Ctrl-C reaches zonectl, which stops it.
            .process_group(0);
        let inherited_fd = config.net.map(|net| net.fd);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // fcntl(2) and pthread_sigmask(3), which are async-signal-safe; it shares no memory
        // with the parent (the descriptor number is copied in).
        unsafe {
            command.pre_exec(move || {
                // If zonectl dies without cleaning up (SIGKILL), the VMM goes with it.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // The tap named by `--net fd=N` stays open across exec.
                if let Some(fd) = inherited_fd {
                    zone_net::netns::tap::keep_open_across_exec(fd)?;
                }
                // zonectl blocks SIGINT/SIGTERM/SIGHUP for its signal thread; the VMM must not
                // inherit that.
                SigSet::empty().thread_set_mask()?;
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| VmmError::Spawn(binary.to_path_buf(), e))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = child.stderr.take().map(|pipe| {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(pipe, &tail))
        });
        Ok(VmmProcess {
            child,
            status: None,
            stderr,
            stderr_reader,
        })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("Linux pids fit in i32"))
    }

    /// The exit status, if the VMM has exited.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, VmmError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(VmmError::Wait)?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the VMM to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, VmmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Kills the VMM (if still running) and waits for it.
    pub fn kill(&mut self) -> Result<ExitStatus, VmmError> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        if let Err(e) = self.child.kill() {
            tracing::warn!(error = %e, "killing the VMM");
        }
        let status = self.child.wait().map_err(VmmError::Wait)?;
        self.status = Some(status);
        Ok(status)
    }

    /// The end of the VMM's stderr. Complete once the VMM has exited.
    pub fn stderr_tail(&mut self) -> String {
        if self.status.is_some() {
            if let Some(reader) = self.stderr_reader.take() {
                let _ = reader.join();
            }
        }
        let tail = self
            .stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes: Vec<u8> = tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(error = %e, "stopping the VMM");
        }
    }
}

/// Reads `pipe` to its end, keeping its last [`STDERR_TAIL`] bytes in `tail`.
fn keep_tail(mut pipe: impl Read, tail: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                tail.extend(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(disks: Vec<DiskSpec>, serial_log: Option<PathBuf>) -> VmmConfig {
        VmmConfig {
            kernel: "/k/bzImage".into(),
            initrd: "/k/initrd.cpio.gz".into(),
            memory: Size::from_mib(512),
            cpus: 2,
            disks,
            vsock_socket: "/run/zones/abc/vsock.sock".into(),
            serial_log,
            tpm: None,
            net: None,
        }
    }

    /// Writes an executable script; spawns retry while another test thread's fork still holds
    /// the file open for writing (ETXTBSY).
    fn fake_vmm(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("fake-vmm");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn spawn(binary: &Path) -> VmmProcess {
        for _ in 0..50 {
            match VmmProcess::spawn(binary, &config(vec![], None), false) {
                Err(VmmError::Spawn(_, e)) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                    thread::sleep(Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
        panic!("{} stayed busy", binary.display());
    }

    #[test]
    fn test_vmm_args_full_config_exact_flags() {
        let disks = vec![
            DiskSpec {
                path: "/d/a.img".into(),
                read_only: false,
            },
            DiskSpec {
                path: "/d/b.img".into(),
                read_only: true,
            },
        ];

        let args = vmm_args(&config(disks, Some("/run/zones/abc/console.log".into())));

        let expected = [
            "--kernel",
            "/k/bzImage",
            "--initrd",
            "/k/initrd.cpio.gz",
            "--cmdline",
            "console=ttyS0 quiet panic=-1",
            "--memory",
            "512M",
            "--cpus",
            "2",
            "--disk",
            "/d/a.img",
            "--disk",
            "/d/b.img,ro",
            "--vsock",
            "/run/zones/abc/vsock.sock",
            "--serial-log",
            "/run/zones/abc/console.log",
        ];
        assert_eq!(args, expected.map(OsString::from));
    }

    #[test]
    fn test_vmm_args_no_serial_log_omitted() {
        let args = vmm_args(&config(vec![], None));

        assert!(!args.contains(&OsString::from("--serial-log")));
        assert_eq!(
            args.last(),
            Some(&OsString::from("/run/zones/abc/vsock.sock"))
        );
    }

    #[test]
    fn test_vmm_process_exit_and_stderr_captured() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_vmm(dir.path(), "echo \"bad flag $1\" >&2; exit 3");

        let mut vmm = spawn(&binary);
        let status = vmm.wait_timeout(Duration::from_secs(10)).unwrap();

        assert_eq!(status.and_then(|s| s.code()), Some(3));
        assert_eq!(vmm.stderr_tail(), "bad flag --kernel\n");
    }

    #[test]
    fn test_vmm_process_dropped_while_running_killed() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_vmm(dir.path(), "exec sleep 60");
        let vmm = spawn(&binary);
        let pid = vmm.pid();

        drop(vmm);

        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn test_vmm_args_tpm_paths_and_claims() {
        let mut config = config(vec![], None);
        config.tpm = Some(VmmTpm {
            state_dir: "/run/zones/abc/vtpm".into(),
            event_log: "/run/zones/abc/tpm-eventlog.bin".into(),
            ek_public: "/run/zones/abc/tpm-ek.pub".into(),
            claims: vec![("zone-id".into(), "abc".into())],
        });

        let args: Vec<String> = vmm_args(&config)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();

        let tail = &args[args.len() - 8..];
        assert_eq!(
            tail,
            [
                "--tpm",
                "/run/zones/abc/vtpm",
                "--tpm-event-log",
                "/run/zones/abc/tpm-eventlog.bin",
                "--tpm-ek-public",
                "/run/zones/abc/tpm-ek.pub",
                "--zone-claim",
                "zone-id=abc"
            ]
        );
    }
}
