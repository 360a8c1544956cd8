//! Userspace TCP forwarding: the API server proxy on the pod gateway (the `kubernetes` Service's
//! backend) and host ports that appear on each pod's own loopback (`--host-port`), whose listening
//! sockets are opened inside the pod's network namespace by a short-lived thread.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Accepts on `listener` until `shutdown` and forwards every connection to `target`.
pub async fn forward(listener: TcpListener, target: SocketAddr, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (mut inbound, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "proxy accept failed");
                continue;
            }
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut outbound = match TcpStream::connect(target).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, %target, error = %e, "proxy target refused");
                    return;
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                r = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {
                    if let Err(e) = r {
                        tracing::trace!(%peer, error = %e, "proxied connection ended");
                    }
                }
            }
        });
    }
}

/// Binds `addr` inside the network namespace at `netns` (a path under `/run/netns`).
pub async fn bind_in_netns(netns: &Path, addr: SocketAddr) -> Result<TcpListener> {
    let path: PathBuf = netns.to_path_buf();
    let what = format!("binding {addr} in {}", netns.display());
    let std_listener =
        tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpListener> {
            // A dedicated thread enters the namespace; the socket keeps the namespace it was created
            // in after the thread (and its namespace membership) is gone.
            std::thread::spawn(move || {
                let ns = std::fs::File::open(&path)?;
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .join()
            .map_err(|_| std::io::Error::other("namespace thread panicked"))?
        })
        .await
        .map_err(|e| Error::Net {
            what: what.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(Error::net(what.clone()))?;
    TcpListener::from_std(std_listener).map_err(Error::net(what))
}
