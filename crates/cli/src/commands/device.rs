//! `ironedge device …`: device identities on a hub.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::hub::{ConnectArgs, block_on, print_json};

/// Subcommands of `ironedge device`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Create a device identity (keys are generated unless given).
    Create {
        /// Device id.
        id: String,
        /// An IoT Edge device (gets `$edgeAgent` and `$edgeHub` module identities).
        #[arg(long)]
        edge: bool,
        /// Primary key (base64, 16–64 bytes).
        #[arg(long, requires = "secondary_key")]
        primary_key: Option<String>,
        /// Secondary key (base64, 16–64 bytes).
        #[arg(long, requires = "primary_key")]
        secondary_key: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// List devices.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        top: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Show one device identity as JSON.
    Show {
        /// Device id.
        id: String,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Delete a device, its modules, twins and queued messages.
    Delete {
        /// Device id.
        id: String,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Print a device (or module) connection string for the Azure device SDKs.
    ConnectionString {
        /// Device id.
        id: String,
        /// A module of the device instead.
        #[arg(long)]
        module: Option<String>,
        /// `GatewayHostName` to add: the name the device dials (must be in the hub certificate).
        #[arg(long)]
        gateway: Option<String>,
        /// Use the secondary key.
        #[arg(long)]
        secondary: bool,
        #[command(flatten)]
        hub: ConnectArgs,
    },
}

/// Runs a `device` subcommand.
pub(crate) fn run(cmd: DeviceCommand) -> Result<ExitCode> {
    block_on(async move {
        match cmd {
            DeviceCommand::Create { id, edge, primary_key, secondary_key, disabled, hub } => {
                let mut body = json!({
                    "deviceId": id,
                    "status": if disabled { "disabled" } else { "enabled" },
                    "capabilities": {"iotEdge": edge},
                });
                if let (Some(p), Some(s)) = (primary_key, secondary_key) {
                    body["authentication"] =
                        json!({"type": "sas", "symmetricKey": {"primaryKey": p, "secondaryKey": s}});
                }
                let created = hub.client()?.put(&format!("/devices/{}", enc(&id)), &body, false).await?;
                print_json(&created);
            }
            DeviceCommand::List { top, json, hub } => {
                let list = hub.client()?.get(&format!("/devices?top={top}")).await?;
                if json {
                    print_json(&list);
                } else {
                    print_table(&list);
                }
            }
            DeviceCommand::Show { id, hub } => print_json(&hub.client()?.get(&format!("/devices/{}", enc(&id))).await?),
            DeviceCommand::Delete { id, hub } => {
                hub.client()?.delete(&format!("/devices/{}", enc(&id))).await?;
                say(&format!("deleted device {id}"));
            }
            DeviceCommand::ConnectionString { id, module, gateway, secondary, hub } => {
                let client = hub.client()?;
                let path = match &module {
                    Some(m) => format!("/devices/{}/modules/{}", enc(&id), enc(m)),
                    None => format!("/devices/{}", enc(&id)),
                };
                let identity = client.get(&path).await?;
                let which = if secondary { "secondaryKey" } else { "primaryKey" };
                let Some(key) = identity.pointer(&format!("/authentication/symmetricKey/{which}")).and_then(Value::as_str)
                else {
                    bail!("{path} has no symmetric key (authentication type {})", identity.pointer("/authentication/type").unwrap_or(&Value::Null));
                };
                // Devices dial HostName:8883, so the REST port does not belong in it.
                let host = client.host_name().split(':').next().unwrap_or_default();
                let mut cs = format!("HostName={host};DeviceId={id}");
                if let Some(m) = &module {
                    cs.push_str(&format!(";ModuleId={m}"));
                }
                cs.push_str(&format!(";SharedAccessKey={key}"));
                if let Some(g) = gateway {
                    cs.push_str(&format!(";GatewayHostName={g}"));
                }
                say(&cs);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .context("device command failed")
}

/// Percent-encodes an id for a URL path segment.
pub(crate) fn enc(id: &str) -> String {
    ironedge_protocol::encode_component(id).into_owned()
}

pub(crate) fn say(line: &str) {
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}

fn print_table(list: &Value) {
    let rows = list.as_array().cloned().unwrap_or_default();
    say(&format!(
        "{:<40} {:<9} {:<5} {:<13} {}",
        "DEVICE", "STATUS", "EDGE", "CONNECTION", "LAST ACTIVITY"
    ));
    for d in rows {
        let s = |p: &str| {
            d.pointer(p)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default()
        };
        say(&format!(
            "{:<40} {:<9} {:<5} {:<13} {}",
            s("/deviceId"),
            s("/status"),
            s("/capabilities/iotEdge"),
            s("/connectionState"),
            s("/lastActivityTime")
        ));
    }
}
