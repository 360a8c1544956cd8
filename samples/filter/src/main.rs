//! `ironedge-filter`: forwards readings above a threshold as alerts (see the crate docs).

use std::process::ExitCode;

use ironedge_filter::{
    DEFAULT_THRESHOLD, Decision, INPUT, OUTPUT, THRESHOLD_KEY, ThresholdError, decide,
    threshold_from_desired, threshold_from_vars,
};
use ironedge_module_client::{
    ClientOptions, EdgeEnvironment, EnvironmentError, Error as ClientError, InputMessage,
    ModuleClient, ModuleEvent,
};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
enum FilterError {
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FilterError::Runtime)
        .and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the filter stopped");
            ExitCode::FAILURE
        }
    }
}

struct Filter {
    client: ModuleClient,
    threshold: f64,
    forwarded: u64,
    dropped: u64,
}

async fn run() -> Result<(), FilterError> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let env = EdgeEnvironment::from_vars(vars.clone())?;
    let threshold = threshold_from_vars(vars.iter().map(|(k, v)| (k, v)))?;
    let (client, mut events) = ModuleClient::start(&env, ClientOptions::default())?;
    tracing::info!(module = %client.identity(), threshold, default = DEFAULT_THRESHOLD, "filter starting");
    let mut filter = Filter {
        client,
        threshold,
        forwarded: 0,
        dropped: 0,
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.recv() => match event {
                Some(event) => filter.handle(event).await,
                None => break,
            },
        }
    }
    tracing::info!(
        forwarded = filter.forwarded,
        dropped = filter.dropped,
        "stopping"
    );
    filter.client.close();
    Ok(())
}

impl Filter {
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
            ModuleEvent::Input(input) => self.filter(*input).await,
            ModuleEvent::Method(call) => {
                let body = json!({"message": format!("unknown method {:?}", call.name)});
                if let Err(e) = call.respond(404, &body).await {
                    tracing::warn!(error = %e, "method response not sent");
                }
            }
        }
    }

    fn apply_desired(&mut self, desired: &Value) {
        match threshold_from_desired(desired) {
            Ok(Some(t)) if t != self.threshold => {
                tracing::info!(
                    threshold = t,
                    previous = self.threshold,
                    "threshold changed by the desired properties"
                );
                self.threshold = t;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "desired threshold ignored"),
        }
    }

    async fn report(&self) {
        if let Err(e) = self
            .client
            .patch_reported(&json!({THRESHOLD_KEY: self.threshold}))
            .await
        {
            tracing::warn!(error = %e, "reported properties not sent");
        }
    }

    /// Forwards or drops one reading, then acknowledges it: a crash before the acknowledgement
    /// gets the reading delivered again, so no alert is lost.
    async fn filter(&mut self, input: InputMessage) {
        if input.input != INPUT {
            tracing::warn!(input = %input.input, "ignoring a message on an unknown input");
        } else {
            match decide(&input.message, self.threshold) {
                Decision::Forward(alert) => match self.client.send_output(OUTPUT, *alert).await {
                    Ok(()) => {
                        self.forwarded += 1;
                        tracing::info!(forwarded = self.forwarded, "alert forwarded");
                    }
                    Err(ClientError::Closed) => return,
                    Err(e) => tracing::error!(error = %e, "alert dropped: the edge hub refused it"),
                },
                Decision::Drop { temperature } => {
                    self.dropped += 1;
                    tracing::debug!(
                        temperature,
                        threshold = self.threshold,
                        "below the threshold"
                    );
                }
                Decision::Invalid(reason) => {
                    tracing::warn!(reason, "ignoring a message that is not a reading")
                }
            }
        }
        if let Err(e) = input.ack().await {
            tracing::debug!(error = %e, "input not acknowledged; it comes again");
        }
    }
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
