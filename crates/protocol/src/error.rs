//! Error types, one enum per operation family, plus an umbrella [`Error`].

use thiserror::Error;

/// A symmetric key could not be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key is not valid base64.
    #[error("symmetric key is not valid base64: {reason}")]
    NotBase64 {
        /// What the base64 decoder reported.
        reason: String,
    },
    /// The key decodes to no bytes at all.
    #[error("symmetric key is empty")]
    Empty,
}

/// A SAS token could not be parsed or did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SasError {
    /// The token does not start with `SharedAccessSignature `.
    #[error("SAS token must start with \"SharedAccessSignature \"")]
    MissingPrefix,
    /// A required field (`sr`, `sig`, `se`) is absent.
    #[error("SAS token has no \"{0}\" field")]
    MissingField(&'static str),
    /// A field appears twice.
    #[error("SAS token has the field \"{0}\" twice")]
    DuplicateField(String),
    /// A `key=value` pair has no `=`.
    #[error("SAS token field \"{0}\" has no '='")]
    MalformedField(String),
    /// `se` is not a number of seconds since the Unix epoch.
    #[error("SAS token expiry \"{0}\" is not a Unix time in seconds")]
    InvalidExpiry(String),
    /// `sig` is not base64 (after percent-decoding).
    #[error("SAS token signature is not base64")]
    InvalidSignatureEncoding,
    /// The token expired.
    #[error("SAS token expired at {expiry} (now {now}); create a new token")]
    Expired {
        /// `se` of the token.
        expiry: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The host in `sr` is none of the hub's names.
    #[error(
        "SAS token is for host \"{host}\", which is not this hub (accepted, with any port: {accepted})"
    )]
    WrongHost {
        /// Host found in the token.
        host: String,
        /// The accepted names, comma separated.
        accepted: String,
    },
    /// The resource in `sr` does not cover the identity or resource asked for.
    #[error("SAS token resource \"{token}\" does not grant access to \"{expected}\"")]
    WrongResource {
        /// Decoded `sr` of the token.
        token: String,
        /// What the caller needed the token to cover.
        expected: String,
    },
    /// No key produced the token's signature.
    #[error("SAS token signature does not match any key")]
    SignatureMismatch,
    /// No key was supplied to check the token against.
    #[error("no key is configured to verify the SAS token")]
    NoKeys,
}

/// A connection string could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// A `;`-separated part has no `=`.
    #[error("connection string part \"{0}\" is not Key=Value")]
    MalformedPart(String),
    /// A key that no IoT Hub connection string has.
    #[error("connection string has the unknown key \"{0}\"")]
    UnknownKey(String),
    /// A key appears twice.
    #[error("connection string has the key \"{0}\" twice")]
    DuplicateKey(String),
    /// A required key is missing.
    #[error("connection string has no {0}")]
    MissingKey(&'static str),
    /// Keys that exclude each other (e.g. `DeviceId` and `SharedAccessKeyName`).
    #[error("connection string cannot have both {0} and {1}")]
    Conflicting(&'static str, &'static str),
    /// `ModuleId` without `DeviceId`.
    #[error("connection string has ModuleId but no DeviceId")]
    ModuleWithoutDevice,
    /// The `SharedAccessKey` value is unusable.
    #[error("connection string SharedAccessKey: {0}")]
    Key(#[from] KeyError),
}

/// The MQTT CONNECT client id or username is not an IoT Hub identity.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConnectError {
    /// The client id is empty.
    #[error("MQTT client id is empty; use \"{{deviceId}}\" or \"{{deviceId}}/{{moduleId}}\"")]
    EmptyClientId,
    /// The client id has an empty part or more than two parts.
    #[error("MQTT client id \"{0}\" is not \"{{deviceId}}\" or \"{{deviceId}}/{{moduleId}}\"")]
    BadClientId(String),
    /// The CONNECT has no username.
    #[error(
        "MQTT CONNECT has no username; use \"{{hub}}/{{deviceId}}[/{{moduleId}}]/?api-version=...\""
    )]
    MissingUsername,
    /// The username does not have the IoT Hub shape.
    #[error("MQTT username \"{username}\" is malformed: {reason}")]
    BadUsername {
        /// The username as sent.
        username: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The username names another identity than the client id.
    #[error("MQTT username is for \"{username_identity}\" but the client id is \"{client_id}\"")]
    IdentityMismatch {
        /// Identity from the username.
        username_identity: String,
        /// Client id as sent.
        client_id: String,
    },
}

/// An MQTT topic or topic filter is not one IoT Hub defines, or is malformed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TopicError {
    /// No IoT Hub topic family starts like this.
    #[error("topic \"{0}\" is not an IoT Hub topic")]
    Unknown(String),
    /// The topic belongs to a family but a part is wrong.
    #[error("topic \"{topic}\" is malformed: {reason}")]
    Malformed {
        /// The topic as received.
        topic: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl TopicError {
    pub(crate) fn malformed(topic: &str, reason: &'static str) -> Self {
        Self::Malformed {
            topic: topic.to_owned(),
            reason,
        }
    }
}

/// A twin document or patch breaks the IoT Hub rules (reference §3.3).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TwinError {
    /// The patch is not a JSON object.
    #[error("twin patch must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The body is not JSON.
    #[error("twin patch is not valid JSON: {0}")]
    InvalidJson(String),
    /// A property name is not allowed.
    #[error("twin property name \"{key}\" at {path}: {reason}")]
    BadKey {
        /// JSON path of the parent.
        path: String,
        /// The offending name (truncated to 64 characters).
        key: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Objects nest deeper than allowed.
    #[error("twin document at {path} nests deeper than {max} levels")]
    TooDeep {
        /// JSON path where the limit was crossed.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A value is not allowed.
    #[error("twin value at {path}: {reason}")]
    BadValue {
        /// JSON path of the value.
        path: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The section would grow past its size limit.
    #[error("twin {section} would be {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// `tags`, `desired` or `reported`.
        section: &'static str,
        /// Size after the patch.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// `If-Match` named an older etag.
    #[error("twin etag {given} does not match the current etag {current}")]
    EtagMismatch {
        /// The etag the caller sent.
        given: String,
        /// The twin's etag.
        current: String,
    },
}

/// Any error of this crate.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    /// See [`KeyError`].
    #[error(transparent)]
    Key(#[from] KeyError),
    /// See [`SasError`].
    #[error(transparent)]
    Sas(#[from] SasError),
    /// See [`ConnectionStringError`].
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// See [`ConnectError`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// See [`TopicError`].
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// See [`TwinError`].
    #[error(transparent)]
    Twin(#[from] TwinError),
}

/// Result with this crate's umbrella error by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
