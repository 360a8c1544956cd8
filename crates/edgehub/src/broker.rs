//! The MQTT side: [`ironedge_mqtt::Hooks`] for the edge hub. Each hook is a thin call into
//! [`Hub`]. A PUBLISH is handled on the connection's own task, in arrival order, up to the
//! hand-over to the store (so a client's messages keep their order in every queue); its PUBACK
//! is released from the store's commit callback, while later PUBLISHes keep arriving and share
//! commits with it (group commit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use ironedge_mqtt::{
    Authenticated as MqttAuthenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle,
    DisconnectReason, Hooks, OutboundMessage, Publish, PublishAck, QoS,
};
use ironedge_protocol::Identity;

use crate::client::classify;
use crate::hub::{Hub, lock};
use crate::identities::{AuthError, Authenticated};
use crate::sessions::{ClientHandle, Gone, Outbound, Outlet};

/// The edge hub's MQTT hooks.
#[derive(Debug)]
pub struct EdgeHubHooks {
    hub: Hub,
    clients: Mutex<HashMap<u64, Client>>,
}

#[derive(Debug)]
struct Client {
    handle: Arc<ClientHandle>,
}

impl EdgeHubHooks {
    /// Hooks serving `hub`.
    pub fn new(hub: Hub) -> Self {
        Self {
            hub,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The hub behind the hooks.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn client(&self, connection: &ConnectionHandle<Identity>) -> Option<Arc<ClientHandle>> {
        lock(&self.clients)
            .get(&connection.connection_id())
            .map(|c| c.handle.clone())
    }
}

/// Delivers hub messages through an MQTT connection.
#[derive(Debug)]
struct MqttOutlet(ConnectionHandle<Identity>);

impl Outlet for MqttOutlet {
    fn send(&self, message: Outbound) -> BoxFuture<'_, Result<(), Gone>> {
        let qos = if message.ack.is_some() {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        let mut out = OutboundMessage::new(message.topic, message.payload, qos);
        out.on_delivered = message.ack;
        Box::pin(async move { self.0.send(out).await.map_err(|_| Gone) })
    }
}

fn connack_code(e: &AuthError) -> ConnectReturnCode {
    match e {
        AuthError::Connect(_) => ConnectReturnCode::BadClientId,
        AuthError::NoToken | AuthError::Sas(_) => ConnectReturnCode::BadUserNamePassword,
        AuthError::Refused(_) | AuthError::UnknownIdentity(_) => ConnectReturnCode::NotAuthorized,
    }
}

impl Hooks for EdgeHubHooks {
    type Identity = Identity;

    fn authenticate(
        &self,
        request: &ConnectRequest,
    ) -> impl Future<Output = Result<MqttAuthenticated<Identity>, ConnectReturnCode>> + Send {
        let result = self
            .hub
            .authenticate(
                &request.client_id,
                request.username.as_deref(),
                request.password.as_deref(),
            )
            .map(|a| MqttAuthenticated {
                identity: a.identity,
                expires_at: Some(UNIX_EPOCH + Duration::from_secs(a.expires_at)),
            })
            .map_err(|e| connack_code(&e));
        async move { result }
    }

    fn connected(
        &self,
        connection: &ConnectionHandle<Identity>,
        _session_present: bool,
        subscriptions: &[(String, QoS)],
    ) {
        let identity = connection.identity().clone();
        let Ok(kind) = classify(&self.hub.settings().edge_device_id, &identity) else {
            connection.disconnect("identity may not connect");
            return;
        };
        let auth = Authenticated {
            identity,
            kind,
            expires_at: 0,
            model_id: None,
        };
        let handle = self.hub.connected(
            &auth,
            Arc::new(MqttOutlet(connection.clone())),
            connection.clean_session(),
        );
        for (filter, _) in subscriptions {
            let _ = self.hub.subscribe(&handle, filter);
        }
        lock(&self.clients).insert(connection.connection_id(), Client { handle });
    }

    fn subscribe(
        &self,
        connection: &ConnectionHandle<Identity>,
        filter: &str,
        qos: QoS,
    ) -> Option<QoS> {
        let client = self.client(connection)?;
        self.hub.subscribe(&client, filter).ok()?;
        Some(if qos == QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        })
    }

    fn publish(
        &self,
        connection: &ConnectionHandle<Identity>,
        publish: Publish,
        ack: PublishAck,
    ) -> Result<(), String> {
        let client = self
            .client(connection)
            .ok_or_else(|| "publish before the connection was registered".to_owned())?;
        // A failed store commit is logged by the hub; rejecting closes the connection, so the
        // client sends the message again after reconnecting.
        self.hub
            .publish(
                &client,
                &publish.topic,
                publish.payload,
                move |result| match result {
                    Ok(()) => ack.accept(),
                    Err(e) => ack.reject(e.to_string()),
                },
            )
            .map_err(|e| e.to_string())
    }

    fn disconnected(&self, connection: &ConnectionHandle<Identity>, reason: &DisconnectReason) {
        let client = lock(&self.clients).remove(&connection.connection_id());
        if let Some(client) = client {
            tracing::debug!(identity = %client.handle.identity, reason = %reason, "connection ended");
            client.handle.closed.cancel();
            self.hub.disconnected(&client.handle);
        }
    }
}

/// Seconds since the epoch of a `SystemTime` (for logs and tests).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
