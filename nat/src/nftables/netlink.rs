//! The thin socket half of nftables over netlink: [`NftSocket`] sends the batches
//! [`super::encode`] builds and reads the answers (module `answers`), and lists tables
//! through dumps whose replies the `dump` module parses. Nothing here builds or parses bytes.
//!
//! The kernel handles a batch inside the `send` that carries it, so every error (and the
//! acknowledgement asked of the last message) is already queued when `send` returns;
//! [`NftSocket::apply`] reads them without waiting. Dumps go through podnet-links'
//! [`Connection`], which restarts a dump the kernel marks interrupted.

use super::answers::{Acks, Sent};
use super::dump::{chains_of, elements_of, nftables_messages, rules_of, sets_of};
use super::encode::nf;
use super::model::{Family, Transaction};
use super::precheck::Checked;
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_netfilter::NetfilterMessage;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, NfTablesMessage, RuleAttribute, RuleMessage, SetAttribute,
    SetElementList, SetElementMessage, SetMessage,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use podnet_links::netlink::{Connection, KernelError, NetlinkError};
use podnet_links::nlattr::{SocketBuffer, set_buffer_force};
use podnet_netns::NetNs;
use std::io;

#[doc(hidden)]
pub use super::answers::parse_batch_answers;
pub use super::dump::{ChainInfo, ElementInfo, RuleInfo, SetInfo};
#[doc(hidden)]
pub use super::dump::{DumpDatagram, parse_dump_datagram};
pub use super::encode::{Batch, lowered};

/// Errors of nftables operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    /// The kernel refused one operation of a batch (nothing of the batch was applied).
    #[error("nftables refused `{op}`: {error}")]
    Refused {
        /// The operation, as an nft command.
        op: String,
        /// The errno and the kernel's message.
        error: KernelError,
    },
    /// The kernel refused to commit the batch (nothing was applied).
    #[error("nftables batch not committed: {0}")]
    Commit(KernelError),
    /// No acknowledgement came back for the batch.
    #[error("nftables batch of {0} messages was not acknowledged")]
    NoAck(usize),
    /// A netlink request (a dump) failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The socket failed.
    #[error("nftables netlink socket: {0}")]
    Io(#[from] io::Error),
}

/// Batch sequence numbers start here, away from the ones [`Connection`] uses for dumps.
const BATCH_SEQ_START: u32 = 0x4000_0000;

/// A netlink socket for nftables, bound to one network namespace.
#[derive(Debug)]
pub struct NftSocket {
    conn: Connection,
    seq: u32,
    sndbuf: usize,
    buf: Vec<u8>,
}

impl NftSocket {
    /// Opens a socket in `ns` (it stays bound to that namespace).
    pub fn open_in(ns: &NetNs) -> Result<NftSocket, NftError> {
        let conn = Connection::new_in(ns, NETLINK_NETFILTER)?;
        Ok(NftSocket {
            conn,
            seq: BATCH_SEQ_START,
            sndbuf: 200 * 1024,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Opens a socket in the calling thread's namespace.
    pub fn open() -> Result<NftSocket, NftError> {
        let conn = Connection::new(NETLINK_NETFILTER)?;
        Ok(NftSocket {
            conn,
            seq: BATCH_SEQ_START,
            sndbuf: 200 * 1024,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Applies `tx` as one batch: all of it, or (on error) none of it. Returns the number of
    /// netlink messages sent. An empty transaction sends nothing.
    pub fn apply(&mut self, tx: &Transaction) -> Result<usize, NftError> {
        if tx.ops.is_empty() {
            return Ok(0);
        }
        let batch = Batch::encode(tx, self.seq);
        self.seq = self
            .seq
            .wrapping_add(batch.msg_ops.len() as u32 + 2)
            .max(BATCH_SEQ_START);
        match self.send(&batch) {
            Ok(()) => Ok(batch.msg_ops.len()),
            Err(Sent::Refused(idx, source)) => {
                let mut op = String::new();
                if let Some(o) = tx.ops.get(idx) {
                    tx.render_op(o, &mut op);
                }
                Err(NftError::Refused { op, error: source })
            }
            Err(Sent::Failed(e)) => Err(e),
        }
    }

    /// Sends an encoded batch and checks the kernel's answer.
    fn send(&mut self, batch: &Batch) -> Result<(), Sent> {
        let sock = self.conn.socket();
        if batch.bytes().len() + 4096 > self.sndbuf {
            let want = (batch.bytes().len() + 4096).next_power_of_two();
            set_buffer_force(sock, SocketBuffer::Send, want).map_err(|e| Sent::Failed(e.into()))?;
            self.sndbuf = want;
        }
        sock.send(batch.bytes(), 0)
            .map_err(|e| Sent::Failed(e.into()))?;
        let mut acks = Acks::default();
        loop {
            self.buf.clear();
            match sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Sent::Failed(e.into())),
            }
            acks.read(&self.buf, batch);
        }
        acks.outcome(batch)
    }

    fn dump(&mut self, msg: NetfilterMessage) -> Result<Vec<NfTablesMessage>, NftError> {
        match self.conn.request(Checked(msg), NLM_F_DUMP) {
            Ok(msgs) => Ok(nftables_messages(msgs)),
            // A missing table dumps as "no such file": nothing to list.
            Err(NetlinkError::Kernel(k)) if k.errno == libc::ENOENT => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The chains of `family table`.
    pub fn list_chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>, NftError> {
        let req = nf(
            family,
            NfTablesMessage::GetChain(ChainMessage {
                attributes: vec![ChainAttribute::Table(table.into())],
            }),
        );
        Ok(chains_of(self.dump(req)?, table))
    }

    /// The sets and maps of `family table`, anonymous ones included.
    pub fn list_sets(&mut self, family: Family, table: &str) -> Result<Vec<SetInfo>, NftError> {
        let req = nf(
            family,
            NfTablesMessage::GetSet(SetMessage {
                attributes: vec![SetAttribute::Table(table.into())],
            }),
        );
        Ok(sets_of(self.dump(req)?, table))
    }

    /// The elements of set or map `set` of `family table`.
    pub fn list_elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
    ) -> Result<Vec<ElementInfo>, NftError> {
        let req = nf(
            family,
            NfTablesMessage::GetSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.into()),
                    SetElementList::Set(set.into()),
                ],
            }),
        );
        Ok(elements_of(self.dump(req)?))
    }

    /// The rules of `family table` (of one chain, if given), in chain order.
    pub fn list_rules(
        &mut self,
        family: Family,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Vec<RuleInfo>, NftError> {
        let mut attributes = vec![RuleAttribute::Table(table.into())];
        if let Some(c) = chain {
            attributes.push(RuleAttribute::Chain(c.into()));
        }
        let req = nf(family, NfTablesMessage::GetRule(RuleMessage { attributes }));
        Ok(rules_of(self.dump(req)?, table))
    }

    /// Deletes table `family table`, if it exists.
    pub fn delete_table(&mut self, family: Family, table: &str) -> Result<(), NftError> {
        let batch = Batch::delete_table(family, table, self.seq);
        self.seq = self.seq.wrapping_add(3).max(BATCH_SEQ_START);
        match self.send(&batch) {
            Ok(()) => Ok(()),
            Err(Sent::Refused(_, source)) if source.errno == libc::ENOENT => Ok(()),
            Err(Sent::Refused(_, error)) => Err(NftError::Refused {
                op: format!("delete table {family} {table}"),
                error,
            }),
            Err(Sent::Failed(e)) => Err(e),
        }
    }
}
