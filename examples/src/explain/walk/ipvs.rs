//! IPVS, as kube-proxy's ipvs mode uses it: a packet whose destination is local (a ClusterIP
//! bound to `kube-ipvs0`, a node address for a NodePort) meets IPVS's hook at LOCAL_IN (after
//! the filter table's INPUT chain, before nat's) or, sent by the namespace itself, at
//! LOCAL_OUT. A virtual service that matches (protocol, address, port, or a firewall mark)
//! has its scheduler pick a real server; masquerade forwarding rewrites the destination, the
//! kernel looks up the route to the real server (an output lookup, no source given) and sends
//! the packet through LOCAL_OUT and POSTROUTING (where ipvs mode's masquerade marks apply)
//! out of the namespace. A virtual service without a real server drops the packet (and
//! answers with ICMP port unreachable).

use super::{Next, Walker, gw4};
use crate::explain::ipvs::IpvsService;
use crate::explain::narrate::Says;
use crate::explain::state::{RouteQuery, RouteType};
use crate::explain::{Alternative, Hook, IpvsHop, Spread, Step, rules};
use std::net::{IpAddr, SocketAddr};

impl<'t> Walker<'t> {
    /// The virtual service of `ns` that takes the packet (for a local address), if any.
    pub(super) fn ipvs_service(&mut self, ns: usize) -> Option<IpvsService> {
        let v = self.view(ns);
        let services = match v.ipvs() {
            Ok(s) => s,
            Err(e) => {
                let c = format!("{}: IPVS table not read ({e})", v.label);
                self.caveats.push(c);
                return None;
            }
        };
        let f = &self.flow;
        services
            .iter()
            .find(|s| s.matches(&f.proto.to_string(), f.dst, f.dport, f.mark))
            .cloned()
    }

    /// The IPVS hook of `ns` (`hook`: `LOCAL_IN` or `LOCAL_OUT`) takes the packet for virtual
    /// service `svc`: a real server, the rewrite, and on; or the drop when there is none.
    pub(super) fn ipvs(
        &mut self,
        ns: usize,
        hook: &str,
        dev: Option<&str>,
        svc: IpvsService,
    ) -> Next {
        let f = &self.flow;
        let old = SocketAddr::new(IpAddr::V4(f.dst), f.dport.unwrap_or(0));
        let spread = spread_of(&svc, self.choice);
        let chosen = spread.as_ref().and_then(|s| {
            s.alternatives
                .iter()
                .find(|a| a.chain == s.chosen)
                .and_then(|a| a.dnat)
        });
        self.hop(ns, Step::Ipvs, dev, Says::Ipvs);
        if let Some(h) = self.hops.last_mut() {
            h.ipvs = Some(IpvsHop {
                hook: hook.to_owned(),
                service: svc.to_string(),
                scheduler: svc.scheduler.clone(),
                spread,
                rewrite: chosen.map(|n| (old.to_string(), n.to_string())),
            });
        }
        let Some(new) = chosen else {
            let reason = format!(
                "IPVS virtual service {svc} has no real server: dropped (ICMP port unreachable)"
            );
            let missing = format!(
                "endpoints for the Service of {old}: kube-proxy's ipvs mode keeps the virtual service without real servers"
            );
            return self.drop(ns, dev, reason, Some(missing));
        };
        let IpAddr::V4(ip) = new.ip() else {
            return self.drop(ns, dev, format!("real server {new} is not IPv4"), None);
        };
        self.flow.dst = ip;
        self.flow.dport = Some(new.port()).filter(|p| *p != 0).or(self.flow.dport);
        self.flow.dnat = true;
        self.ipvs_xmit(ns)
    }

    /// Masquerade forwarding: the route to the real server, then LOCAL_OUT and POSTROUTING,
    /// and out.
    fn ipvs_xmit(&mut self, ns: usize) -> Next {
        let f = &self.flow;
        let q = RouteQuery {
            dst: Some(f.dst),
            src: None,
            iif: None,
            oif: None,
            mark: f.mark,
            proto: Some(f.proto.number()),
            dport: f.dport,
            fib_match: false,
        };
        let (a, text) = match self.route(ns, &q) {
            Ok(r) => r,
            Err((_, msg, asked)) => return self.no_route(ns, &asked, &msg, "real server "),
        };
        let oname = a.oif.map(|o| self.view(ns).dev_name(o));
        let says = Says::Route("to the real server, ", text);
        self.hop(ns, Step::Route, oname.as_deref(), says);
        let (RouteType::Unicast, Some(oif), Some(oname)) = (a.kind, a.oif, oname) else {
            if a.kind == RouteType::Local {
                return self.deliver(ns);
            }
            return self.drop(
                ns,
                None,
                format!("route type {:?} to the real server: not sent", a.kind),
                None,
            );
        };
        let nexthop = gw4(&a).unwrap_or(self.flow.dst);
        self.checkpoint(ns, "inet", "out", oname.clone());
        if let Err(n) = self.rules(ns, Hook::Output, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        self.checkpoint(ns, "inet", "post", oname.clone());
        if let Err(n) = self.rules(ns, Hook::Postrouting, None, Some(&oname), Some(nexthop)) {
            return n;
        }
        self.output(ns, oif, nexthop)
    }
}

/// The real servers the scheduler can pick, each with its share of new connections (by
/// weight), and the one `choice` follows.
fn spread_of(svc: &IpvsService, choice: &crate::explain::Choice) -> Option<Spread> {
    let usable = svc.usable();
    let total: u64 = usable.iter().map(|d| u64::from(d.weight)).sum();
    if usable.is_empty() || total == 0 {
        return None;
    }
    let alternatives: Vec<Alternative> = usable
        .iter()
        .map(|d| Alternative {
            chain: d.addr.to_string(),
            dnat: Some(d.addr),
            comment: Some(format!("weight {}, {}", d.weight, d.forward)),
            probability: d.weight as f64 / total as f64,
        })
        .collect();
    let chosen = rules::pick(choice, &alternatives);
    Some(Spread {
        chain: format!("IPVS {svc}"),
        alternatives,
        chosen,
    })
}
