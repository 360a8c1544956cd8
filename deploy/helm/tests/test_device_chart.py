"""ironedge-device rendered by Helm's engine: objects, RBAC (the agent's own `ironedge agent rbac`),
security, NetworkPolicy, provisioning and every value reaching the pods."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import container, env_of, find, kinds, lint, render, render_notes

KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
CS = f"HostName=hub.example.com;DeviceId=dev-1;SharedAccessKey={KEY}"
BASE = {"provisioning": {"connectionString": CS}}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"


def device(values: dict[str, Any] | None = None, namespace: str = "dev1") -> list[dict[str, Any]]:
    merged = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in (values or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return render("ironedge-device", merged, namespace=namespace)


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as err:
        render("ironedge-device", values)
    return str(err.value)


def pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "Deployment"]


# --- what is rendered ---------------------------------------------------------------------------


def test_defaults_render_the_agent_the_edge_hub_and_their_objects() -> None:
    objects = device()
    assert kinds(objects) == [
        ("ClusterRoleBinding", "ironedge-agent:dev1:auth-delegator"),
        ("Deployment", "ironedge-agent"),
        ("Deployment", "ironedge-edgehub"),
        ("PersistentVolumeClaim", "ironedge-edgehub-store"),
        ("Role", "ironedge-agent"),
        ("Role", "ironedge-edgehub"),
        ("RoleBinding", "ironedge-agent"),
        ("RoleBinding", "ironedge-edgehub"),
        ("Secret", "ironedge-provisioning"),
        ("Service", "edgehub"),
        ("Service", "ironedge-agent"),
        ("ServiceAccount", "ironedge-agent"),
        ("ServiceAccount", "ironedge-edgehub"),
    ]
    for o in objects:
        if o["kind"] != "ClusterRoleBinding":
            assert o["metadata"]["namespace"] == "dev1", o["metadata"]["name"]
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/part-of"] == "ironedge"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_every_object_has_unique_labels_keys_in_its_yaml() -> None:
    # Duplicate keys in a rendered label map are silently collapsed by YAML parsers; Helm's own
    # output must not contain them (a parser that keeps the first one would change selectors).
    with helm.Chart.load(Path(__file__).parents[1] / "ironedge-device") as c:
        manifests = c.render(BASE, name="rel", namespace="dev1")

    class Strict(yaml.SafeLoader):
        pass

    def no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [loader.construct_object(k) for k, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicates)
    for template, text in manifests.items():
        if not template.endswith("NOTES.txt"):
            list(yaml.load_all(text, Loader=Strict))


def test_the_agent_runs_the_agent_subcommand_with_its_identity_and_hub_settings() -> None:
    agent = find(device(), "Deployment", "ironedge-agent")
    spec = agent["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "ironedge-agent"
    c = container(agent)
    assert c["image"] == "ghcr.io/ironedge/ironedge:0.1.0"
    assert "command" not in c, "the image's ENTRYPOINT is the ironedge binary"
    assert c["args"] == ["agent"]
    env = env_of(c)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["IRONEDGE_CONNECTION_STRING_SECRET"] == "ironedge-provisioning"
    assert env["IRONEDGE_CONNECTION_STRING_KEY"] == "connectionString"
    assert env["IRONEDGE_HUB_CA"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["IRONEDGE_WORKLOAD_LISTEN"] == "0.0.0.0:15581"
    assert env["IRONEDGE_AGENT_METRICS_LISTEN"] == "0.0.0.0:9600"
    assert env["IRONEDGE_WORKLOAD_AGENT_URL"] == "https://ironedge-agent.dev1.svc:15581"
    assert env["IRONEDGE_WORKLOAD_PROXY_IMAGE"] == "ghcr.io/ironedge/ironedge:0.1.0"
    assert "IRONEDGE_AGENT_NO_CONTROLLER" not in env
    assert "IOTEDGE_DEVICE_CONNECTION_STRING" not in env, "the connection string stays in its Secret"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"workload": 15581, "metrics": 9600}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 600


def test_the_agent_service_is_what_the_sidecars_dial() -> None:
    svc = find(device(), "Service", "ironedge-agent")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "workload": (15581, "workload"),
        "metrics": (9600, "metrics"),
    }
    agent = find(device(), "Deployment", "ironedge-agent")
    assert svc["spec"]["selector"] == agent["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= agent["spec"]["template"]["metadata"]["labels"].items()


def test_the_edge_hub_gets_the_device_the_agents_secrets_and_its_store() -> None:
    objects = device()
    hub = find(objects, "Deployment", "ironedge-edgehub")
    assert hub["spec"]["strategy"] == {"type": "Recreate"}
    pod = hub["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ironedge-edgehub"
    c = container(hub)
    assert c["args"] == ["edgehub"]
    env = env_of(c)
    assert env["IOTEDGE_DEVICEID"] == "dev-1"
    assert env["IOTEDGE_IOTHUBHOSTNAME"] == "hub.example.com"
    assert env["EDGEHUB_UPSTREAM"] == "hub.example.com"
    assert env["EDGEHUB_UPSTREAM_CA"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["EDGEHUB_REGISTRY_URL"] == "https://hub.example.com"
    assert env["EDGEHUB_DEVICE_KEY"] == {
        "secretKeyRef": {"name": "ironedge-provisioning", "key": "sharedAccessKey"}
    }
    assert env["EDGEHUB_STORE"] == "/var/lib/ironedge/edgehub.redb"
    assert env["EDGEHUB_TLS_CERT"] == "/etc/ironedge/edgehub-tls/tls.crt"
    assert env["EDGEHUB_IDENTITIES"] == "/etc/ironedge/edgehub-identities/identities.json"
    assert "EDGEHUB_WEBSOCKET_LISTEN" not in env and "EDGEHUB_STORE_MAX_BYTES" not in env
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["store"] == "/var/lib/ironedge"
    assert volumes["store"]["persistentVolumeClaim"] == {"claimName": "ironedge-edgehub-store"}
    # The agent writes these Secrets (crates/agent/src/labels.rs, identities.rs).
    assert volumes["tls"]["secret"]["secretName"] == "ironedge-edgehub-tls"
    assert volumes["identities"]["secret"]["secretName"] == "ironedge-edgehub-identities"
    svc = find(objects, "Service", "edgehub")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("mqtt", 8883)]
    assert svc["spec"]["selector"] == hub["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "edgehub"
    claim = find(objects, "PersistentVolumeClaim", "ironedge-edgehub-store")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def test_the_provisioning_secret_holds_the_connection_string_and_the_key() -> None:
    secret = find(device(), "Secret", "ironedge-provisioning")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"connectionString": CS, "sharedAccessKey": KEY}


def test_every_pod_is_non_root_read_only_without_capabilities_under_runtime_default_seccomp() -> None:
    for deployment in pods(device({"edgeHub": {"websocket": {"enabled": True}}})):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["privileged"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert all(p["containerPort"] > 1024 for p in c["ports"]), "non-root cannot bind < 1024"
            assert c["resources"]["limits"] and c["resources"]["requests"]


# --- RBAC ---------------------------------------------------------------------------------------


def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_agents_role_grants_exactly_what_ironedge_agent_rbac_prints(ironedge: Path) -> None:
    printed = subprocess.run(
        [str(ironedge), "agent", "rbac", "--namespace", "dev1"],
        capture_output=True, text=True, check=True,
    ).stdout
    expected = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(printed) if d}
    objects = device()
    role = find(objects, "Role", "ironedge-agent")
    assert triples(role["rules"]) == triples(expected[("Role", "ironedge-agent")]["rules"])
    binding = find(objects, "ClusterRoleBinding", "ironedge-agent:dev1:auth-delegator")
    printed_binding = expected[("ClusterRoleBinding", "ironedge-agent:dev1:auth-delegator")]
    assert binding["roleRef"] == printed_binding["roleRef"]
    assert binding["subjects"] == printed_binding["subjects"]
    role_binding = find(objects, "RoleBinding", "ironedge-agent")
    assert role_binding["roleRef"] == expected[("RoleBinding", "ironedge-agent")]["roleRef"]
    assert role_binding["subjects"] == expected[("RoleBinding", "ironedge-agent")]["subjects"]


def test_nothing_grants_wildcards_nodes_namespaces_or_other_namespaces() -> None:
    for values in ({}, {"rbac": {"tokenReviewer": "dedicated"}}):
        objects = device(values)
        for o in objects:
            for rule in o.get("rules", []):
                assert "*" not in rule["verbs"] and "*" not in rule["resources"]
                assert not {"nodes", "namespaces"} & set(rule["resources"])
            for subject in o.get("subjects", []):
                assert subject["namespace"] == "dev1"
        cluster_scoped = [o for o in objects if o["kind"].startswith("Cluster")]
        assert all(o["metadata"]["name"].startswith("ironedge-agent:dev1:") for o in cluster_scoped)


def test_the_dedicated_token_reviewer_allows_only_tokenreview_create() -> None:
    objects = device({"rbac": {"tokenReviewer": "dedicated"}})
    role = find(objects, "ClusterRole", "ironedge-agent:dev1:token-reviewer")
    assert triples(role["rules"]) == {("authentication.k8s.io", "tokenreviews", "create")}
    binding = find(objects, "ClusterRoleBinding", "ironedge-agent:dev1:token-reviewer")
    assert binding["roleRef"]["name"] == "ironedge-agent:dev1:token-reviewer"
    assert [o for o in objects if o["kind"] == "ClusterRoleBinding"] == [binding]
    assert "tokenReviewer" in render_error({**BASE, "rbac": {"tokenReviewer": "both"}})


def test_the_edge_hub_may_only_read_edgedeployments() -> None:
    role = find(device(), "Role", "ironedge-edgehub")
    assert triples(role["rules"]) == {
        ("ironedge.io", "edgedeployments", verb) for verb in ("get", "list", "watch")
    }


# --- NetworkPolicy ------------------------------------------------------------------------------


def test_network_policies_exist_only_when_enabled() -> None:
    assert not [o for o in device() if o["kind"] == "NetworkPolicy"]
    policies = [o for o in device({"networkPolicy": {"enabled": True}}) if o["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["name"] for p in policies) == [
        "ironedge-agent", "ironedge-edgehub", "ironedge-namespace-isolation",
    ]


def test_the_namespace_accepts_and_sends_only_inside_itself_and_to_dns() -> None:
    objects = device({"networkPolicy": {"enabled": True}})
    iso = find(objects, "NetworkPolicy", "ironedge-namespace-isolation")["spec"]
    assert iso["podSelector"] == {}
    assert iso["policyTypes"] == ["Ingress", "Egress"]
    assert iso["ingress"] == [{"from": [{"podSelector": {}}]}]
    assert iso["egress"][0] == {"to": [{"podSelector": {}}]}
    dns = iso["egress"][1]
    assert dns["to"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert sorted((p["protocol"], p["port"]) for p in dns["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert len(iso["egress"]) == 2


def test_the_agent_and_edge_hub_reach_the_api_server_and_the_hub_only_on_their_ports() -> None:
    values = {
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [6443]},
            "hub": {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]},
            "edgeHubFrom": [{"ipBlock": {"cidr": "192.168.50.0/24"}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
        },
        "edgeHub": {"websocket": {"enabled": True}},
    }
    objects = device(values)
    for name, component in (("ironedge-agent", "agent"), ("ironedge-edgehub", "edgehub")):
        spec = find(objects, "NetworkPolicy", name)["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert spec["egress"] == [
            {"ports": [{"protocol": "TCP", "port": 6443}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
            {"ports": [{"protocol": "TCP", "port": 8883}, {"protocol": "TCP", "port": 443}],
             "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]},
        ]
        metrics = spec["ingress"][0]
        assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
        assert metrics["ports"] == [{"protocol": "TCP", "port": 9600}]
    hub_ingress = find(objects, "NetworkPolicy", "ironedge-edgehub")["spec"]["ingress"]
    assert hub_ingress[1] == {
        "from": [{"ipBlock": {"cidr": "192.168.50.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 8883}, {"protocol": "TCP", "port": 8443}],
    }
    assert len(find(objects, "NetworkPolicy", "ironedge-agent")["spec"]["ingress"]) == 1


def test_without_extra_peers_the_agent_accepts_nothing_beyond_the_namespace() -> None:
    spec = find(device({"networkPolicy": {"enabled": True}}), "NetworkPolicy", "ironedge-agent")["spec"]
    assert spec["ingress"] == []
    assert all("to" not in rule for rule in spec["egress"]), "no peers given: the ports to anywhere"


def test_extra_rules_reach_every_pod_of_the_namespace() -> None:
    egress = {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 4840}]}
    ingress = {"from": [{"namespaceSelector": {"matchLabels": {"role": "gateway"}}}]}
    iso = find(
        device({"networkPolicy": {"enabled": True, "extraEgress": [egress], "extraIngress": [ingress]}}),
        "NetworkPolicy", "ironedge-namespace-isolation",
    )["spec"]
    assert iso["egress"][-1] == egress
    assert iso["ingress"][-1] == ingress


# --- provisioning -------------------------------------------------------------------------------


def test_missing_provisioning_fails_with_what_to_set() -> None:
    message = render_error({})
    assert "provisioning.connectionString" in message and "provisioning.existingSecret" in message


@pytest.mark.parametrize(
    ("connection_string", "expected"),
    [
        ("HostName=h;SharedAccessKey=k", "has no DeviceId"),
        ("DeviceId=d;SharedAccessKey=k", "has no HostName"),
        ("HostName=h;DeviceId=d", "has no SharedAccessKey"),
        ("HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=k", "not a device connection string"),
        ("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=k", "not a device connection string"),
        ("HostName=h;DeviceId;SharedAccessKey=k", '"DeviceId" is not Name=value'),
    ],
)
def test_a_bad_connection_string_is_refused_with_the_reason(connection_string: str, expected: str) -> None:
    assert expected in render_error({"provisioning": {"connectionString": connection_string}})


def test_a_connection_string_and_an_existing_secret_together_are_refused() -> None:
    message = render_error({"provisioning": {"connectionString": CS, "existingSecret": "mine"}})
    assert "not both" in message


def test_an_existing_secret_needs_the_device_id_and_hub_host_name_for_the_edge_hub() -> None:
    message = render_error({"provisioning": {"existingSecret": "mine"}})
    assert "provisioning.deviceId is required" in message
    message = render_error({"provisioning": {"existingSecret": "mine", "deviceId": "d"}})
    assert "provisioning.hubHostName is required" in message
    # Without an edge hub the agent alone reads everything from the Secret.
    objects = render("ironedge-device", {"provisioning": {"existingSecret": "mine"}, "edgeHub": {"enabled": False}})
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_an_existing_secret_is_used_by_name_and_key_and_no_secret_is_rendered() -> None:
    values = {
        "provisioning": {
            "existingSecret": "device-cs", "connectionStringKey": "cs", "sharedAccessKeyKey": "key",
            "deviceId": "dev-9", "hubHostName": "myhub.azure-devices.net",
        }
    }
    objects = render("ironedge-device", values)
    assert not [o for o in objects if o["kind"] == "Secret"]
    agent = env_of(container(find(objects, "Deployment", "ironedge-agent")))
    assert agent["IRONEDGE_CONNECTION_STRING_SECRET"] == "device-cs"
    assert agent["IRONEDGE_CONNECTION_STRING_KEY"] == "cs"
    hub = env_of(container(find(objects, "Deployment", "ironedge-edgehub")))
    assert hub["IOTEDGE_DEVICEID"] == "dev-9"
    assert hub["IOTEDGE_IOTHUBHOSTNAME"] == "myhub.azure-devices.net"
    assert hub["EDGEHUB_DEVICE_KEY"] == {"secretKeyRef": {"name": "device-cs", "key": "key"}}
    assert hub["EDGEHUB_REGISTRY_URL"] == "https://myhub.azure-devices.net"


def test_without_the_device_key_the_edge_hub_does_not_query_the_registry() -> None:
    values = {"provisioning": {"existingSecret": "s", "deviceId": "d", "hubHostName": "h"}}
    hub = env_of(container(find(render("ironedge-device", values), "Deployment", "ironedge-edgehub")))
    assert "EDGEHUB_REGISTRY_URL" not in hub and "EDGEHUB_DEVICE_KEY" not in hub


def test_the_gateway_host_name_of_the_connection_string_is_the_mqtt_upstream() -> None:
    cs = f"HostName=hub.example.com;DeviceId=d;SharedAccessKey={KEY};GatewayHostName=parent.local"
    hub = env_of(container(find(device({"provisioning": {"connectionString": cs}}), "Deployment", "ironedge-edgehub")))
    assert hub["EDGEHUB_UPSTREAM"] == "parent.local"
    assert hub["IOTEDGE_IOTHUBHOSTNAME"] == "hub.example.com"


# --- values reach the objects -------------------------------------------------------------------


def test_hub_endpoints_and_a_ca_pem_reach_both_components() -> None:
    objects = device({"hub": {"mqtt": "hub.internal:18883", "restUrl": "https://hub.internal:18443", "ca": {"pem": CA_PEM}}})
    cm = find(objects, "ConfigMap", "ironedge-hub-ca")
    assert cm["data"]["ca.crt"].strip() == CA_PEM.strip()
    agent = container(find(objects, "Deployment", "ironedge-agent"))
    hub = container(find(objects, "Deployment", "ironedge-edgehub"))
    assert env_of(agent)["IRONEDGE_HUB_MQTT"] == "hub.internal:18883"
    assert env_of(agent)["IRONEDGE_HUB_REST_URL"] == "https://hub.internal:18443"
    assert env_of(agent)["IRONEDGE_HUB_CA"] == "/etc/ironedge/hub-ca/ca.crt"
    assert env_of(hub)["EDGEHUB_UPSTREAM"] == "hub.internal:18883"
    assert env_of(hub)["EDGEHUB_REGISTRY_URL"] == "https://hub.internal:18443"
    assert env_of(hub)["EDGEHUB_UPSTREAM_CA"] == "/etc/ironedge/hub-ca/ca.crt"
    for deployment in pods(objects):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["hub-ca"]["configMap"]["name"] == "ironedge-hub-ca"
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        assert mounts["hub-ca"] == {"name": "hub-ca", "mountPath": "/etc/ironedge/hub-ca", "readOnly": True}


def test_a_ca_from_an_existing_secret_or_config_map_is_mounted_by_key() -> None:
    objects = device({"hub": {"ca": {"existingSecret": "corp-ca", "key": "root.pem"}}})
    assert not [o for o in objects if o["kind"] == "ConfigMap"]
    agent = find(objects, "Deployment", "ironedge-agent")
    volumes = {v["name"]: v for v in agent["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hub-ca"]["secret"] == {"secretName": "corp-ca", "items": [{"key": "root.pem", "path": "root.pem"}]}
    assert env_of(container(agent))["IRONEDGE_HUB_CA"] == "/etc/ironedge/hub-ca/root.pem"
    objects = device({"hub": {"ca": {"existingConfigMap": "corp-ca"}}})
    volumes = {v["name"]: v for v in find(objects, "Deployment", "ironedge-edgehub")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hub-ca"]["configMap"]["name"] == "corp-ca"


def test_two_ca_sources_or_a_pem_without_a_certificate_are_refused() -> None:
    assert "at most one" in render_error({**BASE, "hub": {"ca": {"pem": CA_PEM, "existingSecret": "x"}}})
    assert "holds no PEM certificate" in render_error({**BASE, "hub": {"ca": {"pem": "not a cert"}}})


def test_image_tag_digest_and_pull_secrets_reach_every_pod() -> None:
    objects = device({"image": {"repository": "registry.local/ironedge", "tag": "1.2.3", "pullPolicy": "Always"},
                      "imagePullSecrets": [{"name": "regcred"}]})
    for deployment in pods(objects):
        c = container(deployment)
        assert c["image"] == "registry.local/ironedge:1.2.3"
        assert c["imagePullPolicy"] == "Always"
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    agent = env_of(container(find(objects, "Deployment", "ironedge-agent")))
    assert agent["IRONEDGE_WORKLOAD_PROXY_IMAGE"] == "registry.local/ironedge:1.2.3"
    digest = "sha256:" + "a" * 64
    for deployment in pods(device({"image": {"digest": digest}})):
        assert container(deployment)["image"] == f"ghcr.io/ironedge/ironedge@{digest}"


def test_agent_settings_reach_its_environment() -> None:
    values = {
        "agent": {
            "controller": False, "edgeDeploymentName": "plant-7", "gatewayHostName": "gw.factory.local",
            "edgeHubHostNames": ["edge.factory.local"], "edgeCa": {"existingSecret": "device-ca", "days": 90},
            "serverCertDays": 7, "reportDebounceMs": 250, "logLevel": "debug",
            "workload": {"proxy": {"enabled": False}, "audience": "aud", "tokenReviewCacheSeconds": 5,
                         "serverNames": ["agent.local"]},
            "extraEnv": [{"name": "EXTRA", "value": "1"}], "extraArgs": ["--pod-name", "x"],
            "resources": {"limits": {"memory": "128Mi"}},
            "nodeSelector": {"edge": "true"}, "tolerations": [{"key": "edge", "operator": "Exists"}],
            "podAnnotations": {"a": "b"}, "podLabels": {"c": "d"}, "priorityClassName": "high",
        },
        "logFormat": "text",
    }
    agent = find(device(values), "Deployment", "ironedge-agent")
    pod = agent["spec"]["template"]
    c = container(agent)
    env = env_of(c)
    assert env["IRONEDGE_AGENT_NO_CONTROLLER"] == "true"
    assert env["IRONEDGE_EDGE_DEPLOYMENT"] == "plant-7"
    assert env["IRONEDGE_GATEWAY_HOST_NAME"] == "gw.factory.local"
    assert env["IRONEDGE_EDGEHUB_HOST_NAMES"] == "edge.factory.local"
    assert env["IRONEDGE_EDGE_CA_SECRET"] == "device-ca"
    assert env["IRONEDGE_EDGE_CA_DAYS"] == "90"
    assert env["IRONEDGE_SERVER_CERT_DAYS"] == "7"
    assert env["IRONEDGE_REPORT_DEBOUNCE_MS"] == "250"
    assert env["IRONEDGE_WORKLOAD_AUDIENCE"] == "aud"
    assert env["IRONEDGE_TOKEN_REVIEW_CACHE_SECS"] == "5"
    assert env["IRONEDGE_WORKLOAD_SERVER_NAMES"] == "agent.local"
    assert "IRONEDGE_WORKLOAD_PROXY_IMAGE" not in env
    assert env["RUST_LOG"] == "debug" and env["IRONEDGE_LOG_FORMAT"] == "text"
    assert env["EXTRA"] == "1"
    assert c["args"] == ["agent", "--pod-name", "x"]
    # Helm merges maps: the given limit replaces the default one, the rest stays.
    assert c["resources"] == {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}}
    assert pod["spec"]["nodeSelector"] == {"edge": "true"}
    assert pod["spec"]["tolerations"] == [{"key": "edge", "operator": "Exists"}]
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["metadata"]["annotations"]["a"] == "b"
    assert pod["metadata"]["labels"]["c"] == "d"
    hub = env_of(container(find(device(values), "Deployment", "ironedge-edgehub")))
    assert hub["EDGEHUB_EDGE_DEPLOYMENT"] == "plant-7"
    assert hub["IOTEDGE_GATEWAYHOSTNAME"] == "gw.factory.local,edge.factory.local"


def test_edge_hub_settings_reach_its_environment_service_and_claim() -> None:
    values = {
        "edgeHub": {
            "storeMaxBytes": 536870912, "registryRefreshSeconds": 600, "upstreamTokenTtlSeconds": 900,
            "websocket": {"enabled": True, "port": 9443, "servicePort": 443},
            "service": {"type": "LoadBalancer", "annotations": {"lb": "internal"},
                        "loadBalancerSourceRanges": ["192.168.0.0/16"], "externalTrafficPolicy": "Local"},
            "persistence": {"storageClassName": "fast", "size": "10Gi", "keep": False,
                            "accessModes": ["ReadWriteOncePod"]},
            "logLevel": "warn", "terminationGracePeriodSeconds": 120,
        }
    }
    objects = device(values)
    hub = find(objects, "Deployment", "ironedge-edgehub")
    c = container(hub)
    env = env_of(c)
    assert env["EDGEHUB_STORE_MAX_BYTES"] == "536870912"
    assert env["EDGEHUB_REGISTRY_REFRESH"] == "600"
    assert env["EDGEHUB_UPSTREAM_TOKEN_TTL"] == "900"
    assert env["EDGEHUB_WEBSOCKET_LISTEN"] == "0.0.0.0:9443"
    assert env["RUST_LOG"] == "warn"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"mqtt": 8883, "websocket": 9443, "metrics": 9600}
    assert hub["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    svc = find(objects, "Service", "edgehub")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"lb": "internal"}
    assert svc["spec"]["loadBalancerSourceRanges"] == ["192.168.0.0/16"]
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("mqtt", 8883, "mqtt"), ("websocket", 443, "websocket"),
    ]
    claim = find(objects, "PersistentVolumeClaim", "ironedge-edgehub-store")
    assert "annotations" not in claim["metadata"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_an_existing_claim_or_no_persistence_renders_no_claim() -> None:
    objects = device({"edgeHub": {"persistence": {"existingClaim": "old-store"}}})
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    volumes = find(objects, "Deployment", "ironedge-edgehub")["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "store", "persistentVolumeClaim": {"claimName": "old-store"}}
    objects = device({"edgeHub": {"persistence": {"enabled": False}}})
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    volumes = find(objects, "Deployment", "ironedge-edgehub")["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "store", "emptyDir": {}}


def test_without_the_edge_hub_only_the_agent_is_rendered() -> None:
    objects = device({"edgeHub": {"enabled": False}, "networkPolicy": {"enabled": True}})
    names = {name for _, name in kinds(objects)}
    assert not {"ironedge-edgehub", "edgehub", "ironedge-edgehub-store"} & names
    assert "ironedge-agent" in names


def test_common_labels_reach_every_object_but_not_the_selectors() -> None:
    objects = device({"commonLabels": {"site": "plant-7"}})
    assert all(o["metadata"]["labels"]["site"] == "plant-7" for o in objects)
    for deployment in pods(objects):
        assert "site" not in deployment["spec"]["selector"]["matchLabels"]


def test_a_changed_connection_string_restarts_the_pods() -> None:
    other = f"HostName=hub.example.com;DeviceId=dev-2;SharedAccessKey={KEY}"
    before = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/provisioning"] for d in pods(device())}
    after = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/provisioning"]
             for d in pods(device({"provisioning": {"connectionString": other}}))}
    assert before.keys() == after.keys()
    assert all(before[k] != after[k] for k in before)


def test_two_namespaces_get_separate_cluster_scoped_names() -> None:
    a = device(namespace="dev-a")
    b = device(namespace="dev-b")
    cluster_a = {o["metadata"]["name"] for o in a if o["kind"].startswith("Cluster")}
    cluster_b = {o["metadata"]["name"] for o in b if o["kind"].startswith("Cluster")}
    assert cluster_a == {"ironedge-agent:dev-a:auth-delegator"}
    assert cluster_a.isdisjoint(cluster_b)


def test_notes_say_what_uninstall_keeps() -> None:
    notes = render_notes("ironedge-device", BASE)
    assert "ironedge device dev-1 in namespace dev1" in notes
    assert "kubectl delete namespace dev1" in notes
    assert "ironedge-edgehub-store" in notes


def test_the_device_chart_lints_clean_with_default_and_non_default_values() -> None:
    for values in (
        BASE,
        {**BASE, "networkPolicy": {"enabled": True}, "rbac": {"tokenReviewer": "dedicated"},
         "edgeHub": {"websocket": {"enabled": True}, "service": {"type": "LoadBalancer"}},
         "hub": {"ca": {"pem": CA_PEM}}},
        {"provisioning": {"existingSecret": "s", "deviceId": "d", "hubHostName": "h"}},
    ):
        report = lint("ironedge-device", values)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report
