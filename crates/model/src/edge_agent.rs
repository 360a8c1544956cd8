//! `$edgeAgent` desired properties: schema version, runtime, system modules, user modules.
//!
//! Reference `iotedge-runtime.md` §1.2–1.5 (`DeploymentConfig.cs`, `DockerRuntimeInfo.cs`,
//! `DockerRuntimeConfig.cs`, `RegistryCredentials.cs`, `EdgeAgentConnection.ValidateSchemaVersion`).
//! Both system modules are required: without `edgeHub` no module can send a message.

use std::fmt;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::checker::{Checker, Fields};
use crate::error::{Checked, ErrorKind, NameRule, ValidationErrors};
use crate::module::{self, DOCKER, Module, ModuleRole};
use crate::names::{self, EDGE_AGENT, EDGE_HUB};
use crate::path::JsonPath;
use crate::schema_version::{AGENT_SUPPORTED, SchemaVersion};

/// The `$edgeAgent` desired properties of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeAgentDesired {
    /// `schemaVersion`: 1.0 or 1.1 (`1.0.x`, `1.1.0` included).
    pub schema_version: SchemaVersion,
    /// `runtime.settings` (`runtime.type` is always `"docker"`).
    pub runtime: RuntimeSettings,
    /// `systemModules.edgeAgent` and `systemModules.edgeHub`.
    pub system_modules: SystemModules,
    /// `modules`, by name, in manifest order.
    pub modules: IndexMap<String, Module>,
    /// `integrity` (manifest signing), kept as given and not verified.
    pub integrity: Option<Value>,
    /// The twin's `$version`, which the agent reports back as `lastDesiredVersion`.
    pub twin_version: Option<i64>,
}

/// `runtime.settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// `minDockerVersion`: reported back, never enforced (`""` when absent).
    pub min_docker_version: String,
    /// `loggingOptions`: stringified Docker log options (`""` when absent).
    pub logging_options: String,
    /// `registryCredentials`, by their free-form id.
    pub registry_credentials: IndexMap<String, RegistryCredential>,
}

/// One entry of `registryCredentials`: how to pull from one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The registry host (`myacr.azurecr.io`), matched against image references.
    pub address: String,
    /// The user name.
    pub username: String,
    /// The password or token (redacted in `Debug`).
    pub password: String,
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryCredential {
    /// Whether this credential is for the registry of `image` (case-insensitive address match
    /// on a path boundary, scheme and trailing `/` of the address ignored).
    pub fn matches_image(&self, image: &str) -> bool {
        let address = self.address.trim();
        let address = address
            .strip_prefix("https://")
            .or_else(|| address.strip_prefix("http://"))
            .unwrap_or(address)
            .trim_end_matches('/');
        let image = image.trim();
        !address.is_empty()
            && image.len() > address.len()
            && image.is_char_boundary(address.len())
            && image[..address.len()].eq_ignore_ascii_case(address)
            && image[address.len()..].starts_with('/')
    }
}

impl RuntimeSettings {
    /// The credential (id and value) to pull `image` with, if any.
    pub fn credential_for(&self, image: &str) -> Option<(&str, &RegistryCredential)> {
        self.registry_credentials
            .iter()
            .find(|(_, cred)| cred.matches_image(image))
            .map(|(id, cred)| (id.as_str(), cred))
    }
}

/// `systemModules`: the agent and the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemModules {
    /// `edgeAgent` (status running, restart always, startup order 0, whatever the manifest says).
    pub edge_agent: Module,
    /// `edgeHub`.
    pub edge_hub: Module,
}

impl EdgeAgentDesired {
    /// Validates `$edgeAgent` desired properties as the agent receives them from its twin; error
    /// paths are rooted at `$` (the desired-properties object).
    pub fn check_value(value: &Value) -> Checked<Self> {
        let mut c = Checker::default();
        let desired = check(&mut c, value, &JsonPath::root());
        c.finish(desired)
    }

    /// Like [`Self::check_value`], without the warnings.
    pub fn from_value(value: &Value) -> Result<Self, ValidationErrors> {
        Self::check_value(value).into_result()
    }

    /// The desired-properties JSON (inverse of [`Self::from_value`]).
    pub fn to_value(&self) -> Value {
        to_value(self)
    }

    /// Every module with its name: `edgeAgent`, `edgeHub`, then the user modules in order.
    pub fn all_modules(&self) -> impl Iterator<Item = (&str, &Module)> {
        [
            (EDGE_AGENT, &self.system_modules.edge_agent),
            (EDGE_HUB, &self.system_modules.edge_hub),
        ]
        .into_iter()
        .chain(self.modules.iter().map(|(name, m)| (name.as_str(), m)))
    }

    /// The module called `name` (`edgeAgent` and `edgeHub` included).
    pub fn module(&self, name: &str) -> Option<&Module> {
        match name {
            EDGE_AGENT => Some(&self.system_modules.edge_agent),
            EDGE_HUB => Some(&self.system_modules.edge_hub),
            _ => self.modules.get(name),
        }
    }
}

/// Reads the `$edgeAgent` desired properties at `path`.
pub(crate) fn check(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<EdgeAgentDesired> {
    let map = c.object(value, path)?;
    if map.keys().all(|k| k.starts_with('$')) {
        c.error(path, ErrorKind::EmptyConfig);
        return None;
    }
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let schema_version = check_schema_version(c, &mut f);
    let runtime = f
        .required(c, "runtime")
        .and_then(|v| check_runtime(c, v, &path.key("runtime")));
    let system_modules = f
        .required(c, "systemModules")
        .and_then(|v| check_system_modules(c, v, &path.key("systemModules")));
    let modules = match f.optional("modules") {
        None => Some(IndexMap::new()),
        Some(v) => check_modules(c, v, &path.key("modules")),
    };
    let integrity = f
        .optional("integrity")
        .and_then(|v| c.object(v, &path.key("integrity")))
        .map(|m| Value::Object(m.clone()));
    let twin_version = crate::checker::twin_version(c, &mut f);
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(EdgeAgentDesired {
        schema_version: schema_version?,
        runtime: runtime?,
        system_modules: system_modules?,
        modules: modules?,
        integrity,
        twin_version,
    })
}

/// Reads `schemaVersion` and applies the agent's version rule.
fn check_schema_version(c: &mut Checker, f: &mut Fields<'_>) -> Option<SchemaVersion> {
    let text = f.required_string(c, "schemaVersion")?;
    match text.parse::<SchemaVersion>() {
        Ok(v) if v.is_supported_by_agent() => Some(v),
        _ => {
            c.error(
                &f.path_of("schemaVersion"),
                ErrorKind::UnsupportedSchema {
                    version: crate::error::truncate(text),
                    supported: AGENT_SUPPORTED,
                },
            );
            None
        }
    }
}

/// Reads `runtime`: `type` must be `docker`; `settings` is optional.
fn check_runtime(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<RuntimeSettings> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    if let Some(t) = f.required_string(c, "type")
        && t != DOCKER
    {
        c.error(
            &path.key("type"),
            ErrorKind::InvalidValue {
                value: format!("{:?}", crate::error::truncate(t)),
                expected: "\"docker\"",
            },
        );
    }
    let settings = match f.optional("settings") {
        None => Some(RuntimeSettings::default()),
        Some(v) => check_runtime_settings(c, v, &path.key("settings")),
    };
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    settings
}

/// Reads `runtime.settings`. `minDockerVersion` is required here (`DockerRuntimeConfig`).
fn check_runtime_settings(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
) -> Option<RuntimeSettings> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let min_docker_version = f.required_string(c, "minDockerVersion");
    let logging_options = f.optional_string(c, "loggingOptions").ok().flatten();
    let registry_credentials = match f.optional("registryCredentials") {
        None => Some(IndexMap::new()),
        Some(v) => check_registry_credentials(c, v, &path.key("registryCredentials")),
    };
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(RuntimeSettings {
        min_docker_version: min_docker_version?.to_owned(),
        logging_options: logging_options.unwrap_or_default().to_owned(),
        registry_credentials: registry_credentials?,
    })
}

/// Reads `registryCredentials`: id → `{address, username, password}`, all non-blank.
fn check_registry_credentials(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
) -> Option<IndexMap<String, RegistryCredential>> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut out = IndexMap::with_capacity(map.len());
    for (id, entry) in map {
        let entry_path = path.key(id.as_str());
        check_name(c, id, NameRule::TwinKey, &entry_path);
        let Some(obj) = c.object(entry, &entry_path) else {
            continue;
        };
        let mut f = Fields::new(obj, &entry_path);
        let address = f.required_non_blank(c, "address");
        let username = f.required_non_blank(c, "username");
        let password = f.required_non_blank(c, "password");
        f.finish(c);
        if let (Some(address), Some(username), Some(password)) = (address, username, password) {
            out.insert(
                id.clone(),
                RegistryCredential {
                    address: address.to_owned(),
                    username: username.to_owned(),
                    password: password.to_owned(),
                },
            );
        }
    }
    (c.error_count() == before).then_some(out)
}

/// Reads `systemModules`; both modules are required.
fn check_system_modules(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<SystemModules> {
    let map = c.object(value, path)?;
    let mut f = Fields::new(map, path);
    let edge_agent = f
        .required(c, EDGE_AGENT)
        .and_then(|v| module::check(c, v, &path.key(EDGE_AGENT), ModuleRole::EdgeAgent));
    let edge_hub = f
        .required(c, EDGE_HUB)
        .and_then(|v| module::check(c, v, &path.key(EDGE_HUB), ModuleRole::EdgeHub));
    f.finish(c);
    Some(SystemModules {
        edge_agent: edge_agent?,
        edge_hub: edge_hub?,
    })
}

/// Reads `modules`: name → module, with the module-name rules.
fn check_modules(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
) -> Option<IndexMap<String, Module>> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut out = IndexMap::with_capacity(map.len());
    for (name, body) in map {
        let module_path = path.key(name.as_str());
        if names::is_reserved_module_name(name) {
            c.error(&module_path, ErrorKind::ReservedName { name: name.clone() });
        } else {
            check_name(c, name, NameRule::Module, &module_path);
        }
        if let Some(module) = module::check(c, body, &module_path, ModuleRole::User) {
            out.insert(name.clone(), module);
        }
    }
    (c.error_count() == before).then_some(out)
}

/// Records an error if `name` breaks `rule`.
pub(crate) fn check_name(c: &mut Checker, name: &str, rule: NameRule, path: &JsonPath) {
    if !names::follows(rule, name) {
        c.error(
            path,
            ErrorKind::InvalidName {
                name: crate::error::truncate(name),
                rule,
            },
        );
    }
}

/// The desired-properties JSON of `desired`.
fn to_value(desired: &EdgeAgentDesired) -> Value {
    let mut out = Map::new();
    out.insert(
        "schemaVersion".into(),
        json!(desired.schema_version.to_string()),
    );
    out.insert("runtime".into(), runtime_to_value(&desired.runtime));
    out.insert(
        "systemModules".into(),
        json!({
            EDGE_AGENT: module::to_value(&desired.system_modules.edge_agent, ModuleRole::EdgeAgent),
            EDGE_HUB: module::to_value(&desired.system_modules.edge_hub, ModuleRole::EdgeHub),
        }),
    );
    let modules: Map<String, Value> = desired
        .modules
        .iter()
        .map(|(name, m)| (name.clone(), module::to_value(m, ModuleRole::User)))
        .collect();
    out.insert("modules".into(), Value::Object(modules));
    if let Some(integrity) = &desired.integrity {
        out.insert("integrity".into(), integrity.clone());
    }
    if let Some(version) = desired.twin_version {
        out.insert("$version".into(), json!(version));
    }
    Value::Object(out)
}

/// The manifest form of `runtime`.
fn runtime_to_value(runtime: &RuntimeSettings) -> Value {
    let mut settings = Map::new();
    settings.insert("minDockerVersion".into(), json!(runtime.min_docker_version));
    if !runtime.logging_options.is_empty() {
        settings.insert("loggingOptions".into(), json!(runtime.logging_options));
    }
    if !runtime.registry_credentials.is_empty() {
        let creds: Map<String, Value> = runtime
            .registry_credentials
            .iter()
            .map(|(id, cred)| {
                (
                    id.clone(),
                    json!({
                        "username": cred.username,
                        "password": cred.password,
                        "address": cred.address,
                    }),
                )
            })
            .collect();
        settings.insert("registryCredentials".into(), Value::Object(creds));
    }
    json!({ "type": DOCKER, "settings": settings })
}

#[cfg(test)]
mod tests;
