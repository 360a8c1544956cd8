//! Packet identifiers of a client connection: a fixed set of slots, each free or holding the
//! waiter of one unacknowledged PUBLISH or SUBSCRIBE. The number of slots is the connection's
//! window of unacknowledged packets.

use std::collections::VecDeque;

/// Packet-id slots holding one waiter `W` each.
#[derive(Debug)]
pub(crate) struct Slots<W> {
    /// `waiting[pkid - 1]`.
    waiting: Vec<Option<W>>,
    /// Free ids, least recently freed first, so an id is reused as late as possible (a late or
    /// duplicate ack then finds its slot empty rather than completing a newer packet).
    free: VecDeque<u16>,
}

impl<W> Slots<W> {
    /// `size` slots (at least one), ids `1..=size`.
    pub(crate) fn new(size: u16) -> Self {
        let size = size.max(1);
        Self {
            waiting: (0..size).map(|_| None).collect(),
            free: (1..=size).collect(),
        }
    }

    /// True when a packet can be sent now.
    pub(crate) fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a free id for `waiter`; `None` when every slot is in use.
    pub(crate) fn take(&mut self, waiter: W) -> Option<u16> {
        let pkid = self.free.pop_front()?;
        if let Some(slot) = self.waiting.get_mut(usize::from(pkid) - 1) {
            *slot = Some(waiter);
        }
        Some(pkid)
    }

    /// The waiter of `pkid`, freeing its slot; `None` for an id not in use.
    pub(crate) fn complete(&mut self, pkid: u16) -> Option<W> {
        let slot = self.waiting.get_mut(usize::from(pkid).checked_sub(1)?)?;
        let waiter = slot.take()?;
        self.free.push_back(pkid);
        Some(waiter)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_run_out_at_the_window_and_come_back_when_acknowledged() {
        let mut slots = Slots::new(3);
        assert_eq!(slots.take('a'), Some(1));
        assert_eq!(slots.take('b'), Some(2));
        assert_eq!(slots.take('c'), Some(3));
        assert!(!slots.has_room());
        assert_eq!(slots.take('d'), None);
        assert_eq!(slots.complete(2), Some('b'));
        assert_eq!(slots.take('e'), Some(2));
    }

    #[test]
    fn unknown_zero_and_repeated_acks_complete_nothing() {
        let mut slots = Slots::new(2);
        let id = slots.take(1u8).unwrap();
        assert_eq!(slots.complete(0), None);
        assert_eq!(slots.complete(9), None);
        assert_eq!(slots.complete(2), None);
        assert_eq!(slots.complete(id), Some(1));
        assert_eq!(slots.complete(id), None);
        assert!(slots.has_room());
    }

    #[test]
    fn freed_ids_are_reused_last() {
        let mut slots = Slots::new(3);
        let a = slots.take(()).unwrap();
        slots.complete(a);
        // 2 and 3 were free longer than 1.
        assert_eq!(slots.take(()), Some(2));
        assert_eq!(slots.take(()), Some(3));
        assert_eq!(slots.take(()), Some(1));
    }

    #[test]
    fn a_zero_sized_window_still_holds_one_packet() {
        let mut slots = Slots::new(0);
        assert_eq!(slots.take(()), Some(1));
        assert!(!slots.has_room());
    }
}
