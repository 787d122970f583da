//! The explain page in a real browser: each page (drawn from a recorded cluster) is loaded in
//! headless Chromium (Debian's `chromium`, installed with apt when missing and we are root),
//! and the DOM it dumps after its script ran says how many hop markers were laid out inside the
//! picture with their number as label (measured by the browser: `getBBox`,
//! `getComputedTextLength`), how many devices were drawn, and holds every hop's line of the
//! text walk. A screenshot of one page is checked to be a real PNG.

use podnet_examples::explain::picture;
use podnet_examples::explain::{Choice, Packet, Proto, Recording, Topology, Walk, explain};
use podnet_testsupport::{SkipCause, skip};
use std::path::{Path, PathBuf};
use std::process::Command;

fn recording(name: &str) -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(format!("{name}.json"));
    Recording::load(&path).expect("recording")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn which(p: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}

fn apt_install(pkg: &str) -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(["-o", "DPkg::Lock::Timeout=300", pkg])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| s.success().then_some(()).ok_or(format!("apt-get: {s}")))
    };
    if install().is_ok() {
        return Ok(());
    }
    Command::new("apt-get")
        .args(["update", "-qq", "-o", "DPkg::Lock::Timeout=300"])
        .status()
        .map_err(|e| e.to_string())?;
    install()
}

/// Debian's Chromium, installed when missing (as root, like the other tests' apt packages).
fn chromium(test: &str) -> Option<PathBuf> {
    if let Some(c) = which("chromium") {
        return Some(c);
    }
    if which("apt-get").is_none() {
        skip(
            test,
            SkipCause::Machine,
            "chromium is not installed and there is no apt-get",
        );
        return None;
    }
    if !is_root() {
        skip(
            test,
            SkipCause::Avoidable,
            "chromium is not installed: run as root (the test installs it) or `apt-get install chromium`",
        );
        return None;
    }
    if let Err(e) = apt_install("chromium") {
        skip(
            test,
            SkipCause::Machine,
            &format!("`apt-get install chromium` failed (no Debian archive reachable?): {e}"),
        );
        return None;
    }
    which("chromium")
}

/// Runs headless Chromium with the flags that work in this sandbox, and a fresh profile.
fn run_chromium(bin: &Path, dir: &Path, args: &[String]) -> String {
    let profile = tempdir(dir, "profile");
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tempdir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn attr(dom: &str, name: &str) -> Option<usize> {
    dom.split(&format!("{name}=\""))
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

fn walk(topo: &Topology, dst: &str, port: Option<u16>) -> Walk {
    let ip = topo.resolve(dst).unwrap();
    let p = match port {
        Some(port) => Packet::new(Proto::Tcp, ip).port(port),
        None => Packet::new(Proto::Icmp, ip),
    };
    explain(topo, "node1-pod1", &p, &Choice::First).unwrap()
}

#[test]
fn every_hop_is_drawn_and_labelled_in_chromium() {
    let test = "every_hop_is_drawn_and_labelled_in_chromium";
    let Some(bin) = chromium(test) else { return };
    let dir = std::env::temp_dir().join(format!("podnet-explain-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("vxlan-iptables", "10.96.0.10", Some(80)),
        ("vxlan-nftables", "10.96.0.10", Some(80)),
        ("udp-iptables", "node2-pod1", None),
        ("host-gw-iptables", "node2-pod1", None),
        ("vxlan-iptables", "outside", None),
        ("vxlan-broken-fdb", "node2-pod1", None),
        ("vxlan-broken-route", "node2-pod1", None),
        ("vxlan-ipvs", "10.96.0.10", Some(80)),
        ("vxlan-ipvs", "10.96.0.13", Some(80)),
    ];
    for (i, (name, dst, port)) in cases.into_iter().enumerate() {
        let rec = recording(name);
        let topo = Topology::recorded(rec.clone());
        let w = walk(&topo, dst, port);
        let page = dir.join(format!("page{i}.html"));
        std::fs::write(&page, picture::html(&rec, Some(&w))).unwrap();
        let dom = run_chromium(
            &bin,
            &dir,
            &["--dump-dom".into(), format!("file://{}", page.display())],
        );
        let n = w.hops.len();
        assert_eq!(attr(&dom, "data-hops"), Some(n), "{name} {dst}");
        assert_eq!(
            attr(&dom, "data-hops-drawn"),
            Some(n),
            "{name} {dst}: every marker inside the picture"
        );
        assert_eq!(
            attr(&dom, "data-hops-labelled"),
            Some(n),
            "{name} {dst}: every marker labelled with its number"
        );
        let devs = dom.matches("<g class=\"dev ").count();
        assert!(devs >= 10, "{name}: {devs} devices");
        assert_eq!(attr(&dom, "data-devs-drawn"), Some(devs), "{name}");
        for (k, h) in w.hops.iter().enumerate() {
            let k = k + 1;
            assert!(
                dom.contains(&format!("id=\"hop-marker-{k}\"")),
                "{name}: marker {k}"
            );
            let li = dom
                .split(&format!("<li id=\"hop-{k}\""))
                .nth(1)
                .unwrap_or_else(|| panic!("{name}: line {k}"));
            let li = &li[..li.find("</li>").unwrap()];
            assert!(li.contains(&format!("<b>{}</b>", h.step)), "{li}");
            // IPVS's rewrite is noted in the picture with the hop's number.
            if let Some((a, b)) = h.ipvs.as_ref().and_then(|i| i.rewrite.as_ref()) {
                let note = format!("{k}: IPVS {a} \u{2192} {b}");
                assert!(dom.contains(&note), "{name}: no {note:?}");
            }
        }
        if name == "vxlan-ipvs" {
            assert!(
                dom.contains("data-step=\"ipvs\""),
                "{name} {dst}: the IPVS hop"
            );
        }
    }
    // The cluster without a packet, and a screenshot of it.
    let rec = recording("vxlan-iptables");
    let page = dir.join("show.html");
    std::fs::write(&page, picture::html(&rec, None)).unwrap();
    let dom = run_chromium(
        &bin,
        &dir,
        &["--dump-dom".into(), format!("file://{}", page.display())],
    );
    assert_eq!(attr(&dom, "data-hops-drawn"), Some(0));
    // fabric0, n1, n2; per node eth0, flannel.1, cni0 and two ports; eth0 in each of 4 pods.
    assert_eq!(
        attr(&dom, "data-devs-drawn"),
        Some(17),
        "the cluster's devices"
    );
    let png = dir.join("show.png");
    run_chromium(
        &bin,
        &dir,
        &[
            format!("--screenshot={}", png.display()),
            format!("file://{}", page.display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "{} bytes: an empty page?",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
