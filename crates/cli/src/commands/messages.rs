//! `ironedge messages …`: follow the telemetry devices send to the hub, send C2D messages.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;

use super::device::{enc, say};
use super::hub::{ConnectArgs, block_on, print_json};

/// Subcommands of `ironedge messages`.
#[derive(Debug, Subcommand)]
pub(crate) enum MessagesCommand {
    /// Print device-to-cloud messages as they arrive (one JSON object per line).
    Tail {
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Only this module (with --device).
        #[arg(long, requires = "device")]
        module: Option<String>,
        /// Start at this sequence number (default: only new messages).
        #[arg(long)]
        from: Option<u64>,
        /// Only messages enqueued at or after this time (ISO-8601).
        #[arg(long)]
        since: Option<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Decode bodies as UTF-8 text into a `body` field.
        #[arg(long)]
        decode: bool,
        #[command(flatten)]
        hub: ConnectArgs,
    },
    /// Send a cloud-to-device message; with --wait, until the device completes it.
    Send {
        /// Device id.
        device: String,
        /// The body.
        body: String,
        /// Message id (generated when absent).
        #[arg(long)]
        message_id: Option<String>,
        /// Application properties, `key=value`.
        #[arg(long = "property")]
        properties: Vec<String>,
        /// Seconds to wait for completion.
        #[arg(long)]
        wait: Option<u64>,
        #[command(flatten)]
        hub: ConnectArgs,
    },
}

/// Runs a `messages` subcommand.
pub(crate) fn run(cmd: MessagesCommand) -> Result<ExitCode> {
    block_on(async move {
        match cmd {
            MessagesCommand::Tail {
                device,
                module,
                from,
                since,
                count,
                decode,
                hub,
            } => {
                let mut q = Vec::new();
                if let Some(d) = device {
                    q.push(format!("deviceId={}", enc(&d)));
                }
                if let Some(m) = module {
                    q.push(format!("moduleId={}", enc(&m)));
                }
                if let Some(f) = from {
                    q.push(format!("from={f}"));
                }
                if let Some(s) = since {
                    q.push(format!("since={}", enc(&s)));
                }
                let mut resp = hub.client()?.stream_events(&q.join("&")).await?;
                let mut buf = Vec::new();
                let mut seen = 0usize;
                while let Some(chunk) =
                    resp.chunk().await.context("reading the telemetry stream")?
                {
                    buf.extend_from_slice(&chunk);
                    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=nl).collect();
                        let Ok(mut msg) = serde_json::from_slice::<Value>(&line) else {
                            continue;
                        };
                        if decode {
                            decode_body(&mut msg);
                        }
                        say(&msg.to_string());
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                }
            }
            MessagesCommand::Send {
                device,
                body,
                message_id,
                properties,
                wait,
                hub,
            } => {
                let mut headers: Vec<(String, String)> = Vec::new();
                if let Some(m) = message_id {
                    headers.push(("iothub-messageid".into(), m));
                }
                for p in properties {
                    let (k, v) = p
                        .split_once('=')
                        .with_context(|| format!("--property {p:?} is not key=value"))?;
                    headers.push((format!("iothub-app-{k}"), v.to_owned()));
                }
                let hdrs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let path = match wait {
                    Some(w) => format!(
                        "/_ext/devices/{}/messages/devicebound?waitSecs={w}",
                        enc(&device)
                    ),
                    None => format!("/_ext/devices/{}/messages/devicebound", enc(&device)),
                };
                let reply = hub
                    .client()?
                    .post_bytes(&path, body.into_bytes(), &hdrs)
                    .await?;
                print_json(&reply.body);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn decode_body(msg: &mut Value) {
    use base64::Engine as _;
    let text = msg
        .get("bodyBase64")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if let (Some(t), Some(obj)) = (text, msg.as_object_mut()) {
        obj.insert("body".into(), Value::String(t));
    }
}
