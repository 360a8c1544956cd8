//! A module of the deployment (`modules.<name>`, `systemModules.edgeAgent`, `systemModules.edgeHub`).
//!
//! Reference `iotedge-runtime.md` §1.4–1.5 (`DockerDesiredModule.cs`, `DockerModule.cs`,
//! `EdgeAgentDockerModule.cs`, `EdgeHubDockerModule.cs`). Defaults:
//!
//! | field | user module | `edgeHub` | `edgeAgent` |
//! |---|---|---|---|
//! | `type` | `"docker"`, required | same | same |
//! | `status` | required | required | always `running` |
//! | `restartPolicy` | `on-unhealthy` | `always` | always `always` |
//! | `imagePullPolicy` | `on-create` | `on-create` | `on-create` |
//! | `startupOrder` | 4294967295 | 4294967295 | always 0 |
//! | `version` | `""` | `""` | `""` |
//! | `env` | `{}` | `{}` | `{}` |
//!
//! Enum values are read the way Newtonsoft reads them: the serialised form (`on-unhealthy`) or the
//! C# name (`OnUnhealthy`), case-insensitively. They are written in the serialised form.

use std::fmt;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::checker::{Checker, Fields};
use crate::create_options::{self, CreateOptions};
use crate::error::{ErrorKind, Found, NameRule, WarningKind};
use crate::image;
use crate::names;
use crate::path::JsonPath;

/// The only module and runtime `type` IoT Edge knows.
pub const DOCKER: &str = "docker";
/// `startupOrder` when none is given: start after every module that has one.
pub const DEFAULT_STARTUP_ORDER: u32 = u32::MAX;

/// The status a module should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DesiredStatus {
    /// Keep it running (`running`).
    Running,
    /// Keep it stopped (`stopped`).
    Stopped,
}

/// When a module that exited is restarted. Ordered: `> Never` means "restartable".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestartPolicy {
    /// Never restart (`never`).
    Never,
    /// Restart when it exits with a non-zero code (`on-failure`).
    OnFailure,
    /// Restart when it fails or its health check fails (`on-unhealthy`, the default).
    #[default]
    OnUnhealthy,
    /// Always restart (`always`).
    Always,
}

/// When the module's image is pulled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ImagePullPolicy {
    /// Pull when the module is created or its image changes (`on-create`, the default).
    #[default]
    OnCreate,
    /// Never pull: the image must already be present (`never`).
    Never,
}

/// An enum whose JSON form is a fixed lowercase string.
trait WireEnum: Sized + Copy + PartialEq + 'static {
    /// Every value with its serialised form.
    const VALUES: &'static [(Self, &'static str)];
    /// The allowed values, for messages.
    const EXPECTED: &'static str;

    /// The serialised form.
    fn wire_name(self) -> &'static str {
        Self::VALUES
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, s)| s)
    }

    /// Reads the serialised form (`on-create`) or the C# name (`OnCreate`), case-insensitively.
    fn from_wire(s: &str) -> Option<Self> {
        Self::VALUES
            .iter()
            .find(|(_, name)| {
                name.eq_ignore_ascii_case(s)
                    || (!s.contains('-') && name.replace('-', "").eq_ignore_ascii_case(s))
            })
            .map(|(v, _)| *v)
    }
}

impl WireEnum for DesiredStatus {
    const VALUES: &'static [(Self, &'static str)] =
        &[(Self::Running, "running"), (Self::Stopped, "stopped")];
    const EXPECTED: &'static str = "\"running\" or \"stopped\"";
}

impl WireEnum for RestartPolicy {
    const VALUES: &'static [(Self, &'static str)] = &[
        (Self::Never, "never"),
        (Self::OnFailure, "on-failure"),
        (Self::OnUnhealthy, "on-unhealthy"),
        (Self::Always, "always"),
    ];
    const EXPECTED: &'static str = "one of \"never\", \"on-failure\", \"on-unhealthy\", \"always\"";
}

impl WireEnum for ImagePullPolicy {
    const VALUES: &'static [(Self, &'static str)] =
        &[(Self::OnCreate, "on-create"), (Self::Never, "never")];
    const EXPECTED: &'static str = "\"on-create\" or \"never\"";
}

macro_rules! wire_enum_methods {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The manifest spelling (`running`, `on-unhealthy`, `on-create`, …).
            pub fn as_str(self) -> &'static str {
                self.wire_name()
            }

            /// Reads the manifest spelling or the C# name (`OnCreate`), case-insensitively.
            pub fn parse(s: &str) -> Option<Self> {
                Self::from_wire(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

wire_enum_methods!(DesiredStatus, RestartPolicy, ImagePullPolicy);

/// `settings` of a module: what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSettings {
    /// The image reference, trimmed, as written (no `:latest` added; see [`Self::pull_image`]).
    pub image: String,
    /// The Docker create options, reassembled from their chunks.
    pub create_options: CreateOptions,
    /// An image digest pin (`settings.digest`), if any.
    pub digest: Option<String>,
}

impl ModuleSettings {
    /// Settings for `image` with no create options.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            create_options: CreateOptions::default(),
            digest: None,
        }
    }

    /// The image as the agent pulls it: with `:latest` when no tag is given.
    pub fn pull_image(&self) -> String {
        image::with_default_tag(&self.image)
    }

    /// The registry host of the image, `None` for Docker Hub.
    pub fn registry(&self) -> Option<&str> {
        image::registry(&self.image)
    }
}

/// One module of the deployment, system or user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Opaque version; a change forces an update (`""` when absent).
    pub version: String,
    /// Whether it should run.
    pub status: DesiredStatus,
    /// When it is restarted.
    pub restart_policy: RestartPolicy,
    /// When its image is pulled.
    pub image_pull_policy: ImagePullPolicy,
    /// Start order group: lower starts first.
    pub startup_order: u32,
    /// Environment variables in manifest order (the manifest's `{"value": …}` unwrapped; numbers
    /// and booleans as their JSON text).
    pub env: IndexMap<String, String>,
    /// Image and create options.
    pub settings: ModuleSettings,
    /// The id of the configuration (automatic deployment) that set it, if any (`configuration.id`).
    pub configuration_id: Option<String>,
}

impl Module {
    /// A running user module with IoT Edge's defaults.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            version: String::new(),
            status: DesiredStatus::Running,
            restart_policy: RestartPolicy::default(),
            image_pull_policy: ImagePullPolicy::default(),
            startup_order: DEFAULT_STARTUP_ORDER,
            env: IndexMap::new(),
            settings: ModuleSettings::new(image),
            configuration_id: None,
        }
    }
}

/// Which kind of module is being read: the fields and defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModuleRole {
    /// `modules.<name>`.
    User,
    /// `systemModules.edgeAgent`: status, restart policy and start order are fixed.
    EdgeAgent,
    /// `systemModules.edgeHub`: restart policy defaults to `always`.
    EdgeHub,
}

/// Reads one module object.
pub(crate) fn check(
    c: &mut Checker,
    value: &Value,
    path: &JsonPath,
    role: ModuleRole,
) -> Option<Module> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);

    if let Some(t) = f.required_string(c, "type")
        && t != DOCKER
    {
        c.error(
            &f.path_of("type"),
            ErrorKind::InvalidValue {
                value: format!("{t:?}"),
                expected: "\"docker\"",
            },
        );
    }
    let version = f.optional_string(c, "version").ok().flatten().unwrap_or("");
    let (status, restart_policy, startup_order) = match role {
        ModuleRole::EdgeAgent => fixed_agent_fields(c, &mut f),
        ModuleRole::User | ModuleRole::EdgeHub => {
            let status = f
                .required(c, "status")
                .and_then(|v| read_enum::<DesiredStatus>(c, v, &path.key("status")));
            let default_restart = if role == ModuleRole::EdgeHub {
                RestartPolicy::Always
            } else {
                RestartPolicy::OnUnhealthy
            };
            let restart = match f.raw("restartPolicy") {
                None => Some(default_restart),
                Some(v) => read_enum::<RestartPolicy>(c, v, &path.key("restartPolicy")),
            };
            let order = match f.raw("startupOrder") {
                None => Some(DEFAULT_STARTUP_ORDER),
                Some(v) => c.u32(v, &path.key("startupOrder")),
            };
            (status, restart, order)
        }
    };
    let image_pull_policy = match f.optional("imagePullPolicy") {
        None => Some(ImagePullPolicy::default()),
        Some(v) => read_enum::<ImagePullPolicy>(c, v, &path.key("imagePullPolicy")),
    };
    let env = f.optional("env").map_or_else(
        || Some(IndexMap::new()),
        |v| check_env(c, v, &path.key("env")),
    );
    let settings = f
        .required(c, "settings")
        .and_then(|v| check_settings(c, v, &path.key("settings")));
    let configuration_id = check_configuration(c, &mut f);
    f.finish(c);

    if c.error_count() != before {
        return None;
    }
    Some(Module {
        version: version.to_owned(),
        status: status?,
        restart_policy: restart_policy?,
        image_pull_policy: image_pull_policy?,
        startup_order: startup_order?,
        env: env?,
        settings: settings?,
        configuration_id,
    })
}

/// edgeAgent's status, restart policy and start order are hard-wired; say so if set otherwise.
fn fixed_agent_fields(
    c: &mut Checker,
    f: &mut Fields<'_>,
) -> (Option<DesiredStatus>, Option<RestartPolicy>, Option<u32>) {
    let fixed = [
        ("status", json!("running"), "edgeAgent always runs"),
        (
            "restartPolicy",
            json!("always"),
            "edgeAgent is always restarted",
        ),
        ("startupOrder", json!(0), "edgeAgent always starts first"),
    ];
    for (key, expected, reason) in fixed {
        if let Some(v) = f.optional(key)
            && *v != expected
        {
            c.warn(&f.path_of(key), WarningKind::Ignored { reason });
        }
    }
    (
        Some(DesiredStatus::Running),
        Some(RestartPolicy::Always),
        Some(0),
    )
}

/// Reads an enum-valued string.
fn read_enum<T: WireEnum>(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<T> {
    let s = c.string(value, path)?;
    let parsed = T::from_wire(s);
    if parsed.is_none() {
        c.error(
            path,
            ErrorKind::InvalidValue {
                value: format!("{:?}", crate::error::truncate(s)),
                expected: T::EXPECTED,
            },
        );
    }
    parsed
}

/// Reads `env`: name → `{"value": string | number | boolean}`.
fn check_env(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<IndexMap<String, String>> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut env = IndexMap::with_capacity(map.len());
    for (name, entry) in map {
        let entry_path = path.key(name.as_str());
        if !names::follows(NameRule::EnvVar, name) {
            c.error(
                &entry_path,
                ErrorKind::InvalidName {
                    name: crate::error::truncate(name),
                    rule: NameRule::EnvVar,
                },
            );
        }
        let Some(obj) = c.object(entry, &entry_path) else {
            continue;
        };
        let mut f = Fields::new(obj, &entry_path);
        let text = match f.optional("value") {
            // EnvVal turns a missing or null value into "".
            None => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => {
                c.error(
                    &entry_path.key("value"),
                    ErrorKind::WrongType {
                        expected: "a string, number or boolean",
                        found: Found::of(other),
                    },
                );
                None
            }
        };
        f.finish(c);
        if let Some(text) = text {
            env.insert(name.clone(), text);
        }
    }
    (c.error_count() == before).then_some(env)
}

/// Reads `settings`: `image`, `createOptions[NN]`, `digest` (keys matched case-insensitively, as
/// `DockerConfigJsonConverter` does).
fn check_settings(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<ModuleSettings> {
    let map = c.object(value, path)?;
    let before = c.error_count();
    let mut f = Fields::new(map, path);
    let image = match f.optional_ci("image") {
        None => {
            c.error(&path.key("image"), ErrorKind::Missing);
            None
        }
        Some((key, v)) => check_image(c, v, &path.key(key)),
    };
    let create_options = create_options::check(c, &mut f);
    let digest = match f.optional_ci("digest") {
        None => None,
        Some((key, v)) => c.non_blank(v, &path.key(key)).map(str::to_owned),
    };
    f.finish(c);
    if c.error_count() != before {
        return None;
    }
    Some(ModuleSettings {
        image: image?,
        create_options: create_options?,
        digest,
    })
}

/// Reads and checks `settings.image`.
fn check_image(c: &mut Checker, value: &Value, path: &JsonPath) -> Option<String> {
    let s = c.string(value, path)?;
    match image::problem(s) {
        None => Some(s.trim().to_owned()),
        Some(_) if s.trim().is_empty() => {
            c.error(path, ErrorKind::Blank);
            None
        }
        Some(problem) => {
            c.error(
                path,
                ErrorKind::InvalidImage {
                    image: crate::error::truncate(s),
                    problem,
                },
            );
            None
        }
    }
}

/// Reads `configuration: {id}` (written by automatic deployments).
fn check_configuration(c: &mut Checker, f: &mut Fields<'_>) -> Option<String> {
    let value = f.optional("configuration")?;
    let path = f.path_of("configuration");
    let map = c.object(value, &path)?;
    let mut cf = Fields::new(map, &path);
    let id = cf
        .optional_string(c, "id")
        .ok()
        .flatten()
        .map(str::to_owned);
    cf.finish(c);
    id
}

/// The manifest form of a module.
pub(crate) fn to_value(module: &Module, role: ModuleRole) -> Value {
    let mut out = Map::new();
    if !module.version.is_empty() {
        out.insert("version".into(), json!(module.version));
    }
    out.insert("type".into(), json!(DOCKER));
    if role != ModuleRole::EdgeAgent {
        out.insert("status".into(), json!(module.status.as_str()));
        out.insert(
            "restartPolicy".into(),
            json!(module.restart_policy.as_str()),
        );
        if module.startup_order != DEFAULT_STARTUP_ORDER {
            out.insert("startupOrder".into(), json!(module.startup_order));
        }
    }
    if module.image_pull_policy != ImagePullPolicy::default() {
        out.insert(
            "imagePullPolicy".into(),
            json!(module.image_pull_policy.as_str()),
        );
    }
    if !module.env.is_empty() {
        let env: Map<String, Value> = module
            .env
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v })))
            .collect();
        out.insert("env".into(), Value::Object(env));
    }
    out.insert("settings".into(), settings_to_value(&module.settings));
    if let Some(id) = &module.configuration_id {
        out.insert("configuration".into(), json!({ "id": id }));
    }
    Value::Object(out)
}

/// The manifest form of `settings`, with createOptions split into twin-sized chunks.
fn settings_to_value(settings: &ModuleSettings) -> Value {
    let mut out = Map::new();
    out.insert("image".into(), json!(settings.image));
    for (key, chunk) in settings.create_options.to_twin_chunks() {
        out.insert(key, Value::String(chunk));
    }
    if let Some(digest) = &settings.digest {
        out.insert("digest".into(), json!(digest));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
