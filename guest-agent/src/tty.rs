//! Running a process on a pseudo-terminal (`zonectl run -t`): the terminal's slave side
//! becomes its stdin, stdout, stderr and controlling terminal; the agent writes the host's
//! input to the master side and reads everything back from it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The two ends of a fresh pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    /// Opens a terminal on the devpts instance whose multiplexer is `ptmx` (the zone's
    /// `/dev/ptmx`, or a container's own `<root>/dev/pts/ptmx`, so that the command can name
    /// its terminal). The slave side is opened from the master (TIOCGPTPEER), not by a path
    /// that may mean something else in the container.
    pub fn open(ptmx: &Path) -> io::Result<Self> {
        let master: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(ptmx)?
            .into();
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one c_int through the pointer, which is valid for the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: TIOCGPTPEER takes its flags by value and returns a new descriptor or -1.
        let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let slave = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { master, slave })
    }

    /// Makes the slave side `command`'s stdio and, in a new session, its controlling terminal.
    pub fn attach(&self, command: &mut Command) -> io::Result<()> {
        command
            .stdin(Stdio::from(self.slave.try_clone()?))
            .stdout(Stdio::from(self.slave.try_clone()?))
            .stderr(Stdio::from(self.slave.try_clone()?));
        // SAFETY: runs in the forked child before exec; setsid(2) and ioctl(2) are
        // async-signal-safe and touch no memory shared with the parent. fd 0 is the slave.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// After the command started, and the `Command` that held copies of the slave side was
    /// dropped: the master side alone. Our copy of the slave must go, or reading the master
    /// never reaches its end.
    pub fn into_master(self) -> File {
        drop(self.slave);
        File::from(self.master)
    }
}

/// Sets the window size of the terminal whose master side is `master`.
pub fn resize(master: &File, rows: u16, columns: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which is valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn test_pty_command_sees_a_terminal_and_its_size() {
        let pty = Pty::open(Path::new("/dev/ptmx")).expect("openpty");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "tty >/dev/null && echo is-a-tty; read line; echo got-$line; stty size",
        ]);
        pty.attach(&mut cmd).expect("attach");
        let mut child = cmd.spawn().expect("spawn");
        drop(cmd);
        let mut master = pty.into_master();
        resize(&master, 33, 101).expect("resize");
        master.write_all(b"abc\n").expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the command is done with the terminal.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        assert!(child.wait().expect("wait").success());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("is-a-tty\r\n"), "{text:?}");
        assert!(text.contains("got-abc\r\n"), "{text:?}");
        assert!(text.contains("33 101\r\n"), "{text:?}");
    }
}
