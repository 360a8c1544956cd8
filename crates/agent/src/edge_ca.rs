//! The device's edge CA as the workload API sees it: the trust bundle, and server and identity
//! certificates for modules, issued only for names the asking module may use.
//!
//! **Name policy.** A module gets server certificates only for its own Service names
//! (`<name>`, `<name>.<ns>`, `<name>.<ns>.svc`, `<name>.<ns>.svc.cluster.local`); `$edgeHub` also
//! for the gateway host names modules and leaf devices dial. Without this rule any module could
//! obtain a certificate for `edgehub` and impersonate the edge hub to its neighbours. Identity
//! certificates always carry the module's own id.
//!
//! **Rotation** is staged so that clients never see a certificate they cannot verify: a new CA
//! is generated when a third of the old one's lifetime is left and published in the trust bundle
//! at once, but leaves are still signed by the old CA until its remaining life is shorter than a
//! leaf's; then the new CA signs and the old root stays in the bundle until it expires.
//! [`CaState`] holds that state; `certificates` does the I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use ironedge_pki::CertificateAuthority;
use ironedge_workload::{
    CertError, CertKind, CertificateIssuer, CertificateRequest, IssuedCertificate,
};
use jiff::Timestamp;

/// The CAs of the device.
#[derive(Debug)]
pub struct CaState {
    /// The CA that signs leaves now.
    pub signing: CertificateAuthority,
    /// A newer CA already in the trust bundle, not yet signing.
    pub next: Option<CertificateAuthority>,
    /// Roots of earlier CAs, kept in the bundle until they expire (PEM).
    pub previous_roots: Vec<String>,
    /// True when the agent generated the CA (and so may rotate it).
    pub generated: bool,
}

impl CaState {
    /// The trust bundle: the signing root, the next root and the still-valid previous roots.
    pub fn trust_bundle(&self, now: Timestamp) -> String {
        let mut roots = vec![self.signing.root_pem()];
        if let Some(next) = &self.next {
            roots.push(next.root_pem());
        }
        roots.extend(
            self.previous_roots
                .iter()
                .filter(|pem| ironedge_pki::not_after(pem).is_ok_and(|t| t > now))
                .cloned(),
        );
        let mut out = String::new();
        for root in roots {
            if !out.contains(root.trim()) {
                out.push_str(root.trim());
                out.push('\n');
            }
        }
        out
    }
}

/// Which names each module may put in a server certificate.
#[derive(Debug, Clone, Default)]
pub struct NamePolicy {
    /// The device namespace.
    pub namespace: String,
    /// Names the edge hub may also use (gateway host names, extra names).
    pub edgehub_names: Vec<String>,
    /// Module id → object (Service) name, from the current deployment.
    pub modules: BTreeMap<String, String>,
}

/// The Service names of an object in `namespace`.
pub fn service_names(name: &str, namespace: &str) -> Vec<String> {
    vec![
        name.to_string(),
        format!("{name}.{namespace}"),
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ]
}

impl NamePolicy {
    /// The names `module_id` may use in a server certificate.
    pub fn allowed(&self, module_id: &str) -> Vec<String> {
        let object = self
            .modules
            .get(module_id)
            .cloned()
            .unwrap_or_else(|| ironedge_controller::names::module_object_name(module_id));
        let mut names = service_names(&object, &self.namespace);
        if module_id == crate::identities::EDGE_HUB {
            names.extend(self.edgehub_names.iter().cloned());
        }
        names
    }

    /// Refuses a request naming anything the module may not use.
    pub fn check(&self, request: &CertificateRequest) -> Result<(), CertError> {
        if request.kind == CertKind::Identity {
            return if request.common_name == request.module_id {
                Ok(())
            } else {
                Err(CertError::Invalid(format!(
                    "an identity certificate of module {:?} must name it, not {:?}",
                    request.module_id, request.common_name
                )))
            };
        }
        let allowed = self.allowed(&request.module_id);
        let refused: Vec<&String> = std::iter::once(&request.common_name)
            .chain(&request.subject_alt_names)
            .filter(|n| !allowed.iter().any(|a| a.eq_ignore_ascii_case(n)))
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(CertError::Invalid(format!(
                "module {:?} may not have a server certificate for {refused:?}; its names are {allowed:?}",
                request.module_id
            )))
        }
    }
}

/// The edge CA behind the workload API's certificate routes.
#[derive(Debug)]
pub struct EdgeCa {
    state: RwLock<Arc<CaState>>,
    policy: RwLock<NamePolicy>,
    /// Longest lifetime of a certificate issued to a module.
    max_validity: jiff::SignedDuration,
}

impl EdgeCa {
    /// Wraps `state`, issuing under `policy`, leaves living at most `max_validity`.
    pub fn new(state: CaState, policy: NamePolicy, max_validity: jiff::SignedDuration) -> Self {
        Self {
            state: RwLock::new(Arc::new(state)),
            policy: RwLock::new(policy),
            max_validity,
        }
    }

    /// The current state.
    pub fn state(&self) -> Arc<CaState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the state (after a rotation).
    pub fn set_state(&self, state: CaState) {
        match self.state.write() {
            Ok(mut s) => *s = Arc::new(state),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(state),
        }
    }

    /// Updates the module → Service name map from a new deployment.
    pub fn set_modules(&self, modules: BTreeMap<String, String>) {
        match self.policy.write() {
            Ok(mut p) => p.modules = modules,
            Err(poisoned) => poisoned.into_inner().modules = modules,
        }
    }

    fn policy(&self) -> NamePolicy {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Issues a certificate without the name policy (the agent's own certificates).
    pub fn issue_unchecked(
        &self,
        kind: CertKind,
        names: &[&str],
        not_after: Timestamp,
    ) -> Result<ironedge_pki::IssuedCertificate, ironedge_pki::Error> {
        let state = self.state();
        match kind {
            CertKind::Server => state.signing.issue_server(names, not_after),
            CertKind::Identity => state
                .signing
                .issue_client(names.first().copied().unwrap_or("identity"), not_after),
        }
    }
}

impl CertificateIssuer for EdgeCa {
    fn trust_bundle(&self) -> BoxFuture<'_, Result<String, CertError>> {
        let bundle = self.state().trust_bundle(Timestamp::now());
        Box::pin(async move { Ok(bundle) })
    }

    fn issue(
        &self,
        request: CertificateRequest,
    ) -> BoxFuture<'_, Result<IssuedCertificate, CertError>> {
        let result = (|| {
            self.policy().check(&request)?;
            let latest = Timestamp::now()
                .checked_add(self.max_validity)
                .map_err(|e| CertError::Invalid(e.to_string()))?;
            let not_after = request.not_after.min(latest);
            let mut names: Vec<&str> = vec![request.common_name.as_str()];
            names.extend(
                request
                    .subject_alt_names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| *n != request.common_name),
            );
            let issued = self
                .issue_unchecked(request.kind, &names, not_after)
                .map_err(|e| CertError::Invalid(e.to_string()))?;
            tracing::info!(module = %request.module_id, kind = ?request.kind, "issued a module certificate");
            Ok(IssuedCertificate {
                certificate_pem: issued.chain_pem,
                private_key_pem: issued.key_pem,
                not_after: issued.not_after,
            })
        })();
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn ca(cn: &str, days: i64) -> CertificateAuthority {
        CertificateAuthority::new_root(cn, Timestamp::now() + SignedDuration::from_hours(24 * days))
            .unwrap()
    }

    fn edge_ca() -> EdgeCa {
        let policy = NamePolicy {
            namespace: "dev1".into(),
            edgehub_names: vec!["gateway.example.net".into()],
            modules: BTreeMap::from([
                ("$edgeHub".into(), "edgehub".into()),
                ("sensor".into(), "sensor".into()),
            ]),
        };
        EdgeCa::new(
            CaState {
                signing: ca("device ca", 30),
                next: None,
                previous_roots: vec![],
                generated: true,
            },
            policy,
            SignedDuration::from_hours(24),
        )
    }

    fn request(kind: CertKind, module: &str, cn: &str, sans: &[&str]) -> CertificateRequest {
        CertificateRequest {
            kind,
            module_id: module.into(),
            common_name: cn.into(),
            subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
            not_after: Timestamp::now() + SignedDuration::from_hours(24 * 365),
        }
    }

    #[tokio::test]
    async fn the_edge_hub_gets_its_service_and_gateway_names() {
        let ca = edge_ca();
        let issued = ca
            .issue(request(
                CertKind::Server,
                "$edgeHub",
                "edgehub",
                &["edgehub.dev1.svc", "gateway.example.net"],
            ))
            .await
            .unwrap();
        assert!(issued.not_after <= Timestamp::now() + SignedDuration::from_hours(25));
        let bundle = ca.trust_bundle().await.unwrap();
        let tls = ironedge_pki::client_config(&bundle, None);
        assert!(tls.is_ok());
    }

    #[tokio::test]
    async fn a_module_cannot_get_a_certificate_for_the_edge_hub_or_another_module() {
        let ca = edge_ca();
        for (module, cn) in [
            ("sensor", "edgehub"),
            ("sensor", "gateway.example.net"),
            ("sensor", "other"),
        ] {
            let err = ca
                .issue(request(CertKind::Server, module, cn, &[]))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("may not"), "{module} {cn}: {err}");
        }
        let sneaky = request(CertKind::Server, "sensor", "sensor", &["edgehub.dev1.svc"]);
        assert!(ca.issue(sneaky).await.is_err());
        assert!(
            ca.issue(request(CertKind::Server, "sensor", "sensor.dev1.svc", &[]))
                .await
                .is_ok()
        );
        assert!(
            ca.issue(request(CertKind::Identity, "sensor", "other", &[]))
                .await
                .is_err()
        );
    }

    #[test]
    fn the_bundle_keeps_next_and_unexpired_previous_roots() {
        let old = ca("old", 10);
        let expired = CertificateAuthority::new_root(
            "gone",
            Timestamp::now() - SignedDuration::from_hours(1),
        );
        let state = CaState {
            signing: ca("now", 30),
            next: Some(ca("next", 60)),
            previous_roots: vec![
                old.root_pem(),
                expired.map(|c| c.root_pem()).unwrap_or_default(),
            ],
            generated: true,
        };
        let bundle = state.trust_bundle(Timestamp::now());
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
    }
}
