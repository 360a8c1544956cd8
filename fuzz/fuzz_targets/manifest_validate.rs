//! `ironedge_model::validate` on any bytes: never panics; an error list is never empty, every
//! error prints as `path: reason` with a path that points into the document; bytes and the JSON
//! they parse to validate alike; a valid manifest survives `to_value` → `from_value` unchanged.
#![no_main]

#[path = "../common/manifest.rs"]
mod manifest;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| manifest::check_bytes(data));
