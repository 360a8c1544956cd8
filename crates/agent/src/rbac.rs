//! What the agent may do in the cluster: a namespaced Role (the controller's rules plus what the
//! agent itself writes), and one cluster-scoped grant it cannot do without: `system:auth-delegator`
//! (create TokenReviews and SubjectAccessReviews — it reads and writes no object). Printed by
//! `ironedge agent rbac`, applied by the tests exactly as printed.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Default name of the agent's ServiceAccount, Role and RoleBinding.
pub const DEFAULT_NAME: &str = "ironedge-agent";

const WRITE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| (*r).to_string()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// The agent's namespaced rules: the controller's, plus EdgeDeployments, Secrets (keys, CA,
/// pull credentials), ConfigMaps (trust bundle), deleting pods (RestartModule) and pod logs.
pub fn rules() -> Vec<PolicyRule> {
    // The controller only reads EdgeDeployments; the agent writes them (rule below).
    let mut rules: Vec<PolicyRule> = ironedge_controller::rbac::rules()
        .into_iter()
        .filter(|r| r.resources.as_deref() != Some(&["edgedeployments".to_string()][..]))
        .collect();
    rules.extend([
        rule("ironedge.io", &["edgedeployments"], WRITE),
        rule("", &["secrets", "configmaps"], WRITE),
        rule("", &["pods"], &["get", "list", "watch", "delete"]),
        rule("", &["pods/log"], &["get"]),
    ]);
    rules
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(crate::labels::agent_labels("rbac")),
        ..ObjectMeta::default()
    }
}

fn subject(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: name.to_string(),
        namespace: Some(namespace.to_string()),
        api_group: None,
    }
}

/// The ServiceAccount the agent runs as.
pub fn service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, Some(namespace)),
        ..ServiceAccount::default()
    }
}

/// The agent's Role in the device namespace.
pub fn role(namespace: &str, name: &str) -> Role {
    Role {
        metadata: meta(name, Some(namespace)),
        rules: Some(rules()),
    }
}

/// Binds [`role`] to the agent's ServiceAccount.
pub fn role_binding(namespace: &str, name: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![subject(namespace, name)]),
    }
}

/// Lets the agent review the tokens workload callers present (and nothing else).
pub fn auth_delegator_binding(namespace: &str, name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(&format!("{name}:{namespace}:auth-delegator"), None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: "system:auth-delegator".to_string(),
        },
        subjects: Some(vec![subject(namespace, name)]),
    }
}

/// Every object above as YAML documents.
pub fn to_yaml(namespace: &str, name: &str) -> String {
    ironedge_controller::translate::to_yaml(&[
        serde_json::to_value(service_account(namespace, name)).unwrap_or_default(),
        serde_json::to_value(role(namespace, name)).unwrap_or_default(),
        serde_json::to_value(role_binding(namespace, name)).unwrap_or_default(),
        serde_json::to_value(auth_delegator_binding(namespace, name)).unwrap_or_default(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_never_grants_wildcards_or_cluster_objects() {
        for rule in rules() {
            assert!(!rule.verbs.iter().any(|v| v == "*"));
            let resources = rule.resources.unwrap_or_default();
            assert!(
                !resources
                    .iter()
                    .any(|r| r == "*" || r == "nodes" || r == "namespaces")
            );
        }
        let yaml = to_yaml("dev1", DEFAULT_NAME);
        let kinds: Vec<&str> = yaml.lines().filter(|l| l.starts_with("kind: ")).collect();
        assert_eq!(
            kinds,
            [
                "kind: ServiceAccount",
                "kind: Role",
                "kind: RoleBinding",
                "kind: ClusterRoleBinding"
            ]
        );
        assert!(yaml.contains("system:auth-delegator"));
        let ed_rules = rules()
            .into_iter()
            .filter(|r| r.resources.iter().flatten().any(|x| x == "edgedeployments"))
            .count();
        assert_eq!(ed_rules, 1, "one rule for EdgeDeployments");
    }
}
