//! Prometheus metrics of the agent (`ironedge_agent_*`), served beside the controller's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming a module identity's link.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabels {
    /// `$edgeAgent` or `$edgeHub`.
    pub identity: String,
}

/// Labels naming a failure kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// [`crate::Error::metric_label`] or a short reason.
    pub reason: String,
}

/// Labels of the direct-method counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// Method name, lower-cased (`ping`, `restartmodule`, …).
    pub method: String,
    /// Answer status.
    pub status: String,
}

/// Labels naming a certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// `edge-ca`, `edge-ca-next`, `edgehub-server` or `workload-server`.
    pub certificate: String,
}

/// Labels of the workload authorisation counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `allowed` or `denied`.
    pub result: String,
    /// `cache`, `review` or the refusal kind.
    pub via: String,
}

/// Every metric of the agent.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the identity's MQTT link is connected.
    pub connected: Family<IdentityLabels, Gauge>,
    /// `$version` of the last desired properties processed, per twin.
    pub last_desired_version: Family<IdentityLabels, Gauge>,
    /// `lastDesiredStatus.code` of the last desired properties processed, per twin.
    pub last_desired_status: Family<IdentityLabels, Gauge>,
    /// Desired-state syncs run (full twin pulls and patches applied to the cluster).
    pub syncs: Counter,
    /// Failed syncs, by reason (invalid manifest, kube, registry, …).
    pub sync_errors: Family<ReasonLabels, Counter>,
    /// Reported-property patches sent.
    pub reported_patches: Counter,
    /// Direct method calls answered.
    pub methods: Family<MethodLabels, Counter>,
    /// Expiry of the device's certificates, Unix seconds.
    pub certificate_expiry: Family<CertificateLabels, Gauge>,
    /// Certificates rotated.
    pub certificate_rotations: Family<CertificateLabels, Counter>,
    /// Workload API caller checks.
    pub workload_auth: Family<AuthLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ironedge_agent");
        let connected = Family::<IdentityLabels, Gauge>::default();
        let last_desired_version = Family::<IdentityLabels, Gauge>::default();
        let last_desired_status = Family::<IdentityLabels, Gauge>::default();
        let syncs = Counter::default();
        let sync_errors = Family::<ReasonLabels, Counter>::default();
        let reported_patches = Counter::default();
        let methods = Family::<MethodLabels, Counter>::default();
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        let certificate_rotations = Family::<CertificateLabels, Counter>::default();
        let workload_auth = Family::<AuthLabels, Counter>::default();
        registry.register(
            "upstream_connected",
            "1 while the identity's link to the hub is connected",
            connected.clone(),
        );
        registry.register(
            "last_desired_version",
            "$version of the last desired properties processed",
            last_desired_version.clone(),
        );
        registry.register(
            "last_desired_status_code",
            "lastDesiredStatus.code of the last desired properties processed",
            last_desired_status.clone(),
        );
        registry.register("syncs", "Desired-state syncs applied", syncs.clone());
        registry.register(
            "sync_errors",
            "Failed desired-state syncs by reason",
            sync_errors.clone(),
        );
        registry.register(
            "reported_patches",
            "Reported-property patches sent",
            reported_patches.clone(),
        );
        registry.register(
            "direct_methods",
            "Direct method calls answered",
            methods.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry of the device's certificates",
            certificate_expiry.clone(),
        );
        registry.register(
            "certificate_rotations",
            "Certificates rotated",
            certificate_rotations.clone(),
        );
        registry.register(
            "workload_auth",
            "Workload API caller checks",
            workload_auth.clone(),
        );
        Self {
            registry,
            connected,
            last_desired_version,
            last_desired_status,
            syncs,
            sync_errors,
            reported_patches,
            methods,
            certificate_expiry,
            certificate_rotations,
            workload_auth,
        }
    }
}

impl Metrics {
    /// Counts a failed sync.
    pub fn sync_error(&self, reason: &str) {
        self.sync_errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Records a certificate's expiry.
    pub fn certificate(&self, name: &str, not_after: jiff::Timestamp) {
        self.certificate_expiry
            .get_or_create(&CertificateLabels {
                certificate: name.to_string(),
            })
            .set(not_after.as_second());
    }

    /// Counts a workload caller check.
    pub fn auth(&self, allowed: bool, via: &str) {
        self.workload_auth
            .get_or_create(&AuthLabels {
                result: if allowed { "allowed" } else { "denied" }.to_string(),
                via: via.to_string(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format, without the final `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}
