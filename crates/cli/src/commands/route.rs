//! `ironedge route …`: test routes and evaluate conditions against messages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// Subcommands of `ironedge route`.
#[derive(Debug, Subcommand)]
pub(crate) enum RouteCommand {
    /// Test one route against one message.
    Test {
        /// The route, `FROM … WHERE … INTO …`.
        #[arg(long)]
        route: String,
        /// The message as JSON (see README "Message JSON").
        #[arg(long)]
        message: PathBuf,
    },
    /// Evaluate conditions or routes given as JSON lines on stdin.
    Eval {
        /// Read JSON lines from stdin, write one JSON line per input.
        #[arg(long)]
        jsonl: bool,
    },
}

/// Runs a `route` subcommand.
pub(crate) fn run(cmd: RouteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RouteCommand::Test { .. } | RouteCommand::Eval { .. } => {
            anyhow::bail!("not implemented yet")
        }
    }
}
