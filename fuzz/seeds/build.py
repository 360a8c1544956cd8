#!/usr/bin/env python3
"""Builds the seed corpora in fuzz/seeds/<target>/ from the crates' own test fixtures.

Run from anywhere: `python3 fuzz/seeds/build.py`. It rewrites every seed directory it knows,
so seeds follow the fixtures when those change. Seeds are named by a hash of their bytes, as
libFuzzer names corpus files.
"""

import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = Path(__file__).resolve().parent
CRATES = ROOT / "crates"
MAX_SEEDS = 120


def rust_strings(paths):
    """Double-quoted and r#"…"# string literals of Rust files, unescaped (simple escapes only)."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for raw in re.findall(r'r#"(.*?)"#', text, flags=re.S):
            out.append(raw)
        for lit in re.findall(r'(?<![r#\w])"((?:[^"\\\n]|\\.)*)"', text):
            try:
                out.append(json.loads('"' + lit + '"'))
            except json.JSONDecodeError:
                pass
    return out


def json_macros(paths):
    """The JSON objects inside `json!(...)` macros that are plain JSON."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for start in [m.end() for m in re.finditer(r"json!\(", text)]:
            depth, i = 1, start
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            try:
                value = json.loads(text[start : i - 1])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def manifests(kind="valid"):
    return sorted((CRATES / "model/tests/manifests" / kind).glob("*.json"))


def walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def write(target, seeds):
    directory = SEEDS / target
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    unique = []
    for seed in seeds:
        data = seed.encode("utf-8") if isinstance(seed, str) else bytes(seed)
        if data not in unique and len(data) <= 16 * 1024:
            unique.append(data)
    for data in unique[:MAX_SEEDS]:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{target}: {min(len(unique), MAX_SEEDS)} seeds")


# === MQTT packets, encoded by hand (MQTT 3.1.1 §2–3) ===

def remaining(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def packet(first, body):
    return bytes([first]) + remaining(len(body)) + body


def connect(client_id, username=None, password=None, clean=True, keep_alive=60, level=4):
    flags = (0x02 if clean else 0) | (0x80 if username else 0) | (0x40 if password else 0)
    body = s("MQTT") + bytes([level, flags]) + struct.pack(">H", keep_alive) + s(client_id)
    if username:
        body += s(username)
    if password:
        body += s(password)
    return packet(0x10, body)


def publish(topic, payload=b"", qos=0, pkid=1, dup=False):
    body = s(topic) + (struct.pack(">H", pkid) if qos else b"") + payload
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1), body)


def subscribe(pkid, *filters):
    return packet(0x82, struct.pack(">H", pkid) + b"".join(s(f) + bytes([q]) for f, q in filters))


def unsubscribe(pkid, *filters):
    return packet(0xA2, struct.pack(">H", pkid) + b"".join(s(f) for f in filters))


MQTT_SEEDS = [
    connect("dev1/mod1", "myhub.azure-devices.net/dev1/mod1/?api-version=2021-04-12", "SharedAccessSignature sr=x&sig=y&se=1"),
    connect("dev1", clean=False, keep_alive=0),
    connect("dev1", level=3),
    publish("devices/dev1/messages/events/%24.ct=application%2Fjson&a=1", b'{"t":31}', qos=1, pkid=7),
    publish("$iothub/twin/GET/?$rid=1"),
    publish("$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"a":1}', qos=1, pkid=65535, dup=True),
    subscribe(3, ("devices/dev1/messages/devicebound/#", 1), ("$iothub/methods/POST/#", 0)),
    unsubscribe(4, "$iothub/twin/res/#"),
    packet(0x40, struct.pack(">H", 7)),  # PUBACK
    packet(0x20, bytes([0, 0])),  # CONNACK
    packet(0x90, struct.pack(">H", 3) + bytes([1, 0x80])),  # SUBACK
    packet(0xB0, struct.pack(">H", 4)),  # UNSUBACK
    bytes([0xC0, 0]),  # PINGREQ
    bytes([0xD0, 0]),  # PINGRESP
    bytes([0xE0, 0]),  # DISCONNECT
    packet(0x50, struct.pack(">H", 9)),  # PUBREC
    packet(0x62, struct.pack(">H", 9)),  # PUBREL
    bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]),  # largest remaining length
    connect("dev1") + publish("devices/dev1/messages/events/", b"x", qos=1) + bytes([0xE0, 0]),
]


def main():
    routing_tests = sorted((CRATES / "routing/tests").glob("*.rs"))
    strings = rust_strings(routing_tests)
    routes = [t for t in strings if re.match(r"\s*(SELECT|FROM)\b", t, flags=re.I)]
    conditions = [t for t in strings if t not in routes and re.search(r"[=<>()]|\bAND\b|\$body", t)]
    for path in manifests():
        for value in walk(json.loads(path.read_text())):
            if isinstance(value, str) and value.lstrip().upper().startswith(("FROM", "SELECT")):
                routes.append(value)
    write("route_parse", routes[:70] + conditions[:50])

    write("manifest_validate", [p.read_bytes() for p in manifests("valid") + manifests("invalid")])
    write("manifest_mutate", [bytes([i, 1, 2, 3, 0x40 * i % 256, 7]) for i in range(5)])

    protocol = sorted((CRATES / "protocol/src").rglob("*.rs"))
    protocol_strings = rust_strings(protocol)
    key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="
    write("protocol_sas", [t.replace("{KEY}", key) for t in protocol_strings if "SharedAccessSignature" in t and "{" not in t]
          + ["SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=abc%3D&se=1795940188\x00" + "\x01" * 40])
    write("protocol_connection_string", [t.replace("{KEY}", key) for t in protocol_strings if t.startswith("HostName=") and "{}" not in t and "{host}" not in t])
    usernames = [t for t in protocol_strings if "api-version" in t and "{" not in t]
    write("protocol_identity", [f"{u.split('/')[1]}\x00{u}" if u.count("/") >= 2 else f"d\x00{u}" for u in usernames]
          + ["dev1/mod1\x00myhub.azure-devices.net/dev1/mod1/?api-version=2021-04-12&DeviceClientType=x%2F1&model-id=dtmi%3Aa%3B1"])
    write("protocol_topics", [t for t in protocol_strings if t.startswith(("devices/", "$iothub/", "?", "%24"))])
    write("protocol_twin", [bytes([i, 3, 7, 1, 2, 0, 5, 9, 4, 4, 6]) + b'{"a":{"b":1},"$version":3}' for i in range(6)])

    write("mqtt_packets", MQTT_SEEDS)
    write("mqtt_session", [bytes([2, 2, 2, 1, 0]) + bytes((i + j) % 256 for j in range(48)) for i in range(0, 240, 24)])

    hub = sorted((CRATES / "hub/src").rglob("*.rs"))
    hub_strings = rust_strings(hub)
    queries = [t for t in hub_strings if re.match(r"\s*select\b.*\bfrom\s+devices", t, flags=re.I) and "{" not in t]
    conditions = [t for t in hub_strings if re.search(r"\b(tags|properties|capabilities|deviceId)\.?\S*\s*(=|!=|<>|IN|NIN)", t) and "{" not in t]
    write("hub_query", queries + conditions + ["*", "", "NOT (a = 1 OR b IN ['x', 2.5e3]) AND is_defined(tags.[[x.y]])"])

    edge = {"modulesContent": json.loads(manifests()[-1].read_text())["modulesContent"]}
    edge["modulesContent"] = {k: v for k, v in edge["modulesContent"].items() if k.startswith("$")}
    rest = [
        bytes([0]) + json.dumps({"deviceId": "d1", "capabilities": {"iotEdge": True}}).encode(),
        bytes([0]) + json.dumps({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "AAAAAAAAAAAAAAAAAAAAAA==", "secondaryKey": ""}}}).encode(),
        bytes([0]) + json.dumps({"authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "AB"}}}).encode(),
        bytes([1]) + json.dumps({"moduleId": "m1", "managedBy": "iotEdge"}).encode(),
        bytes([2]) + json.dumps({"id": "dep1", "content": edge, "targetCondition": "tags.env = 'prod'", "priority": 10, "metrics": {"queries": {"q": "SELECT deviceId FROM devices WHERE tags.x = 1"}}}).encode(),
        bytes([2]) + json.dumps({"content": {"modulesContent": {"$edgeAgent": {"properties.desired.modules.m": {"type": "docker"}}}}, "targetCondition": "*", "priority": 20}).encode(),
        bytes([2]) + json.dumps({"content": {"deviceContent": {"properties.desired.a": 1}}, "targetCondition": "deviceId = 'd1'"}).encode(),
        bytes([3]) + json.dumps({"tags": {"env": "prod", "x": None}, "properties": {"desired": {"a": {"b": 1}, "$version": 4}}}).encode(),
        bytes([4]) + b'W/"MQ=="',
    ]
    write("hub_rest", rest + [bytes([k]) + json.dumps(v).encode() for k, v in ((3, j) for j in json_macros(hub)[:40])])

    options = []
    for path in manifests():
        for value in walk(json.loads(path.read_text())):
            if isinstance(value, dict) and isinstance(value.get("createOptions"), dict):
                options.append(value["createOptions"])
            elif isinstance(value, dict) and "createOptions" in value:
                try:
                    options.append(json.loads(value["createOptions"] + "".join(
                        value.get(f"createOptions{i:02}", "") for i in range(1, 8))))
                except json.JSONDecodeError:
                    pass
    options += json_macros(sorted((CRATES / "controller/src/translate").glob("*.rs")))
    write("createoptions_translate", [bytes([0]) + json.dumps(o).encode() for o in options])


if __name__ == "__main__":
    main()
