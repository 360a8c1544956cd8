//! `ironedge manifest …`: validate deployment manifests.
//!
//! `ironedge manifest validate FILE` exits 0 when the manifest is valid and 1 when it is not,
//! printing every error as `path: reason` on stdout (one per line, so it greps and diffs well).
//! Warnings (unknown keys, ignored fields) go to stderr and never fail the run. `--json` prints one
//! JSON document instead. Unreadable files exit 2 through `main`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use ironedge_model::{Checked, Manifest};
use serde_json::json;

/// Subcommands of `ironedge manifest`.
#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Validate a deployment manifest; exit 1 with every error (JSON path and reason).
    Validate {
        /// The manifest file (`{"modulesContent": …}` or a configuration's `{"content": …}`);
        /// `-` reads standard input.
        file: PathBuf,
        /// Print the errors as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the Kubernetes objects a manifest becomes (EdgeDeployment, pull Secrets, workloads), like `helm template`.
    Render {
        /// Namespace of the device.
        #[arg(long)]
        namespace: String,
        /// IoT Hub device id.
        #[arg(long)]
        device: String,
        /// IoT Hub host name for `IOTEDGE_IOTHUBHOSTNAME`.
        #[arg(long, default_value = "localhost", env = "IRONEDGE_HUB_HOST")]
        hub: String,
        /// Workload API URI for `IOTEDGE_WORKLOADURI`.
        #[arg(long)]
        workload_uri: Option<String>,
        /// Leave out the image pull Secrets (they hold registry passwords).
        #[arg(long)]
        no_secrets: bool,
        /// The manifest file; `-` reads standard input.
        file: PathBuf,
    },
}

/// Runs a `manifest` subcommand.
pub(crate) fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Render {
            namespace,
            device,
            hub,
            workload_uri,
            no_secrets,
            file,
        } => {
            let bytes = read_input(&file)?;
            let args = super::render::RenderArgs {
                namespace: &namespace,
                device: &device,
                hub: &hub,
                workload_uri: workload_uri.as_deref(),
                file: &file,
                no_secrets,
            };
            super::render::run(&args, &bytes)
        }
        ManifestCommand::Validate { file, json } => {
            let bytes = read_input(&file)?;
            let checked = ironedge_model::validate(&bytes);
            let label = file.display().to_string();
            let report = if json {
                json_report(&label, &checked)
            } else {
                text_report(&label, &checked)
            };
            io::stdout()
                .lock()
                .write_all(report.stdout.as_bytes())
                .context("writing to stdout")?;
            io::stderr()
                .lock()
                .write_all(report.stderr.as_bytes())
                .context("writing to stderr")?;
            Ok(if checked.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The file's bytes, or standard input for `-`.
fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("reading the manifest from standard input")?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("cannot read manifest {}", file.display()))
}

/// What the command prints.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    /// Errors (or the JSON document, or the success line).
    stdout: String,
    /// Warnings and the failure summary.
    stderr: String,
}

/// The human-readable report.
fn text_report(file: &str, checked: &Checked<Manifest>) -> Report {
    let mut report = Report::default();
    for warning in &checked.warnings {
        report.stderr.push_str(&format!("warning: {warning}\n"));
    }
    match &checked.result {
        Ok(manifest) => {
            let modules: Vec<&str> = manifest.edge_agent.all_modules().map(|(n, _)| n).collect();
            report.stdout = format!(
                "{file}: valid: {} modules ({}), {} routes\n",
                modules.len(),
                modules.join(", "),
                manifest.edge_hub.routes.len()
            );
        }
        Err(errors) => {
            for error in errors {
                report.stdout.push_str(&format!("{error}\n"));
            }
            let noun = if errors.len() == 1 { "error" } else { "errors" };
            report.stderr.push_str(&format!(
                "{file}: invalid: {} {noun} (an agent would report status {})\n",
                errors.len(),
                errors.status_code()
            ));
        }
    }
    report
}

/// The `--json` report: `{file, valid, statusCode, errors, warnings}` plus a summary when valid.
fn json_report(file: &str, checked: &Checked<Manifest>) -> Report {
    let doc = match &checked.result {
        Ok(manifest) => json!({
            "file": file,
            "valid": true,
            "statusCode": 200,
            "errors": [],
            "warnings": checked.warnings,
            "modules": manifest.edge_agent.all_modules().map(|(n, _)| n).collect::<Vec<_>>(),
            "routes": manifest.edge_hub.routes.keys().collect::<Vec<_>>(),
        }),
        Err(errors) => json!({
            "file": file,
            "valid": false,
            "statusCode": errors.status_code(),
            "errors": errors,
            "warnings": checked.warnings,
        }),
    };
    Report {
        stdout: format!("{doc:#}\n"),
        stderr: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const VALID: &str = r#"{"modulesContent": {
      "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}},
        "systemModules": {
          "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5"}},
          "edgeHub": {"type": "docker", "status": "running", "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5"}}},
        "modules": {"temp": {"type": "docker", "status": "running", "stauts": 1,
          "settings": {"image": "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5"}}}}},
      "$edgeHub": {"properties.desired": {"schemaVersion": "1.1",
        "routes": {"up": "FROM /messages/* INTO $upstream"},
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}}}}"#;

    fn invalid() -> String {
        VALID
            .replace("\"status\": \"running\", \"stauts\"", "\"stauts\"")
            .replace(
                "\"schemaVersion\": \"1.1\",\n        \"routes\"",
                "\"schemaVersion\": \"1.9\",\n        \"routes\"",
            )
    }

    #[test]
    fn a_valid_manifest_prints_a_summary_and_warnings() {
        let report = text_report("m.json", &ironedge_model::validate(VALID.as_bytes()));
        assert_eq!(
            report.stdout,
            "m.json: valid: 3 modules (edgeAgent, edgeHub, temp), 1 routes\n"
        );
        assert_eq!(
            report.stderr,
            "warning: $.modulesContent.$edgeAgent['properties.desired'].modules.temp.stauts: unknown field, ignored\n"
        );
    }

    #[test]
    fn an_invalid_manifest_prints_every_error_as_path_and_reason() {
        let report = text_report("m.json", &ironedge_model::validate(invalid().as_bytes()));
        assert_eq!(
            report.stdout,
            "$.modulesContent.$edgeAgent['properties.desired'].modules.temp.status: required field is missing\n\
             $.modulesContent.$edgeHub['properties.desired'].schemaVersion: unsupported schema version \"1.9\": supported are 1.0, 1.1, 1.2 and 1.3\n"
        );
        assert!(
            report
                .stderr
                .ends_with("m.json: invalid: 2 errors (an agent would report status 412)\n"),
            "{}",
            report.stderr
        );
    }

    #[test]
    fn json_output_lists_errors_with_path_kind_and_reason() {
        let report = json_report("m.json", &ironedge_model::validate(invalid().as_bytes()));
        let doc: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(doc["valid"], false);
        assert_eq!(doc["statusCode"], 412);
        assert_eq!(doc["errors"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["errors"][0],
            json!({
                "path": "$.modulesContent.$edgeAgent['properties.desired'].modules.temp.status",
                "kind": "missing",
                "reason": "required field is missing"
            })
        );
        assert_eq!(doc["warnings"][0]["kind"], "unknown_field");
        assert!(report.stderr.is_empty());
    }

    #[test]
    fn json_output_for_a_valid_manifest_names_modules_and_routes() {
        let report = json_report("m.json", &ironedge_model::validate(VALID.as_bytes()));
        let doc: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(doc["valid"], true);
        assert_eq!(doc["statusCode"], 200);
        assert_eq!(doc["errors"], json!([]));
        assert_eq!(doc["modules"], json!(["edgeAgent", "edgeHub", "temp"]));
        assert_eq!(doc["routes"], json!(["up"]));
    }

    #[test]
    fn syntax_errors_are_reported_like_any_other_error() {
        let report = text_report(
            "m.json",
            &ironedge_model::validate(b"{\"modulesContent\": "),
        );
        assert!(
            report
                .stdout
                .starts_with("$: not valid JSON: EOF while parsing a value at line 1 column 19"),
            "{}",
            report.stdout
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = read_input(Path::new("/nonexistent/manifest.json")).unwrap_err();
        assert!(format!("{err:#}").starts_with("cannot read manifest /nonexistent/manifest.json"));
    }
}
