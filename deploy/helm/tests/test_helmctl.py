"""deploy/helm/helmctl.py: the helm-like command `ironedge up` and users without a helm binary use."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import CHARTS, Kube, wait_until

HELMCTL = CHARTS / "helmctl.py"
KEY = base64.b64encode(b"h" * 32).decode()
CS = f"HostName=hub.example.com;DeviceId=ctl-1;SharedAccessKey={KEY}"


def helmctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HELMCTL), *args], capture_output=True, text=True, timeout=120)


def test_template_applies_values_files_set_set_string_and_set_file_in_helms_order(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("agent:\n  logLevel: warn\nedgeHub:\n  logLevel: warn\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    done = helmctl("template", "edge", str(CHARTS / "ironedge-device"), "-n", "ns1", "-f", str(values),
                   "--set", "edgeHub.logLevel=debug", "--set-string", f"provisioning.connectionString={CS}",
                   "--set-file", f"hub.ca.pem={ca}")
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    agent_env = {e["name"]: e.get("value") for e in by_name[("Deployment", "ironedge-agent")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    hub_env = {e["name"]: e.get("value") for e in by_name[("Deployment", "ironedge-edgehub")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert agent_env["RUST_LOG"] == "warn"
    assert hub_env["RUST_LOG"] == "debug"
    assert hub_env["IOTEDGE_DEVICEID"] == "ctl-1"
    assert "MIIB" in by_name[("ConfigMap", "ironedge-hub-ca")]["data"]["ca.crt"]
    assert all(o["metadata"].get("namespace", "ns1") == "ns1" for o in objects)


def test_errors_are_reported_with_helms_reason_and_a_failing_exit_code() -> None:
    done = helmctl("template", "edge", str(CHARTS / "ironedge-device"), "--set", "networkPolicy.enabled=maybe")
    assert done.returncode == 1
    assert "helmctl template:" in done.stderr and "networkPolicy" in done.stderr


def test_install_and_uninstall_through_helmctl(kube: Kube, crds: None, namespace: str) -> None:
    done = helmctl("install", "edge", str(CHARTS / "ironedge-device"), "-n", namespace,
                   "--kubeconfig", kube.kubeconfig, "--set-string", f"provisioning.connectionString={CS}")
    assert done.returncode == 0, done.stderr
    assert f"installed edge in {namespace} (revision 1, deployed)" in done.stdout
    assert kube.get("deployment", "ironedge-agent", namespace) is not None
    status = helmctl("status", "edge", "-n", namespace, "--kubeconfig", kube.kubeconfig)
    assert '"status": "deployed"' in status.stdout
    done = helmctl("uninstall", "edge", "-n", namespace, "--kubeconfig", kube.kubeconfig)
    assert done.returncode == 0, done.stderr
    wait_until("the agent Deployment to go", lambda: kube.get("deployment", "ironedge-agent", namespace) is None)
    assert helmctl("uninstall", "edge", "-n", namespace, "--kubeconfig", kube.kubeconfig).returncode == 1
    assert helmctl("uninstall", "edge", "-n", namespace, "--kubeconfig", kube.kubeconfig,
                   "--ignore-not-found").returncode == 0
