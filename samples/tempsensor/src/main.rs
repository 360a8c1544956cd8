//! `ironedge-tempsensor`: the simulated temperature sensor module (see the crate docs).

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use ironedge_module_client::{
    ClientOptions, EdgeEnvironment, EnvironmentError, InputMessage, MethodRequest, ModuleClient,
    ModuleEvent,
};
use ironedge_tempsensor::message::{OUTPUT, to_message};
use ironedge_tempsensor::settings::{SensorSettings, SettingsError};
use ironedge_tempsensor::simulator::Simulator;
use serde_json::{Value, json};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
enum SensorError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Client(#[from] ironedge_module_client::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn main() -> ExitCode {
    init_tracing();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SensorError::Runtime)
        .and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the sensor stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The sensor's running state.
struct Sensor {
    client: ModuleClient,
    settings: SensorSettings,
    simulator: Simulator,
    batch: String,
    sent: u64,
    next: Instant,
}

async fn run() -> Result<(), SensorError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let env = EdgeEnvironment::from_vars(vars.clone())?;
    let settings = SensorSettings::from_vars(vars)?;
    let seed = settings.seed.unwrap_or_else(random_seed);
    let (client, mut events) = ModuleClient::start(&env, ClientOptions::default())?;
    let batch = uuid::Uuid::new_v4().to_string();
    tracing::info!(
        module = %client.identity(),
        interval = ?settings.send_interval,
        count = ?settings.message_count,
        seed,
        batch = %batch,
        "simulated temperature sensor starting"
    );
    let mut sensor = Sensor {
        simulator: Simulator::new(settings.parameters.clone(), seed),
        client,
        settings,
        batch,
        sent: 0,
        next: Instant::now(),
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep_until(sensor.next), if sensor.sending() => sensor.send_one().await,
            event = events.recv() => match event {
                Some(event) => sensor.handle(event).await,
                None => break,
            },
        }
    }
    tracing::info!(sent = sensor.sent, "stopping");
    sensor.client.close();
    Ok(())
}

impl Sensor {
    fn sending(&self) -> bool {
        self.settings.send_data && self.settings.message_count.is_none_or(|n| self.sent < n)
    }

    async fn send_one(&mut self) {
        let reading = self.simulator.next_reading();
        self.sent += 1;
        let message = to_message(&reading, self.sent, &self.batch, jiff::Timestamp::now());
        match self.client.send_output(OUTPUT, message).await {
            Ok(()) => tracing::info!(
                sequence = self.sent,
                machine_temperature = reading.machine.temperature,
                "sent"
            ),
            Err(e) => tracing::warn!(sequence = self.sent, error = %e, "reading not sent"),
        }
        self.next = Instant::now() + self.settings.send_interval;
        if !self.sending() && self.settings.message_count == Some(self.sent) {
            tracing::info!(sent = self.sent, "all readings sent");
            self.report().await;
        }
    }

    async fn report(&self) {
        let mut reported = self.settings.reported();
        reported["sent"] = json!(self.sent);
        reported["batchId"] = json!(self.batch);
        if let Err(e) = self.client.patch_reported(&reported).await {
            tracing::warn!(error = %e, "reported properties not sent");
        }
    }

    fn apply_desired(&mut self, desired: &Value) {
        let interval = self.settings.send_interval;
        match self.settings.apply_desired(desired) {
            Ok(true) => {
                tracing::info!(send_data = self.settings.send_data, interval = ?self.settings.send_interval, "desired properties applied");
                if self.settings.send_interval != interval {
                    self.next = Instant::now() + self.settings.send_interval;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "desired properties ignored"),
        }
    }

    async fn handle(&mut self, event: ModuleEvent) {
        match event {
            ModuleEvent::Connected => {
                // Desired changes made while disconnected are not replayed: read them.
                match self.client.get_twin().await {
                    Ok(twin) => self.apply_desired(&twin.desired),
                    Err(e) => tracing::warn!(error = %e, "twin not read"),
                }
                self.report().await;
            }
            ModuleEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "disconnected from the edge hub");
            }
            ModuleEvent::DesiredProperties(patch) => {
                self.apply_desired(&patch);
                self.report().await;
            }
            ModuleEvent::Input(input) => self.control(*input).await,
            ModuleEvent::Method(call) => self.method(call).await,
        }
    }

    /// Input `control`: `{"command": "reset"}` restarts the warm-up.
    async fn control(&mut self, input: InputMessage) {
        let command = input
            .body_json()
            .ok()
            .and_then(|b| b.get("command").and_then(Value::as_str).map(str::to_owned));
        match (input.input.as_str(), command.as_deref()) {
            ("control", Some(c)) if c.eq_ignore_ascii_case("reset") => {
                tracing::info!("reset by a control message");
                self.simulator.reset();
            }
            (name, _) => tracing::warn!(
                input = name,
                "ignoring a message the sensor does not understand"
            ),
        }
        if let Err(e) = input.ack().await {
            tracing::debug!(error = %e, "control message not acknowledged");
        }
    }

    /// Method `reset`; anything else is 404.
    async fn method(&mut self, call: MethodRequest) {
        let (status, body) = if call.name.eq_ignore_ascii_case("reset") {
            self.simulator.reset();
            tracing::info!("reset by a direct method");
            (200, json!({"message": "reset"}))
        } else {
            (
                404,
                json!({"message": format!("unknown method {:?}", call.name)}),
            )
        };
        if let Err(e) = call.respond(status, &body).await {
            tracing::warn!(error = %e, "method response not sent");
        }
    }
}

/// A seed that differs between runs.
fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
