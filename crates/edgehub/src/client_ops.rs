//! A client's twin and method requests. They may wait on the cloud (a twin GET), so they run in
//! arrival order on one task per client, started on the client's first request: a GET after a
//! reported patch sees the patch, and the client's telemetry never waits behind them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::hub::Hub;
use crate::sessions::ClientHandle;
use crate::{methods, twins};

/// One request of a client on `$iothub/…`.
#[derive(Debug)]
pub(crate) enum ClientOp {
    /// `$iothub/twin/GET/?$rid=…`.
    TwinGet {
        /// Request id to answer with.
        rid: String,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=…`.
    TwinReportedPatch {
        /// Request id to answer with.
        rid: String,
        /// The patch as sent.
        body: Bytes,
    },
    /// `$iothub/methods/res/{status}/?$rid=…`.
    MethodResponse {
        /// Status segment as sent.
        status: String,
        /// The hub's request id.
        rid: String,
        /// The answer.
        body: Bytes,
    },
}

/// Queues `op` behind the client's earlier requests.
pub(crate) fn submit(hub: &Hub, client: &Arc<ClientHandle>, op: ClientOp) {
    let tx = client.ops.get_or_init(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(hub.clone(), client.clone(), rx));
        tx
    });
    if tx.send(op).is_err() {
        tracing::debug!(identity = %client.identity, "request after the connection closed; ignored");
    }
}

/// Handles a client's requests until its connection closes, then those it sent before closing.
async fn run(hub: Hub, client: Arc<ClientHandle>, mut rx: mpsc::UnboundedReceiver<ClientOp>) {
    loop {
        let op = tokio::select! {
            () = client.closed.cancelled() => break,
            op = rx.recv() => match op {
                Some(op) => op,
                None => return,
            },
        };
        handle(&hub, &client, op).await;
    }
    // Everything the client sent was queued before its connection was marked closed. A method's
    // answer or a reported patch still counts (a module may answer and exit at once); a twin GET
    // has nobody left to answer.
    rx.close();
    while let Ok(op) = rx.try_recv() {
        if !matches!(op, ClientOp::TwinGet { .. }) {
            handle(&hub, &client, op).await;
        }
    }
}

async fn handle(hub: &Hub, client: &Arc<ClientHandle>, op: ClientOp) {
    match op {
        ClientOp::TwinGet { rid } => twins::get(hub, client, rid).await,
        ClientOp::TwinReportedPatch { rid, body } => {
            twins::patch_reported(hub, client, rid, &body).await;
        }
        ClientOp::MethodResponse { status, rid, body } => {
            methods::module_responded(hub, client, &status, &rid, body).await;
        }
    }
}
