//! IoT Edge deployment-manifest model: types, schema versions, validation with JSON paths.
//!
//! One validation serves every consumer, so the CLI, the agent and the controller accept exactly
//! the same manifests. The contract is `reference/iotedge-runtime.md` §1 (schema, defaults,
//! quirks) and §4.1 (status codes). No I/O happens here.
//!
//! # API at a glance
//!
//! Validating (every function returns *all* errors, each with a JSON path and a reason):
//!
//! | you have | call | you get |
//! |---|---|---|
//! | a manifest file's bytes | [`validate`]`(&[u8])` / [`Manifest::check_slice`] | [`Checked`]`<`[`Manifest`]`>` (result + warnings) |
//! | a manifest as JSON | [`Manifest::check_value`]`(&Value)`, [`Manifest::from_value`] | same / `Result<Manifest, ValidationErrors>` |
//! | `$edgeAgent` desired properties (agent twin) | [`EdgeAgentDesired::check_value`] / [`EdgeAgentDesired::from_value`] | paths rooted at `$` |
//! | `$edgeHub` desired properties (hub twin) | [`EdgeHubDesired::check_value`] / [`EdgeHubDesired::from_value`] | paths rooted at `$` |
//! | both system twins (agent) | [`Manifest::check_sections`]`(&agent, &hub)` | `Checked<Manifest>`, manifest-style paths |
//!
//! Errors: [`ValidationErrors`] (a list of [`ManifestError`]`{ path: `[`JsonPath`]`, kind: `[`ErrorKind`]`}`,
//! printed one `path: reason` per line, `Serialize` as `[{path, kind, reason}]`).
//! [`ValidationErrors::status_code`] is the agent's `lastDesiredStatus.code`: 412 for an
//! unsupported `schemaVersion`, 417 for empty desired properties, else 400.
//! Warnings ([`ManifestWarning`]) flag unknown keys and ignored fields; they never reject.
//!
//! Typed data (all fields public; defaults already applied):
//! - [`Manifest`] `{ edge_agent, edge_hub, module_twins }`
//! - [`EdgeAgentDesired`] `{ schema_version, runtime: `[`RuntimeSettings`]`, system_modules: `[`SystemModules`]`, modules, integrity, twin_version }`
//!   with [`EdgeAgentDesired::all_modules`] (system modules first) and [`EdgeAgentDesired::module`].
//! - [`RuntimeSettings`] `{ min_docker_version, logging_options, registry_credentials: IndexMap<id, `[`RegistryCredential`]`> }`
//!   with [`RuntimeSettings::credential_for`]`(image)`.
//! - [`Module`] `{ version, status: `[`DesiredStatus`]`, restart_policy: `[`RestartPolicy`]`, image_pull_policy: `[`ImagePullPolicy`]`,
//!   startup_order: u32, env: IndexMap<String, String>, settings: `[`ModuleSettings`]`, configuration_id }`
//! - [`ModuleSettings`] `{ image, create_options: `[`CreateOptions`]`, digest }` with `pull_image()` (`:latest` added) and `registry()`.
//! - [`CreateOptions`]: the Docker ContainerCreate body as a JSON object (`as_map`, `to_value`, `to_twin_chunks`).
//! - [`EdgeHubDesired`] `{ schema_version, routes: IndexMap<name, `[`Route`]`>, store_and_forward: Option<`[`StoreAndForward`]`>, mqtt_broker, integrity, twin_version }`
//! - [`Route`] `{ route, priority (0–9 or `[`Route::DEFAULT_PRIORITY`]`), time_to_live_secs (0 = global) }`
//!
//! Writing back: `to_value()` on [`Manifest`], [`EdgeAgentDesired`] and [`EdgeHubDesired`] gives
//! the manifest JSON; parsing it again gives an equal value. The three types also implement
//! `serde::Serialize` and `Deserialize` (deserializing validates and fails with every error).
//!
//! # Example
//!
//! ```
//! use ironedge_model::{DesiredStatus, Manifest, RestartPolicy, validate};
//!
//! let json = br#"{"modulesContent": {
//!   "$edgeAgent": {"properties.desired": {
//!     "schemaVersion": "1.1",
//!     "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
//!     "systemModules": {
//!       "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
//!       "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
//!                   "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
//!     "modules": {"temp": {"type": "docker", "status": "running",
//!       "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
//!                    "createOptions": "{\"HostConfig\":{\"Privileged\":false}}"}}}}},
//!   "$edgeHub": {"properties.desired": {
//!     "schemaVersion": "1.1",
//!     "routes": {"up": {"route": "FROM /messages/* INTO $upstream", "priority": 0}},
//!     "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}"#;
//!
//! let manifest = validate(json).into_result()?;
//! let temp = &manifest.edge_agent.modules["temp"];
//! assert_eq!(temp.status, DesiredStatus::Running);
//! assert_eq!(temp.restart_policy, RestartPolicy::OnUnhealthy); // the default
//! assert_eq!(temp.startup_order, u32::MAX); // the default
//! assert!(temp.settings.create_options.get("HostConfig").is_some());
//! assert_eq!(manifest.edge_hub.routes["up"].priority, 0);
//!
//! // Round trip.
//! assert_eq!(Manifest::from_value(&manifest.to_value())?, manifest);
//!
//! // Errors carry a JSON path and a reason; all of them are reported.
//! let bad = br#"{"modulesContent": {"$edgeAgent": {"properties.desired": {"schemaVersion": "2.0"}},
//!                                   "$edgeHub": {"properties.desired": {"schemaVersion": "1.1"}}}}"#;
//! let errors = validate(bad).into_result().unwrap_err();
//! assert_eq!(errors.status_code(), 412);
//! assert!(errors.to_string().starts_with(
//!     "$.modulesContent.$edgeAgent['properties.desired'].schemaVersion: unsupported schema version \"2.0\""));
//! # Ok::<(), ironedge_model::ValidationErrors>(())
//! ```

mod checker;
pub mod create_options;
mod edge_agent;
mod edge_hub;
mod error;
pub mod image;
mod manifest;
mod module;
pub mod names;
mod path;
mod schema_version;
mod serde_impls;

#[cfg(test)]
mod fixtures;

pub use create_options::CreateOptions;
pub use edge_agent::{EdgeAgentDesired, RegistryCredential, RuntimeSettings, SystemModules};
pub use edge_hub::{EdgeHubDesired, Route, StoreAndForward};
pub use error::{
    Checked, ChunkProblem, ErrorKind, Found, ManifestError, ManifestWarning, NameRule,
    STATUS_BAD_REQUEST, STATUS_CONFIG_EMPTY, STATUS_UNSUPPORTED_SCHEMA, ValidationErrors,
    WarningKind,
};
pub use manifest::{Manifest, PROPERTIES_DESIRED};
pub use module::{
    DEFAULT_STARTUP_ORDER, DOCKER, DesiredStatus, ImagePullPolicy, Module, ModuleSettings,
    RestartPolicy,
};
pub use names::{EDGE_AGENT, EDGE_AGENT_IDENTITY, EDGE_HUB, EDGE_HUB_IDENTITY, module_identity};
pub use path::{JsonPath, Segment};
pub use schema_version::{SchemaVersion, SchemaVersionParseError};

/// A result whose error is the full list of validation errors.
pub type Result<T, E = ValidationErrors> = std::result::Result<T, E>;

/// Validates a deployment manifest file's bytes: the typed [`Manifest`] or every error, plus
/// warnings. Both `{"modulesContent": …}` and `{"content": {"modulesContent": …}}` are accepted.
pub fn validate(bytes: &[u8]) -> Checked<Manifest> {
    Manifest::check_slice(bytes)
}
