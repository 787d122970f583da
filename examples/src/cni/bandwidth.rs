//! The `bandwidth` meta plugin: the container's traffic shaped with token bucket filters, as the
//! reference plugin (containernetworking/plugins 1.1.1) sets them up.
//!
//! - `ingressRate`/`ingressBurst` (bits per second, bits; traffic into the container): a root
//!   tbf (handle `1:`) on the host end of the container's veth.
//! - `egressRate`/`egressBurst` (traffic out of the container): an ifb device named `bwp` and 12
//!   hex digits of sha512(name + id), up, with the veth's MTU; an ingress qdisc on the host veth
//!   with a match-all u32 filter (prio 1) redirecting to the ifb's egress; a root tbf (`1:`) on
//!   the ifb. The ifb is added to the result's interfaces.
//!
//! Each tbf's limit is what the rate sends in 25 ms plus the burst. The settings come from the
//! top-level keys, or from `runtimeConfig.bandwidth` when none of those is given. DEL deletes
//! the ifb (and, unlike the reference, the qdiscs it put on the host veth when `prevResult`
//! names it and the veth is still there).

use super::bridge::open_container;
use super::error::{CHECK_FAILED, CniError, CniErrorExt, INVALID_CONFIG};
use super::portmap::hashed_name;
use podnet_cni::{Args, CniResult, Interface, Plugin, PluginConf};
use podnet_links::{Filter, Handle, Ifb, Qdisc, QdiscKind, Tbf, TcId};
use serde_json::{Map, Value};
use std::time::Duration;

/// The `bandwidth` plugin.
pub struct Bandwidth;

/// The reference's tbf latency.
const LATENCY: Duration = Duration::from_millis(25);

/// The spec versions the reference plugin speaks (0.3.0 and later).
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Limits {
    ingress_rate: u64,
    ingress_burst: u64,
    egress_rate: u64,
    egress_burst: u64,
}

impl Limits {
    fn is_zero(&self) -> bool {
        *self == Limits::default()
    }
}

const KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];

fn limits_in(o: &Map<String, Value>, prefix: &str) -> Result<Limits, CniError> {
    let get = |k: &str| -> Result<u64, CniError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| {
                CniError::invalid(
                    &format!("{prefix}{k}"),
                    format!("{v} is not a non-negative integer"),
                )
            }),
        }
    };
    Ok(Limits {
        ingress_rate: get(KEYS[0])?,
        ingress_burst: get(KEYS[1])?,
        egress_rate: get(KEYS[2])?,
        egress_burst: get(KEYS[3])?,
    })
}

fn validate(rate: u64, burst: u64, what: &str) -> Result<(), CniError> {
    let msg = if burst == 0 && rate != 0 {
        "if rate is set, burst must also be set"
    } else if rate == 0 && burst != 0 {
        "if burst is set, rate must also be set"
    } else if burst / 8 >= u64::from(u32::MAX) {
        "burst cannot be more than 4GB"
    } else if rate != 0 && rate < 8 {
        "rate must be at least 8 bit/s"
    } else {
        return Ok(());
    };
    Err(CniError::new(INVALID_CONFIG, format!("{what}: {msg}")))
}

/// The limits of the config: the top-level keys, else `runtimeConfig.bandwidth`.
fn parse(base: &PluginConf) -> Result<Limits, CniError> {
    let top = KEYS.iter().any(|k| base.raw.contains_key(*k));
    let l = if top {
        limits_in(&base.raw, "")?
    } else {
        match base.runtime_config.get("bandwidth") {
            None | Some(Value::Null) => Limits::default(),
            Some(Value::Object(o)) => limits_in(o, "runtimeConfig.bandwidth.")?,
            Some(_) => {
                return Err(CniError::invalid(
                    "runtimeConfig.bandwidth",
                    "not an object",
                ));
            }
        }
    };
    validate(l.ingress_rate, l.ingress_burst, "ingress")?;
    validate(l.egress_rate, l.egress_burst, "egress")?;
    Ok(l)
}

/// The ifb device's name: `bwp` and 12 hex digits.
fn ifb_name(network: &str, container_id: &str) -> String {
    hashed_name("bwp", &format!("{network}{container_id}"), 15)
}

/// The tbf for `rate` bits/s and `burst` bits.
fn tbf(rate: u64, burst: u64) -> Tbf {
    Tbf::new(rate, u32::try_from(burst / 8).unwrap_or(u32::MAX), LATENCY)
}

/// The host end of the container's veth: its name in `result` (an interface without sandbox).
fn host_veth(args: &Args, result: &CniResult, host: &Handle) -> Result<(u32, String), CniError> {
    if result.interfaces.is_empty() {
        return Err(CniError::new(INVALID_CONFIG, "no interfaces provided"));
    }
    let netns = open_container(&args.netns)?;
    let c = Handle::in_ns(&netns)
        .map_err(|e| CniError::kernel("netlink in the container namespace", e))?;
    let peer = c
        .link()
        .get(args.ifname.as_str())
        .ok()
        .and_then(|l| l.link)
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                format!("container interface {} has no veth peer", args.ifname),
            )
        })?;
    let link = host.link().get(peer).map_err(|_| {
        CniError::new(
            INVALID_CONFIG,
            format!("veth peer with index {peer} is not in host ns"),
        )
    })?;
    if result
        .interfaces
        .iter()
        .any(|i| i.sandbox.as_deref().unwrap_or("").is_empty() && i.name == link.name)
    {
        Ok((link.index, link.name))
    } else {
        Err(CniError::new(
            INVALID_CONFIG,
            "no veth peer of container interface found in host ns",
        ))
    }
}

/// What ADD made, undone when a later step fails.
struct Made<'h> {
    h: &'h Handle,
    veth: u32,
    root_tbf: bool,
    ingress: bool,
    ifb: Option<String>,
}

impl Made<'_> {
    fn undo(&self) {
        if let Some(ifb) = &self.ifb {
            let _ = self.h.link().del(ifb.as_str());
        }
        if self.ingress {
            let _ = self.h.qdisc().del(self.veth, &Qdisc::ingress());
        }
        if self.root_tbf {
            let _ = self
                .h
                .qdisc()
                .del(self.veth, &Qdisc::tbf(tbf(8, 8)).handle(TcId::new(1, 0)));
        }
    }
}

fn setup(
    h: &Handle,
    l: &Limits,
    veth: (u32, String),
    ifb: &str,
    made: &mut Made<'_>,
) -> Result<Option<Interface>, CniError> {
    let (index, name) = veth;
    if l.ingress_rate > 0 && l.ingress_burst > 0 {
        h.qdisc()
            .add(
                index,
                &Qdisc::tbf(tbf(l.ingress_rate, l.ingress_burst)).handle(TcId::new(1, 0)),
            )
            .map_err(|e| CniError::kernel(format!("create qdisc on {name}"), e))?;
        made.root_tbf = true;
    }
    if l.egress_rate == 0 || l.egress_burst == 0 {
        return Ok(None);
    }
    let mtu = h
        .link()
        .get(index)
        .map_err(|e| CniError::kernel(format!("get {name}"), e))?
        .mtu;
    h.link()
        .add(&Ifb::new(ifb).mtu(mtu))
        .map_err(|e| CniError::kernel(format!("adding link {ifb}"), e))?;
    made.ifb = Some(ifb.to_owned());
    h.link()
        .set(ifb)
        .up()
        .apply()
        .map_err(|e| CniError::kernel(format!("setting {ifb} up"), e))?;
    let ifb_link = h
        .link()
        .get(ifb)
        .map_err(|e| CniError::kernel(format!("get {ifb}"), e))?;
    h.qdisc()
        .add(index, &Qdisc::ingress())
        .map_err(|e| CniError::kernel(format!("create ingress qdisc on {name}"), e))?;
    made.ingress = true;
    h.filter()
        .add(
            index,
            &Filter::redirect(TcId::INGRESS, ifb_link.index).priority(1),
        )
        .map_err(|e| CniError::kernel(format!("add filter on {name}"), e))?;
    h.qdisc()
        .add(
            ifb_link.index,
            &Qdisc::tbf(tbf(l.egress_rate, l.egress_burst)).handle(TcId::new(1, 0)),
        )
        .map_err(|e| CniError::kernel(format!("create ifb qdisc on {ifb}"), e))?;
    Ok(Some(Interface {
        name: ifb.to_owned(),
        mac: ifb_link.mac.map(|m| m.to_string()).unwrap_or_default(),
        mtu: None,
        sandbox: None,
    }))
}

/// Whether `dev`'s root tbf is the one for `rate` and `burst`.
fn check_tbf(h: &Handle, dev: u32, name: &str, rate: u64, burst: u64) -> Result<(), CniError> {
    let want = tbf(rate, burst);
    let qdiscs = h
        .qdisc()
        .list(Some(dev.into()))
        .map_err(|e| CniError::kernel(format!("listing the qdiscs of {name}"), e))?;
    let Some(QdiscKind::Tbf(have)) = qdiscs
        .iter()
        .find(|q| q.parent == TcId::ROOT)
        .map(|q| &q.kind)
    else {
        return Err(CniError::new(
            CHECK_FAILED,
            format!("{name} has no root tbf qdisc"),
        ));
    };
    // The kernel keeps the burst as a time, so it reads back within a byte or so.
    let close = have.burst.abs_diff(want.burst) <= want.burst / 1000 + 1;
    if have.rate != want.rate || have.limit != want.limit || !close {
        return Err(CniError::new(
            CHECK_FAILED,
            format!(
                "{name}'s tbf is rate {} limit {} burst {}, not rate {} limit {} burst {}",
                have.rate, have.limit, have.burst, want.rate, want.limit, want.burst
            ),
        ));
    }
    Ok(())
}

fn host() -> Result<Handle, CniError> {
    Handle::new().map_err(|e| CniError::kernel("netlink socket", e))
}

impl Plugin for Bandwidth {
    fn supported_versions(&self) -> &[&str] {
        VERSIONS
    }

    fn add(&self, args: &Args, stdin: &[u8]) -> Result<CniResult, CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let l = parse(&base)?;
        let mut result = base
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "must be called as chained plugin"))?;
        if l.is_zero() {
            return Ok(result);
        }
        let h = host()?;
        let veth = host_veth(args, &result, &h)?;
        let mut made = Made {
            h: &h,
            veth: veth.0,
            root_tbf: false,
            ingress: false,
            ifb: None,
        };
        match setup(
            &h,
            &l,
            veth,
            &ifb_name(&base.name, &args.container_id),
            &mut made,
        ) {
            Ok(ifb) => {
                result.interfaces.extend(ifb);
                Ok(result)
            }
            Err(e) => {
                made.undo();
                Err(e)
            }
        }
    }

    fn del(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        parse(&base)?;
        let h = host()?;
        let ifb = ifb_name(&base.name, &args.container_id);
        match h.link().del(ifb.as_str()) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ENODEV) => {}
            Err(e) => return Err(CniError::kernel(format!("deleting {ifb}"), e)),
        }
        // The qdiscs on the host veth, when it is still there (best effort).
        if let Ok(Some(prev)) = base.prev_result()
            && !args.netns.is_empty()
            && let Ok((index, _)) = host_veth(args, &prev, &h)
        {
            let l = parse(&base)?;
            if l.egress_rate > 0 && l.egress_burst > 0 {
                let _ = h.qdisc().del(index, &Qdisc::ingress());
            }
            if l.ingress_rate > 0 && l.ingress_burst > 0 {
                let _ = h
                    .qdisc()
                    .del(index, &Qdisc::tbf(tbf(8, 8)).handle(TcId::new(1, 0)));
            }
        }
        Ok(())
    }

    fn check(&self, args: &Args, stdin: &[u8]) -> Result<(), CniError> {
        let base = PluginConf::parse(stdin, self.supported_versions())?;
        let l = parse(&base)?;
        let result = base
            .prev_result()?
            .ok_or_else(|| CniError::new(INVALID_CONFIG, "must be called as a chained plugin"))?;
        let h = host()?;
        let (index, name) = host_veth(args, &result, &h)?;
        if l.ingress_rate > 0 && l.ingress_burst > 0 {
            check_tbf(&h, index, &name, l.ingress_rate, l.ingress_burst)?;
        }
        if l.egress_rate > 0 && l.egress_burst > 0 {
            let ifb = ifb_name(&base.name, &args.container_id);
            let link = h
                .link()
                .get(ifb.as_str())
                .map_err(|e| CniError::new(CHECK_FAILED, format!("get ifb device {ifb}: {e}")))?;
            check_tbf(&h, link.index, &ifb, l.egress_rate, l.egress_burst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_ifb_name() {
        // Seen after the reference's ADD of network "pmnet", container "ctr1".
        assert_eq!(ifb_name("pmnet", "ctr1"), "bwp323d23e06ba2");
    }

    fn limits(json: &str) -> Result<Limits, CniError> {
        parse(&PluginConf::parse(json.as_bytes(), VERSIONS).unwrap())
    }

    #[test]
    fn config() {
        let l = limits(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bandwidth","runtimeConfig":{"bandwidth":{"ingressRate":8000,"ingressBurst":800}}}"#,
        )
        .unwrap();
        assert_eq!(
            (l.ingress_rate, l.ingress_burst, l.egress_rate),
            (8000, 800, 0)
        );
        // Top-level keys win over runtimeConfig.
        let l = limits(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bandwidth","egressRate":16,"egressBurst":16,"runtimeConfig":{"bandwidth":{"ingressRate":8000,"ingressBurst":800}}}"#,
        )
        .unwrap();
        assert_eq!((l.ingress_rate, l.egress_rate), (0, 16));
        let e =
            limits(r#"{"cniVersion":"1.0.0","name":"n","type":"bandwidth","ingressRate":8000}"#)
                .unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        assert!(e.msg.contains("burst must also be set"), "{e:?}");
        let e = limits(r#"{"cniVersion":"1.0.0","name":"n","type":"bandwidth","egressRate":-1,"egressBurst":8}"#)
            .unwrap_err();
        assert!(e.msg.contains("egressRate"), "{e:?}");
    }
}
