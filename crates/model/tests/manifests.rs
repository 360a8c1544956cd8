//! Real-world manifests under `tests/manifests/`: every `valid/*.json` validates and round-trips,
//! every `invalid/*.json` fails with exactly the errors in its `.errors` file.
//!
//! Expectation files list one `path: reason` per line. In an `.errors` file, `# status: N` gives
//! the expected HTTP-like status. A `valid/<name>.warnings` file lists the expected warnings; without
//! one, a valid manifest must produce none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ironedge_model::{Manifest, validate};

fn manifests(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Lines of an expectation file, without comments and blank lines; `None` if it does not exist.
fn expected_lines(path: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
    )
}

fn expected_status(path: &Path) -> Option<u16> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("# status: "))
        .map(|s| s.trim().parse().unwrap())
}

#[test]
fn every_valid_manifest_validates_and_round_trips() {
    for path in manifests("valid") {
        let name = path.display();
        let checked = validate(&fs::read(&path).unwrap());
        let warnings: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
        let manifest = match checked.result {
            Ok(m) => m,
            Err(errors) => panic!("{name} should be valid:\n{errors}"),
        };
        let expected = expected_lines(&path.with_extension("warnings")).unwrap_or_default();
        assert_eq!(warnings, expected, "warnings of {name}");
        let again = Manifest::from_value(&manifest.to_value())
            .unwrap_or_else(|e| panic!("{name} does not round-trip:\n{e}"));
        assert_eq!(again, manifest, "{name} round trip");
    }
}

#[test]
fn every_invalid_manifest_fails_with_exactly_its_expected_errors() {
    for path in manifests("invalid") {
        let name = path.display();
        let expected_file = path.with_extension("errors");
        let expected = expected_lines(&expected_file)
            .unwrap_or_else(|| panic!("{name} has no {}", expected_file.display()));
        let errors = validate(&fs::read(&path).unwrap())
            .into_result()
            .err()
            .unwrap_or_else(|| panic!("{name} should be invalid"));
        let actual: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(actual, expected, "errors of {name}:\n{}", actual.join("\n"));
        let status = expected_status(&expected_file).unwrap_or(400);
        assert_eq!(errors.status_code(), status, "status of {name}");
    }
}

#[test]
fn the_filter_pipeline_manifest_exposes_every_field_to_consumers() {
    use ironedge_model::{DesiredStatus, ImagePullPolicy, RestartPolicy, Route};

    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests/valid/filter-pipeline-with-priorities.json");
    let m = validate(&fs::read(path).unwrap()).into_result().unwrap();
    let agent = &m.edge_agent;
    assert_eq!(agent.runtime.min_docker_version, "v1.25");
    assert!(agent.runtime.logging_options.contains("max-size"));
    let (id, cred) = agent
        .runtime
        .credential_for("contosoacr.azurecr.io/filtermodule:0.0.3-amd64")
        .unwrap();
    assert_eq!((id, cred.username.as_str()), ("contosoacr", "contosoacr"));

    let hub = &agent.system_modules.edge_hub;
    assert_eq!(hub.startup_order, 0);
    assert_eq!(hub.env["MaxUpstreamBatchSize"], "20");
    assert_eq!(
        agent.system_modules.edge_agent.env["SendRuntimeQualityTelemetry"],
        "false"
    );

    let filter = &agent.modules["filter"];
    assert_eq!(filter.version, "0.0.3");
    assert_eq!(filter.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(filter.image_pull_policy, ImagePullPolicy::Never);
    assert_eq!(filter.startup_order, 1);
    assert_eq!(filter.env["TemperatureThreshold"], "25.5");
    assert!(
        filter
            .settings
            .digest
            .as_deref()
            .unwrap()
            .starts_with("sha256:")
    );
    let options = &filter.settings.create_options;
    assert_eq!(options.get("User").unwrap(), "1000:1000");
    assert_eq!(
        options.get("Cmd").unwrap(),
        &serde_json::json!(["--verbose"])
    );
    assert_eq!(options.get("HostConfig").unwrap()["Memory"], 268_435_456);
    assert_eq!(
        options.get("HostConfig").unwrap()["Mounts"][0]["Source"],
        "filterdata"
    );

    let archiver = &agent.modules["stoppedArchiver"];
    assert_eq!(archiver.status, DesiredStatus::Stopped);
    assert_eq!(archiver.restart_policy, RestartPolicy::Never);
    assert_eq!(
        archiver.settings.pull_image(),
        "contosoacr.azurecr.io/archiver:latest"
    );
    assert!(archiver.settings.create_options.is_empty());

    let routes = &m.edge_hub.routes;
    assert_eq!(
        (
            routes["sensorToFilter"].priority,
            routes["sensorToFilter"].time_to_live_secs
        ),
        (0, 3600)
    );
    assert_eq!(routes["bulkTelemetry"].priority, 9);
    assert_eq!(routes["legacy"].priority, Route::DEFAULT_PRIORITY);
    let sf = m.edge_hub.store_and_forward.unwrap();
    assert_eq!(
        (sf.time_to_live_secs, sf.max_size_bytes),
        (604_800, Some(1_073_741_824))
    );
    assert_eq!(m.module_twins["filter"]["TemperatureThreshold"], 25.5);
}

#[test]
fn the_twin_dump_keeps_versions_and_integrity() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests/valid/nested-edge-hub-1.3-twin-dump.json");
    let m = validate(&fs::read(path).unwrap()).into_result().unwrap();
    assert_eq!(m.edge_agent.twin_version, Some(17));
    assert_eq!(m.edge_hub.twin_version, Some(9));
    assert!(m.edge_agent.integrity.is_some());
    assert!(m.edge_hub.integrity.is_some());
    assert!(m.edge_hub.mqtt_broker.is_some());
    assert_eq!(
        m.edge_agent
            .system_modules
            .edge_agent
            .configuration_id
            .as_deref(),
        Some("lower-layer-base")
    );
    assert_eq!(
        m.edge_agent.system_modules.edge_hub.settings.registry(),
        Some("$upstream:443")
    );
}
