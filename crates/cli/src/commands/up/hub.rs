//! The cloud side of `ironedge up`: the hub process on 127.0.0.1, its client, the edge device and
//! the deployment put on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ironedge_hub::client::HubClient;
use serde_json::{Value, json};

use super::cluster::wait_for;
use super::process;
use super::state::{HubRecord, ProcessId};

/// The hub's name: in SAS audiences and device connection strings. Pods reach the hub as
/// `127.0.0.1` (the node forwards the ports into every pod), so any name works; `localhost`
/// resolves everywhere.
pub(crate) const HUB_HOST_NAME: &str = "localhost";

/// The hub's files under the state directory.
#[derive(Debug, Clone)]
pub(crate) struct HubPaths {
    /// `--data-dir`.
    pub(crate) data: PathBuf,
    /// Its output.
    pub(crate) log: PathBuf,
}

impl HubPaths {
    /// Paths under `state`.
    pub(crate) fn new(state: &Path) -> Self {
        Self {
            data: state.join("hub"),
            log: state.join("logs/hub.log"),
        }
    }

    /// The development CA the hub generated.
    pub(crate) fn ca(&self) -> PathBuf {
        self.data.join("tls/ca.pem")
    }

    /// The owner connection string the hub wrote.
    pub(crate) fn owner(&self) -> PathBuf {
        self.data.join("iothubowner.connection-string")
    }
}

/// A free TCP port on 127.0.0.1 in 20000-31999 (below the ephemeral range, so the port stays
/// free for later restarts), avoiding `taken`.
pub(crate) fn free_port(taken: &[u16]) -> Result<u16> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for i in 0..2000u32 {
        let port = 20000 + ((seed.wrapping_add(i.wrapping_mul(7919))) % 12000) as u16;
        if taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 between 20000 and 31999")
}

/// Starts the hub unless `record` says it runs; returns the updated record.
pub(crate) fn start(
    ironedge: &Path,
    paths: &HubPaths,
    record: Option<HubRecord>,
    ports: (Option<u16>, Option<u16>),
) -> Result<HubRecord> {
    if let Some(r) = &record
        && r.process.is_some_and(process::is_running)
    {
        return Ok(r.clone());
    }
    let rest_port = match (ports.0, &record) {
        (Some(p), _) => p,
        (None, Some(r)) => r.rest_port,
        (None, None) => free_port(&[])?,
    };
    let mqtt_port = match (ports.1, &record) {
        (Some(p), _) => p,
        (None, Some(r)) => r.mqtt_port,
        (None, None) => free_port(&[rest_port])?,
    };
    for port in [rest_port, mqtt_port] {
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("port {port} on 127.0.0.1 is in use; pass --hub-rest-port/--hub-mqtt-port")
        })?;
    }
    let args: Vec<String> = [
        "hub",
        "--data-dir",
        &paths.data.display().to_string(),
        "--hostname",
        HUB_HOST_NAME,
        "--rest-addr",
        &format!("127.0.0.1:{rest_port}"),
        "--mqtt-addr",
        &format!("127.0.0.1:{mqtt_port}"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process: ProcessId = process::spawn(ironedge, &args, &[], &paths.log)?;
    Ok(HubRecord {
        process: Some(process),
        rest_port,
        mqtt_port,
    })
}

/// A service client, once the hub answers.
pub(crate) async fn connect(
    paths: &HubPaths,
    record: &HubRecord,
    timeout: Duration,
) -> Result<HubClient> {
    let url = format!("https://127.0.0.1:{}", record.rest_port);
    wait_for("the hub to answer", timeout, || {
        let (paths, url) = (paths.clone(), url.clone());
        async move {
            if let Some(p) = record.process
                && !process::is_running(p)
            {
                return Err(format!("the hub exited; see {}", paths.log.display()));
            }
            let (Ok(cs), Ok(ca)) = (
                std::fs::read_to_string(paths.owner()),
                std::fs::read_to_string(paths.ca()),
            ) else {
                return Err("no owner connection string yet".into());
            };
            let client = HubClient::new(cs.trim(), Some(&url), &ca).map_err(|e| e.to_string())?;
            match client.get("/devices?top=1").await {
                Ok(_) => Ok(Some(client)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Creates the edge device unless it exists; returns its connection string.
pub(crate) async fn ensure_edge_device(client: &HubClient, id: &str) -> Result<String> {
    let path = format!("/devices/{}", super::super::device::enc(id));
    let device = match client.get(&path).await {
        Ok(d) => d,
        Err(ironedge_hub::client::ClientError::Api { status, .. })
            if status == reqwest::StatusCode::NOT_FOUND =>
        {
            let body =
                json!({"deviceId": id, "status": "enabled", "capabilities": {"iotEdge": true}});
            client
                .put(&path, &body, false)
                .await
                .with_context(|| format!("creating edge device {id}"))?
        }
        Err(e) => return Err(e).with_context(|| format!("reading device {id}")),
    };
    if device.pointer("/capabilities/iotEdge") != Some(&Value::Bool(true)) {
        bail!("device {id} exists in the hub but is not an IoT Edge device; pick another --device");
    }
    let key = device
        .pointer("/authentication/symmetricKey/primaryKey")
        .and_then(Value::as_str)
        .with_context(|| format!("device {id} has no symmetric key"))?;
    Ok(format!(
        "HostName={HUB_HOST_NAME};DeviceId={id};SharedAccessKey={key}"
    ))
}

/// Puts `manifest` (`{"modulesContent": …}`) on the device.
pub(crate) async fn set_modules(client: &HubClient, device: &str, manifest: &Value) -> Result<()> {
    let mc = manifest
        .get("modulesContent")
        .context("the manifest has no modulesContent")?;
    client
        .post(
            &format!(
                "/devices/{}/applyConfigurationContent",
                super::super::device::enc(device)
            ),
            &json!({"modulesContent": mc}),
        )
        .await
        .with_context(|| format!("setting the modules of {device}"))?;
    Ok(())
}

/// The `$edgeAgent` reported properties of `device`.
pub(crate) async fn agent_reported(client: &HubClient, device: &str) -> Result<Value> {
    let twin = client
        .get(&format!(
            "/twins/{}/modules/%24edgeAgent",
            super::super::device::enc(device)
        ))
        .await?;
    Ok(twin
        .pointer("/properties/reported")
        .cloned()
        .unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_distinct() {
        let a = free_port(&[]).unwrap();
        let b = free_port(&[a]).unwrap();
        assert!((20000..32000).contains(&a) && (20000..32000).contains(&b));
        assert_ne!(a, b);
    }
}
