"""Raw-client negative checks against the edge hub with paho-mqtt (1.6.1, the version
azure-iot-device pins). Prints one JSON object with what each check observed.

argv: host ca_file json{"good": {client_id, username, password}, "other_module": "filter",
                        "device": "edge1", "module": "sensor", "bad_password": "..."}
"""

import json
import socket
import ssl
import sys
import threading

import paho.mqtt.client as mqtt

host, ca_file, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
TIMEOUT = 30


class Probe:
    """A paho client that records CONNACK, SUBACK, PUBACK and disconnects."""

    def __init__(self, password):
        self.connack = None
        self.suback = None
        self.pubacks = set()
        self.disconnected = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.published = threading.Condition()
        c = mqtt.Client(client_id=cfg["client_id"], protocol=mqtt.MQTTv311, clean_session=True)
        c.username_pw_set(cfg["username"], password)
        c.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLSv1_2)
        c.on_connect = self.on_connect
        c.on_subscribe = self.on_subscribe
        c.on_publish = self.on_publish
        c.on_disconnect = self.on_disconnect
        self.client = c

    def on_connect(self, client, userdata, flags, rc):
        self.connack = rc
        self.connected.set()

    def on_disconnect(self, client, userdata, rc):
        self.disconnected.set()
        with self.published:
            self.published.notify_all()

    def on_subscribe(self, client, userdata, mid, granted):
        self.suback = list(granted)
        self.subscribed.set()

    def on_publish(self, client, userdata, mid):
        with self.published:
            self.pubacks.add(mid)
            self.published.notify_all()

    def start(self):
        self.client.connect(host, 8883, keepalive=30)
        self.client.loop_start()
        self.connected.wait(TIMEOUT)
        return self

    def wait_puback(self, mid):
        with self.published:
            return self.published.wait_for(lambda: mid in self.pubacks or self.disconnected.is_set(), TIMEOUT) and mid in self.pubacks

    def stop(self):
        try:
            self.client.disconnect()
        except (OSError, ssl.SSLError):
            pass  # the server already closed the connection
        self.client.loop_stop()


def remaining_length(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text):
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def raw_session():
    """A TLS socket that has sent CONNECT with the module's credentials and read CONNACK 0."""
    ctx = ssl.create_default_context(cafile=ca_file)
    sock = ctx.wrap_socket(socket.create_connection((host, 8883), timeout=TIMEOUT), server_hostname=host)
    body = utf8("MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
    body += utf8(cfg["client_id"]) + utf8(cfg["username"]) + utf8(cfg["password"])
    sock.sendall(bytes([0x10]) + remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if connack != bytes([0x20, 2, 0, 0]):
        raise SystemExit(f"raw CONNECT refused: {connack.hex()}")
    return sock


def publish_packet(topic, payload, packet_id):
    body = utf8(topic) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32]) + remaining_length(len(body)) + body


def send_and_watch(sock, packet):
    """Sends a packet; returns (PUBACK seen, connection closed by the server) within TIMEOUT."""
    acked = closed = False
    try:
        sock.sendall(packet)
        while True:
            data = sock.recv(4096)
            if not data:
                closed = True
                break
            acked = acked or data[0] == 0x40
    except (ConnectionError, ssl.SSLError):
        closed = True
    except socket.timeout:
        pass
    return acked, closed


result = {}
own = f"devices/{cfg['device']}/modules/{cfg['module']}"
other = f"devices/{cfg['device']}/modules/{cfg['other_module']}"

# 1. A wrong token is refused with CONNACK 4 (bad user name or password).
p = Probe(cfg["bad_password"]).start()
result["wrong_token_connack"] = p.connack
p.stop()

# 2. Subscribing to another module's inputs is refused with SUBACK 0x80; own inputs are granted.
p = Probe(cfg["password"]).start()
result["good_connack"] = p.connack
p.client.subscribe(f"{other}/inputs/#", qos=1)
p.subscribed.wait(TIMEOUT)
result["other_inputs_suback"] = p.suback
p.subscribed.clear()
p.client.subscribe(f"{own}/inputs/#", qos=1)
p.subscribed.wait(TIMEOUT)
result["own_inputs_suback"] = p.suback

# 3. A message of 250 000 bytes is accepted; one over 256 KiB closes the connection unacknowledged.
info = p.client.publish(f"{own}/messages/events/%24.on=big", b"x" * 250_000, qos=1)
result["large_accepted"] = p.wait_puback(info.mid)
p.stop()
# The oversize one goes over a raw TLS socket: paho 1.6.1 sometimes never notices a close that
# arrives while it is still writing a large packet, which would test paho rather than the broker.
raw = raw_session()
packet = publish_packet(f"{own}/messages/events/%24.on=big", b"x" * (256 * 1024), packet_id=7)
result["oversize_acked"], result["oversize_disconnected"] = send_and_watch(raw, packet)
raw.close()

# 4. Publishing as another module closes the connection unacknowledged.
p = Probe(cfg["password"]).start()
info = p.client.publish(f"{other}/messages/events/%24.on=out1", b"spoof", qos=1)
result["spoof_acked"] = p.wait_puback(info.mid)
result["spoof_disconnected"] = p.disconnected.wait(TIMEOUT)
p.stop()

# 5. Garbage after the TLS handshake: the connection is closed, nothing else happens.
ctx = ssl.create_default_context(cafile=ca_file)
raw = ctx.wrap_socket(socket.create_connection((host, 8883), timeout=TIMEOUT), server_hostname=host)
raw.sendall(b"\x10\xff\xff\xff\xff\x7f garbage that is no CONNECT")
try:
    result["garbage_reply"] = raw.recv(16).hex()
except (ConnectionError, ssl.SSLError, socket.timeout) as e:
    result["garbage_reply"] = type(e).__name__
raw.close()

# 6. The broker is unharmed: a fresh connection publishes and is acknowledged.
p = Probe(cfg["password"]).start()
result["after_connack"] = p.connack
info = p.client.publish(f"{own}/messages/events/%24.on=ok", b"fine", qos=1)
result["after_acked"] = p.wait_puback(info.mid)
p.stop()

print(json.dumps(result), flush=True)
