//! MQTT 3.1.1 packets written by hand, for attacks and fuzzing with no client library between
//! the test and the broker (a library would refuse to send most of them).

/// Appends MQTT's variable-length "remaining length" encoding of `len`.
fn push_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            return;
        }
    }
}

/// Appends a two-byte-length-prefixed string.
fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet of `kind_flags` (first byte) around `body`.
fn packet(kind_flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind_flags];
    push_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// CONNECT (clean session, keep-alive 30 s), with a QoS 1 will `(topic, message)` if given.
pub fn connect(client_id: &[u8], will: Option<(&[u8], &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    push_string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(if will.is_some() {
        0b0000_1110 // clean session, will flag, will QoS 1
    } else {
        0b0000_0010
    });
    body.extend_from_slice(&30u16.to_be_bytes());
    push_string(&mut body, client_id);
    if let Some((topic, message)) = will {
        push_string(&mut body, topic);
        push_string(&mut body, message);
    }
    packet(0x10, &body)
}

/// PUBLISH at QoS 1 with packet identifier `pkid`.
pub fn publish(topic: &[u8], payload: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push_string(&mut body, topic);
    body.extend_from_slice(&pkid.max(1).to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

/// SUBSCRIBE to one filter at QoS 0.
pub fn subscribe(filter: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pkid.max(1).to_be_bytes());
    push_string(&mut body, filter);
    body.push(0);
    packet(0x82, &body)
}

/// The CONNACK of an accepted 3.1.1 connection without a session.
pub const CONNACK_ACCEPTED: [u8; 4] = [0x20, 2, 0, 0];

/// MQTT v5 CONNECT (clean start, keep-alive 30 s, no properties, no login).
pub fn connect_v5(client_id: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_string(&mut body, b"MQTT");
    body.push(5); // protocol level 5
    body.push(0b0000_0010);
    body.extend_from_slice(&30u16.to_be_bytes());
    body.push(0); // no properties
    push_string(&mut body, client_id);
    packet(0x10, &body)
}

/// MQTT v5 SUBSCRIBE to one filter at QoS 0, no properties.
pub fn subscribe_v5(filter: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pkid.max(1).to_be_bytes());
    body.push(0); // no properties
    push_string(&mut body, filter);
    body.push(0);
    packet(0x82, &body)
}

/// MQTT v5 PUBLISH at QoS 1, no properties.
pub fn publish_v5(topic: &[u8], payload: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push_string(&mut body, topic);
    body.extend_from_slice(&pkid.max(1).to_be_bytes());
    body.push(0); // no properties
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

/// Reads one packet from `stream`: its first byte (type and flags), then its body (the
/// remaining length itself is not returned). A remaining length longer than MQTT's four bytes
/// is an `InvalidData` error.
pub fn read_packet(stream: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let mut packet = vec![byte[0]];
    let mut len = 0usize;
    for shift in (0..4).map(|i| 7 * i) {
        stream.read_exact(&mut byte)?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            let start = packet.len();
            packet.resize(start + len, 0);
            stream.read_exact(&mut packet[start..])?;
            return Ok(packet);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "remaining length longer than four bytes",
    ))
}
