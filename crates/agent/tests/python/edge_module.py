"""An unmodified Azure IoT SDK module: create_from_edge_environment() reads the IOTEDGE_*
variables the agent injects, fetches the trust bundle and signs its SAS token through the
workload socket (the sidecar), then connects to the edge hub and sends one message."""
import json
import sys

from azure.iot.device import IoTHubModuleClient, Message

# The SDK always dials port 8883 of IOTEDGE_GATEWAYHOSTNAME; the test's edge hub listens there.
client = IoTHubModuleClient.create_from_edge_environment(keep_alive=30, connection_retry=False)
result = {"connected": False, "sent": False}
try:
    client.connect()
    result["connected"] = True
    client.send_message_to_output(Message('{"temperature": 21.5}', content_type="application/json",
                                          content_encoding="utf-8"), "out1")
    result["sent"] = True
finally:
    client.shutdown()
print(json.dumps(result))
sys.stdout.flush()
