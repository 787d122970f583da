//! Property tests of the IPVS generic netlink codec: every message roundtrips, and no input
//! makes the decoder panic.

use podnet_nat::ipvs::wire::{
    CtrlMessage, DestAttrs, FlagsMask, InfoAttrs, IpvsMessage, ServiceAttrs, Stats, cmd,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_]{0,15}"
}

/// Stats as a 32-bit counter set carries them (bytes are 64-bit in both sets).
fn stats(wide: bool) -> impl Strategy<Value = Stats> {
    let small = move || {
        if wide {
            any::<u64>().boxed()
        } else {
            any::<u32>().prop_map(u64::from).boxed()
        }
    };
    (
        (small(), small(), small(), any::<u64>(), any::<u64>()),
        (small(), small(), small(), small(), small()),
    )
        .prop_map(
            |((c, ip, op, ib, ob), (cps, ipps, opps, ibps, obps))| Stats {
                conns: c,
                in_packets: ip,
                out_packets: op,
                in_bytes: ib,
                out_bytes: ob,
                cps,
                in_pps: ipps,
                out_pps: opps,
                in_bps: ibps,
                out_bps: obps,
            },
        )
}

fn service() -> impl Strategy<Value = ServiceAttrs> {
    (
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=16)),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(name()),
        ),
        (
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(name()),
            proptest::option::of(stats(false)),
            proptest::option::of(stats(true)),
        ),
    )
        .prop_map(
            |(
                (af, protocol, addr, port, fwmark, sched_name),
                (flags, timeout, netmask, pe, s, s64),
            )| {
                ServiceAttrs {
                    af,
                    protocol,
                    addr,
                    port,
                    fwmark,
                    sched_name,
                    flags: flags.map(|(flags, mask)| FlagsMask { flags, mask }),
                    timeout,
                    netmask,
                    pe_name: pe,
                    stats: s,
                    stats64: s64,
                }
            },
        )
}

fn dest() -> impl Strategy<Value = DestAttrs> {
    (
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=16)),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
        ),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(stats(false)),
            proptest::option::of(any::<u16>()),
            proptest::option::of(stats(true)),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
        ),
    )
        .prop_map(
            |((addr, port, fwd, w, u, l, ac, ic), (pc, s, af, s64, tt, tp, tf))| DestAttrs {
                addr,
                port,
                fwd_method: fwd,
                weight: w,
                u_thresh: u,
                l_thresh: l,
                active_conns: ac,
                inact_conns: ic,
                persist_conns: pc,
                stats: s,
                addr_family: af,
                stats64: s64,
                tun_type: tt,
                tun_port: tp,
                tun_flags: tf,
            },
        )
}

fn message() -> impl Strategy<Value = IpvsMessage> {
    let command = (1u8..=17).prop_filter("SET_INFO has its own layout", |c| *c != cmd::SET_INFO);
    let regular = (
        command,
        proptest::option::of(service()),
        proptest::option::of(dest()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(cmd, service, dest, t, tf, u)| IpvsMessage {
            cmd,
            service,
            dest,
            timeout_tcp: t,
            timeout_tcp_fin: tf,
            timeout_udp: u,
            info: None,
        });
    let info = (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(version, conn_tab_size)| IpvsMessage {
            cmd: cmd::SET_INFO,
            info: Some(InfoAttrs {
                version,
                conn_tab_size,
            }),
            ..IpvsMessage::default()
        });
    prop_oneof![4 => regular, 1 => info]
}

proptest! {
    #[test]
    fn messages_roundtrip(m in message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(IpvsMessage::parse(m.cmd, &bytes).unwrap(), m);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(cmd in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = IpvsMessage::parse(cmd, &bytes);
        let _ = CtrlMessage::parse(cmd, &bytes);
    }

    /// Corrupting one byte of a valid message gives an error or a message, never a panic.
    #[test]
    fn corrupted_messages_never_panic(m in message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = m.to_bytes();
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = IpvsMessage::parse(m.cmd, &bytes);
    }
}
