//! The RBAC rules the controller needs: a namespaced Role for a per-device controller, a
//! ClusterRole for one controller serving every namespace. Printed by `ironedge controller rbac`.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const WRITE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
const READ: &[&str] = &["get", "list", "watch"];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| (*r).to_string()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// Every permission the controller uses, and nothing more (no Secrets, no nodes).
pub fn rules() -> Vec<PolicyRule> {
    vec![
        rule("ironedge.io", &["edgedeployments"], READ),
        rule(
            "ironedge.io",
            &["edgedeployments/status"],
            &["get", "update", "patch"],
        ),
        rule("apps", &["deployments"], WRITE),
        rule("batch", &["jobs"], WRITE),
        rule(
            "",
            &["services", "serviceaccounts", "persistentvolumeclaims"],
            WRITE,
        ),
        rule("", &["pods"], READ),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        rule("", &["events"], &["create", "patch"]),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ),
    ]
}

/// Role for a controller confined to `namespace`.
pub fn role(namespace: &str, name: &str) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        rules: Some(rules()),
    }
}

/// Binds [`role`] to a ServiceAccount.
pub fn role_binding(namespace: &str, name: &str, service_account: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![subject(namespace, service_account)]),
    }
}

/// ClusterRole for one controller serving every namespace.
pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        rules: Some(rules()),
        aggregation_rule: None,
    }
}

/// Binds [`cluster_role`] to a ServiceAccount.
pub fn cluster_role_binding(
    name: &str,
    namespace: &str,
    service_account: &str,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: name.to_string(),
        },
        subjects: Some(vec![subject(namespace, service_account)]),
    }
}

fn subject(namespace: &str, service_account: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: service_account.to_string(),
        namespace: Some(namespace.to_string()),
        api_group: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_rules_never_touch_secrets_or_cluster_objects() {
        for rule in rules() {
            let resources = rule.resources.unwrap_or_default();
            assert!(
                !resources
                    .iter()
                    .any(|r| r == "secrets" || r == "nodes" || r == "namespaces")
            );
            assert!(!rule.verbs.iter().any(|v| v == "*"));
        }
    }
}
