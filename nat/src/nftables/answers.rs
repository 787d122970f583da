//! The kernel's answers to an nftables batch, read without a socket: which operation it
//! refused (by index), or whether it committed the batch. [`super::netlink::NftSocket`] feeds
//! them the datagrams it receives; the fuzz targets feed them arbitrary bytes.
//!
//! The kernel answers a batch inside the `send` that carried it: an `NLMSG_ERROR` for each
//! message it refused, one for the batch begin message when the commit failed, and the
//! acknowledgement the batch's last message asked for.

use super::encode::Batch;
use super::netlink::NftError;
use podnet_links::netlink::KernelError;
use podnet_links::nlattr::{error_code, ext_ack_message, messages};

const NLMSG_ERROR: u16 = 2;

/// What the answers to a batch said so far: the acknowledgement of its last message, and the
/// first error in batch order.
#[derive(Debug, Default)]
pub(super) struct Acks {
    acked: bool,
    first_err: Option<(u32, KernelError)>,
}

impl Acks {
    /// Reads one received datagram of answers to `batch`.
    pub(super) fn read(&mut self, buf: &[u8], batch: &Batch) {
        let n = batch.msg_ops.len() as u32;
        let last = batch.first_seq.wrapping_add(n);
        for (hdr, body) in messages(buf).map_while(Result::ok) {
            let (flags, seq) = (hdr.flags, hdr.sequence_number);
            if hdr.message_type != NLMSG_ERROR {
                continue;
            }
            let rel = seq.wrapping_sub(batch.first_seq);
            if rel > n + 1 {
                continue; // not ours
            }
            let code = error_code(body).unwrap_or(-libc::EIO);
            if code == 0 {
                if seq == last {
                    self.acked = true;
                }
                continue;
            }
            let err = KernelError {
                // Saturating: i32::MIN is no errno, and negating it would overflow.
                errno: code.saturating_neg(),
                message: ext_ack_message(flags, body),
            };
            if self.first_err.as_ref().is_none_or(|(s, _)| {
                // Message errors before a commit error, in batch order.
                seq.wrapping_sub(batch.first_seq) < s.wrapping_sub(batch.first_seq)
                    && seq != batch.first_seq
            }) {
                self.first_err = Some((seq, err));
            }
        }
    }

    /// How the batch went, once every answer is read.
    pub(super) fn outcome(self, batch: &Batch) -> Result<(), Sent> {
        match self.first_err {
            Some((seq, err)) if seq == batch.first_seq => Err(Sent::Failed(NftError::Commit(err))),
            Some((seq, err)) => {
                let rel = seq.wrapping_sub(batch.first_seq) as usize;
                let idx = batch
                    .msg_ops
                    .get(rel.saturating_sub(1))
                    .copied()
                    .unwrap_or(0);
                Err(Sent::Refused(idx, err))
            }
            None if self.acked => Ok(()),
            None => Err(Sent::Failed(NftError::NoAck(batch.msg_ops.len()))),
        }
    }
}

/// Reads the answers to `batch` (received datagrams, in order) as [`NftSocket::apply`](crate::nftables::NftSocket::apply) does;
/// a refused operation is named by its index in the transaction (`op` is `#<index>`). Public
/// (hidden) for the fuzz targets: malformed bytes are an error, never a panic.
#[doc(hidden)]
pub fn parse_batch_answers(datagrams: &[&[u8]], batch: &Batch) -> Result<(), NftError> {
    let mut acks = Acks::default();
    for d in datagrams {
        acks.read(d, batch);
    }
    match acks.outcome(batch) {
        Ok(()) => Ok(()),
        Err(Sent::Refused(idx, error)) => Err(NftError::Refused {
            op: format!("#{idx}"),
            error,
        }),
        Err(Sent::Failed(e)) => Err(e),
    }
}

/// How sending a batch went wrong: an operation refused (by index), or anything else.
pub(super) enum Sent {
    /// The kernel refused the operation of this index.
    Refused(usize, KernelError),
    /// Anything else.
    Failed(NftError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nftables::model::{Family, Op, Transaction};

    /// An answer whose error code is i32::MIN (no negated errno): found by the `nftables` fuzz
    /// target's batch answers, negating it overflowed.
    #[test]
    fn an_error_code_of_i32_min_does_not_overflow() {
        let mut tx = Transaction::new(Family::Ip, "t");
        tx.push(Op::AddTable { comment: None });
        let batch = Batch::encode(&tx, 100);
        let mut answer = 36u32.to_ne_bytes().to_vec();
        answer.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        answer.extend_from_slice(&0u16.to_ne_bytes());
        answer.extend_from_slice(&101u32.to_ne_bytes());
        answer.extend_from_slice(&0u32.to_ne_bytes());
        answer.extend_from_slice(&i32::MIN.to_ne_bytes());
        answer.extend_from_slice(&[0u8; 16]);
        match parse_batch_answers(&[&answer], &batch) {
            Err(NftError::Refused { error, .. }) => assert_eq!(error.errno, i32::MAX),
            other => panic!("{other:?}"),
        }
    }

    /// One NLMSG_ERROR answer with `code` to the message with sequence number `seq`.
    fn answer(seq: u32, code: i32) -> Vec<u8> {
        let mut a = 36u32.to_ne_bytes().to_vec();
        a.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        a.extend_from_slice(&0u16.to_ne_bytes());
        a.extend_from_slice(&seq.to_ne_bytes());
        a.extend_from_slice(&0u32.to_ne_bytes());
        a.extend_from_slice(&code.to_ne_bytes());
        a.extend_from_slice(&[0u8; 16]);
        a
    }

    #[test]
    fn refusals_name_the_operation_and_the_last_ack_commits() {
        let mut tx = Transaction::new(Family::Ip, "t");
        tx.push(Op::AddTable { comment: None });
        tx.push(Op::FlushChain("a".into()));
        tx.push(Op::DeleteChain("b".into()));
        let batch = Batch::encode(&tx, 10);
        // Messages 11, 12, 13: the last one asked for the acknowledgement.
        assert!(parse_batch_answers(&[&answer(13, 0)], &batch).is_ok());
        assert!(matches!(
            parse_batch_answers(&[], &batch),
            Err(NftError::NoAck(3))
        ));
        // The second message refused (ENOENT): operation #1, in one datagram with the ack.
        let both = [answer(12, -2), answer(13, 0)].concat();
        match parse_batch_answers(&[&both], &batch) {
            Err(NftError::Refused { op, error }) => {
                assert_eq!((op.as_str(), error.errno), ("#1", 2));
            }
            other => panic!("{other:?}"),
        }
        // An error on the batch begin message is a failed commit.
        assert!(matches!(
            parse_batch_answers(&[&answer(10, -1)], &batch),
            Err(NftError::Commit(_))
        ));
    }
}
