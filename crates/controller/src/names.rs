//! Kubernetes naming rules for module, volume and label names.
//!
//! Object names are lower-case DNS labels of at most 63 characters. A module id such as `$edgeHub`
//! or `tempSensor` becomes `edgehub` / `tempsensor`: dropping a leading `$` and lower-casing keep
//! the name readable. Any other change (`my_module` → `my-module`) or a name longer than 63
//! characters loses information, so a short stable hash of the original is appended
//! (`my-module-1a2b3c4d`): distinct originals keep distinct names, and the same original always
//! gets the same name. Lower-casing can still make two ids equal (`Sensor`, `sensor`); that is a
//! [`NameCollision`], reported and never merged. The original id is kept in an annotation.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Longest DNS label and label value.
pub const MAX_LEN: usize = 63;
const HASH_LEN: usize = 8;

/// Which naming rule a name must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// RFC 1035 label: `[a-z]([-a-z0-9]*[a-z0-9])?` (Service names).
    Dns1035,
    /// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (PVC and volume names).
    Dns1123,
}

/// The object name of a module: a DNS-1035 label, usable for Deployments, Services,
/// ServiceAccounts and containers alike.
pub fn module_object_name(module_id: &str) -> String {
    dns_label(module_id, Rule::Dns1035)
}

/// Sanitises `original` into a DNS label following `rule`, with a hash suffix when lossy.
pub fn dns_label(original: &str, rule: Rule) -> String {
    let readable = original
        .strip_prefix('$')
        .unwrap_or(original)
        .to_lowercase();
    let mut base: String = readable
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    base = base.trim_matches('-').to_string();
    if rule == Rule::Dns1035 && !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'm');
    }
    if !base.is_empty() && base == readable && base.len() <= MAX_LEN {
        return base;
    }
    with_hash(&base, original)
}

/// Sanitises `original` into a label value (`[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63
/// characters, case kept), with a hash suffix when lossy.
pub fn label_value(original: &str) -> String {
    let mapped: String = original
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if base == original && base.len() <= MAX_LEN {
        return base;
    }
    with_hash(&base, original)
}

/// `base` cut to leave room for `-<hash of original>`.
fn with_hash(base: &str, original: &str) -> String {
    let hash = short_hash(original);
    let keep = MAX_LEN - HASH_LEN - 1;
    let mut cut: String = base.chars().take(keep).collect();
    while cut.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        cut.pop();
    }
    if cut.is_empty() {
        // Still a valid DNS-1035 label: the hash may start with a digit.
        return format!("m-{hash}");
    }
    format!("{cut}-{hash}")
}

/// First 8 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Two different originals that map to the same Kubernetes name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameCollision {
    /// The shared Kubernetes name.
    pub name: String,
    /// The first original.
    pub first: String,
    /// The second original.
    pub second: String,
}

/// Maps each original to its name with `to_name`, and fails on the first two originals that share one.
pub fn unique_names<'a>(
    originals: impl IntoIterator<Item = &'a str>,
    to_name: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, String>, NameCollision> {
    let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for original in originals {
        let name = to_name(original);
        if let Some(first) = by_name.get(name.as_str()) {
            if *first != original {
                return Err(NameCollision {
                    name,
                    first: (*first).to_string(),
                    second: original.to_string(),
                });
            }
            continue;
        }
        by_name.insert(name.clone(), original);
        names.insert(original.to_string(), name);
    }
    Ok(names)
}

/// Whether `s` is a valid DNS label under `rule`.
pub fn is_dns_label(s: &str, rule: Rule) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let first_ok = match rule {
        Rule::Dns1035 => first.is_ascii_lowercase(),
        Rule::Dns1123 => first.is_ascii_lowercase() || first.is_ascii_digit(),
    };
    s.len() <= MAX_LEN
        && first_ok
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Whether `s` is a valid label value.
pub fn is_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let bytes = s.as_bytes();
    s.len() <= MAX_LEN
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn readable_module_ids_keep_their_name_without_hash() {
        assert_eq!(module_object_name("$edgeHub"), "edgehub");
        assert_eq!(module_object_name("tempSensor"), "tempsensor");
        assert_eq!(module_object_name("filter-1"), "filter-1");
    }

    #[test]
    fn lossy_module_ids_get_a_stable_hash_suffix() {
        let a = module_object_name("my_module");
        let b = module_object_name("my.module");
        assert!(a.starts_with("my-module-") && b.starts_with("my-module-"));
        assert_ne!(a, b);
        assert_eq!(a, module_object_name("my_module"));
        let digit = module_object_name("1sensor");
        assert!(digit.starts_with("m1sensor-"), "{digit}");
    }

    #[test]
    fn long_module_ids_are_cut_to_63_with_hash() {
        let long = "a".repeat(100);
        let name = module_object_name(&long);
        assert_eq!(name.len(), 63);
        assert!(is_dns_label(&name, Rule::Dns1035));
        assert_ne!(name, module_object_name(&"a".repeat(99)));
    }

    #[test]
    fn case_only_differences_are_collisions() {
        let err = unique_names(["Sensor", "sensor"], module_object_name).unwrap_err();
        assert_eq!(err.name, "sensor");
        assert_eq!(
            (err.first.as_str(), err.second.as_str()),
            ("Sensor", "sensor")
        );
        let err = unique_names(["$edgeHub", "edgeHub"], module_object_name).unwrap_err();
        assert_eq!(err.name, "edgehub");
    }

    #[test]
    fn label_values_keep_case_and_hash_when_lossy() {
        assert_eq!(label_value("Device-1.a_b"), "Device-1.a_b");
        let v = label_value("dev:1@site");
        assert!(v.starts_with("dev-1-site-") && is_label_value(&v), "{v}");
        assert!(is_label_value(&label_value(&"x".repeat(128))));
        assert!(is_label_value(&label_value("$$$")));
    }

    proptest! {
        #[test]
        fn module_names_are_dns_1035_labels_and_stable(id in "\\PC{0,80}") {
            let name = module_object_name(&id);
            prop_assert!(is_dns_label(&name, Rule::Dns1035), "{:?} -> {:?}", id, name);
            prop_assert_eq!(name, module_object_name(&id));
        }

        #[test]
        fn volume_names_are_dns_1123_labels(id in "\\PC{0,80}") {
            let name = dns_label(&id, Rule::Dns1123);
            prop_assert!(is_dns_label(&name, Rule::Dns1123), "{:?} -> {:?}", id, name);
        }

        #[test]
        fn label_values_are_valid(id in "\\PC{0,100}") {
            prop_assert!(is_label_value(&label_value(&id)));
        }

        #[test]
        fn different_ids_that_are_not_case_variants_never_share_a_name(
            a in "[a-zA-Z0-9_.-]{1,70}", b in "[a-zA-Z0-9_.-]{1,70}"
        ) {
            prop_assume!(a.to_lowercase() != b.to_lowercase());
            prop_assert_ne!(module_object_name(&a), module_object_name(&b));
        }
    }
}
