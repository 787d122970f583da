//! EtcdStore against a real etcd serving clients over TLS with `--client-cert-auth`, with
//! certificates the test makes: the store works with the right CA and client certificate, and
//! each thing that can be wrong (a CA that did not sign etcd's certificate, an expired
//! certificate, no client certificate, a file that is missing or holds no PEM, a bad
//! password on top of TLS) is an error that says what failed.

#![cfg(feature = "etcd")]

mod common;

use podnet_ipam::{
    EtcdConfig, EtcdError, EtcdStore, EtcdTls, LeaseAttrs, StoreError, SubnetManager,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A CA, etcd's server certificate and a client certificate, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("podnet test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf certificate for 127.0.0.1 signed by `ca`, valid now or (`expired`) only in 2020.
    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> (String, String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = Pki::ca("good");
        let other = Pki::ca("other");
        pki.write("ca.pem", &ca.pem());
        pki.write("other-ca.pem", &other.pem());
        for (name, issuer, usage, expired) in [
            ("server", &ca, ExtendedKeyUsagePurpose::ServerAuth, false),
            (
                "expired-server",
                &ca,
                ExtendedKeyUsagePurpose::ServerAuth,
                true,
            ),
            ("client", &ca, ExtendedKeyUsagePurpose::ClientAuth, false),
            (
                "stranger",
                &other,
                ExtendedKeyUsagePurpose::ClientAuth,
                false,
            ),
        ] {
            let (cert, key) = Pki::leaf(issuer, name, usage, expired);
            pki.write(&format!("{name}.pem"), &cert);
            pki.write(&format!("{name}-key.pem"), &key);
        }
        pki
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// etcd's flags: serve with `server` (`server` or `expired-server`), require client
    /// certificates signed by the good CA.
    fn server_flags(&self, server: &str) -> Vec<String> {
        vec![
            format!(
                "--cert-file={}",
                self.path(&format!("{server}.pem")).display()
            ),
            format!(
                "--key-file={}",
                self.path(&format!("{server}-key.pem")).display()
            ),
            format!("--trusted-ca-file={}", self.path("ca.pem").display()),
            "--client-cert-auth".to_string(),
        ]
    }

    /// Client settings: CA file `ca`, client certificate `client` (and its key), if any.
    fn client(&self, endpoint: &str, ca: &str, client: Option<&str>) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![endpoint.to_string()],
            tls: EtcdTls {
                ca_file: Some(self.path(ca)),
                cert_file: client.map(|c| self.path(&format!("{c}.pem"))),
                key_file: client.map(|c| self.path(&format!("{c}-key.pem"))),
            },
            ..EtcdConfig::default()
        }
    }

    fn start(&self, server: &str) -> common::EtcdServer {
        common::EtcdServer::start_tls(&self.server_flags(server), |e| {
            Some(self.client(e, "ca.pem", Some("client")))
        })
    }
}

/// The connection error, as text.
fn connect_error(config: &EtcdConfig) -> String {
    match EtcdStore::connect_with(config) {
        Ok(_) => panic!("connected with {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn acquire_a_lease(store: EtcdStore) {
    let sm = SubnetManager::new(store);
    sm.put_network_config(r#"{"Network":"10.72.0.0/16"}"#)
        .unwrap();
    let l = sm
        .acquire(
            &LeaseAttrs::new("198.18.12.1".parse().unwrap(), "vxlan"),
            None,
        )
        .unwrap();
    assert_eq!(l.subnets.ipv4.unwrap().prefix_len(), 24);
}

#[test]
fn client_certificate_and_ca_over_tls() {
    let pki = Pki::new();
    let server = pki.start("server");
    let store = EtcdStore::connect_with(&pki.client(&server.endpoint, "ca.pem", Some("client")))
        .expect("TLS with the right CA and client certificate");
    acquire_a_lease(store);
}

#[test]
fn each_wrong_tls_setting_is_named() {
    let pki = Pki::new();
    let server = pki.start("server");
    let e = &server.endpoint;

    // A CA that did not sign etcd's certificate.
    let err = connect_error(&pki.client(e, "other-ca.pem", Some("client")));
    assert!(
        err.contains("invalid peer certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // No client certificate, and one etcd's CA did not sign: etcd refuses the handshake.
    for client in [None, Some("stranger")] {
        let err = connect_error(&pki.client(e, "ca.pem", client));
        assert!(
            err.contains("cannot reach etcd at https://127.0.0.1"),
            "{err}"
        );
        assert!(
            err.to_lowercase().contains("certificate") || err.contains("alert"),
            "{client:?}: {err}"
        );
    }
    // Files: missing, not PEM, a key without its certificate; each named before connecting.
    let mut missing = pki.client(e, "ca.pem", Some("client"));
    missing.tls.key_file = Some(pki.path("nope-key.pem"));
    let err = connect_error(&missing);
    assert!(
        err.contains("key file") && err.contains("nope-key.pem"),
        "{err}"
    );
    let mut not_pem = pki.client(e, "ca.pem", Some("client"));
    pki.write("garbage.pem", "not a certificate\n");
    not_pem.tls.ca_file = Some(pki.path("garbage.pem"));
    let err = connect_error(&not_pem);
    assert!(
        err.contains("CA file") && err.contains("garbage.pem"),
        "{err}"
    );
    let mut half = pki.client(e, "ca.pem", Some("client"));
    half.tls.cert_file = None;
    assert!(matches!(
        EtcdStore::connect_with(&half),
        Err(StoreError::Etcd {
            source: EtcdError::Settings(_),
            ..
        })
    ));
    // TLS files for a plain http endpoint are a mistake, not ignored.
    let plain = pki.client(&e.replace("https://", "http://"), "ca.pem", Some("client"));
    let err = connect_error(&plain);
    assert!(err.contains("no endpoint is https://"), "{err}");
}

#[test]
fn an_expired_server_certificate_is_refused() {
    let pki = Pki::new();
    // No client can connect to it, so it is waited for by its port only.
    let server = common::EtcdServer::start_tls(&pki.server_flags("expired-server"), |_| None);
    let err = connect_error(&pki.client(&server.endpoint, "ca.pem", Some("client")));
    assert!(
        err.contains("invalid peer certificate: certificate expired"),
        "{err}"
    );
}

#[test]
fn user_and_password_over_tls() {
    let pki = Pki::new();
    let server = pki.start("server");
    let tls_args = |p: &Path| {
        vec![
            format!("--cacert={}", p.join("ca.pem").display()),
            format!("--cert={}", p.join("client.pem").display()),
            format!("--key={}", p.join("client-key.pem").display()),
        ]
    };
    common::enable_auth(&server.endpoint, &tls_args(pki.dir.path()));
    let mut config = pki.client(&server.endpoint, "ca.pem", Some("client"));
    config.username = Some("root".into());
    config.password = Some("wrong".into());
    let err = connect_error(&config);
    assert!(err.contains("invalid user ID or password"), "{err}");
    assert!(
        !format!("{config:?}").contains("wrong"),
        "Debug shows the password"
    );
    config.password = Some("s3cret".into());
    acquire_a_lease(EtcdStore::connect_with(&config).unwrap());
}
