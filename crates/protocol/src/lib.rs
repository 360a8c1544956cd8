//! IoT Hub wire contracts: MQTT topics, property bags, SAS tokens, twins, connection strings.
