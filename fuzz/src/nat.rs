//! podnet-nat: nftables dumps and batch answers, IPVS answers, iptables-save text, and
//! Kubernetes objects (YAML/JSON) through the service model into every proxy mode's compiler.

use crate::nl::{self, MsgType};
use netlink_packet_generic::GenlMessage;
use podnet_nat::ipvs::wire::{DestAttrs, FlagsMask, InfoAttrs, IpvsMessage, ServiceAttrs, cmd};
use podnet_nat::ipvs::{ServiceId, Stats};
use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
use podnet_nat::kube_proxy::nftables_mode::{NftProxySettings, compile as nft_compile};
use podnet_nat::kube_proxy::{LocalDetector, NodeSettings};
use podnet_nat::nftables::expr::Insn;
use podnet_nat::nftables::netlink::{Batch, parse_batch_answers, parse_dump_datagram};
use std::hint::black_box;
use std::sync::LazyLock;

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*` with the nfgenmsg header, then control messages.
pub const NFT_TYPES: [MsgType; 12] = [
    (0x0a00, 4), // NEWTABLE
    (0x0a03, 4), // NEWCHAIN
    (0x0a06, 4), // NEWRULE
    (0x0a09, 4), // NEWSET
    (0x0a0c, 4), // NEWSETELEM
    (0x0a0b, 4), // GETSETELEM
    (0x0a10, 4), // NEWGEN
    (0x0a19, 4), // NEWOBJ
    nl::CONTROL[0],
    nl::CONTROL[1],
    nl::CONTROL[2],
    nl::CONTROL[3],
];

/// The table the dumps are read for (others' objects are left out).
const TABLE: &str = "kube-proxy";

fn state_v4() -> ClusterState {
    let yaml = include_str!("../../nat/tests/fixtures/overall.yaml");
    let (objects, _) = parse_objects(yaml, "overall.yaml");
    ClusterState::from_objects(&objects, IpFamily::V4).0
}

fn settings(family: IpFamily) -> NodeSettings {
    let mut s = NodeSettings::new("node1", family);
    s.node_ips = match family {
        IpFamily::V4 => vec!["192.168.0.2".parse().unwrap()],
        IpFamily::V6 => vec!["fd00:10::2".parse().unwrap()],
    };
    s.local_detector = LocalDetector::InterfaceNamePrefix("veth".into());
    s
}

/// A kube-proxy transaction encoded with its batch begin at [`nl::SEQ`]: the answers the
/// target reads refer to it.
static BATCH: LazyLock<Batch> = LazyLock::new(|| {
    let c = nft_compile(&state_v4(), &NftProxySettings::new(settings(IpFamily::V4)));
    Batch::encode(&c.full_transaction(), nl::SEQ)
});

/// A datagram read as an nftables dump reply (chains, sets, elements, rules, expressions
/// decoded and encoded again) and as the answers to a batch.
pub fn nftables(data: &[u8]) {
    let (buf, seq) = nl::datagram(data, &NFT_TYPES);
    if let Ok(d) = parse_dump_datagram(&buf, seq, TABLE) {
        for r in &d.rules {
            for i in &r.insns {
                black_box(Insn::decode(&i.encode()));
            }
        }
        black_box(format!("{d:?}"));
    }
    if let Err(e) = parse_batch_answers(&[&buf], &BATCH) {
        black_box(e.to_string());
    }
}

/// An IPVS generic netlink family id, and the controller's, with the genlmsghdr.
pub const IPVS_TYPES: [MsgType; 6] = [
    (0x24, 4),
    (0x10, 4),
    nl::CONTROL[0],
    nl::CONTROL[1],
    nl::CONTROL[2],
    nl::CONTROL[3],
];

/// A datagram read as every IPVS answer (info, services, a service, destinations of an IPv4
/// and of an IPv6 service, timeouts) and as the controller's answer to the family lookup.
pub fn ipvs(data: &[u8]) {
    let (buf, seq) = nl::datagram(data, &IPVS_TYPES);
    for id in [
        ServiceId::tcp("10.96.0.10:80".parse().unwrap()),
        ServiceId::udp("[fd00:96::10]:53".parse().unwrap()),
    ] {
        if let Ok(r) = podnet_nat::ipvs::parse_reply_datagram(&buf, seq, &id) {
            black_box(format!("{r:?}"));
            if let Ok(services) = &r.services {
                for s in services {
                    black_box((s.service.id.to_string(), s.service.scheduler.to_string()));
                }
            }
        }
    }
    black_box(podnet_nat::ipvs::parse_family_reply(&buf, seq).ok());
}

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*` with the nfgenmsg header, then control
/// messages.
pub const CT_TYPES: [MsgType; 7] = [
    (0x0100, 4), // NEW
    (0x0101, 4), // GET
    (0x0102, 4), // DELETE
    nl::CONTROL[0],
    nl::CONTROL[1],
    nl::CONTROL[2],
    nl::CONTROL[3],
];

/// A datagram read as a conntrack dump reply, into flows.
pub fn conntrack(data: &[u8]) {
    let (buf, seq) = nl::datagram(data, &CT_TYPES);
    if let Ok(flows) = podnet_nat::conntrack::parse_dump_datagram(&buf, seq) {
        black_box(format!("{flows:?}"));
    }
}

/// `iptables-save` output, read strictly (what podnet renders from it, it reads back the same)
/// and tolerantly (what the strict parse accepts, the tolerant one reads the same way, but
/// `-X` lines).
pub fn iptables_save(data: &[u8]) {
    use podnet_nat::iptables::{Line, SavedRule, parse_save, parse_save_tolerant};
    let text = String::from_utf8_lossy(data);
    let strict = parse_save(&text);
    let tolerant = parse_save_tolerant(&text);
    if let Ok(tables) = &strict {
        for t in tables {
            let rendered = t.render();
            let back = parse_save(&rendered).expect("podnet reads what it writes");
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].render(), rendered);
        }
        // `-X` lines are iptables-restore input, never iptables-save output: only the tolerant
        // parser refuses them.
        let deletes = tables
            .iter()
            .any(|t| t.lines.iter().any(|l| matches!(l, Line::DeleteChain(_))));
        if !deletes {
            let tolerant = tolerant
                .as_ref()
                .expect("tolerant accepts what strict accepts");
            assert_eq!(tolerant.len(), tables.len());
            for (s, t) in tables.iter().zip(tolerant) {
                assert!(t.rules.iter().all(|r| matches!(r, SavedRule::Known(_))));
                assert_eq!(t.rules.len(), s.rule_count());
            }
        }
    }
    if let Ok(tables) = &tolerant {
        for t in tables {
            for c in &t.chains {
                black_box((t.has_chain(&c.name), t.known_rules(&c.name).count()));
            }
        }
    }
}

/// Kubernetes Services and EndpointSlices (YAML or JSON), into the service model of both
/// families, and through the iptables, nftables and ipvs compilers.
pub fn kube_objects(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = podnet_nat::kube::parse_document(&text, "fuzz");
    let (objects, warnings) = parse_objects(&text, "fuzz");
    assert_eq!((&parsed.objects, &parsed.warnings), (&objects, &warnings));
    assert!(!parsed.empty || objects.is_empty());
    for family in [IpFamily::V4, IpFamily::V6] {
        let (state, warnings) = ClusterState::from_objects(&objects, family);
        black_box(&warnings);
        if state.services.is_empty() {
            continue;
        }
        let node = settings(family);
        black_box(podnet_nat::kube_proxy::iptables_mode::compile(&state, &node).render());
        let nft = nft_compile(&state, &NftProxySettings::new(node.clone()));
        let tx = nft.full_transaction();
        black_box(tx.render());
        black_box(Batch::encode(&tx, 1).messages());
        let ipvs = podnet_nat::kube_proxy::ipvs_mode::compile(&state, &node, &Default::default());
        black_box((ipvs.render_ipvs(), ipvs.render_ipsets()));
    }
}

fn ipvs_message(
    cmd: u8,
    service: Option<ServiceAttrs>,
    dest: Option<DestAttrs>,
) -> GenlMessage<IpvsMessage> {
    let mut m = IpvsMessage::new(cmd);
    m.service = service;
    m.dest = dest;
    let mut g = GenlMessage::from_payload(m);
    g.set_resolved_family_id(0x24);
    g
}

/// Dumps made of what podnet itself writes (a kube-proxy table, IPVS services and
/// destinations), kernel-style answers, and the text fixtures of the golden tests.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    nftables_seeds(&mut out);
    ipvs_seeds(&mut out);
    conntrack_seeds(&mut out);
    text_seeds(&mut out);
    out
}

/// nftables: the batch's object messages, a few at a time, as dump replies, and errors.
fn nftables_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let bytes = BATCH.bytes();
    let mut msgs = Vec::new();
    let mut off = 0;
    while bytes.len() - off >= 16 {
        let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes([bytes[off + 4], bytes[off + 5]]);
        msgs.push((kind, bytes[off + 16..off + len].to_vec()));
        off += (len + 3) & !3;
    }
    for chunk in msgs.chunks(6).take(40) {
        let mut d = Vec::new();
        for (kind, body) in chunk {
            nl::push_message(&mut d, *kind, 2, nl::SEQ, body);
        }
        nl::done(&mut d);
        out.extend(nl::seeds(&d, &NFT_TYPES).map(|s| ("nftables", s)));
    }
    let mut answers = Vec::new();
    nl::error_seq(&mut answers, nl::SEQ + 2, 22, "Invalid argument");
    nl::error_seq(&mut answers, nl::SEQ, 1, "");
    out.extend(nl::seeds(&answers, &NFT_TYPES).map(|s| ("nftables", s)));
}

/// IPVS: a service and its destination, the info and config answers, the family lookup.
fn ipvs_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    let stats = Stats {
        conns: 3,
        in_packets: 10,
        out_packets: 9,
        in_bytes: 1000,
        out_bytes: 900,
        ..Stats::default()
    };
    let mut addr = vec![10, 96, 0, 10];
    addr.resize(16, 0);
    let service = ServiceAttrs {
        af: Some(2),
        protocol: Some(6),
        addr: Some(addr),
        port: Some(80),
        sched_name: Some("rr".into()),
        flags: Some(FlagsMask {
            flags: 1,
            mask: u32::MAX,
        }),
        timeout: Some(10800),
        netmask: Some(u32::MAX),
        stats: Some(stats),
        stats64: Some(stats),
        ..ServiceAttrs::default()
    };
    let mut daddr = vec![10, 244, 1, 2];
    daddr.resize(16, 0);
    let dest = DestAttrs {
        addr: Some(daddr),
        port: Some(8080),
        fwd_method: Some(0),
        weight: Some(1),
        active_conns: Some(1),
        addr_family: Some(2),
        stats64: Some(stats),
        ..DestAttrs::default()
    };
    let mut d = Vec::new();
    nl::emit(
        &mut d,
        ipvs_message(cmd::NEW_SERVICE, Some(service.clone()), None),
        2,
    );
    nl::emit(
        &mut d,
        ipvs_message(cmd::NEW_DEST, Some(service), Some(dest)),
        2,
    );
    let mut info = ipvs_message(cmd::SET_INFO, None, None);
    info.payload.info = Some(InfoAttrs {
        version: Some(0x010201),
        conn_tab_size: Some(4096),
    });
    nl::emit(&mut d, info, 0);
    let mut config = ipvs_message(cmd::SET_CONFIG, None, None);
    config.payload.timeout_tcp = Some(900);
    config.payload.timeout_udp = Some(300);
    nl::emit(&mut d, config, 0);
    let mut family = GenlMessage::from_payload(podnet_nat::ipvs::wire::CtrlMessage {
        cmd: 1,
        family_name: Some("IPVS".into()),
        family_id: Some(0x24),
    });
    family.set_resolved_family_id(0x10);
    let mut ctrl = Vec::new();
    nl::emit(&mut ctrl, family, 0);
    nl::error(&mut ctrl, 0, "");
    nl::done(&mut d);
    out.extend(nl::seeds(&d, &IPVS_TYPES).map(|s| ("ipvs", s)));
    out.extend(nl::seeds(&ctrl, &IPVS_TYPES).map(|s| ("ipvs", s)));
}

/// Conntrack: a UDP flow DNATed to an endpoint, and a TCP one over IPv6.
fn conntrack_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    {
        use netlink_packet_netfilter::conntrack::{
            ConntrackAttribute as A, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
        };
        use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
        let tuple = |p: Protocol, src: &str, dst: &str, sport: u16, dport: u16| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress(src.parse().unwrap()),
                    IPTuple::DestinationAddress(dst.parse().unwrap()),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(p),
                    ProtoTuple::SourcePort(sport),
                    ProtoTuple::DestinationPort(dport),
                ]),
            ]
        };
        let mut d = Vec::new();
        for (p, family, c, s, e) in [
            (
                Protocol::Udp,
                NetfilterProtoFamily::IPv4,
                "10.244.1.5",
                "10.96.0.10",
                "10.244.2.7",
            ),
            (
                Protocol::Tcp,
                NetfilterProtoFamily::IPv6,
                "fd00:244::5",
                "fd00:96::10",
                "fd00:244::7",
            ),
        ] {
            let msg = ConntrackMessage::New(vec![
                A::CtaTupleOrig(tuple(p, c, s, 40000, 53)),
                A::CtaTupleReply(tuple(p, e, c, 53, 40000)),
                A::CtaTimeout(30),
                A::CtaMark(0x4000),
            ]);
            nl::emit(
                &mut d,
                NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), msg),
                2,
            );
        }
        nl::done(&mut d);
        out.extend(nl::seeds(&d, &CT_TYPES).map(|s| ("conntrack", s)));
    }
}

/// Text: iptables-save output and Kubernetes objects (YAML and JSON lines).
fn text_seeds(out: &mut Vec<(&'static str, Vec<u8>)>) {
    for text in [
        include_str!("../../nat/tests/fixtures/overall.expected"),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n\
         -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
         -A INPUT -p icmp --icmp-type any -j ACCEPT\n\
         -A INPUT -p tcp -m multiport --dports 22,80:90 -j ACCEPT\n\
         -A FORWARD -o docker0 -j DOCKER\nCOMMIT\n",
    ] {
        out.push(("iptables_save", text.as_bytes().to_vec()));
    }
    for text in [
        include_str!("../../nat/tests/fixtures/overall.yaml"),
        include_str!("../../examples/services.yaml"),
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"dns","namespace":"kube-system"},"spec":{"clusterIP":"fd00:96::10","ipFamilies":["IPv6"],"ports":[{"name":"dns","port":53,"protocol":"UDP"}]}}
{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"dns-1","namespace":"kube-system","labels":{"kubernetes.io/service-name":"dns"}},"addressType":"IPv6","ports":[{"name":"dns","port":53,"protocol":"UDP"}],"endpoints":[{"addresses":["fd00:244::5"],"nodeName":"node1","conditions":{"ready":true}}]}"#,
    ] {
        out.push(("kube_objects", text.as_bytes().to_vec()));
    }
}
