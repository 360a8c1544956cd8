//! `ironedge`: one binary for every ironedge component and the user tools.

mod commands;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// IoT Edge on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "ironedge", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with IoT Edge deployment manifests (validate).
    #[command(subcommand)]
    Manifest(commands::manifest::ManifestCommand),
    /// Test and evaluate IoT Hub routes and conditions.
    #[command(subcommand)]
    Route(commands::route::RouteCommand),
    /// Print the EdgeDeployment CRD (`ironedge crd | kubectl apply -f -`).
    Crd(commands::crd::CrdArgs),
    /// Run the EdgeDeployment controller (per device namespace or cluster-wide), or print its RBAC.
    Controller(commands::controller::ControllerArgs),
    /// Run the edge hub (module broker, routes, store-and-forward, upstream link), or its load tool.
    Edgehub(Box<commands::edgehub::EdgeHubArgs>),
    /// Run the cloud hub (IoT-Hub-compatible REST over HTTPS and device MQTT over TLS).
    Hub(commands::hub::HubArgs),
    /// Run a device's edge agent (cloud sync, status, module identities, workload API, edge CA),
    /// or print its RBAC.
    Agent(Box<commands::agent::AgentArgs>),
    /// Run the workload API sidecar of a module pod (forwards to the agent with the pod's token).
    WorkloadProxy(commands::workload_proxy::WorkloadProxyArgs),
    /// Run pods as local processes: a development/test-only node for clusters without kubelets.
    Node(Box<commands::node::NodeArgs>),
    /// Try it: local Kubernetes, hub, node, an edge device and a demo deployment, shown live.
    Up(Box<commands::up::UpArgs>),
    /// Stop exactly what `ironedge up` started.
    Down(commands::down::DownArgs),
    /// Manage device identities on a hub.
    #[command(subcommand)]
    Device(commands::device::DeviceCommand),
    /// Put a deployment manifest on one edge device.
    #[command(subcommand)]
    Deploy(commands::deploy::DeployCommand),
    /// Manage automatic and layered deployments on a hub.
    #[command(subcommand)]
    Deployment(commands::deployment::DeploymentCommand),
    /// Show and update device and module twins.
    #[command(subcommand)]
    Twin(commands::twin::TwinCommand),
    /// Follow device-to-cloud messages; send cloud-to-device messages.
    #[command(subcommand)]
    Messages(commands::messages::MessagesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Tools whose output is figures log only problems unless asked for more.
    let quiet = matches!(&cli.command, Command::Edgehub(args) if args.is_bench());
    telemetry::init(if quiet { "warn" } else { "info" });
    let result = match cli.command {
        Command::Manifest(cmd) => commands::manifest::run(cmd),
        Command::Route(cmd) => commands::route::run(cmd),
        Command::Crd(args) => commands::crd::run(args),
        Command::Controller(args) => commands::controller::run(args),
        Command::Edgehub(args) => commands::edgehub::run(*args),
        Command::Hub(args) => commands::hub::run(args),
        Command::Agent(args) => commands::agent::run(*args),
        Command::WorkloadProxy(args) => commands::workload_proxy::run(args),
        Command::Node(args) => commands::node::run(*args),
        Command::Up(args) => commands::up::run(*args),
        Command::Down(args) => commands::down::run(args),
        Command::Device(cmd) => commands::device::run(cmd),
        Command::Deploy(cmd) => commands::deploy::run(cmd),
        Command::Deployment(cmd) => commands::deployment::run(cmd),
        Command::Twin(cmd) => commands::twin::run(cmd),
        Command::Messages(cmd) => commands::messages::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}
