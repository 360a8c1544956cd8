//! The edge CA's I/O: the CA in a Secret (generated, or given by the operator), the trust bundle
//! ConfigMap modules and sidecars mount, the edge hub's `kubernetes.io/tls` Secret, the agent's own
//! workload server certificate, and a loop that rotates all of them before they expire (see
//! [`crate::edge_ca`] for the staged CA rotation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ironedge_pki::CertificateAuthority;
use ironedge_workload::CertKind;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::edge_ca::{CaState, EdgeCa, NamePolicy, service_names};
use crate::error::{Error, Result};
use crate::events::Events;
use crate::labels::{self, EDGE_CA_SECRET, EDGEHUB_TLS_SECRET, TRUST_BUNDLE_CONFIG_MAP};
use crate::metrics::Metrics;
use crate::settings::CertificateSettings;
use crate::tls::ReloadableCert;

/// Key of the trust bundle in its ConfigMap.
pub const TRUST_BUNDLE_KEY: &str = ironedge_controller::translate::workload_proxy::TRUST_BUNDLE_KEY;
/// Name of the agent's Service (the sidecars dial it).
pub const AGENT_SERVICE: &str = "ironedge-agent";
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
const PREVIOUS: &str = "previous.crt";

fn to_signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Everything about the device's certificates.
pub struct Certificates {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
    settings: CertificateSettings,
    /// The CA behind the workload API.
    pub ca: Arc<EdgeCa>,
    /// The agent's workload server certificate.
    pub workload_tls: Arc<ReloadableCert>,
    workload_names: Vec<String>,
    edgehub_names: Vec<String>,
    workload_expiry: std::sync::Mutex<Timestamp>,
    metrics: Arc<Metrics>,
    events: Events,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
}

impl Certificates {
    /// Loads or creates the CA, publishes the trust bundle and makes sure the edge hub and the
    /// workload server have current certificates.
    pub async fn start(
        client: Client,
        namespace: &str,
        settings: CertificateSettings,
        policy: NamePolicy,
        workload_names: Vec<String>,
        metrics: Arc<Metrics>,
        events: Events,
    ) -> Result<Self> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let config_maps: Api<ConfigMap> = Api::namespaced(client, namespace);
        let state = load_or_create(&secrets, &settings).await?;
        let edgehub_names = {
            let mut names = service_names("edgehub", namespace);
            names.extend(policy.edgehub_names.iter().cloned());
            names.dedup();
            names
        };
        let ca = Arc::new(EdgeCa::new(
            state,
            policy,
            to_signed(settings.server_validity),
        ));
        let not_after = Timestamp::now() + to_signed(settings.server_validity);
        let names: Vec<&str> = workload_names.iter().map(String::as_str).collect();
        let issued = ca.issue_unchecked(CertKind::Server, &names, not_after)?;
        let workload_tls = ReloadableCert::new(&issued.chain_pem, &issued.key_pem)?;
        let this = Self {
            secrets,
            config_maps,
            settings,
            ca,
            workload_tls,
            workload_names,
            edgehub_names,
            workload_expiry: std::sync::Mutex::new(issued.not_after),
            metrics,
            events,
        };
        this.metrics
            .certificate("workload-server", issued.not_after);
        this.publish_trust_bundle().await?;
        this.ensure_edgehub_certificate(false).await?;
        this.record_ca_expiry();
        Ok(this)
    }

    fn record_ca_expiry(&self) {
        let state = self.ca.state();
        self.metrics
            .certificate("edge-ca", state.signing.not_after());
        if let Some(next) = &state.next {
            self.metrics.certificate("edge-ca-next", next.not_after());
        }
    }

    /// Writes the trust bundle ConfigMap.
    async fn publish_trust_bundle(&self) -> Result<()> {
        let bundle = self.ca.state().trust_bundle(Timestamp::now());
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(TRUST_BUNDLE_CONFIG_MAP.to_string()),
                labels: Some(labels::agent_labels("trust-bundle")),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(TRUST_BUNDLE_KEY.to_string(), bundle)])),
            ..ConfigMap::default()
        };
        self.config_maps
            .patch(
                TRUST_BUNDLE_CONFIG_MAP,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
        Ok(())
    }

    /// Issues the edge hub's server certificate when it is missing, expiring, not for the
    /// current names or (`force`) after a CA change.
    async fn ensure_edgehub_certificate(&self, force: bool) -> Result<bool> {
        let existing = match self.secrets.get_opt(EDGEHUB_TLS_SECRET).await? {
            Some(s) => secret_text(&s, "tls.crt").zip(secret_text(&s, "tls.key")),
            None => None,
        };
        let names_annotation = self.edgehub_names.join(",");
        let current = match &existing {
            Some((chain, _)) => {
                let expiry = ironedge_pki::not_after(chain).ok();
                let fresh = expiry.is_some_and(|t| !self.due(t, self.settings.server_validity));
                let same_names = self
                    .secrets
                    .get_opt(EDGEHUB_TLS_SECRET)
                    .await?
                    .and_then(|s| s.metadata.annotations)
                    .and_then(|a| a.get(NAMES_ANNOTATION).cloned())
                    .is_some_and(|n| n == names_annotation);
                if let Some(t) = expiry {
                    self.metrics.certificate("edgehub-server", t);
                }
                fresh && same_names
            }
            None => false,
        };
        if current && !force {
            return Ok(false);
        }
        let names: Vec<&str> = self.edgehub_names.iter().map(String::as_str).collect();
        let not_after = Timestamp::now() + to_signed(self.settings.server_validity);
        let issued = self
            .ca
            .issue_unchecked(CertKind::Server, &names, not_after)?;
        let bundle = self.ca.state().trust_bundle(Timestamp::now());
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(EDGEHUB_TLS_SECRET.to_string()),
                labels: Some(labels::agent_labels("edgehub-tls")),
                annotations: Some(BTreeMap::from([(
                    NAMES_ANNOTATION.to_string(),
                    names_annotation,
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(BTreeMap::from([
                (
                    "tls.crt".to_string(),
                    ByteString(issued.chain_pem.into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(issued.key_pem.into_bytes()),
                ),
                ("ca.crt".to_string(), ByteString(bundle.into_bytes())),
            ])),
            ..Secret::default()
        };
        self.secrets
            .patch(
                EDGEHUB_TLS_SECRET,
                &PatchParams::apply(labels::FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        self.metrics.certificate("edgehub-server", issued.not_after);
        if existing.is_some() {
            self.rotated("edgehub-server");
        }
        tracing::info!(not_after = %issued.not_after, "issued the edge hub's server certificate");
        Ok(true)
    }

    fn rotated(&self, which: &str) {
        self.metrics
            .certificate_rotations
            .get_or_create(&crate::metrics::CertificateLabels {
                certificate: which.to_string(),
            })
            .inc();
        self.events.normal(
            "CertificateRotated",
            "RotateCertificate",
            format!("renewed the {which} certificate before it expires"),
        );
    }

    /// True when less than the renewal fraction of `validity` is left before `not_after`.
    fn due(&self, not_after: Timestamp, validity: Duration) -> bool {
        let left = not_after.duration_since(Timestamp::now());
        left < to_signed(validity.mul_f64(self.settings.renew_fraction))
    }

    /// One rotation check; returns true when anything changed.
    pub async fn check(&self) -> Result<bool> {
        let mut state_changed = false;
        let state = self.ca.state();
        if state.generated {
            if state.next.is_none()
                && self.due(state.signing.not_after(), self.settings.ca_validity)
            {
                let next = new_ca(&self.settings)?;
                let new = CaState {
                    signing: clone_ca(&state.signing)?,
                    next: Some(next),
                    previous_roots: state.previous_roots.clone(),
                    generated: true,
                };
                save(&self.secrets, &new).await?;
                self.ca.set_state(new);
                state_changed = true;
                self.events.normal(
                    "CertificateRotated",
                    "RotateCertificate",
                    "generated the next device CA and added it to the trust bundle".to_string(),
                );
            } else if let Some(next) = &state.next {
                let left = state.signing.not_after().duration_since(Timestamp::now());
                if left < to_signed(self.settings.server_validity) {
                    let now = Timestamp::now();
                    let mut previous = state.previous_roots.clone();
                    previous.retain(|pem| ironedge_pki::not_after(pem).is_ok_and(|t| t > now));
                    previous.push(state.signing.root_pem());
                    let new = CaState {
                        signing: clone_ca(next)?,
                        next: None,
                        previous_roots: previous,
                        generated: true,
                    };
                    save(&self.secrets, &new).await?;
                    self.ca.set_state(new);
                    state_changed = true;
                    self.rotated("edge-ca");
                }
            }
        } else if self.due(state.signing.not_after(), self.settings.ca_validity) {
            self.events.warning(
                "CertificateExpiring",
                "RotateCertificate",
                format!(
                    "the device CA from Secret {:?} expires at {}; replace it (the agent cannot renew a CA it did not create)",
                    self.settings.ca_secret.as_deref().unwrap_or_default(),
                    state.signing.not_after()
                ),
            );
        }
        if state_changed {
            self.publish_trust_bundle().await?;
            self.record_ca_expiry();
        }
        let promoted = state_changed && self.ca.state().next.is_none();
        let edgehub = self.ensure_edgehub_certificate(promoted).await?;
        let workload = self.renew_workload_certificate(promoted)?;
        Ok(state_changed || edgehub || workload)
    }

    fn renew_workload_certificate(&self, force: bool) -> Result<bool> {
        let expiry = match self.workload_expiry.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        };
        if !force && !self.due(expiry, self.settings.server_validity) {
            return Ok(false);
        }
        let names: Vec<&str> = self.workload_names.iter().map(String::as_str).collect();
        let not_after = Timestamp::now() + to_signed(self.settings.server_validity);
        let issued = self
            .ca
            .issue_unchecked(CertKind::Server, &names, not_after)?;
        self.workload_tls
            .replace(&issued.chain_pem, &issued.key_pem)?;
        match self.workload_expiry.lock() {
            Ok(mut t) => *t = issued.not_after,
            Err(poisoned) => *poisoned.into_inner() = issued.not_after,
        }
        self.metrics
            .certificate("workload-server", issued.not_after);
        self.rotated("workload-server");
        Ok(true)
    }

    /// Checks every `check_interval` until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.settings.check_interval) => {}
            }
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "certificate rotation check failed; retrying");
                self.metrics.sync_error(e.metric_label());
            }
        }
    }
}

/// Annotation recording which names the edge hub certificate was issued for.
const NAMES_ANNOTATION: &str = "ironedge.io/certificate-names";

fn new_ca(settings: &CertificateSettings) -> Result<CertificateAuthority> {
    let cn = format!("ironedge device CA {}", Timestamp::now().as_second());
    Ok(CertificateAuthority::new_root(
        &cn,
        Timestamp::now() + to_signed(settings.ca_validity),
    )?)
}

/// A second handle on the same CA (the type holds a key pair and is not `Clone`).
fn clone_ca(ca: &CertificateAuthority) -> Result<CertificateAuthority> {
    Ok(CertificateAuthority::from_pem(
        &ca.chain_pem(),
        &ca.key_pem(),
    )?)
}

async fn load_or_create(secrets: &Api<Secret>, settings: &CertificateSettings) -> Result<CaState> {
    if let Some(name) = &settings.ca_secret {
        // The operator's Secret: the agent never rewrites it, so the remedy is theirs.
        let unusable = |reason: String| {
            Error::Provisioning(format!(
                "edge CA Secret {name:?} (--edge-ca-secret) {reason}; give it the CA chain and \
                 key as tls.crt and tls.key (`kubectl create secret tls {name} --cert=ca-chain.pem \
                 --key=ca-key.pem`), or leave the flag out and the agent generates a CA"
            ))
        };
        let secret = match secrets.get(name).await {
            Ok(secret) => secret,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(unusable("does not exist in the namespace".into()));
            }
            Err(e) => return Err(e.into()),
        };
        let chain = secret_text(&secret, "tls.crt")
            .or_else(|| secret_text(&secret, CA_CERT))
            .ok_or_else(|| unusable("has neither tls.crt nor ca.crt".into()))?;
        let key = secret_text(&secret, "tls.key")
            .or_else(|| secret_text(&secret, CA_KEY))
            .ok_or_else(|| unusable("has neither tls.key nor ca.key".into()))?;
        let signing = CertificateAuthority::from_pem(&chain, &key)
            .map_err(|e| unusable(format!("is not a usable CA: {e}")))?;
        return Ok(CaState {
            signing,
            next: None,
            previous_roots: Vec::new(),
            generated: false,
        });
    }
    if let Some(secret) = secrets.get_opt(EDGE_CA_SECRET).await? {
        let stored = |reason: String| Error::Stored {
            kind: "Secret",
            name: EDGE_CA_SECRET.to_string(),
            reason,
        };
        let chain = secret_text(&secret, CA_CERT).ok_or_else(|| stored("no ca.crt".into()))?;
        let key = secret_text(&secret, CA_KEY).ok_or_else(|| stored("no ca.key".into()))?;
        let signing =
            CertificateAuthority::from_pem(&chain, &key).map_err(|e| stored(e.to_string()))?;
        let next = match (
            secret_text(&secret, NEXT_CERT),
            secret_text(&secret, NEXT_KEY),
        ) {
            (Some(c), Some(k)) => Some(CertificateAuthority::from_pem(&c, &k)?),
            _ => None,
        };
        let previous_roots = secret_text(&secret, PREVIOUS)
            .map(|p| split_pem(&p))
            .unwrap_or_default();
        return Ok(CaState {
            signing,
            next,
            previous_roots,
            generated: true,
        });
    }
    let state = CaState {
        signing: new_ca(settings)?,
        next: None,
        previous_roots: Vec::new(),
        generated: true,
    };
    save(secrets, &state).await?;
    tracing::info!(not_after = %state.signing.not_after(), "generated the device CA");
    Ok(state)
}

async fn save(secrets: &Api<Secret>, state: &CaState) -> Result<()> {
    let mut data = BTreeMap::from([
        (
            CA_CERT.to_string(),
            ByteString(state.signing.chain_pem().into_bytes()),
        ),
        (
            CA_KEY.to_string(),
            ByteString(state.signing.key_pem().into_bytes()),
        ),
        (
            PREVIOUS.to_string(),
            ByteString(state.previous_roots.concat().into_bytes()),
        ),
    ]);
    if let Some(next) = &state.next {
        data.insert(
            NEXT_CERT.to_string(),
            ByteString(next.chain_pem().into_bytes()),
        );
        data.insert(
            NEXT_KEY.to_string(),
            ByteString(next.key_pem().into_bytes()),
        );
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(EDGE_CA_SECRET.to_string()),
            labels: Some(labels::agent_labels("edge-ca")),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    };
    // Apply replaces the whole data map we own, so a promoted `next` disappears.
    secrets
        .patch(
            EDGE_CA_SECRET,
            &PatchParams::apply(labels::FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Splits a PEM bundle into its certificates.
fn split_pem(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .map(str::trim)
        .filter(|c| c.starts_with("-----BEGIN CERTIFICATE-----"))
        .map(|c| format!("{c}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_split_into_their_certificates() {
        let a =
            CertificateAuthority::new_root("a", Timestamp::now() + SignedDuration::from_hours(1))
                .unwrap();
        let b =
            CertificateAuthority::new_root("b", Timestamp::now() + SignedDuration::from_hours(1))
                .unwrap();
        let parts = split_pem(&format!("{}{}", a.root_pem(), b.root_pem()));
        assert_eq!(parts, [a.root_pem(), b.root_pem()]);
        assert!(split_pem("").is_empty());
    }
}
