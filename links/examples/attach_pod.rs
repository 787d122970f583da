//! An embedder's whole "attach a pod", what a bridge CNI plugin plus the `bandwidth` plugin do,
//! with podnet-links alone (the code the README shows). Run as root:
//! `cargo run -p podnet-links --example attach_pod`; it works in two namespaces of its own,
//! `attach-node` and `attach-pod`, and deletes them at the end.

use podnet_links::{
    AddressSpec, Bridge, Filter, Handle, Ifb, LinkSysctl, Qdisc, Route, Tbf, TcId, Veth,
};
use podnet_netns::NetNs;
use std::net::IpAddr;
use std::time::Duration;

fn attach(node: &NetNs, pod: &NetNs) -> Result<(), Box<dyn std::error::Error>> {
    let h = Handle::in_ns(node)?; // the node's namespace (a CNI plugin: Handle::new())
    match h.link().add(&Bridge::new("cni0")) {
        Err(e) if !e.is_exists() => return Err(e.into()), // made by an earlier ADD: fine
        _ => {}
    }
    h.link().set("cni0").up().apply()?;
    h.addr().replace(
        "cni0",
        AddressSpec::new("10.244.1.1/24".parse()?).broadcast_auto(),
    )?;
    h.sysctl().set("all", LinkSysctl::Ipv4Forwarding, 1)?;

    // The veth pair, its peer made directly inside the pod as eth0.
    h.link()
        .add(&Veth::new("veth1a2b").peer("eth0").peer_netns(pod))?;
    h.link()
        .set("veth1a2b")
        .master("cni0")
        .txqueuelen(0)
        .up()
        .apply()?;
    h.link().set("veth1a2b").hairpin(true).apply()?; // a pod reaches itself via a Service

    let p = Handle::in_ns(pod)?;
    p.sysctl().set("eth0", LinkSysctl::AcceptDad, 0)?; // sysctls of the pod's namespace
    p.addr().add(
        "eth0",
        AddressSpec::new("10.244.1.5/24".parse()?).broadcast_auto(),
    )?;
    p.link().set("eth0").up().apply()?;
    p.route()
        .add(&Route::new("0.0.0.0/0".parse()?).via("10.244.1.1".parse()?))?;

    // Bandwidth: the pod's ingress is the veth's egress, shaped by tbf; the pod's egress is
    // the veth's ingress, redirected to an ifb and shaped there.
    let rate = |bits| Tbf::new(bits, 32 * 1024, Duration::from_millis(25));
    h.qdisc()
        .replace("veth1a2b", &Qdisc::tbf(rate(10_000_000)))?;
    h.link().add(&Ifb::new("bwp1a2b"))?;
    h.link().set("bwp1a2b").up().apply()?;
    h.qdisc().replace("bwp1a2b", &Qdisc::tbf(rate(5_000_000)))?;
    h.qdisc().add("veth1a2b", &Qdisc::ingress())?;
    h.filter()
        .add("veth1a2b", &Filter::redirect(TcId::INGRESS, "bwp1a2b"))?;

    println!("{}", p.route().get("10.244.1.1".parse::<IpAddr>()?)?); // ip route get
    println!("{:#}", h.link().get("veth1a2b")?); // ip -d -s link show
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (node, pod) = (NetNs::add("attach-node")?, NetNs::add("attach-pod")?);
    let result = attach(&node, &pod);
    NetNs::del("attach-pod")?;
    NetNs::del("attach-node")?;
    result
}
