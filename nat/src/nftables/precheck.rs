//! A check of nftables messages from the kernel before netlink-packet-netfilter 0.4 decodes
//! them: it reads the values of a few attributes as one nested attribute without checking that
//! attribute's length (`NlaBuffer::new` where `new_checked` is needed), and panics on a value
//! that is not one well-formed attribute. Found by the `nftables` fuzz target.
//!
//! Those values are: the data of `cmp`, `bitwise` and `immediate` expressions (in rules, and in
//! the expression lists of sets and set elements), a set's `NFTA_SET_EXPR`, and a set element's
//! key, data and `NFTA_SET_ELEM_EXPR`. This walks the message as the library does and refuses
//! it when one of them is malformed; everything else is left to the library, which checks it.
//! The library decodes every subsystem's messages, so conntrack's socket needs the check too.

use netlink_packet_core::{
    DecodeError, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, NlaBuffer,
};
use netlink_packet_netfilter::NetfilterMessage;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFGENMSG_LEN: usize = 4;
const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_DELRULE: u8 = 8;
const NFT_MSG_NEWSET: u8 = 9;
const NFT_MSG_DELSET: u8 = 11;
const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_DELSETELEM: u8 = 14;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_EXPRESSIONS: u16 = 18;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;

/// A [`NetfilterMessage`] that decodes only after [`check`] passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked(pub(crate) NetfilterMessage);

impl NetlinkSerializable for Checked {
    fn message_type(&self) -> u16 {
        self.0.message_type()
    }

    fn buffer_len(&self) -> usize {
        NetlinkSerializable::buffer_len(&self.0)
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.0.serialize(buffer)
    }
}

impl NetlinkDeserializable for Checked {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        check(header.message_type, payload)?;
        NetfilterMessage::deserialize(header, payload).map(Checked)
    }
}

/// The attributes in `buf`, as netlink-packet-core's `NlasIterator` yields them, ending at the
/// first malformed one (which the library refuses by itself): kind (flags cleared) and value.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    podnet_links::nlattr::attrs(buf).map_while(Result::ok)
}

/// `value` must be one well-formed attribute.
fn one_attr(value: &[u8], what: &str) -> Result<(), DecodeError> {
    NlaBuffer::new_checked(value)
        .map(drop)
        .map_err(|e| DecodeError::from(format!("nftables {what}: {e}")))
}

/// Refuses an nftables message of type `message_type` (with the nfgenmsg header) that
/// netlink-packet-netfilter 0.4 would panic on.
pub(crate) fn check(message_type: u16, payload: &[u8]) -> Result<(), DecodeError> {
    if message_type >> 8 != NFNL_SUBSYS_NFTABLES {
        return Ok(());
    }
    let Some(body) = payload.get(NFGENMSG_LEN..) else {
        return Ok(());
    };
    match message_type as u8 {
        NFT_MSG_NEWRULE..=NFT_MSG_DELRULE => {
            for (kind, v) in attrs(body) {
                if kind == NFTA_RULE_EXPRESSIONS {
                    expression_list(v)?;
                }
            }
        }
        NFT_MSG_NEWSET..=NFT_MSG_DELSET => {
            for (kind, v) in attrs(body) {
                match kind {
                    NFTA_SET_EXPR => one_attr(v, "set expression")?,
                    NFTA_SET_EXPRESSIONS => expression_list(v)?,
                    _ => {}
                }
            }
        }
        NFT_MSG_NEWSETELEM..=NFT_MSG_DELSETELEM => {
            for (kind, v) in attrs(body) {
                if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
                    continue;
                }
                for (kind, element) in attrs(v) {
                    if kind != NFTA_LIST_ELEM {
                        continue;
                    }
                    for (kind, v) in attrs(element) {
                        match kind {
                            NFTA_SET_ELEM_KEY => one_attr(v, "set element key")?,
                            NFTA_SET_ELEM_DATA => one_attr(v, "set element data")?,
                            NFTA_SET_ELEM_EXPR => one_attr(v, "set element expression")?,
                            NFTA_SET_ELEM_EXPRESSIONS => expression_list(v)?,
                            _ => {}
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A list of expressions: in each, the attribute right after `NFTA_EXPR_NAME` is decoded by that
/// name (the library's rule), and the data of `cmp`, `bitwise` and `immediate` holds values that
/// must be one attribute.
fn expression_list(buf: &[u8]) -> Result<(), DecodeError> {
    for (kind, element) in attrs(buf) {
        if kind != NFTA_LIST_ELEM {
            continue;
        }
        let mut name: Option<&[u8]> = None;
        for (kind, v) in attrs(element) {
            let named = name.take();
            match kind {
                // One trailing NUL dropped, as netlink-packet-core's parse_string does.
                NFTA_EXPR_NAME => name = Some(v.strip_suffix(&[0]).unwrap_or(v)),
                NFTA_EXPR_DATA => {
                    let nested: &[u16] = match named {
                        Some(b"cmp") => &[3],           // NFTA_CMP_DATA
                        Some(b"bitwise") => &[4, 5, 7], // NFTA_BITWISE_MASK, _XOR, _DATA
                        Some(b"immediate") => &[2],     // NFTA_IMMEDIATE_DATA
                        _ => &[],
                    };
                    for (kind, v) in attrs(v) {
                        if nested.contains(&kind) {
                            one_attr(v, "expression data")?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
