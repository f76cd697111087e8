//! The HTTP server: binds `[admin] bind` (and `[admin] socket`, a Unix
//! socket of mode 0600: [`LocalSocket`]), serves the API with axum on the
//! broker's runtime, and stops gracefully.
//!
//! Bounds, outermost first: at most `max_connections` connections are
//! accepted at once ([`LimitedListener`]; the rest wait in the kernel's
//! queue), HTTP/1.1 only, so each serves one request at a time; a request
//! gets `request_timeout` (then 408) and a body of at most
//! `max_body_size` (then 413). Listing handlers copy what they need and
//! sort it on the blocking pool, not on the threads that run MQTT
//! connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener, ListenerExt, TapIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::info;

/// The client's address, for the lockout and the emqttd form. A
/// connection through the Unix socket counts as from 127.0.0.1 (port 0).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// A listener that holds at most `permits` connections open.
#[derive(Debug)]
pub struct LimitedListener<L> {
    inner: L,
    permits: Arc<Semaphore>,
}

impl<L> LimitedListener<L> {
    pub fn new(inner: L, max: usize) -> LimitedListener<L> {
        LimitedListener { inner, permits: Arc::new(Semaphore::new(max.max(1))) }
    }
}

/// A connection and its slot, given back when it closes.
#[derive(Debug)]
pub struct Limited<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl<L> Listener for LimitedListener<L>
where
    L: Listener,
    L::Io: Unpin,
{
    type Io = Limited<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Limited<L::Io>, L::Addr) {
        // The slot first: over the limit, connections wait unaccepted.
        let permit = match Arc::clone(&self.permits).acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        // axum's listeners retry failed accepts (EMFILE and friends) with
        // a pause instead of spinning.
        let (stream, peer) = self.inner.accept().await;
        (Limited { stream, _permit: permit }, peer)
    }

    fn local_addr(&self) -> std::io::Result<L::Addr> {
        self.inner.local_addr()
    }
}

type TcpLimited = LimitedListener<TapIo<TcpListener, fn(&mut TcpStream)>>;

impl Connected<IncomingStream<'_, TcpLimited>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, TcpLimited>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, LimitedListener<UnixListener>>> for PeerAddr {
    fn connect_info(_: IncomingStream<'_, LimitedListener<UnixListener>>) -> PeerAddr {
        PeerAddr(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// The admin API's Unix socket, bound and given mode 0600 before its
/// path appears: it is bound under a temporary name in the same directory,
/// its mode set, then renamed into place (replacing a stale socket left
/// by a broker that did not stop cleanly). A socket at the path that
/// accepts a connection belongs to a running broker and is left alone.
#[derive(Debug)]
pub struct LocalSocket {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's inode, so that stopping removes only our own.
    ino: u64,
}

impl LocalSocket {
    /// Binds `path` (see the type's docs); its directory is created mode
    /// 0700 when missing.
    pub fn bind(path: &Path) -> std::io::Result<LocalSocket> {
        use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::other("exists and is not a socket"));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::other("another process serves it (is a broker already running?)"));
            }
        }
        let name = path.file_name().ok_or_else(|| std::io::Error::other("no file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::symlink_metadata(path));
        match placed {
            Ok(meta) => Ok(LocalSocket { listener, path: path.to_path_buf(), ino: meta.ino() }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the socket file if it is still ours.
    fn remove(path: &Path, ino: u64) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The running admin server.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The Unix socket's path and inode, removed on stop.
    socket: Option<(PathBuf, u64)>,
}

impl AdminServer {
    /// Serves `app` on `bind`, and `local`'s app on its Unix socket.
    pub(crate) async fn serve(
        bind: SocketAddr,
        max_connections: usize,
        app: axum::Router,
        local: Option<(LocalSocket, axum::Router)>,
    ) -> std::io::Result<AdminServer> {
        let nodelay: fn(&mut TcpStream) = |s| {
            let _ = s.set_nodelay(true);
        };
        let tcp = TcpListener::bind(bind).await?.tap_io(nodelay);
        let listener = LimitedListener::new(tcp, max_connections);
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let service = app.into_make_service_with_connect_info::<PeerAddr>();
        let mut stopped_tcp = stopped.clone();
        let mut tasks = vec![tokio::spawn(async move {
            let served = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = stopped_tcp.wait_for(|s| *s).await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "admin API stopped");
            }
        })];
        let mut socket = None;
        if let Some((local, app)) = local {
            let LocalSocket { listener, path, ino } = local;
            info!(socket = %path.display(), "admin API on its Unix socket");
            socket = Some((path, ino));
            let listener = LimitedListener::new(listener, max_connections);
            let service = app.into_make_service_with_connect_info::<PeerAddr>();
            let mut stopped_local = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(listener, service).with_graceful_shutdown(async move {
                    let _ = stopped_local.wait_for(|s| *s).await;
                });
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "admin API (Unix socket) stopped");
                }
            }));
        }
        info!(admin_addr = %addr, max_connections, "admin API started");
        Ok(AdminServer { addr, stop, tasks, socket })
    }

    /// The address bound (the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits up to 5 s for requests in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some((path, ino)) = &self.socket {
            LocalSocket::remove(path, *ino);
        }
        info!("admin API stopped");
    }
}
