"""azure-iot-device as a *module* (what the edge agent and edge hub do upstream): desired patches
from set-modules, reported properties, output telemetry, and a module method through REST."""
import json
import os

from azure.iot.device import IoTHubModuleClient, Message, MethodResponse
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, ConfigurationContent

from hubtest import Box, HUB_CA, HUB_IP, HUB_NAME, SERVICE_CS, check, done

DEV, MOD, KEY = os.environ["DEVICE_ID"], os.environ["MODULE_ID"], os.environ["MODULE_KEY"]
cs = f"HostName={HUB_NAME};DeviceId={DEV};ModuleId={MOD};SharedAccessKey={KEY};GatewayHostName={HUB_IP}"
client = IoTHubModuleClient.create_from_connection_string(cs, server_verification_cert=open(HUB_CA).read())
patches = Box()
client.on_twin_desired_properties_patch_received = patches.put
client.on_method_request_received = lambda r: client.send_method_response(
    MethodResponse.create_from_method_request(r, 200, {"module": MOD, "got": r.payload}))
client.connect()

manifest = json.load(open(os.environ["MANIFEST"]))["modulesContent"]
manifest[MOD] = {"properties.desired": {"interval": 7}}
IoTHubConfigurationManager.from_connection_string(SERVICE_CS).apply_configuration_on_edge_device(
    DEV, ConfigurationContent(modules_content=manifest))
patch = patches.wait(lambda ps: any(p.get("interval") == 7 for p in ps), what="set-modules desired patch")[-1]
twin = client.get_twin()
check(twin["desired"]["interval"] == 7 and twin["desired"]["$version"] == patch["$version"], f"module twin {twin}")

client.patch_twin_reported_properties({"lastDesiredVersion": patch["$version"], "lastDesiredStatus": {"code": 200}})
out = Message('{"x":1}', message_id="out-1", content_type="application/json", content_encoding="utf-8")
client.send_message_to_output(out, "output1")

rm = IoTHubRegistryManager.from_connection_string(SERVICE_CS)
resp = rm.invoke_device_module_method(DEV, MOD, CloudToDeviceMethod(method_name="ping", payload=[1, 2], response_timeout_in_seconds=20))
check(resp.status == 200 and resp.payload == {"module": MOD, "got": [1, 2]}, f"module method {resp.status} {resp.payload}")
client.shutdown()
done(desired_version=patch["$version"])
