//! What a Rust IoT Edge module needs to speak the same contract as the Azure IoT SDKs'
//! `create_from_edge_environment()`: read the `IOTEDGE_*` environment, sign SAS tokens through
//! the workload API (unix socket or HTTP) without ever holding the key, connect to the edge hub
//! over MQTT 3.1.1/TLS trusting the workload trust bundle, send on outputs, receive inputs,
//! read and patch the module twin, and answer direct methods (`reference/iot-hub-protocols.md`
//! §1 and §4.2, `iotedge-runtime.md` §3.3 and §5).
//!
//! The SDKs' local-development fallback works too: `EdgeHubConnectionString` (a module
//! connection string with `GatewayHostName`) plus `EdgeModuleCACertificateFile`.
//!
//! ```no_run
//! use ironedge_module_client::{ClientOptions, EdgeEnvironment, Message, ModuleClient, ModuleEvent};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let env = EdgeEnvironment::from_vars(std::env::vars())?;
//! let (client, mut events) = ModuleClient::start(&env, ClientOptions::default())?;
//! let mut message = Message::new(r#"{"temperature": 21.5}"#);
//! message.system.content_type = Some("application/json".into());
//! message.system.content_encoding = Some("utf-8".into());
//! client.send_output("temperatureOutput", message).await?;   // returns after the PUBACK
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ModuleEvent::Input(input) => {
//!             client.send_output("output1", input.message.clone()).await?;
//!             input.ack().await?;                               // at-least-once
//!         }
//!         ModuleEvent::DesiredProperties(patch) => client.patch_reported(&patch).await?,
//!         ModuleEvent::Method(call) => call.respond(200, &serde_json::json!({"ok": true})).await?,
//!         ModuleEvent::Connected | ModuleEvent::Disconnected { .. } => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod credentials;
pub mod environment;
mod error;
mod events;
pub mod workload;

pub use client::{ClientOptions, MAX_MESSAGE_BYTES, ModuleClient, Twin};
pub use environment::{Authentication, EdgeEnvironment, Endpoint};
pub use error::{EnvironmentError, Error, Result, WorkloadError};
pub use events::{InputMessage, MethodRequest, ModuleEvent};
pub use ironedge_protocol::{Message, SystemProperties};
pub use workload::WorkloadClient;
