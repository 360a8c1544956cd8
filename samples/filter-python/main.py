"""Filter module with the official Azure IoT SDK (azure-iot-device 2.x), the Python twin of
samples/filter: readings arriving on input `input1` whose `machine.temperature` is above
`TemperatureThreshold` are sent on output `output1` with the property `MessageType: Alert`.

The threshold comes from the environment variable `TemperatureThreshold` (default 25) and is
overridden by the desired property of the same name; the threshold in use is reported. The module
uses `create_from_edge_environment()`, so it runs unchanged under IoT Edge and under ironedge.
"""

import json
import logging
import math
import os
import signal
import sys
import threading

from azure.iot.device import IoTHubModuleClient, Message, MethodResponse

INPUT = "input1"
OUTPUT = "output1"
THRESHOLD_KEY = "TemperatureThreshold"
DEFAULT_THRESHOLD = 25.0

log = logging.getLogger("filter")


def parse_threshold(value, source):
    """The threshold as a finite float, or ValueError naming where it came from."""
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source} {THRESHOLD_KEY}={value!r} is invalid: expected a number")
    if not math.isfinite(threshold):
        raise ValueError(f"{source} {THRESHOLD_KEY}={value!r} is invalid: expected a number")
    return threshold


def decide(message, threshold):
    """An alert Message to forward, or None to drop `message` (with the reason logged)."""
    try:
        body = json.loads(message.data)
        temperature = body["machine"]["temperature"]
    except (ValueError, TypeError, KeyError):
        log.warning("ignoring a message that is not a reading")
        return None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        log.warning("ignoring a reading without a number at machine.temperature")
        return None
    if temperature <= threshold:
        return None
    alert = Message(message.data, message_id=message.message_id,
                    content_encoding=message.content_encoding or "utf-8",
                    content_type=message.content_type or "application/json")
    for key, value in (message.custom_properties or {}).items():
        # The edge hub stamps the sender itself; $.cdid/$.cmid describe the input's sender.
        if not key.startswith("$."):
            alert.custom_properties[key] = value
    alert.custom_properties["MessageType"] = "Alert"
    return alert


class Filter:
    def __init__(self, client, threshold):
        self.client = client
        self.threshold = threshold
        self.forwarded = 0
        self.lock = threading.Lock()

    def apply_desired(self, desired):
        if desired.get(THRESHOLD_KEY) is None:
            return
        try:
            threshold = parse_threshold(desired[THRESHOLD_KEY], "desired property")
        except ValueError as e:
            log.warning("desired threshold ignored: %s", e)
            return
        with self.lock:
            if threshold != self.threshold:
                log.info("threshold changed from %s to %s", self.threshold, threshold)
                self.threshold = threshold
        self.report()

    def report(self):
        self.client.patch_twin_reported_properties({THRESHOLD_KEY: self.threshold})

    def on_message(self, message):
        if message.input_name != INPUT:
            log.warning("ignoring a message on unknown input %s", message.input_name)
            return
        with self.lock:
            threshold = self.threshold
        alert = decide(message, threshold)
        if alert is None:
            return
        self.client.send_message_to_output(alert, OUTPUT)
        self.forwarded += 1
        log.info("alert forwarded (%d)", self.forwarded)

    def on_method(self, request):
        payload = {"message": f"unknown method {request.name!r}"}
        self.client.send_method_response(MethodResponse.create_from_method_request(request, 404, payload))


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("paho").setLevel(logging.WARNING)
    try:
        threshold = parse_threshold(os.environ.get(THRESHOLD_KEY, DEFAULT_THRESHOLD), "environment")
    except ValueError as e:
        log.error("%s", e)
        return 1
    client = IoTHubModuleClient.create_from_edge_environment()
    module = Filter(client, threshold)
    client.on_message_received = module.on_message
    client.on_twin_desired_properties_patch_received = module.apply_desired
    client.on_method_request_received = module.on_method
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.connect()
    module.apply_desired(client.get_twin().get("desired", {}))
    module.report()
    log.info("python filter running with threshold %s", module.threshold)
    stop.wait()
    log.info("stopping after %d alerts", module.forwarded)
    client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
