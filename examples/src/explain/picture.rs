//! The cluster and a packet's walk as a picture: plain SVG text, and one self-contained HTML
//! page with the picture beside the text walk.
//!
//! The picture is drawn from a [`Recording`] (the live state read once, or a recorded one), so
//! it needs no root to render and reads the same devices the walk read:
//!
//! - the fabric on top, the nodes in a row below it, each node's pods under it; other
//!   namespaces in a last row;
//! - in each namespace its devices (bridges, their veth ports, VXLAN and TUN devices, the
//!   rest), with their IPv4 addresses; veth pairs as lines between their ends, bridge ports
//!   tied to their bridge, a VXLAN device tied to its underlay device;
//! - with a walk, the path over it: each hop a numbered marker at its device (linked, in the
//!   page, to its line of the text walk, and titled with it), NAT rewrites written where they
//!   happen, legs of an encapsulated (outer) packet drawn as a thick pipe around the inner
//!   path's line and labelled with the outer header, and a drop marked with a red cross and
//!   its reason.

use super::model::{Dev, DevKind, RecordedNs, Recording};
use super::{Hop, Outcome, Step, Walk};
use std::collections::HashMap;
use std::fmt::Write;

const DEV_W: f64 = 150.0;
const DEV_H: f64 = 40.0;
const GAP: f64 = 16.0;
const POD_COL: f64 = DEV_W + 2.0 * GAP;
const TOP: f64 = 50.0;

#[derive(Debug, Clone, Copy, Default)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// Where everything is.
#[derive(Default)]
struct Layout {
    /// Namespace boxes, by label.
    ns: Vec<(String, Rect, &'static str)>,
    /// Device boxes, by (namespace label, device name).
    devs: HashMap<(String, String), Rect>,
    width: f64,
    height: f64,
}

fn role(label: &str) -> &'static str {
    if label == "fabric" {
        "fabric"
    } else if label.contains("-pod") {
        "pod"
    } else if label.starts_with("node") {
        "node"
    } else {
        "other"
    }
}

/// The node a pod belongs to (`node2-pod1` -> `node2`).
fn node_of(pod: &str) -> &str {
    pod.split("-pod").next().unwrap_or(pod)
}

/// Loopback only when it holds more than 127.0.0.1 (the fabric's outside address).
fn shown(ns: &RecordedNs, d: &Dev) -> bool {
    d.name != "lo"
        || ns
            .addrs
            .iter()
            .any(|a| a.index == d.index && a.global && !a.addr.addr().is_loopback())
}

/// The namespace and device at the other end of veth `d` of `ns`.
fn peer_of<'r>(rec: &'r Recording, ns: &RecordedNs, d: &Dev) -> Option<(&'r RecordedNs, &'r Dev)> {
    let pidx = d.link?;
    if d.kind != Some(DevKind::Veth) {
        return None;
    }
    let candidates = rec.namespaces.iter().filter(|o| match d.link_netnsid {
        None => o.label == ns.label,
        Some(id) => {
            o.label != ns.label
                && ns
                    .nsids
                    .get(&o.name)
                    .copied()
                    .flatten()
                    .is_none_or(|x| x == id)
        }
    });
    candidates
        .filter_map(|o| {
            let l = o.links.iter().find(|l| l.index == pidx)?;
            (l.link == Some(d.index) && l.kind == Some(DevKind::Veth)).then_some((o, l))
        })
        // Prefer the namespace whose recorded nsid confirms the pair.
        .max_by_key(|(o, _)| ns.nsids.get(&o.name).copied().flatten() == d.link_netnsid)
}

/// Lays out one namespace's devices in rows: others and tunnels, bridges, bridge ports (each
/// port at `port_x` of its peer when known).
fn place_ns(
    l: &mut Layout,
    ns: &RecordedNs,
    area: Rect,
    port_x: &dyn Fn(&Dev) -> Option<f64>,
    ports_below: bool,
) -> f64 {
    let devs: Vec<&Dev> = ns.links.iter().filter(|d| shown(ns, d)).collect();
    let bridges: Vec<&Dev> = devs
        .iter()
        .copied()
        .filter(|d| d.kind == Some(DevKind::Bridge))
        .collect();
    let ports: Vec<&Dev> = devs
        .iter()
        .copied()
        .filter(|d| d.master.is_some())
        .collect();
    let rest: Vec<&Dev> = devs
        .iter()
        .copied()
        .filter(|d| d.kind != Some(DevKind::Bridge) && d.master.is_none())
        .collect();
    let mut y = area.y + 28.0;
    let mut rows: Vec<Vec<&Dev>> = Vec::new();
    if ports_below {
        rows.push(rest);
        rows.push(bridges);
        rows.push(ports);
    } else {
        rows.push(ports);
        rows.push(bridges);
        rows.push(rest);
    }
    for row in rows.into_iter().filter(|r| !r.is_empty()) {
        let mut x = area.x + GAP;
        for d in row {
            let mut w = DEV_W;
            let mut dx = x;
            if d.kind == Some(DevKind::Bridge) {
                w = (area.w - 2.0 * GAP).max(DEV_W);
                dx = area.x + GAP;
            } else if let Some(px) = port_x(d) {
                dx = (px - DEV_W / 2.0).max(x);
            }
            let r = Rect {
                x: dx,
                y,
                w,
                h: DEV_H,
            };
            l.devs.insert((ns.label.clone(), d.name.clone()), r);
            x = dx + w + GAP;
        }
        y += DEV_H + 34.0;
    }
    y - area.y - 34.0 + DEV_H / 2.0 + GAP
}

fn layout(rec: &Recording) -> Layout {
    let mut l = Layout::default();
    let nodes: Vec<&RecordedNs> = rec
        .namespaces
        .iter()
        .filter(|n| role(&n.label) == "node")
        .collect();
    let pods_of = |node: &str| -> Vec<&RecordedNs> {
        rec.namespaces
            .iter()
            .filter(|n| role(&n.label) == "pod" && node_of(&n.label) == node)
            .collect()
    };
    // Columns: one per node, wide enough for its pods.
    let mut cols: Vec<(String, f64, f64)> = Vec::new();
    let mut x = GAP;
    for n in &nodes {
        let w = (pods_of(&n.label).len().max(2) as f64) * POD_COL;
        cols.push((n.label.clone(), x, w));
        x += w + GAP;
    }
    let total_w = x.max(3.0 * POD_COL);
    // Where the far end of a device lives: the column of that namespace (or its node).
    let col_x = |label: &str| -> Option<f64> {
        let node = if role(label) == "pod" {
            node_of(label)
        } else {
            label
        };
        cols.iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, x, w)| x + w / 2.0)
    };
    let mut y = TOP;
    if let Some(f) = rec.namespaces.iter().find(|n| n.label == "fabric") {
        let area = Rect {
            x: GAP,
            y,
            w: total_w - 2.0 * GAP,
            h: 0.0,
        };
        let px = |d: &Dev| peer_of(rec, f, d).and_then(|(o, _)| col_x(&o.label));
        let h = place_ns(&mut l, f, area, &px, true);
        l.ns.push((f.label.clone(), Rect { h, ..area }, "fabric"));
        y += h + 50.0;
    }
    let mut max_node_h: f64 = 0.0;
    let node_y = y;
    for (n, (_, cx, cw)) in nodes.iter().zip(&cols) {
        let area = Rect {
            x: *cx,
            y: node_y,
            w: *cw,
            h: 0.0,
        };
        let pods = pods_of(&n.label);
        let px = |d: &Dev| {
            let (o, _) = peer_of(rec, n, d)?;
            let i = pods.iter().position(|p| p.label == o.label)?;
            Some(cx + POD_COL * (i as f64 + 0.5))
        };
        let h = place_ns(&mut l, n, area, &px, true);
        max_node_h = max_node_h.max(h);
        l.ns.push((n.label.clone(), Rect { h, ..area }, "node"));
    }
    for (label, r, _) in l.ns.iter_mut() {
        if role(label) == "node" {
            r.h = max_node_h;
        }
    }
    y = node_y + max_node_h + 50.0;
    let mut pod_h: f64 = 0.0;
    for (n, (_, cx, _)) in nodes.iter().zip(&cols) {
        for (i, p) in pods_of(&n.label).into_iter().enumerate() {
            let area = Rect {
                x: cx + POD_COL * i as f64,
                y,
                w: POD_COL - 6.0,
                h: 0.0,
            };
            let h = place_ns(&mut l, p, area, &|_| None, false);
            pod_h = pod_h.max(h);
            l.ns.push((p.label.clone(), Rect { h, ..area }, "pod"));
        }
    }
    y += pod_h + 40.0;
    let mut x = GAP;
    let mut other_h: f64 = 0.0;
    for o in rec.namespaces.iter().filter(|n| {
        role(&n.label) == "other"
            || (role(&n.label) == "pod" && !nodes.iter().any(|x| x.label == node_of(&n.label)))
    }) {
        let area = Rect {
            x,
            y,
            w: POD_COL,
            h: 0.0,
        };
        let h = place_ns(&mut l, o, area, &|_| None, false);
        other_h = other_h.max(h);
        l.ns.push((o.label.clone(), Rect { h, ..area }, "other"));
        x += POD_COL + GAP;
    }
    // Room on the right for the notes of the last column.
    l.width = total_w.max(x) + 220.0;
    l.height = y + other_h + 20.0;
    l
}

/// Escapes text for SVG and HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn v4_of(ns: &RecordedNs, d: &Dev) -> Vec<String> {
    ns.addrs
        .iter()
        .filter(|a| a.index == d.index && a.addr.addr().is_ipv4())
        .map(|a| a.addr.to_string())
        .collect()
}

fn draw_topology(out: &mut String, rec: &Recording, l: &Layout) {
    for (label, r, role) in &l.ns {
        let _ = write!(
            out,
            r#"<g class="ns ns-{role}" data-ns="{l}"><rect x="{:.0}" y="{:.0}" width="{:.0}" height="{:.0}" rx="10"/><text class="ns-label" x="{:.0}" y="{:.0}">{l}</text></g>"#,
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 10.0,
            r.y + 18.0,
            l = esc(label)
        );
        out.push('\n');
    }
    // Wires first, devices on top.
    let mut drawn = Vec::new();
    for ns in &rec.namespaces {
        for d in ns.links.iter().filter(|d| shown(ns, d)) {
            let Some(a) = l.devs.get(&(ns.label.clone(), d.name.clone())) else {
                continue;
            };
            if let Some((o, p)) = peer_of(rec, ns, d) {
                let key =
                    if (ns.label.as_str(), d.name.as_str()) < (o.label.as_str(), p.name.as_str()) {
                        (
                            ns.label.clone(),
                            d.name.clone(),
                            o.label.clone(),
                            p.name.clone(),
                        )
                    } else {
                        (
                            o.label.clone(),
                            p.name.clone(),
                            ns.label.clone(),
                            d.name.clone(),
                        )
                    };
                if let (Some(b), false) = (
                    l.devs.get(&(o.label.clone(), p.name.clone())),
                    drawn.contains(&key),
                ) {
                    let (y1, y2) = if a.y < b.y {
                        (a.y + a.h, b.y)
                    } else {
                        (a.y, b.y + b.h)
                    };
                    let _ = writeln!(
                        out,
                        r#"<line class="wire veth" x1="{:.0}" y1="{y1:.0}" x2="{:.0}" y2="{y2:.0}"><title>veth pair {} {} - {} {}</title></line>"#,
                        a.cx(),
                        b.cx(),
                        esc(&ns.label),
                        esc(&d.name),
                        esc(&o.label),
                        esc(&p.name)
                    );
                    drawn.push(key);
                }
            }
            let tie = d
                .master
                .or_else(|| d.vxlan.as_ref().and_then(|v| v.dev))
                .and_then(|m| ns.links.iter().find(|x| x.index == m))
                .and_then(|m| l.devs.get(&(ns.label.clone(), m.name.clone())));
            if let Some(b) = tie {
                let class = if d.master.is_some() {
                    "port"
                } else {
                    "underlay"
                };
                let (y1, y2) = if a.y < b.y {
                    (a.y + a.h, b.y)
                } else {
                    (a.y, b.y + b.h)
                };
                let x2 = if class == "port" { a.cx() } else { b.cx() };
                let _ = writeln!(
                    out,
                    r#"<line class="wire {class}" x1="{:.0}" y1="{y1:.0}" x2="{x2:.0}" y2="{y2:.0}"/>"#,
                    a.cx()
                );
            }
        }
    }
    for ns in &rec.namespaces {
        for d in ns.links.iter().filter(|d| shown(ns, d)) {
            let Some(r) = l.devs.get(&(ns.label.clone(), d.name.clone())) else {
                continue;
            };
            let kind = d.kind.as_ref().map_or("dev".to_string(), |k| k.to_string());
            let mut detail = v4_of(ns, d).join(" ");
            if let Some(v) = &d.vxlan {
                detail = format!("VNI {} port {} {detail}", v.vni, v.port);
            }
            let state = if d.up { "" } else { " down" };
            let _ = writeln!(
                out,
                r#"<g class="dev dev-{kind}{state}" data-ns="{}" data-dev="{}"><rect x="{:.0}" y="{:.0}" width="{:.0}" height="{:.0}" rx="5"/><text x="{:.0}" y="{:.0}" class="dev-name">{} <tspan class="kind">{kind}{state}</tspan></text><text x="{:.0}" y="{:.0}" class="dev-addr">{}</text></g>"#,
                esc(&ns.label),
                esc(&d.name),
                r.x,
                r.y,
                r.w,
                r.h,
                r.x + 6.0,
                r.y + 15.0,
                esc(&d.name),
                r.x + 6.0,
                r.y + 31.0,
                esc(&detail)
            );
        }
    }
}

/// Where hop `h` happens: its device (the box), else its namespace's label corner.
fn hop_place(l: &Layout, h: &Hop) -> Rect {
    if let Some(r) = h
        .dev
        .as_ref()
        .and_then(|d| l.devs.get(&(h.ns.clone(), d.clone())))
    {
        return *r;
    }
    l.ns.iter()
        .find(|(n, _, _)| *n == h.ns)
        .map_or(Rect::default(), |(_, r, _)| Rect {
            x: r.x + r.w - 100.0,
            y: r.y,
            w: 100.0,
            h: 28.0,
        })
}

/// A short label for a hop that changes the packet: NAT, encapsulation, a drop.
fn hop_note(h: &Hop) -> Option<(String, &'static str)> {
    if let Some(r) = &h.rules {
        let mut parts = Vec::new();
        if let Some((a, b)) = &r.dnat {
            parts.push(format!("DNAT {a} \u{2192} {b}"));
        }
        if let Some((a, b)) = &r.snat {
            parts.push(format!("SNAT {a} \u{2192} {b}"));
        }
        if !parts.is_empty() {
            return Some((parts.join("; "), "nat"));
        }
    }
    if let Some((a, b)) = h.ipvs.as_ref().and_then(|i| i.rewrite.as_ref()) {
        return Some((format!("IPVS {a} \u{2192} {b}"), "nat"));
    }
    match (h.step, &h.encap) {
        (Step::Vxlan | Step::Tunnel, Some(e)) => Some((format!("outer: {e}"), "encap")),
        (Step::Decap, Some(e)) => Some((format!("unwrapped from {e}: {}", e.inner), "encap")),
        (Step::Drop, _) => Some((format!("DROP: {}", h.text), "drop")),
        _ => None,
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}\u{2026}", s.chars().take(n).collect::<String>())
    }
}

fn draw_path(out: &mut String, l: &Layout, w: &Walk) {
    // Markers sit on the right part of their box (the name and address stay readable), three
    // to a row, further rows above.
    let places: Vec<Rect> = w.hops.iter().map(|h| hop_place(l, h)).collect();
    let key = |r: &Rect| (r.x as i64, r.y as i64);
    let mut total: HashMap<(i64, i64), usize> = HashMap::new();
    for r in &places {
        *total.entry(key(r)).or_default() += 1;
    }
    let mut points: Vec<(f64, f64)> = Vec::new();
    let mut seen: HashMap<(i64, i64), usize> = HashMap::new();
    for r in &places {
        let n = seen.entry(key(r)).or_default();
        let in_row = total[&key(r)].min(3) as f64;
        let (col, row) = ((*n % 3) as f64, (*n / 3) as f64);
        points.push((
            r.x + r.w - 12.0 - 21.0 * (in_row - 1.0 - col),
            r.cy() - 21.0 * row,
        ));
        *n += 1;
    }
    // The legs: outer (encapsulated) legs as a thick pipe, the inner line inside it.
    for (i, pair) in points.windows(2).enumerate() {
        let outer = !w.hops[i + 1].inner || !w.hops[i].inner;
        let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
        if outer {
            let _ = writeln!(
                out,
                r#"<line class="leg outer" x1="{x1:.0}" y1="{y1:.0}" x2="{x2:.0}" y2="{y2:.0}"/>"#
            );
        }
        let _ = writeln!(
            out,
            r#"<line class="leg inner" x1="{x1:.0}" y1="{y1:.0}" x2="{x2:.0}" y2="{y2:.0}" marker-end="url(#arrow)"/>"#
        );
    }
    let mut note_y: HashMap<(i64, i64), f64> = HashMap::new();
    for (i, (h, (x, y))) in w.hops.iter().zip(&points).enumerate() {
        let n = i + 1;
        let class = if h.step == Step::Drop {
            "hop drop"
        } else if h.inner {
            "hop"
        } else {
            "hop outer"
        };
        let title = format!("{n}. {} {}: {}", h.ns, h.step, h.text);
        let _ = write!(
            out,
            r##"<g class="{class}" id="hop-marker-{n}" data-hop="{n}" data-step="{}" data-ns="{}"><a href="#hop-{n}"><title>{}</title><circle cx="{x:.0}" cy="{y:.0}" r="9"/><text class="hop-num" x="{x:.0}" y="{:.0}">{n}</text></a>"##,
            h.step,
            esc(&h.ns),
            esc(&title),
            y + 4.0
        );
        if h.step == Step::Drop {
            let _ = write!(
                out,
                r#"<path class="drop-x" d="M{:.0},{:.0} l16,16 m0,-16 l-16,16"/>"#,
                x + 10.0,
                y - 8.0
            );
        }
        if let Some((note, kind)) = hop_note(h) {
            // Above the hop's box, stacked upwards when the box has several.
            let r = places[i];
            let dy = note_y.entry(key(&r)).or_insert(0.0);
            let _ = write!(
                out,
                r#"<text class="note note-{kind}" x="{:.0}" y="{:.0}">{n}: {}</text>"#,
                r.x + 4.0,
                r.y - 4.0 - *dy,
                esc(&short(&note, 110))
            );
            *dy += 13.0;
        }
        out.push_str("</g>\n");
    }
}

const STYLE: &str = r#"
text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;font-size:11px;fill:#222}
.ns rect{fill:#f6f8fa;stroke:#8a939c;stroke-width:1.2}
.ns-fabric rect{fill:#eef3fb}.ns-node rect{fill:#f3f7f0}.ns-pod rect{fill:#fffaf0}
.ns-label{font-weight:bold;font-size:13px}
.dev rect{fill:#fff;stroke:#56606b}.dev-bridge rect{fill:#e8f0ff}.dev-vxlan rect,.dev-tun rect{fill:#fdeede}
.dev.down rect{stroke:#c00;stroke-dasharray:4 2}
.dev-name{font-weight:bold}.kind{font-weight:normal;fill:#667}.dev-addr{fill:#345;font-size:10px}
.wire{stroke:#9aa4ad;stroke-width:2}.wire.underlay{stroke-dasharray:5 3}
.leg.inner{stroke:#1f6feb;stroke-width:2.5;fill:none}
.leg.outer{stroke:#f0a030;stroke-width:11;stroke-opacity:.55;stroke-linecap:round}
.hop circle{fill:#1f6feb;stroke:#fff;stroke-width:1.5}.hop.outer circle{fill:#d07a00}
.hop.drop circle{fill:#c00}.hop-num{fill:#fff;font-size:10px;font-weight:bold;text-anchor:middle}
.drop-x{stroke:#c00;stroke-width:4}
.note{font-size:10.5px;paint-order:stroke;stroke:#fff;stroke-width:3px}
.note-nat{fill:#7a2bb5;font-weight:bold}.note-encap{fill:#a05a00}.note-drop{fill:#c00;font-weight:bold}
"#;

/// The picture as SVG text: the topology, and the walk's path over it when given.
pub fn svg(rec: &Recording, walk: Option<&Walk>) -> String {
    let l = layout(rec);
    let title = match walk {
        Some(w) => format!("{} from {}: {}", w.packet, w.source, outcome_line(w)),
        None => format!("cluster {}", rec.prefix.as_deref().unwrap_or("(no prefix)")),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="podnet-picture" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}">"#,
        w = l.width,
        h = l.height
    );
    let _ = writeln!(
        out,
        r##"<style>{STYLE}</style><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f6feb"/></marker></defs>"##
    );
    let _ = writeln!(
        out,
        r#"<text class="title" x="{GAP}" y="24" style="font-size:15px;font-weight:bold">{}</text>"#,
        esc(&title)
    );
    draw_topology(&mut out, rec, &l);
    if let Some(w) = walk {
        out.push_str("<g class=\"path\">\n");
        draw_path(&mut out, &l, w);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

fn outcome_line(w: &Walk) -> String {
    match &w.outcome {
        Outcome::Delivered { ns, addr, port, .. } => match port {
            Some(p) => format!("delivered to {addr}:{p} in {ns}"),
            None => format!("delivered to {addr} in {ns}"),
        },
        Outcome::Dropped { ns, reason, .. } => format!("dropped in {ns}: {}", short(reason, 90)),
        Outcome::Left { ns, dev } => format!("leaves from {ns} by {dev}"),
    }
}

const PAGE_SCRIPT: &str = r#"
(function () {
  var svg = document.querySelector('svg.podnet-picture');
  var vb = svg.viewBox.baseVal;
  var drawn = 0, labelled = 0;
  document.querySelectorAll('g.hop').forEach(function (g) {
    var c = g.querySelector('circle'), t = g.querySelector('text.hop-num');
    var b = c.getBBox();
    if (b.width > 0 && b.x >= vb.x && b.y >= vb.y && b.x + b.width <= vb.x + vb.width && b.y + b.height <= vb.y + vb.height) drawn++;
    if (t && t.textContent === g.dataset.hop && t.getComputedTextLength() > 0) labelled++;
    var li = document.getElementById('hop-' + g.dataset.hop);
    g.addEventListener('mouseenter', function () { if (li) li.classList.add('hl'); });
    g.addEventListener('mouseleave', function () { if (li) li.classList.remove('hl'); });
    if (li) li.addEventListener('mouseenter', function () { g.classList.add('hl'); });
    if (li) li.addEventListener('mouseleave', function () { g.classList.remove('hl'); });
  });
  var devs = 0;
  document.querySelectorAll('g.dev rect').forEach(function (r) { if (r.getBBox().width > 0) devs++; });
  document.body.setAttribute('data-devs-drawn', String(devs));
  document.body.setAttribute('data-hops-drawn', String(drawn));
  document.body.setAttribute('data-hops-labelled', String(labelled));
})();
"#;

/// One self-contained HTML page: the picture, then the text walk with one anchored line per
/// hop (the picture's markers link to them), the outcome and the notes.
pub fn html(rec: &Recording, walk: Option<&Walk>) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let title = walk.map_or_else(
        || "podnet cluster".to_owned(),
        |w| format!("{} from {}", w.packet, w.source),
    );
    let _ = write!(
        out,
        "<title>{}</title><style>body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:16px;color:#222}}\
ol.walk{{font-family:DejaVu Sans Mono,monospace;font-size:12px}}ol.walk li.outer{{color:#a05a00}}\
ol.walk li.drop{{color:#c00;font-weight:bold}}ol.walk li.hl,ol.walk li:target{{background:#fff3b0}}\
g.hop.hl circle{{stroke:#000;stroke-width:3}}.ns-tag{{color:#555}}</style></head><body data-hops=\"{}\">",
        esc(&title),
        walk.map_or(0, |w| w.hops.len())
    );
    let _ = writeln!(out, "\n<h1>{}</h1>", esc(&title));
    out.push_str(&svg(rec, walk));
    if let Some(w) = walk {
        out.push_str("<h2>The walk</h2>\n<ol class=\"walk\">\n");
        for (i, h) in w.hops.iter().enumerate() {
            let class = if h.step == Step::Drop {
                "drop"
            } else if h.inner {
                "inner"
            } else {
                "outer"
            };
            let outer = if h.inner { "" } else { " (outer)" };
            let _ = writeln!(
                out,
                "<li id=\"hop-{n}\" class=\"{class}\" data-step=\"{}\"><span class=\"ns-tag\">{}</span> <b>{}</b> {}{outer}</li>",
                h.step,
                esc(&h.ns),
                h.step,
                esc(&h.text),
                n = i + 1
            );
        }
        out.push_str("</ol>\n");
        let _ = writeln!(out, "<p id=\"outcome\">{}</p>", esc(&outcome_line(w)));
        if !w.caveats.is_empty() {
            out.push_str("<ul class=\"caveats\">");
            for c in &w.caveats {
                let _ = write!(out, "<li>{}</li>", esc(c));
            }
            out.push_str("</ul>\n");
        }
    }
    let _ = write!(out, "<script>{PAGE_SCRIPT}</script>\n</body></html>\n");
    out
}
