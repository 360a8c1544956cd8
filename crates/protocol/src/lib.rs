//! IoT Hub wire contracts shared by the cloud hub, the edge hub and the edge agent: SAS tokens,
//! symmetric keys, connection strings, MQTT CONNECT identities, MQTT topics and property bags,
//! twin documents and device-to-cloud messages. Pure code: no I/O, no clock (callers pass `now`).
//!
//! The contracts are in `shared/reference/iot-hub-protocols.md` §1–2 and
//! `iotedge-runtime.md` §3.2–3.3 and §5.5.
//!
//! ```
//! use ironedge_protocol::{identity_from_connect, SasToken, SasVerifier, SymmetricKey};
//!
//! let key = SymmetricKey::generate();
//! let token = SasToken::build("myhub.azure-devices.net/devices/dev1/modules/mod1", &key, 2_000_000_000, None);
//!
//! // What an MQTT server does with a CONNECT packet:
//! let (identity, _username) = identity_from_connect(
//!     "dev1/mod1",
//!     Some("myhub.azure-devices.net/dev1/mod1/?api-version=2021-04-12"),
//! )?;
//! let verifier = SasVerifier::new(["myhub.azure-devices.net", "localhost:8883"]);
//! let parsed = SasToken::parse(&token.to_string())?;
//! let ok = verifier.verify(&parsed, &identity.resource_path(), [&key], 1_700_000_000)?;
//! assert_eq!(ok.expiry, 2_000_000_000);
//! # Ok::<(), ironedge_protocol::Error>(())
//! ```

mod backoff;
mod connection_string;
mod encoding;
mod error;
mod identity;
mod key;
mod merge_patch;
mod message;
mod property_bag;
mod sas;
pub mod topics;
mod twin;

pub use backoff::Backoff;
pub use connection_string::{ConnectionString, ConnectionStringKind, Credential};
pub use encoding::{decode_component, encode_component};
pub use error::{
    ConnectError, ConnectionStringError, Error, KeyError, Result, SasError, TopicError, TwinError,
};
pub use identity::{Identity, Username, identity_from_connect};
pub use key::{GENERATED_KEY_LEN, KeyPair, SymmetricKey};
pub use merge_patch::{
    MAX_DEPTH, MAX_KEY_BYTES, MAX_SAFE_INTEGER, MAX_STRING_BYTES, merge, merge_with_metadata,
    validate,
};
pub use message::{Message, SYSTEM_PROPERTY_KEYS, SystemProperties};
pub use property_bag::PropertyBag;
pub use sas::{SasToken, SasVerifier, VerifiedToken, encode_resource, string_to_sign};
pub use topics::{
    C2dTopic, InputTopic, MethodTopic, Subscription, TelemetryTopic, Topic, TwinTopic,
};
pub use twin::{
    MAX_SECTION_BYTES, MAX_TAGS_BYTES, Section, Twin, TwinSection, desired_notification,
    format_timestamp, parse_patch,
};
