//! Jitter for the reconnect back-off ([`ironedge_protocol::Backoff`]).

/// A little randomness for jitter without a generator: the clock's sub-second nanoseconds.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}
