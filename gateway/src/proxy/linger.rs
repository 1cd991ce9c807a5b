//! Lingering close. When the gateway ends a kept-alive HTTP/1.1 connection
//! (shutdown, idleness), a client may already have a request on the way;
//! closing a socket with unread bytes makes the kernel answer with a reset,
//! which the client cannot tell from a request lost mid-flight. So the
//! connection's socket is shared with its driver: once hyper is done with
//! it, the driver sends FIN and reads (and discards) until the client closes
//! its side or a short bound passes. The client then sees a clean close
//! before any answer, which HTTP/1.1 lets it retry (RFC 9112, 9.3.1).
//! A connection that has served a request lingers, and at shutdown every
//! connection does (a new one may have its first request on the way); one
//! that never became a client before its deadline is dropped, its slot
//! freed at once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a closed connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// At most this much is read and thrown away while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// A TCP stream that its driver keeps a handle on after the server drops it.
#[derive(Debug, Clone)]
pub struct Shared(Arc<TcpStream>);

impl Shared {
    pub fn new(stream: TcpStream) -> Self {
        Self(Arc::new(stream))
    }

    /// Ends the connection politely: FIN, then read until the client's FIN
    /// or the bound. Call it once the server has dropped its copy.
    pub async fn linger(self) {
        let stream = self.0;
        if socket2::SockRef::from(&*stream)
            .shutdown(std::net::Shutdown::Write)
            .is_err()
        {
            // Already reset or closed by the client: nothing to wait for.
            return;
        }
        let drain = async {
            let mut buf = [0u8; 4096];
            let mut read = 0usize;
            while read < LINGER_BYTES {
                if stream.readable().await.is_err() {
                    return;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => read += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}
