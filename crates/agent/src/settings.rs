//! Everything the agent is told at start, as plain values (the CLI builds them from flags).

use std::net::SocketAddr;
use std::time::Duration;

use crate::provisioning::DeviceCredentials;

/// Default socket path modules see as `IOTEDGE_WORKLOADURI` (served by the per-pod sidecar).
pub const DEFAULT_WORKLOAD_URI: &str = "unix:///var/run/iotedge/workload.sock";
/// Workload API version handed to modules as `IOTEDGE_APIVERSION`.
pub const DEFAULT_WORKLOAD_API_VERSION: &str = "2020-07-07";
/// Audience of the projected ServiceAccount tokens the workload proxy presents.
pub const DEFAULT_WORKLOAD_AUDIENCE: &str = "ironedge-workload";

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The device namespace (the agent acts only here).
    pub namespace: String,
    /// The device's identity in the hub.
    pub device: DeviceCredentials,
    /// Where the hub is.
    pub hub: HubEndpoints,
    /// Name of the EdgeDeployment the agent writes.
    pub edge_deployment: String,
    /// The workload API.
    pub workload: WorkloadSettings,
    /// The edge CA and the certificates it issues.
    pub certificates: CertificateSettings,
    /// `IOTEDGE_GATEWAYHOSTNAME` for modules; default: the edge hub's Service name.
    pub gateway_host_name: Option<String>,
    /// Timings of the cloud link and reporting.
    pub timing: Timing,
    /// Run the controller (per-namespace mode) inside the agent.
    pub run_controller: bool,
    /// Period of the controller's safety-net reconcile.
    pub controller_resync: Duration,
    /// Name of the agent's own pod, for `GetModuleLogs` of `edgeAgent` and event sources.
    pub pod_name: Option<String>,
}

/// The hub's two heads.
#[derive(Debug, Clone)]
pub struct HubEndpoints {
    /// MQTT over TLS host (a DNS name or IP; also the TLS server name).
    pub mqtt_host: String,
    /// MQTT over TLS port (8883 on IoT Hub).
    pub mqtt_port: u16,
    /// Base URL of the REST API (`https://{HostName}` on IoT Hub).
    pub rest_url: String,
    /// PEM bundle of the CAs the hub's certificate chains to.
    pub trust_pem: String,
}

/// Where and how the workload API is served.
#[derive(Debug, Clone)]
pub struct WorkloadSettings {
    /// TLS listener of the agent's workload API (the sidecars connect here).
    pub listen: SocketAddr,
    /// `IOTEDGE_WORKLOADURI` for modules.
    pub module_uri: String,
    /// `IOTEDGE_APIVERSION` for modules.
    pub api_version: String,
    /// Image of the workload proxy sidecar; `None` leaves module pods without one (then modules
    /// cannot reach the workload API unless something else provides `module_uri`).
    pub proxy_image: Option<String>,
    /// URL of the agent's workload API as the sidecars dial it.
    pub agent_url: String,
    /// Audience the sidecars' projected tokens carry.
    pub audience: String,
    /// Extra DNS names or IPs for the agent's workload server certificate.
    pub server_names: Vec<String>,
    /// How long a successful TokenReview is trusted for the same token.
    pub review_cache_ttl: Duration,
}

/// The edge CA.
#[derive(Debug, Clone)]
pub struct CertificateSettings {
    /// A `kubernetes.io/tls` Secret holding the device CA (`tls.crt` chain, `tls.key`); `None`
    /// generates one and keeps it in `ironedge-edge-ca`.
    pub ca_secret: Option<String>,
    /// Lifetime of a generated device CA.
    pub ca_validity: Duration,
    /// Lifetime of the edge hub server and workload server certificates.
    pub server_validity: Duration,
    /// Renew a certificate when less than this fraction of its lifetime is left.
    pub renew_fraction: f64,
    /// How often expiry is checked.
    pub check_interval: Duration,
    /// Extra names for the edge hub's server certificate (beside its Service names and the
    /// gateway host name).
    pub edgehub_names: Vec<String>,
}

/// Timings.
#[derive(Debug, Clone)]
pub struct Timing {
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Lifetime of the SAS tokens the agent signs for its MQTT connections.
    pub token_ttl: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Timeout of one twin request.
    pub operation_timeout: Duration,
    /// Quiet time before a desired change is applied (both twins of a deployment arrive apart).
    pub desired_debounce: Duration,
    /// Quiet time before reported properties are sent.
    pub report_debounce: Duration,
    /// Full twin refresh period (IoT Edge's `ConfigRefreshFrequencySecs`).
    pub refresh_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30),
            desired_debounce: Duration::from_millis(500),
            report_debounce: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(3600),
        }
    }
}

impl Default for CertificateSettings {
    fn default() -> Self {
        Self {
            ca_secret: None,
            ca_validity: Duration::from_secs(365 * 24 * 3600),
            server_validity: Duration::from_secs(30 * 24 * 3600),
            renew_fraction: 1.0 / 3.0,
            check_interval: Duration::from_secs(60),
            edgehub_names: Vec::new(),
        }
    }
}

impl WorkloadSettings {
    /// Defaults for a namespace: listen on all addresses, sidecars dial the agent's Service.
    pub fn for_namespace(namespace: &str) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 15581)),
            module_uri: DEFAULT_WORKLOAD_URI.to_string(),
            api_version: DEFAULT_WORKLOAD_API_VERSION.to_string(),
            proxy_image: None,
            agent_url: format!("https://ironedge-agent.{namespace}.svc:15581"),
            audience: DEFAULT_WORKLOAD_AUDIENCE.to_string(),
            server_names: Vec::new(),
            review_cache_ttl: Duration::from_secs(30),
        }
    }
}
