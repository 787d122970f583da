//! flanneld on an etcd that serves clients over TLS with `--client-cert-auth` (certificates
//! made by the test): the simulated cluster's traffic checks pass, a lease written in
//! flannel's exact JSON by another client over TLS is programmed as flannel programs it, and
//! a flanneld given a CA that did not sign etcd's certificate stops with an error saying so.

mod cluster_support;

use cluster_support::{check_all, options, up, wait_programmed};
use podnet_examples::cluster::{self, EtcdTlsFiles};
use podnet_links::Handle;
use podnet_testsupport::require_root;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A CA named `name`, self-signed.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("podnet cluster CA {name}"));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes a certificate for the fabric's address signed by `ca`, and its key, to
/// `dir/name.pem` and `dir/name-key.pem`.
fn leaf(
    dir: &Path,
    name: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    usage: ExtendedKeyUsagePurpose,
) {
    let mut params = CertificateParams::new(vec![cluster::FABRIC_IP.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
}

#[test]
fn vxlan_on_etcd_over_tls_with_client_certificates() {
    require_root!();
    let pki = tempfile_dir();
    let dir = pki.path();
    let good = ca("good");
    std::fs::write(dir.join("ca.pem"), good.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), ca("other").pem()).unwrap();
    leaf(dir, "etcd", &good, ExtendedKeyUsagePurpose::ServerAuth);
    leaf(dir, "node", &good, ExtendedKeyUsagePurpose::ClientAuth);
    let files = EtcdTlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("etcd.pem"),
        server_key: dir.join("etcd-key.pem"),
        client_cert: dir.join("node.pem"),
        client_key: dir.join("node-key.pem"),
    };
    let mut opts = options("etcdtls", "vxlan", 3, 2, true);
    opts.etcd_tls = Some(files.clone());
    let c = up(opts);
    check_all(&c);

    // Another client, etcd's own, writes a lease in flannel's JSON over TLS.
    let foreign = r#"{"PublicIP":"198.18.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
    // A subnet no node holds (the nodes' leases are random: a fixed one could be taken).
    let free = (250..=255)
        .map(|n| format!("10.244.{n}.0/24"))
        .find(|s| {
            !c.nodes
                .iter()
                .any(|n| n.subnet.map(|x| x.to_string()).as_deref() == Some(s))
        })
        .unwrap();
    let key = format!("/coreos.com/network/subnets/{}", free.replace('/', "-"));
    let endpoint = c.opts.etcd_endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let out = c
        .fabric
        .command("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", files.ca.display()))
        .arg(format!("--cert={}", files.client_cert.display()))
        .arg(format!("--key={}", files.client_key.display()))
        .args(["put", &key, foreign])
        .output()
        .expect("etcdctl (Debian etcd-client) runs");
    assert!(
        out.status.success(),
        "etcdctl put over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = Handle::in_ns(&c.nodes[0].ns).unwrap();
    wait_programmed(
        &h,
        &free,
        "198.18.0.99",
        Duration::from_secs(30),
        &c.opts.state_dir.join("node1/flanneld.log"),
    );

    // A flanneld that trusts another CA stops at once, naming why.
    let out = c.nodes[0]
        .ns
        .command(env!("CARGO_BIN_EXE_flanneld"))
        .args(["--etcd-endpoints", &endpoint, "--iface", "eth0"])
        .arg("--etcd-cafile")
        .arg(dir.join("other-ca.pem"))
        .arg("--etcd-certfile")
        .arg(&files.client_cert)
        .arg("--etcd-keyfile")
        .arg(&files.client_key)
        .arg("--subnet-file")
        .arg(dir.join("unused-subnet.env"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "flanneld with the wrong CA: {stderr}"
    );
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}

/// A temporary directory for the certificates, removed when dropped.
fn tempfile_dir() -> TempDir {
    let p = std::env::temp_dir().join(format!("podnet-etcdtls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    TempDir(p)
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
