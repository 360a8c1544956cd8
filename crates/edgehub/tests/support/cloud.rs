//! The ironedge cloud hub, in-process, as the edge hub's upstream.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ironedge_edgehub::upstream::UpstreamSettings;
use ironedge_hub::HubSettings;
use ironedge_hub::server::{ServerSettings, Started, TlsSource, start};
use serde_json::json;

use super::{EDGE, HUB, Module};

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
}

#[allow(dead_code)]
fn _assert_send(_: Arc<()>) {}
