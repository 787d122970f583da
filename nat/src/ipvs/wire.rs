//! The IPVS generic netlink messages, as the kernel's `include/uapi/linux/ip_vs.h` defines them.
//!
//! [`IpvsMessage`] is the payload of a [`GenlMessage`](netlink_packet_generic::GenlMessage):
//! a command and its attributes, each one optional as on the wire. Encoding writes only the
//! attributes that are set; decoding validates every length before reading, keeps what it knows
//! and skips attribute types it does not know (a newer kernel's additions). The typed values of
//! [`super`] convert to and from these attribute sets.
//!
//! Byte order follows the kernel: ports (and the IPv4 persistence netmask) are carried in
//! network byte order inside attributes declared `u16`/`u32`; everything else is native.
//! [`ServiceAttrs::port`] and [`DestAttrs::port`] hold host-order numbers; the conversion
//! happens here.

use super::attr::{self, AttrWriter};
use netlink_packet_core::{DecodeError, Emitable, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// The generic netlink family name.
pub const FAMILY_NAME: &str = "IPVS";
/// The family's protocol version (`IPVS_GENL_VERSION`).
pub const FAMILY_VERSION: u8 = 1;

/// Command numbers (`IPVS_CMD_*`).
pub mod cmd {
    /// Add a service.
    pub const NEW_SERVICE: u8 = 1;
    /// Change a service.
    pub const SET_SERVICE: u8 = 2;
    /// Delete a service.
    pub const DEL_SERVICE: u8 = 3;
    /// Get one service, or dump all.
    pub const GET_SERVICE: u8 = 4;
    /// Add a destination.
    pub const NEW_DEST: u8 = 5;
    /// Change a destination.
    pub const SET_DEST: u8 = 6;
    /// Delete a destination.
    pub const DEL_DEST: u8 = 7;
    /// Dump the destinations of a service.
    pub const GET_DEST: u8 = 8;
    /// Start a sync daemon.
    pub const NEW_DAEMON: u8 = 9;
    /// Stop a sync daemon.
    pub const DEL_DAEMON: u8 = 10;
    /// Dump the sync daemons.
    pub const GET_DAEMON: u8 = 11;
    /// Set the connection timeouts.
    pub const SET_CONFIG: u8 = 12;
    /// Get the connection timeouts (answered with `SET_CONFIG`).
    pub const GET_CONFIG: u8 = 13;
    /// The answer to `GET_INFO`.
    pub const SET_INFO: u8 = 14;
    /// Get the IPVS version and connection table size.
    pub const GET_INFO: u8 = 15;
    /// Zero the counters.
    pub const ZERO: u8 = 16;
    /// Delete every service and destination.
    pub const FLUSH: u8 = 17;
}

// IPVS_CMD_ATTR_*
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

// IPVS_SVC_ATTR_*
const SVC_AF: u16 = 1;
const SVC_PROTOCOL: u16 = 2;
const SVC_ADDR: u16 = 3;
const SVC_PORT: u16 = 4;
const SVC_FWMARK: u16 = 5;
const SVC_SCHED_NAME: u16 = 6;
const SVC_FLAGS: u16 = 7;
const SVC_TIMEOUT: u16 = 8;
const SVC_NETMASK: u16 = 9;
const SVC_STATS: u16 = 10;
const SVC_PE_NAME: u16 = 11;
const SVC_STATS64: u16 = 12;

// IPVS_DEST_ATTR_*
const DEST_ADDR: u16 = 1;
const DEST_PORT: u16 = 2;
const DEST_FWD_METHOD: u16 = 3;
const DEST_WEIGHT: u16 = 4;
const DEST_U_THRESH: u16 = 5;
const DEST_L_THRESH: u16 = 6;
const DEST_ACTIVE_CONNS: u16 = 7;
const DEST_INACT_CONNS: u16 = 8;
const DEST_PERSIST_CONNS: u16 = 9;
const DEST_STATS: u16 = 10;
const DEST_ADDR_FAMILY: u16 = 11;
const DEST_STATS64: u16 = 12;
const DEST_TUN_TYPE: u16 = 13;
const DEST_TUN_PORT: u16 = 14;
const DEST_TUN_FLAGS: u16 = 15;

// IPVS_STATS_ATTR_*
const STATS_CONNS: u16 = 1;
const STATS_INPKTS: u16 = 2;
const STATS_OUTPKTS: u16 = 3;
const STATS_INBYTES: u16 = 4;
const STATS_OUTBYTES: u16 = 5;
const STATS_CPS: u16 = 6;
const STATS_INPPS: u16 = 7;
const STATS_OUTPPS: u16 = 8;
const STATS_INBPS: u16 = 9;
const STATS_OUTBPS: u16 = 10;

// IPVS_INFO_ATTR_* (top level of a SET_INFO answer)
const INFO_VERSION: u16 = 1;
const INFO_CONN_TAB_SIZE: u16 = 2;

/// `struct ip_vs_flags`: the service flags to set, and which of them to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagsMask {
    /// Flag values.
    pub flags: u32,
    /// The flags that `flags` sets or clears; others keep their value.
    pub mask: u32,
}

/// Counters and rates of a service or destination (`IPVS_STATS_ATTR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub in_packets: u64,
    /// Outgoing packets.
    pub out_packets: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
    /// Current connection rate.
    pub cps: u64,
    /// Current incoming packet rate.
    pub in_pps: u64,
    /// Current outgoing packet rate.
    pub out_pps: u64,
    /// Current incoming byte rate.
    pub in_bps: u64,
    /// Current outgoing byte rate.
    pub out_bps: u64,
}

/// The attributes of a service (`IPVS_CMD_ATTR_SERVICE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceAttrs {
    /// Address family (`AF_INET` or `AF_INET6`).
    pub af: Option<u16>,
    /// IP protocol number.
    pub protocol: Option<u16>,
    /// Virtual address (`union nf_inet_addr`: 16 bytes, IPv4 in the first four).
    pub addr: Option<Vec<u8>>,
    /// Virtual port, host order.
    pub port: Option<u16>,
    /// Firewall mark (instead of protocol, address and port).
    pub fwmark: Option<u32>,
    /// Scheduler name.
    pub sched_name: Option<String>,
    /// Flags.
    pub flags: Option<FlagsMask>,
    /// Persistence timeout in seconds.
    pub timeout: Option<u32>,
    /// Persistence netmask as the kernel carries it: for IPv4 the mask's four bytes in network
    /// order read as a native u32, for IPv6 the prefix length.
    pub netmask: Option<u32>,
    /// Persistence engine name.
    pub pe_name: Option<String>,
    /// Statistics, 32-bit counters.
    pub stats: Option<Stats>,
    /// Statistics, 64-bit counters.
    pub stats64: Option<Stats>,
}

/// The attributes of a destination (`IPVS_CMD_ATTR_DEST`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestAttrs {
    /// Real server address (16 bytes).
    pub addr: Option<Vec<u8>>,
    /// Real server port, host order.
    pub port: Option<u16>,
    /// Forwarding method (`IP_VS_CONN_F_*` & `IP_VS_CONN_F_FWD_MASK`).
    pub fwd_method: Option<u32>,
    /// Weight.
    pub weight: Option<u32>,
    /// Upper connection threshold.
    pub u_thresh: Option<u32>,
    /// Lower connection threshold.
    pub l_thresh: Option<u32>,
    /// Active connections.
    pub active_conns: Option<u32>,
    /// Inactive connections.
    pub inact_conns: Option<u32>,
    /// Persistent connections.
    pub persist_conns: Option<u32>,
    /// Statistics, 32-bit counters.
    pub stats: Option<Stats>,
    /// Address family of the address (when it differs from the service's).
    pub addr_family: Option<u16>,
    /// Statistics, 64-bit counters.
    pub stats64: Option<Stats>,
    /// Tunnel type.
    pub tun_type: Option<u8>,
    /// Tunnel port, host order.
    pub tun_port: Option<u16>,
    /// Tunnel flags.
    pub tun_flags: Option<u16>,
}

/// The answer to `GET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoAttrs {
    /// `IP_VS_VERSION_CODE`, e.g. `0x010201` for 1.2.1.
    pub version: Option<u32>,
    /// Size of the connection hash table.
    pub conn_tab_size: Option<u32>,
}

/// One IPVS generic netlink message: a command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpvsMessage {
    /// The command, one of [`cmd`].
    pub cmd: u8,
    /// The service attributes.
    pub service: Option<ServiceAttrs>,
    /// The destination attributes.
    pub dest: Option<DestAttrs>,
    /// TCP timeout (config commands).
    pub timeout_tcp: Option<u32>,
    /// TCP FIN-wait timeout.
    pub timeout_tcp_fin: Option<u32>,
    /// UDP timeout.
    pub timeout_udp: Option<u32>,
    /// The info attributes (only in `SET_INFO`, where they are the top-level attributes).
    pub info: Option<InfoAttrs>,
}

impl IpvsMessage {
    /// A message with `cmd` and no attributes.
    pub fn new(cmd: u8) -> IpvsMessage {
        IpvsMessage {
            cmd,
            ..IpvsMessage::default()
        }
    }

    /// The attributes, encoded (the bytes after the generic netlink header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = AttrWriter::new();
        if self.cmd == cmd::SET_INFO {
            if let Some(info) = &self.info {
                put_u32(&mut w, INFO_VERSION, info.version);
                put_u32(&mut w, INFO_CONN_TAB_SIZE, info.conn_tab_size);
            }
        }
        if let Some(s) = &self.service {
            w.nested(CMD_ATTR_SERVICE, |n| write_service(n, s));
        }
        if let Some(d) = &self.dest {
            w.nested(CMD_ATTR_DEST, |n| write_dest(n, d));
        }
        put_u32(&mut w, CMD_ATTR_TIMEOUT_TCP, self.timeout_tcp);
        put_u32(&mut w, CMD_ATTR_TIMEOUT_TCP_FIN, self.timeout_tcp_fin);
        put_u32(&mut w, CMD_ATTR_TIMEOUT_UDP, self.timeout_udp);
        w.into_bytes()
    }

    /// Decodes the attributes of a message with command `cmd`.
    pub fn parse(cmd: u8, buf: &[u8]) -> Result<IpvsMessage, DecodeError> {
        let mut m = IpvsMessage::new(cmd);
        if cmd == cmd::SET_INFO {
            let mut info = InfoAttrs::default();
            for a in attr::attrs(buf) {
                let (kind, v) = a?;
                match kind {
                    INFO_VERSION => info.version = Some(attr::u32_ne("info version", v)?),
                    INFO_CONN_TAB_SIZE => {
                        info.conn_tab_size = Some(attr::u32_ne("info conn_tab_size", v)?)
                    }
                    _ => {}
                }
            }
            m.info = Some(info);
            return Ok(m);
        }
        for a in attr::attrs(buf) {
            let (kind, v) = a?;
            match kind {
                CMD_ATTR_SERVICE => m.service = Some(parse_service(v)?),
                CMD_ATTR_DEST => m.dest = Some(parse_dest(v)?),
                CMD_ATTR_TIMEOUT_TCP => m.timeout_tcp = Some(attr::u32_ne("tcp timeout", v)?),
                CMD_ATTR_TIMEOUT_TCP_FIN => {
                    m.timeout_tcp_fin = Some(attr::u32_ne("tcp fin timeout", v)?)
                }
                CMD_ATTR_TIMEOUT_UDP => m.timeout_udp = Some(attr::u32_ne("udp timeout", v)?),
                _ => {}
            }
        }
        Ok(m)
    }
}

fn put_u32(w: &mut AttrWriter, kind: u16, v: Option<u32>) {
    if let Some(v) = v {
        w.u32_ne(kind, v);
    }
}

fn write_stats(w: &mut AttrWriter, s: &Stats, wide: bool) {
    let small = |w: &mut AttrWriter, kind: u16, v: u64| {
        if wide {
            w.u64_ne(kind, v);
        } else {
            w.u32_ne(kind, v as u32);
        }
    };
    small(w, STATS_CONNS, s.conns);
    small(w, STATS_INPKTS, s.in_packets);
    small(w, STATS_OUTPKTS, s.out_packets);
    w.u64_ne(STATS_INBYTES, s.in_bytes);
    w.u64_ne(STATS_OUTBYTES, s.out_bytes);
    small(w, STATS_CPS, s.cps);
    small(w, STATS_INPPS, s.in_pps);
    small(w, STATS_OUTPPS, s.out_pps);
    small(w, STATS_INBPS, s.in_bps);
    small(w, STATS_OUTBPS, s.out_bps);
}

fn parse_stats(buf: &[u8]) -> Result<Stats, DecodeError> {
    let mut s = Stats::default();
    for a in attr::attrs(buf) {
        let (kind, v) = a?;
        let slot = match kind {
            STATS_CONNS => &mut s.conns,
            STATS_INPKTS => &mut s.in_packets,
            STATS_OUTPKTS => &mut s.out_packets,
            STATS_INBYTES => &mut s.in_bytes,
            STATS_OUTBYTES => &mut s.out_bytes,
            STATS_CPS => &mut s.cps,
            STATS_INPPS => &mut s.in_pps,
            STATS_OUTPPS => &mut s.out_pps,
            STATS_INBPS => &mut s.in_bps,
            STATS_OUTBPS => &mut s.out_bps,
            _ => continue,
        };
        *slot = attr::counter("stats counter", v)?;
    }
    Ok(s)
}

fn write_service(w: &mut AttrWriter, s: &ServiceAttrs) {
    if let Some(v) = s.af {
        w.u16_ne(SVC_AF, v);
    }
    if let Some(v) = s.protocol {
        w.u16_ne(SVC_PROTOCOL, v);
    }
    if let Some(v) = &s.addr {
        w.bytes(SVC_ADDR, v);
    }
    if let Some(v) = s.port {
        w.bytes(SVC_PORT, &v.to_be_bytes());
    }
    put_u32(w, SVC_FWMARK, s.fwmark);
    if let Some(v) = &s.sched_name {
        w.string(SVC_SCHED_NAME, v);
    }
    if let Some(f) = s.flags {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&f.flags.to_ne_bytes());
        b[4..].copy_from_slice(&f.mask.to_ne_bytes());
        w.bytes(SVC_FLAGS, &b);
    }
    put_u32(w, SVC_TIMEOUT, s.timeout);
    put_u32(w, SVC_NETMASK, s.netmask);
    if let Some(v) = &s.stats {
        w.nested(SVC_STATS, |n| write_stats(n, v, false));
    }
    if let Some(v) = &s.pe_name {
        w.string(SVC_PE_NAME, v);
    }
    if let Some(v) = &s.stats64 {
        w.nested(SVC_STATS64, |n| write_stats(n, v, true));
    }
}

fn parse_service(buf: &[u8]) -> Result<ServiceAttrs, DecodeError> {
    let mut s = ServiceAttrs::default();
    for a in attr::attrs(buf) {
        let (kind, v) = a?;
        match kind {
            SVC_AF => s.af = Some(attr::u16_ne("service af", v)?),
            SVC_PROTOCOL => s.protocol = Some(attr::u16_ne("service protocol", v)?),
            SVC_ADDR => s.addr = Some(v.to_vec()),
            SVC_PORT => s.port = Some(attr::u16_be("service port", v)?),
            SVC_FWMARK => s.fwmark = Some(attr::u32_ne("service fwmark", v)?),
            SVC_SCHED_NAME => s.sched_name = Some(attr::string("scheduler name", v)?),
            SVC_FLAGS => {
                let flags = v.get(..4).map(|b| attr::u32_ne("service flags", b));
                let mask = v.get(4..8).map(|b| attr::u32_ne("service flags mask", b));
                match (flags, mask, v.len()) {
                    (Some(f), Some(m), 8) => {
                        s.flags = Some(FlagsMask {
                            flags: f?,
                            mask: m?,
                        })
                    }
                    _ => {
                        return Err(DecodeError::from(format!(
                            "service flags: expected 8 bytes, got {}",
                            v.len()
                        )));
                    }
                }
            }
            SVC_TIMEOUT => s.timeout = Some(attr::u32_ne("service timeout", v)?),
            SVC_NETMASK => s.netmask = Some(attr::u32_ne("service netmask", v)?),
            SVC_STATS => s.stats = Some(parse_stats(v)?),
            SVC_PE_NAME => s.pe_name = Some(attr::string("persistence engine", v)?),
            SVC_STATS64 => s.stats64 = Some(parse_stats(v)?),
            _ => {}
        }
    }
    Ok(s)
}

fn write_dest(w: &mut AttrWriter, d: &DestAttrs) {
    if let Some(v) = &d.addr {
        w.bytes(DEST_ADDR, v);
    }
    if let Some(v) = d.port {
        w.bytes(DEST_PORT, &v.to_be_bytes());
    }
    put_u32(w, DEST_FWD_METHOD, d.fwd_method);
    put_u32(w, DEST_WEIGHT, d.weight);
    put_u32(w, DEST_U_THRESH, d.u_thresh);
    put_u32(w, DEST_L_THRESH, d.l_thresh);
    put_u32(w, DEST_ACTIVE_CONNS, d.active_conns);
    put_u32(w, DEST_INACT_CONNS, d.inact_conns);
    put_u32(w, DEST_PERSIST_CONNS, d.persist_conns);
    if let Some(v) = &d.stats {
        w.nested(DEST_STATS, |n| write_stats(n, v, false));
    }
    if let Some(v) = d.addr_family {
        w.u16_ne(DEST_ADDR_FAMILY, v);
    }
    if let Some(v) = &d.stats64 {
        w.nested(DEST_STATS64, |n| write_stats(n, v, true));
    }
    if let Some(v) = d.tun_type {
        w.bytes(DEST_TUN_TYPE, &[v]);
    }
    if let Some(v) = d.tun_port {
        w.bytes(DEST_TUN_PORT, &v.to_be_bytes());
    }
    if let Some(v) = d.tun_flags {
        w.u16_ne(DEST_TUN_FLAGS, v);
    }
}

fn parse_dest(buf: &[u8]) -> Result<DestAttrs, DecodeError> {
    let mut d = DestAttrs::default();
    for a in attr::attrs(buf) {
        let (kind, v) = a?;
        match kind {
            DEST_ADDR => d.addr = Some(v.to_vec()),
            DEST_PORT => d.port = Some(attr::u16_be("destination port", v)?),
            DEST_FWD_METHOD => d.fwd_method = Some(attr::u32_ne("forwarding method", v)?),
            DEST_WEIGHT => d.weight = Some(attr::u32_ne("weight", v)?),
            DEST_U_THRESH => d.u_thresh = Some(attr::u32_ne("upper threshold", v)?),
            DEST_L_THRESH => d.l_thresh = Some(attr::u32_ne("lower threshold", v)?),
            DEST_ACTIVE_CONNS => d.active_conns = Some(attr::u32_ne("active conns", v)?),
            DEST_INACT_CONNS => d.inact_conns = Some(attr::u32_ne("inactive conns", v)?),
            DEST_PERSIST_CONNS => d.persist_conns = Some(attr::u32_ne("persistent conns", v)?),
            DEST_STATS => d.stats = Some(parse_stats(v)?),
            DEST_ADDR_FAMILY => d.addr_family = Some(attr::u16_ne("address family", v)?),
            DEST_STATS64 => d.stats64 = Some(parse_stats(v)?),
            DEST_TUN_TYPE => match v {
                [t] => d.tun_type = Some(*t),
                _ => {
                    return Err(DecodeError::from(format!(
                        "tunnel type: expected 1 byte, got {}",
                        v.len()
                    )));
                }
            },
            DEST_TUN_PORT => d.tun_port = Some(attr::u16_be("tunnel port", v)?),
            DEST_TUN_FLAGS => d.tun_flags = Some(attr::u16_ne("tunnel flags", v)?),
            _ => {}
        }
    }
    Ok(d)
}

/// The netlink-packet-generic glue of a generic netlink payload that has `to_bytes` and
/// `parse(cmd, buf)`: emitted as its bytes, parsed by the command of its header.
macro_rules! genl_payload {
    ($t:ty) => {
        impl Emitable for $t {
            fn buffer_len(&self) -> usize {
                self.to_bytes().len()
            }

            fn emit(&self, buffer: &mut [u8]) {
                let bytes = self.to_bytes();
                let n = bytes.len().min(buffer.len());
                buffer[..n].copy_from_slice(&bytes[..n]);
            }
        }

        impl ParseableParametrized<[u8], GenlHeader> for $t {
            fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
                <$t>::parse(header.cmd, buf)
            }
        }
    };
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

genl_payload!(IpvsMessage);

// The generic netlink controller, for the family lookup. netlink-packet-generic has one, but
// its decoder refuses attribute types it does not know, which a newer kernel may send.
const GENL_ID_CTRL: u16 = 16;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// A generic netlink controller message: the family lookup (`CTRL_CMD_GETFAMILY`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CtrlMessage {
    /// The command.
    pub cmd: u8,
    /// The family's name.
    pub family_name: Option<String>,
    /// The family's id (in answers).
    pub family_id: Option<u16>,
}

impl CtrlMessage {
    /// Asks for the family named `name`.
    pub fn get_family(name: &str) -> CtrlMessage {
        CtrlMessage {
            cmd: CTRL_CMD_GETFAMILY,
            family_name: Some(name.to_owned()),
            family_id: None,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = AttrWriter::new();
        if let Some(id) = self.family_id {
            w.u16_ne(CTRL_ATTR_FAMILY_ID, id);
        }
        if let Some(name) = &self.family_name {
            w.string(CTRL_ATTR_FAMILY_NAME, name);
        }
        w.into_bytes()
    }

    /// Decodes a controller message's attributes (unknown ones are skipped).
    pub fn parse(cmd: u8, buf: &[u8]) -> Result<CtrlMessage, DecodeError> {
        let mut m = CtrlMessage {
            cmd,
            ..CtrlMessage::default()
        };
        for a in attr::attrs(buf) {
            let (kind, v) = a?;
            match kind {
                CTRL_ATTR_FAMILY_ID => m.family_id = Some(attr::u16_ne("family id", v)?),
                CTRL_ATTR_FAMILY_NAME => m.family_name = Some(attr::string("family name", v)?),
                _ => {}
            }
        }
        Ok(m)
    }
}

impl GenlFamily for CtrlMessage {
    fn family_name() -> &'static str {
        "nlctrl"
    }

    fn family_id(&self) -> u16 {
        GENL_ID_CTRL
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

genl_payload!(CtrlMessage);

#[cfg(test)]
mod tests {
    use super::*;

    /// ipvsadm's `-A -t 10.96.0.10:80 -s rr` as libipvs sends it, attribute by attribute.
    #[test]
    fn new_service_bytes_match_the_kernel_layout() {
        let mut addr = vec![10, 96, 0, 10];
        addr.resize(16, 0);
        let m = IpvsMessage {
            cmd: cmd::NEW_SERVICE,
            service: Some(ServiceAttrs {
                af: Some(2),
                protocol: Some(6),
                addr: Some(addr),
                port: Some(80),
                sched_name: Some("rr".into()),
                flags: Some(FlagsMask {
                    flags: 0,
                    mask: u32::MAX,
                }),
                timeout: Some(0),
                netmask: Some(u32::from_ne_bytes([255, 255, 255, 255])),
                ..ServiceAttrs::default()
            }),
            ..IpvsMessage::default()
        };
        let b = m.to_bytes();
        // Outer nested attribute: type 1 with NLA_F_NESTED.
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 0x8001);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]) as usize, b.len());
        let inner = &b[4..];
        // af (u16, padded to 8 bytes), protocol, addr (4 + 16), port in network order.
        assert_eq!(&inner[..6], &[6, 0, 1, 0, 2, 0]);
        assert_eq!(&inner[8..14], &[6, 0, 2, 0, 6, 0]);
        assert_eq!(&inner[16..20], &[20, 0, 3, 0]);
        assert_eq!(&inner[20..24], &[10, 96, 0, 10]);
        assert_eq!(&inner[36..42], &[6, 0, 4, 0, 0, 80]);
        // The scheduler name is NUL-terminated.
        assert_eq!(&inner[44..51], &[7, 0, 6, 0, b'r', b'r', 0]);
        assert_eq!(IpvsMessage::parse(cmd::NEW_SERVICE, &b).unwrap(), m);
    }

    #[test]
    fn info_answer_uses_top_level_info_attributes() {
        let m = IpvsMessage {
            cmd: cmd::SET_INFO,
            info: Some(InfoAttrs {
                version: Some(0x010201),
                conn_tab_size: Some(4096),
            }),
            ..IpvsMessage::default()
        };
        let b = m.to_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(IpvsMessage::parse(cmd::SET_INFO, &b).unwrap(), m);
    }

    #[test]
    fn stats_read_both_widths_and_unknown_attributes_are_skipped() {
        let mut w = AttrWriter::new();
        w.nested(CMD_ATTR_DEST, |d| {
            d.bytes(DEST_PORT, &8080u16.to_be_bytes());
            d.nested(DEST_STATS, |s| {
                s.u32_ne(STATS_CONNS, 3);
                s.u64_ne(STATS_INBYTES, 1 << 40);
            });
            d.u32_ne(99, 1); // unknown
        });
        w.u32_ne(42, 7); // unknown top-level attribute
        let m = IpvsMessage::parse(cmd::NEW_DEST, &w.into_bytes()).unwrap();
        let d = m.dest.unwrap();
        assert_eq!(d.port, Some(8080));
        let s = d.stats.unwrap();
        assert_eq!((s.conns, s.in_bytes), (3, 1 << 40));
    }

    #[test]
    fn ctrl_lookup_roundtrip() {
        let m = CtrlMessage::get_family("IPVS");
        let b = m.to_bytes();
        assert_eq!(&b, &[9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0]);
        assert_eq!(CtrlMessage::parse(CTRL_CMD_GETFAMILY, &b).unwrap(), m);
    }
}
