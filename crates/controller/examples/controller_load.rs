//! Load tool: N device namespaces × M modules against a real kube-apiserver.
//!
//! ```sh
//! export KUBECONFIG="$(scripts/k8s/start)"
//! cargo run --release -p ironedge-controller --example controller_load -- --namespaces 100 --modules 10
//! ```
//!
//! Runs the controller in cluster mode as a child process (so its memory is measured alone),
//! creates N EdgeDeployments of M modules each (a ServiceAccount and a Deployment per module, and a
//! Service for the first module, like an edge hub: the local control plane's Service range holds
//! only 254 addresses), and prints:
//! - time to converge: until every object exists, and until every status is current and settled;
//! - API writes per steady-state resync: the controller's own count of write requests (a counting
//!   layer on its client; lease renewals excluded) across one full resync of every
//!   EdgeDeployment after convergence, which must be 0;
//! - the controller's resident memory (VmRSS) and peak (VmHWM).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ironedge_controller::controller::{self, Health, Metrics, Scope, Settings};
use ironedge_controller::crd::{self, EdgeDeployment};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Options {
    namespaces: usize,
    modules: usize,
    resync_seconds: u64,
    metrics_port: u16,
    keep: bool,
}

fn options() -> Options {
    let mut o = Options {
        namespaces: 100,
        modules: 10,
        resync_seconds: 20,
        metrics_port: 19464,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&arg))
        };
        match arg.as_str() {
            "--namespaces" => o.namespaces = value() as usize,
            "--modules" => o.modules = value() as usize,
            "--resync-seconds" => o.resync_seconds = value(),
            "--metrics-port" => o.metrics_port = value() as u16,
            "--keep" => o.keep = true,
            _ => usage(&arg),
        }
    }
    o
}

fn usage(arg: &str) -> ! {
    eprintln!(
        "unexpected argument {arg:?}\nusage: load [--namespaces N] [--modules M] [--resync-seconds S] \
         [--metrics-port P] [--keep]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("--serve-controller") {
        let selector = args.next().unwrap();
        let resync: u64 = args.next().unwrap().parse().unwrap();
        let port: u16 = args.next().unwrap().parse().unwrap();
        // The controller is I/O-bound: one thread serves it, as `ironedge controller` can.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(serve_controller(selector, resync, port));
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run_load());
}

async fn run_load() {
    let o = options();
    let client = Client::try_default().await.unwrap_or_else(|e| {
        eprintln!("no cluster reachable ({e}); start one with `export KUBECONFIG=\"$(scripts/k8s/start)\"`");
        std::process::exit(1)
    });
    install_crd(&client).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    println!(
        "run {run}: {} namespaces × {} modules, resync every {} s",
        o.namespaces, o.modules, o.resync_seconds
    );

    // Anything already answering on the metrics port (another run's controller) would be read
    // as ours: refuse to start instead of printing someone else's figures.
    if std::net::TcpListener::bind(("127.0.0.1", o.metrics_port)).is_err() {
        eprintln!(
            "port {} is in use (another controller_load run?); pass --metrics-port",
            o.metrics_port
        );
        std::process::exit(1);
    }
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--serve-controller",
            &format!("ironedge.io/load={run}"),
            &o.resync_seconds.to_string(),
            &o.metrics_port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the controller");
    let pid = child.id().unwrap();
    wait_until(
        "controller metrics endpoint",
        Duration::from_secs(30),
        || async { scrape(o.metrics_port).await.is_some().then_some(()) },
    )
    .await;
    if let Ok(Some(status)) = child.try_wait() {
        eprintln!("the controller exited at start ({status}); see its output above");
        std::process::exit(1);
    }

    let names: Vec<String> = (0..o.namespaces)
        .map(|i| format!("load-{run}-{i:03}"))
        .collect();
    let start = Instant::now();
    futures::stream::iter(names.clone())
        .map(|ns| create_device(client.clone(), ns, run.clone(), o.modules))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let created = start.elapsed();
    println!(
        "created {} EdgeDeployments in {:.1} s",
        o.namespaces,
        created.as_secs_f64()
    );

    let expected = o.namespaces * o.modules;
    let deployments: Api<Deployment> = Api::all(client.clone());
    let eds: Api<EdgeDeployment> = Api::all(client.clone());
    let ed_selector = format!("ironedge.io/load={run}");
    wait_until("every Deployment", Duration::from_secs(600), || async {
        let list = deployments
            .list_metadata(
                &ListParams::default().labels("app.kubernetes.io/managed-by=ironedge-controller"),
            )
            .await
            .ok()?;
        let count = list
            .items
            .iter()
            .filter(|d| {
                d.namespace()
                    .is_some_and(|n| n.starts_with(&format!("load-{run}-")))
            })
            .count();
        (count >= expected).then_some(())
    })
    .await;
    let objects_at = start.elapsed();
    println!(
        "all {expected} modules' objects exist after {:.1} s",
        objects_at.as_secs_f64()
    );
    wait_until(
        "every status current and settled",
        Duration::from_secs(600),
        || async {
            let list = eds
                .list(&ListParams::default().labels(&ed_selector))
                .await
                .ok()?;
            let settled = list.items.iter().filter(|ed| {
                ed.status.as_ref().is_some_and(|s| {
                    s.observed_generation == ed.metadata.generation
                        && s.modules.len() == o.modules
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Progressing" && c.status == "False")
                })
            });
            (settled.count() == o.namespaces).then_some(())
        },
    )
    .await;
    let converged = start.elapsed();
    println!(
        "converged (every status current, nothing progressing) after {:.1} s",
        converged.as_secs_f64()
    );

    // Steady state: wait until the controller stops writing (pods and ReplicaSets settle), then
    // count writes across one full resync of every EdgeDeployment.
    let mut last = writes(o.metrics_port).await;
    let quiet_since = Instant::now();
    let mut quiet_start = Instant::now();
    while quiet_start.elapsed() < Duration::from_secs(5)
        && quiet_since.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = writes(o.metrics_port).await;
        if now != last {
            last = now;
            quiet_start = Instant::now();
        }
    }
    let (w0, r0) = (
        writes(o.metrics_port).await,
        reconciles(o.metrics_port).await,
    );
    let resync_start = Instant::now();
    wait_until(
        "one full resync",
        Duration::from_secs(o.resync_seconds * 4 + 60),
        || async { (reconciles(o.metrics_port).await >= r0 + o.namespaces as u64).then_some(()) },
    )
    .await;
    let (w1, r1) = (
        writes(o.metrics_port).await,
        reconciles(o.metrics_port).await,
    );
    println!(
        "steady-state resync: {} reconciles in {:.1} s, {} API writes (lease renewals excluded)",
        r1 - r0,
        resync_start.elapsed().as_secs_f64(),
        w1 - w0
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
            .unwrap_or_default()
    };
    let rss_mb = field("VmRSS:").parse::<f64>().unwrap_or(0.0) / 1024.0;
    let hwm_mb = field("VmHWM:").parse::<f64>().unwrap_or(0.0) / 1024.0;
    println!("controller memory: RSS {rss_mb:.1} MB, peak {hwm_mb:.1} MB");
    println!(
        "RESULT namespaces={} modules={} objects_s={:.1} converge_s={:.1} resync_writes={} rss_mb={rss_mb:.1} peak_mb={hwm_mb:.1}",
        o.namespaces,
        o.modules,
        objects_at.as_secs_f64(),
        converged.as_secs_f64(),
        w1 - w0
    );

    let _ = child.kill().await;
    if !o.keep {
        cleanup(&client, &names).await;
    }
}

async fn serve_controller(selector: String, resync: u64, port: u16) {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let config = kube::Config::infer().await.unwrap();
    let client = controller::counting_client(config, metrics.clone()).unwrap();
    let mut settings = Settings::new(Scope::All);
    settings.selector = Some(selector);
    settings.resync = Duration::from_secs(resync);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(controller::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        std::future::pending(),
    ));
    controller::run(client, settings, metrics, health, std::future::pending())
        .await
        .unwrap();
}

async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "edgedeployments.ironedge.io",
        &PatchParams::apply("ironedge-load").force(),
        &Patch::Apply(crd::crd()),
    )
    .await
    .expect("install the CRD");
    wait_until("CRD established", Duration::from_secs(30), || async {
        let crd = api.get("edgedeployments.ironedge.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

async fn create_device(client: Client, namespace: String, run: String, modules: usize) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let modules: Vec<_> = (0..modules)
        .map(|i| {
            let ports = if i == 0 { json!({"ExposedPorts": {"8883/tcp": {}}}) } else { json!({}) };
            json!({"name": format!("module{i}"), "image": format!("example.azurecr.io/module{i}:1.0"),
                   "restartPolicy": "always",
                   "env": {"INDEX": i.to_string()},
                   "createOptions": ports})
        })
        .collect();
    let ed: EdgeDeployment = serde_json::from_value(json!({
        "apiVersion": "ironedge.io/v1", "kind": "EdgeDeployment",
        "metadata": {"name": "device", "namespace": namespace, "labels": {"ironedge.io/load": run}},
        "spec": {"deviceId": namespace, "hubHostName": "hub.example.net", "modules": modules},
    }))
    .unwrap();
    let api: Api<EdgeDeployment> = Api::namespaced(client, &namespace);
    api.create(&PostParams::default(), &ed)
        .await
        .expect("create EdgeDeployment");
}

async fn cleanup(client: &Client, names: &[String]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(names.iter().cloned())
        .map(|ns| {
            let client = client.clone();
            let namespaces = namespaces.clone();
            async move {
                let pods: Api<Pod> = Api::namespaced(client, &ns);
                let _ = pods
                    .delete_collection(
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                        &ListParams::default(),
                    )
                    .await;
                let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    println!("deleted {} namespaces", names.len());
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let start = Instant::now();
    loop {
        if check().await.is_some() {
            return;
        }
        if start.elapsed() > timeout {
            eprintln!("timed out after {timeout:?} waiting for {what}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn scrape(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    body.contains("ironedge_controller").then_some(body)
}

/// Sum of `ironedge_controller_api_writes_total` without lease renewals.
async fn writes(port: u16) -> u64 {
    let text = scrape(port).await.unwrap_or_default();
    let mut by_resource: BTreeMap<String, u64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("ironedge_controller_api_writes_total{"))
    {
        let resource = line
            .split("resource=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        *by_resource.entry(resource.to_string()).or_default() += value;
    }
    by_resource
        .iter()
        .filter(|(r, _)| !r.starts_with("leases"))
        .map(|(_, v)| v)
        .sum()
}

async fn reconciles(port: u16) -> u64 {
    let text = scrape(port).await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("ironedge_controller_reconciles_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
