"""Shared fixtures of the chart tests: a real Helm engine (helm-python-sdk, Helm's Go SDK), the
`ironedge` binary, and the Kubernetes cluster named by KUBECONFIG (scripts/test starts one).

Run: `$(scripts/helm-env) -m pytest deploy/helm/tests` with KUBECONFIG set
(`export KUBECONFIG="$(scripts/k8s/start)"`). Nothing is skipped: without a cluster the cluster
tests fail and say how to start one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHARTS = REPO / "deploy" / "helm"
KUBE_VERSION = "v1.20.2"
TIMEOUT = 60.0

HOW_TO_START = (
    "no Kubernetes cluster is reachable; start the project's control plane with "
    '`export KUBECONFIG="$(scripts/k8s/start)"` (or point KUBECONFIG at any cluster) and run the '
    "tests again"
)


def chart_path(name: str) -> Path:
    return CHARTS / name


def render(
    chart: str, values: dict[str, Any] | None = None, name: str = "rel", namespace: str = "dev1"
) -> list[dict[str, Any]]:
    """Every object the chart renders (NOTES.txt left out), in template order."""
    with helm.Chart.load(chart_path(chart)) as c:
        manifests = c.render(values, name=name, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def render_notes(chart: str, values: dict[str, Any] | None = None, namespace: str = "dev1") -> str:
    with helm.Chart.load(chart_path(chart)) as c:
        manifests = c.render(values, name="rel", namespace=namespace, is_install=True)
    return next(text for template, text in manifests.items() if template.endswith("NOTES.txt"))


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)} in {kinds(objects)}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def container(deployment: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    """Container env as name → value (or the valueFrom object)."""
    out: dict[str, Any] = {}
    for e in c.get("env", []):
        assert e["name"] not in out, f"env {e['name']} set twice"
        out[e["name"]] = e["value"] if "value" in e else e["valueFrom"]
    return out


def lint(chart: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(chart_path(chart), values, strict=True, kube_version=KUBE_VERSION)


def wait_until(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Polls `check` until it returns something truthy; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# --- the ironedge binary -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ironedge() -> Path:
    """The `ironedge` binary of this checkout (IRONEDGE_BIN, else built with cargo; a no-op when fresh)."""
    if os.environ.get("IRONEDGE_BIN"):
        return Path(os.environ["IRONEDGE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/ironedge/target"))
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "ironedge-cli"], cwd=REPO, env=env, check=True
    )
    binary = target / "debug" / "ironedge"
    assert binary.is_file(), f"cargo built no {binary}"
    return binary


# --- the cluster --------------------------------------------------------------------------------


def kubectl_path() -> str:
    """kubectl 1.20 from the project's build (matches the control plane), else the one on PATH."""
    cached = Path.home() / ".cache/ironedge/k8s-1.20.2/bin/kubectl"
    if cached.is_file():
        return str(cached)
    found = shutil.which("kubectl")
    assert found, "no kubectl: run scripts/k8s/build (it extracts kubectl 1.20)"
    return found


class Kube:
    """kubectl against the cluster of KUBECONFIG."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl_path()

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def get(self, kind: str, name: str | None = None, namespace: str | None = None,
            selector: str | None = None) -> Any:
        """The object, or the list of items; None when a named object does not exist."""
        args = ["get", kind]
        if name:
            args.append(name)
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        args += ["-o", "json"]
        proc = self.run(*args, check=False)
        if proc.returncode != 0:
            if name and "NotFound" in proc.stderr:
                return None
            pytest.fail(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        data = json.loads(proc.stdout)
        return data if name else data["items"]

    def can_i(self, verb: str, resource: str, namespace: str | None, service_account: str) -> bool:
        args = ["auth", "can-i", verb, resource, "--as", service_account]
        if namespace:
            args += ["-n", namespace]
        proc = self.run(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl auth can-i: {proc.stdout} {proc.stderr}"
        return answer == "yes"


@pytest.fixture(scope="session")
def kube() -> Kube:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        pytest.fail(f"KUBECONFIG is not set: {HOW_TO_START}")
    k = Kube(kubeconfig)
    proc = k.run("version", "-o", "json", check=False)
    if proc.returncode != 0 or "serverVersion" not in proc.stdout:
        pytest.fail(f"{HOW_TO_START} ({proc.stderr.strip()})")
    return k


@pytest.fixture()
def namespace(kube: Kube) -> Any:
    """A fresh namespace, deleted after the test."""
    name = f"chart-{secrets.token_hex(4)}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture()
def namespaces(kube: Kube) -> Any:
    """A factory of fresh namespaces, all deleted after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"chart-{secrets.token_hex(4)}"
        kube.run("create", "namespace", name)
        made.append(name)
        return name

    yield make
    for name in made:
        kube.run("delete", "namespace", name, "--wait=false", check=False)


def helm_config(namespace: str) -> helm.Config:
    return helm.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=namespace)


CRD_NAME = "edgedeployments.ironedge.io"


def adopt(kube: Kube, release: str, namespace: str) -> None:
    """What the README tells users who applied `ironedge crd` by hand: let Helm adopt the CRD."""
    if kube.get("crd", CRD_NAME) is None:
        return
    kube.run("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    kube.run(
        "annotate", "crd", CRD_NAME, f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}", "--overwrite",
    )


@pytest.fixture(scope="session")
def crds(kube: Kube) -> None:
    """The CRD chart installed once (the device's RBAC names edgedeployments; the agent needs them)."""
    namespace = f"ironedge-crds-{secrets.token_hex(4)}"
    kube.run("create", "namespace", namespace)
    adopt(kube, "ironedge-crds", namespace)
    with helm_config(namespace) as cfg:
        cfg.install(str(chart_path("ironedge-crds")), "ironedge-crds")
    yield
    with helm_config(namespace) as cfg:
        cfg.uninstall("ironedge-crds", ignore_not_found=True)
    kube.run("delete", "namespace", namespace, "--wait=false", check=False)
