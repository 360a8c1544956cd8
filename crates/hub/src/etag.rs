//! ETags as IoT Hub shapes them: identities carry base64 of a decimal counter (`"MQ=="`), twins
//! base64 of an 8-byte big-endian counter (`"AAAAAAAAAAE="`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Etag of an identity or configuration at update counter `revision`.
pub fn identity(revision: u64) -> String {
    B64.encode(revision.to_string())
}

/// Etag of a twin at twin version `version`.
pub fn twin(version: u64) -> String {
    B64.encode(version.to_be_bytes())
}

/// The header form: the etag in double quotes.
pub fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_the_shapes_iot_hub_returns() {
        assert_eq!(identity(1), "MQ==");
        assert_eq!(twin(1), "AAAAAAAAAAE=");
        assert_eq!(quoted("MQ=="), "\"MQ==\"");
    }
}
