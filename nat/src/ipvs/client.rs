//! The IPVS client: one generic netlink socket, bound to one network namespace.

use super::types::{
    Destination, DestinationEntry, Info, ServiceEntry, ServiceId, Timeouts, VirtualService,
};
use super::wire::{self, CtrlMessage, IpvsMessage, cmd};
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_generic::GenlMessage;
use podnet_links::netlink::{Connection, KernelError, NetlinkError};
use podnet_netns::NetNs;
use std::net::SocketAddr;

/// What went wrong in an IPVS request. Each error names the operation and its object, e.g.
/// `add service TCP 10.96.0.10:80: already exists`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpvsError {
    /// The kernel has no "IPVS" generic netlink family: `ip_vs` is not built in or loaded.
    #[error(
        "IPVS is not available in this kernel (no generic netlink family \"IPVS\"; \
         load the ip_vs module)"
    )]
    NotAvailable,
    /// The service or destination exists already (`EEXIST`).
    #[error("{op} {what}: already exists")]
    Exists {
        /// The operation, e.g. `add service`.
        op: &'static str,
        /// Its object.
        what: String,
    },
    /// The service (`ESRCH`) or the destination (`ENOENT` from a destination command) does
    /// not exist.
    #[error("{op} {what}: no such {object}")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// Its object.
        what: String,
        /// Which kind of object is missing.
        object: IpvsObject,
    },
    /// The kernel has no scheduler (or persistence engine) of that name (`ENOENT` from a
    /// service command): its module `ip_vs_<name>` is not loaded and could not be.
    #[error("{op} {what}: unknown scheduler {scheduler:?} (is module ip_vs_{scheduler} loaded?)")]
    UnknownScheduler {
        /// The operation.
        op: &'static str,
        /// Its object.
        what: String,
        /// The scheduler asked for.
        scheduler: String,
    },
    /// The request was refused before it was sent: the message says why.
    #[error("{op} {what}: {message}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// Its object.
        what: String,
        /// Why.
        message: String,
    },
    /// The kernel refused the request with another error.
    #[error("{op} {what}: {error}")]
    Kernel {
        /// The operation.
        op: &'static str,
        /// Its object.
        what: String,
        /// The errno and the kernel's message.
        error: KernelError,
    },
    /// The socket failed, or an answer could not be decoded.
    #[error("{op} {what}: {source}")]
    Netlink {
        /// The operation.
        op: &'static str,
        /// Its object.
        what: String,
        /// The failure.
        source: NetlinkError,
    },
}

impl IpvsError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IpvsError::Exists { .. } => Some(libc::EEXIST),
            IpvsError::NotFound {
                object: IpvsObject::Service,
                ..
            } => Some(libc::ESRCH),
            IpvsError::NotFound {
                object: IpvsObject::Destination,
                ..
            }
            | IpvsError::UnknownScheduler { .. } => Some(libc::ENOENT),
            IpvsError::Kernel { error, .. } => Some(error.errno),
            IpvsError::NotAvailable => Some(libc::ENOENT),
            IpvsError::Invalid { .. } | IpvsError::Netlink { .. } => None,
        }
    }

    /// `true` for [`IpvsError::Exists`].
    pub fn is_exists(&self) -> bool {
        matches!(self, IpvsError::Exists { .. })
    }

    /// `true` when the service or destination asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, IpvsError::NotFound { .. })
    }
}

/// The kind of object an [`IpvsError::NotFound`] misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsObject {
    /// A virtual service.
    Service,
    /// A destination (real server) of a service.
    Destination,
}

impl std::fmt::Display for IpvsObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpvsObject::Service => "service",
            IpvsObject::Destination => "destination",
        })
    }
}

/// Which object an operation is about, to turn ENOENT into the right error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Object {
    Service,
    Destination,
    Other,
}

fn classify(
    op: &'static str,
    what: String,
    object: Object,
    scheduler: Option<&str>,
    e: NetlinkError,
) -> IpvsError {
    match e {
        NetlinkError::Kernel(k) => match (k.errno, object) {
            (libc::EEXIST, _) => IpvsError::Exists { op, what },
            (libc::ESRCH, _) => IpvsError::NotFound {
                op,
                what,
                object: IpvsObject::Service,
            },
            (libc::ENOENT, Object::Destination) => IpvsError::NotFound {
                op,
                what,
                object: IpvsObject::Destination,
            },
            (libc::ENOENT, Object::Service) if scheduler.is_some() => IpvsError::UnknownScheduler {
                op,
                what,
                scheduler: scheduler.unwrap_or_default().to_owned(),
            },
            _ => IpvsError::Kernel { op, what, error: k },
        },
        other => IpvsError::Netlink {
            op,
            what,
            source: other,
        },
    }
}

/// A client of the kernel's IPVS, bound to the network namespace it was opened in (IPVS
/// tables are per namespace).
///
/// ```no_run
/// use podnet_nat::ipvs::{Destination, Ipvs, Scheduler, ServiceId, VirtualService};
///
/// # fn main() -> Result<(), podnet_nat::ipvs::IpvsError> {
/// let mut ipvs = Ipvs::new()?;
/// let id = ServiceId::tcp("10.96.0.10:80".parse().unwrap());
/// ipvs.add_service(&VirtualService::new(id).scheduler(Scheduler::WeightedRoundRobin))?;
/// ipvs.add_destination(&id, &Destination::new("10.244.1.2:8080".parse().unwrap()).weight(2))?;
/// for entry in ipvs.list_services()? {
///     println!("{} {}", entry.service.id, entry.service.scheduler);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Ipvs {
    conn: Connection,
    family: u16,
}

impl Ipvs {
    /// Opens a client in the calling thread's namespace.
    pub fn new() -> Result<Ipvs, IpvsError> {
        let conn = Connection::new(netlink_sys::protocols::NETLINK_GENERIC).map_err(|e| {
            IpvsError::Netlink {
                op: "open",
                what: "generic netlink socket".into(),
                source: e,
            }
        })?;
        Ipvs::with_connection(conn)
    }

    /// Opens a client in `ns`.
    pub fn in_ns(ns: &NetNs) -> Result<Ipvs, IpvsError> {
        let conn =
            Connection::new_in(ns, netlink_sys::protocols::NETLINK_GENERIC).map_err(|e| {
                IpvsError::Netlink {
                    op: "open",
                    what: format!("generic netlink socket in {}", ns_name(ns)),
                    source: e,
                }
            })?;
        Ipvs::with_connection(conn)
    }

    fn with_connection(mut conn: Connection) -> Result<Ipvs, IpvsError> {
        let family = resolve_family(&mut conn, wire::FAMILY_NAME)?;
        Ok(Ipvs { conn, family })
    }

    /// The id the kernel gave the "IPVS" generic netlink family.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    fn request(&mut self, msg: IpvsMessage, flags: u16) -> Result<Vec<IpvsMessage>, NetlinkError> {
        let genl = GenlMessage::from_payload(msg);
        let mut genl = genl;
        genl.set_resolved_family_id(self.family);
        Ok(self
            .conn
            .request(genl, flags)?
            .into_iter()
            .map(|m| m.payload)
            .collect())
    }

    /// The IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, IpvsError> {
        let what = String::new();
        let replies = self
            .request(IpvsMessage::new(cmd::GET_INFO), 0)
            .map_err(|e| classify("get info", what, Object::Other, None, e))?;
        info_of(&replies)
    }

    /// Every service (`ipvsadm -L` without destinations).
    pub fn list_services(&mut self) -> Result<Vec<ServiceEntry>, IpvsError> {
        let replies = self
            .request(IpvsMessage::new(cmd::GET_SERVICE), NLM_F_DUMP)
            .map_err(|e| classify("list services", String::new(), Object::Other, None, e))?;
        services_of(&replies, "list services", String::new())
    }

    /// One service, or `None` when it does not exist.
    pub fn get_service(&mut self, id: &ServiceId) -> Result<Option<ServiceEntry>, IpvsError> {
        let mut msg = IpvsMessage::new(cmd::GET_SERVICE);
        msg.service = Some(id.to_attrs());
        match self.request(msg, 0) {
            Ok(replies) => first_service_of(&replies, id),
            Err(e) => match classify("get service", id.to_string(), Object::Service, None, e) {
                IpvsError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    fn change_service(
        &mut self,
        op: &'static str,
        command: u8,
        svc: &VirtualService,
    ) -> Result<(), IpvsError> {
        svc.validate().map_err(|message| IpvsError::Invalid {
            op,
            what: svc.id.to_string(),
            message,
        })?;
        let mut msg = IpvsMessage::new(command);
        msg.service = Some(svc.to_attrs());
        self.request(msg, 0).map(drop).map_err(|e| {
            classify(
                op,
                svc.id.to_string(),
                Object::Service,
                Some(svc.scheduler.name()),
                e,
            )
        })
    }

    /// Adds a service (`ipvsadm -A`); [`IpvsError::Exists`] if it exists.
    pub fn add_service(&mut self, svc: &VirtualService) -> Result<(), IpvsError> {
        self.change_service("add service", cmd::NEW_SERVICE, svc)
    }

    /// Changes a service's scheduler, flags and persistence (`ipvsadm -E`), keeping its
    /// destinations and connections; [`IpvsError::NotFound`] if it does not exist.
    pub fn edit_service(&mut self, svc: &VirtualService) -> Result<(), IpvsError> {
        self.change_service("edit service", cmd::SET_SERVICE, svc)
    }

    /// Deletes a service and its destinations (`ipvsadm -D`).
    pub fn del_service(&mut self, id: &ServiceId) -> Result<(), IpvsError> {
        let mut msg = IpvsMessage::new(cmd::DEL_SERVICE);
        msg.service = Some(id.to_attrs());
        self.request(msg, 0)
            .map(drop)
            .map_err(|e| classify("delete service", id.to_string(), Object::Service, None, e))
    }

    /// The destinations of a service (`ipvsadm -L -t ADDR`); [`IpvsError::NotFound`] if
    /// the service does not exist.
    pub fn list_destinations(
        &mut self,
        id: &ServiceId,
    ) -> Result<Vec<DestinationEntry>, IpvsError> {
        let mut msg = IpvsMessage::new(cmd::GET_DEST);
        msg.service = Some(id.to_attrs());
        let replies = self.request(msg, NLM_F_DUMP).map_err(|e| {
            classify(
                "list destinations",
                id.to_string(),
                Object::Service,
                None,
                e,
            )
        })?;
        // The kernel answers an empty dump for a missing service: tell the two apart.
        if replies.is_empty() && self.get_service(id)?.is_none() {
            return Err(IpvsError::NotFound {
                op: "list destinations",
                what: id.to_string(),
                object: IpvsObject::Service,
            });
        }
        destinations_of(&replies, id)
    }

    fn change_dest(
        &mut self,
        op: &'static str,
        command: u8,
        id: &ServiceId,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        let what = format!("{} -> {}", id, dest.addr);
        dest.validate().map_err(|message| IpvsError::Invalid {
            op,
            what: what.clone(),
            message,
        })?;
        let mut msg = IpvsMessage::new(command);
        msg.service = Some(id.to_attrs());
        msg.dest = Some(dest.to_attrs());
        self.request(msg, 0)
            .map(drop)
            .map_err(|e| classify(op, what, Object::Destination, None, e))
    }

    /// Adds a destination to a service (`ipvsadm -a`).
    pub fn add_destination(&mut self, id: &ServiceId, dest: &Destination) -> Result<(), IpvsError> {
        self.change_dest("add destination", cmd::NEW_DEST, id, dest)
    }

    /// Changes a destination's weight, forwarding method and thresholds (`ipvsadm -e`).
    pub fn edit_destination(
        &mut self,
        id: &ServiceId,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        self.change_dest("edit destination", cmd::SET_DEST, id, dest)
    }

    /// Deletes a destination from a service (`ipvsadm -d`).
    pub fn del_destination(&mut self, id: &ServiceId, addr: SocketAddr) -> Result<(), IpvsError> {
        let what = format!("{id} -> {addr}");
        let mut msg = IpvsMessage::new(cmd::DEL_DEST);
        msg.service = Some(id.to_attrs());
        msg.dest = Some(Destination::key_attrs(addr));
        self.request(msg, 0)
            .map(drop)
            .map_err(|e| classify("delete destination", what, Object::Destination, None, e))
    }

    /// Deletes every service and destination of the namespace (`ipvsadm -C`).
    pub fn flush(&mut self) -> Result<(), IpvsError> {
        self.request(IpvsMessage::new(cmd::FLUSH), 0)
            .map(drop)
            .map_err(|e| classify("flush", String::new(), Object::Other, None, e))
    }

    /// The connection timeouts (`ipvsadm -L --timeout`).
    pub fn timeouts(&mut self) -> Result<Timeouts, IpvsError> {
        let replies = self
            .request(IpvsMessage::new(cmd::GET_CONFIG), 0)
            .map_err(|e| classify("get timeouts", String::new(), Object::Other, None, e))?;
        timeouts_of(&replies)
    }

    /// Sets the connection timeouts (`ipvsadm --set`); a 0 leaves that timeout unchanged.
    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<(), IpvsError> {
        let mut msg = IpvsMessage::new(cmd::SET_CONFIG);
        msg.timeout_tcp = Some(t.tcp);
        msg.timeout_tcp_fin = Some(t.tcp_fin);
        msg.timeout_udp = Some(t.udp);
        self.request(msg, 0)
            .map(drop)
            .map_err(|e| classify("set timeouts", String::new(), Object::Other, None, e))
    }
}

/// The info in the answer to GET_INFO.
fn info_of(replies: &[IpvsMessage]) -> Result<Info, IpvsError> {
    let info = replies
        .iter()
        .find_map(|m| m.info)
        .ok_or_else(|| decode_error("get info", String::new(), "no info in the answer".into()))?;
    let v = info.version.unwrap_or(0);
    Ok(Info {
        version: ((v >> 16) as u8, (v >> 8) as u8, v as u8),
        conn_table_size: info.conn_tab_size.unwrap_or(0),
    })
}

/// The services in the answer to GET_SERVICE.
fn services_of(
    replies: &[IpvsMessage],
    op: &'static str,
    what: String,
) -> Result<Vec<ServiceEntry>, IpvsError> {
    replies
        .iter()
        .filter_map(|m| m.service.as_ref())
        .map(|a| ServiceEntry::from_attrs(a).map_err(|m| decode_error(op, what.clone(), m)))
        .collect()
}

/// The first service in the answer to GET_SERVICE for `id`.
fn first_service_of(
    replies: &[IpvsMessage],
    id: &ServiceId,
) -> Result<Option<ServiceEntry>, IpvsError> {
    replies
        .iter()
        .filter_map(|m| m.service.as_ref())
        .map(|a| {
            ServiceEntry::from_attrs(a).map_err(|m| decode_error("get service", id.to_string(), m))
        })
        .next()
        .transpose()
}

/// The destinations in the answer to GET_DEST for service `id`.
fn destinations_of(
    replies: &[IpvsMessage],
    id: &ServiceId,
) -> Result<Vec<DestinationEntry>, IpvsError> {
    let family = id.family();
    replies
        .iter()
        .filter_map(|m| m.dest.as_ref())
        .map(|a| {
            DestinationEntry::from_attrs(a, family)
                .map_err(|m| decode_error("list destinations", id.to_string(), m))
        })
        .collect()
}

/// The timeouts in the answer to GET_CONFIG.
fn timeouts_of(replies: &[IpvsMessage]) -> Result<Timeouts, IpvsError> {
    let m = replies
        .first()
        .ok_or_else(|| decode_error("get timeouts", String::new(), "empty answer".into()))?;
    Ok(Timeouts {
        tcp: m.timeout_tcp.unwrap_or(0),
        tcp_fin: m.timeout_tcp_fin.unwrap_or(0),
        udp: m.timeout_udp.unwrap_or(0),
    })
}

/// The family id in the controller's answer to GETFAMILY for `name`.
fn family_id_of(replies: &[GenlMessage<CtrlMessage>], name: &str) -> Result<u16, IpvsError> {
    replies
        .iter()
        .find_map(|m| m.payload.family_id)
        .ok_or_else(|| {
            decode_error(
                "resolve family",
                name.to_owned(),
                "no family id in the answer".into(),
            )
        })
}

/// One datagram of an IPVS reply, read every way [`Ipvs`] reads answers.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReplyDatagram {
    /// The acknowledgement or `NLMSG_DONE` that ends the reply, if the datagram held it.
    pub finished: Option<Result<(), KernelError>>,
    /// A message carried `NLM_F_DUMP_INTR`.
    pub interrupted: bool,
    /// As [`Ipvs::info`] reads it.
    pub info: Result<Info, IpvsError>,
    /// As [`Ipvs::services`] reads them.
    pub services: Result<Vec<ServiceEntry>, IpvsError>,
    /// As [`Ipvs::service`] reads it, for the service asked for.
    pub service: Result<Option<ServiceEntry>, IpvsError>,
    /// As [`Ipvs::destinations`] reads them, for the service asked for.
    pub destinations: Result<Vec<DestinationEntry>, IpvsError>,
    /// As [`Ipvs::timeouts`] reads them.
    pub timeouts: Result<Timeouts, IpvsError>,
}

/// Reads one datagram of the reply to IPVS request `seq` (about service `id`) every way the
/// client reads answers. Public (hidden) for the fuzz targets: malformed bytes are an error,
/// never a panic.
#[doc(hidden)]
pub fn parse_reply_datagram(
    buf: &[u8],
    seq: u32,
    id: &ServiceId,
) -> Result<ReplyDatagram, IpvsError> {
    let reply = podnet_links::netlink::parse_reply::<GenlMessage<IpvsMessage>>(buf, seq)
        .map_err(|e| classify("reply", String::new(), Object::Other, None, e))?;
    let replies: Vec<IpvsMessage> = reply.replies.into_iter().map(|m| m.payload).collect();
    Ok(ReplyDatagram {
        finished: reply.finished,
        interrupted: reply.interrupted,
        info: info_of(&replies),
        services: services_of(&replies, "list services", String::new()),
        service: first_service_of(&replies, id),
        destinations: destinations_of(&replies, id),
        timeouts: timeouts_of(&replies),
    })
}

/// Reads one datagram of the generic netlink controller's reply to request `seq` as the
/// client resolves the IPVS family id. Public (hidden) for the fuzz targets.
#[doc(hidden)]
pub fn parse_family_reply(buf: &[u8], seq: u32) -> Result<u16, IpvsError> {
    let reply = podnet_links::netlink::parse_reply::<GenlMessage<CtrlMessage>>(buf, seq)
        .map_err(|e| classify("resolve family", String::new(), Object::Other, None, e))?;
    family_id_of(&reply.replies, wire::FAMILY_NAME)
}

fn decode_error(op: &'static str, what: String, message: String) -> IpvsError {
    IpvsError::Netlink {
        op,
        what,
        source: NetlinkError::Decode(message),
    }
}

fn ns_name(ns: &NetNs) -> String {
    ns.name()
        .map(str::to_owned)
        .or_else(|| ns.path().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "namespace".into())
}

/// Looks up a generic netlink family's id by name.
fn resolve_family(conn: &mut Connection, name: &str) -> Result<u16, IpvsError> {
    let msg = GenlMessage::from_payload(CtrlMessage::get_family(name));
    match conn.request(msg, 0) {
        Ok(replies) => family_id_of(&replies, name),
        Err(NetlinkError::Kernel(k)) if k.errno == libc::ENOENT => Err(IpvsError::NotAvailable),
        Err(e) => Err(classify(
            "resolve family",
            name.to_owned(),
            Object::Other,
            None,
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: i32) -> NetlinkError {
        NetlinkError::Kernel(KernelError {
            errno,
            message: None,
        })
    }

    #[test]
    fn errors_name_the_request_and_keep_the_errno() {
        let e = classify(
            "add service",
            "TCP 10.96.0.10:80".into(),
            Object::Service,
            Some("rr"),
            kernel(libc::EEXIST),
        );
        assert!(e.is_exists());
        assert_eq!(
            e.to_string(),
            "add service TCP 10.96.0.10:80: already exists"
        );
        let e = classify(
            "add service",
            "TCP 10.96.0.10:80".into(),
            Object::Service,
            Some("nope"),
            kernel(libc::ENOENT),
        );
        assert!(
            matches!(e, IpvsError::UnknownScheduler { ref scheduler, .. } if scheduler == "nope")
        );
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let e = classify(
            "delete destination",
            "x".into(),
            Object::Destination,
            None,
            kernel(libc::ENOENT),
        );
        assert!(e.is_not_found());
        let e = classify(
            "add destination",
            "x".into(),
            Object::Destination,
            None,
            kernel(libc::ESRCH),
        );
        assert!(matches!(
            e,
            IpvsError::NotFound {
                object: IpvsObject::Service,
                ..
            }
        ));
        let e = classify(
            "flush",
            String::new(),
            Object::Other,
            None,
            kernel(libc::EPERM),
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
    }
}
