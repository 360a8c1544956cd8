//! Kubernetes caller authentication for the workload API.
//!
//! The workload proxy sidecar of a module pod forwards every request with the pod's projected
//! ServiceAccount token (audience [`crate::settings::DEFAULT_WORKLOAD_AUDIENCE`], expiring, bound
//! to the pod). The agent asks the API server to review it (`TokenReview` with that audience, so a
//! token minted for any other audience, such as the API server's own, is refused) and then
//! requires the reviewed user to be `system:serviceaccount:<device namespace>:<module's
//! ServiceAccount>`, where the ServiceAccount is the one the controller made for the module named
//! in the URL. Namespace *and* ServiceAccount must match, so a module of another device (another
//! namespace) with a ServiceAccount of the same name is refused.
//!
//! Successful reviews are cached for a short time (keyed by a SHA-256 of the token, never the
//! token itself), and never beyond the token's own `exp`; refusals are not cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::future::BoxFuture;
use ironedge_workload::{Caller, CallerAuth, Denied};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// The ServiceAccount a reviewed token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountUser {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Parses `system:serviceaccount:<namespace>:<name>`.
pub fn parse_username(username: &str) -> Option<ServiceAccountUser> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccountUser {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// The `exp` claim of a JWT, read without verifying (only to bound the cache; the API server
/// verifies the token).
pub fn token_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

/// Decides whether `user` may act as the module whose ServiceAccount is `expected`.
pub fn check_user(
    user: &ServiceAccountUser,
    namespace: &str,
    expected: Option<&str>,
    module_id: &str,
) -> Result<(), Denied> {
    if user.namespace != namespace {
        return Err(Denied(format!(
            "token of ServiceAccount {}/{} is from another namespace than the device's {namespace:?}",
            user.namespace, user.name
        )));
    }
    match expected {
        Some(sa) if sa == user.name => Ok(()),
        Some(sa) => Err(Denied(format!(
            "ServiceAccount {:?} may not act as module {module_id:?} (its ServiceAccount is {sa:?})",
            user.name
        ))),
        None => Err(Denied(format!(
            "module {module_id:?} is not part of the device's deployment"
        ))),
    }
}

struct Cached {
    user: ServiceAccountUser,
    until: Instant,
}

/// Reviews tokens with the API server and maps them to modules.
pub struct TokenReviewAuth {
    reviews: Api<TokenReview>,
    namespace: String,
    audience: String,
    ttl: Duration,
    /// Module id → ServiceAccount name, from the current deployment.
    modules: RwLock<BTreeMap<String, String>>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for TokenReviewAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewAuth")
            .field("namespace", &self.namespace)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenReviewAuth {
    /// Reviews tokens for `audience`, accepting only ServiceAccounts of `namespace`.
    pub fn new(
        client: Client,
        namespace: &str,
        audience: &str,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            reviews: Api::all(client),
            namespace: namespace.to_string(),
            audience: audience.to_string(),
            ttl,
            modules: RwLock::new(BTreeMap::new()),
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Replaces the module id → ServiceAccount map (after a deployment change).
    pub fn set_modules(&self, modules: BTreeMap<String, String>) {
        match self.modules.write() {
            Ok(mut m) => *m = modules,
            Err(poisoned) => *poisoned.into_inner() = modules,
        }
    }

    fn expected(&self, module_id: &str) -> Option<String> {
        match self.modules.read() {
            Ok(m) => m.get(module_id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(module_id).cloned(),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<ServiceAccountUser> {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        cache.retain(|_, c| c.until > now);
        cache.get(key).map(|c| c.user.clone())
    }

    fn remember(&self, key: [u8; 32], user: ServiceAccountUser, token: &str) {
        let mut ttl = self.ttl;
        if let Some(exp) = token_expiry(token) {
            let left = exp.saturating_sub(jiff::Timestamp::now().as_second());
            ttl = ttl.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        }
        if ttl.is_zero() {
            return;
        }
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.insert(
            key,
            Cached {
                user,
                until: Instant::now() + ttl,
            },
        );
    }

    async fn review(&self, token: &str) -> Result<ServiceAccountUser, Denied> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let answer = self
            .reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Denied(format!("TokenReview failed: {e}")))?;
        let status = answer
            .status
            .ok_or_else(|| Denied("TokenReview answered without a status".into()))?;
        if status.authenticated != Some(true) {
            return Err(Denied(format!(
                "token not authenticated for audience {:?}: {}",
                self.audience,
                status.error.unwrap_or_default()
            )));
        }
        if !status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.audience))
        {
            return Err(Denied(format!(
                "token is not for audience {:?}",
                self.audience
            )));
        }
        let username = status
            .user
            .and_then(|u| u.username)
            .ok_or_else(|| Denied("TokenReview names no user".into()))?;
        parse_username(&username)
            .ok_or_else(|| Denied(format!("{username:?} is not a ServiceAccount")))
    }

    async fn authorize_token(&self, token: &str, module_id: &str) -> Result<(), Denied> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (user, via) = match self.cached(&key) {
            Some(user) => (user, "cache"),
            None => {
                let user = self.review(token).await?;
                self.remember(key, user.clone(), token);
                (user, "review")
            }
        };
        check_user(
            &user,
            &self.namespace,
            self.expected(module_id).as_deref(),
            module_id,
        )?;
        self.metrics.auth(true, via);
        Ok(())
    }
}

impl CallerAuth for TokenReviewAuth {
    fn authorize<'a>(
        &'a self,
        caller: &'a Caller,
        module_id: &'a str,
    ) -> BoxFuture<'a, Result<(), Denied>> {
        Box::pin(async move {
            let Some(token) = caller.bearer_token.as_deref().filter(|t| !t.is_empty()) else {
                self.metrics.auth(false, "no_token");
                return Err(Denied(
                    "no bearer token: the caller is not a module pod's workload proxy".into(),
                ));
            };
            let result = self.authorize_token(token, module_id).await;
            if let Err(denied) = &result {
                self.metrics.auth(false, "refused");
                tracing::warn!(module = module_id, reason = %denied, "workload API call refused");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames_parse_and_others_do_not() {
        assert_eq!(
            parse_username("system:serviceaccount:dev1:sensor"),
            Some(ServiceAccountUser {
                namespace: "dev1".into(),
                name: "sensor".into()
            })
        );
        for bad in [
            "admin",
            "system:serviceaccount:dev1",
            "system:serviceaccount::x",
            "system:serviceaccount:a:b:c",
            "system:node:n1",
        ] {
            assert_eq!(parse_username(bad), None, "{bad}");
        }
    }

    #[test]
    fn namespace_and_service_account_must_both_match() {
        let user = |ns: &str, name: &str| ServiceAccountUser {
            namespace: ns.into(),
            name: name.into(),
        };
        assert!(check_user(&user("dev1", "sensor"), "dev1", Some("sensor"), "sensor").is_ok());
        assert!(check_user(&user("dev2", "sensor"), "dev1", Some("sensor"), "sensor").is_err());
        assert!(check_user(&user("dev1", "filter"), "dev1", Some("sensor"), "sensor").is_err());
        assert!(check_user(&user("dev1", "sensor"), "dev1", None, "ghost").is_err());
    }

    #[test]
    fn the_expiry_is_read_from_the_token_payload() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{}.{}.sig",
            b64.encode(br#"{"alg":"RS256"}"#),
            b64.encode(br#"{"exp":1700000000,"sub":"x"}"#)
        );
        assert_eq!(token_expiry(&token), Some(1_700_000_000));
        assert_eq!(token_expiry("not-a-jwt"), None);
    }
}
