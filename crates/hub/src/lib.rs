//! Cloud hub: IoT-Hub-compatible registry, twins, deployments, telemetry, MQTT and REST heads.
