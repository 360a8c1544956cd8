"""Shared helpers of the hub's SDK test scripts: environment, SAS tokens, REST calls, waits."""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import urllib.parse

import requests

HUB_IP = os.environ["HUB_IP"]
HUB_NAME = os.environ["HUB_NAME"]
HUB_CA = os.environ["HUB_CA"]
SERVICE_CS = os.environ["SERVICE_CS"]
REST_URL = os.environ["REST_URL"]
OWNER_KEY = os.environ["OWNER_KEY"]


def sas(uri, key, skn=None, ttl=3600, expiry=None):
    """A SAS token exactly as the reference one-liner builds it (sr signed as sent)."""
    sr = urllib.parse.quote(uri, safe="")
    se = str(expiry if expiry is not None else int(time.time()) + ttl)
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    tok = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return tok + (f"&skn={skn}" if skn else "")


def service_token():
    return sas(f"{HUB_IP}:8443", OWNER_KEY, "iothubowner")


def rest(method, path, body=None, headers=None, raw=None, token=None):
    """Calls the hub's REST API with the owner policy; returns the requests.Response."""
    h = {"Authorization": token or service_token()}
    h.update(headers or {})
    sep = "&" if "?" in path else "?"
    url = f"{REST_URL}{path}{sep}api-version=2021-04-12"
    return requests.request(method, url, json=body, data=raw, headers=h, verify=HUB_CA, timeout=60)


def new_key():
    return base64.b64encode(os.urandom(32)).decode()


def device_cs(device, key):
    return f"HostName={HUB_NAME};DeviceId={device};SharedAccessKey={key};GatewayHostName={HUB_IP}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Box:
    """A value set by a callback thread, waited for with a timeout."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def put(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, pred=lambda items: items, timeout=30, what="an event"):
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self.items), timeout=timeout)
        check(ok, f"timed out after {timeout}s waiting for {what}; got {self.items!r}")
        return self.items


def done(**result):
    """Prints the script's JSON result (last stdout line)."""
    print(json.dumps(result), flush=True)
    sys.exit(0)
