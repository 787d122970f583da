//! Layer 3: the kernel's route lookup, the local stack sending, an IP packet arriving on a
//! device (routed, delivered or dropped), and the packet leaving by its output device.
use super::{Next, Walker, gw4};
use crate::explain::model::DevKind;
use crate::explain::narrate::{RouteSays, Says};
use crate::explain::state::{RouteAnswer, RouteQuery, RouteType};
use crate::explain::{Hook, Outcome, Proto, Step};
use std::net::{IpAddr, Ipv4Addr};

impl<'t> Walker<'t> {
    pub(super) fn query(&self, iif: Option<u32>, oif: Option<u32>) -> RouteQuery {
        let f = &self.flow;
        RouteQuery {
            dst: Some(f.dst),
            src: (!f.src.is_unspecified()).then_some(f.src),
            iif,
            oif,
            mark: f.mark,
            proto: Some(f.proto.number()),
            dport: f.dport,
            fib_match: false,
        }
    }

    /// Asks the kernel for the route, and the matching entry for the story.
    pub(super) fn route(
        &mut self,
        ns: usize,
        q: &RouteQuery,
    ) -> Result<(RouteAnswer, RouteSays), (i32, String, String)> {
        let v = self.view(ns);
        let names = |i: u32| v.dev_name(i);
        let asked = q.describe(&names);
        match v.route_get(q) {
            Ok(a) => {
                let mut fq = q.clone();
                fq.fib_match = true;
                let matched = v.route_get(&fq).ok();
                let text = RouteSays {
                    asked: asked.clone(),
                    local: (a.kind == RouteType::Local).then_some(self.flow.dst),
                    prefix: matched.as_ref().and_then(|m| m.prefix).map_or_else(
                        || self.flow.dst.to_string(),
                        |p| {
                            if p.prefix_len() == 0 {
                                "default".into()
                            } else {
                                p.to_string()
                            }
                        },
                    ),
                    via: a.gateway,
                    dev: a.oif.map(|o| v.dev_name(o)),
                    onlink: matched.as_ref().is_some_and(|m| m.onlink),
                    src: a.prefsrc.filter(|_| q.iif.is_none()),
                    table: Some(a.table).filter(|t| *t != podnet_links::TABLE_MAIN && *t != 0),
                };
                // A forwarder that sends a known namespace's address down its default route.
                let default = matched
                    .as_ref()
                    .and_then(|m| m.prefix)
                    .is_some_and(|p| p.prefix_len() == 0);
                if default && q.iif.is_some() && self.inner() && self.defaulted.is_none() {
                    if let Some(owner) = self.owner_of(self.flow.dst) {
                        let via = a.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                        let dev = a.oif.map(|o| v.dev_name(o)).unwrap_or_default();
                        self.defaulted = Some(format!(
                            "a route in {} for {} (an address of {owner}): it has none, so its default route{via} dev {dev} took the packet",
                            v.label, self.flow.dst
                        ));
                    }
                }
                Ok((a, text))
            }
            Err((errno, msg)) => Err((errno, msg, asked)),
        }
    }

    /// The namespace that holds `ip` as an address.
    pub(super) fn owner_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.topo
            .views()
            .iter()
            .find(|v| v.owner_of(ip).is_some())
            .map(|v| v.label.clone())
    }

    /// The local stack of `ns` has no route to the destination (`what` names it).
    pub(super) fn no_route(&mut self, ns: usize, asked: &str, msg: &str, what: &str) -> Next {
        let missing = format!("a route to {what}{} in {}", self.flow.dst, self.label(ns));
        self.drop(ns, None, format!("{asked}: {msg}"), Some(missing))
    }

    /// The local stack of `ns` sends the current packet.
    pub(super) fn send(&mut self, ns: usize, oif: Option<u32>) -> Next {
        let q = self.query(None, oif);
        let (a, text) = match self.route(ns, &q) {
            Ok(r) => r,
            Err((_, msg, asked)) => return self.no_route(ns, &asked, &msg, ""),
        };
        if self.flow.src.is_unspecified() {
            if let Some(IpAddr::V4(s)) = a.prefsrc {
                self.flow.src = s;
            }
        }
        let says = Says::Send {
            flow: self.flow.clone(),
            outer: !self.inner(),
        };
        self.hop(ns, Step::Send, None, says);
        self.hop(
            ns,
            Step::Route,
            a.oif.map(|o| self.view(ns).dev_name(o)).as_deref(),
            Says::Route("", text),
        );
        match a.kind {
            RouteType::Local => {
                // kube-proxy's ipvs mode: OUTPUT's nat chains (its masquerade marks) come
                // before IPVS's LOCAL_OUT hook.
                if let Some(svc) = self.ipvs_service(ns) {
                    let oname = a.oif.map(|o| self.view(ns).dev_name(o));
                    if let Err(n) = self.rules(ns, Hook::Output, None, oname.as_deref(), None) {
                        return n;
                    }
                    return self.ipvs(ns, "LOCAL_OUT", None, svc);
                }
                return self.deliver(ns);
            }
            RouteType::Unicast => {}
            RouteType::Broadcast | RouteType::Other(_) => {
                return self.drop(ns, None, format!("route type {:?}: not sent", a.kind), None);
            }
        }
        let Some(oif) = a.oif else {
            return self.drop(ns, None, "route without an output device".into(), None);
        };
        let oname = self.view(ns).dev_name(oif);
        self.checkpoint(ns, "inet", "out", oname.clone());
        let nexthop = gw4(&a).unwrap_or(self.flow.dst);
        let dst_before = self.flow.dst;
        if let Err(n) = self.rules(ns, Hook::Output, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        let (oif, oname, nexthop) = if self.flow.dst != dst_before {
            // DNAT in OUTPUT: the kernel routes again.
            let q = self.query(None, None);
            match self.route(ns, &q) {
                Ok((a, text)) => {
                    self.hop(ns, Step::Route, None, Says::Route("after DNAT, ", text));
                    match (a.kind, a.oif) {
                        (RouteType::Local, _) => return self.deliver(ns),
                        (_, Some(o)) => (
                            o,
                            self.view(ns).dev_name(o),
                            gw4(&a).unwrap_or(self.flow.dst),
                        ),
                        _ => {
                            return self.drop(ns, None, "no output device after DNAT".into(), None);
                        }
                    }
                }
                Err((_, msg, asked)) => {
                    return self.drop(ns, None, format!("{asked}: {msg}"), None);
                }
            }
        } else {
            (oif, oname, nexthop)
        };
        self.checkpoint(ns, "inet", "post", oname.clone());
        if let Err(n) = self.rules(ns, Hook::Postrouting, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        self.output(ns, oif, nexthop)
    }

    /// An IP packet arrives on `iif` of `ns`.
    pub(super) fn packet(&mut self, ns: usize, iif: u32, port: Option<u32>) -> Next {
        let iname = self.view(ns).dev_name(iif);
        self.checkpoint(ns, "inet", "pre", iname.clone());
        let dst_before = self.flow.dst;
        if let Err(n) = self.rules(ns, Hook::Prerouting, Some(&iname), None, None) {
            return n;
        }
        let dnat_here = self.flow.dst != dst_before;
        // The bridge passes the frame up (its input hook) before the IP route lookup, unless
        // br_netfilter DNATed it, in which case br_netfilter looks the route up first.
        let br_nf_dnat = dnat_here && port.is_some() && self.view(ns).bridge_calls_iptables();
        if let (Some(p), false) = (port, br_nf_dnat) {
            let pname = self.view(ns).dev_name(p);
            self.checkpoint(ns, "bridge", "in", pname);
        }
        let q = self.query(Some(iif), None);
        let (a, text) = match self.route(ns, &q) {
            Ok(r) => r,
            Err((errno, msg, asked)) => {
                let v = self.view(ns);
                let forwarding = v.sysctl("net.ipv4.ip_forward").is_some_and(|f| f == "1");
                let why = match errno {
                    libc::EHOSTUNREACH | libc::ENETUNREACH if !forwarding => format!(
                        "{} is not an address of {}, which does not forward (net.ipv4.ip_forward=0)",
                        self.flow.dst, v.label
                    ),
                    libc::EHOSTUNREACH | libc::ENETUNREACH => {
                        format!("no route to {} in {}", self.flow.dst, v.label)
                    }
                    libc::EXDEV => format!(
                        "the reverse-path filter of {} refuses source {} on {iname}",
                        v.label, self.flow.src
                    ),
                    libc::EINVAL => format!("martian packet ({})", self.flow),
                    _ => msg.clone(),
                };
                let missing = self
                    .defaulted
                    .clone()
                    .or_else(|| Some(format!("a route to {} in {}", self.flow.dst, v.label)));
                return self.drop(ns, Some(&iname), format!("{asked}: {msg}: {why}"), missing);
            }
        };
        self.hop(ns, Step::Route, Some(&iname), Says::Route("", text));
        if let (Some(p), true) = (port, br_nf_dnat) {
            // A frame DNATed to an address on the bridge it came from is bridged there
            // (br_nf_pre_routing_finish's "bridged DNAT"), not routed.
            if a.kind == RouteType::Unicast && a.oif == Some(iif) {
                return self.bridged_dnat(ns, iif, p);
            }
            let pname = self.view(ns).dev_name(p);
            self.checkpoint(ns, "bridge", "in", pname);
        }
        match a.kind {
            RouteType::Local => {
                self.checkpoint(ns, "inet", "in", iname.clone());
                if let Err(n) = self.rules(ns, Hook::Input, Some(&iname), None, None) {
                    return n;
                }
                if let Some(svc) = self.ipvs_service(ns) {
                    return self.ipvs(ns, "LOCAL_IN", Some(&iname), svc);
                }
                self.deliver(ns)
            }
            RouteType::Unicast => {
                let Some(oif) = a.oif else {
                    return self.drop(ns, None, "route without an output device".into(), None);
                };
                let oname = self.view(ns).dev_name(oif);
                let nexthop = gw4(&a).unwrap_or(self.flow.dst);
                self.checkpoint(ns, "inet", "fwd", format!("{iname}>{oname}"));
                if let Err(n) =
                    self.rules(ns, Hook::Forward, Some(&iname), Some(&oname), Some(nexthop))
                {
                    return n;
                }
                self.checkpoint(ns, "inet", "post", oname.clone());
                if let Err(n) = self.rules(
                    ns,
                    Hook::Postrouting,
                    Some(&iname),
                    Some(&oname),
                    Some(nexthop),
                ) {
                    return n;
                }
                self.output(ns, oif, nexthop)
            }
            other => self.drop(
                ns,
                Some(&iname),
                format!("route type {other:?}: the kernel does not forward it"),
                None,
            ),
        }
    }

    /// The packet leaves `ns` by `oif` towards `nexthop`.
    pub(super) fn output(&mut self, ns: usize, oif: u32, nexthop: Ipv4Addr) -> Next {
        let Some(link) = self.view(ns).link(oif).cloned() else {
            return self.drop(ns, None, format!("output device if{oif} vanished"), None);
        };
        if !link.is_up() {
            return self.drop(
                ns,
                Some(&link.name),
                format!("{} is down", link.name),
                Some(format!(
                    "`ip link set {} up` in {}",
                    link.name,
                    self.label(ns)
                )),
            );
        }
        match &link.kind {
            Some(DevKind::Veth) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                self.cross(ns, &link, mac)
            }
            Some(DevKind::Bridge) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                let (port, flooded) = match self.bridge_port(ns, &link, mac, None) {
                    Ok(p) => p,
                    Err(n) => return n,
                };
                for q in std::iter::once(&port).chain(&flooded) {
                    self.checkpoint(ns, "bridge", "out", q.name.clone());
                }
                self.cross(ns, &port, mac)
            }
            Some(DevKind::Vxlan) => {
                let mac = match self.neighbour(ns, &link, nexthop) {
                    Ok(m) => m,
                    Err(n) => return n,
                };
                self.vxlan(ns, &link, mac)
            }
            Some(DevKind::Tun) => self.tunnel(ns, &link),
            _ if link.name == "lo" => self.deliver(ns),
            _ => {
                let kind = link
                    .kind
                    .as_ref()
                    .map_or("no kind".to_string(), |k| k.to_string());
                let text = format!("out of {} ({kind}), beyond the known namespaces", link.name);
                self.leave(ns, &link.name, text)
            }
        }
    }

    /// The packet is for an address of `ns`: delivered, or unwrapped when it is a tunnel's.
    pub(super) fn deliver(&mut self, ns: usize) -> Next {
        let Some(encap) = self.stack.last().cloned() else {
            let v = self.view(ns);
            let label = v.label.clone();
            let f = self.flow.clone();
            let listener = match (f.proto, f.dport) {
                (Proto::Tcp, Some(p)) => Some(v.sockets("tcp", p)),
                (Proto::Udp, Some(p)) => Some(v.sockets("udp", p)),
                _ => None,
            };
            let says = Says::Deliver {
                addr: f.dst,
                ns: label.clone(),
                listener,
            };
            self.hop(ns, Step::Deliver, None, says);
            return Next::Done(Outcome::Delivered {
                ns: label,
                addr: f.dst,
                port: f.dport,
                listener,
            });
        };
        self.decap(ns, encap)
    }
}
