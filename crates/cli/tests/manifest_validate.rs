//! `ironedge manifest validate` end to end: the real binary on the model crate's fixture manifests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/manifests")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironedge"))
        .args(["manifest", "validate"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn valid_manifests_exit_0_with_a_summary() {
    for path in fixtures("valid") {
        let out = validate(&[path.to_str().unwrap()]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}", path.display());
        assert!(stdout.contains(": valid: "), "{stdout}");
    }
}

#[test]
fn invalid_manifests_exit_1_printing_every_expected_error() {
    for path in fixtures("invalid") {
        let out = validate(&[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let expected: Vec<String> = fs::read_to_string(path.with_extension("errors"))
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            expected,
            "{}",
            path.display()
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(": invalid: "), "{stderr}");
    }
}

#[test]
fn json_flag_prints_one_document_with_the_errors() {
    let path = fixtures("invalid")
        .into_iter()
        .find(|p| p.ends_with("unsupported-agent-schema.json"))
        .unwrap();
    let out = validate(&[path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["statusCode"], 412);
    assert_eq!(doc["errors"][0]["kind"], "unsupported_schema");
    assert_eq!(
        doc["errors"][0]["path"],
        "$.modulesContent.$edgeAgent['properties.desired'].schemaVersion"
    );
}

#[test]
fn dash_reads_the_manifest_from_stdin() {
    let manifest = fs::read(&fixtures("valid")[0]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironedge"))
        .args(["manifest", "validate", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&manifest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
}

#[test]
fn an_unreadable_file_exits_2_and_names_it() {
    let out = validate(&["/nonexistent/deployment.json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot read manifest /nonexistent/deployment.json"),
        "{stderr}"
    );
}
