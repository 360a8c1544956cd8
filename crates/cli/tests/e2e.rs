//! End to end through real pods: `ironedge up --kubeconfig` on the cluster of `KUBECONFIG` (the
//! private control plane `scripts/test` starts) runs the hub, the local node, the device chart and
//! the demo deployment; then the hub deployment → agent → `EdgeDeployment` → Deployments →
//! ReplicaSets → Pods → node processes → sensor → route with `WHERE` → filter → `$upstream` → hub
//! chain is checked on the messages and on `$edgeAgent`'s reported properties, the deployment is
//! changed (new route, module stopped, module removed), and the edge hub is killed while the cloud
//! is unreachable, after which the messages it had queued still arrive. `ironedge down` ends it.
//!
//! Needs root (the node makes network namespaces) and a cluster; it fails, saying so, without them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ironedge_hub::client::HubClient;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// Longest wait for any one condition.
const TIMEOUT: Duration = Duration::from_secs(180);
const IRONEDGE: &str = env!("CARGO_BIN_EXE_ironedge");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Polls `check` until it yields a value; panics with the last state after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// What `up` started, stopped with `ironedge down --purge` however the test ends.
struct Up {
    state: PathBuf,
    device: String,
    hub: HubClient,
    kube: kube::Client,
    hub_pid: i32,
}

impl Drop for Up {
    fn drop(&mut self) {
        // A hub stopped by the test must run again for `down` to stop it cleanly.
        signal(self.hub_pid, rustix::process::Signal::CONT);
        let out = Command::new(IRONEDGE)
            .args(["down", "--purge", "--state-dir"])
            .arg(&self.state)
            .output()
            .expect("run ironedge down");
        eprintln!(
            "ironedge down: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn kubeconfig() -> PathBuf {
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        panic!(
            "the end-to-end test needs a cluster: run scripts/test, or \
             export KUBECONFIG=\"$(scripts/k8s/start)\""
        );
    };
    PathBuf::from(path)
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    ironedge_pki::install_default_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The CRD, applied like the other tests do, so that `up` finds it and `down` leaves it for them.
async fn ensure_crd(kube: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(kube.clone());
    api.patch(
        "edgedeployments.ironedge.io",
        &PatchParams::apply("ironedge-tests").force(),
        &Patch::Apply(ironedge_controller::crd::crd()),
    )
    .await
    .expect("apply the CRD");
}

/// Runs `ironedge up` and connects to what it started.
async fn up(kubeconfig: &Path) -> Up {
    let kube = kube_client(kubeconfig).await;
    ensure_crd(&kube).await;
    let root = tempfile::Builder::new()
        .prefix("ironedge-e2e-")
        .tempdir_in("/var/tmp")
        .unwrap()
        .keep();
    let device = format!("e2e-{:x}", std::process::id());
    let out = Command::new(IRONEDGE)
        .args(["up", "--no-watch", "--no-build", "--interval", "0.2"])
        .args(["--timeout", "240", "--device", &device, "--kubeconfig"])
        .arg(kubeconfig)
        .arg("--state-dir")
        .arg(&root)
        .output()
        .expect("run ironedge up");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("ironedge up:\n{text}");
    let record: Value =
        serde_json::from_slice(&std::fs::read(root.join("up.json")).unwrap_or_default())
            .unwrap_or(Value::Null);
    let hub_pid = record
        .pointer("/hub/process/pid")
        .and_then(Value::as_i64)
        .unwrap_or(0) as i32;
    let rest = record.pointer("/hub/restPort").and_then(Value::as_u64);
    let cs = std::fs::read_to_string(root.join("hub/iothubowner.connection-string"));
    let ca = std::fs::read_to_string(root.join("hub/tls/ca.pem"));
    let hub = match (rest, cs, ca) {
        (Some(rest), Ok(cs), Ok(ca)) => {
            HubClient::new(cs.trim(), Some(&format!("https://127.0.0.1:{rest}")), &ca).unwrap()
        }
        _ => HubClient::new(
            "HostName=none;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA",
            Some("https://127.0.0.1:1"),
            "",
        )
        .unwrap(),
    };
    let up = Up {
        state: root,
        device,
        hub,
        kube,
        hub_pid,
    };
    assert!(out.status.success(), "ironedge up failed:\n{text}");
    assert!(
        text.contains("first message at the hub"),
        "up waits for the first message:\n{text}"
    );
    up
}

/// A message stored at the hub, as the test needs it.
#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    module: String,
    output: String,
    sequence_number: u64,
    message_type: Option<String>,
    temperature: f64,
}

fn stored(record: &Value) -> Option<Stored> {
    use base64::Engine as _;
    let body = match record.get("body").and_then(Value::as_str) {
        Some(b) => b.as_bytes().to_vec(),
        None => base64::engine::general_purpose::STANDARD
            .decode(record.get("bodyBase64")?.as_str()?)
            .ok()?,
    };
    let body: Value = serde_json::from_slice(&body).ok()?;
    let props = record.get("properties")?;
    Some(Stored {
        seq: record.get("seq")?.as_u64()?,
        module: record.get("moduleId")?.as_str()?.to_owned(),
        output: record
            .get("outputName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        sequence_number: props.get("sequenceNumber")?.as_str()?.parse().ok()?,
        message_type: props
            .get("MessageType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        temperature: body.pointer("/machine/temperature")?.as_f64()?,
    })
}

impl Up {
    fn namespace(&self) -> &str {
        &self.device
    }

    /// Every message of the device at the hub from hub sequence `from` on.
    async fn messages(&self, from: u64) -> Result<Vec<Stored>, String> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let page = self
                .hub
                .get(&format!(
                    "/_ext/messages/events?deviceId={}&from={next}&max=1000",
                    self.device
                ))
                .await
                .map_err(|e| e.to_string())?;
            let records = page["messages"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                return Ok(out);
            }
            for r in &records {
                let s = stored(r).ok_or_else(|| format!("unexpected message {r}"))?;
                next = s.seq + 1;
                out.push(s);
            }
        }
    }

    /// Waits until `pred` holds for the messages from hub sequence `from` on; returns them.
    async fn messages_until(
        &self,
        what: &str,
        from: u64,
        pred: impl Fn(&[Stored]) -> bool,
    ) -> Vec<Stored> {
        eventually(what, TIMEOUT, || async {
            let m = self.messages(from).await?;
            if pred(&m) {
                Ok(m)
            } else {
                Err(format!("{} messages", m.len()))
            }
        })
        .await
    }

    async fn next_seq(&self) -> u64 {
        self.messages(1)
            .await
            .unwrap()
            .last()
            .map_or(1, |m| m.seq + 1)
    }

    async fn reported(&self) -> Result<Value, String> {
        let twin = self
            .hub
            .get(&format!("/twins/{}/modules/%24edgeAgent", self.device))
            .await
            .map_err(|e| e.to_string())?;
        Ok(twin["properties"]["reported"].clone())
    }

    /// Waits until `$edgeAgent` reports `pred` true for the deployment of desired `version` on.
    async fn reported_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, TIMEOUT, || async {
            let r = self.reported().await?;
            if pred(&r) { Ok(r) } else { Err(r.to_string()) }
        })
        .await
    }

    /// The desired twin version of `$edgeAgent`.
    async fn desired_version(&self) -> i64 {
        let twin = self
            .hub
            .get(&format!("/twins/{}/modules/%24edgeAgent", self.device))
            .await
            .unwrap();
        twin["properties"]["desired"]["$version"].as_i64().unwrap()
    }

    async fn apply(&self, manifest: &Value) -> i64 {
        self.hub
            .post(
                &format!("/devices/{}/applyConfigurationContent", self.device),
                manifest,
            )
            .await
            .unwrap();
        self.desired_version().await
    }

    async fn pods(&self) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), self.namespace());
        api.list(&ListParams::default()).await.unwrap().items
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.kube.clone(), self.namespace());
        api.get_opt(name).await.unwrap()
    }

    /// The running pod of `prefix-…` with its first container's pid and restart count.
    async fn running_pod(&self, prefix: &str) -> Option<(String, i32, i32)> {
        self.pods().await.into_iter().find_map(|p| {
            let name = p.metadata.name.clone()?;
            if !name.starts_with(&format!("{prefix}-")) || p.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let status = p.status?;
            let c = status.container_statuses?.into_iter().next()?;
            c.state.as_ref()?.running.as_ref()?;
            let pid = c.container_id?.strip_prefix("ironedge://")?.parse().ok()?;
            Some((status.pod_ip?, pid, c.restart_count))
        })
    }

    /// The edge hub's `$upstream` queue length from its metrics endpoint.
    async fn upstream_queue(&self, pod_ip: &str) -> Result<u64, String> {
        let text = reqwest::get(format!("http://{pod_ip}:9600/metrics"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("ironedge_edgehub_queue_length_messages{endpoint=\"iothub\"} ")
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| "no iothub queue metric".into())
    }
}

fn module_status(reported: &Value, section: &str, name: &str) -> String {
    reported[section][name]["runtimeStatus"]
        .as_str()
        .unwrap_or("absent")
        .to_owned()
}

fn applied(reported: &Value, version: i64) -> bool {
    reported["lastDesiredVersion"].as_i64() >= Some(version)
        && reported["lastDesiredStatus"]["code"] == 200
}

/// The demo's manifest with `routes`, the filter in `filter_status` (`None`: removed).
fn manifest(routes: Value, filter_status: Option<&str>) -> Value {
    let system = format!("ghcr.io/ironedge/ironedge:{VERSION}");
    let mut modules = json!({
        "sensor": {
            "version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
            "settings": {"image": format!("ghcr.io/ironedge/ironedge-tempsensor:{VERSION}")},
            "env": {"SendInterval": {"value": "0.2"}, "MessageCount": {"value": "-1"}}
        }
    });
    if let Some(status) = filter_status {
        modules["filter"] = json!({
            "version": "1.0", "type": "docker", "status": status, "restartPolicy": "always",
            "settings": {"image": format!("ghcr.io/ironedge/ironedge-filter:{VERSION}")},
            "env": {"TemperatureThreshold": {"value": "25"}}
        });
    }
    json!({"modulesContent": {
        "$edgeAgent": {"properties.desired": {
            "schemaVersion": "1.1",
            "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
            "systemModules": {
                "edgeAgent": {"type": "docker", "settings": {"image": system}},
                "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                            "settings": {"image": system}}
            },
            "modules": modules
        }},
        "$edgeHub": {"properties.desired": {
            "schemaVersion": "1.1",
            "routes": routes,
            "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
        }}
    }})
}

const SENSOR_TO_FILTER: &str = "FROM /messages/modules/sensor/outputs/temperatureOutput \
     WHERE $body.machine.temperature > 22 INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")";
const FILTER_TO_CLOUD: &str = "FROM /messages/modules/filter/outputs/output1 INTO $upstream";
const SENSOR_TO_CLOUD: &str =
    "FROM /messages/modules/sensor/outputs/temperatureOutput INTO $upstream";

#[tokio::test(flavor = "multi_thread")]
async fn readings_flow_from_pods_to_the_hub_follow_deployment_changes_and_survive_an_edge_hub_kill()
{
    let kubeconfig = kubeconfig();
    assert!(
        rustix::process::geteuid().is_root(),
        "the end-to-end test runs the local node, which needs root"
    );
    let up = up(&kubeconfig).await;

    // 1. The demo: sensor → WHERE → filter → $upstream; the agent reports every module running.
    let version = up.desired_version().await;
    let reported = up
        .reported_until("every module reported running", |r| {
            applied(r, version)
                && module_status(r, "systemModules", "edgeAgent") == "running"
                && module_status(r, "systemModules", "edgeHub") == "running"
                && module_status(r, "modules", "sensor") == "running"
                && module_status(r, "modules", "filter") == "running"
        })
        .await;
    assert_eq!(
        reported["modules"]["filter"]["restartCount"], 0,
        "{reported}"
    );
    let alerts = up
        .messages_until("five alerts from the filter", 1, |m| {
            m.iter().filter(|s| s.module == "filter").count() >= 5
        })
        .await;
    for m in &alerts {
        assert_eq!(
            m.module, "filter",
            "only the filter's output goes upstream: {m:?}"
        );
        assert_eq!(m.output, "output1");
        assert_eq!(m.message_type.as_deref(), Some("Alert"));
        assert!(m.temperature > 25.0, "the filter forwards only > 25: {m:?}");
    }
    for name in ["sensor", "filter"] {
        let d = up.deployment(name).await.expect("a Deployment per module");
        assert_eq!(d.spec.and_then(|s| s.replicas), Some(1), "{name}");
    }
    assert!(
        up.running_pod("ironedge-edgehub").await.is_some(),
        "the device chart's edge hub runs"
    );
    assert!(
        up.deployment("edgehub").await.is_none(),
        "the chart runs the edge hub, not a Deployment for the manifest's $edgeHub"
    );

    // 2. A new route: readings also go straight to the cloud, alongside the filter's alerts.
    let from = up.next_seq().await;
    let version = up
        .apply(&manifest(
            json!({"sensorToFilter": SENSOR_TO_FILTER, "filterToCloud": FILTER_TO_CLOUD,
                   "sensorToCloud": SENSOR_TO_CLOUD}),
            Some("running"),
        ))
        .await;
    up.reported_until("the new routes applied", |r| applied(r, version))
        .await;
    let both = up
        .messages_until("readings and alerts side by side", from, |m| {
            m.iter().filter(|s| s.module == "sensor").count() >= 10
                && m.iter().filter(|s| s.module == "filter").count() >= 1
        })
        .await;
    let readings: BTreeSet<u64> = both
        .iter()
        .filter(|s| s.module == "sensor")
        .map(|s| s.sequence_number)
        .collect();
    for m in both.iter().filter(|s| s.module == "sensor") {
        assert_eq!(m.output, "temperatureOutput");
        assert_eq!(m.message_type, None, "readings are not alerts: {m:?}");
    }
    // The filter keeps the reading's properties: every alert is a reading above the threshold.
    for m in both.iter().filter(|s| s.module == "filter") {
        assert!(m.temperature > 25.0, "{m:?}");
    }
    assert!(!readings.is_empty());

    // 3. The filter stopped: no pod, replicas 0, reported stopped; readings still flow.
    let version = up
        .apply(&manifest(
            json!({"sensorToFilter": SENSOR_TO_FILTER, "filterToCloud": FILTER_TO_CLOUD,
                   "sensorToCloud": SENSOR_TO_CLOUD}),
            Some("stopped"),
        ))
        .await;
    up.reported_until("the filter reported stopped", |r| {
        applied(r, version) && module_status(r, "modules", "filter") == "stopped"
    })
    .await;
    eventually("the filter's pod to go", TIMEOUT, || async {
        let d = up.deployment("filter").await.ok_or("no Deployment")?;
        let replicas = d.spec.and_then(|s| s.replicas);
        let pods = up.pods().await;
        let left = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("filter-"))
            })
            .count();
        if replicas == Some(0) && left == 0 {
            Ok(())
        } else {
            Err(format!("replicas {replicas:?}, {left} pods"))
        }
    })
    .await;
    let from = up.next_seq().await;
    up.messages_until("readings while the filter is stopped", from, |m| {
        m.iter().filter(|s| s.module == "sensor").count() >= 5
    })
    .await;

    // 4. The filter removed: its Deployment goes and the agent no longer reports it.
    let version = up
        .apply(&manifest(json!({"sensorToCloud": SENSOR_TO_CLOUD}), None))
        .await;
    up.reported_until("the filter no longer reported", |r| {
        applied(r, version)
            && module_status(r, "modules", "filter") == "absent"
            && module_status(r, "modules", "sensor") == "running"
    })
    .await;
    eventually("the filter's Deployment to go", TIMEOUT, || async {
        match up.deployment("filter").await {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        }
    })
    .await;

    // 5. The cloud unreachable (hub frozen), readings queue in the edge hub; the edge hub is
    //    killed and restarted by the node; once the cloud is back every queued reading arrives.
    let before = up.next_seq().await;
    let last_before = up
        .messages(1)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.module == "sensor")
        .map(|s| s.sequence_number)
        .max()
        .expect("readings before the outage");
    let (pod_ip, pid, restarts) = up
        .running_pod("ironedge-edgehub")
        .await
        .expect("the edge hub pod runs");
    signal(up.hub_pid, rustix::process::Signal::STOP);
    let queued = eventually("readings queued for the cloud", TIMEOUT, || async {
        match up.upstream_queue(&pod_ip).await? {
            n if n >= 10 => Ok(n),
            n => Err(format!("{n} queued")),
        }
    })
    .await;
    signal(pid, rustix::process::Signal::KILL);
    let (pod_ip, _, _) = eventually("the edge hub restarted", TIMEOUT, || async {
        match up.running_pod("ironedge-edgehub").await {
            Some((ip, new_pid, r)) if new_pid != pid && r > restarts => Ok((ip, new_pid, r)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let kept = eventually("the restarted edge hub to serve metrics", TIMEOUT, || {
        up.upstream_queue(&pod_ip)
    })
    .await;
    assert!(
        kept >= queued,
        "the queue survives the kill: {queued} before, {kept} after"
    );
    signal(up.hub_pid, rustix::process::Signal::CONT);
    let target = last_before + queued;
    let after = up
        .messages_until("the queued readings at the hub", before, |m| {
            m.iter()
                .any(|s| s.module == "sensor" && s.sequence_number >= target)
        })
        .await;
    let got: BTreeSet<u64> = after
        .iter()
        .filter(|s| s.module == "sensor")
        .map(|s| s.sequence_number)
        .collect();
    let missing: Vec<u64> = (last_before + 1..=target)
        .filter(|n| !got.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "readings lost across the edge hub kill: {missing:?} (got {got:?})"
    );
}
