//! Where the workload API listens: a unix socket (`unix:///path`) or plain HTTP (`http://addr`).

use std::future::Future;
use std::path::PathBuf;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, UnixListener};

use crate::{CallerPeer, Error, Result, Workload, router};

/// A bound workload listener.
#[derive(Debug)]
pub enum WorkloadListener {
    /// A unix socket; the path is removed again when the server stops.
    Unix(UnixListener, PathBuf),
    /// A TCP socket serving plain HTTP (loopback or a pod-local address).
    Tcp(TcpListener),
}

impl WorkloadListener {
    /// Binds a `unix:///path/workload.sock` or `http://host:port` URI. A stale socket file left by
    /// a previous run is replaced.
    pub async fn bind(uri: &str) -> Result<Self> {
        if let Some(path) = uri.strip_prefix("unix://") {
            let path = PathBuf::from(path);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let listener = UnixListener::bind(&path)?;
            set_socket_mode(&path)?;
            return Ok(Self::Unix(listener, path));
        }
        if let Some(addr) = uri.strip_prefix("http://") {
            let addr = addr.trim_end_matches('/');
            return Ok(Self::Tcp(TcpListener::bind(addr).await?));
        }
        Err(Error::BadRequest(format!(
            "workload URI {uri:?} must start with unix:// or http://"
        )))
    }

    /// The URI modules should be given in `IOTEDGE_WORKLOADURI`.
    pub fn uri(&self) -> Result<String> {
        Ok(match self {
            Self::Unix(_, path) => format!("unix://{}", path.display()),
            Self::Tcp(l) => format!("http://{}", l.local_addr()?),
        })
    }
}

/// Modules may run as any user; who can reach the socket is decided by where it is mounted.
fn set_socket_mode(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(())
}

impl Connected<IncomingStream<'_, UnixListener>> for CallerPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok();
        Self::Unix {
            pid: cred.as_ref().and_then(|c| c.pid()),
            uid: cred.map(|c| c.uid()),
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for CallerPeer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self::Tcp(*stream.remote_addr())
    }
}

/// Serves the workload API until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: WorkloadListener,
    workload: Workload,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = router(workload);
    match listener {
        WorkloadListener::Unix(l, path) => {
            let service = app.into_make_service_with_connect_info::<CallerPeer>();
            let result = axum::serve(l, service)
                .with_graceful_shutdown(shutdown)
                .await;
            let _ = tokio::fs::remove_file(&path).await;
            result?;
        }
        WorkloadListener::Tcp(l) => {
            let service = app.into_make_service_with_connect_info::<CallerPeer>();
            axum::serve(l, service)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}
