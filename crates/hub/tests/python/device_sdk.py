"""azure-iot-device against the hub: telemetry with properties, a desired patch, reported
properties with versions, a direct method invoked through REST, and C2D with completion."""
import os

from azure.iot.device import IoTHubDeviceClient, Message, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from hubtest import Box, HUB_CA, SERVICE_CS, check, device_cs, done, rest

DEV = os.environ["DEVICE_ID"]
KEY = os.environ["DEVICE_KEY"]

client = IoTHubDeviceClient.create_from_connection_string(
    device_cs(DEV, KEY), server_verification_cert=open(HUB_CA).read()
)
patches, c2d = Box(), Box()
client.on_twin_desired_properties_patch_received = patches.put


def on_method(req):
    client.send_method_response(MethodResponse.create_from_method_request(req, 201, {"echo": req.payload, "name": req.name}))


client.on_method_request_received = on_method
client.on_message_received = c2d.put
client.connect()

# Telemetry with system and application properties.
msg = Message('{"temp":21.5}', message_id="mid-1", content_type="application/json", content_encoding="utf-8")
msg.correlation_id = "corr-1"
msg.custom_properties["alert"] = "yes x"
msg.custom_properties["level"] = "3"
client.send_message(msg)

# A desired patch made with the service SDK reaches the device, with its $version.
rm = IoTHubRegistryManager.from_connection_string(SERVICE_CS)
twin = rm.get_twin(DEV)
rm.update_twin(DEV, Twin(properties=TwinProperties(desired={"telemetryInterval": 5})), twin.etag)
got = patches.wait(lambda ps: any(p.get("telemetryInterval") == 5 for p in ps), what="the desired patch")
patch = next(p for p in got if p.get("telemetryInterval") == 5)
check(patch["$version"] == twin.properties.desired["$version"] + 1, f"desired $version {patch['$version']} after {twin.properties.desired['$version']}")

# Reported properties: the reported $version goes up by one per patch.
before = client.get_twin()
client.patch_twin_reported_properties({"battery": 55, "fw": {"v": "1.0"}})
after = client.get_twin()
check(after["reported"]["$version"] == before["reported"]["$version"] + 1, f"reported versions {before} -> {after}")
check(after["reported"]["battery"] == 55 and after["reported"]["fw"] == {"v": "1.0"}, f"reported {after}")
check(after["desired"]["telemetryInterval"] == 5, f"desired {after}")
client.patch_twin_reported_properties({"battery": None})
third = client.get_twin()
check("battery" not in third["reported"], f"null deletes: {third}")
check(third["reported"]["$version"] == after["reported"]["$version"] + 1, "second reported patch")
service_view = rm.get_twin(DEV)
check(service_view.properties.reported["fw"] == {"v": "1.0"}, f"service sees reported: {service_view.properties.reported}")

# A direct method invoked through REST is answered by the device.
resp = rm.invoke_device_method(DEV, CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=30))
check(resp.status == 201, f"method status {resp.status}")
check(resp.payload == {"echo": {"delay": 1}, "name": "reboot"}, f"method payload {resp.payload}")

# C2D through the REST extension, completed by the device's PUBACK.
r = rest(
    "POST",
    f"/_ext/devices/{DEV}/messages/devicebound?waitSecs=30",
    raw=b"hello device",
    headers={"iothub-messageid": "c2d-1", "iothub-correlationid": "cc-1", "iothub-app-color": "red"},
)
check(r.status_code == 200, f"C2D send: {r.status_code} {r.text}")
check(r.json()["state"] == "completed", f"C2D state {r.json()}")
received = c2d.wait(what="the C2D message")[0]
check(received.data == b"hello device", f"C2D body {received.data!r}")
check(received.message_id == "c2d-1" and received.correlation_id == "cc-1", f"C2D ids {received.message_id} {received.correlation_id}")
check(received.custom_properties.get("color") == "red", f"C2D properties {received.custom_properties}")

client.shutdown()
done(
    desired_version=patch["$version"],
    reported_before=before["reported"]["$version"],
    reported_after=after["reported"]["$version"],
    method_status=resp.status,
)
