//! Serving the `Agent` service: on AF_VSOCK in a zone, on any stream listener in tests.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::Server;
use zone_proto::agent::v1::agent_server::AgentServer;

use crate::containers::Containers;
use crate::identity::Identity;
use crate::network::Network;
use crate::power::PowerAction;
use crate::service::AgentService;

/// How long open streams may delay a shutdown once the host asked for it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves the agent on `incoming` until a shutdown is asked for (by the host, through the
/// service, or by whoever holds `shutdown`), and returns the action.
pub async fn serve<I, IO>(
    containers: Arc<Containers>,
    incoming: I,
    shutdown: watch::Sender<Option<PowerAction>>,
) -> Result<PowerAction, tonic::transport::Error>
where
    I: Stream<Item = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    serve_with_network(containers, Arc::new(Network::zone()), incoming, shutdown).await
}

/// [`serve`], with `network` as the zone's network.
pub async fn serve_with_network<I, IO>(
    containers: Arc<Containers>,
    network: Arc<Network>,
    incoming: I,
    shutdown: watch::Sender<Option<PowerAction>>,
) -> Result<PowerAction, tonic::transport::Error>
where
    I: Stream<Item = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    serve_with_identity(containers, network, Identity::new(), incoming, shutdown).await
}

/// [`serve_with_network`], with `identity` as the zone's identity (the one its Workload API
/// serves: see [`crate::identity::socket::start`]).
pub async fn serve_with_identity<I, IO>(
    containers: Arc<Containers>,
    network: Arc<Network>,
    identity: Identity,
    incoming: I,
    shutdown: watch::Sender<Option<PowerAction>>,
) -> Result<PowerAction, tonic::transport::Error>
where
    I: Stream<Item = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let mut requested = shutdown.subscribe();
    let mut decided = shutdown.subscribe();
    let service = AgentService::with_identity(containers, network, identity, shutdown);
    let asked = async move {
        let _ = requested.wait_for(Option::is_some).await;
    };
    let server = Server::builder()
        .add_service(AgentServer::new(service))
        .serve_with_incoming_shutdown(incoming, asked);
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served?,
        () = grace_after_request(&mut decided) => {
            tracing::warn!("streams still open {SHUTDOWN_GRACE:?} after shutdown; going on");
        }
    }
    let action = decided.borrow().unwrap_or(PowerAction::PowerOff);
    Ok(action)
}

async fn grace_after_request(decided: &mut watch::Receiver<Option<PowerAction>>) {
    let _ = decided.wait_for(Option::is_some).await;
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// Accepted AF_VSOCK connections of a listening socket.
#[derive(Debug)]
pub struct VsockIncoming {
    listener: AsyncFd<OwnedFd>,
}

impl VsockIncoming {
    /// `listener` is a listening AF_VSOCK stream socket; it is made non-blocking.
    pub fn new(listener: OwnedFd) -> io::Result<Self> {
        set_nonblocking(&listener)?;
        Ok(Self {
            listener: register(listener)?,
        })
    }
}

impl Stream for VsockIncoming {
    type Item = io::Result<VsockStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let mut guard = ready!(self.listener.poll_read_ready(cx))?;
            let accepted = guard.try_io(|listener| {
                // SAFETY: accept4(2) on a listening socket we own, with no address buffer.
                let fd = unsafe {
                    libc::accept4(
                        listener.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            });
            match accepted {
                Ok(Ok(fd)) => return Poll::Ready(Some(register(fd).map(VsockStream))),
                Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One accepted AF_VSOCK connection.
#[derive(Debug)]
pub struct VsockStream(AsyncFd<OwnedFd>);

impl Connected for VsockStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for VsockStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for VsockStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done =
            nix::sys::socket::shutdown(self.0.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        Poll::Ready(done.map_err(io::Error::from))
    }
}

/// Watches `fd` with the runtime's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor and keeps it open, unchanged, until it is
    // dropped, which happens only with the AsyncFd that owns it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
