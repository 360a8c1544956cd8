//! The ironedge cloud hub, in-process, as the edge hub's upstream.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ironedge_edgehub::upstream::UpstreamSettings;
use ironedge_hub::HubSettings;
use ironedge_hub::server::{ServerSettings, Started, TlsSource, start};
use serde_json::json;

use super::{
    EDGE, EdgeHub, EdgeHubSpec, HUB, Module, ModuleLanguage, ModuleProcess, ModuleTransport,
    loopback,
};

/// A running cloud hub.
pub struct Cloud {
    pub started: Started,
    pub ca_pem: String,
    pub addr: Ipv4Addr,
    _dir: tempfile::TempDir,
}

impl Cloud {
    /// Starts a hub on `addr` (any port) that knows `EDGE` and `modules` with their keys.
    pub async fn start(addr: Ipv4Addr, modules: &[Module]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ip = IpAddr::V4(addr);
        let settings = ServerSettings {
            database: dir.path().join("hub.db"),
            rest_addr: SocketAddr::new(ip, 0),
            mqtt_addr: SocketAddr::new(ip, 0),
            websocket_addr: None,
            tls: TlsSource::DevCa {
                dir: dir.path().join("ca"),
                names: vec![addr.to_string()],
            },
            hub: HubSettings {
                hub_names: vec![HUB.into()],
                ..HubSettings::default()
            },
        };
        let started = start(settings).await.expect("cloud hub starts");
        let ca_pem = std::fs::read_to_string(started.dev_ca.as_ref().unwrap()).unwrap();
        let request = serde_json::from_value(json!({"capabilities": {"iotEdge": true}})).unwrap();
        started
            .hub
            .put_device(
                EDGE.into(),
                request,
                ironedge_hub::registry::IfMatch::Absent,
            )
            .await
            .unwrap();
        for m in modules {
            let request = serde_json::from_value(json!({"authentication": {"type": "sas", "symmetricKey": {
                "primaryKey": m.keys.primary.to_base64(), "secondaryKey": m.keys.secondary.to_base64()}}}))
            .unwrap();
            started
                .hub
                .put_module(
                    EDGE.into(),
                    m.name.clone(),
                    request,
                    ironedge_hub::registry::IfMatch::Absent,
                )
                .await
                .unwrap();
        }
        Self {
            started,
            ca_pem,
            addr,
            _dir: dir,
        }
    }

    /// Upstream settings that reach this hub.
    pub fn upstream(&self) -> UpstreamSettings {
        UpstreamSettings {
            hub_host_name: HUB.into(),
            host: self.addr.to_string(),
            port: self.started.mqtt_addr.port(),
            tls: ironedge_pki::client_config(&self.ca_pem, None).unwrap(),
            token_ttl: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(30),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10),
            inflight: 1000,
        }
    }

    /// Registry settings with the edge device's own key, as the edge hub reads its modules.
    pub async fn registry(&self) -> ironedge_edgehub::registry::RegistrySettings {
        let device = self.hub().get_device(EDGE.into()).await.unwrap();
        let key = device["authentication"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap();
        ironedge_edgehub::registry::RegistrySettings {
            base_url: format!("https://{}:{}", self.addr, self.started.rest_addr.port()),
            hub_host_name: HUB.into(),
            edge_device_id: EDGE.into(),
            device_key: ironedge_protocol::SymmetricKey::from_base64(key).unwrap(),
            tls: ironedge_pki::client_config(&self.ca_pem, None).unwrap(),
            refresh: Duration::from_secs(3600),
        }
    }

    pub fn hub(&self) -> &ironedge_hub::Hub {
        &self.started.hub
    }

    /// A cloud that knows `module`, and an edge hub with no routes linked to it.
    #[allow(dead_code)] // not every test file needs both
    pub async fn with_edge_hub(module: &Module) -> (Self, EdgeHub) {
        let cloud = Self::start(loopback(), std::slice::from_ref(module)).await;
        let hub = EdgeHub::start(EdgeHubSpec {
            modules: vec![module.clone()],
            routes: json!({}),
            upstream: Some(cloud.upstream()),
            registry: None,
        })
        .await;
        (cloud, hub)
    }

    /// Waits until the cloud's twin of `module` reports `value` under `key`; returns the twin.
    #[allow(dead_code)] // not every test file reads twins
    pub async fn wait_reported(
        &self,
        module: &str,
        key: &str,
        value: &serde_json::Value,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let twin = self
                .hub()
                .get_twin(EDGE.into(), Some(module.into()))
                .await
                .unwrap();
            if twin["properties"]["reported"][key] == *value {
                return twin;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reported {key} never reached the cloud: {twin}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Patches `module`'s desired `color` (with a counter `n`) until the module prints a
    /// `desired_patch`, which it returns: the first patch may precede the edge hub's upstream
    /// subscription.
    #[allow(dead_code)] // not every test file patches twins
    pub async fn patch_desired_until_notified(
        &self,
        module: &str,
        color: &str,
        process: &mut ModuleProcess,
        timeout: Duration,
    ) -> serde_json::Value {
        for n in 1..=30 {
            let patch = serde_json::from_value(
                json!({"properties": {"desired": {"color": color, "n": n}}}),
            )
            .unwrap();
            self.hub()
                .patch_twin(
                    EDGE.into(),
                    Some(module.into()),
                    patch,
                    ironedge_hub::registry::IfMatch::Any,
                )
                .await
                .unwrap();
            let notified = tokio::time::timeout(
                Duration::from_secs(2),
                process.expect("desired_patch", timeout),
            );
            if let Ok(v) = notified.await {
                return v;
            }
        }
        panic!("no desired patch reached module {module}");
    }
}

/// Invokes `method` with `payload` on `module` of the edge device, retrying while the cloud
/// answers 404: the edge hub subscribes upstream for a module only once the module subscribed.
#[allow(dead_code)] // not every test file invokes methods
pub async fn invoke_when_subscribed(
    hub: &ironedge_hub::Hub,
    module: &str,
    method: &str,
    payload: serde_json::Value,
    timeout: Duration,
) -> ironedge_hub::service::MethodResponse {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let request = serde_json::from_value(
            json!({"methodName": method, "payload": payload, "responseTimeoutInSeconds": 20}),
        )
        .unwrap();
        match hub
            .invoke_method(EDGE.into(), Some(module.into()), request)
            .await
        {
            Ok(r) => return r,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("method {method} never reached module {module}: {e}"),
        }
    }
}

/// A module (Python or Node SDK, over MQTT or WebSocket) answers a direct method invoked at the
/// cloud through the edge hub, and the answer comes back.
#[allow(dead_code)] // not every test file invokes methods
pub async fn direct_method_round_trip(
    language: ModuleLanguage,
    transport: ModuleTransport,
    name: &str,
) {
    const T: Duration = Duration::from_secs(90);
    let module = Module::new(name);
    let (cloud, hub) = Cloud::with_edge_hub(&module).await;
    let arg = json!({"count": 1, "names": ["ping"]});
    let mut m = ModuleProcess::spawn_in(language, &hub, &module, transport, "methods", arg);
    m.expect("ready", T).await;
    let payload = json!({"n": 7, "s": "x"});
    let response = invoke_when_subscribed(cloud.hub(), name, "ping", payload.clone(), T).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.payload, json!({"echo": payload}));
    let call = m.expect("method", T).await;
    assert_eq!(call["method"], "ping", "{call}");
    assert_eq!(call["payload"], payload, "{call}");
    m.success(T).await;
    hub.stop().await;
    cloud.started.shutdown().await;
}

#[allow(dead_code)]
fn _assert_send(_: Arc<()>) {}
