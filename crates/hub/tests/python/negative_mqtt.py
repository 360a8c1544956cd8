"""Refused MQTT clients (paho, raw): wrong key, expired token, a token for another device, a
malformed token, publishing on another device's topic, subscribing to another device's C2D."""
import os
import ssl
import time

import paho.mqtt.client as mqtt

from hubtest import Box, HUB_CA, HUB_IP, HUB_NAME, check, done, new_key, sas

DEV_A, KEY_A = os.environ["DEVICE_A"], os.environ["KEY_A"]
DEV_B = os.environ["DEVICE_B"]


def client(device, password):
    c = mqtt.Client(client_id=device, protocol=mqtt.MQTTv311, clean_session=False)
    c.username_pw_set(f"{HUB_NAME}/{device}/?api-version=2021-04-12", password=password)
    c.tls_set(ca_certs=HUB_CA, tls_version=ssl.PROTOCOL_TLSv1_2)
    events = Box()
    c.on_connect = lambda cl, ud, flags, rc: events.put(("connack", rc))
    c.on_disconnect = lambda cl, ud, rc: events.put(("disconnect", rc))
    c.on_subscribe = lambda cl, ud, mid, granted: events.put(("suback", list(granted)))
    c.on_publish = lambda cl, ud, mid: events.put(("puback", mid))
    c.connect(HUB_IP, 8883, keepalive=30)
    c.loop_start()
    return c, events


def connack(device, password):
    c, events = client(device, password)
    items = events.wait(lambda e: any(k == "connack" for k, _ in e), what=f"CONNACK for {device}")
    c.loop_stop()
    c.disconnect()
    return next(rc for k, rc in items if k == "connack")


codes = {
    "wrong_key": connack(DEV_A, sas(f"{HUB_NAME}/devices/{DEV_A}", new_key())),
    "expired": connack(DEV_A, sas(f"{HUB_NAME}/devices/{DEV_A}", KEY_A, expiry=int(time.time()) - 3600)),
    "other_device": connack(DEV_B, sas(f"{HUB_NAME}/devices/{DEV_A}", KEY_A)),
    "malformed": connack(DEV_A, "not a token"),
    "unknown_device": connack("ghost", sas(f"{HUB_NAME}/devices/ghost", KEY_A)),
}
check(codes == {"wrong_key": 5, "expired": 5, "other_device": 5, "malformed": 4, "unknown_device": 5}, f"CONNACK codes {codes}")

# A connected device may not subscribe to another device's C2D...
c, events = client(DEV_A, sas(f"{HUB_NAME}/devices/{DEV_A}", KEY_A))
events.wait(lambda e: ("connack", 0) in e, what="a good CONNACK")
c.subscribe(f"devices/{DEV_B}/messages/devicebound/#", qos=1)
suback = next(v for k, v in events.wait(lambda e: any(k == "suback" for k, _ in e), what="SUBACK") if k == "suback")
check(suback == [128], f"SUBACK for another device's C2D: {suback}")
# ...and publishing on its telemetry topic closes the connection without a PUBACK.
c.publish(f"devices/{DEV_B}/messages/events/", b"spoofed", qos=1)
items = events.wait(lambda e: any(k == "disconnect" for k, _ in e), what="the hub closing the connection")
check(not any(k == "puback" for k, _ in items), f"no PUBACK for a spoofed publish: {items}")
c.loop_stop()
done(codes=codes, suback=suback)
