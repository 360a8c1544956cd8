//! `ironedge deploy set-modules`: put a deployment manifest on one edge device
//! (`applyConfigurationContent`, like `az iot edge set-modules`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::device::{enc, say};
use super::hub::{ConnectArgs, block_on};

/// Subcommands of `ironedge deploy`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeployCommand {
    /// Set the modules of one edge device from a deployment manifest.
    SetModules {
        /// The edge device.
        #[arg(long)]
        device: String,
        /// Manifest file: `{"modulesContent": …}` or a configuration's `{"content": {"modulesContent": …}}`.
        manifest: PathBuf,
        #[command(flatten)]
        hub: ConnectArgs,
    },
}

/// Reads a manifest file and returns its `modulesContent`, refusing what the agent would refuse.
pub(crate) fn read_modules_content(path: &PathBuf, validate: bool) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let mc = doc
        .get("modulesContent")
        .or_else(|| doc.pointer("/content/modulesContent"))
        .cloned()
        .with_context(|| {
            format!(
                "{} has neither modulesContent nor content.modulesContent",
                path.display()
            )
        })?;
    if validate && let Err(errors) = ironedge_model::validate(&bytes).into_result() {
        bail!(
            "{} is not a valid deployment manifest:\n{errors}",
            path.display()
        );
    }
    Ok(mc)
}

/// Runs a `deploy` subcommand.
pub(crate) fn run(cmd: DeployCommand) -> Result<ExitCode> {
    block_on(async move {
        match cmd {
            DeployCommand::SetModules {
                device,
                manifest,
                hub,
            } => {
                let mc = read_modules_content(&manifest, true)?;
                let modules = mc.as_object().map(|m| m.len()).unwrap_or(0);
                hub.client()?
                    .post(
                        &format!("/devices/{}/applyConfigurationContent", enc(&device)),
                        &json!({"modulesContent": mc}),
                    )
                    .await?;
                say(&format!(
                    "set {modules} module twins of {device} from {}",
                    manifest.display()
                ));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
