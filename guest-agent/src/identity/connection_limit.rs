//! A bound on the Workload API's open connections. Every container of the zone shares the
//! agent, so one of them must not be able to hold connections without end (each holds
//! memory and, for a stream, a watch on the identity). Over the bound, a new connection is
//! closed as soon as it is accepted, and the ones open keep working.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// Most Workload API connections open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// An accepted connection holding one of the bound's places until it closes.
#[derive(Debug)]
pub struct Limited {
    stream: UnixStream,
    _place: OwnedSemaphorePermit,
}

/// The connections `listener` accepts, at most `max` open at once.
pub fn limit(
    listener: UnixListener,
    max: usize,
) -> impl Stream<Item = io::Result<Limited>> + Send + 'static {
    let places = Arc::new(Semaphore::new(max));
    UnixListenerStream::new(listener).filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => match places.clone().try_acquire_owned() {
            Ok(place) => Some(Ok(Limited {
                stream,
                _place: place,
            })),
            Err(_) => {
                tracing::warn!(max, "Workload API connection refused: too many open");
                None
            }
        },
    })
}

impl Connected for Limited {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt as _;

    /// Whether the server closed `client` (end of file) within a short while.
    async fn closed(client: &mut UnixStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), client.read(&mut byte)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn test_connections_over_the_bound_are_closed_until_a_place_frees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut accepted = std::pin::pin!(limit(listener, 2));
            while let Some(connection) = accepted.next().await {
                held_tx.send(connection.expect("accepted")).expect("held");
            }
        });
        let mut a = UnixStream::connect(&path).await.expect("a");
        let mut b = UnixStream::connect(&path).await.expect("b");
        let first = held_rx.recv().await.expect("first held");
        let _second = held_rx.recv().await.expect("second held");
        let mut c = UnixStream::connect(&path).await.expect("c connects");
        assert!(closed(&mut c).await, "the third connection is closed");
        assert!(
            !closed(&mut a).await && !closed(&mut b).await,
            "the first two stay"
        );
        drop(first);
        let mut d = UnixStream::connect(&path).await.expect("d");
        let _fourth = held_rx.recv().await.expect("a freed place is taken again");
        assert!(!closed(&mut d).await);
    }
}
