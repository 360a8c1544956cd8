//! Edge hub: MQTT broker for modules, route engine, store-and-forward, upstream link.
