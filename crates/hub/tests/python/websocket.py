"""azure-iot-device over MQTT-over-WebSocket (port 443, /$iothub/websocket): telemetry and twin."""
import os

from azure.iot.device import IoTHubDeviceClient, Message

from hubtest import HUB_CA, check, device_cs, done

client = IoTHubDeviceClient.create_from_connection_string(
    device_cs(os.environ["DEVICE_ID"], os.environ["DEVICE_KEY"]),
    server_verification_cert=open(HUB_CA).read(),
    websockets=True,
)
client.connect()
m = Message("over websocket", message_id="ws-1")
m.custom_properties["via"] = "ws"
client.send_message(m)
client.patch_twin_reported_properties({"transport": "websocket"})
twin = client.get_twin()
check(twin["reported"]["transport"] == "websocket", f"twin {twin}")
client.shutdown()
done(reported_version=twin["reported"]["$version"])
