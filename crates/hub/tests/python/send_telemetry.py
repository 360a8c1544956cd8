"""Sends COUNT telemetry messages from one device with the device SDK."""
import os

from azure.iot.device import IoTHubDeviceClient, Message

from hubtest import HUB_CA, device_cs, done

client = IoTHubDeviceClient.create_from_connection_string(
    device_cs(os.environ["DEVICE_ID"], os.environ["DEVICE_KEY"]), server_verification_cert=open(HUB_CA).read()
)
client.connect()
count = int(os.environ.get("COUNT", "3"))
for i in range(count):
    m = Message(f'{{"n":{i}}}', message_id=f"m{i}", content_type="application/json", content_encoding="utf-8")
    m.custom_properties["i"] = str(i)
    client.send_message(m)
client.shutdown()
done(sent=count)
