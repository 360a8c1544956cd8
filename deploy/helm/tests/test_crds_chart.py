"""ironedge-crds: the chart's CRD is the committed one (deploy/crds/), which is what `ironedge crd`
prints; installed, upgraded and kept on uninstall."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import yaml

from conftest import CRD_NAME, REPO, Kube, adopt, chart_path, helm_config, lint, render, wait_until

COMMITTED = REPO / "deploy" / "crds" / "edgedeployments.ironedge.io.yaml"
CHART_COPY = chart_path("ironedge-crds") / "files" / "edgedeployments.ironedge.io.yaml"
CHART_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}


def without_chart_metadata(crd: dict) -> dict:
    out = copy.deepcopy(crd)
    out["metadata"].pop("labels", None)
    out["metadata"].pop("annotations", None)
    return out


def test_the_charts_crd_file_is_byte_identical_to_deploy_crds() -> None:
    assert CHART_COPY.read_bytes() == COMMITTED.read_bytes(), (
        f"{CHART_COPY.relative_to(REPO)} differs from {COMMITTED.relative_to(REPO)}; "
        f"copy it: cp {COMMITTED.relative_to(REPO)} {CHART_COPY.relative_to(REPO)}"
    )


def test_the_committed_crd_is_what_ironedge_crd_prints(ironedge: Path) -> None:
    printed = subprocess.run([str(ironedge), "crd"], capture_output=True, text=True, check=True).stdout
    assert printed == COMMITTED.read_text(), "run `ironedge crd > deploy/crds/edgedeployments.ironedge.io.yaml`"


def test_the_rendered_crd_equals_the_committed_one_plus_chart_labels() -> None:
    objects = render("ironedge-crds")
    assert [o["kind"] for o in objects] == ["CustomResourceDefinition"]
    crd = objects[0]
    assert without_chart_metadata(crd) == yaml.safe_load(COMMITTED.read_text())
    assert set(crd["metadata"]["labels"]) == CHART_LABELS
    assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_the_crd_is_not_kept_when_keep_is_false_and_extra_metadata_is_added() -> None:
    crd = render(
        "ironedge-crds",
        {"keep": False, "labels": {"team": "edge"}, "annotations": {"note": "x"}},
    )[0]
    assert crd["metadata"]["annotations"] == {"note": "x"}
    assert crd["metadata"]["labels"]["team"] == "edge"
    assert without_chart_metadata(crd) == yaml.safe_load(COMMITTED.read_text())


def test_the_crds_chart_lints_clean_for_kubernetes_1_20() -> None:
    for values in (None, {"keep": False}):
        report = lint("ironedge-crds", values)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_the_crd_installs_upgrades_and_survives_uninstall(kube: Kube, namespace: str) -> None:
    release = "ironedge-crds"
    adopt(kube, release, namespace)
    with helm_config(namespace) as cfg:
        installed = cfg.install(str(chart_path("ironedge-crds")), release)
        assert installed["status"] == "deployed"
        crd = kube.get("crd", CRD_NAME)
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        established = wait_until(
            "the CRD to be Established",
            lambda: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (kube.get("crd", CRD_NAME) or {}).get("status", {}).get("conditions", [])
            ),
        )
        assert established
        # The CRD serves: an EdgeDeployment can be listed in any namespace.
        assert kube.get("edgedeployments", namespace=namespace) == []

        upgraded = cfg.upgrade(str(chart_path("ironedge-crds")), release, {"labels": {"upgraded": "yes"}})
        assert upgraded["revision"] == 2
        assert kube.get("crd", CRD_NAME)["metadata"]["labels"]["upgraded"] == "yes"

        cfg.uninstall(release)
        assert cfg.list(all_states=True) == []
    # Kept: deleting it would delete every device's EdgeDeployment.
    assert kube.get("crd", CRD_NAME) is not None
