//! The twin offline cache (`reference/iotedge-runtime.md` §3.9): pure logic over twin documents.
//!
//! - Reported patches are validated, merged into the cached twin, acknowledged locally at once
//!   and queued for upstream; queued patches for one identity coalesce into one.
//! - GET is served from the cloud when online and the cache is stale, otherwise from the cache.
//! - After reconnecting, a fresh twin is compared with the cached one and a synthetic desired
//!   patch is pushed to the module when the desired version moved.

mod cache;

pub use cache::{
    MAX_REPORTED_PATCH_BYTES, TwinDoc, TwinError, compose_patches, diff, parse_reported_patch,
};
