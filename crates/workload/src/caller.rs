//! Who is calling, and may they act as the module in the path?
//!
//! The IoT Edge daemon checks the unix-socket peer PID against the module's container. That does
//! not carry over to Kubernetes, where the module runs in another pod. So the check is a trait:
//!
//! - [`SocketForModule`]: the agent serves one socket per module pod (a shared volume mounted only
//!   into that pod); reaching the socket is the proof, and the socket answers only for its module.
//! - [`AnyLocalCaller`]: reachability alone (a test harness, or a single-module local run).
//! - The agent adds a Kubernetes implementation: the pod's projected ServiceAccount token arrives
//!   as `Authorization: Bearer …` in [`Caller::bearer_token`], is checked with a TokenReview
//!   (audience-bound, expiring), and the ServiceAccount is mapped back to the module id. The trait
//!   is async for that round trip.

use std::net::SocketAddr;

use futures::future::BoxFuture;

/// The transport-level identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPeer {
    /// A unix-socket peer with its kernel-reported credentials (absent if the OS gave none).
    Unix {
        /// Peer process id.
        pid: Option<i32>,
        /// Peer user id.
        uid: Option<u32>,
    },
    /// A TCP peer.
    Tcp(SocketAddr),
}

/// Everything known about a workload request's caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// Transport peer.
    pub peer: CallerPeer,
    /// The `Authorization: Bearer` token, if one was sent (projected ServiceAccount token).
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("peer", &self.peer)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A refusal, with the reason for the log (never sent to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Decides whether a caller may act as a module.
pub trait CallerAuth: Send + Sync + 'static {
    /// Ok if `caller` may sign and get certificates as `module_id`.
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        module_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Denied>>;
}

/// Trusts whoever can reach the listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyLocalCaller;

impl CallerAuth for AnyLocalCaller {
    fn authorize<'a>(
        &'a self,
        _caller: &'a Caller,
        _module_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Denied>> {
        Box::pin(async { Ok(()) })
    }
}

/// A listener that serves exactly one module (a per-pod socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketForModule {
    module_id: String,
}

impl SocketForModule {
    /// Serves only `module_id`.
    pub fn new(module_id: impl Into<String>) -> Self {
        Self {
            module_id: module_id.into(),
        }
    }
}

impl CallerAuth for SocketForModule {
    fn authorize<'a>(
        &'a self,
        _caller: &'a Caller,
        module_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Denied>> {
        let result = if module_id == self.module_id {
            Ok(())
        } else {
            Err(Denied(format!(
                "this socket serves module {:?}, not {module_id:?}",
                self.module_id
            )))
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            peer: CallerPeer::Unix {
                pid: Some(1),
                uid: Some(0),
            },
            bearer_token: Some("secret-token".into()),
        }
    }

    #[tokio::test]
    async fn a_module_socket_refuses_other_modules() {
        let auth = SocketForModule::new("sensor");
        assert!(auth.authorize(&caller(), "sensor").await.is_ok());
        assert!(auth.authorize(&caller(), "filter").await.is_err());
        assert!(auth.authorize(&caller(), "$edgeHub").await.is_err());
    }

    #[test]
    fn caller_debug_redacts_the_token() {
        assert!(!format!("{:?}", caller()).contains("secret-token"));
    }
}
