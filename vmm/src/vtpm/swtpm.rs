//! A connection to a `swtpm` (swtpm(8), socket interface): TPM commands on the data channel,
//! the emulator's own commands (swtpm_ioctls(3): big-endian command code and fields, answered
//! with a big-endian `TPM_RESULT` first) on the control channel.
//!
//! [`Swtpm::spawn`] starts a private swtpm for one zone, with both channels on socket pairs
//! (`--ctrl type=unixio,clientfd=N` and `--fd M`): there is no socket file to leave behind,
//! the child gets `PR_SET_PDEATHSIG(SIGKILL)` so it cannot outlive the VMM, and dropping the
//! [`Swtpm`] shuts it down (`CMD_SHUTDOWN`, then SIGKILL if it lingers) and reaps it.
//! [`Swtpm::connect`] talks to a swtpm someone else runs (`--server type=unixio,path=S
//! --ctrl type=unixio,path=C`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::devices::tpm::TpmBackend;

/// Largest response accepted from swtpm (TPM2's largest buffers are 4 KiB; swtpm's default
/// buffer size is 4 KiB).
pub const MAX_RESPONSE: usize = 4096;
/// How long a TPM command may take. RSA key generation in an emulated CPU is slow.
const DATA_TIMEOUT: Duration = Duration::from_secs(120);
const CTRL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long swtpm gets to exit after `CMD_SHUTDOWN`.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// `CMD_INIT`.
const CMD_INIT: u32 = 0x02;
/// `CMD_SHUTDOWN`: swtpm stores its state and exits.
const CMD_SHUTDOWN: u32 = 0x03;

#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    #[error("cannot create a socket pair for swtpm")]
    SocketPair(#[source] std::io::Error),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to swtpm at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("swtpm control command {command:#x} failed")]
    CtrlIo {
        command: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("swtpm control command {command:#x} returned TPM result {result:#x}")]
    CtrlResult { command: u32, result: u32 },
    #[error("the TPM data channel failed")]
    DataIo(#[source] std::io::Error),
    #[error("swtpm answered a response of {0} bytes (a response is 10 to {MAX_RESPONSE})")]
    BadResponseSize(usize),
    #[error("the TPM data channel is unusable after an earlier error")]
    Broken,
}

/// One swtpm and the two channels to it.
#[derive(Debug)]
pub struct Swtpm {
    ctrl: UnixStream,
    data: UnixStream,
    child: Option<Child>,
    broken: bool,
}

impl Swtpm {
    /// Starts `program` (a swtpm binary) with its state in `state_dir`.
    pub fn spawn(program: &Path, state_dir: &Path) -> Result<Self, SwtpmError> {
        let (ctrl, ctrl_child) = UnixStream::pair().map_err(SwtpmError::SocketPair)?;
        let (data, data_child) = UnixStream::pair().map_err(SwtpmError::SocketPair)?;
        let (ctrl_fd, data_fd) = (ctrl_child.as_raw_fd(), data_child.as_raw_fd());
        let mut cmd = Command::new(program);
        cmd.arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,clientfd={ctrl_fd}"))
            .arg("--fd")
            .arg(data_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let inherit = [ctrl_fd, data_fd];
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (fcntl, prctl, getppid) on plain integers.
        unsafe {
            cmd.pre_exec(move || child_setup(&inherit));
        }
        let child = cmd.spawn().map_err(|source| SwtpmError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        // The child has its copies; ours close here.
        drop((ctrl_child, data_child));
        Self::from_streams(ctrl, data, Some(child))
    }

    /// Connects to a running swtpm's control socket and server socket.
    pub fn connect(ctrl: &Path, server: &Path) -> Result<Self, SwtpmError> {
        let open = |path: &Path| {
            UnixStream::connect(path).map_err(|source| SwtpmError::Connect {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_streams(open(ctrl)?, open(server)?, None)
    }

    fn from_streams(
        ctrl: UnixStream,
        data: UnixStream,
        child: Option<Child>,
    ) -> Result<Self, SwtpmError> {
        let set = |s: &UnixStream, t| {
            s.set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t)))
                .map_err(SwtpmError::DataIo)
        };
        set(&ctrl, CTRL_TIMEOUT)?;
        set(&data, DATA_TIMEOUT)?;
        Ok(Self {
            ctrl,
            data,
            child,
            broken: false,
        })
    }

    /// The swtpm process id, when this connection started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a control command (one write, as swtpm reads it with one read) and checks the
    /// `TPM_RESULT` it answers with.
    fn control(&mut self, command: u32, body: &[u8]) -> Result<(), SwtpmError> {
        let io = |source| SwtpmError::CtrlIo { command, source };
        let mut msg = command.to_be_bytes().to_vec();
        msg.extend_from_slice(body);
        self.ctrl.write_all(&msg).map_err(io)?;
        let mut result = [0u8; 4];
        self.ctrl.read_exact(&mut result).map_err(io)?;
        match u32::from_be_bytes(result) {
            0 => Ok(()),
            result => Err(SwtpmError::CtrlResult { command, result }),
        }
    }

    /// `CMD_INIT`: power the TPM on (a TPM2_Startup must follow).
    pub fn init(&mut self) -> Result<(), SwtpmError> {
        self.control(CMD_INIT, &0u32.to_be_bytes())
    }

    /// Sends one TPM command and reads its response, which must be 10 to [`MAX_RESPONSE`]
    /// bytes long as its header says. Any failure leaves the channel out of step, so every
    /// later command fails too.
    pub fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, SwtpmError> {
        if self.broken {
            return Err(SwtpmError::Broken);
        }
        let result = self.transmit_inner(command);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn transmit_inner(&mut self, command: &[u8]) -> Result<Vec<u8>, SwtpmError> {
        self.data.write_all(command).map_err(SwtpmError::DataIo)?;
        let mut header = [0u8; 10];
        self.data
            .read_exact(&mut header)
            .map_err(SwtpmError::DataIo)?;
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        if !(10..=MAX_RESPONSE).contains(&size) {
            return Err(SwtpmError::BadResponseSize(size));
        }
        let mut response = header.to_vec();
        response.resize(size, 0);
        self.data
            .read_exact(&mut response[10..])
            .map_err(SwtpmError::DataIo)?;
        Ok(response)
    }

    /// Stops swtpm: `CMD_SHUTDOWN` (it saves its state and exits), SIGKILL after a grace
    /// period, and reaps it. For a connected (not spawned) swtpm this only sends the command.
    pub fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Err(e) = self.control(CMD_SHUTDOWN, &[]) {
            tracing::debug!("vTPM: CMD_SHUTDOWN: {e}");
        }
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => break,
            }
        }
        tracing::warn!("vTPM: swtpm (pid {}) did not exit; killing it", child.id());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl zone_attest::tpm_command::TpmTransport for Swtpm {
    fn transmit(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        Swtpm::transmit(self, command).map_err(|e| match e {
            SwtpmError::DataIo(io) => io,
            other => std::io::Error::other(other),
        })
    }
}

impl TpmBackend for Swtpm {
    fn execute(
        &mut self,
        command: &[u8],
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.transmit(command)?)
    }
}

/// In the child: keep the two channel descriptors across exec and die with the VMM.
fn child_setup(inherit: &[RawFd]) -> std::io::Result<()> {
    for fd in inherit {
        // SAFETY: fcntl on a descriptor number has no memory effects; a bad fd gives EBADF.
        if unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // The VMM died between fork and prctl: the signal would never come.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return Err(std::io::Error::other("the VMM exited"));
    }
    Ok(())
}
