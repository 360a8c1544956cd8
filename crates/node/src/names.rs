//! Short, stable names for what the node creates on the host (network namespaces, veths,
//! bridges), derived from the node name and pod UIDs so that leftovers of a crashed node can be
//! found and removed by prefix.

use sha2::{Digest, Sha256};

fn short_hash(input: &str, len: usize) -> String {
    let digest = Sha256::digest(input.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(len)
        .collect()
}

/// Host names derived from one node's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNames {
    node_hash: String,
}

impl HostNames {
    /// Names for the node called `node_name`.
    pub fn new(node_name: &str) -> Self {
        Self {
            node_hash: short_hash(node_name, 8),
        }
    }

    /// Names for the node whose name hashes to `node_hash` (found in a leftover's name).
    pub fn from_hash(node_hash: &str) -> Self {
        Self {
            node_hash: node_hash.to_string(),
        }
    }

    /// The short hash of the node name that all of its host names carry.
    pub fn node_hash(&self) -> &str {
        &self.node_hash
    }

    /// The node hash in a namespace or bridge name of any node, if it is one of ours.
    pub fn hash_in(name: &str) -> Option<&str> {
        let hash = match name.strip_prefix("ie-") {
            Some(rest) => rest.split('-').next()?,
            None => name.strip_prefix("iebr")?,
        };
        (hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit())).then_some(hash)
    }

    /// The node's bridge (at most 15 characters, the Linux interface name limit).
    pub fn bridge(&self) -> String {
        format!("iebr{}", self.node_hash)
    }

    /// Prefix of every network namespace of this node.
    pub fn netns_prefix(&self) -> String {
        format!("ie-{}-", self.node_hash)
    }

    /// The network namespace of a pod.
    pub fn netns(&self, pod_uid: &str) -> String {
        format!("{}{}", self.netns_prefix(), short_hash(pod_uid, 12))
    }

    /// The host end of a pod's veth pair (at most 15 characters).
    pub fn veth(&self, pod_uid: &str) -> String {
        format!(
            "ie{}",
            short_hash(&format!("{}/{pod_uid}", self.node_hash), 12)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit_and_are_stable() {
        let n = HostNames::new("a-very-long-node-name-that-goes-on");
        assert!(n.bridge().len() <= 15);
        assert!(n.veth("8f0c7e1a-0000-4000-8000-000000000000").len() <= 15);
        assert_eq!(
            n.netns("u1"),
            HostNames::new("a-very-long-node-name-that-goes-on").netns("u1")
        );
        assert!(n.netns("u1").starts_with(&n.netns_prefix()));
        assert_ne!(n.veth("u1"), HostNames::new("other").veth("u1"));
        assert_eq!(HostNames::hash_in(&n.netns("u1")), Some(n.node_hash()));
        assert_eq!(HostNames::hash_in(&n.bridge()), Some(n.node_hash()));
        assert_eq!(HostNames::hash_in("ie-zz-1"), None);
        assert_eq!(HostNames::from_hash(n.node_hash()), n);
    }
}
