"""Every chart refuses values it does not know or of the wrong type (values.schema.json), naming the
offending key, instead of silently ignoring a typo."""

from __future__ import annotations

import base64
import json
from typing import Any

import helm_python as helm
import pytest

from conftest import CHARTS, lint, render

KEY = base64.b64encode(b"k" * 32).decode()
DEVICE = {"provisioning": {"connectionString": f"HostName=h;DeviceId=d;SharedAccessKey={KEY}"}}


def refused(chart: str, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as err:
        render(chart, values)
    return str(err.value)


@pytest.mark.parametrize(
    ("chart", "values", "expected"),
    [
        ("ironedge-device", {**DEVICE, "provisoning": {}}, "provisoning"),
        ("ironedge-device", {**DEVICE, "edgeHub": {"persistance": {"size": "2Gi"}}}, "persistance"),
        ("ironedge-device", {**DEVICE, "networkPolicy": {"enabled": "yes"}}, "networkPolicy.enabled"),
        ("ironedge-device", {**DEVICE, "edgeHub": {"ports": {"mqtt": 70000}}}, "edgeHub.ports.mqtt"),
        ("ironedge-device", {**DEVICE, "logFormat": "xml"}, "logFormat"),
        ("ironedge-device", {**DEVICE, "rbac": {"tokenReviewer": "none"}}, "tokenReviewer"),
        ("ironedge-device", {**DEVICE, "image": {"tag": 1.2}}, "image.tag"),
        ("ironedge-hub", {"hostnme": "x"}, "hostnme"),
        ("ironedge-hub", {"service": {"type": "Ingress"}}, "service.type"),
        ("ironedge-hub", {"persistence": {"keep": "no"}}, "persistence.keep"),
        ("ironedge-crds", {"kep": False}, "kep"),
    ],
)
def test_unknown_or_mistyped_values_are_refused_naming_the_key(chart: str, values: dict[str, Any], expected: str) -> None:
    message = refused(chart, values)
    assert "schema" in message.lower(), message
    assert expected.split(".")[-1] in message, message


def test_free_form_maps_accept_whatever_kubernetes_does() -> None:
    values = {**DEVICE, "agent": {"resources": {"limits": {"nvidia.com/gpu": 1}}, "affinity": {"nodeAffinity": {}},
                                  "podAnnotations": {"x": "y"}},
              "podSecurityContext": {"runAsUser": 1000, "supplementalGroups": [5]}}
    render("ironedge-device", values)
    render("ironedge-hub", {"securityContext": {"capabilities": {"drop": ["ALL"]}}, "podLabels": {"a": "b"}})


def test_every_default_value_is_described_by_the_schema() -> None:
    for chart in ("ironedge-crds", "ironedge-device", "ironedge-hub"):
        schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
        assert schema["additionalProperties"] is False
        report = lint(chart, DEVICE if chart == "ironedge-device" else None)
        assert report["errors"] == [], report
