//! The request machinery shared by every netlink family podnet speaks.
//!
//! A [`Connection`] owns one netlink socket. It numbers requests, sets `NLM_F_ACK` on every one
//! (a GET without it can leave a read-until-done loop waiting forever), reads replies until the
//! acknowledgement or `NLMSG_DONE`, restarts dumps the kernel marks `NLM_F_DUMP_INTR`, and keeps
//! the kernel's extended-ack message in every error. [`Connection::pipeline`] sends many
//! requests per system call and reports the outcome of each one.
//!
//! It is generic over the netlink family's message type, so rtnetlink (this crate), nfnetlink and
//! generic netlink users (podnet-nat) share one implementation.

use crate::nlattr::{
    SocketBuffer, done_ext_ack_message, error_code, ext_ack_message, messages, set_buffer_force,
};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};
use podnet_netns::NetNs;
use std::fmt;
use std::io;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

/// Receive buffer for one datagram. The kernel builds dump datagrams of at most 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Socket receive queue asked for (SO_RCVBUFFORCE), so that pipelined acks are never dropped.
const RCVBUF_WANTED: usize = 8 * 1024 * 1024;
/// Bytes of requests sent in one system call by [`Connection::pipeline`].
const SEND_CHUNK: usize = 60 * 1024;
/// Acknowledgements drained per recvmmsg(2) call.
const ACK_BATCH: usize = 64;
/// Times a dump interrupted by a concurrent change is restarted before giving up.
const DUMP_RETRIES: usize = 10;

/// An error the kernel answered with: errno and the extended-ack message, if it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The positive errno, e.g. `libc::EEXIST`.
    pub errno: i32,
    /// The kernel's extended-ack message, e.g. "Nexthop has invalid gateway".
    pub message: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.errno))?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

/// What can go wrong below the level of a typed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The kernel refused the request.
    #[error("{0}")]
    Kernel(KernelError),
    /// The socket failed (send, receive, buffer overrun).
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel sent something this library cannot decode.
    #[error("netlink decode: {0}")]
    Decode(String),
    /// A dump was interrupted by concurrent changes more often than it was retried.
    #[error("dump interrupted by concurrent changes {0} times in a row")]
    DumpInterrupted(usize),
    /// The network namespace could not be entered to open the socket.
    #[error(transparent)]
    Netns(#[from] podnet_netns::NetNsError),
}

/// One netlink socket of one protocol, bound to the namespace it was opened in.
#[derive(Debug)]
pub struct Connection {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    max_in_flight: usize,
    /// Receive slots for draining acknowledgements, allocated by the first pipeline.
    ack_slots: Vec<[u8; crate::sys::SLOT]>,
}

impl Connection {
    /// Opens a socket of `protocol` (e.g. `netlink_sys::protocols::NETLINK_ROUTE`) in the
    /// calling thread's namespace.
    pub fn new(protocol: isize) -> Result<Connection, NetlinkError> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Extended acks carry the kernel's message; capped acks do not echo our request back.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        if set_buffer_force(&sock, SocketBuffer::Receive, RCVBUF_WANTED).is_err() {
            let _ = sock.set_rx_buf_sz(RCVBUF_WANTED);
        }
        let rcvbuf = sock.get_rx_buf_sz().unwrap_or(212_992);
        // An ack costs about 1 KiB of receive queue; keep a wide margin.
        let max_in_flight = (rcvbuf / 2048).clamp(16, 4096);
        Ok(Connection {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            max_in_flight,
            ack_slots: Vec::new(),
        })
    }

    /// Opens a socket of `protocol` inside `ns`. The socket is created on a helper thread that
    /// entered `ns`, and stays bound to `ns` while it is used from any thread.
    pub fn new_in(ns: &NetNs, protocol: isize) -> Result<Connection, NetlinkError> {
        ns.run(|| Connection::new(protocol))?
    }

    /// The socket, for callers that poll it or join multicast groups.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    fn serialize<I: NetlinkSerializable>(seq: u32, flags: u16, payload: I, out: &mut Vec<u8>) {
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        msg.finalize();
        let start = out.len();
        let len = msg.buffer_len();
        out.resize(start + len, 0);
        msg.serialize(&mut out[start..]);
        // Keep every message 4-byte aligned for the next one.
        out.resize(start + ((len + 3) & !3), 0);
    }

    /// Sends one request and returns the messages the kernel answered with (none for most
    /// changes, one for a GET, many for a dump). `flags` adds to `NLM_F_REQUEST | NLM_F_ACK`.
    pub fn request<I>(&mut self, payload: I, flags: u16) -> Result<Vec<I>, NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        if flags & NLM_F_DUMP == NLM_F_DUMP {
            return self.dump(payload, flags);
        }
        self.request_once(payload, flags).map(|(msgs, _)| msgs)
    }

    /// Sends a dump request, restarting it when the kernel marks it interrupted.
    fn dump<I>(&mut self, payload: I, flags: u16) -> Result<Vec<I>, NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        for _ in 0..DUMP_RETRIES {
            let (msgs, interrupted) = self.request_once(payload.clone(), flags)?;
            if !interrupted {
                return Ok(msgs);
            }
        }
        Err(NetlinkError::DumpInterrupted(DUMP_RETRIES))
    }

    fn request_once<I>(&mut self, payload: I, flags: u16) -> Result<(Vec<I>, bool), NetlinkError>
    where
        I: NetlinkSerializable + NetlinkDeserializable,
    {
        let seq = self.next_seq();
        let mut out = Vec::with_capacity(256);
        Self::serialize(seq, flags, payload, &mut out);
        self.sock.send(&out, 0)?;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv(0)?;
            let datagram = parse_reply::<I>(&self.buf, seq)?;
            replies.extend(datagram.replies);
            interrupted |= datagram.interrupted;
            if let Some(result) = datagram.finished {
                return result
                    .map(|()| (replies, interrupted))
                    .map_err(NetlinkError::Kernel);
            }
        }
    }

    /// Sends many change requests, several per system call, and returns one outcome per request
    /// in order. Replies other than acknowledgements are discarded.
    ///
    /// The kernel handles the requests of one system call in order before the call returns, so
    /// pipelining saves a round trip and a context switch per request without changing
    /// semantics. A failed request does not stop the ones after it.
    pub fn pipeline<I>(
        &mut self,
        requests: impl IntoIterator<Item = (I, u16)>,
    ) -> Result<Vec<Result<(), KernelError>>, NetlinkError>
    where
        I: NetlinkSerializable,
    {
        let mut outcomes: Vec<Option<Result<(), KernelError>>> = Vec::new();
        let mut chunk = Vec::with_capacity(SEND_CHUNK + 4096);
        // (sequence number, index) of the first request of the chunk being built.
        let mut first: Option<(u32, usize)> = None;
        let mut in_chunk = 0usize;
        for (payload, flags) in requests {
            let seq = self.next_seq();
            let index = outcomes.len();
            outcomes.push(None);
            first.get_or_insert((seq, index));
            Self::serialize(seq, flags, payload, &mut chunk);
            in_chunk += 1;
            if chunk.len() >= SEND_CHUNK || in_chunk >= self.max_in_flight {
                let (s, i) = first.take().unwrap_or((seq, index));
                self.flush_chunk(&chunk, s, i, in_chunk, &mut outcomes)?;
                chunk.clear();
                in_chunk = 0;
            }
        }
        if let Some((s, i)) = first {
            self.flush_chunk(&chunk, s, i, in_chunk, &mut outcomes)?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(Err(KernelError {
                    errno: libc::EIO,
                    message: Some("no acknowledgement received".into()),
                }))
            })
            .collect())
    }

    fn flush_chunk(
        &mut self,
        chunk: &[u8],
        first_seq: u32,
        first_index: usize,
        count: usize,
        outcomes: &mut [Option<Result<(), KernelError>>],
    ) -> Result<(), NetlinkError> {
        self.sock.send(chunk, 0)?;
        // The kernel processed the whole chunk inside send(); every ack is queued already, so
        // they are drained many per system call.
        if self.ack_slots.is_empty() {
            self.ack_slots = vec![[0u8; crate::sys::SLOT]; ACK_BATCH];
        }
        let slots = &mut self.ack_slots;
        let mut lens = [0usize; ACK_BATCH];
        let mut seen = 0;
        while seen < count {
            let got = match crate::sys::recv_many(&self.sock, slots, &mut lens) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            for (slot, len) in slots.iter().zip(&lens).take(got) {
                if *len > slot.len() {
                    return Err(NetlinkError::Decode(format!(
                        "acknowledgement of {len} bytes truncated"
                    )));
                }
                for m in messages(&slot[..*len]) {
                    let (hdr, body) = m.map_err(decode_error)?;
                    if hdr.message_type != NLMSG_ERROR {
                        continue;
                    }
                    let rel = hdr.sequence_number.wrapping_sub(first_seq) as usize;
                    if rel >= count {
                        continue;
                    }
                    if let Some(out) = outcomes.get_mut(first_index + rel) {
                        if out.is_none() {
                            seen += 1;
                        }
                        *out = Some(parse_error(&hdr, body)?);
                    }
                }
            }
        }
        Ok(())
    }

    fn recv(&mut self, flags: libc::c_int) -> Result<(), NetlinkError> {
        self.buf.clear();
        let n = loop {
            match self.sock.recv(&mut self.buf, flags | libc::MSG_TRUNC) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n > self.buf.len() {
            return Err(NetlinkError::Decode(format!(
                "datagram of {n} bytes truncated to {}",
                self.buf.len()
            )));
        }
        Ok(())
    }
}

/// What one received datagram of a reply to request `seq` held.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReplyDatagram<I> {
    /// The messages of the reply, decoded.
    pub replies: Vec<I>,
    /// A message carried `NLM_F_DUMP_INTR`: the dump must be restarted.
    pub interrupted: bool,
    /// The acknowledgement or `NLMSG_DONE` that ends the reply, if this datagram held it.
    pub finished: Option<Result<(), KernelError>>,
}

/// Reads one received datagram of the reply to request `seq`, as [`Connection::request`] does:
/// messages of other requests are skipped, the first acknowledgement, error or `NLMSG_DONE`
/// ends it. Public (hidden) for the fuzz targets; malformed bytes are an error, never a panic.
#[doc(hidden)]
pub fn parse_reply<I: NetlinkDeserializable>(
    buf: &[u8],
    seq: u32,
) -> Result<ReplyDatagram<I>, NetlinkError> {
    let mut out = ReplyDatagram {
        replies: Vec::new(),
        interrupted: false,
        finished: None,
    };
    for m in messages(buf) {
        let (hdr, body) = m.map_err(decode_error)?;
        if hdr.sequence_number != seq {
            continue; // a stale reply to an earlier, abandoned request
        }
        if hdr.flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match hdr.message_type {
            NLMSG_NOOP => {}
            NLMSG_ERROR => {
                out.finished = Some(parse_error(&hdr, body)?);
                break;
            }
            NLMSG_DONE => {
                // A dump's DONE carries an errno too (negative on failure).
                let code = error_code(body).unwrap_or(0);
                out.finished = Some(if code < 0 {
                    Err(KernelError {
                        errno: code.saturating_neg(),
                        message: done_ext_ack_message(hdr.flags, body),
                    })
                } else {
                    Ok(())
                });
                break;
            }
            NLMSG_OVERRUN => {
                return Err(NetlinkError::Io(io::Error::from_raw_os_error(
                    libc::ENOBUFS,
                )));
            }
            _ => out.replies.push(decode::<I>(&hdr, body)?),
        }
    }
    Ok(out)
}

/// A malformed message ([`messages`]'s error) as a [`NetlinkError`].
pub(crate) fn decode_error(e: netlink_packet_core::DecodeError) -> NetlinkError {
    NetlinkError::Decode(e.to_string())
}

pub(crate) fn decode<I: NetlinkDeserializable>(
    hdr: &NetlinkHeader,
    body: &[u8],
) -> Result<I, NetlinkError> {
    I::deserialize(hdr, body)
        .map_err(|e| NetlinkError::Decode(format!("message type {}: {e}", hdr.message_type)))
}

/// Reads an NLMSG_ERROR body: `Ok(())` for an acknowledgement, the errno and message otherwise.
fn parse_error(hdr: &NetlinkHeader, body: &[u8]) -> Result<Result<(), KernelError>, NetlinkError> {
    let code =
        error_code(body).ok_or_else(|| NetlinkError::Decode("short error message".into()))?;
    if code == 0 {
        return Ok(Ok(()));
    }
    Ok(Err(KernelError {
        // Saturating: i32::MIN is no errno, and negating it would overflow.
        errno: code.saturating_neg(),
        message: ext_ack_message(hdr.flags, body),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u16, flags: u16) -> NetlinkHeader {
        let mut h = NetlinkHeader::default();
        h.message_type = kind;
        h.flags = flags;
        h
    }

    #[test]
    fn ack_and_error_with_extended_message() {
        let ack = [0u8; 4 + 16];
        assert_eq!(parse_error(&header(NLMSG_ERROR, 0), &ack).unwrap(), Ok(()));

        let mut err = Vec::new();
        err.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
        err.extend_from_slice(&[0u8; 16]); // echoed header (capped ack)
        let msg = b"File exists, really\0";
        err.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        err.extend_from_slice(&crate::nlattr::NLMSGERR_ATTR_MSG.to_ne_bytes());
        err.extend_from_slice(msg);
        let h = header(
            NLMSG_ERROR,
            netlink_packet_core::NLM_F_CAPPED | crate::nlattr::NLM_F_ACK_TLVS,
        );
        assert_eq!(
            parse_error(&h, &err).unwrap(),
            Err(KernelError {
                errno: libc::EEXIST,
                message: Some("File exists, really".into())
            })
        );
    }

    /// An error code that is no negated errno (i32::MIN cannot be negated): found by the
    /// `rtnetlink` fuzz target, negating it overflowed.
    #[test]
    fn an_error_code_of_i32_min_does_not_overflow() {
        let mut err = i32::MIN.to_ne_bytes().to_vec();
        err.extend_from_slice(&[0u8; 16]);
        let got = parse_error(&header(NLMSG_ERROR, 0), &err).unwrap();
        assert_eq!(got.unwrap_err().errno, i32::MAX);
        let mut buf = Vec::new();
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend_from_slice(&[0u8; 2]);
        buf.extend_from_slice(&9u32.to_ne_bytes());
        buf.extend_from_slice(&[0u8; 4]);
        buf.extend_from_slice(&i32::MIN.to_ne_bytes());
        let reply = parse_reply::<netlink_packet_route::RouteNetlinkMessage>(&buf, 9);
        let done = reply.map(|r| r.finished);
        assert!(matches!(
            done,
            Ok(Some(Err(KernelError {
                errno: i32::MAX,
                ..
            })))
        ));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(parse_error(&header(NLMSG_ERROR, 0), &[1, 2]).is_err());
        let long = [255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(parse_reply::<netlink_packet_route::RouteNetlinkMessage>(&long, 0).is_err());
        let short = parse_reply::<netlink_packet_route::RouteNetlinkMessage>(&[1, 2, 3], 0);
        assert!(short.unwrap().finished.is_none());
        // TLVs with a bogus length end the search quietly.
        let tlvs = [0, 0, 0, 0, 200, 0, 1, 0];
        assert_eq!(
            done_ext_ack_message(crate::nlattr::NLM_F_ACK_TLVS, &tlvs),
            None
        );
    }
}
