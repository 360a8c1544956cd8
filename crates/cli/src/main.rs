//! `ironedge`: one binary for every ironedge component and the user tools.

mod commands;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// IoT Edge on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ironedge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with IoT Edge deployment manifests (validate).
    #[command(subcommand)]
    Manifest(commands::manifest::ManifestCommand),
    /// Test and evaluate IoT Hub routes and conditions.
    #[command(subcommand)]
    Route(commands::route::RouteCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Command::Manifest(cmd) => commands::manifest::run(cmd),
        Command::Route(cmd) => commands::route::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}
