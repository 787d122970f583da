//! Netlink datagrams from fuzzer bytes.
//!
//! The first input byte is a mode. Even: the rest is one received datagram as it is (the
//! sequence number the parser expects is read from its first header, so that its messages are
//! not skipped as stale). Odd: the rest is a list of messages, each
//! `[type selector][flags: u16][body length: u16][body]`, and the harness writes well-formed
//! netlink headers around them (right length, a type from the family's list, the expected
//! sequence number or one of the three after it), pads a body that is shorter than its family header, and clamps the
//! attribute lengths after that header (also of nested attributes that look like attributes) to
//! the bytes there are. The fuzzer then spends its time on the attributes instead of on the
//! first length check.

/// The sequence number of the request the structured datagrams answer.
pub const SEQ: u32 = 0x0101;

/// A message type and the length of its fixed family header (before the attributes).
pub type MsgType = (u16, usize);

/// Netlink's own messages, valid in every family.
pub const CONTROL: [MsgType; 4] = [
    (1, 0),      // NLMSG_NOOP
    (2, 4 + 16), // NLMSG_ERROR: errno, the request's header, then extended-ack attributes
    (3, 4),      // NLMSG_DONE: errno, then extended-ack attributes
    (4, 0),      // NLMSG_OVERRUN
];

const NLMSG_HDRLEN: usize = 16;
/// Messages in one structured datagram at most.
const MAX_MESSAGES: usize = 64;
/// Nesting depth the attribute repair follows.
const MAX_DEPTH: usize = 4;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

/// The datagram and the sequence number to parse it with.
pub fn datagram(data: &[u8], types: &[MsgType]) -> (Vec<u8>, u32) {
    let Some((mode, rest)) = data.split_first() else {
        return (Vec::new(), 0);
    };
    if mode & 1 == 0 {
        let seq = rest
            .get(8..12)
            .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        return (rest.to_vec(), seq);
    }
    (structured(rest, types), SEQ)
}

fn structured(mut data: &[u8], types: &[MsgType]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = 0;
    while data.len() >= 5 && n < MAX_MESSAGES {
        let (kind, hdr_len) = types[usize::from(data[0]) % types.len()];
        // The two top flag bits (unused in replies) choose the sequence number: the request's,
        // or one of the three after it (the messages of a batch).
        let flags = u16_at(data, 1);
        let seq = SEQ.wrapping_add(u32::from(flags >> 14));
        let flags = flags & 0x3fff;
        let want = usize::from(u16_at(data, 3));
        data = &data[5..];
        let take = want.min(data.len());
        let mut body = data[..take].to_vec();
        data = &data[take..];
        if body.len() < hdr_len {
            body.resize(hdr_len, 0);
        }
        repair_attrs(&mut body[hdr_len..], 0);
        push_message(&mut out, kind, flags, seq, &body);
        n += 1;
    }
    out
}

/// Appends one netlink message (header, body, padding to 4 bytes).
pub fn push_message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, body: &[u8]) {
    let len = NLMSG_HDRLEN + body.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

/// Clamps every attribute length in `buf` to the bytes there are (at least the 4 of the
/// attribute header), following values that look like nested attributes.
fn repair_attrs(buf: &mut [u8], depth: usize) {
    let mut off = 0;
    while buf.len().saturating_sub(off) >= 4 {
        let rest = buf.len() - off;
        let len = usize::from(u16_at(buf, off)).clamp(4, rest);
        buf[off..off + 2].copy_from_slice(&(len as u16).to_ne_bytes());
        let value = &mut buf[off + 4..off + len];
        if depth < MAX_DEPTH && looks_nested(value) {
            repair_attrs(value, depth + 1);
        }
        off += (len + 3) & !3;
    }
}

fn looks_nested(v: &[u8]) -> bool {
    v.len() >= 4 && (4..=v.len()).contains(&usize::from(u16_at(v, 0)))
}

/// The two encodings of a datagram the fuzz targets read, to seed their corpora with: raw
/// (mode 0) and structured (mode 1, messages whose type is not in `types` left out).
pub fn seeds(datagram: &[u8], types: &[MsgType]) -> [Vec<u8>; 2] {
    let mut raw = vec![0u8];
    raw.extend_from_slice(datagram);
    let mut structured = vec![1u8];
    let mut off = 0;
    while datagram.len().saturating_sub(off) >= NLMSG_HDRLEN {
        let h = &datagram[off..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            break;
        }
        let kind = u16_at(h, 4);
        if let Some(sel) = types.iter().position(|(k, _)| *k == kind) {
            let body = &h[NLMSG_HDRLEN..len];
            structured.push(sel as u8);
            structured.extend_from_slice(&h[6..8]);
            structured.extend_from_slice(&(body.len() as u16).to_ne_bytes());
            structured.extend_from_slice(body);
        }
        off += (len + 3) & !3;
    }
    [raw, structured]
}

/// Serializes one message with netlink-packet-core, as the kernel would send it.
pub fn emit<I: netlink_packet_core::NetlinkSerializable>(
    out: &mut Vec<u8>,
    payload: I,
    flags: u16,
) {
    let mut header = netlink_packet_core::NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = SEQ;
    let mut m = netlink_packet_core::NetlinkMessage::new(
        header,
        netlink_packet_core::NetlinkPayload::InnerMessage(payload),
    );
    m.finalize();
    let start = out.len();
    let len = m.buffer_len();
    out.resize(start + len, 0);
    m.serialize(&mut out[start..]);
    out.resize(start + ((len + 3) & !3), 0);
}

/// `NLMSG_DONE` with errno 0, ending a dump.
pub fn done(out: &mut Vec<u8>) {
    push_message(out, 3, 2, SEQ, &0i32.to_ne_bytes());
}

/// An `NLMSG_ERROR` answering [`SEQ`] with `errno` (0: an acknowledgement) and an
/// extended-ack message.
pub fn error(out: &mut Vec<u8>, errno: i32, message: &str) {
    error_seq(out, SEQ, errno, message);
}

/// An `NLMSG_ERROR` answering `seq`.
pub fn error_seq(out: &mut Vec<u8>, seq: u32, errno: i32, message: &str) {
    let mut body = (-errno).to_ne_bytes().to_vec();
    body.extend_from_slice(&[0u8; 16]);
    let mut text = message.as_bytes().to_vec();
    text.push(0);
    body.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
    body.extend_from_slice(&1u16.to_ne_bytes());
    body.extend_from_slice(&text);
    body.resize((body.len() + 3) & !3, 0);
    push_message(out, 2, 0x100 | 0x200, seq, &body);
}
