//! Storage seam: everything the hub keeps goes through [`Storage`].
//!
//! The trait is synchronous; the service calls it from blocking threads (`spawn_blocking`), never
//! on the async executor. SQLite ([`SqliteStorage`]) is the default backend.
//!
//! ## Concurrency contract (what a second backend must keep)
//! Writes of identities, twins and configurations are *compare-and-swap*: each carries the
//! revision/version it was computed from, and the backend refuses it with
//! [`StorageError::Conflict`] when the stored row moved on. The service then re-reads, re-runs
//! the pure logic and tries again. This is what lets several hub replicas share one PostgreSQL
//! database without locks held across network round trips:
//! - PostgreSQL: `UPDATE twins SET doc=$1, version=$2 WHERE device_id=$3 AND module_id=$4 AND
//!   version=$5` and check the row count; creates are `INSERT … ON CONFLICT DO NOTHING`.
//! - Multi-row writes ([`Storage::create_device`], [`Storage::delete_device`], module create with
//!   its twin) run in one transaction.
//! - Telemetry and C2D sequence numbers come from a `BIGSERIAL`/identity column, so replicas never
//!   hand out the same `seq`.
//! - Replicas learn about each other's changes with `LISTEN/NOTIFY`: channel `twin_desired`
//!   (payload device/module id + desired `$version`: the replica holding that MQTT connection
//!   pushes the patch), `c2d` (device id: deliver now), `telemetry` (latest `seq`: wakes
//!   streaming readers), `method` (request routed to the replica holding the connection, with
//!   the response on a per-request channel), `kick` (a new connection elsewhere closes this one).

mod migrations;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use sqlite::SqliteStorage;

use crate::configuration::Configuration;
use crate::registry::{Device, Module};
use crate::twin::Twin;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A compare-and-swap lost: the row changed (or appeared, or vanished) since it was read.
    #[error("concurrent update of {0}; retry")]
    Conflict(String),
    /// A stored document does not decode (corruption or a newer hub's format).
    #[error("stored {what} does not decode: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Decoder message.
        reason: String,
    },
    /// The database schema is newer than this hub.
    #[error(
        "database schema version {found} is newer than this hub supports ({supported}); upgrade the hub"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest this binary knows.
        supported: i64,
    },
    /// The database file could not be opened or prepared.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// File path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A device-to-cloud message as stored, with every system and application property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryRecord {
    /// Sequence number (assigned by the store).
    #[serde(default)]
    pub seq: u64,
    /// When the hub accepted it (ms since epoch).
    pub enqueued_ms: i64,
    /// Sending device.
    pub device_id: String,
    /// Sending module.
    pub module_id: Option<String>,
    /// `$.mid`.
    pub message_id: Option<String>,
    /// `$.cid`.
    pub correlation_id: Option<String>,
    /// `$.uid`.
    pub user_id: Option<String>,
    /// `$.ct`.
    pub content_type: Option<String>,
    /// `$.ce`.
    pub content_encoding: Option<String>,
    /// `$.on`.
    pub output_name: Option<String>,
    /// Other system properties by wire key (`$.schema`, `$.ctime`, `$.exp`, …).
    #[serde(default)]
    pub system_properties: BTreeMap<String, String>,
    /// Application properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Body bytes.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Which telemetry to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryFilter {
    /// Only this device.
    pub device_id: Option<String>,
    /// Only this module (with `device_id`).
    pub module_id: Option<String>,
    /// First `seq` wanted.
    pub from_seq: u64,
    /// Enqueued at or after (ms).
    pub since_ms: Option<i64>,
    /// Enqueued before (ms).
    pub until_ms: Option<i64>,
}

/// Where a cloud-to-device message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum C2dState {
    /// Waiting for the device to connect.
    Queued,
    /// Sent; waiting for the PUBACK.
    Delivered,
    /// PUBACK received.
    Completed,
    /// Expired before completion.
    Expired,
}

impl C2dState {
    /// Storage/text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Completed => "completed",
            Self::Expired => "expired",
        }
    }

    /// Parses the storage form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "delivered" => Self::Delivered,
            "completed" => Self::Completed,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// A cloud-to-device message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dMessage {
    /// Store sequence.
    #[serde(default)]
    pub seq: u64,
    /// Target device.
    pub device_id: String,
    /// `$.mid` (unique per device).
    pub message_id: String,
    /// `$.cid`.
    pub correlation_id: Option<String>,
    /// `$.ct`.
    pub content_type: Option<String>,
    /// `$.ce`.
    pub content_encoding: Option<String>,
    /// `iothub-ack`.
    pub ack: Option<String>,
    /// Application properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Enqueued (ms).
    pub enqueued_ms: i64,
    /// Expires (ms).
    pub expiry_ms: i64,
    /// State.
    pub state: C2dState,
    /// Last state change (ms).
    pub updated_ms: i64,
    /// Body bytes.
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// A shared access policy.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `skn` name (e.g. `iothubowner`).
    pub key_name: String,
    /// Primary key (base64).
    pub primary_key: String,
    /// Secondary key (base64).
    pub secondary_key: String,
    /// Rights.
    pub rights: Vec<crate::auth::Right>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("key_name", &self.key_name)
            .field("rights", &self.rights)
            .finish_non_exhaustive()
    }
}

/// Which twins to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinScope {
    /// Device twins only.
    Devices,
    /// Module twins only.
    Modules,
}

/// The hub's persistence.
pub trait Storage: Send + Sync + fmt::Debug {
    /// One device.
    fn get_device(&self, id: &str) -> Result<Option<Device>>;
    /// Devices in id order, at most `limit`.
    fn list_devices(&self, limit: usize) -> Result<Vec<Device>>;
    /// Number of devices (enabled, disabled).
    fn count_devices(&self) -> Result<(u64, u64)>;
    /// Creates a device with its twin and module identities (+ twins) atomically;
    /// [`StorageError::Conflict`] if it exists.
    fn create_device(&self, device: &Device, twin: &Twin, modules: &[(Module, Twin)])
    -> Result<()>;
    /// Replaces a device if its stored revision is `expected_revision`; adds `new_modules`.
    fn update_device(
        &self,
        device: &Device,
        expected_revision: u64,
        new_modules: &[(Module, Twin)],
    ) -> Result<()>;
    /// Deletes a device, its modules, twins, manual content and C2D queue; false if absent.
    fn delete_device(&self, id: &str) -> Result<bool>;

    /// One module.
    fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<Module>>;
    /// Modules of a device.
    fn list_modules(&self, device_id: &str) -> Result<Vec<Module>>;
    /// Every module of every device (queries over `devices.modules`).
    fn list_all_modules(&self) -> Result<Vec<Module>>;
    /// Creates a module with its twin; conflict if it exists.
    fn create_module(&self, module: &Module, twin: &Twin) -> Result<()>;
    /// Replaces a module at `expected_revision`.
    fn update_module(&self, module: &Module, expected_revision: u64) -> Result<()>;
    /// Deletes a module and its twin; false if absent.
    fn delete_module(&self, device_id: &str, module_id: &str) -> Result<bool>;

    /// One twin (`module_id` `None` for the device twin).
    fn get_twin(&self, device_id: &str, module_id: Option<&str>) -> Result<Option<Twin>>;
    /// Replaces a twin whose stored version is `expected_version`.
    fn put_twin(&self, twin: &Twin, expected_version: u64) -> Result<()>;
    /// Every twin of a kind (queries and configuration evaluation).
    fn list_twins(&self, scope: TwinScope) -> Result<Vec<Twin>>;
    /// Every twin of one device, device twin first.
    fn device_twins(&self, device_id: &str) -> Result<Vec<Twin>>;

    /// One configuration.
    fn get_configuration(&self, id: &str) -> Result<Option<Configuration>>;
    /// All configurations.
    fn list_configurations(&self) -> Result<Vec<Configuration>>;
    /// Creates (`expected_revision` `None`) or replaces a configuration.
    fn put_configuration(
        &self,
        config: &Configuration,
        expected_revision: Option<u64>,
    ) -> Result<()>;
    /// Deletes a configuration; false if absent.
    fn delete_configuration(&self, id: &str) -> Result<bool>;

    /// Module content set with `applyConfigurationContent`, kept for modules created later.
    fn get_device_content(&self, device_id: &str) -> Result<Option<Map<String, Value>>>;
    /// Stores the manual module content of a device.
    fn put_device_content(&self, device_id: &str, content: &Map<String, Value>) -> Result<()>;

    /// Appends messages; assigns and returns their `seq`s in order.
    fn append_telemetry(&self, batch: &mut [TelemetryRecord]) -> Result<()>;
    /// Messages matching `filter` in `seq` order, at most `limit`.
    fn read_telemetry(
        &self,
        filter: &TelemetryFilter,
        limit: usize,
    ) -> Result<Vec<TelemetryRecord>>;
    /// The newest `seq` (0 when empty).
    fn last_telemetry_seq(&self) -> Result<u64>;
    /// Drops all but the newest `max_count` messages and those older than `min_enqueued_ms`.
    fn prune_telemetry(&self, max_count: u64, min_enqueued_ms: i64) -> Result<u64>;

    /// Queues a C2D message (assigns `seq`); conflict if the message id is taken for the device.
    fn enqueue_c2d(&self, msg: &mut C2dMessage) -> Result<()>;
    /// Messages of a device that are queued or delivered-but-not-completed, oldest first.
    fn pending_c2d(&self, device_id: &str) -> Result<Vec<C2dMessage>>;
    /// One C2D message.
    fn get_c2d(&self, device_id: &str, message_id: &str) -> Result<Option<C2dMessage>>;
    /// Moves a message to `state`; false if absent.
    fn set_c2d_state(
        &self,
        device_id: &str,
        message_id: &str,
        state: C2dState,
        now_ms: i64,
    ) -> Result<bool>;
    /// Completed/expired messages changed after `after_ms` (feedback), oldest first.
    fn c2d_feedback(&self, after_ms: i64, limit: usize) -> Result<Vec<C2dMessage>>;
    /// Marks queued/delivered messages past expiry as expired; returns how many.
    fn expire_c2d(&self, now_ms: i64) -> Result<u64>;

    /// All shared access policies.
    fn list_policies(&self) -> Result<Vec<Policy>>;
    /// Creates or replaces a policy.
    fn put_policy(&self, policy: &Policy) -> Result<()>;
}
