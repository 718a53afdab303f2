//! Running one process of a zone attached to this terminal (or to log files): its stdout and
//! stderr stream here as they are written, stdin streams there, and with a terminal the local
//! one is put in raw mode and its window size follows.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Code;
use zone_proto::agent::v1::{
    OutputStream, ReadOutputRequest, ResizePtyRequest, StartProcessRequest, WaitProcessRequest,
    WriteStdinRequest,
};

use crate::agent_client::{self, Client};
use crate::raw_terminal::RawTerminal;
use crate::timing;

/// Exit status when the zone, not the command, failed (as `docker run` uses 125).
pub const EXIT_ZONE_FAILED: i32 = 125;
/// Exit status when the command could not be started, as a shell reports it.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// How long output may keep coming after the process exited (a child it left behind may
/// hold the stream open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
const STDIN_CHUNK: usize = 32 * 1024;

/// Where a process's output goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// This process's stdout and stderr.
    Terminal,
    /// Appended to two files, as it arrives (`zonectl logs -f` follows them).
    Files { stdout: PathBuf, stderr: PathBuf },
}

/// How to attach.
#[derive(Debug, Clone)]
pub struct Attach {
    /// Stream this process's stdin to it (the process was created with `stdin`).
    pub stdin: bool,
    /// It runs on a terminal (created with `terminal`).
    pub tty: bool,
    pub sink: Sink,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEnd {
    pub exit_code: i32,
    pub signal: i32,
    /// Why it could not be started; empty when it ran.
    pub error: String,
}

impl ProcessEnd {
    /// The status `zonectl` exits with: the command's, 128 + a signal that killed it, or 125
    /// when it could not be run for a reason of the zone's.
    pub fn status(&self) -> i32 {
        if self.signal != 0 {
            128 + self.signal
        } else if !self.error.is_empty() && self.exit_code == 0 {
            EXIT_ZONE_FAILED
        } else {
            self.exit_code
        }
    }
}

/// Starts process `exec` of `container` (created but not started) and runs it attached.
pub async fn start_attached(
    client: &Client,
    container: &str,
    exec: &str,
    attach: &Attach,
) -> anyhow::Result<ProcessEnd> {
    let stdout = forward_output(client, container, exec, OutputStream::Stdout, &attach.sink)?;
    let stderr = forward_output(client, container, exec, OutputStream::Stderr, &attach.sink)?;
    let raw = (attach.tty && std::io::stdin().is_terminal())
        .then(RawTerminal::enter)
        .transpose()
        .context("putting the terminal in raw mode")?;
    let started = client
        .clone()
        .start_process(StartProcessRequest {
            container_id: container.to_string(),
            exec_id: exec.to_string(),
        })
        .await;
    match started {
        Ok(_) => timing::mark("process started"),
        // It counts as exited (127 or 126); WaitProcess says so.
        Err(status) if status.code() == Code::FailedPrecondition => {}
        Err(status) => bail!(
            "starting the process in the zone: {}",
            agent_client::describe(&status)
        ),
    }
    let resizer =
        (attach.tty && raw.is_some()).then(|| follow_window_size(client.clone(), container, exec));
    if attach.stdin {
        forward_stdin(client.clone(), container, exec);
    }
    let ended = client
        .clone()
        .wait_process(WaitProcessRequest {
            container_id: container.to_string(),
            exec_id: exec.to_string(),
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "waiting for the process in the zone: {}",
                agent_client::describe(&status)
            )
        })?
        .into_inner();
    timing::mark("process exited");
    let drained = tokio::time::timeout(OUTPUT_GRACE, async {
        let out = stdout.await;
        let err = stderr.await;
        (out, err)
    })
    .await;
    if let Some(resizer) = resizer {
        resizer.abort();
    }
    drop(raw);
    match drained {
        Ok((out, err)) => {
            out.context("stdout forwarder")??;
            err.context("stderr forwarder")??;
        }
        Err(_) => tracing::warn!("output still open {OUTPUT_GRACE:?} after the process exited"),
    }
    Ok(ProcessEnd {
        exit_code: ended.exit_code,
        signal: ended.signal,
        error: ended.error,
    })
}

/// Copies one output stream of the process to the sink until it ends.
fn forward_output(
    client: &Client,
    container: &str,
    exec: &str,
    stream: OutputStream,
    sink: &Sink,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let mut writer: Box<dyn AsyncWrite + Unpin + Send> = match (sink, stream) {
        (Sink::Terminal, OutputStream::Stderr) => Box::new(tokio::io::stderr()),
        (Sink::Terminal, _) => Box::new(tokio::io::stdout()),
        (Sink::Files { stderr, .. }, OutputStream::Stderr) => Box::new(append(stderr)?),
        (Sink::Files { stdout, .. }, _) => Box::new(append(stdout)?),
    };
    let mut client = client.clone();
    let request = ReadOutputRequest {
        container_id: container.to_string(),
        exec_id: exec.to_string(),
        stream: stream as i32,
    };
    Ok(tokio::spawn(async move {
        let mut chunks = client
            .read_output(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "attaching to the output: {}",
                    agent_client::describe(&status)
                )
            })?
            .into_inner();
        while let Some(chunk) = chunks.message().await.map_err(|status| {
            anyhow::anyhow!("reading the output: {}", agent_client::describe(&status))
        })? {
            writer
                .write_all(&chunk.data)
                .await
                .context("writing output")?;
            writer.flush().await.context("writing output")?;
        }
        Ok(())
    }))
}

fn append(path: &PathBuf) -> anyhow::Result<tokio::fs::File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(tokio::fs::File::from_std(file))
}

/// Streams this process's stdin to the process; at end of input, closes its stdin. A
/// thread reads because stdin may be a terminal or pipe that blocks; it is left behind if
/// the process ends first.
fn forward_stdin(mut client: Client, container: &str, exec: &str) {
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; STDIN_CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if sender.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return tracing::warn!(error = %e, "reading stdin"),
                }
            }
        });
    if let Err(e) = spawned {
        return tracing::warn!(error = %e, "no stdin thread: the process gets no input");
    }
    let (container, exec) = (container.to_string(), exec.to_string());
    let message = move |data: Vec<u8>, close: bool| WriteStdinRequest {
        container_id: container.clone(),
        exec_id: exec.clone(),
        data,
        close,
    };
    let closing = message(Vec::new(), true);
    let messages = ReceiverStream::new(receiver)
        .map(move |data| message(data, false))
        .chain(tokio_stream::once(closing));
    tokio::spawn(async move {
        if let Err(status) = client.write_stdin(messages).await {
            // The process may have exited without reading all of it.
            tracing::debug!(%status, "stdin forwarding ended");
        }
    });
}

/// Sends the local window size now and whenever it changes (SIGWINCH).
fn follow_window_size(mut client: Client, container: &str, exec: &str) -> JoinHandle<()> {
    let (container, exec) = (container.to_string(), exec.to_string());
    tokio::spawn(async move {
        let Ok(mut changes) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        loop {
            if let Some((rows, columns)) = crate::raw_terminal::window_size() {
                let request = ResizePtyRequest {
                    container_id: container.clone(),
                    exec_id: exec.clone(),
                    rows: rows.into(),
                    columns: columns.into(),
                };
                if let Err(status) = client.resize_pty(request).await {
                    tracing::debug!(%status, "resizing the zone's terminal");
                }
            }
            if changes.recv().await.is_none() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(exit_code: i32, signal: i32, error: &str) -> ProcessEnd {
        ProcessEnd {
            exit_code,
            signal,
            error: error.to_string(),
        }
    }

    #[test]
    fn test_status_normal_exit_passed_through() {
        assert_eq!(end(0, 0, "").status(), 0);
        assert_eq!(end(7, 0, "").status(), 7);
    }

    #[test]
    fn test_status_signal_128_plus() {
        assert_eq!(end(0, 9, "").status(), 137);
    }

    #[test]
    fn test_status_start_errors_mapped() {
        assert_eq!(end(127, 0, "ls: command not found").status(), 127);
        assert_eq!(end(126, 0, "bad user").status(), 126);
        assert_eq!(end(0, 0, "odd agent").status(), EXIT_ZONE_FAILED);
    }
}
