//! Between MQTT property bags (wire keys `$.mid`, `$.on`, …) and the edge hub's message (edge
//! names `messageId`, `outputName`, …), in both directions.
//!
//! Ingestion takes the sender's identity from the authenticated connection, never from the topic
//! or the bag: a `$.cdid`/`$.cmid` sent by a client is dropped.

use bytes::Bytes;
use ironedge_protocol::{Identity, PropertyBag, encode_component};

use crate::message::{EdgeMessage, MAX_MESSAGE_SIZE, sysprop};

/// Wire key ↔ edge name for the system properties clients may set (reference §3.3 table).
const CLIENT_SYSTEM_PROPERTIES: [(&str, &str); 14] = [
    ("$.mid", "messageId"),
    ("$.cid", "cid"),
    ("$.uid", "userId"),
    ("$.to", "to"),
    ("$.ct", "contentType"),
    ("$.ce", "contentEncoding"),
    ("$.exp", "absolute-expiry-time"),
    ("$.on", "outputName"),
    ("$.schema", "messageSchema"),
    ("$.ctime", "creationTime"),
    ("$.ifid", "iothub-interface-id"),
    ("$.sub", "dt-subject"),
    ("iothub-operation", "operation"),
    ("iothub-ack", "ack"),
];

/// Wire keys the hub sets itself and never takes from a client.
const HUB_ONLY_WIRE_KEYS: [&str; 2] = ["$.cdid", "$.cmid"];

/// Edge name → wire key, for outbound topics.
fn wire_key(edge_name: &str) -> Option<&'static str> {
    match edge_name {
        sysprop::CONNECTION_DEVICE_ID => Some("$.cdid"),
        sysprop::CONNECTION_MODULE_ID => Some("$.cmid"),
        // The output name is an inbound-only wire key; inputs carry the input in the topic.
        sysprop::OUTPUT_NAME => None,
        _ => CLIENT_SYSTEM_PROPERTIES
            .iter()
            .find(|(_, e)| *e == edge_name)
            .map(|(w, _)| *w),
    }
}

/// Where a message came from, as the ingestion step needs it.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The authenticated sender.
    pub identity: &'a Identity,
    /// The edge device this hub serves (decides `internal` vs `downstream`).
    pub edge_device_id: &'a str,
    /// Model id given at CONNECT time, if any.
    pub model_id: Option<&'a str>,
}

/// A message refused at ingestion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Larger than 256 KiB as IoT Edge counts it.
    #[error(
        "message of {size} bytes exceeds the {max}-byte limit (body plus property names and values)"
    )]
    TooLarge {
        /// Size as measured.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Builds the edge message for a telemetry PUBLISH and adds the hub's system properties.
pub fn ingest(
    origin: &Origin<'_>,
    property_bag: &str,
    body: Bytes,
    edge_message_id: String,
    enqueued_time: String,
) -> Result<EdgeMessage, IngestError> {
    let bag = PropertyBag::parse(property_bag).0;
    let mut system = Vec::with_capacity(8);
    let mut properties = Vec::with_capacity(bag.len());
    for (key, value) in bag {
        if HUB_ONLY_WIRE_KEYS.contains(&key.as_str()) {
            continue;
        }
        match CLIENT_SYSTEM_PROPERTIES.iter().find(|(w, _)| *w == key) {
            // Only modules have outputs; a leaf device's `$.on` is meaningless.
            Some((_, edge))
                if *edge == sysprop::OUTPUT_NAME && origin.identity.module_id.is_none() => {}
            Some((_, edge)) => set(&mut system, edge, value),
            None => properties.push((key, Some(value))),
        }
    }
    set(
        &mut system,
        sysprop::CONNECTION_DEVICE_ID,
        origin.identity.device_id.clone(),
    );
    if let Some(m) = &origin.identity.module_id {
        set(&mut system, sysprop::CONNECTION_MODULE_ID, m.clone());
    }
    let interface = if origin.identity.device_id == origin.edge_device_id {
        "internal"
    } else {
        "downstream"
    };
    set(&mut system, sysprop::ORIGIN_INTERFACE, interface.to_owned());
    set(&mut system, sysprop::EDGE_MESSAGE_ID, edge_message_id);
    set(&mut system, sysprop::ENQUEUED_TIME, enqueued_time);
    if let Some(model) = origin.model_id {
        set(&mut system, sysprop::MODEL_ID, model.to_owned());
    }
    let msg = EdgeMessage::from_parts(body, properties, system);
    let size = msg.size();
    if size > MAX_MESSAGE_SIZE {
        return Err(IngestError::TooLarge {
            size,
            max: MAX_MESSAGE_SIZE,
        });
    }
    Ok(msg)
}

/// Sets or replaces a system property (names compared case-insensitively, as on the message).
fn set(system: &mut Vec<(String, String)>, name: &str, value: String) {
    match system
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => system.push((name.to_owned(), value)),
    }
}

/// The property bag for delivering `msg` to a module input or upstream: mapped system properties
/// (with `$.cdid`/`$.cmid` of the original sender) followed by the application properties.
pub fn outbound_bag(msg: &EdgeMessage) -> PropertyBag {
    let mut bag = PropertyBag(Vec::with_capacity(
        msg.system_properties.len() + msg.properties.len(),
    ));
    for (name, value) in &msg.system_properties {
        if let Some(key) = wire_key(name) {
            bag.push(key, value.clone());
        }
    }
    for (k, v) in &msg.properties {
        bag.push(k.clone(), v.clone().unwrap_or_default());
    }
    bag
}

/// Writes `k=v` pairs percent-encoded, `&`-separated, straight into a topic.
struct BagWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> BagWriter<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    fn pair(&mut self, key: &str, value: &str) {
        if !self.first {
            self.out.push('&');
        }
        self.first = false;
        self.out.push_str(&encode_component(key));
        self.out.push('=');
        self.out.push_str(&encode_component(value));
    }

    fn application(&mut self, msg: &EdgeMessage) {
        for (k, v) in &msg.properties {
            self.pair(k, v.as_deref().unwrap_or_default());
        }
    }
}

/// The topic that delivers `msg` to `input` of module `module` on device `device`. Always ends
/// the input name with `/`: Node's matcher needs it.
pub fn input_topic(device: &str, module: &str, input: &str, msg: &EdgeMessage) -> String {
    let mut topic = String::with_capacity(64 + device.len() + module.len() + input.len() + 160);
    write_input_topic(&mut topic, device, module, input, msg);
    topic
}

/// As [`input_topic`], appending to `topic`.
pub fn write_input_topic(
    topic: &mut String,
    device: &str,
    module: &str,
    input: &str,
    msg: &EdgeMessage,
) {
    for part in [
        "devices/",
        device,
        "/modules/",
        module,
        "/inputs/",
        input,
        "/",
    ] {
        topic.push_str(part);
    }
    let mut bag = BagWriter::new(topic);
    for (name, value) in &msg.system_properties {
        if let Some(key) = wire_key(name) {
            bag.pair(key, value);
        }
    }
    bag.application(msg);
}

/// The topic that sends `msg` upstream on behalf of its original sender.
pub fn upstream_topic(msg: &EdgeMessage) -> Option<String> {
    let device = msg.system(sysprop::CONNECTION_DEVICE_ID)?;
    let module = msg.system(sysprop::CONNECTION_MODULE_ID);
    let mut topic = String::with_capacity(64 + device.len() + 200);
    topic.push_str("devices/");
    topic.push_str(device);
    if let Some(m) = module {
        topic.push_str("/modules/");
        topic.push_str(m);
    }
    topic.push_str("/messages/events/");
    let mut bag = BagWriter::new(&mut topic);
    for (name, value) in &msg.system_properties {
        // Upstream the cloud sets the connection ids from the connection itself; the output name
        // goes back on the wire as `$.on` so cloud routes see it.
        let key = match name.as_str() {
            sysprop::OUTPUT_NAME => Some("$.on"),
            sysprop::CONNECTION_DEVICE_ID | sysprop::CONNECTION_MODULE_ID => None,
            other => wire_key(other),
        };
        if let Some(key) = key {
            bag.pair(key, value);
        }
    }
    bag.application(msg);
    Some(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironedge_routing::RoutableMessage;

    fn origin(identity: &Identity) -> Origin<'_> {
        Origin {
            identity,
            edge_device_id: "edge",
            model_id: None,
        }
    }

    #[test]
    fn ingestion_maps_wire_keys_and_stamps_the_authenticated_sender() {
        let who = Identity::module("edge", "sensor");
        let bag = "%24.on=out1&%24.mid=mid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=yes%20x&%24.cdid=evil&%24.cmid=evil";
        let m = ingest(
            &origin(&who),
            bag,
            Bytes::from_static(b"{}"),
            "e1".into(),
            "t".into(),
        )
        .unwrap();
        assert_eq!(m.system("messageId"), Some("mid-1"));
        assert_eq!(m.system("contentType"), Some("application/json"));
        assert_eq!(m.system("outputName"), Some("out1"));
        assert_eq!(m.system("connectionDeviceId"), Some("edge"));
        assert_eq!(m.system("connectionModuleId"), Some("sensor"));
        assert_eq!(m.system("edgeHubOriginInterface"), Some("internal"));
        assert_eq!(m.system("edgeMessageId"), Some("e1"));
        assert_eq!(
            m.properties,
            vec![("alert".to_owned(), Some("yes x".to_owned()))]
        );
        assert_eq!(m.source(), "/messages/modules/sensor/outputs/out1");
    }

    #[test]
    fn leaf_telemetry_is_downstream_and_has_no_output() {
        let who = Identity::device("leaf");
        let m = ingest(
            &origin(&who),
            "%24.on=x",
            Bytes::new(),
            "e".into(),
            "t".into(),
        )
        .unwrap();
        assert_eq!(m.system("edgeHubOriginInterface"), Some("downstream"));
        assert_eq!(m.system("outputName"), None);
        assert_eq!(m.source(), "/messages");
    }

    #[test]
    fn a_message_over_256_kib_after_enrichment_is_refused() {
        let who = Identity::module("edge", "sensor");
        let body = Bytes::from(vec![b'x'; MAX_MESSAGE_SIZE]);
        let err = ingest(&origin(&who), "", body, "e".into(), "t".into()).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
        let small = Bytes::from(vec![b'x'; MAX_MESSAGE_SIZE - 200]);
        assert!(ingest(&origin(&who), "", small, "e".into(), "t".into()).is_ok());
    }

    #[test]
    fn input_topics_carry_the_original_sender_and_end_the_input_with_a_slash() {
        let who = Identity::module("edge", "sensor");
        let m = ingest(
            &origin(&who),
            "%24.mid=m1&prop1=v1",
            Bytes::new(),
            "e".into(),
            "t".into(),
        )
        .unwrap();
        let topic = input_topic("edge", "filter", "input1", &m);
        assert!(
            topic.starts_with("devices/edge/modules/filter/inputs/input1/"),
            "{topic}"
        );
        let bag = PropertyBag::parse(topic.rsplit('/').next().unwrap());
        assert_eq!(bag.get("$.mid"), Some("m1"));
        assert_eq!(bag.get("$.cdid"), Some("edge"));
        assert_eq!(bag.get("$.cmid"), Some("sensor"));
        assert_eq!(bag.get("prop1"), Some("v1"));
        assert_eq!(bag.get("$.on"), None);
    }

    #[test]
    fn upstream_topics_keep_the_sender_identity_and_output_name() {
        let who = Identity::module("edge", "sensor");
        let m = ingest(
            &origin(&who),
            "%24.on=out1&a=b",
            Bytes::new(),
            "e".into(),
            "t".into(),
        )
        .unwrap();
        let topic = upstream_topic(&m).unwrap();
        assert!(
            topic.starts_with("devices/edge/modules/sensor/messages/events/"),
            "{topic}"
        );
        let bag = PropertyBag::parse(topic.rsplit('/').next().unwrap());
        assert_eq!(bag.get("$.on"), Some("out1"));
        assert_eq!(bag.get("a"), Some("b"));
        assert_eq!(bag.get("$.cdid"), None);
    }
}
