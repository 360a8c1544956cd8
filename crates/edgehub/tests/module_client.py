"""A real azure-iot-device 2.14.0 module, created from the edge environment (IOTEDGE_* variables
and the workload API), driven by the edge hub's integration tests.

Every action prints one JSON line on stdout, so the Rust test can wait for lines instead of
sleeping. Usage: module_client.py <command> [json-argument]

With MODULE_CLIENT_WEBSOCKETS=1 the module connects with MQTT over WebSocket (the SDK's
websockets=True: wss://<IOTEDGE_GATEWAYHOSTNAME>:443/$iothub/websocket) instead of MQTT on 8883.

  send '[{"output": "out1", "data": "...", "props": {...}, "json": true, "id": "m1"}, ...]'
      sends each message on its output (returns after each PUBACK), prints {"sent": n}
  receive '{"count": 3}'
      prints {"input", "data", "props", "message_id", "content_type"} per input message
  twin '{"reported": {...}, "desired_wait": true}'
      patches reported properties, prints the twin; optionally waits for a desired patch
  methods '{"count": 1}'
      answers direct methods with {"echo": payload}, prints {"method", "payload"} per call
"""

import json
import os
import sys
import threading

from azure.iot.device import IoTHubModuleClient, Message, MethodResponse


# The SDK runs handlers on a thread pool (4 workers): without the lock two lines can interleave.
_emit_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj)
    with _emit_lock:
        print(line, flush=True)


def connect():
    websockets = os.environ.get("MODULE_CLIENT_WEBSOCKETS") == "1"
    client = IoTHubModuleClient.create_from_edge_environment(keep_alive=30, websockets=websockets)
    client.connect()
    return client


def send(client, arg):
    for m in arg:
        data = m["data"] if isinstance(m["data"], str) else json.dumps(m["data"])
        msg = Message(data, message_id=m.get("id"))
        if m.get("json"):
            msg.content_type = "application/json"
            msg.content_encoding = "utf-8"
        for k, v in m.get("props", {}).items():
            msg.custom_properties[k] = v
        client.send_message_to_output(msg, m["output"])
    emit({"sent": len(arg)})


def receive(client, arg):
    done = threading.Event()
    got = []

    def on_message(msg):
        emit({
            "input": msg.input_name,
            "data": msg.data.decode("utf-8", "replace") if isinstance(msg.data, bytes) else msg.data,
            "props": msg.custom_properties,
            "message_id": msg.message_id,
            "content_type": msg.content_type,
        })
        # Counted after the line is out: handlers run concurrently, and the process must not
        # exit while another handler is still printing.
        with _emit_lock:
            got.append(1)
            if len(got) >= arg["count"]:
                done.set()

    client.on_message_received = on_message
    emit({"ready": True})
    if not done.wait(arg.get("timeout", 60)):
        emit({"timeout": True, "received": len(got)})
        sys.exit(1)


def twin(client, arg):
    desired = threading.Event()
    patches = []

    def on_patch(patch):
        patches.append(patch)
        emit({"desired_patch": patch})
        desired.set()

    client.on_twin_desired_properties_patch_received = on_patch
    if "reported" in arg:
        client.patch_twin_reported_properties(arg["reported"])
        emit({"patched": True})
    emit({"twin": client.get_twin()})
    if arg.get("desired_wait"):
        if not desired.wait(arg.get("timeout", 60)):
            emit({"timeout": True})
            sys.exit(1)


def methods(client, arg):
    done = threading.Event()
    calls = []

    def on_method(request):
        calls.append(1)
        emit({"method": request.name, "payload": request.payload})
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"echo": request.payload}))
        if len(calls) >= arg.get("count", 1):
            done.set()

    client.on_method_request_received = on_method
    emit({"ready": True})
    if not done.wait(arg.get("timeout", 60)):
        emit({"timeout": True})
        sys.exit(1)


def main():
    command = sys.argv[1]
    arg = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    client = connect()
    try:
        {"send": send, "receive": receive, "twin": twin, "methods": methods}[command](client, arg)
        # Let the last PUBACK/response flush before closing.
    finally:
        client.shutdown()


if __name__ == "__main__":
    main()
