//! Timestamps as IoT Hub writes them: ISO-8601 UTC with milliseconds and a `Z`.

use jiff::Timestamp;

/// IoT Hub's "never" (`statusUpdateTime` of a device that never changed status).
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// Formats `ts` as `2016-03-30T16:24:48.789Z`.
pub fn iso(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Milliseconds since the Unix epoch, the form timestamps are stored and filtered in.
pub fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

/// The timestamp for `ms` milliseconds since the epoch (clamped into jiff's range).
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds_and_z() {
        let ts = from_millis(1_459_355_088_789);
        assert_eq!(iso(ts), "2016-03-30T16:24:48.789Z");
    }
}
