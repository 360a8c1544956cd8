//! `ironedge down`: stops exactly what `ironedge up` started, as recorded in its state directory.
//!
//! On the local control plane: the node (which stops every pod), the hub and the control plane;
//! their data stays for the next `up` unless `--purge`. On a user's cluster (`up --kubeconfig`):
//! first the device — its namespace when `up` created it, else its Helm release and
//! EdgeDeployment —, the CRD chart when `up` installed it and no other device uses the CRD, then
//! the node and the hub. Nothing else in that cluster is touched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use super::up::binaries::source_dir;
use super::up::cluster::{self, wait_for};
use super::up::helm::{CRDS_NAMESPACE, CRDS_RELEASE, Helm};
use super::up::process;
use super::up::progress::Progress;
use super::up::progress::Step;
use super::up::state::{ClusterRecord, DeviceRecord, StateLock, UpState};
use super::up::{CRD_NAME, DEFAULT_STATE_DIR};

/// How long pods get to go away before the node is stopped anyway.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Stops what `ironedge up` started.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// The state directory `up` used.
    #[arg(long, env = "IRONEDGE_UP_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Also delete the state: the hub's devices and messages, the local control plane's data,
    /// logs and binaries.
    #[arg(long)]
    purge: bool,
}

/// Runs `ironedge down`.
pub(crate) fn run(args: DownArgs) -> Result<ExitCode> {
    let progress = Progress::new();
    let dir = &args.state_dir;
    if !dir.is_dir() {
        progress.say(&format!("nothing is up in {}", dir.display()));
        return Ok(ExitCode::SUCCESS);
    }
    let lock = StateLock::acquire(dir)?;
    let mut state = UpState::load(dir)?;
    if state.is_empty() && !args.purge {
        progress.say(&format!("nothing is up in {}", dir.display()));
        return Ok(ExitCode::SUCCESS);
    }
    let logs = dir.join("logs");
    if let Some(ClusterRecord::External { kubeconfig }) = state.cluster.clone() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(remove_device(&progress, &mut state, &kubeconfig, dir))?;
        state.save(dir)?;
    }
    stop_node(&progress, &mut state)?;
    state.save(dir)?;
    stop_hub(&progress, &mut state)?;
    state.save(dir)?;
    if let Some(ClusterRecord::Local { dir: cluster_dir }) = &state.cluster {
        let source = source_dir()?;
        cluster::stop_local(&progress, &source, cluster_dir, args.purge, &logs)?;
    }
    if matches!(state.cluster, Some(ClusterRecord::External { .. })) {
        state = UpState::default();
        state.save(dir)?;
    }
    drop(lock);
    if args.purge {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        progress.say(&format!("removed {}", dir.display()));
    } else {
        progress.say(&format!(
            "stopped; data kept in {} for the next `ironedge up` (`ironedge down --purge` deletes it)",
            dir.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_node(progress: &Progress, state: &mut UpState) -> Result<()> {
    let Some(node) = state.node.as_mut() else {
        return Ok(());
    };
    if let Some(p) = node.process.take() {
        let step = progress.step(format!("stopping the local node {}", node.name));
        // The node stops every pod (their grace periods) and removes its networks first.
        let killed = process::stop(p, Duration::from_secs(120))?;
        step.done(if killed { "killed after 120 s" } else { "" });
    }
    Ok(())
}

fn stop_hub(progress: &Progress, state: &mut UpState) -> Result<()> {
    let Some(hub) = state.hub.as_mut() else {
        return Ok(());
    };
    if let Some(p) = hub.process.take() {
        let step = progress.step("stopping the hub");
        let killed = process::stop(p, Duration::from_secs(30))?;
        step.done(if killed { "killed after 30 s" } else { "" });
    }
    Ok(())
}

/// Removes what `up` created in a user's cluster, while the node still runs to finish the pods.
async fn remove_device(
    progress: &Progress,
    state: &mut UpState,
    kubeconfig: &Path,
    dir: &Path,
) -> Result<()> {
    let Some(device) = state.device.clone() else {
        return Ok(());
    };
    let step = progress.step(format!("removing device {} from the cluster", device.id));
    let kube = cluster::client(kubeconfig).await?;
    let helm = Helm::prepare(&step, &source_dir()?, kubeconfig, &dir.join("logs"))?;
    if device.created_namespace {
        step.detail(&format!("deleting namespace {}", device.namespace));
        delete_namespace(&kube, &device.namespace).await?;
    } else {
        helm.uninstall(&step, &device.release, &device.namespace)?;
        delete_edge_deployments(&kube, &device).await?;
    }
    if device.installed_crds {
        remove_crds(&step, &helm, &kube, device.created_crds_namespace).await?;
    }
    state.device = None;
    step.done("");
    Ok(())
}

async fn delete_namespace(kube: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(kube.clone());
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    api.delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting namespace {name}"))?;
    wait_for(&format!("namespace {name} to go"), CLEANUP_TIMEOUT, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(Some(())),
                Ok(Some(_)) => Err("still terminating".into()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

/// Deletes the device's EdgeDeployments (their owned objects follow) and waits for its pods.
async fn delete_edge_deployments(kube: &kube::Client, device: &DeviceRecord) -> Result<()> {
    use ironedge_controller::crd::EdgeDeployment;
    let api: Api<EdgeDeployment> = Api::namespaced(kube.clone(), &device.namespace);
    for ed in api.list(&ListParams::default()).await?.items {
        if ed.spec.device_id == device.id
            && let Some(name) = ed.metadata.name
        {
            api.delete(&name, &DeleteParams::foreground()).await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(kube.clone(), &device.namespace);
    let selector = format!("ironedge.io/device={}", device.id);
    wait_for("the device's pods to go", CLEANUP_TIMEOUT, || {
        let pods = pods.clone();
        let lp = ListParams::default().labels(&selector);
        async move {
            let left = pods.list(&lp).await.map_err(|e| e.to_string())?.items.len();
            if left == 0 {
                Ok(Some(()))
            } else {
                Err(format!("{left} pods left"))
            }
        }
    })
    .await
}

/// Uninstalls the CRD chart and deletes the CRD (the chart keeps it on uninstall) unless another
/// device still has an EdgeDeployment.
async fn remove_crds(
    step: &Step,
    helm: &Helm,
    kube: &kube::Client,
    created_namespace: bool,
) -> Result<()> {
    use ironedge_controller::crd::EdgeDeployment;
    let all: Api<EdgeDeployment> = Api::all(kube.clone());
    let others = all
        .list(&ListParams::default())
        .await
        .map_or(0, |l| l.items.len());
    if others > 0 {
        step.detail(&format!(
            "keeping the CRD: {others} EdgeDeployments of other devices use it"
        ));
        return Ok(());
    }
    helm.uninstall(step, CRDS_RELEASE, CRDS_NAMESPACE)?;
    let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
    if crds.get_opt(CRD_NAME).await?.is_some() {
        crds.delete(CRD_NAME, &DeleteParams::default()).await?;
    }
    if created_namespace {
        delete_namespace(kube, CRDS_NAMESPACE).await?;
    }
    Ok(())
}
