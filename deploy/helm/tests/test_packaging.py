"""The container build and the charts agree with the workspace: toolchain, version, binary, image
name, and every value documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from conftest import CHARTS, REPO

DOCKERFILE = REPO / "deploy" / "container" / "Dockerfile"
WORKSPACE = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]
APP_CHARTS = ("ironedge-device", "ironedge-hub")
ALL_CHARTS = ("ironedge-crds", *APP_CHARTS)


def stages() -> list[str]:
    return re.findall(r"^FROM\s+(.+)$", DOCKERFILE.read_text(), flags=re.M)


def test_the_builder_uses_the_workspaces_rust_version() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG RUST_VERSION=(\S+)$", text, flags=re.M).group(1) == WORKSPACE["rust-version"]
    assert stages()[0].startswith("docker.io/library/rust:${RUST_VERSION}-")


def test_the_build_is_locked_release_of_the_cli_only() -> None:
    assert "cargo build --release --locked -p ironedge-cli" in DOCKERFILE.read_text()


def test_the_runtime_is_a_distroless_non_root_image_running_the_ironedge_binary() -> None:
    text = DOCKERFILE.read_text()
    runtime = stages()[-1]
    assert runtime.startswith("gcr.io/distroless/") and runtime.endswith(":nonroot")
    # Builder and runtime on the same Debian release: the glibc the binary links against exists.
    assert stages()[0].endswith("-bookworm AS builder") and "debian12" in runtime
    final = text[text.rindex("FROM "):]
    assert re.search(r"^USER 65532:65532$", final, flags=re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/ironedge"]' in final
    assert "COPY --from=builder /out/ironedge /usr/local/bin/ironedge" in final


def test_the_build_context_leaves_out_build_output_and_git() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", "target", "**/target"} <= set(ignored)


def test_the_charts_user_matches_the_images_user() -> None:
    for chart in APP_CHARTS:
        values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
        assert values["podSecurityContext"]["runAsUser"] == 65532
        assert values["podSecurityContext"]["runAsGroup"] == 65532


def test_every_chart_is_versioned_with_the_workspace_and_supports_kubernetes_1_20() -> None:
    for chart in ALL_CHARTS:
        meta = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())
        assert meta["appVersion"] == WORKSPACE["version"], chart
        assert meta["kubeVersion"] == ">=1.20.0-0", chart


def test_the_charts_image_is_one_ironedge_node_maps_to_its_own_binary() -> None:
    # crates/node/src/image_map.rs: `*/ironedge:*` and `ironedge:*` run the ironedge binary.
    for chart in APP_CHARTS:
        image = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())["image"]
        assert image["repository"].rsplit("/", 1)[-1] == "ironedge", chart
        assert image["tag"] == "", f"{chart}: the default tag must follow appVersion"


def leaf_paths(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the documented leaves: scalars, lists, and empty maps (free-form)."""
    if isinstance(values, dict) and values:
        out: list[str] = []
        for key, value in values.items():
            out.extend(leaf_paths(value, f"{prefix}.{key}" if prefix else key))
        return out
    return [prefix]


def test_every_value_is_documented_in_its_charts_readme() -> None:
    for chart in ALL_CHARTS:
        values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())
        readme = (CHARTS / chart / "README.md").read_text()
        documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
        paths = set(leaf_paths(values))
        # Free-form maps of defaults (resources, probes, security contexts) are documented whole.
        missing = {p for p in paths if not any(p == d or p.startswith(d + ".") for d in documented)}
        assert not missing, f"{chart}/README.md does not document: {sorted(missing)}"
        unknown = {d for d in documented if not any(p == d or p.startswith(d + ".") for p in paths)}
        assert not unknown, f"{chart}/README.md documents values that do not exist: {sorted(unknown)}"


def test_packaged_charts_render_what_their_directories_render(tmp_path: Path) -> None:
    import base64

    import helm_python as helm

    from conftest import render

    device = {"provisioning": {"connectionString": "HostName=h;DeviceId=d;SharedAccessKey=" + base64.b64encode(b"p" * 32).decode()}}
    for chart, values in (("ironedge-crds", None), ("ironedge-device", device), ("ironedge-hub", None)):
        archive = helm.package(CHARTS / chart, destination=tmp_path)
        assert Path(archive).name == f"{chart}-0.1.0.tgz"
        with helm.Chart.load(archive) as packaged:
            rendered = packaged.render(values, name="rel", namespace="dev1", is_install=True)
        objects = [o for name, text in sorted(rendered.items()) if not name.endswith("NOTES.txt")
                   for o in yaml.safe_load_all(text) if o]
        expected = render(chart, values)
        if chart == "ironedge-hub":
            # Generated keys differ on every render; everything else is the same.
            objects = [o for o in objects if o["kind"] != "Secret"]
            expected = [o for o in expected if o["kind"] != "Secret"]
        assert objects == expected, chart
