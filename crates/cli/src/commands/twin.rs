//! `ironedge twin …`: read and update device and module twins.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::device::enc;
use super::hub::{ConnectArgs, block_on, print_json};

/// Subcommands of `ironedge twin`.
#[derive(Debug, Subcommand)]
pub(crate) enum TwinCommand {
    /// Show a twin as JSON.
    Show {
        /// Device id.
        device: String,
        /// A module twin instead.
        #[arg(long)]
        module: Option<String>,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Merge-patch tags and desired properties (`null` deletes a key).
    Update {
        /// Device id.
        device: String,
        /// A module twin instead.
        #[arg(long)]
        module: Option<String>,
        /// Tags patch (JSON object, or @file).
        #[arg(long)]
        tags: Option<String>,
        /// Desired-properties patch (JSON object, or @file).
        #[arg(long)]
        desired: Option<String>,
        /// Only update if the twin still has this etag.
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        hub: ConnectArgs,
    },
}

fn json_arg(name: &str, v: &str) -> Result<Value> {
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => v.to_owned(),
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("--{name} is not JSON"))?;
    if !value.is_object() {
        bail!("--{name} must be a JSON object");
    }
    Ok(value)
}

fn path(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("/twins/{}/modules/{}", enc(device), enc(m)),
        None => format!("/twins/{}", enc(device)),
    }
}

/// Runs a `twin` subcommand.
pub(crate) fn run(cmd: TwinCommand) -> Result<ExitCode> {
    block_on(async move {
        match cmd {
            TwinCommand::Show {
                device,
                module,
                hub,
            } => {
                print_json(&hub.client()?.get(&path(&device, module.as_deref())).await?);
            }
            TwinCommand::Update {
                device,
                module,
                tags,
                desired,
                etag,
                hub,
            } => {
                if tags.is_none() && desired.is_none() {
                    bail!("give --tags and/or --desired");
                }
                let mut patch = json!({});
                if let Some(t) = tags {
                    patch["tags"] = json_arg("tags", &t)?;
                }
                if let Some(d) = desired {
                    patch["properties"] = json!({"desired": json_arg("desired", &d)?});
                }
                let if_match = format!("\"{}\"", etag.as_deref().unwrap_or("*"));
                let reply = hub
                    .client()?
                    .call(
                        Method::PATCH,
                        &path(&device, module.as_deref()),
                        Some(&patch),
                        &[("If-Match", &if_match)],
                    )
                    .await?;
                print_json(&reply.body);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
