//! `ironedge crd`: print the EdgeDeployment CRD, so that `ironedge crd | kubectl apply -f -`
//! installs it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

/// Arguments of `ironedge crd`.
#[derive(Debug, Args)]
pub(crate) struct CrdArgs {}

/// Prints the CRD as YAML on stdout.
pub(crate) fn run(_args: CrdArgs) -> anyhow::Result<ExitCode> {
    let yaml = ironedge_controller::crd::crd_yaml();
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("cannot write the CRD to stdout")?;
    Ok(ExitCode::SUCCESS)
}
