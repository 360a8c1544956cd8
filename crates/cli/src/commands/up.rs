//! `ironedge up`: IoT Edge on Kubernetes on this machine in one command. It starts (building the
//! first time) the local Kubernetes control plane of `scripts/k8s` — or uses `--kubeconfig` —,
//! the ironedge hub (SQLite) on 127.0.0.1, the local node that runs pods as processes, creates an
//! edge device, installs it into its namespace with the Helm charts, puts a demo deployment on it
//! (simulated sensor → filter → `$upstream`) and shows live what happens. Everything it starts
//! is recorded in the state directory, so `ironedge down` stops exactly that, and a second `up`
//! reuses what still runs.

pub(crate) mod binaries;
pub(crate) mod cluster;
mod demo;
pub(crate) mod helm;
pub(crate) mod hub;
pub(crate) mod process;
pub(crate) mod progress;
pub(crate) mod state;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use self::demo::FilterKind;
use self::helm::{CRDS_NAMESPACE, CRDS_RELEASE, Helm};
use self::hub::HubPaths;
use self::progress::Progress;
use self::state::{ClusterRecord, DeviceRecord, NodeRecord, StateLock, UpState};

/// Where `up` keeps its state unless told otherwise: outside `/root`, which unprivileged
/// sidecars cannot enter, and outside every path the device chart mounts a volume on (the edge
/// hub's store on `/var/lib/ironedge` would hide `<state>/bin` inside its pod).
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/ironedge-up";
/// The CRD whose presence means the CRD chart (or `ironedge crd`) is installed.
pub(crate) const CRD_NAME: &str = "edgedeployments.ironedge.io";

/// Starts everything and shows it live.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Use this cluster instead of the local control plane (only what `up` creates there is
    /// removed by `down`).
    #[arg(long, env = "IRONEDGE_UP_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// State directory: hub data, local control plane, node, logs, binaries, the record of what
    /// runs.
    #[arg(long, env = "IRONEDGE_UP_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The edge device's id.
    #[arg(long, default_value = "demo-edge")]
    device: String,
    /// The device namespace (default: the device id as a DNS label).
    #[arg(long)]
    namespace: Option<String>,
    /// Run the filter written with the Python `azure-iot-device` SDK instead of the Rust one.
    #[arg(long)]
    python_filter: bool,
    /// Seconds between the simulated sensor's readings.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Put this deployment manifest on the device instead of the demo.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Use the sample executables beside `ironedge` as they are, without running cargo (they
    /// were built with it, as `cargo nextest run --workspace` does).
    #[arg(long)]
    no_build: bool,
    /// Do not run the local node (the cluster has nodes that can pull and run the images).
    #[arg(long)]
    no_node: bool,
    /// Return once the first message reached the hub, without the live view.
    #[arg(long)]
    no_watch: bool,
    /// Longest wait for each stage, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The hub's REST (HTTPS) port on 127.0.0.1 (default: a free one, kept across runs).
    #[arg(long)]
    hub_rest_port: Option<u16>,
    /// The hub's MQTT (TLS) port on 127.0.0.1 (default: a free one, kept across runs).
    #[arg(long)]
    hub_mqtt_port: Option<u16>,
}

/// Everything the stages share.
struct Up {
    args: UpArgs,
    progress: Progress,
    source: PathBuf,
    dir: PathBuf,
    logs: PathBuf,
    state: UpState,
    namespace: String,
}

/// Runs `ironedge up`.
pub(crate) fn run(args: UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    if !args.no_node && !rustix::process::geteuid().is_root() {
        bail!(
            "ironedge up needs root: the local node creates network namespaces and mounts \
             (run it with sudo, or pass --no-node for a cluster whose nodes run the images)"
        );
    }
    if !(args.interval.is_finite() && args.interval >= 0.01) {
        bail!("--interval {} must be at least 0.01 seconds", args.interval);
    }
    let dir = absolute(&args.state_dir)?;
    let _lock = StateLock::acquire(&dir)?;
    let state = UpState::load(&dir)?;
    let namespace = args.namespace.clone().unwrap_or_else(|| {
        ironedge_controller::names::dns_label(
            &args.device,
            ironedge_controller::names::Rule::Dns1123,
        )
    });
    let mut up = Up {
        progress: Progress::new(),
        source: binaries::source_dir()?,
        logs: dir.join("logs"),
        dir,
        state,
        namespace,
        args,
    };
    up.check_record()?;
    let ironedge = up.binaries()?;
    let kubeconfig = up.cluster()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(up.rest(ironedge, kubeconfig, started))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// A Node name unique to the state directory (one node per name per machine).
fn node_name(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_STATE_DIR) {
        return "ironedge-up".into();
    }
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("ironedge-up-{:08x}", h.finish() as u32)
}

impl Up {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.timeout)
    }

    fn save(&self) -> Result<()> {
        self.state.save(&self.dir)
    }

    /// A second `up` on the same state directory must describe the same device and cluster.
    fn check_record(&self) -> Result<()> {
        let again = "run `ironedge down` first, or use another --state-dir";
        match (&self.state.cluster, &self.args.kubeconfig) {
            (Some(ClusterRecord::Local { .. }), Some(k)) => bail!(
                "{} runs the local control plane, not the cluster of {}: {again}",
                self.dir.display(),
                k.display()
            ),
            (Some(ClusterRecord::External { kubeconfig }), Some(k)) if kubeconfig != k => bail!(
                "{} runs on the cluster of {}: {again}",
                self.dir.display(),
                kubeconfig.display()
            ),
            (Some(ClusterRecord::External { kubeconfig }), None) => bail!(
                "{} runs on the cluster of {} (pass --kubeconfig {0}), or {again}",
                self.dir.display(),
                kubeconfig.display()
            ),
            _ => {}
        }
        if let Some(d) = &self.state.device
            && (d.id != self.args.device || d.namespace != self.namespace)
        {
            bail!(
                "{} runs device {} in namespace {}: {again}",
                self.dir.display(),
                d.id,
                d.namespace
            );
        }
        Ok(())
    }

    /// The `ironedge` binary and the samples, installed into `<state>/bin`.
    fn binaries(&self) -> Result<PathBuf> {
        let step = self.progress.step("ironedge binaries and sample modules");
        let exe = binaries::ensure_samples(
            &step,
            &self.source,
            &self.logs.join("cargo.log"),
            !self.args.no_build,
        )?;
        let installed = binaries::install(&exe, &self.dir.join("bin"))?;
        if !self.args.no_node {
            step.detail("node tools (iproute2, nftables, util-linux)");
            step.run(
                &mut std::process::Command::new(self.source.join("scripts/install-node-tools")),
                &self.logs.join("node-tools.log"),
            )?;
        }
        step.done(&installed.display().to_string());
        Ok(installed)
    }

    /// The cluster's kubeconfig: the user's, or the local control plane's (started here).
    fn cluster(&mut self) -> Result<PathBuf> {
        if let Some(k) = &self.args.kubeconfig {
            let kubeconfig = absolute(k)?;
            self.state.cluster = Some(ClusterRecord::External {
                kubeconfig: kubeconfig.clone(),
            });
            self.save()?;
            return Ok(kubeconfig);
        }
        let dir = self.dir.join("cluster");
        self.state.cluster = Some(ClusterRecord::Local { dir: dir.clone() });
        self.save()?;
        cluster::start_local(&self.progress, &self.source, &dir, &self.logs)
    }

    async fn rest(
        mut self,
        ironedge: PathBuf,
        kubeconfig: PathBuf,
        started: Instant,
    ) -> Result<ExitCode> {
        let kube = cluster::client(&kubeconfig).await?;
        let paths = HubPaths::new(&self.dir);
        let hub = self.hub(&ironedge, &paths).await?;
        let step = self
            .progress
            .step(format!("edge device {}", self.args.device));
        let connection_string = hub::ensure_edge_device(&hub, &self.args.device).await?;
        step.done("");
        if !self.args.no_node {
            self.node(&ironedge, &kubeconfig, &kube).await?;
        }
        self.install_device(&kube, &kubeconfig, &connection_string, &paths)
            .await?;
        let since = jiff::Timestamp::now();
        self.deploy(&hub).await?;
        self.wait_running(&kube, &hub, since).await?;
        let env_file = self.write_env(&kubeconfig, &paths)?;
        self.summary(&env_file, &kubeconfig, started);
        if self.args.no_watch {
            return Ok(ExitCode::SUCCESS);
        }
        let header = vec![
            format!(
                "ironedge up — device {} in namespace {}   (Ctrl-C leaves it running; `ironedge down` stops it)",
                self.args.device, self.namespace
            ),
            format!(
                "hub https://127.0.0.1:{} · kubeconfig {} · source {}",
                self.state.hub.as_ref().map_or(0, |h| h.rest_port),
                kubeconfig.display(),
                env_file.display()
            ),
        ];
        let sources = view::Sources {
            hub,
            kube,
            device: self.args.device.clone(),
            namespace: self.namespace.clone(),
        };
        view::run(sources, header, self.progress.is_tty()).await?;
        self.progress
            .say("ironedge keeps running in the background; `ironedge down` stops it.");
        Ok(ExitCode::SUCCESS)
    }

    async fn hub(
        &mut self,
        ironedge: &Path,
        paths: &HubPaths,
    ) -> Result<ironedge_hub::client::HubClient> {
        let step = self.progress.step("ironedge hub (SQLite) on 127.0.0.1");
        let record = hub::start(
            ironedge,
            paths,
            self.state.hub.take(),
            (self.args.hub_rest_port, self.args.hub_mqtt_port),
        )?;
        self.state.hub = Some(record.clone());
        self.save()?;
        let client = hub::connect(paths, &record, self.timeout()).await?;
        step.done(&format!(
            "REST https://127.0.0.1:{}, MQTT 127.0.0.1:{}",
            record.rest_port, record.mqtt_port
        ));
        Ok(client)
    }

    async fn node(
        &mut self,
        ironedge: &Path,
        kubeconfig: &Path,
        kube: &kube::Client,
    ) -> Result<()> {
        let step = self.progress.step("local node (pods as processes)");
        let name = node_name(&self.dir);
        let running = self
            .state
            .node
            .as_ref()
            .and_then(|n| n.process)
            .is_some_and(process::is_running);
        if !running {
            let (rest, mqtt) = self
                .state
                .hub
                .as_ref()
                .map(|h| (h.rest_port, h.mqtt_port))
                .context("the hub is not recorded")?;
            let mut args: Vec<String> = [
                "node",
                "--name",
                &name,
                "--namespace",
                &self.namespace,
                "--state-dir",
                &self.dir.join("node").display().to_string(),
                "--kubelet-port",
                "0",
                "--host-port",
                &format!("{rest},{mqtt}"),
                "--restart-backoff-seconds",
                "2",
                "--restart-backoff-max-seconds",
                "30",
                "--delete-node-on-exit",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            if self.args.python_filter {
                let map = self.python_image_map(&step)?;
                args.extend(["--image-map".into(), map.display().to_string()]);
            }
            let env = [("KUBECONFIG", kubeconfig.display().to_string())];
            let process = process::spawn(ironedge, &args, &env, &self.logs.join("node.log"))?;
            self.state.node = Some(NodeRecord {
                process: Some(process),
                name: name.clone(),
            });
            self.save()?;
        }
        cluster::wait_node_ready(kube, &name, self.timeout())
            .await
            .with_context(|| format!("see {}", self.logs.join("node.log").display()))?;
        step.done(&name);
        Ok(())
    }

    /// The image map entry of the Python filter (the venv of `scripts/python-env`).
    fn python_image_map(&self, step: &progress::Step) -> Result<PathBuf> {
        step.detail("Python venv with azure-iot-device (scripts/python-env)");
        let out = step.run(
            &mut std::process::Command::new(self.source.join("scripts/python-env")),
            &self.logs.join("python-env.log"),
        )?;
        let python = PathBuf::from(out.trim());
        let script = self.source.join("samples/filter-python/main.py");
        let path = self.dir.join("image-map.yaml");
        std::fs::write(&path, demo::python_image_map(&python, &script))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    async fn install_device(
        &mut self,
        kube: &kube::Client,
        kubeconfig: &Path,
        connection_string: &str,
        paths: &HubPaths,
    ) -> Result<()> {
        let step = self.progress.step(format!(
            "device charts (ironedge-crds, ironedge-device) into namespace {}",
            self.namespace
        ));
        let created = cluster::ensure_namespace(kube, &self.namespace).await?;
        let mut record = self.state.device.clone().unwrap_or(DeviceRecord {
            id: self.args.device.clone(),
            namespace: self.namespace.clone(),
            created_namespace: false,
            release: self.args.device.clone(),
            installed_crds: false,
            created_crds_namespace: false,
        });
        record.created_namespace |= created;
        self.state.device = Some(record.clone());
        self.save()?;
        let helm = Helm::prepare(&step, &self.source, kubeconfig, &self.logs)?;
        let crds: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            kube::Api::all(kube.clone());
        if record.installed_crds || crds.get_opt(CRD_NAME).await?.is_none() {
            record.created_crds_namespace |=
                cluster::ensure_namespace(kube, CRDS_NAMESPACE).await?;
            self.state.device = Some(record.clone());
            self.save()?;
            let release = helm::Release {
                name: CRDS_RELEASE,
                chart: "ironedge-crds",
                namespace: CRDS_NAMESPACE,
            };
            helm.apply(
                &step,
                &release,
                &serde_json::json!({}),
                &self.dir.join("values-crds.json"),
            )?;
            record.installed_crds = true;
            self.state.device = Some(record.clone());
            self.save()?;
        }
        let ca = std::fs::read_to_string(paths.ca())
            .with_context(|| format!("reading {}", paths.ca().display()))?;
        let hub = self.state.hub.as_ref().context("the hub is not recorded")?;
        let values = demo::device_values(&demo::ChartInputs {
            connection_string,
            mqtt_port: hub.mqtt_port,
            rest_port: hub.rest_port,
            hub_ca_pem: &ca,
        });
        let release = helm::Release {
            name: &record.release,
            chart: "ironedge-device",
            namespace: &self.namespace,
        };
        helm.apply(
            &step,
            &release,
            &values,
            &self.dir.join("values-device.json"),
        )?;
        step.done(&format!("release {} in {}", record.release, self.namespace));
        Ok(())
    }

    /// The manifest to deploy: `--manifest`, else the demo.
    fn manifest(&self) -> Result<Value> {
        match &self.args.manifest {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                if let Err(errors) = ironedge_model::validate(&bytes).into_result() {
                    bail!(
                        "{} is not a valid deployment manifest:\n{errors}",
                        path.display()
                    );
                }
                Ok(serde_json::from_slice(&bytes)?)
            }
            None => {
                let filter = if self.args.python_filter {
                    FilterKind::Python
                } else {
                    FilterKind::Rust
                };
                Ok(demo::manifest(filter, self.args.interval))
            }
        }
    }

    async fn deploy(&self, hub: &ironedge_hub::client::HubClient) -> Result<()> {
        let step = self
            .progress
            .step("deployment: sensor → filter → $upstream");
        let manifest = self.manifest()?;
        let path = self.dir.join("deployment.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("writing {}", path.display()))?;
        hub::set_modules(hub, &self.args.device, &manifest).await?;
        step.done(&path.display().to_string());
        Ok(())
    }

    /// Waits until the modules run and a message from the device reached the hub.
    async fn wait_running(
        &self,
        kube: &kube::Client,
        hub: &ironedge_hub::client::HubClient,
        since: jiff::Timestamp,
    ) -> Result<()> {
        let step = self
            .progress
            .step("modules running, first message at the hub");
        let mut prefixes = vec!["ironedge-agent", "ironedge-edgehub"];
        if self.args.manifest.is_none() {
            prefixes.extend(["sensor", "filter"]);
        }
        cluster::wait_pods_running(kube, &self.namespace, &prefixes, self.timeout(), |s| {
            step.detail(s);
        })
        .await
        .with_context(|| {
            format!(
                "the pods did not start; look at `kubectl -n {} get pods` and {}",
                self.namespace,
                self.logs.join("node.log").display()
            )
        })?;
        step.detail("waiting for the first message at the hub");
        let query = format!(
            "/_ext/messages/events?deviceId={}&since={}&max=1&waitSecs=10",
            super::device::enc(&self.args.device),
            since.as_millisecond()
        );
        let first = cluster::wait_for("the first message at the hub", self.timeout(), || {
            let query = query.clone();
            async move {
                let found = hub.get(&query).await.map_err(|e| e.to_string())?;
                Ok(found
                    .get("messages")
                    .and_then(Value::as_array)
                    .and_then(|m| m.first())
                    .cloned())
            }
        })
        .await?;
        let from = view::message_row(&first).map_or_else(String::new, |m| m.source);
        step.done(&format!("from {from}"));
        Ok(())
    }

    /// `<state>/env`: what to `source` to use the CLI and kubectl on this setup.
    fn write_env(&self, kubeconfig: &Path, paths: &HubPaths) -> Result<PathBuf> {
        let owner = std::fs::read_to_string(paths.owner())?;
        let rest = self.state.hub.as_ref().map_or(0, |h| h.rest_port);
        let text = format!(
            "export KUBECONFIG='{}'\nexport IRONEDGE_HUB_CONNECTION_STRING='{}'\n\
             export IRONEDGE_HUB_CA='{}'\nexport IRONEDGE_HUB_URL='https://127.0.0.1:{rest}'\n\
             export PATH='{}:{}':\"$PATH\"\n",
            kubeconfig.display(),
            owner.trim(),
            paths.ca().display(),
            self.dir.join("bin").display(),
            cluster::k8s_bin().display(),
        );
        let path = self.dir.join("env");
        std::fs::write(&path, text)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }

    fn summary(&self, env_file: &Path, kubeconfig: &Path, started: Instant) {
        let p = &self.progress;
        let device = &self.args.device;
        let ns = &self.namespace;
        p.say(&format!(
            "\nironedge is up ({:.0}s): device {device} runs in namespace {ns}",
            started.elapsed().as_secs_f64()
        ));
        p.say(&format!("  kubeconfig  {}", kubeconfig.display()));
        p.say(&format!("  logs        {}", self.logs.display()));
        p.say(&format!("  try         source {}", env_file.display()));
        p.say(&format!(
            "              ironedge messages tail --device {device} --decode"
        ));
        p.say(&format!(
            "              ironedge twin show {device} --module '$edgeAgent'"
        ));
        p.say(&format!(
            "              kubectl -n {ns} get edgedeployments,deployments,pods"
        ));
        p.say(
            "  stop        ironedge down   (--purge also deletes the hub's data and the cluster)\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_differ_per_state_directory() {
        assert_eq!(node_name(Path::new(DEFAULT_STATE_DIR)), "ironedge-up");
        let a = node_name(Path::new("/var/tmp/a"));
        let b = node_name(Path::new("/var/tmp/b"));
        assert_ne!(a, b);
        assert!(a.starts_with("ironedge-up-") && a.len() == "ironedge-up-".len() + 8);
    }
}
