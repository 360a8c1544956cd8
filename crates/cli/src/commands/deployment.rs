//! `ironedge deployment …`: automatic and layered deployments (IoT Hub configurations).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::deploy::read_modules_content;
use super::device::{enc, say};
use super::hub::{ConnectArgs, block_on, print_json};

/// Subcommands of `ironedge deployment`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentCommand {
    /// Create a deployment targeting the edge devices a condition selects.
    Create {
        /// Deployment id (lower case).
        id: String,
        /// Manifest file (`{"modulesContent": …}`); for `--layered`, entries like
        /// `"$edgeAgent": {"properties.desired.modules.x": …}`.
        #[arg(long)]
        content: PathBuf,
        /// Which devices, e.g. `tags.env='prod'` (`*` for all edge devices).
        #[arg(long, default_value = "*")]
        target_condition: String,
        /// Higher wins; layered deployments need more than the base deployment.
        #[arg(long, default_value_t = 0)]
        priority: i64,
        /// A layered deployment, merged on top of the base deployment.
        #[arg(long)]
        layered: bool,
        /// Labels, `key=value`.
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        /// Custom metrics, `name=SELECT deviceId FROM devices WHERE …`.
        #[arg(long = "metric", value_parser = parse_pair)]
        metrics: Vec<(String, String)>,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// List deployments with their metrics.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Show one deployment as JSON (with fresh metrics).
    Show {
        /// Deployment id.
        id: String,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Delete a deployment (devices keep the modules it deployed).
    Delete {
        /// Deployment id.
        id: String,
        #[command(flatten)]
        hub: ConnectArgs,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

fn is_layered(mc: &Value) -> bool {
    mc.as_object().is_some_and(|m| {
        m.values().any(|e| {
            e.as_object()
                .is_some_and(|o| o.keys().any(|k| k.starts_with("properties.desired.")))
        })
    })
}

/// Runs a `deployment` subcommand.
pub(crate) fn run(cmd: DeploymentCommand) -> Result<ExitCode> {
    block_on(async move {
        match cmd {
            DeploymentCommand::Create {
                id,
                content,
                target_condition,
                priority,
                layered,
                labels,
                metrics,
                hub,
            } => {
                let mc = read_modules_content(&content, false)?;
                if layered != is_layered(&mc) {
                    if layered {
                        bail!(
                            "--layered needs module entries keyed properties.desired.<path> in {}",
                            content.display()
                        );
                    }
                    bail!(
                        "{} has properties.desired.<path> entries: add --layered",
                        content.display()
                    );
                }
                if !layered {
                    read_modules_content(&content, true)?;
                }
                let labels: Map<String, Value> =
                    labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
                let queries: Map<String, Value> =
                    metrics.into_iter().map(|(k, v)| (k, json!(v))).collect();
                let body = json!({
                    "id": id,
                    "schemaVersion": "1.0",
                    "labels": labels,
                    "content": {"modulesContent": mc},
                    "targetCondition": target_condition,
                    "priority": priority,
                    "metrics": {"queries": queries},
                });
                print_json(
                    &hub.client()?
                        .put(&format!("/configurations/{}", enc(&id)), &body, false)
                        .await?,
                );
            }
            DeploymentCommand::List { json, hub } => {
                let list = hub.client()?.get("/configurations").await?;
                if json {
                    print_json(&list);
                } else {
                    say(&format!(
                        "{:<32} {:>8} {:>9} {:>8}  {}",
                        "DEPLOYMENT", "PRIORITY", "TARGETED", "APPLIED", "TARGET CONDITION"
                    ));
                    for c in list.as_array().cloned().unwrap_or_default() {
                        let n = |p: &str| c.pointer(p).and_then(Value::as_i64).unwrap_or(0);
                        say(&format!(
                            "{:<32} {:>8} {:>9} {:>8}  {}",
                            c["id"].as_str().unwrap_or_default(),
                            n("/priority"),
                            n("/systemMetrics/results/targetedCount"),
                            n("/systemMetrics/results/appliedCount"),
                            c["targetCondition"].as_str().unwrap_or_default()
                        ));
                    }
                }
            }
            DeploymentCommand::Show { id, hub } => {
                print_json(
                    &hub.client()?
                        .get(&format!("/configurations/{}", enc(&id)))
                        .await?,
                );
            }
            DeploymentCommand::Delete { id, hub } => {
                hub.client()?
                    .delete(&format!("/configurations/{}", enc(&id)))
                    .await?;
                say(&format!("deleted deployment {id}"));
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
