//! The device MQTT head: IoT Hub's device protocol (`reference/iot-hub-protocols.md` §1) on the
//! shared `ironedge-mqtt` server.
//!
//! - CONNECT: client id and username name the same identity; the password is that identity's
//!   SAS token (or a `DeviceConnect` policy token). CONNACK 4 for malformed credentials, 5 for
//!   an unknown, disabled or wrongly signed identity, 3 when the hub cannot check.
//! - Each identity may publish and subscribe only on its own topics; anything else closes the
//!   connection (publish) or fails the filter (subscribe).
//! - Telemetry is PUBACKed after it is durable; twin and method traffic is answered on
//!   `$iothub/...` at QoS 0; C2D goes out at QoS 1 and the PUBACK completes it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ironedge_mqtt::{
    Authenticated, ConnectRequest, ConnectReturnCode, ConnectionHandle, DisconnectReason, Hooks,
    OutboundMessage, Publish, PublishAck, QoS,
};
use ironedge_protocol::{
    C2dTopic, Identity, Message, MethodTopic, SasError, Subscription, Topic, TwinTopic,
    identity_from_connect,
};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::Hub;
use crate::auth::AuthError;
use crate::error::Error;
use crate::service::{DeviceLink, identity_key, now_iso};
use crate::storage::{C2dMessage, TelemetryRecord};

/// The application property IoT Hub adds to a Will turned into telemetry.
const WILL_PROPERTY: (&str, &str) = ("iothub-MessageType", "Will");

const SUB_TWIN_RES: u8 = 1;
const SUB_DESIRED: u8 = 2;
const SUB_METHODS: u8 = 4;
const SUB_C2D: u8 = 8;

/// The hooks the MQTT server calls for device connections.
#[derive(Debug)]
pub struct DeviceHooks {
    hub: Hub,
    links: Mutex<HashMap<u64, (Arc<MqttLink>, crate::service::ConnectionId)>>,
}

impl DeviceHooks {
    /// Hooks serving `hub`.
    pub fn new(hub: Hub) -> Self {
        Self {
            hub,
            links: Mutex::new(HashMap::new()),
        }
    }

    fn link(&self, conn: &ConnectionHandle<Identity>) -> Option<Arc<MqttLink>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&conn.connection_id())
            .map(|(l, _)| l.clone())
    }
}

fn key_of(identity: &Identity) -> String {
    identity_key(&identity.device_id, identity.module_id.as_deref())
}

/// What the hub pushes through one MQTT connection.
#[derive(Debug)]
pub struct MqttLink {
    handle: ConnectionHandle<Identity>,
    subscriptions: AtomicU8,
}

impl MqttLink {
    fn subscribed(&self, bit: u8) -> bool {
        self.subscriptions.load(Ordering::Relaxed) & bit != 0
    }

    fn send(&self, topic: String, payload: Vec<u8>, qos: QoS) -> bool {
        match self
            .handle
            .try_send(OutboundMessage::new(topic, Bytes::from(payload), qos))
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(identity = %self.handle.identity(), error = %e, "dropping a message to a slow or closed connection");
                false
            }
        }
    }
}

impl DeviceLink for MqttLink {
    fn send_desired_patch(&self, patch: &Value) {
        if !self.subscribed(SUB_DESIRED) {
            return;
        }
        let version = patch.get("$version").and_then(Value::as_u64).unwrap_or(0);
        let topic = TwinTopic::DesiredPatch { version }.to_string();
        self.send(
            topic,
            serde_json::to_vec(patch).unwrap_or_default(),
            QoS::AtMostOnce,
        );
    }

    fn send_method_request(&self, method: &str, rid: &str, payload: &[u8]) -> bool {
        if !self.subscribed(SUB_METHODS) {
            return false;
        }
        let topic = MethodTopic::Request {
            name: method.to_owned(),
            rid: rid.to_owned(),
        }
        .to_string();
        self.send(topic, payload.to_vec(), QoS::AtMostOnce)
    }

    fn send_c2d(&self, m: &C2dMessage) -> Option<oneshot::Receiver<()>> {
        if !self.subscribed(SUB_C2D) {
            return None;
        }
        let mut msg = Message::new(m.body.clone());
        msg.system.message_id = Some(m.message_id.clone());
        msg.system.correlation_id.clone_from(&m.correlation_id);
        msg.system.content_type.clone_from(&m.content_type);
        msg.system.content_encoding.clone_from(&m.content_encoding);
        msg.system.to = Some(format!("/devices/{}/messages/deviceBound", m.device_id));
        msg.system.ack.clone_from(&m.ack);
        msg.system.expiry_time_utc = Some(crate::time::iso(crate::time::from_millis(m.expiry_ms)));
        msg.properties = m
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let topic = C2dTopic::for_message(&m.device_id, &msg).to_string();
        let (out, rx) = OutboundMessage::with_receipt(topic, msg.body, QoS::AtLeastOnce);
        self.handle.try_send(out).ok().map(|()| rx)
    }

    fn close(&self, reason: &str) {
        self.handle.disconnect(reason);
    }
}

fn connack_for(e: &Error) -> ConnectReturnCode {
    match e {
        Error::Auth(AuthError::Missing)
        | Error::Auth(AuthError::Token(
            SasError::MissingPrefix
            | SasError::MissingField(_)
            | SasError::DuplicateField(_)
            | SasError::MalformedField(_)
            | SasError::InvalidExpiry(_)
            | SasError::InvalidSignatureEncoding,
        )) => ConnectReturnCode::BadUserNamePassword,
        Error::Auth(_) => ConnectReturnCode::NotAuthorized,
        _ => ConnectReturnCode::ServiceUnavailable,
    }
}

fn telemetry_record(identity: &Identity, message: Message) -> TelemetryRecord {
    let sys = message.system;
    let mut system_properties = std::collections::BTreeMap::new();
    for (k, v) in [
        ("$.exp", &sys.expiry_time_utc),
        ("$.schema", &sys.message_schema),
        ("$.ctime", &sys.creation_time_utc),
        ("$.ifid", &sys.interface_id),
        ("$.sub", &sys.component_name),
        ("$.to", &sys.to),
        ("iothub-operation", &sys.operation),
    ] {
        if let Some(v) = v {
            system_properties.insert(k.to_owned(), v.clone());
        }
    }
    TelemetryRecord {
        seq: 0,
        enqueued_ms: 0,
        device_id: identity.device_id.clone(),
        module_id: identity.module_id.clone(),
        message_id: sys.message_id,
        correlation_id: sys.correlation_id,
        user_id: sys.user_id,
        content_type: sys.content_type,
        content_encoding: sys.content_encoding,
        output_name: sys.output_name,
        system_properties,
        properties: message.properties.into_iter().collect(),
        body: message.body.to_vec(),
    }
}

impl Hooks for DeviceHooks {
    type Identity = Identity;

    async fn authenticate(
        &self,
        req: &ConnectRequest,
    ) -> Result<Authenticated<Identity>, ConnectReturnCode> {
        let (identity, _username) = identity_from_connect(&req.client_id, req.username.as_deref()).map_err(|e| {
            tracing::info!(client_id = %req.client_id, peer = %req.peer, error = %e, "CONNECT refused");
            self.hub.metrics().auth_failure("mqtt");
            ConnectReturnCode::BadUserNamePassword
        })?;
        let Some(password) = req.password.clone() else {
            self.hub.metrics().auth_failure("mqtt");
            return Err(ConnectReturnCode::BadUserNamePassword);
        };
        let res = self
            .hub
            .authenticate_device(
                identity.device_id.clone(),
                identity.module_id.clone(),
                password,
            )
            .await;
        match res {
            Ok(expiry) => Ok(Authenticated {
                identity,
                expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(expiry)),
            }),
            Err(e) => {
                tracing::info!(%identity, peer = %req.peer, error = %e, "CONNECT refused");
                Err(connack_for(&e))
            }
        }
    }

    fn connected(
        &self,
        conn: &ConnectionHandle<Identity>,
        _session_present: bool,
        subscriptions: &[(String, QoS)],
    ) {
        let identity = conn.identity();
        let mut bits = 0;
        for (filter, _) in subscriptions {
            bits |= Subscription::parse(filter).map_or(0, |s| bit_of(&s));
        }
        let link = Arc::new(MqttLink {
            handle: conn.clone(),
            subscriptions: AtomicU8::new(bits),
        });
        let key = key_of(identity);
        let id = self
            .hub
            .connections()
            .connect(&key, link.clone(), &now_iso());
        self.hub.metrics().connections_accepted.inc();
        self.hub.metrics().connections.inc();
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(conn.connection_id(), (link, id));
        tracing::debug!(%identity, "device connected");
        if bits & SUB_C2D != 0 {
            self.spawn_c2d(identity.device_id.clone());
        }
    }

    fn subscribe(&self, conn: &ConnectionHandle<Identity>, filter: &str, qos: QoS) -> Option<QoS> {
        let identity = conn.identity();
        let sub = match Subscription::parse(filter) {
            Ok(s) if s.allowed_for(identity) => s,
            Ok(_) | Err(_) => {
                tracing::info!(%identity, filter, "SUBSCRIBE refused");
                return None;
            }
        };
        let bit = bit_of(&sub);
        if bit == 0 {
            return None;
        }
        if let Some(link) = self.link(conn) {
            link.subscriptions.fetch_or(bit, Ordering::Relaxed);
        }
        if bit == SUB_C2D {
            self.spawn_c2d(identity.device_id.clone());
        }
        Some(if qos == QoS::AtMostOnce {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        })
    }

    fn unsubscribe(&self, conn: &ConnectionHandle<Identity>, filter: &str) {
        if let (Some(link), Ok(sub)) = (self.link(conn), Subscription::parse(filter)) {
            link.subscriptions
                .fetch_and(!bit_of(&sub), Ordering::Relaxed);
        }
    }

    fn publish(
        &self,
        conn: &ConnectionHandle<Identity>,
        publish: Publish,
        ack: PublishAck,
    ) -> Result<(), String> {
        let identity = conn.identity().clone();
        let topic_name = publish.topic.clone();
        let topic = Topic::parse(&topic_name)
            .map_err(|e| format!("unsupported topic {topic_name:?}: {e}"))?;
        match topic {
            Topic::Telemetry(t) => {
                if t.identity != identity {
                    return Err(format!("{identity} may not publish on {topic_name:?}"));
                }
                let record = telemetry_record(&identity, t.into_message(publish.payload));
                let hub = self.hub.clone();
                tokio::spawn(async move {
                    match hub.ingest_telemetry(record).await {
                        Ok(_) => {
                            hub.connections().touch(&key_of(&identity), &now_iso());
                            ack.accept();
                        }
                        Err(e) => ack.reject(format!("telemetry not stored: {e}")),
                    }
                });
                Ok(())
            }
            Topic::Twin(TwinTopic::Get { rid }) => {
                ack.accept();
                self.spawn_twin_get(conn.clone(), identity, rid);
                Ok(())
            }
            Topic::Twin(TwinTopic::ReportedPatch { rid, .. }) => {
                ack.accept();
                self.spawn_reported(conn.clone(), identity, rid, publish.payload);
                Ok(())
            }
            Topic::Method(MethodTopic::Response { status, rid }) => {
                ack.accept();
                if !self.hub.method_response(
                    &key_of(&identity),
                    &rid,
                    i64::from(status),
                    &publish.payload,
                ) {
                    tracing::debug!(%identity, rid, "method response for no pending request");
                }
                Ok(())
            }
            other => Err(format!("clients may not publish on {other}")),
        }
    }

    /// IoT Hub turns a Will on the identity's own telemetry topic into telemetry carrying
    /// `iothub-MessageType=Will` (reference §1.2); a Will on any other topic is dropped.
    fn will(&self, conn: &ConnectionHandle<Identity>, will: Publish, reason: &DisconnectReason) {
        let identity = conn.identity().clone();
        let telemetry = match Topic::parse(&will.topic) {
            Ok(Topic::Telemetry(t)) if t.identity == identity => t,
            _ => {
                tracing::info!(%identity, topic = %will.topic, "dropping a Will that is not on the identity's telemetry topic");
                return;
            }
        };
        let mut message = telemetry.into_message(will.payload);
        message
            .properties
            .push((WILL_PROPERTY.0.to_owned(), WILL_PROPERTY.1.to_owned()));
        let record = telemetry_record(&identity, message);
        let hub = self.hub.clone();
        tracing::info!(%identity, %reason, "publishing the connection's Will as telemetry");
        tokio::spawn(async move {
            if let Err(e) = hub.ingest_telemetry(record).await {
                tracing::warn!(%identity, error = %e, "Will not stored");
            }
        });
    }

    fn disconnected(&self, conn: &ConnectionHandle<Identity>, reason: &DisconnectReason) {
        let entry = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&conn.connection_id());
        if let Some((_, id)) = entry {
            self.hub
                .connections()
                .disconnect(&key_of(conn.identity()), id, &now_iso());
            self.hub.metrics().connections.dec();
        }
        tracing::debug!(identity = %conn.identity(), %reason, "device disconnected");
    }
}

fn bit_of(sub: &Subscription) -> u8 {
    match sub {
        Subscription::TwinResponses => SUB_TWIN_RES,
        Subscription::DesiredPatches => SUB_DESIRED,
        Subscription::MethodRequests => SUB_METHODS,
        Subscription::C2d { .. } => SUB_C2D,
        Subscription::ModuleInputs { .. } => 0,
    }
}

fn twin_status(e: &Error) -> u16 {
    match e {
        Error::Twin(_) | Error::BadRequest(_) => 400,
        Error::DeviceNotFound(_) | Error::ModuleNotFound { .. } => 404,
        Error::Busy(_) => 429,
        _ => 500,
    }
}

impl DeviceHooks {
    fn spawn_c2d(&self, device_id: String) {
        let hub = self.hub.clone();
        tokio::spawn(async move {
            if let Err(e) = hub.deliver_c2d(&device_id).await {
                tracing::warn!(device = %device_id, error = %e, "C2D delivery failed");
            }
        });
    }

    fn spawn_twin_get(&self, conn: ConnectionHandle<Identity>, identity: Identity, rid: String) {
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let (status, body) = match hub
                .device_twin(identity.device_id, identity.module_id)
                .await
            {
                Ok(doc) => (200, serde_json::to_vec(&doc).unwrap_or_default()),
                Err(e) => (twin_status(&e), error_body(&e)),
            };
            let topic = TwinTopic::Response {
                status,
                rid,
                version: None,
            }
            .to_string();
            let _ = conn.try_send(OutboundMessage::new(
                topic,
                Bytes::from(body),
                QoS::AtMostOnce,
            ));
        });
    }

    fn spawn_reported(
        &self,
        conn: ConnectionHandle<Identity>,
        identity: Identity,
        rid: String,
        payload: Bytes,
    ) {
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let res = match serde_json::from_slice::<Value>(&payload) {
                Ok(patch) => {
                    hub.patch_reported(identity.device_id, identity.module_id, patch)
                        .await
                }
                Err(e) => Err(Error::BadRequest(format!(
                    "the reported patch is not JSON: {e}"
                ))),
            };
            let (topic, body) = match res {
                Ok(version) => (
                    TwinTopic::Response {
                        status: 204,
                        rid,
                        version: Some(version),
                    },
                    Vec::new(),
                ),
                Err(e) => (
                    TwinTopic::Response {
                        status: twin_status(&e),
                        rid,
                        version: None,
                    },
                    error_body(&e),
                ),
            };
            let _ = conn.try_send(OutboundMessage::new(
                topic.to_string(),
                Bytes::from(body),
                QoS::AtMostOnce,
            ));
        });
    }
}

fn error_body(e: &Error) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"errorCode": twin_status(e), "message": e.to_string()}))
        .unwrap_or_default()
}
