//! The Helm side of `ironedge up`: the charts of `deploy/helm` installed with Helm's own Go SDK
//! through `deploy/helm/helmctl.py` (helm-python-sdk in the venv `scripts/helm-env` makes), exactly
//! as a user's `helm install` would, with no helm binary needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::progress::Step;

/// The CRD chart's release name and namespace.
pub(crate) const CRDS_RELEASE: &str = "ironedge-crds";
/// Where the CRD chart's release record lives.
pub(crate) const CRDS_NAMESPACE: &str = "ironedge-system";

/// A release of one of the charts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Release<'a> {
    /// Release name.
    pub(crate) name: &'a str,
    /// Chart directory under `deploy/helm`.
    pub(crate) chart: &'a str,
    /// Namespace of the release.
    pub(crate) namespace: &'a str,
}

/// helmctl with its interpreter.
#[derive(Debug, Clone)]
pub(crate) struct Helm {
    python: PathBuf,
    helmctl: PathBuf,
    charts: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl Helm {
    /// Makes the venv (first run: a pip download) and returns the tool.
    pub(crate) fn prepare(
        step: &Step,
        source: &Path,
        kubeconfig: &Path,
        logs: &Path,
    ) -> Result<Self> {
        let log = logs.join("helm.log");
        let out = step
            .run(&mut Command::new(source.join("scripts/helm-env")), &log)
            .context("preparing Helm (scripts/helm-env)")?;
        Ok(Self {
            python: PathBuf::from(out.trim()),
            helmctl: source.join("deploy/helm/helmctl.py"),
            charts: source.join("deploy/helm"),
            kubeconfig: kubeconfig.to_path_buf(),
            log,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.helmctl)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig);
        cmd
    }

    /// Whether `release` exists in `namespace`.
    pub(crate) fn exists(&self, release: &str, namespace: &str) -> bool {
        self.command(&["status", release, "-n", namespace])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Installs `release`, or upgrades it when it exists, with `values` (written to a 0600 file:
    /// they may hold the device key).
    pub(crate) fn apply(
        &self,
        step: &Step,
        release: &Release<'_>,
        values: &Value,
        values_file: &Path,
    ) -> Result<()> {
        write_private(values_file, &serde_json::to_vec_pretty(values)?)?;
        let chart = self.charts.join(release.chart);
        let chart = chart.to_string_lossy();
        let file = values_file.to_string_lossy();
        let verb = if self.exists(release.name, release.namespace) {
            "upgrade"
        } else {
            "install"
        };
        let args = [
            verb,
            release.name,
            &chart,
            "-n",
            release.namespace,
            "-f",
            &file,
        ];
        step.detail(&format!("helm {verb} {}", release.name));
        step.run(&mut self.command(&args), &self.log)
            .with_context(|| format!("helm {verb} {} ({chart}) failed", release.name))?;
        Ok(())
    }

    /// Uninstalls `release` from `namespace` (no error when it is gone).
    pub(crate) fn uninstall(&self, step: &Step, release: &str, namespace: &str) -> Result<()> {
        step.run(
            &mut self.command(&["uninstall", release, "-n", namespace, "--ignore-not-found"]),
            &self.log,
        )
        .with_context(|| format!("helm uninstall {release} failed"))?;
        Ok(())
    }
}

/// Writes `bytes` to `path` readable only by the owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}
