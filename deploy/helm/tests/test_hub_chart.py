"""ironedge-hub rendered by Helm's engine, and its generated TLS material and owner key served by
the real `ironedge hub` with exactly the environment the chart gives the container."""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from conftest import container, env_of, find, kinds, lint, render, render_notes, wait_until


def hub(values: dict[str, Any] | None = None, name: str = "ironedge-hub", namespace: str = "ironedge") -> list[dict[str, Any]]:
    return render("ironedge-hub", values, name=name, namespace=namespace)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_defaults_render_the_hub_its_service_claim_and_generated_secrets() -> None:
    objects = hub()
    assert kinds(objects) == [
        ("Deployment", "ironedge-hub"),
        ("PersistentVolumeClaim", "ironedge-hub-data"),
        ("Secret", "ironedge-hub-owner"),
        ("Secret", "ironedge-hub-tls"),
        ("Service", "ironedge-hub"),
    ]
    deployment = find(objects, "Deployment", "ironedge-hub")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    c = container(deployment)
    assert c["args"] == ["hub"] and "command" not in c
    env = env_of(c)
    assert env["IRONEDGE_HUB_DATA_DIR"] == "/var/lib/ironedge-hub"
    assert env["IRONEDGE_HUB_HOSTNAME"] == "ironedge-hub.ironedge.svc"
    assert env["IRONEDGE_HUB_ALIASES"].split(",") == [
        "ironedge-hub", "ironedge-hub.ironedge", "ironedge-hub.ironedge.svc.cluster.local",
    ]
    assert env["IRONEDGE_HUB_REST_ADDR"] == "0.0.0.0:8443"
    assert env["IRONEDGE_HUB_MQTT_ADDR"] == "0.0.0.0:8883"
    assert env["IRONEDGE_HUB_TLS_CERT"] == "/etc/ironedge-hub/tls/tls.crt"
    assert env["IRONEDGE_HUB_OWNER_KEY"] == {"secretKeyRef": {"name": "ironedge-hub-owner", "key": "ownerKey"}}
    assert "IRONEDGE_HUB_WEBSOCKET_ADDR" not in env
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "ironedge-hub-data"}
    # The CA key stays out of the pod.
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    svc = find(objects, "Service", "ironedge-hub")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("https", 443, "https"), ("mqtt", 8883, "mqtt"),
    ]
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    claim = find(objects, "PersistentVolumeClaim", "ironedge-hub-data")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_the_hub_pod_is_non_root_read_only_without_capabilities() -> None:
    pod = find(hub(), "Deployment", "ironedge-hub")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_names_follow_the_release_name() -> None:
    objects = hub(name="cloud")
    assert ("Deployment", "cloud-ironedge-hub") in kinds(objects)
    assert ("Secret", "cloud-ironedge-hub-tls") in kinds(objects)
    objects = hub({"fullnameOverride": "iothub"}, name="cloud")
    assert ("Service", "iothub") in kinds(objects)
    env = env_of(container(find(objects, "Deployment", "iothub")))
    assert env["IRONEDGE_HUB_HOSTNAME"] == "iothub.ironedge.svc"


def test_the_generated_certificate_carries_every_name_of_the_hub(tmp_path: Path) -> None:
    objects = hub({"hostname": "hub.example.com", "aliases": ["iot.example.com"],
                   "tls": {"generate": {"ipAddresses": ["192.0.2.10"]}}, "websocket": {"enabled": True}})
    tls = find(objects, "Secret", "ironedge-hub-tls")
    assert tls["type"] == "kubernetes.io/tls"
    data = secret_data(tls)
    (tmp_path / "tls.crt").write_text(data["tls.crt"])
    text = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "tls.crt"), "-noout", "-subject", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout
    names = set(re.findall(r"DNS:([^,\s]+)", text))
    assert names == {
        "hub.example.com", "iot.example.com",
        "ironedge-hub", "ironedge-hub.ironedge", "ironedge-hub.ironedge.svc", "ironedge-hub.ironedge.svc.cluster.local",
        "ironedge-hub-websocket", "ironedge-hub-websocket.ironedge", "ironedge-hub-websocket.ironedge.svc",
        "ironedge-hub-websocket.ironedge.svc.cluster.local",
    }
    assert "IP Address:192.0.2.10" in text
    assert "CN = hub.example.com" in text or "CN=hub.example.com" in text
    assert tls["metadata"]["annotations"]["ironedge.io/tls-names"].split(",")[0] == "hub.example.com"
    # The served chain ends with the CA clients trust.
    assert data["tls.crt"].rstrip().endswith(data["ca.crt"].rstrip())


def test_an_existing_tls_secret_and_owner_key_replace_the_generated_ones() -> None:
    objects = hub({"tls": {"existingSecret": "hub-cert"}, "ownerKey": {"existingSecret": "hub-owner", "key": "k"}})
    assert not [o for o in objects if o["kind"] == "Secret"]
    deployment = find(objects, "Deployment", "ironedge-hub")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "hub-cert"
    env = env_of(container(deployment))
    assert env["IRONEDGE_HUB_OWNER_KEY"] == {"secretKeyRef": {"name": "hub-owner", "key": "k"}}


def test_websocket_gets_its_own_service_on_443() -> None:
    objects = hub({"websocket": {"enabled": True, "port": 9443, "service": {"type": "LoadBalancer"}}})
    svc = find(objects, "Service", "ironedge-hub-websocket")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [{"name": "websocket", "port": 443, "targetPort": "websocket", "protocol": "TCP"}]
    env = env_of(container(find(objects, "Deployment", "ironedge-hub")))
    assert env["IRONEDGE_HUB_WEBSOCKET_ADDR"] == "0.0.0.0:9443"
    assert "ironedge-hub-websocket.ironedge.svc" in env["IRONEDGE_HUB_ALIASES"].split(",")


def test_values_reach_the_hub() -> None:
    values = {
        "image": {"repository": "registry.local/ironedge", "tag": "2.0.0"},
        "imagePullSecrets": [{"name": "regcred"}],
        "ports": {"https": 10443, "mqtt": 18883},
        "service": {"type": "NodePort", "ports": {"https": 8443, "mqtt": 1883}, "annotations": {"x": "y"}},
        "telemetry": {"maxCount": 5000, "maxAgeSeconds": 3600}, "c2dTtlSeconds": 60,
        "persistence": {"size": "20Gi", "storageClassName": "ssd", "keep": False},
        "logLevel": "debug", "logFormat": "text", "extraEnv": [{"name": "X", "value": "1"}],
        "resources": {"limits": {"memory": "2Gi"}}, "nodeSelector": {"role": "cloud"},
        "commonLabels": {"site": "dc1"},
    }
    objects = hub(values)
    deployment = find(objects, "Deployment", "ironedge-hub")
    c = container(deployment)
    env = env_of(c)
    assert c["image"] == "registry.local/ironedge:2.0.0"
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert env["IRONEDGE_HUB_REST_ADDR"] == "0.0.0.0:10443"
    assert env["IRONEDGE_HUB_MQTT_ADDR"] == "0.0.0.0:18883"
    assert env["IRONEDGE_HUB_TELEMETRY_MAX_COUNT"] == "5000"
    assert env["IRONEDGE_HUB_TELEMETRY_MAX_AGE_SECS"] == "3600"
    assert env["IRONEDGE_HUB_C2D_TTL_SECS"] == "60"
    assert env["RUST_LOG"] == "debug" and env["IRONEDGE_LOG_FORMAT"] == "text" and env["X"] == "1"
    assert c["resources"]["limits"]["memory"] == "2Gi"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"https": 10443, "mqtt": 18883}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "10443"
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"role": "cloud"}
    svc = find(objects, "Service", "ironedge-hub")
    assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["annotations"] == {"x": "y"}
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(8443, "https"), (1883, "mqtt")]
    claim = find(objects, "PersistentVolumeClaim", "ironedge-hub-data")
    assert claim["spec"]["storageClassName"] == "ssd" and "annotations" not in claim["metadata"]
    assert all(o["metadata"]["labels"]["site"] == "dc1" for o in objects)
    objects = hub({"persistence": {"enabled": False}})
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]


def test_notes_tell_how_to_get_the_owner_connection_string_and_the_ca() -> None:
    notes = render_notes("ironedge-hub", None, namespace="ironedge")
    assert "get secret rel-ironedge-hub-owner" in notes
    assert "ca\\.crt" in notes


def test_the_hub_chart_lints_clean_with_default_and_non_default_values() -> None:
    for values in (None, {"websocket": {"enabled": True}, "tls": {"existingSecret": "x"},
                          "ownerKey": {"existingSecret": "y"}, "service": {"type": "LoadBalancer"}}):
        report = lint("ironedge-hub", values)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


# --- the real hub with the chart's settings ------------------------------------------------------


def https_get(address: str, path: str, ca: Path, server_name: str) -> tuple[int, str]:
    """GET over TLS to `address`, verifying the certificate for `server_name` against `ca`."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            response = b""
            while chunk := tls.recv(65536):
                response += chunk
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_the_real_hub_serves_the_generated_certificate_and_accepts_the_generated_owner_key(
    ironedge: Path, tmp_path: Path
) -> None:
    objects = hub({"hostname": "hub.example.test", "tls": {"generate": {"ipAddresses": ["127.0.0.1"]}}})
    deployment = find(objects, "Deployment", "ironedge-hub")
    c = container(deployment)
    secrets = {o["metadata"]["name"]: secret_data(o) for o in objects if o["kind"] == "Secret"}
    # Lay out the pod's volumes as the kubelet would.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    tls_volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    for item in tls_volume["secret"]["items"]:
        (tls_dir / item["path"]).write_text(secrets[tls_volume["secret"]["secretName"]][item["key"]])
    paths = {"/var/lib/ironedge-hub": str(data_dir), "/etc/ironedge-hub/tls": str(tls_dir)}
    env = dict(os.environ)
    for name, value in env_of(c).items():
        if isinstance(value, dict):
            ref = value["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        for inside, outside in paths.items():
            value = value.replace(inside, outside)
        # Loopback with kernel-chosen ports instead of the pod's 0.0.0.0 listeners.
        env[name] = value.replace("0.0.0.0:8443", "127.0.0.1:0").replace("0.0.0.0:8883", "127.0.0.1:0")
    env["IRONEDGE_LOG_FORMAT"] = "text"
    process = subprocess.Popen(
        [str(ironedge), *c["args"]], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines: list[str] = []

        def rest_address() -> str | None:
            line = process.stdout.readline() if process.stdout else ""
            lines.append(line)
            match = re.search(r"REST \(HTTPS\):\s+(\S+)", line)
            assert process.poll() is None or line, f"the hub exited: {''.join(lines)}"
            return match.group(1) if match else None

        rest = wait_until("the hub to print its REST address", rest_address)
        assert not (data_dir / "tls").exists(), "the hub made its own CA instead of using the chart's"
        ca = tls_dir.parent / "ca.crt"
        ca.write_text(secrets["ironedge-hub-tls"]["ca.crt"])
        for name in ("hub.example.test", "ironedge-hub.ironedge.svc", "ironedge-hub"):
            assert https_get(rest, "/healthz", ca, name) == (200, "ok\n")
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(rest, "/healthz", ca, "not-the-hub.example.test")
        # The owner connection string of the chart's Secret works against the hub.
        owner = secrets["ironedge-hub-owner"]["connectionString"]
        assert owner.startswith("HostName=hub.example.test;SharedAccessKeyName=iothubowner;SharedAccessKey=")
        cli_env = dict(os.environ, IRONEDGE_HUB_CONNECTION_STRING=owner, IRONEDGE_HUB_CA=str(ca),
                       IRONEDGE_HUB_URL=f"https://{rest}")
        created = subprocess.run(
            [str(ironedge), "device", "create", "edge1", "--edge"], env=cli_env, capture_output=True, text=True
        )
        assert created.returncode == 0, created.stderr
        shown = subprocess.run(
            [str(ironedge), "device", "connection-string", "edge1"], env=cli_env, capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        assert "DeviceId=edge1" in shown.stdout
        # A wrong owner key is refused: the hub really checks the chart's key.
        wrong = re.sub(r"SharedAccessKey=[^;]+$", "SharedAccessKey=" + base64.b64encode(b"x" * 32).decode(), owner)
        assert wrong != owner
        refused = subprocess.run(
            [str(ironedge), "device", "create", "edge2"], env=dict(cli_env, IRONEDGE_HUB_CONNECTION_STRING=wrong),
            capture_output=True, text=True,
        )
        assert refused.returncode != 0
        assert "401" in refused.stderr or "Unauthorized" in refused.stderr, refused.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)
