//! A packet buffer with headroom, so that headers are prepended without moving the payload.
#![forbid(unsafe_code)]

use bytes::BytesMut;

/// A packet under construction: a [`BytesMut`] whose first `headroom()` bytes are free space in
/// front of the packet.
///
/// Builders write the payload once, then prepend each header in turn (innermost first), so
/// encapsulating a frame never copies it. When the headroom runs out, [`PacketBuf::prepend`]
/// grows the buffer (one copy) rather than failing; size the headroom with the `HEADROOM`
/// constants to avoid that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketBuf {
    buf: BytesMut,
    head: usize,
}

impl PacketBuf {
    /// An empty packet with `headroom` free bytes in front and room for `capacity` more bytes.
    pub fn with_headroom(headroom: usize, capacity: usize) -> PacketBuf {
        let mut buf = BytesMut::with_capacity(headroom.saturating_add(capacity));
        buf.resize(headroom, 0);
        PacketBuf {
            buf,
            head: headroom,
        }
    }

    /// A packet holding a copy of `payload`, with `headroom` free bytes in front.
    pub fn from_payload(headroom: usize, payload: &[u8]) -> PacketBuf {
        let mut p = PacketBuf::with_headroom(headroom, payload.len());
        p.buf.extend_from_slice(payload);
        p
    }

    /// Wraps a buffer whose first `headroom` bytes are free space and the rest is the packet.
    ///
    /// A `headroom` larger than the buffer is clamped to its length.
    pub fn from_bytes_mut(buf: BytesMut, headroom: usize) -> PacketBuf {
        let head = headroom.min(buf.len());
        PacketBuf { buf, head }
    }

    /// The free bytes in front of the packet.
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// The packet's length.
    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// `true` when the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// The packet's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..]
    }

    /// Grows the packet by `n` zeroed bytes at the front and returns them.
    ///
    /// Uses the headroom when there is enough; otherwise reallocates with fresh headroom.
    pub fn prepend(&mut self, n: usize) -> &mut [u8] {
        let out = self.prepend_unzeroed(n);
        out.fill(0);
        out
    }

    /// [`PacketBuf::prepend`] without zeroing: the bytes hold whatever the headroom held, for
    /// emitters that write every byte.
    #[inline]
    pub(crate) fn prepend_unzeroed(&mut self, n: usize) -> &mut [u8] {
        if n > self.head {
            let extra = (n - self.head).saturating_add(64);
            let mut grown = BytesMut::with_capacity(self.buf.len() + extra);
            grown.resize(extra, 0);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
            self.head += extra;
        }
        self.head -= n;
        let h = self.head;
        &mut self.buf[h..h + n]
    }

    /// Removes `n` bytes from the front of the packet (they become headroom again).
    ///
    /// Removes the whole packet when it is shorter than `n`.
    pub fn strip(&mut self, n: usize) {
        self.head += n.min(self.len());
    }

    /// Appends bytes at the end of the packet.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Grows the packet by `n` zeroed bytes at the end and returns them.
    pub fn append(&mut self, n: usize) -> &mut [u8] {
        let old = self.buf.len();
        self.buf.resize(old + n, 0);
        &mut self.buf[old..]
    }

    /// Shortens the packet to `len` bytes (no effect when it is not longer).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(self.head.saturating_add(len));
    }

    /// The packet as a [`BytesMut`], without the headroom and without copying.
    pub fn into_bytes_mut(mut self) -> BytesMut {
        let _ = self.buf.split_to(self.head);
        self.buf
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsMut<[u8]> for PacketBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_uses_headroom_without_moving_the_payload() {
        let mut p = PacketBuf::from_payload(16, b"payload");
        let before = p.as_slice().as_ptr();
        p.prepend(4).copy_from_slice(b"hdr:");
        assert_eq!(p.as_slice(), b"hdr:payload");
        assert_eq!(p.headroom(), 12);
        assert!(std::ptr::eq(before, p.as_slice()[4..].as_ptr()));
        let b = p.into_bytes_mut();
        assert_eq!(&b[..], b"hdr:payload");
    }

    #[test]
    fn prepend_grows_when_headroom_runs_out() {
        let mut p = PacketBuf::from_payload(2, b"xyz");
        p.prepend(5).copy_from_slice(b"abcde");
        assert_eq!(p.as_slice(), b"abcdexyz");
        p.strip(5);
        assert_eq!(p.as_slice(), b"xyz");
        p.strip(100);
        assert!(p.is_empty());
    }
}
