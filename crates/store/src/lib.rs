//! Durable per-endpoint message queues and key-value state on redb: the edge hub's
//! store-and-forward (`iotedge-runtime.md` §3.7) and its offline caches (§3.9).
//!
//! - A message is stored once and referenced by every endpoint it is routed to, each with its
//!   own priority and TTL. An endpoint reads in order of priority (lower first), then arrival,
//!   and acknowledges what it delivered: at-least-once, and nothing is lost across a crash.
//! - [`StoreHandle`] batches concurrent writes into one transaction and one fsync (group
//!   commit); each caller's future resolves only after its own write is durable.
//! - Expired messages are never delivered and are counted; a byte quota evicts the oldest.
//! - Typed key-value tables ([`TWINS`], [`IDENTITIES`], [`UPSTREAM_CHECKPOINTS`]) and an
//!   ordered queue ([`REPORTED_PATCHES`]) hold the rest of the edge hub's durable state.
//!
//! `DESIGN.md` beside this crate describes the table layout, the commit protocol and the crash
//! guarantees.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ironedge_store::{Config, NewMessage, PeekOptions, StoreHandle, SystemClock, Target};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ironedge_store::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("edgehub.redb");
//! let store = StoreHandle::open(path, Config::default(), Arc::new(SystemClock))?;
//! store.add_endpoint("iothub").await?;
//!
//! // Resolves once the message is durably committed: the broker may PUBACK now.
//! let target = Target::new("iothub").with_priority(0).with_ttl(Duration::from_secs(7200));
//! store.append(NewMessage::new(&b"{\"temp\":21}"[..], vec![target])).await?;
//!
//! // The upstream pump reads a batch, sends it, then acknowledges it.
//! let batch = store.peek("iothub", PeekOptions::head(100)).await?;
//! assert_eq!(batch.deliveries.len(), 1);
//! let last = batch.deliveries[0].offset;
//! store.ack_through("iothub", last).await?;
//! assert_eq!(store.stats().endpoints["iothub"].len, 0);
//! store.close().await?;
//! # Ok(())
//! # }
//! ```

mod blobs;
mod clock;
mod config;
mod error;
mod handle;
mod kv;
mod message;
mod reader;
mod records;
mod state;
mod stats;
mod store;
mod tables;
mod transaction;
mod verify;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{Config, QuotaPolicy};
pub use error::{
    AckError, AppendError, EndpointError, Error, KvError, OpenError, PeekError, Result,
    StorageError, VerifyError,
};
pub use handle::{StoreHandle, WriterStats};
pub use kv::{KvQueue, KvTable, KvWrite};
pub use message::{
    Appended, DEFAULT_PRIORITY, Delivery, NewMessage, Offset, PeekOptions, Peeked, ReadCursor,
    Target,
};
pub use reader::Reader;
pub use records::{
    CachedIdentity, CachedTwin, IDENTITIES, IdentityCredentials, PendingReportedPatch,
    REPORTED_PATCHES, TWINS, UPSTREAM_CHECKPOINTS,
};
pub use stats::{EndpointStats, StoreStats};
pub use store::Store;
pub use transaction::Tx;
