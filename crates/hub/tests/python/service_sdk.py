"""azure-iot-hub against the hub: devices and modules, twins with etags, configurations applied
to a tagged edge device's $edgeAgent twin, a layered deployment merge, queries, set-modules."""
import copy

from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import Configuration, ConfigurationContent, QuerySpecification, Twin

from hubtest import SERVICE_CS, check, done, new_key, rest

rm = IoTHubRegistryManager.from_connection_string(SERVICE_CS)
cm = IoTHubConfigurationManager.from_connection_string(SERVICE_CS)


def configurations(device):
    """configurations.{id}.status of the $edgeAgent twin (the SDK's Twin model drops the field)."""
    r = rest("GET", f"/twins/{device}/modules/%24edgeAgent")
    check(r.status_code == 200, f"raw twin read {r.status_code}")
    return {k: v["status"].lower() for k, v in r.json().get("configurations", {}).items()}


def status_of(call):
    try:
        call()
    except Exception as e:  # msrest HttpOperationError
        return e.response.status_code
    raise AssertionError("the call was expected to fail")


MANIFEST = {
    "$edgeAgent": {"properties.desired": {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {}}},
        "systemModules": {
            "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
            "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
                        "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}},
        "modules": {"sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                               "settings": {"image": "example/sensor:1", "createOptions": "{}"}}}}},
    "$edgeHub": {"properties.desired": {
        "schemaVersion": "1.1",
        "routes": {"up": {"route": "FROM /messages/* INTO $upstream", "priority": 0, "timeToLiveSecs": 86400}},
        "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}},
    "sensor": {"properties.desired": {"SendData": True}},
}

# Devices: create, read, conflicts and etags.
pk, sk = new_key(), new_key()
dev = rm.create_device_with_sas("svc-dev", pk, sk, "enabled")
check(dev.device_id == "svc-dev" and dev.authentication.symmetric_key.primary_key == pk, "created device")
check(rm.get_device("svc-dev").etag == dev.etag, "get returns the same etag")
check(status_of(lambda: rm.create_device_with_sas("svc-dev", pk, sk, "enabled")) == 409, "duplicate create is 409")
updated = rm.update_device_with_sas("svc-dev", dev.etag, pk, sk, "disabled")
check(updated.status == "disabled" and updated.etag != dev.etag, "update with the current etag")
check(status_of(lambda: rm.update_device_with_sas("svc-dev", dev.etag, pk, sk, "enabled")) == 412, "stale etag is 412")
check(status_of(lambda: rm.get_device("nobody")) == 404, "unknown device is 404")

# Modules.
mod = rm.create_module_with_sas("svc-dev", "mod1", None, new_key(), new_key())
check(mod.module_id == "mod1" and mod.device_id == "svc-dev", "created module")
check([m.module_id for m in rm.get_modules("svc-dev")] == ["mod1"], "module list")
check(rm.get_module("svc-dev", "mod1").etag == mod.etag, "module get")
rm.delete_module("svc-dev", "mod1")
check(status_of(lambda: rm.get_module("svc-dev", "mod1")) == 404, "deleted module is 404")

# Twins with etags.
twin = rm.get_twin("svc-dev")
twin2 = rm.update_twin("svc-dev", Twin(tags={"env": "test", "site": {"city": "Oslo"}}), twin.etag)
check(twin2.tags == {"env": "test", "site": {"city": "Oslo"}} and twin2.etag != twin.etag, f"tags patched: {twin2.tags}")
check(status_of(lambda: rm.update_twin("svc-dev", Twin(tags={"env": "prod"}), twin.etag)) == 412, "stale twin etag is 412")
twin3 = rm.update_twin("svc-dev", Twin(tags={"site": None}), "*")
check(twin3.tags == {"env": "test"}, f"null removes a tag: {twin3.tags}")

# Edge devices get $edgeAgent and $edgeHub.
rm.create_device_with_sas("edge-1", new_key(), new_key(), "enabled", iot_edge=True)
rm.create_device_with_sas("edge-2", new_key(), new_key(), "enabled", iot_edge=True)
system = {m.module_id: m for m in rm.get_modules("edge-1")}
check(set(system) == {"$edgeAgent", "$edgeHub"}, f"system modules {set(system)}")
check(all(m.managed_by == "iotEdge" and m.authentication.type == "none" for m in system.values()), "system modules are managed by iotEdge, without keys")
rm.update_twin("edge-1", Twin(tags={"env": "test"}), "*")

# An automatic deployment lands in the tagged edge device's module twins.
cm.create_configuration(Configuration(
    id="base-dep", schema_version="1.0", labels={"team": "a"},
    content=ConfigurationContent(modules_content=MANIFEST), target_condition="tags.env='test'", priority=10))
agent = rm.get_module_twin("edge-1", "$edgeAgent")
check(agent.properties.desired["modules"]["sensor"]["settings"]["image"] == "example/sensor:1", f"agent desired {agent.properties.desired}")
check(configurations("edge-1") == {"base-dep": "applied"}, f"configurations {configurations('edge-1')}")
check(rm.get_module_twin("edge-1", "$edgeHub").properties.desired["routes"]["up"]["route"] == "FROM /messages/* INTO $upstream", "edgeHub routes")
untargeted = rm.get_module_twin("edge-2", "$edgeAgent")
check("modules" not in untargeted.properties.desired, "an untagged device is not targeted")

# A layered deployment merges on top, by name.
cm.create_configuration(Configuration(
    id="layer-dep", schema_version="1.0",
    content=ConfigurationContent(modules_content={
        "$edgeAgent": {"properties.desired.modules.extra": {"version": "1.0", "type": "docker", "status": "running",
                                                              "settings": {"image": "example/extra:2", "createOptions": "{}"}}},
        "$edgeHub": {"properties.desired.routes.extra": "FROM /messages/modules/extra/* INTO $upstream"},
    }),
    target_condition="tags.env='test'", priority=20))
agent = rm.get_module_twin("edge-1", "$edgeAgent")
modules = agent.properties.desired["modules"]
check(set(modules) == {"sensor", "extra"}, f"layered modules {set(modules)}")
check(modules["extra"]["settings"]["image"] == "example/extra:2", "layer content")
routes = rm.get_module_twin("edge-1", "$edgeHub").properties.desired["routes"]
check(set(routes) == {"up", "extra"}, f"layered routes {set(routes)}")
check(configurations("edge-1") == {"base-dep": "applied", "layer-dep": "applied"}, "layer applied")

# Metrics count the targeted and applied devices.
base = cm.get_configuration("base-dep")
check(base.system_metrics.results["targetedCount"] == 1 and base.system_metrics.results["appliedCount"] == 1, f"metrics {base.system_metrics.results}")
check(status_of(lambda: cm.create_configuration(Configuration(id="base-dep", content=ConfigurationContent(modules_content=MANIFEST)))) == 409, "duplicate configuration is 409")

# Queries.
q = rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE tags.env = 'test'"))
check({t.device_id for t in q.items} == {"svc-dev", "edge-1"}, f"query by tag {[t.device_id for t in q.items]}")
q = rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[base-dep]].status = 'Applied'"))
check([(t.device_id, t.module_id) for t in q.items] == [("edge-1", "$edgeAgent")], "module query")
check(status_of(lambda: rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE"))) == 400, "bad query is 400")

# set-modules on one device (applyConfigurationContent).
manual = copy.deepcopy(MANIFEST)
manual["$edgeAgent"]["properties.desired"]["modules"]["manual"] = manual["$edgeAgent"]["properties.desired"]["modules"].pop("sensor")
cm.apply_configuration_on_edge_device("edge-2", ConfigurationContent(modules_content=manual))
check(set(rm.get_module_twin("edge-2", "$edgeAgent").properties.desired["modules"]) == {"manual"}, "set-modules applied")

# Deletes.
cm.delete_configuration("layer-dep")
check(status_of(lambda: cm.get_configuration("layer-dep")) == 404, "deleted configuration is 404")
after_layer = rm.get_module_twin("edge-1", "$edgeAgent").properties.desired["modules"]
check(set(after_layer) == {"sensor"}, f"without the layer the base deployment alone applies: {set(after_layer)}")
cm.delete_configuration("base-dep")
kept = rm.get_module_twin("edge-1", "$edgeAgent")
check(set(kept.properties.desired["modules"]) == {"sensor"}, "deleting the last deployment leaves the modules in place")
check(configurations("edge-1") == {}, f"no configuration targets the device any more: {configurations('edge-1')}")
rm.delete_device("svc-dev")
check(status_of(lambda: rm.get_device("svc-dev")) == 404, "deleted device is 404")
done(configurations=[c.id for c in cm.get_configurations()])
