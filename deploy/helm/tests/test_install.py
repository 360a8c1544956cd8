"""The charts installed into a real cluster (KUBECONFIG) with Helm's Go SDK: the API server accepts
every object, the controller manager makes pods from them, RBAC confines each device to its own
namespace, and uninstalling leaves nothing but the claims the charts promise to keep."""

from __future__ import annotations

import base64
from typing import Any, Callable

import helm_python as helm
import pytest

from conftest import Kube, chart_path, helm_config, wait_until

KEY = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()

NAMESPACED_KINDS = (
    "deployments", "replicasets", "pods", "services", "secrets", "configmaps", "serviceaccounts",
    "roles", "rolebindings", "networkpolicies", "persistentvolumeclaims",
)


def connection_string(device_id: str) -> str:
    return f"HostName=hub.example.com;DeviceId={device_id};SharedAccessKey={KEY}"


def is_default_object(kind: str, obj: dict[str, Any]) -> bool:
    """What every namespace has without any chart."""
    name = obj["metadata"]["name"]
    if kind == "serviceaccounts":
        return name == "default"
    if kind == "secrets":
        annotations = obj["metadata"].get("annotations", {})
        return obj.get("type") == "kubernetes.io/service-account-token" and \
            annotations.get("kubernetes.io/service-account.name") == "default"
    if kind == "configmaps":
        return name == "kube-root-ca.crt"
    return False


def leftovers(kube: Kube, namespace: str) -> list[tuple[str, str]]:
    out = []
    for kind in NAMESPACED_KINDS:
        for obj in kube.get(kind, namespace=namespace):
            if not is_default_object(kind, obj):
                out.append((kind, obj["metadata"]["name"]))
    return sorted(out)


def pods_of(kube: Kube, namespace: str, component: str) -> list[dict[str, Any]]:
    return kube.get("pods", namespace=namespace, selector=f"app.kubernetes.io/component={component}")


def wait_for_pods(kube: Kube, namespace: str, component: str) -> dict[str, Any]:
    """The controller manager made a pod from the Deployment: the API server accepted its spec."""
    pods = wait_until(f"a {component} pod in {namespace}", lambda: pods_of(kube, namespace, component))
    return pods[0]


def test_the_hub_installs_upgrades_keeping_its_ca_and_key_and_uninstalls_to_its_claim(
    kube: Kube, namespace: str
) -> None:
    chart = str(chart_path("ironedge-hub"))
    with helm_config(namespace) as cfg:
        release = cfg.install(chart, "ironedge-hub", {"hostname": "hub.example.com"})
        assert release["status"] == "deployed"
        for kind, name in (("deployment", "ironedge-hub"), ("service", "ironedge-hub"),
                           ("secret", "ironedge-hub-tls"), ("secret", "ironedge-hub-owner"),
                           ("persistentvolumeclaim", "ironedge-hub-data")):
            obj = kube.get(kind, name, namespace)
            assert obj is not None, f"{kind} {name} missing"
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "ironedge-hub"
        pod = wait_for_pods(kube, namespace, "hub")
        assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        tls = kube.get("secret", "ironedge-hub-tls", namespace)["data"]
        owner = kube.get("secret", "ironedge-hub-owner", namespace)["data"]

        # Same names: nothing re-generated.
        cfg.upgrade(chart, "ironedge-hub", {"hostname": "hub.example.com", "logLevel": "debug"})
        assert kube.get("secret", "ironedge-hub-tls", namespace)["data"] == tls
        assert kube.get("secret", "ironedge-hub-owner", namespace)["data"] == owner
        # New names: a new server certificate from the same CA; the owner key stays.
        cfg.upgrade(chart, "ironedge-hub", {"hostname": "iot.example.com"})
        renewed = kube.get("secret", "ironedge-hub-tls", namespace)
        assert renewed["data"]["ca.crt"] == tls["ca.crt"] and renewed["data"]["ca.key"] == tls["ca.key"]
        assert renewed["data"]["tls.crt"] != tls["tls.crt"]
        assert renewed["metadata"]["annotations"]["ironedge.io/tls-names"].startswith("iot.example.com,")
        assert kube.get("secret", "ironedge-hub-owner", namespace)["data"]["ownerKey"] == owner["ownerKey"]

        cfg.uninstall("ironedge-hub")
    wait_until(
        "everything but the kept claim to be gone",
        lambda: leftovers(kube, namespace) == [("persistentvolumeclaims", "ironedge-hub-data")],
    )


def install_device(namespace: str, device_id: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    with helm_config(namespace) as cfg:
        return cfg.install(
            str(chart_path("ironedge-device")), "device",
            {"provisioning": {"connectionString": connection_string(device_id)}, **(values or {})},
        )


def uninstall_device(namespace: str) -> None:
    with helm_config(namespace) as cfg:
        cfg.uninstall("device")
        assert cfg.list(all_states=True) == []


def test_two_devices_install_side_by_side_confined_to_their_namespaces_and_uninstall_cleanly(
    kube: Kube, crds: None, namespaces: Callable[[], str]
) -> None:
    a, b = namespaces(), namespaces()
    install_device(a, "device-a")
    install_device(b, "device-b", {"networkPolicy": {"enabled": True}, "rbac": {"tokenReviewer": "dedicated"}})

    for ns, device_id in ((a, "device-a"), (b, "device-b")):
        for kind, name in (("deployment", "ironedge-agent"), ("deployment", "ironedge-edgehub"),
                           ("service", "ironedge-agent"), ("service", "edgehub"),
                           ("serviceaccount", "ironedge-agent"), ("serviceaccount", "ironedge-edgehub"),
                           ("role", "ironedge-agent"), ("rolebinding", "ironedge-agent"),
                           ("role", "ironedge-edgehub"), ("rolebinding", "ironedge-edgehub"),
                           ("secret", "ironedge-provisioning"), ("persistentvolumeclaim", "ironedge-edgehub-store")):
            assert kube.get(kind, name, ns) is not None, f"{kind} {name} missing in {ns}"
        secret = kube.get("secret", "ironedge-provisioning", ns)
        assert base64.b64decode(secret["data"]["connectionString"]).decode() == connection_string(device_id)
        agent_pod = wait_for_pods(kube, ns, "agent")
        assert agent_pod["spec"]["serviceAccountName"] == "ironedge-agent"
        hub_pod = wait_for_pods(kube, ns, "edgehub")
        env = {e["name"]: e.get("value") for e in hub_pod["spec"]["containers"][0]["env"]}
        assert env["IOTEDGE_DEVICEID"] == device_id
    assert kube.get("clusterrolebinding", f"ironedge-agent:{a}:auth-delegator") is not None
    assert kube.get("clusterrolebinding", f"ironedge-agent:{b}:token-reviewer") is not None
    assert kube.get("clusterrole", f"ironedge-agent:{b}:token-reviewer") is not None
    assert sorted(p["metadata"]["name"] for p in kube.get("networkpolicies", namespace=b)) == [
        "ironedge-agent", "ironedge-edgehub", "ironedge-namespace-isolation",
    ]
    assert kube.get("networkpolicies", namespace=a) == []

    # What the API server's authorizer says about each identity.
    for own, other in ((a, b), (b, a)):
        agent = f"system:serviceaccount:{own}:ironedge-agent"
        edgehub = f"system:serviceaccount:{own}:ironedge-edgehub"
        for verb, resource in (("create", "deployments.apps"), ("delete", "jobs.batch"), ("get", "secrets"),
                               ("patch", "edgedeployments.ironedge.io"), ("update", "edgedeployments.ironedge.io/status"),
                               ("delete", "pods"), ("get", "pods/log"), ("create", "persistentvolumeclaims")):
            assert kube.can_i(verb, resource, own, agent), f"the agent of {own} cannot {verb} {resource}"
            assert not kube.can_i(verb, resource, other, agent), f"the agent of {own} can {verb} {resource} in {other}"
        assert kube.can_i("create", "tokenreviews.authentication.k8s.io", None, agent)
        assert not kube.can_i("list", "nodes", None, agent)
        assert not kube.can_i("create", "namespaces", None, agent)
        assert not kube.can_i("create", "clusterrolebindings.rbac.authorization.k8s.io", None, agent)
        assert not kube.can_i("create", "roles.rbac.authorization.k8s.io", own, agent)
        assert kube.can_i("watch", "edgedeployments.ironedge.io", own, edgehub)
        assert not kube.can_i("get", "secrets", own, edgehub)
        assert not kube.can_i("update", "edgedeployments.ironedge.io", own, edgehub)
        assert not kube.can_i("watch", "edgedeployments.ironedge.io", other, edgehub)

    uninstall_device(a)
    wait_until(f"only the kept claim in {a}",
               lambda: leftovers(kube, a) == [("persistentvolumeclaims", "ironedge-edgehub-store")])
    # The other device is untouched by its neighbour's uninstall.
    assert kube.get("deployment", "ironedge-agent", b) is not None
    assert kube.get("clusterrolebinding", f"ironedge-agent:{b}:token-reviewer") is not None
    uninstall_device(b)
    wait_until(f"only the kept claim in {b}",
               lambda: leftovers(kube, b) == [("persistentvolumeclaims", "ironedge-edgehub-store")])
    for ns, name in ((a, "auth-delegator"), (b, "token-reviewer")):
        assert kube.get("clusterrolebinding", f"ironedge-agent:{ns}:{name}") is None
    assert kube.get("clusterrole", f"ironedge-agent:{b}:token-reviewer") is None


def test_a_second_device_release_in_the_same_namespace_is_refused(
    kube: Kube, crds: None, namespace: str
) -> None:
    install_device(namespace, "first")
    with helm_config(namespace) as cfg:
        with pytest.raises(helm.HelmReleaseError) as err:
            cfg.install(str(chart_path("ironedge-device")), "second",
                        {"provisioning": {"connectionString": connection_string("second")}})
        assert [r["name"] for r in cfg.list(all_states=True)] == ["device"]
    assert "exists and cannot be imported" in str(err.value)
    assert 'current value is "device"' in str(err.value)
    # The first device is intact.
    secret = kube.get("secret", "ironedge-provisioning", namespace)
    assert base64.b64decode(secret["data"]["connectionString"]).decode() == connection_string("first")
    uninstall_device(namespace)


def test_a_device_without_persistence_or_edge_hub_leaves_nothing_at_all(
    kube: Kube, crds: None, namespace: str
) -> None:
    install_device(namespace, "tiny", {"edgeHub": {"persistence": {"enabled": False}}})
    wait_for_pods(kube, namespace, "edgehub")
    uninstall_device(namespace)
    wait_until(f"{namespace} to be empty", lambda: leftovers(kube, namespace) == [])
