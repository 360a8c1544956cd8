//! One module per top-level subcommand; each exposes its clap enum and a `run` function.

pub(crate) mod manifest;
pub(crate) mod route;
