//! `ironedge manifest render --namespace NS --device ID FILE`: print the Kubernetes objects a
//! deployment manifest becomes, as YAML documents, like `helm template`: the EdgeDeployment, its
//! image pull Secrets, and what the controller would create from it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ironedge_controller::crd::{EdgeDeployment, WorkloadSpec};
use ironedge_controller::from_manifest::{self, Identity};
use ironedge_controller::translate::{self, to_yaml};

/// Inputs of a render.
#[derive(Debug)]
pub(crate) struct RenderArgs<'a> {
    /// Target namespace.
    pub namespace: &'a str,
    /// IoT Hub device id.
    pub device: &'a str,
    /// IoT Hub host name.
    pub hub: &'a str,
    /// `IOTEDGE_WORKLOADURI` for modules, if any.
    pub workload_uri: Option<&'a str>,
    /// The manifest file (`-` for stdin).
    pub file: &'a Path,
    /// Leave Secrets out (they hold registry passwords).
    pub no_secrets: bool,
}

/// Validates the manifest, converts and translates it, and prints every object.
pub(crate) fn run(args: &RenderArgs<'_>, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let checked = ironedge_model::validate(bytes);
    let manifest = match checked.into_result() {
        Ok(manifest) => manifest,
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{}: invalid manifest:\n{errors}", args.file.display())
                .context("writing to stderr")?;
            return Ok(ExitCode::from(1));
        }
    };
    let identity = Identity {
        device_id: args.device.to_string(),
        hub_host_name: args.hub.to_string(),
        workload: args.workload_uri.map(|uri| WorkloadSpec {
            uri: uri.to_string(),
            api_version: None,
            proxy: None,
        }),
        ..Identity::default()
    };
    let converted = from_manifest::from_manifest(&manifest, &identity);
    let name = ironedge_controller::names::dns_label(
        args.device,
        ironedge_controller::names::Rule::Dns1123,
    );
    let mut ed = EdgeDeployment::new(&name, converted.spec);
    ed.metadata.namespace = Some(args.namespace.to_string());
    let desired = match translate::translate(&ed) {
        Ok(desired) => desired,
        Err(err) => bail!(
            "{}: the manifest cannot run on Kubernetes: {err}",
            args.file.display()
        ),
    };
    let mut out = to_yaml(&[&ed]);
    if !args.no_secrets {
        out.push_str(&to_yaml(&from_manifest::pull_secrets(
            &ed,
            &converted.credentials,
        )));
    }
    out.push_str(&desired.to_yaml());
    for module in &desired.modules {
        for note in &module.unsupported {
            out.push_str(&format!("# {}: {note}\n", module.id));
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
