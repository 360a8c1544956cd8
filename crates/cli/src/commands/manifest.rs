//! `ironedge manifest …`: validate deployment manifests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// Subcommands of `ironedge manifest`.
#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Validate a deployment manifest; exit 1 with every error (JSON path and reason).
    Validate {
        /// The manifest file (`{"modulesContent": …}` or a configuration's `{"content": …}`).
        file: PathBuf,
        /// Print the errors as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `manifest` subcommand.
pub(crate) fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Validate { .. } => anyhow::bail!("not implemented yet"),
    }
}
