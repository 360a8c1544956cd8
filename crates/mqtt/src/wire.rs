//! Packet encoding on the hot path. Inbound packets are decoded with rumqttc's v4 codec;
//! outbound PUBLISHes are written straight into the connection's write buffer so no owned
//! topic string or intermediate packet is built per message.

use bytes::{BufMut, BytesMut};
use rumqttc::mqttbytes::QoS;

/// Appends a PUBLISH packet to `buf`.
pub(crate) fn write_publish(
    buf: &mut BytesMut,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: u16,
    dup: bool,
) {
    let has_pkid = qos != QoS::AtMostOnce;
    let remaining = 2 + topic.len() + usize::from(has_pkid) * 2 + payload.len();
    buf.reserve(5 + remaining);
    buf.put_u8(0x30 | (u8::from(dup) << 3) | ((qos as u8) << 1));
    write_remaining_length(buf, remaining);
    // Topics longer than u16::MAX cannot be produced by our topic formatters; truncating the
    // length prefix would corrupt the stream, so the caller guarantees the bound.
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic.as_bytes());
    if has_pkid {
        buf.put_u16(pkid);
    }
    buf.put_slice(payload);
}

/// Appends a 4-byte ack packet (PUBACK 0x40, UNSUBACK 0xB0).
pub(crate) fn write_ack(buf: &mut BytesMut, first_byte: u8, pkid: u16) {
    buf.put_slice(&[first_byte, 0x02]);
    buf.put_u16(pkid);
}

fn write_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rumqttc::mqttbytes::v4::Packet;

    #[test]
    fn written_publishes_decode_with_rumqttc() {
        for (qos, len) in [
            (QoS::AtMostOnce, 0usize),
            (QoS::AtLeastOnce, 100),
            (QoS::AtLeastOnce, 20_000),
            (QoS::AtMostOnce, 3_000_000),
        ] {
            let payload = vec![7u8; len];
            let mut buf = BytesMut::new();
            write_publish(
                &mut buf,
                "devices/d/messages/devicebound/",
                &payload,
                qos,
                42,
                true,
            );
            match Packet::read(&mut buf, 4 * 1024 * 1024).unwrap() {
                Packet::Publish(p) => {
                    assert_eq!(p.topic, "devices/d/messages/devicebound/");
                    assert_eq!(p.payload.len(), len);
                    assert_eq!(p.qos, qos);
                    assert_eq!(p.pkid, if qos == QoS::AtMostOnce { 0 } else { 42 });
                    assert!(p.dup);
                }
                other => panic!("{other:?}"),
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn acks_decode_with_rumqttc() {
        let mut buf = BytesMut::new();
        write_ack(&mut buf, 0x40, 7);
        write_ack(&mut buf, 0xB0, 8);
        assert_eq!(
            Packet::read(&mut buf, 10).unwrap(),
            Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(7))
        );
        assert_eq!(
            Packet::read(&mut buf, 10).unwrap(),
            Packet::UnsubAck(rumqttc::mqttbytes::v4::UnsubAck::new(8))
        );
    }
}
