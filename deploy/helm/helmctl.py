#!/usr/bin/env python3
"""A small `helm` for machines without one: template, install, upgrade, uninstall and status of the
ironedge charts with Helm's own Go SDK (helm-python-sdk in the venv of scripts/helm-env).

    PY="$(scripts/helm-env)"
    "$PY" deploy/helm/helmctl.py install edge1 deploy/helm/ironedge-device -n edge1 --create-namespace \\
        --set-string provisioning.connectionString="$CS" --set-file hub.ca.pem=hub-ca.pem
    "$PY" deploy/helm/helmctl.py template edge1 deploy/helm/ironedge-device -n edge1 -f values.yaml
    "$PY" deploy/helm/helmctl.py uninstall edge1 -n edge1

Flags mean what they mean to `helm`: -f/--values (repeatable, later wins), --set, --set-string,
--set-file (applied in that order, after the files), -n/--namespace, --kubeconfig (default
KUBECONFIG), --create-namespace, --wait, --timeout SECONDS. `ironedge up` and the end-to-end tests
use it so that charts are installed exactly as a user's `helm install` would.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values: maps merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def user_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in args.values:
        values = merge(values, helm.values_from_yaml(Path(path).read_text()))
    for expression in args.set:
        values = merge(values, helm.parse_set_string(expression))
    for expression in args.set_string:
        values = merge(values, helm.parse_set_string_values(expression))
    for expression in args.set_file:
        values = merge(values, helm.parse_set_file(expression))
    return values


def config(args: argparse.Namespace) -> helm.Config:
    return helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)


def template(args: argparse.Namespace) -> int:
    with helm.Chart.load(args.chart) as chart:
        manifests = chart.render(user_values(args), name=args.release, namespace=args.namespace,
                                 is_install=True)
    for name in sorted(manifests):
        if name.endswith("NOTES.txt") or not manifests[name].strip():
            continue
        sys.stdout.write(f"---\n# Source: {name}\n{manifests[name].strip()}\n")
    return 0


def install(args: argparse.Namespace) -> int:
    with config(args) as cfg:
        release = cfg.install(args.chart, args.release, user_values(args), namespace=args.namespace,
                              create_namespace=args.create_namespace, wait="watcher" if args.wait else None,
                              timeout=args.timeout)
    print(f"installed {release['name']} in {release['namespace']} (revision {release['revision']}, {release['status']})")
    if release.get("notes"):
        print(release["notes"])
    return 0


def upgrade(args: argparse.Namespace) -> int:
    with config(args) as cfg:
        release = cfg.upgrade(args.chart, args.release, user_values(args), namespace=args.namespace,
                              wait="watcher" if args.wait else None, timeout=args.timeout)
    print(f"upgraded {release['name']} in {release['namespace']} (revision {release['revision']}, {release['status']})")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    with config(args) as cfg:
        cfg.uninstall(args.release, ignore_not_found=args.ignore_not_found,
                      wait="watcher" if args.wait else None, timeout=args.timeout)
    print(f"uninstalled {args.release} from {args.namespace}")
    return 0


def status(args: argparse.Namespace) -> int:
    with config(args) as cfg:
        release = cfg.status(args.release)
    release.pop("manifest", None)
    print(json.dumps(release, indent=2))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="helmctl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"template": template, "install": install, "upgrade": upgrade, "uninstall": uninstall, "status": status}
    for name, function in commands.items():
        p = sub.add_parser(name)
        p.set_defaults(run=function)
        p.add_argument("release")
        if name in ("template", "install", "upgrade"):
            p.add_argument("chart")
            p.add_argument("-f", "--values", action="append", default=[])
            p.add_argument("--set", action="append", default=[])
            p.add_argument("--set-string", action="append", default=[])
            p.add_argument("--set-file", action="append", default=[])
        p.add_argument("-n", "--namespace", default="default")
        p.add_argument("--kubeconfig", default=None)
        if name in ("install", "upgrade", "uninstall"):
            p.add_argument("--wait", action="store_true")
            p.add_argument("--timeout", type=int, default=300)
        if name == "install":
            p.add_argument("--create-namespace", action="store_true")
        if name == "uninstall":
            p.add_argument("--ignore-not-found", action="store_true")
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except helm.HelmError as error:
        print(f"helmctl {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
