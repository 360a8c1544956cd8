"""The device chart's pods, as installed in the cluster, run for real: each container is started as a
local process with exactly its Deployment's args and environment, its volumes laid out from the
cluster's Secrets and ConfigMaps, and its own ServiceAccount's token, so the chart's RBAC is what the
API server enforces. Against a real `ironedge hub`, the agent provisions the device and writes the
edge hub's certificate and identities; the edge hub starts from them and serves TLS for its Service
names. The cluster has no kubelet; this plays one for two pods."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import Kube, chart_path, helm_config, wait_until


class Pod:
    """One container of a Deployment, run as a process the way a kubelet would run it."""

    def __init__(self, kube: Kube, namespace: str, deployment: str, ironedge: Path, root: Path,
                 address: str) -> None:
        self.kube, self.namespace, self.ironedge = kube, namespace, ironedge
        self.spec = kube.get("deployment", deployment, namespace)["spec"]["template"]["spec"]
        self.container = self.spec["containers"][0]
        self.root = root / deployment
        self.root.mkdir(parents=True)
        self.address = address
        self.log = self.root / "log"
        self.process: subprocess.Popen[bytes] | None = None

    def kubeconfig(self) -> Path:
        """A kubeconfig with the pod's ServiceAccount token (what in-cluster config would give it)."""
        account = self.spec["serviceAccountName"]
        secret_name = wait_until(
            f"a token for ServiceAccount {account}",
            lambda: ((self.kube.get("serviceaccount", account, self.namespace) or {}).get("secrets") or [{}])[0].get("name"),
        )
        token = base64.b64decode(self.kube.get("secret", secret_name, self.namespace)["data"]["token"]).decode()
        admin = yaml.safe_load(Path(self.kube.kubeconfig).read_text())
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": account, "namespace": self.namespace}}],
            "current-context": "c",
        }
        path = self.root / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path

    def volumes(self) -> dict[str, str]:
        """Mount path → local directory, filled from the cluster like the kubelet does."""
        by_name = {v["name"]: v for v in self.spec.get("volumes", [])}
        out: dict[str, str] = {}
        for mount in self.container.get("volumeMounts", []):
            volume = by_name[mount["name"]]
            local = self.root / "volumes" / mount["name"]
            local.mkdir(parents=True)
            source = volume.get("secret") or volume.get("configMap")
            if source is not None:
                kind = "secret" if "secret" in volume else "configmap"
                name = source.get("secretName") or source.get("name")
                obj = self.kube.get(kind, name, self.namespace)
                assert obj is not None, f"{kind} {name} of volume {mount['name']} does not exist"
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} if kind == "secret" \
                    else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (local / item["path"]).write_bytes(data[item["key"]])
            else:
                assert "emptyDir" in volume or "persistentVolumeClaim" in volume, volume
            out[mount["mountPath"]] = str(local)
        return out

    def environment(self, mounts: dict[str, str]) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.root)}
        for e in self.container.get("env", []):
            if "value" in e:
                value = e["value"]
            else:
                source = e["valueFrom"]
                if "fieldRef" in source:
                    value = {"metadata.namespace": self.namespace, "metadata.name": f"{self.root.name}-0"}[
                        source["fieldRef"]["fieldPath"]]
                else:
                    ref = source["secretKeyRef"]
                    secret = self.kube.get("secret", ref["name"], self.namespace)
                    value = base64.b64decode(secret["data"][ref["key"]]).decode()
            # A path inside the container → its local directory (the longest mount that holds it).
            for inside in sorted(mounts, key=len, reverse=True):
                if value == inside or value.startswith(inside + "/"):
                    value = mounts[inside] + value[len(inside):]
                    break
            # The pod's 0.0.0.0 listeners → this pod's own loopback address.
            env[e["name"]] = value.replace("0.0.0.0:", f"{self.address}:")
        env["IRONEDGE_LOG_FORMAT"] = "text"
        return env

    def start(self, **overrides: str) -> None:
        assert "command" not in self.container
        env = self.environment(self.volumes())
        env.update(overrides)
        env["KUBECONFIG"] = str(self.kubeconfig())
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.ironedge), *self.container["args"]], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)

    def http(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://{self.address}:{self.port('metrics')}{path}", timeout=2) as r:
                return r.status
        except OSError:
            assert self.process is not None and self.process.poll() is None, f"it exited:\n{self.output()}"
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback() -> str:
    """A loopback address of its own, so the pods' fixed ports never meet other listeners."""
    return f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 250)}"


@pytest.fixture()
def cloud_hub(ironedge: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ironedge hub on loopback with its development CA, and an edge device in it."""
    data = tmp_path / "hub"
    # Fixed ports: with port 0 the hub's owner connection string names a port its SAS check does not know.
    process = subprocess.Popen(
        [str(ironedge), "hub", "--data-dir", str(data), "--hostname", "localhost",
         "--rest-addr", f"127.0.0.1:{free_port()}", "--mqtt-addr", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, IRONEDGE_LOG_FORMAT="text"),
    )
    try:
        addresses: dict[str, str] = {}

        def ready() -> bool:
            line = process.stdout.readline() if process.stdout else ""
            assert line or process.poll() is None, "the hub exited"
            for key, pattern in (("rest", r"REST \(HTTPS\):\s+(\S+)"), ("mqtt", r"MQTT \(TLS\):\s+(\S+)")):
                if m := re.search(pattern, line):
                    addresses[key] = m.group(1)
            return len(addresses) == 2

        wait_until("the hub to listen", ready)
        rest_port = addresses["rest"].rsplit(":", 1)[1]
        mqtt_port = addresses["mqtt"].rsplit(":", 1)[1]
        env = dict(os.environ, IRONEDGE_HUB_CA=str(data / "tls" / "ca.pem"),
                   IRONEDGE_HUB_CONNECTION_STRING=(data / "iothubowner.connection-string").read_text().strip(),
                   IRONEDGE_HUB_URL=f"https://localhost:{rest_port}")
        def cli(*args: str) -> str:
            done = subprocess.run([str(ironedge), *args], env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"ironedge {' '.join(args)}: {done.stderr}"
            return done.stdout.strip()

        cli("device", "create", "edge1", "--edge")
        cs = cli("device", "connection-string", "edge1")
        yield {"connectionString": cs, "ca": (data / "tls" / "ca.pem").read_text(),
               "mqtt": f"localhost:{mqtt_port}", "rest": f"https://localhost:{rest_port}", **{"cli_" + k: v for k, v in env.items() if k.startswith("IRONEDGE_HUB")}}
    finally:
        process.terminate()
        process.wait(timeout=30)


def tls_names_served(address: str, port: int, ca_pem: str, name: str) -> bool:
    context = ssl.create_default_context(cadata=ca_pem)
    with socket.create_connection((address, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name):
            return True


def test_the_installed_agent_and_edge_hub_run_with_the_charts_settings_and_rbac(
    kube: Kube, crds: None, namespace: str, cloud_hub: dict[str, str], ironedge: Path, tmp_path: Path
) -> None:
    with helm_config(namespace) as cfg:
        cfg.install(str(chart_path("ironedge-device")), "edge1", {
            "provisioning": {"connectionString": cloud_hub["connectionString"]},
            "hub": {"mqtt": cloud_hub["mqtt"], "restUrl": cloud_hub["rest"], "ca": {"pem": cloud_hub["ca"]}},
        })
    agent = Pod(kube, namespace, "ironedge-agent", ironedge, tmp_path, loopback())
    edgehub = Pod(kube, namespace, "ironedge-edgehub", ironedge, tmp_path, loopback())
    try:
        agent.start()
        # The agent provisioned the device in the hub and wrote what the edge hub mounts, with its
        # own ServiceAccount's rights. (/readyz is not waited for: it also waits for the in-agent
        # controller's caches, which currently never report filled in a namespace without an
        # EdgeDeployment.)
        for secret in ("ironedge-edgehub-tls", "ironedge-edgehub-identities", "ironedge-edge-ca"):
            wait_until(f"Secret {secret}", lambda s=secret: kube.get("secret", s, namespace), timeout=90)
        wait_until("the agent's /healthz", lambda: agent.http("/healthz") == 200)
        assert kube.get("configmap", "ironedge-trust-bundle", namespace) is not None
        identities = json.loads(base64.b64decode(
            kube.get("secret", "ironedge-edgehub-identities", namespace)["data"]["identities.json"]))
        assert {i["moduleId"] for i in identities} >= {"$edgeHub"}
        assert {i["deviceId"] for i in identities} == {"edge1"}

        edgehub.start()
        wait_until("the edge hub to be healthy (/healthz)", lambda: edgehub.http("/healthz") == 200, timeout=90)
        ca = base64.b64decode(kube.get("secret", "ironedge-edgehub-tls", namespace)["data"]["ca.crt"]).decode()
        for name in ("edgehub", f"edgehub.{namespace}", f"edgehub.{namespace}.svc"):
            assert tls_names_served(edgehub.address, edgehub.port("mqtt"), ca, name)
        for pod in (agent, edgehub):
            assert pod.process is not None and pod.process.poll() is None, pod.output()
            forbidden = [line for line in pod.output().splitlines() if "forbidden" in line.lower()]
            assert not forbidden, f"{pod.root.name} was refused by RBAC:\n" + "\n".join(forbidden)
    finally:
        agent.stop()
        edgehub.stop()
        with helm_config(namespace) as cfg:
            cfg.uninstall("edge1", ignore_not_found=True)
