//! The live view of `ironedge up`: the modules as the cloud sees them (`$edgeAgent` reported
//! properties), the device namespace's pods, and the messages arriving at the hub. On a terminal
//! it is one screen redrawn in place; otherwise every change is one plain line.
//!
//! The model ([`ViewState`]) and its rendering are pure; [`run`] feeds it from the hub and the
//! cluster and draws it until Ctrl-C.

use std::collections::VecDeque;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use ironedge_hub::client::HubClient;
use serde_json::Value;

use super::cluster;
use super::progress::fit;

/// Messages kept for the screen.
const KEEP_MESSAGES: usize = 200;

/// One module as `$edgeAgent` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleRow {
    /// Module name (`edgeAgent`, `edgeHub`, user modules).
    pub(crate) name: String,
    /// `runtimeStatus`.
    pub(crate) status: String,
    /// `restartCount`.
    pub(crate) restarts: i64,
    /// `statusDescription` or the exit code.
    pub(crate) detail: String,
}

/// One pod of the device namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodRow {
    /// Pod name.
    pub(crate) name: String,
    /// Phase or waiting reason.
    pub(crate) state: String,
    /// Restarts.
    pub(crate) restarts: i32,
}

/// One message stored at the hub.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessageRow {
    /// Hub sequence number.
    pub(crate) seq: u64,
    /// `HH:MM:SS` of enqueuing.
    pub(crate) time: String,
    /// `module/output`.
    pub(crate) source: String,
    /// Application properties worth showing.
    pub(crate) properties: String,
    /// The body, summarised.
    pub(crate) summary: String,
}

/// Everything on the screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ViewState {
    /// `lastDesiredVersion` and `lastDesiredStatus` in a phrase.
    pub(crate) deployment: String,
    /// Modules.
    pub(crate) modules: Vec<ModuleRow>,
    /// Pods.
    pub(crate) pods: Vec<PodRow>,
    /// Latest messages, newest last.
    pub(crate) messages: VecDeque<MessageRow>,
    /// Messages seen since the view started.
    pub(crate) received: u64,
}

/// The module rows of `$edgeAgent` reported properties, system modules first.
pub(crate) fn modules_from_reported(reported: &Value) -> Vec<ModuleRow> {
    let mut rows = Vec::new();
    for section in ["systemModules", "modules"] {
        let Some(map) = reported.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, m) in map {
            let status = m
                .get("runtimeStatus")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            let detail = m
                .get("statusDescription")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| m.get("exitCode").map(|c| format!("exit code {c}")))
                .unwrap_or_default();
            rows.push(ModuleRow {
                name: name.clone(),
                status,
                restarts: m.get("restartCount").and_then(Value::as_i64).unwrap_or(0),
                detail,
            });
        }
    }
    rows
}

/// The deployment phrase of `$edgeAgent` reported properties.
pub(crate) fn deployment_from_reported(reported: &Value) -> String {
    let version = reported
        .get("lastDesiredVersion")
        .and_then(Value::as_i64)
        .map_or_else(|| "-".to_owned(), |v| v.to_string());
    match reported.get("lastDesiredStatus") {
        Some(s) => {
            let code = s.get("code").and_then(Value::as_i64).unwrap_or(0);
            let what = if code == 200 { "applied" } else { "refused" };
            let description = s
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            format!("desired version {version} {what} ({code}){description}")
        }
        None => "waiting for the agent's first report".into(),
    }
}

/// A message record of the hub's `/_ext/messages/events` stream as a row.
pub(crate) fn message_row(record: &Value) -> Option<MessageRow> {
    let seq = record.get("seq")?.as_u64()?;
    let time = record
        .get("enqueuedTimeUtc")
        .and_then(Value::as_str)
        .and_then(|t| t.get(11..19))
        .unwrap_or("--:--:--")
        .to_owned();
    let module = record
        .get("moduleId")
        .and_then(Value::as_str)
        .unwrap_or("(device)");
    let output = record
        .get("outputName")
        .and_then(Value::as_str)
        .map(|o| format!("/{o}"))
        .unwrap_or_default();
    let properties = record
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(k, _)| *k != "batchId")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let body = body_text(record);
    Some(MessageRow {
        seq,
        time,
        source: format!("{module}{output}"),
        properties,
        summary: summarise(&body),
    })
}

fn body_text(record: &Value) -> String {
    if let Some(b) = record.get("body").and_then(Value::as_str) {
        return b.to_owned();
    }
    use base64::Engine as _;
    record
        .get("bodyBase64")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A sensor reading in words; anything else as its text.
pub(crate) fn summarise(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(80).collect();
    };
    let num = |p: &str| v.pointer(p).and_then(Value::as_f64);
    match (
        num("/machine/temperature"),
        num("/machine/pressure"),
        num("/ambient/temperature"),
        num("/ambient/humidity"),
    ) {
        (Some(mt), Some(mp), Some(at), Some(ah)) => {
            format!("machine {mt:.2} °C {mp:.2} bar · ambient {at:.2} °C {ah:.0} %")
        }
        _ => v.to_string(),
    }
}

impl ViewState {
    /// Adds a message, keeping the newest.
    pub(crate) fn push_message(&mut self, row: MessageRow) {
        self.received += 1;
        self.messages.push_back(row);
        while self.messages.len() > KEEP_MESSAGES {
            self.messages.pop_front();
        }
    }

    /// The screen for a terminal of `width` × `height`.
    pub(crate) fn render(&self, header: &[String], width: usize, height: usize) -> Vec<String> {
        let mut lines: Vec<String> = header.to_vec();
        lines.push(format!("deployment: {}", self.deployment));
        lines.push(String::new());
        lines.push(format!(
            "{:<12} {:<10} {:>8}  {}",
            "MODULE", "STATUS", "RESTARTS", "DETAIL"
        ));
        for m in &self.modules {
            lines.push(format!(
                "{:<12} {:<10} {:>8}  {}",
                m.name, m.status, m.restarts, m.detail
            ));
        }
        if self.modules.is_empty() {
            lines.push("(no module reported yet)".into());
        }
        lines.push(String::new());
        let pods: Vec<String> = self
            .pods
            .iter()
            .map(|p| {
                let restarts = if p.restarts > 0 {
                    format!(" ×{}", p.restarts)
                } else {
                    String::new()
                };
                format!("{} {}{restarts}", short_pod(&p.name), p.state)
            })
            .collect();
        lines.push(format!("pods: {}", pods.join(" · ")));
        lines.push(String::new());
        lines.push(format!(
            "MESSAGES AT THE HUB ({} since this view started)",
            self.received
        ));
        let room = height.saturating_sub(lines.len() + 1).max(3);
        let skip = self.messages.len().saturating_sub(room);
        for m in self.messages.iter().skip(skip) {
            lines.push(message_line(m));
        }
        lines.into_iter().map(|l| fit(&l, width)).collect()
    }
}

/// A message as one line.
pub(crate) fn message_line(m: &MessageRow) -> String {
    format!(
        "{} #{:<5} {:<16} {:<30} {}",
        m.time, m.seq, m.source, m.properties, m.summary
    )
}

/// `sensor-7b8fbd8b6b-9jb22` → `sensor`.
fn short_pod(name: &str) -> &str {
    let mut parts: Vec<&str> = name.rsplitn(3, '-').collect();
    if parts.len() == 3 && parts[0].len() == 5 && parts[1].len() >= 8 {
        parts.pop().unwrap_or(name)
    } else {
        name
    }
}

/// What the view reads.
#[derive(Clone)]
pub(crate) struct Sources {
    /// The hub.
    pub(crate) hub: HubClient,
    /// The cluster.
    pub(crate) kube: kube::Client,
    /// The device id.
    pub(crate) device: String,
    /// Its namespace.
    pub(crate) namespace: String,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("device", &self.device)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Feeds and draws the view until Ctrl-C.
pub(crate) async fn run(sources: Sources, header: Vec<String>, tty: bool) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Update>();
    tokio::spawn(poll_status(sources.clone(), tx.clone()));
    tokio::spawn(stream_messages(sources.clone(), tx));
    let mut state = ViewState::default();
    let mut screen = Screen::new(tty);
    let mut redraw = tokio::time::interval(Duration::from_millis(500));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(update) = rx.recv() => {
                let before = state.clone();
                update.apply(&mut state);
                if !tty {
                    plain_changes(&before, &state);
                }
            }
            _ = redraw.tick(), if tty => screen.draw(&state.render(&header, super::progress::terminal_width(), screen.height())),
        }
    }
    screen.leave();
    Ok(())
}

/// One change from a source.
enum Update {
    Status {
        deployment: String,
        modules: Vec<ModuleRow>,
        pods: Vec<PodRow>,
    },
    Message(MessageRow),
}

impl Update {
    fn apply(self, state: &mut ViewState) {
        match self {
            Self::Status {
                deployment,
                modules,
                pods,
            } => {
                state.deployment = deployment;
                state.modules = modules;
                state.pods = pods;
            }
            Self::Message(m) => state.push_message(m),
        }
    }
}

/// Prints what changed as plain lines.
#[allow(clippy::print_stdout)]
fn plain_changes(before: &ViewState, after: &ViewState) {
    let now = jiff::Zoned::now().strftime("%H:%M:%S").to_string();
    if before.deployment != after.deployment {
        println!("{now} deployment: {}", after.deployment);
    }
    for m in &after.modules {
        if !before.modules.contains(m) {
            println!(
                "{now} module {}: {} (restarts {}) {}",
                m.name, m.status, m.restarts, m.detail
            );
        }
    }
    for p in &after.pods {
        if !before.pods.contains(p) {
            println!(
                "{now} pod {}: {} (restarts {})",
                p.name, p.state, p.restarts
            );
        }
    }
    if after.received > before.received
        && let Some(m) = after.messages.back()
    {
        println!("{}", message_line(m));
    }
}

async fn poll_status(sources: Sources, tx: tokio::sync::mpsc::UnboundedSender<Update>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let reported = super::hub::agent_reported(&sources.hub, &sources.device)
            .await
            .unwrap_or(Value::Null);
        let pods = cluster::pods(&sources.kube, &sources.namespace)
            .await
            .unwrap_or_default()
            .iter()
            .map(|p| PodRow {
                name: p.metadata.name.clone().unwrap_or_default(),
                state: cluster::pod_state(p),
                restarts: cluster::pod_restarts(p),
            })
            .collect();
        let update = Update::Status {
            deployment: deployment_from_reported(&reported),
            modules: modules_from_reported(&reported),
            pods,
        };
        if tx.send(update).is_err() {
            return;
        }
    }
}

async fn stream_messages(sources: Sources, tx: tokio::sync::mpsc::UnboundedSender<Update>) {
    let mut next: Option<u64> = None;
    loop {
        let mut query = format!("deviceId={}", super::super::device::enc(&sources.device));
        if let Some(n) = next {
            query.push_str(&format!("&from={n}"));
        }
        if let Ok(mut response) = sources.hub.stream_events(&query).await {
            let mut buffer = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(record) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if let Some(row) = message_row(&record) {
                        next = Some(row.seq + 1);
                        if tx.send(Update::Message(row)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The terminal screen (alternate buffer, hidden cursor) or nothing.
struct Screen {
    tty: bool,
}

impl Screen {
    fn new(tty: bool) -> Self {
        if tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[?1049h\x1b[?25l");
            let _ = out.flush();
        }
        Self { tty }
    }

    fn height(&self) -> usize {
        rustix::termios::tcgetwinsize(std::io::stdout())
            .ok()
            .map(|w| usize::from(w.ws_row))
            .filter(|h| *h >= 10)
            .unwrap_or(24)
    }

    fn draw(&self, lines: &[String]) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[H\x1b[2J{}", lines.join("\r\n"));
        let _ = out.flush();
    }

    fn leave(&mut self) {
        if self.tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[?25h\x1b[?1049l");
            let _ = out.flush();
            self.tty = false;
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reported() -> Value {
        json!({
            "lastDesiredVersion": 3,
            "lastDesiredStatus": {"code": 200, "description": ""},
            "systemModules": {
                "edgeAgent": {"runtimeStatus": "running", "restartCount": 0},
                "edgeHub": {"runtimeStatus": "running", "restartCount": 1}
            },
            "modules": {
                "sensor": {"runtimeStatus": "running", "restartCount": 0, "statusDescription": "started"},
                "filter": {"runtimeStatus": "backoff", "restartCount": 4, "exitCode": 1}
            }
        })
    }

    #[test]
    fn reported_properties_become_module_rows_system_modules_first() {
        let rows = modules_from_reported(&reported());
        let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["edgeAgent", "edgeHub", "sensor", "filter"]);
        assert_eq!(rows[3].status, "backoff");
        assert_eq!(rows[3].restarts, 4);
        assert_eq!(rows[3].detail, "exit code 1");
        assert_eq!(
            deployment_from_reported(&reported()),
            "desired version 3 applied (200)"
        );
        let refused = json!({"lastDesiredVersion": 4, "lastDesiredStatus": {"code": 400, "description": "bad route"}});
        assert_eq!(
            deployment_from_reported(&refused),
            "desired version 4 refused (400): bad route"
        );
    }

    #[test]
    fn a_stored_reading_becomes_a_readable_line() {
        let record = json!({
            "seq": 42, "enqueuedTimeUtc": "2026-11-29T11:17:45.102Z", "deviceId": "d",
            "moduleId": "filter", "outputName": "output1",
            "properties": {"MessageType": "Alert", "batchId": "b", "sequenceNumber": "51"},
            "body": "{\"machine\":{\"temperature\":43.4884,\"pressure\":3.56},\"ambient\":{\"temperature\":21.07,\"humidity\":25}}"
        });
        let row = message_row(&record).unwrap();
        assert_eq!(row.time, "11:17:45");
        assert_eq!(row.source, "filter/output1");
        assert_eq!(row.properties, "MessageType=Alert sequenceNumber=51");
        assert_eq!(
            row.summary,
            "machine 43.49 °C 3.56 bar · ambient 21.07 °C 25 %"
        );
        assert!(message_line(&row).contains("#42"));
        assert_eq!(summarise("plain text"), "plain text");
    }

    #[test]
    fn the_screen_fits_the_terminal_and_shows_the_newest_messages() {
        let mut state = ViewState {
            modules: modules_from_reported(&reported()),
            ..ViewState::default()
        };
        for seq in 0..100 {
            state.push_message(MessageRow {
                seq,
                time: "00:00:00".into(),
                source: "filter/output1".into(),
                properties: String::new(),
                summary: "x".repeat(200),
            });
        }
        let lines = state.render(&["header".into()], 60, 30);
        assert!(lines.len() <= 30, "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() <= 60));
        assert!(lines.last().unwrap().contains("#99"));
        assert!(lines.iter().any(|l| l.starts_with("filter")));
    }

    #[test]
    fn pod_names_are_shortened_to_their_deployment() {
        assert_eq!(short_pod("sensor-7b8fbd8b6b-9jb22"), "sensor");
        assert_eq!(
            short_pod("ironedge-agent-86cf9449fc-pnpxb"),
            "ironedge-agent"
        );
        assert_eq!(short_pod("standalone"), "standalone");
    }
}
