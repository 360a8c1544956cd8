//! Listeners and the shared state of all connections: who is connected (one connection per
//! identity; a new one kicks the old) and persistent sessions of disconnected clients.

use crate::config::MqttConfig;
use crate::connection::{self, Peer};
use crate::error::Result;
use crate::handle::ConnectionHandle;
use crate::hooks::{Hooks, TransportKind};
use crate::metrics::MqttMetrics;
use crate::session::PersistedSession;
use crate::transport::{StreamTransport, Transport, WebSocketTransport};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Path of MQTT over WebSocket on IoT Hub and edgeHub.
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";
/// WebSocket subprotocol for MQTT.
pub const WEBSOCKET_PROTOCOL: &str = "mqtt";

pub(crate) struct Shared<H: Hooks> {
    pub(crate) config: MqttConfig,
    pub(crate) hooks: Arc<H>,
    pub(crate) metrics: MqttMetrics,
    pub(crate) registry: Registry<H::Identity>,
    next_id: AtomicU64,
}

impl<H: Hooks> Shared<H> {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

struct Live<I> {
    handle: ConnectionHandle<I>,
    done: watch::Receiver<bool>,
}

/// Connected identities and stored sessions. Locked only on connect and disconnect.
pub(crate) struct Registry<I> {
    live: Mutex<HashMap<I, Live<I>>>,
    sessions: Mutex<HashMap<I, PersistedSession>>,
}

impl<I: Clone + Eq + std::hash::Hash> Registry<I> {
    fn new() -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Registers `handle` as the identity's connection; kicks and returns the previous one's
    /// completion signal.
    pub(crate) fn take_over(
        &self,
        handle: &ConnectionHandle<I>,
        done: watch::Receiver<bool>,
    ) -> Option<watch::Receiver<bool>> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = live.insert(
            handle.identity().clone(),
            Live {
                handle: handle.clone(),
                done,
            },
        );
        drop(live);
        previous.map(|p| {
            p.handle.kick(crate::DisconnectReason::SessionTakenOver);
            p.done
        })
    }

    /// The stored session, discarded when the client asks for a clean one.
    pub(crate) fn take_session(&self, identity: &I, clean: bool) -> Option<PersistedSession> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.remove(identity);
        if clean { None } else { session }
    }

    /// Unregisters a finished connection (unless a newer one replaced it) and stores its session.
    pub(crate) fn release(&self, handle: &ConnectionHandle<I>, session: Option<PersistedSession>) {
        if let Some(session) = session {
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(handle.identity().clone(), session);
        }
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live
            .get(handle.identity())
            .is_some_and(|l| l.handle.connection_id() == handle.connection_id())
        {
            live.remove(handle.identity());
        }
    }

    fn get(&self, identity: &I) -> Option<ConnectionHandle<I>> {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(identity)
            .map(|l| l.handle.clone())
    }

    fn count(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn drop_session(&self, identity: &I) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(identity);
    }
}

/// An MQTT 3.1.1 server. Clone it freely; all clones share connections and sessions.
pub struct MqttServer<H: Hooks> {
    shared: Arc<Shared<H>>,
}

impl<H: Hooks> Clone for MqttServer<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<H: Hooks> std::fmt::Debug for MqttServer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl<H: Hooks> MqttServer<H> {
    /// A server with `config` calling `hooks`.
    pub fn new(config: MqttConfig, hooks: Arc<H>) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                hooks,
                metrics: MqttMetrics::default(),
                registry: Registry::new(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &MqttMetrics {
        &self.shared.metrics
    }

    /// The hooks.
    pub fn hooks(&self) -> &Arc<H> {
        &self.shared.hooks
    }

    /// The live connection of `identity`, to deliver C2D messages, method calls and inputs.
    pub fn connection(&self, identity: &H::Identity) -> Option<ConnectionHandle<H::Identity>> {
        self.shared.registry.get(identity)
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.count()
    }

    /// Forgets the persistent session of an identity (e.g. when the identity is deleted).
    pub fn forget_session(&self, identity: &H::Identity) {
        self.shared.registry.drop_session(identity);
    }

    /// Serves MQTT on `listener` (over TLS when `tls` is set) until `shutdown` completes, then
    /// stops accepting, lets connections flush pending acks, and returns when all have ended.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.accept_loop(listener, tls, false, shutdown).await
    }

    /// Serves MQTT over WebSocket at [`WEBSOCKET_PATH`] with subprotocol `mqtt`.
    pub async fn serve_websocket(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        self.accept_loop(listener, tls, true, shutdown).await
    }

    /// Runs one connection over a transport the caller set up (e.g. a WebSocket upgraded by an
    /// HTTP server that also serves other routes on the same port).
    pub async fn serve_transport<T: Transport>(
        &self,
        transport: T,
        peer: SocketAddr,
        kind: TransportKind,
        shutdown: CancellationToken,
    ) {
        connection::run(
            self.shared.clone(),
            transport,
            Peer {
                addr: peer,
                certificates: None,
                kind,
            },
            shutdown,
        )
        .await;
    }

    async fn accept_loop(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        websocket: bool,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let acceptor = tls.map(TlsAcceptor::from);
        let local = listener.local_addr()?;
        info!(%local, tls = acceptor.is_some(), websocket, "MQTT listener started");
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection failures (EMFILE, aborted handshakes) must not stop the listener.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let shared = self.shared.clone();
            let acceptor = acceptor.clone();
            let token = token.clone();
            tracker.spawn(accept(shared, tcp, peer, acceptor, websocket, token));
        }
        info!(%local, "MQTT listener stopping");
        drop(listener);
        token.cancel();
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A socket after its TLS and WebSocket handshakes.
enum Accepted {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    WebSocket(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    TlsWebSocket(Box<tokio_tungstenite::WebSocketStream<TlsStream>>),
}

async fn handshake(
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    websocket: bool,
) -> std::io::Result<(
    Accepted,
    Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
)> {
    let Some(acceptor) = acceptor else {
        if websocket {
            return Ok((
                Accepted::WebSocket(Box::new(websocket_handshake(tcp).await?)),
                None,
            ));
        }
        return Ok((Accepted::Tcp(tcp), None));
    };
    let tls = acceptor.accept(tcp).await?;
    let certificates = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect());
    if websocket {
        return Ok((
            Accepted::TlsWebSocket(Box::new(websocket_handshake(tls).await?)),
            certificates,
        ));
    }
    Ok((Accepted::Tls(Box::new(tls)), certificates))
}

/// Runs the handshakes under the connect timeout, then the connection itself.
async fn accept<H: Hooks>(
    shared: Arc<Shared<H>>,
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    websocket: bool,
    token: CancellationToken,
) {
    let timeout = shared.config.connect_timeout;
    let (accepted, certificates) =
        // Boxed: the handshake's state is freed before the connection is served.
        match tokio::time::timeout(timeout, Box::pin(handshake(tcp, acceptor, websocket))).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "handshake timed out");
                return;
            }
        };
    let peer_of = |kind| Peer {
        addr: peer,
        certificates,
        kind,
    };
    match accepted {
        Accepted::Tcp(s) => {
            connection::run(
                shared,
                StreamTransport(s),
                peer_of(TransportKind::Tcp),
                token,
            )
            .await
        }
        Accepted::Tls(s) => {
            connection::run(
                shared,
                StreamTransport(*s),
                peer_of(TransportKind::Tls),
                token,
            )
            .await
        }
        Accepted::WebSocket(s) => {
            connection::run(
                shared,
                WebSocketTransport(*s),
                peer_of(TransportKind::WebSocket),
                token,
            )
            .await
        }
        Accepted::TlsWebSocket(s) => {
            connection::run(
                shared,
                WebSocketTransport(*s),
                peer_of(TransportKind::WebSocket),
                token,
            )
            .await;
        }
    }
}

async fn websocket_handshake<S>(stream: S) -> std::io::Result<tokio_tungstenite::WebSocketStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio_tungstenite::accept_hdr_async(stream, check_upgrade)
        .await
        .map_err(std::io::Error::other)
}

#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_upgrade(
    request: &Request,
    mut response: Response,
) -> std::result::Result<Response, ErrorResponse> {
    if request.uri().path() != WEBSOCKET_PATH {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            "MQTT over WebSocket is served at /$iothub/websocket",
        ));
    }
    let offers_mqtt = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(WEBSOCKET_PROTOCOL));
    if !offers_mqtt {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol must be \"mqtt\"",
        ));
    }
    response.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(WEBSOCKET_PROTOCOL),
    );
    Ok(response)
}

fn error_response(status: StatusCode, text: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(text.to_owned()));
    *r.status_mut() = status;
    r
}
