//! Naming rules for modules, environment variables and twin keys.
//!
//! Module names become IoT Hub module identities and twin keys, so they follow SchemaStore's
//! `^[a-zA-Z0-9_-]+$` and IoT Hub's 128-character limit. Route names and registry credential ids
//! are twin keys (`^[^\.\$# ]+$`); env var names follow SchemaStore's `^[^\+#$\s\.]+$`.
//! `edgeAgent` and `edgeHub` (any case) are reserved for the system modules.

use crate::error::NameRule;

/// The name of the agent system module (its identity is `$edgeAgent`).
pub const EDGE_AGENT: &str = "edgeAgent";
/// The name of the hub system module (its identity is `$edgeHub`).
pub const EDGE_HUB: &str = "edgeHub";
/// The twin (module identity) of the agent, the key under `modulesContent`.
pub const EDGE_AGENT_IDENTITY: &str = "$edgeAgent";
/// The twin (module identity) of the hub, the key under `modulesContent`.
pub const EDGE_HUB_IDENTITY: &str = "$edgeHub";

/// The longest module identity IoT Hub accepts.
const MAX_MODULE_NAME: usize = 128;

/// Whether `name` may name a module.
pub fn is_valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODULE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is reserved for a system module and so cannot name a user module.
pub fn is_reserved_module_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(EDGE_AGENT) || name.eq_ignore_ascii_case(EDGE_HUB)
}

/// The module identity for a module name: `$edgeAgent`/`$edgeHub` for the system modules.
pub fn module_identity(name: &str) -> String {
    match name {
        EDGE_AGENT => EDGE_AGENT_IDENTITY.to_owned(),
        EDGE_HUB => EDGE_HUB_IDENTITY.to_owned(),
        other => other.to_owned(),
    }
}

/// Whether `name` may name an environment variable.
pub fn is_valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, '+' | '#' | '$' | '.') || c.is_whitespace())
}

/// Whether `name` may be a twin key such as a route name or a registry credential id.
pub fn is_valid_twin_key(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '$', '#', ' '])
}

/// Checks `name` against `rule`.
pub(crate) fn follows(rule: NameRule, name: &str) -> bool {
    match rule {
        NameRule::Module => is_valid_module_name(name),
        NameRule::EnvVar => is_valid_env_name(name),
        NameRule::TwinKey => is_valid_twin_key(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_allow_letters_digits_hyphen_underscore() {
        for ok in ["tempSensor", "temp-sensor_2", "A", "0"] {
            assert!(is_valid_module_name(ok), "{ok}");
        }
        for bad in ["", "temp.sensor", "$edgeHub", "temp sensor", "tempé", "a/b"] {
            assert!(!is_valid_module_name(bad), "{bad}");
        }
    }

    #[test]
    fn module_names_are_at_most_128_characters() {
        assert!(is_valid_module_name(&"a".repeat(128)));
        assert!(!is_valid_module_name(&"a".repeat(129)));
    }

    #[test]
    fn system_module_names_are_reserved_in_any_case() {
        assert!(is_reserved_module_name("edgeAgent"));
        assert!(is_reserved_module_name("EDGEHUB"));
        assert!(!is_reserved_module_name("edgeHubby"));
    }

    #[test]
    fn identities_of_system_modules_carry_a_dollar() {
        assert_eq!(module_identity("edgeAgent"), "$edgeAgent");
        assert_eq!(module_identity("edgeHub"), "$edgeHub");
        assert_eq!(module_identity("temp"), "temp");
    }

    #[test]
    fn env_names_reject_plus_hash_dollar_dot_and_whitespace() {
        assert!(is_valid_env_name("RuntimeLogLevel"));
        assert!(is_valid_env_name("my-var_1"));
        for bad in ["", "a+b", "a#b", "$a", "a.b", "a b", "a\tb"] {
            assert!(!is_valid_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn twin_keys_reject_dot_dollar_hash_and_space() {
        assert!(is_valid_twin_key("route-1"));
        for bad in ["", "a.b", "$a", "a#b", "a b"] {
            assert!(!is_valid_twin_key(bad), "{bad:?}");
        }
    }
}
