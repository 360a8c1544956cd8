//! The broker's inbound packet codec (rumqttc's MQTT 3.1.1 `Packet::read`, which
//! `ironedge-mqtt` runs on every byte a client sends), like Azure's mqtt3-fuzz: decode any
//! bytes as a stream of packets with the broker's 256 KiB limit, re-encode each packet, decode
//! it again and compare *packets*, not bytes (a remaining length has more than one valid
//! encoding).
//!
//! Checks: nothing panics; a decoded packet consumed bytes; "need more bytes" asks for more than
//! there are; every decoded packet encodes, and decodes back to an equal packet that used all of
//! its encoding; the packet's computed size (used for the outgoing size limit) is the length of its
//! encoding.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::Error;
use rumqttc::mqttbytes::v4::{Connect, Packet};

/// The broker's default `max_packet_size` (`MqttConfig::default`).
const MAX: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut stream = BytesMut::from(data);
    loop {
        let before = stream.len();
        match Packet::read(&mut stream, MAX) {
            Ok(packet) => {
                assert!(stream.len() < before, "{packet:?} consumed nothing");
                round_trip(&packet);
            }
            Err(Error::InsufficientBytes(n)) => {
                assert!(n > 0, "asked for zero more bytes");
                break;
            }
            Err(_) => break,
        }
    }
});

fn round_trip(packet: &Packet) {
    let mut encoded = BytesMut::new();
    if let Err(e) = packet.write(&mut encoded, MAX) {
        panic!("{packet:?} was decoded but does not encode: {e:?}");
    }
    let len = encoded.len();
    let again = Packet::read(&mut encoded, MAX)
        .unwrap_or_else(|e| panic!("{packet:?} encoded as {len} bytes does not decode: {e:?}"));
    assert!(
        encoded.is_empty(),
        "{packet:?}: {} bytes left after decoding",
        encoded.len()
    );
    assert_eq!(normalise(again), normalise(packet.clone()));
    assert_eq!(packet.size(), len, "computed size of {packet:?}");
}

/// Values the broker cannot tell apart, written one way.
fn normalise(packet: Packet) -> Packet {
    match packet {
        Packet::Connect(c) => Packet::Connect(normalise_connect(c)),
        other => other,
    }
}

fn normalise_connect(c: Connect) -> Connect {
    c
}
