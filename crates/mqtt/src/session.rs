//! Per-connection protocol state without I/O (rumqttc `state.rs` style): packets and
//! application events go in, packets to send come out.
//!
//! Inbound QoS 1: the application acks each PUBLISH asynchronously (the edge hub only after its
//! store commit), possibly out of order; PUBACKs still leave in arrival order (MQTT-4.6.0-2).
//! Outbound QoS 1: packet ids are assigned from a window of `max_inflight`; unacked messages
//! survive in the session and are resent with DUP after a reconnect.

use crate::handle::OutboundMessage;
use rumqttc::mqttbytes::QoS;
use std::collections::VecDeque;

/// Sequence number of an inbound QoS 1 publish awaiting the application's ack.
pub(crate) type InboundSeq = u64;

/// State that outlives a connection when the client asked for a persistent session.
#[derive(Debug, Default)]
pub struct PersistedSession {
    /// Subscriptions granted, with their QoS.
    pub subscriptions: Vec<(String, QoS)>,
    pub(crate) inflight: VecDeque<Inflight>,
    pub(crate) queued: VecDeque<OutboundMessage>,
}

#[derive(Debug)]
pub(crate) struct Inflight {
    pub(crate) pkid: u16,
    pub(crate) message: OutboundMessage,
}

/// Protocol state of one connection.
#[derive(Debug)]
pub(crate) struct SessionState {
    inbound: VecDeque<(u16, bool)>,
    first_seq: InboundSeq,
    max_pending_inbound: usize,
    pub(crate) persisted: PersistedSession,
    next_pkid: u16,
    max_inflight: usize,
}

/// What to send for an outbound message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Send {
    pub(crate) pkid: u16,
    pub(crate) dup: bool,
}

impl SessionState {
    pub(crate) fn new(
        persisted: PersistedSession,
        max_pending_inbound: usize,
        max_inflight: usize,
    ) -> Self {
        Self {
            inbound: VecDeque::new(),
            first_seq: 0,
            max_pending_inbound: max_pending_inbound.max(1),
            persisted,
            next_pkid: 0,
            max_inflight: max_inflight.clamp(1, 65_535),
        }
    }

    /// Records an inbound QoS 1 publish; returns the sequence number its ack must carry.
    pub(crate) fn inbound_publish(&mut self, pkid: u16) -> InboundSeq {
        self.inbound.push_back((pkid, false));
        self.first_seq + self.inbound.len() as u64 - 1
    }

    /// True while more inbound publishes may be read without an ack.
    pub(crate) fn can_read(&self) -> bool {
        self.inbound.len() < self.max_pending_inbound
    }

    /// Inbound publishes still waiting for the application.
    pub(crate) fn pending_inbound(&self) -> usize {
        self.inbound.len()
    }

    /// Marks `seq` acked and returns the packet ids that may now be PUBACKed, in order.
    pub(crate) fn inbound_acked(&mut self, seq: InboundSeq, out: &mut Vec<u16>) {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.inbound.get_mut(i))
        {
            entry.1 = true;
        }
        while let Some(&(pkid, true)) = self.inbound.front() {
            self.inbound.pop_front();
            self.first_seq += 1;
            out.push(pkid);
        }
    }

    /// True while a QoS 1 message may be sent now.
    pub(crate) fn window_open(&self) -> bool {
        self.persisted.inflight.len() < self.max_inflight
    }

    /// Takes the next queued message if the window allows.
    pub(crate) fn next_queued(&mut self) -> Option<OutboundMessage> {
        if self.window_open() {
            self.persisted.queued.pop_front()
        } else {
            None
        }
    }

    /// Queues a message that could not be sent yet.
    pub(crate) fn queue(&mut self, message: OutboundMessage) {
        self.persisted.queued.push_back(message);
    }

    /// Allocates a packet id for an outbound QoS 1 message.
    pub(crate) fn allocate_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            let pkid = self.next_pkid;
            if !self.persisted.inflight.iter().any(|i| i.pkid == pkid) {
                return pkid;
            }
        }
    }

    /// Keeps a sent QoS 1 message until its PUBACK.
    pub(crate) fn track(&mut self, pkid: u16, message: OutboundMessage) {
        self.persisted
            .inflight
            .push_back(Inflight { pkid, message });
    }

    /// Handles a PUBACK from the client; returns the acked message, or `None` for an unknown id.
    pub(crate) fn puback(&mut self, pkid: u16) -> Option<OutboundMessage> {
        let index = self
            .persisted
            .inflight
            .iter()
            .position(|i| i.pkid == pkid)?;
        self.persisted.inflight.remove(index).map(|i| i.message)
    }

    /// Inflight messages to resend with DUP after a session resumes.
    pub(crate) fn retransmissions(&self) -> impl Iterator<Item = (Send, &OutboundMessage)> {
        self.persisted.inflight.iter().map(|i| {
            (
                Send {
                    pkid: i.pkid,
                    dup: true,
                },
                &i.message,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn state() -> SessionState {
        SessionState::new(PersistedSession::default(), 3, 2)
    }

    fn send(s: &mut SessionState, qos: QoS) -> Send {
        let pkid = s.allocate_pkid();
        s.track(pkid, msg(qos));
        Send { pkid, dup: false }
    }

    fn msg(qos: QoS) -> OutboundMessage {
        OutboundMessage::new("t".into(), Bytes::from_static(b"x"), qos)
    }

    #[test]
    fn out_of_order_acks_release_pubacks_in_arrival_order() {
        let mut s = state();
        let a = s.inbound_publish(10);
        let b = s.inbound_publish(11);
        let c = s.inbound_publish(12);
        assert!(!s.can_read(), "window of 3 is full");
        let mut out = Vec::new();
        s.inbound_acked(b, &mut out);
        assert!(out.is_empty(), "11 must wait for 10");
        s.inbound_acked(a, &mut out);
        assert_eq!(out, [10, 11]);
        s.inbound_acked(c, &mut out);
        assert_eq!(out, [10, 11, 12]);
        assert!(s.can_read());
        s.inbound_acked(c, &mut out);
        s.inbound_acked(999, &mut out);
        assert_eq!(out.len(), 3, "stale or unknown acks are ignored");
    }

    #[test]
    fn inflight_window_limits_qos1_and_puback_frees_it() {
        let mut s = state();
        let first = send(&mut s, QoS::AtLeastOnce);
        let second = send(&mut s, QoS::AtLeastOnce);
        assert_ne!(first.pkid, second.pkid);
        assert!(!s.window_open());
        s.queue(msg(QoS::AtLeastOnce));
        assert!(s.next_queued().is_none());
        assert!(s.puback(first.pkid).is_some());
        assert!(
            s.puback(first.pkid).is_none(),
            "a duplicate PUBACK is unknown"
        );
        assert!(s.next_queued().is_some());
    }

    #[test]
    fn unacked_messages_are_resent_with_dup_after_resume() {
        let mut s = state();
        let sent = send(&mut s, QoS::AtLeastOnce);
        let resumed = SessionState::new(std::mem::take(&mut s.persisted), 3, 2);
        let resent: Vec<_> = resumed.retransmissions().map(|(s, _)| s).collect();
        assert_eq!(
            resent,
            [Send {
                pkid: sent.pkid,
                dup: true
            }]
        );
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut s = SessionState::new(PersistedSession::default(), 1, 65_535);
        s.next_pkid = u16::MAX - 1;
        let a = send(&mut s, QoS::AtLeastOnce);
        let b = send(&mut s, QoS::AtLeastOnce);
        assert_eq!((a.pkid, b.pkid), (u16::MAX, 1));
        s.next_pkid = 0;
        let c = send(&mut s, QoS::AtLeastOnce);
        assert_eq!(c.pkid, 2, "1 is still inflight");
    }
}
