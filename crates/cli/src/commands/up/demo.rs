//! What `ironedge up` deploys, as plain data: the demo deployment manifest (sensor → filter →
//! `$upstream`), the device chart's values for the local node, and the image map entry of the
//! Python filter.

use std::path::Path;

use serde_json::{Value, json};

/// The version of the sample images (the workspace version, like the chart's appVersion).
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The edge hub's route filter before the filter module: only warm readings go on.
pub(crate) const ROUTE_CONDITION: &str = "$body.machine.temperature > 22";
/// The filter module's threshold in the demo.
pub(crate) const THRESHOLD: f64 = 25.0;

/// Which filter implementation the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterKind {
    /// `samples/filter` on `ironedge-module-client`.
    Rust,
    /// `samples/filter-python` on `azure-iot-device`.
    Python,
}

impl FilterKind {
    /// The module's image.
    pub(crate) fn image(self) -> String {
        match self {
            Self::Rust => format!("ghcr.io/ironedge/ironedge-filter:{VERSION}"),
            Self::Python => format!("ghcr.io/ironedge/ironedge-filter-python:{VERSION}"),
        }
    }
}

/// The routes of the demo.
pub(crate) fn routes() -> Value {
    json!({
        "sensorToFilter": format!(
            "FROM /messages/modules/sensor/outputs/temperatureOutput WHERE {ROUTE_CONDITION} \
             INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")"
        ),
        "filterToCloud": "FROM /messages/modules/filter/outputs/output1 INTO $upstream",
    })
}

/// The demo deployment: a simulated sensor sending every `interval_secs`, the filter, and the
/// routes between them and the cloud.
pub(crate) fn manifest(filter: FilterKind, interval_secs: f64) -> Value {
    let system_image = format!("ghcr.io/ironedge/ironedge:{VERSION}");
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": system_image}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "startupOrder": 0, "settings": {"image": system_image}}
            },
            "modules": {
                "sensor": {
                    "version": "1.0", "type": "docker", "status": "running",
                    "restartPolicy": "always", "startupOrder": 2,
                    "settings": {"image": format!("ghcr.io/ironedge/ironedge-tempsensor:{VERSION}")},
                    "env": {
                        "SendInterval": {"value": interval_secs.to_string()},
                        "MessageCount": {"value": "-1"}
                    }
                },
                "filter": {
                    "version": "1.0", "type": "docker", "status": "running",
                    "restartPolicy": "always", "startupOrder": 1,
                    "settings": {"image": filter.image()},
                    "env": {"TemperatureThreshold": {"value": THRESHOLD.to_string()}}
                }
            }
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": routes(),
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        }},
        "filter": {"properties.desired": {"TemperatureThreshold": THRESHOLD}}
    }})
}

/// Where the device's pods reach the hub, and how the local node must run them.
#[derive(Debug, Clone)]
pub(crate) struct ChartInputs<'a> {
    /// The device connection string.
    pub(crate) connection_string: &'a str,
    /// The hub's MQTT port on the host loopback (forwarded into every pod by the node).
    pub(crate) mqtt_port: u16,
    /// The hub's REST port on the host loopback.
    pub(crate) rest_port: u16,
    /// The hub's CA (PEM).
    pub(crate) hub_ca_pem: &'a str,
}

/// Values for the `ironedge-device` chart. The chart's own security contexts stay (non-root,
/// fsGroup for the edge hub's store): the local node applies them like a kubelet.
pub(crate) fn device_values(inputs: &ChartInputs<'_>) -> Value {
    json!({
        "provisioning": {"connectionString": inputs.connection_string},
        "hub": {
            "mqtt": format!("127.0.0.1:{}", inputs.mqtt_port),
            "restUrl": format!("https://127.0.0.1:{}", inputs.rest_port),
            "ca": {"pem": inputs.hub_ca_pem}
        },
        "logFormat": "text"
    })
}

/// The node's image map entry for the Python filter: the venv interpreter running the script.
pub(crate) fn python_image_map(python: &Path, script: &Path) -> String {
    let q = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    format!(
        "images:\n  - match: \"*/ironedge-filter-python:*\"\n    entrypoint: [{}, {}]\n    \
         commands: {{python: {0}, python3: {0}}}\n    env: {{PYTHONUNBUFFERED: \"1\"}}\n",
        q(python),
        q(script)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_manifest_is_valid_for_both_filters() {
        for filter in [FilterKind::Rust, FilterKind::Python] {
            let text = serde_json::to_vec(&manifest(filter, 1.0)).unwrap();
            let outcome = ironedge_model::validate(&text).into_result();
            assert!(outcome.is_ok(), "{filter:?}: {:?}", outcome.err());
        }
    }

    #[test]
    fn the_demo_routes_sensor_readings_through_the_filter_to_the_cloud() {
        let r = routes();
        let to_filter = r["sensorToFilter"].as_str().unwrap();
        assert!(to_filter.contains("WHERE $body.machine.temperature > 22"));
        assert!(to_filter.contains("/modules/filter/inputs/input1"));
        assert_eq!(
            r["filterToCloud"],
            "FROM /messages/modules/filter/outputs/output1 INTO $upstream"
        );
    }

    #[test]
    fn device_values_point_at_the_hub_on_loopback_and_keep_the_charts_security_contexts() {
        let inputs = ChartInputs {
            connection_string: "HostName=localhost;DeviceId=d;SharedAccessKey=k",
            mqtt_port: 21001,
            rest_port: 21000,
            hub_ca_pem: "PEM",
        };
        let v = device_values(&inputs);
        assert_eq!(v["hub"]["mqtt"], "127.0.0.1:21001");
        assert_eq!(v["hub"]["restUrl"], "https://127.0.0.1:21000");
        assert_eq!(
            v["provisioning"]["connectionString"],
            inputs.connection_string
        );
        assert!(v.get("podSecurityContext").is_none());
    }

    #[test]
    fn the_python_image_map_entry_is_a_valid_node_rule() {
        let text = python_image_map(
            Path::new("/venv/bin/python"),
            Path::new("/src/samples/filter-python/main.py"),
        );
        let map = ironedge_node::ImageMap::from_yaml(&text, "test").unwrap();
        let resolved = map.resolve(&FilterKind::Python.image(), &[], &[]).unwrap();
        assert_eq!(
            resolved.argv,
            ["/venv/bin/python", "/src/samples/filter-python/main.py"]
        );
        assert_eq!(resolved.env["PYTHONUNBUFFERED"], "1");
    }
}
