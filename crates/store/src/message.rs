//! What goes into an endpoint queue and what comes out of it.
//!
//! A message is stored once; each endpoint it is routed to holds a reference with its own
//! priority and expiry. An endpoint queue is ordered by priority (lower number first) and then by
//! arrival, so a reference's position in its queue is an [`Offset`] `(priority, seq)`, where `seq`
//! is the message's store-wide arrival number.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::Timestamp;

/// The priority IoT Edge gives routes that do not set one (`RouteFactory.DefaultPriority`).
pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

/// A message to append: the payload is stored once and referenced by every target endpoint.
#[derive(Clone)]
pub struct NewMessage {
    /// The bytes to store; opaque to the store (the edge hub's encoded message).
    pub payload: Bytes,
    /// The endpoints the message is routed to.
    pub targets: Vec<Target>,
}

impl NewMessage {
    /// A message routed to `targets`.
    pub fn new(payload: impl Into<Bytes>, targets: Vec<Target>) -> Self {
        Self {
            payload: payload.into(),
            targets,
        }
    }
}

impl fmt::Debug for NewMessage {
    // Payloads are user data: log their size, never their content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("payload_len", &self.payload.len())
            .field("targets", &self.targets)
            .finish()
    }
}

/// One endpoint a message is routed to, with that route's priority and time to live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The endpoint's name (for example `iothub` or `device/module/input`).
    pub endpoint: String,
    /// Lower numbers are delivered first; IoT Edge routes use 0–9 and [`DEFAULT_PRIORITY`].
    pub priority: u32,
    /// How long the message may wait in this endpoint's queue; `None` keeps it until consumed.
    pub ttl: Option<Duration>,
}

impl Target {
    /// A target at [`DEFAULT_PRIORITY`] that never expires.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            priority: DEFAULT_PRIORITY,
            ttl: None,
        }
    }

    /// The same target with `priority`.
    #[must_use]
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The same target expiring `ttl` after the message is appended.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// What an append returns once the message is durably committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The message's store-wide arrival number, also the `seq` of its offsets.
    pub seq: u64,
    /// When the store enqueued it.
    pub enqueued_at: Timestamp,
}

/// The position of a message in one endpoint's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    /// The priority the message was routed to this endpoint with.
    pub priority: u32,
    /// The message's store-wide arrival number.
    pub seq: u64,
}

impl Offset {
    /// An offset.
    pub const fn new(priority: u32, seq: u64) -> Self {
        Self { priority, seq }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.priority, self.seq)
    }
}

/// A message read from an endpoint queue; it stays queued until acknowledged.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where it sits in the endpoint's queue; pass it back to acknowledge.
    pub offset: Offset,
    /// When the store enqueued it.
    pub enqueued_at: Timestamp,
    /// When it expires in this endpoint's queue, if ever.
    pub expires_at: Option<Timestamp>,
    /// The stored bytes.
    pub payload: Bytes,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("offset", &self.offset)
            .field("enqueued_at", &self.enqueued_at)
            .field("expires_at", &self.expires_at)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// How much to read in one [`peek`](crate::Reader::peek).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeekOptions {
    /// At most this many messages.
    pub max_messages: usize,
    /// At most this many payload bytes, except that one message is returned even if larger.
    pub max_bytes: usize,
    /// Start after this offset instead of at the head of the queue. New messages of a more urgent
    /// priority sort before the cursor: a consumer that wants strict priority order starts from
    /// the head again after each acknowledged batch, as IoT Edge's pump does.
    pub after: Option<Offset>,
}

impl PeekOptions {
    /// Up to `max_messages` from the head of the queue, with no byte limit.
    pub const fn head(max_messages: usize) -> Self {
        Self {
            max_messages,
            max_bytes: usize::MAX,
            after: None,
        }
    }

    /// The same options with a byte limit.
    #[must_use]
    pub const fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same options starting after `offset`.
    #[must_use]
    pub const fn after(mut self, offset: Offset) -> Self {
        self.after = Some(offset);
        self
    }
}

/// How far a consumer has read each priority of an endpoint queue. A peek past a cursor
/// ([`Reader::peek_past`](crate::Reader::peek_past)) returns only messages after it, in queue
/// order, so a consumer can keep reading while earlier deliveries still wait for their
/// acknowledgement, and a message of a more urgent priority that arrives meanwhile is still
/// read first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadCursor {
    last: BTreeMap<u32, u64>,
}

impl ReadCursor {
    /// A cursor before everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` has been read.
    pub fn advance(&mut self, offset: Offset) {
        let last = self.last.entry(offset.priority).or_insert(offset.seq);
        *last = (*last).max(offset.seq);
    }

    /// True when `offset` lies at or before the cursor of its priority.
    pub fn covers(&self, offset: Offset) -> bool {
        self.last
            .get(&offset.priority)
            .is_some_and(|&last| offset.seq <= last)
    }

    /// The last seq read at `priority`, if any.
    pub fn last(&self, priority: u32) -> Option<u64> {
        self.last.get(&priority).copied()
    }

    /// Forgets everything: the next peek starts at the head of the queue.
    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// True when nothing has been read.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The result of a peek.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peeked {
    /// Live messages in queue order.
    pub deliveries: Vec<Delivery>,
    /// Expired messages passed over (never delivered; removed by the next write or sweep).
    pub skipped_expired: usize,
}
