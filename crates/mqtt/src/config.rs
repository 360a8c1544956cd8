//! Server limits and timers.

use std::time::Duration;

/// Limits of an MQTT server; the defaults follow IoT Hub and edgeHub (reference §1.1, §1.2).
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Largest packet accepted (remaining length); bigger ones close the connection.
    pub max_packet_size: usize,
    /// Time allowed between accepting a socket and a complete CONNECT.
    pub connect_timeout: Duration,
    /// Upper bound of the keepalive timeout (1.5 × the client's keepalive, capped here).
    pub max_keepalive_timeout: Duration,
    /// Inbound QoS 1 publishes awaiting the application's ack before reading pauses.
    pub max_pending_inbound_acks: usize,
    /// Outbound QoS 1 publishes awaiting the client's PUBACK before delivery pauses.
    pub max_inflight: usize,
    /// Capacity of each connection's outbound queue; full queues push back on the sender.
    pub outbound_queue: usize,
    /// Time to wait for an old connection of the same identity to hand over its session.
    pub takeover_timeout: Duration,
    /// Time connections get to flush acks when the server shuts down.
    pub shutdown_grace: Duration,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(60),
            max_keepalive_timeout: Duration::from_secs(1767),
            max_pending_inbound_acks: 64,
            max_inflight: 32,
            outbound_queue: 1024,
            takeover_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl MqttConfig {
    /// Keepalive timeout for a client keepalive in seconds: 1.5 × keepalive, capped.
    ///
    /// A client that disables keepalive (0) gets the cap: IoT Hub never keeps a silent
    /// connection forever (it caps at 1767 s, edgeHub at 10 min; reference §1.2), and a
    /// half-open socket would otherwise hold its identity and memory until the server restarts.
    pub fn keepalive_timeout(&self, keep_alive_secs: u16) -> Duration {
        if keep_alive_secs == 0 {
            return self.max_keepalive_timeout;
        }
        Duration::from_millis(u64::from(keep_alive_secs) * 1500).min(self.max_keepalive_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_0_gets_the_cap_and_others_one_and_a_half_times_capped() {
        let c = MqttConfig::default();
        assert_eq!(c.keepalive_timeout(0), Duration::from_secs(1767));
        assert_eq!(c.keepalive_timeout(60), Duration::from_secs(90));
        assert_eq!(c.keepalive_timeout(1), Duration::from_millis(1500));
        assert_eq!(c.keepalive_timeout(u16::MAX), Duration::from_secs(1767));
    }
}
