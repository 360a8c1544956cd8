#!/usr/bin/env bash
# Installs what the edge hub's integration tests and load tool need, from Debian and PyPI only:
# mosquitto and its clients, and a Python venv with azure-iot-device 2.14.0 (which brings
# paho-mqtt 1.6.1). Idempotent; prints the venv's python on stdout.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

venv="${IRONEDGE_EDGEHUB_VENV:-$HOME/.cache/ironedge/venv-edgehub}"
if ! "$venv/bin/python" -c 'import azure.iot.device, paho.mqtt' >/dev/null 2>&1; then
  echo "creating $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check 'azure-iot-device==2.14.0' >&2
fi
echo "$venv/bin/python"
