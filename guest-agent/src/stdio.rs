//! A process's standard streams on the agent's side.
//!
//! Output is read on a thread per stream and handed over in chunks through a bounded channel:
//! the host's reader (`ReadOutput`) takes the receiving end, and until it does at most
//! [`BUFFERED_CHUNKS`] chunks wait, then the process blocks on its next write, as it would on
//! a full pipe. Input goes the other way through [`Stdin`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::thread;

use tokio::sync::mpsc;

/// Largest chunk read from a process's output at once.
pub const CHUNK: usize = 32 * 1024;
/// Chunks kept for a reader that has not attached yet (1 MiB).
pub const BUFFERED_CHUNKS: usize = 32;
/// ASCII EOT: end of input for a terminal in canonical mode.
const END_OF_TRANSMISSION: u8 = 0x04;

pub type OutputSender = mpsc::Sender<Vec<u8>>;
pub type OutputReceiver = mpsc::Receiver<Vec<u8>>;

pub fn output_channel() -> (OutputSender, OutputReceiver) {
    mpsc::channel(BUFFERED_CHUNKS)
}

/// Copies `source` into `sender` on a new thread until end of file. A terminal's master side
/// reports EIO once the last slave descriptor is closed: that is its end of file too. When
/// the reader has gone, output is read and dropped so the process never blocks on it.
pub fn spawn_output_pump(name: &str, mut source: File, sender: OutputSender) -> io::Result<()> {
    thread::Builder::new()
        .name(format!("out-{name}"))
        .spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            let mut reader_gone = false;
            loop {
                let n = match source.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => return,
                    Err(e) => return tracing::warn!(error = %e, "reading process output"),
                };
                if !reader_gone && sender.blocking_send(buf[..n].to_vec()).is_err() {
                    tracing::debug!("output reader went away; dropping further output");
                    reader_gone = true;
                }
            }
        })
        .map(drop)
}

/// The writing end of a process's standard input: a pipe, or the master side of its terminal.
#[derive(Debug)]
pub struct Stdin {
    file: File,
    terminal: bool,
}

impl Stdin {
    pub fn pipe(file: File) -> Self {
        Self {
            file,
            terminal: false,
        }
    }

    pub fn terminal(master: File) -> Self {
        Self {
            file: master,
            terminal: true,
        }
    }

    /// Writes all of `data`; blocks while the process does not read.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    /// Ends the input: closes the pipe, or sends end-of-file on a terminal (the master must
    /// stay open or the process would get a hangup).
    pub fn close(mut self) -> io::Result<()> {
        if self.terminal {
            self.file.write_all(&[END_OF_TRANSMISSION])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (File, File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (File::from(read), File::from(write))
    }

    #[tokio::test]
    async fn test_output_pump_delivers_in_order_then_ends() {
        let (read, mut write) = pipe();
        let (sender, mut receiver) = output_channel();
        spawn_output_pump("test", read, sender).unwrap();

        write.write_all(b"hello ").unwrap();
        write.write_all(b"world").unwrap();
        drop(write);

        let mut got = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            assert!(chunk.len() <= CHUNK);
            got.extend(chunk);
        }
        assert_eq!(got, b"hello world");
    }

    #[test]
    fn test_output_pump_reader_gone_writer_not_blocked() {
        let (read, mut write) = pipe();
        let (sender, receiver) = output_channel();
        spawn_output_pump("test", read, sender).unwrap();
        drop(receiver);

        // Far more than the pipe and the channel hold: returns only if the pump drains.
        let data = vec![7u8; (BUFFERED_CHUNKS + 8) * CHUNK];
        write.write_all(&data).unwrap();
    }

    #[test]
    fn test_stdin_pipe_close_gives_eof() {
        let (mut read, write) = pipe();
        let mut stdin = Stdin::pipe(write);

        stdin.write_all(b"abc").unwrap();
        stdin.close().unwrap();

        let mut got = Vec::new();
        read.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abc");
    }
}
