//! A process's stdio between containerd's FIFOs and the agent's streams.
//!
//! Output: for each stream the process has (stdout, and stderr unless it runs on a
//! terminal) one task reads the agent's `ReadOutput` stream and writes the FIFO; with no FIFO
//! (containerd's null IO) the output is read and dropped, so the process never blocks on a
//! full buffer. The FIFO is opened read-write, as runc's shim keeps an extra read handle: the
//! open never blocks, and a write never fails because containerd's reader is away for a
//! moment (a restart). The task ends, closing the FIFO, when the agent's stream ends; that is
//! the end of file containerd's copiers (and `ctr run`) wait for.
//!
//! Input: the stdin FIFO is opened read-only and non-blocking; one task streams what it
//! reads through `WriteStdin` and closes the process's stdin at the FIFO's end of file (the
//! writer closed it) or on `CloseIO`, after forwarding what was already written.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use zone_proto::agent::v1::{OutputStream, ReadOutputRequest, WriteStdinRequest};

use crate::vsock::Client;

const STDIN_CHUNK: usize = 32 * 1024;

/// containerd's FIFO paths for one process (empty: not attached).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Starts copying the process's output streams into the FIFOs; the handles end when the
/// streams do.
pub fn copy_output(
    client: &Client,
    container: &str,
    exec: &str,
    paths: &StdioPaths,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut streams = vec![(OutputStream::Stdout, paths.stdout.as_str())];
    if !paths.terminal {
        streams.push((OutputStream::Stderr, paths.stderr.as_str()));
    }
    let mut handles = Vec::new();
    for (stream, path) in streams {
        let fifo = if path.is_empty() {
            None
        } else {
            Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(Path::new(path))?,
            )
        };
        let request = ReadOutputRequest {
            container_id: container.to_string(),
            exec_id: exec.to_string(),
            stream: stream as i32,
        };
        let mut client = client.clone();
        handles.push(tokio::spawn(async move {
            let mut fifo = fifo;
            let mut chunks = match client.read_output(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::warn!(?stream, error = %status.message(), "attaching to the output");
                    return;
                }
            };
            loop {
                match chunks.message().await {
                    Ok(Some(chunk)) => {
                        if let Some(writer) = fifo.as_mut() {
                            if let Err(e) = writer.write_all(&chunk.data).await {
                                tracing::warn!(?stream, error = %e, "writing the output FIFO");
                                fifo = None;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(?stream, error = %status.message(), "reading the output");
                        break;
                    }
                }
            }
        }));
    }
    Ok(handles)
}

/// Starts streaming the stdin FIFO to the process; `close` (CloseIO) ends it after what was
/// written so far.
pub fn copy_stdin(
    client: &Client,
    container: &str,
    exec: &str,
    path: &str,
    close: Arc<Notify>,
) -> std::io::Result<JoinHandle<()>> {
    let mut fifo = pipe::OpenOptions::new().open_receiver(Path::new(path))?;
    let (tx, rx) = mpsc::channel::<WriteStdinRequest>(4);
    let mut client = client.clone();
    let (container, exec) = (container.to_string(), exec.to_string());
    let request = move |data: Vec<u8>, close: bool| WriteStdinRequest {
        container_id: container.clone(),
        exec_id: exec.clone(),
        data,
        close,
    };
    let sending = tokio::spawn(async move {
        if let Err(status) = client.write_stdin(ReceiverStream::new(rx)).await {
            // Also when the zone powers off while the FIFO is still open.
            tracing::debug!(error = %status.message(), "streaming stdin ended");
        }
    });
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            tokio::select! {
                read = fifo.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(request(buf[..n].to_vec(), false)).await.is_err() {
                            return;
                        }
                    }
                },
                _ = close.notified() => {
                    // Forward what is already in the FIFO, then close.
                    while let Ok(n) = fifo.try_read(&mut buf) {
                        if n == 0 || tx.send(request(buf[..n].to_vec(), false)).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        let _ = tx.send(request(Vec::new(), true)).await;
        drop(tx);
        let _ = sending.await;
    }))
}
