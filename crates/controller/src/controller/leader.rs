//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it (kube 5 has none).
//!
//! The holder renews the Lease every `renew_every`. A contender takes over only after it has seen
//! the same holder and renew time for longer than the lease duration, measured on its own clock,
//! so clock skew between nodes does not matter. Writes use the Lease's resourceVersion, so two
//! contenders cannot both win. On shutdown the holder releases the Lease for a fast hand-over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Error, Result};

/// Where the Lease lives and how long it lasts.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// How long a holder stays leader without renewing.
    pub duration: Duration,
    /// How often the holder renews (and a contender retries).
    pub renew_every: Duration,
}

/// Another instance's (identity, renew time), as last seen.
type HolderRecord = (Option<String>, Option<MicroTime>);

/// Acquires, renews and releases the Lease.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The other holder's record and when this instance first saw it.
    observed: Option<(HolderRecord, Instant)>,
}

impl LeaderElector {
    /// An elector for `settings`.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    /// Waits until this instance holds the Lease.
    pub async fn acquire(&mut self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "leader election attempt failed; retrying")
                }
            }
            tokio::time::sleep(self.settings.renew_every).await;
        }
    }

    /// Renews until the Lease is lost, then returns the reason.
    pub async fn hold(&mut self) -> Error {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_every).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return Error::LeadershipLost(self.settings.name.clone()),
                Err(err) if renewed.elapsed() < self.settings.duration => {
                    tracing::warn!(error = %err, "cannot renew the leader lease; retrying");
                }
                Err(_) => return Error::LeadershipLost(self.settings.name.clone()),
            }
        }
    }

    /// Gives the Lease up, so that a standby takes over at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        if let Err(err) = self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %err, "cannot release the leader lease");
        }
    }

    /// One attempt: true when this instance holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.settings.duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.settings.identity.as_str());
        if !mine {
            let record = (spec.holder_identity.clone(), spec.renew_time.clone());
            let seen_at = match &self.observed {
                Some((seen, at)) if *seen == record => *at,
                _ => {
                    self.observed = Some((record, Instant::now()));
                    Instant::now()
                }
            };
            let their_duration = spec
                .lease_duration_seconds
                .map_or(self.settings.duration, |s| {
                    Duration::from_secs(u64::try_from(s).unwrap_or(0))
                });
            let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !vacant && seen_at.elapsed() <= their_duration {
                return Ok(false);
            }
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(now);
        conflict_is_false(
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease)
                .await,
        )
    }
}

/// A 409 means another instance wrote first: not leader this time, not an error.
fn conflict_is_false(result: kube::Result<Lease>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err.into()),
    }
}
