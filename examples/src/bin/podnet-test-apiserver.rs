//! `podnet-test-apiserver`: the test Kubernetes API server of
//! `podnet_testsupport::kube_api` as a process, for the simulated cluster (`podnet-cluster
//! --kube` runs it in its fabric namespace, as it runs etcd). A **test fixture**, not a
//! Kubernetes: see that module's documentation for what it implements; against a real
//! cluster, point `--kubeconfig-file` / `--kube-api-url` at the real API server instead.
//!
//! ```text
//! podnet-test-apiserver [--listen ADDR:PORT] [--token TOKEN] [--bookmark-interval-ms N]
//!                       [--objects FILE.json]
//!                       [--tls-cert-file CERT.pem --tls-private-key-file KEY.pem]
//! ```
//!
//! It prints `listening on http://ADDR:PORT` on stdout once it accepts connections, and runs
//! until SIGTERM/SIGINT (or stdin closes, with `--exit-on-stdin-eof`). `--objects` loads a
//! JSON array of objects first. The test controls are POST endpoints: `/podnet-test/compact`,
//! `/podnet-test/expire-watches`, `/podnet-test/drop-watches`, `/podnet-test/bookmark`; GET
//! `/podnet-test/requests` lists the requests served.

use podnet_testsupport::kube_api::{ApiServer, ApiServerOptions, ServerTls};
use std::io::Write;
use std::time::Duration;

fn fail(msg: String) -> ! {
    eprintln!("podnet-test-apiserver: error: {msg}");
    std::process::exit(2);
}

fn main() {
    let mut opts = ApiServerOptions::default();
    let mut objects = None;
    let mut stdin_eof = false;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--listen" => {
                let v = value("--listen");
                opts.listen = v
                    .parse()
                    .unwrap_or_else(|e| fail(format!("--listen {v}: {e}")));
            }
            "--token" => opts.token = Some(value("--token")),
            "--bookmark-interval-ms" => {
                let v = value("--bookmark-interval-ms");
                let ms: u64 = v
                    .parse()
                    .unwrap_or_else(|e| fail(format!("--bookmark-interval-ms {v}: {e}")));
                opts.bookmark_interval = Some(Duration::from_millis(ms));
            }
            "--objects" => objects = Some(value("--objects")),
            "--tls-cert-file" => cert = Some(value("--tls-cert-file")),
            "--tls-private-key-file" => key = Some(value("--tls-private-key-file")),
            "--exit-on-stdin-eof" => stdin_eof = true,
            "-h" | "--help" => {
                println!(
                    "podnet-test-apiserver [--listen ADDR:PORT] [--token TOKEN] \
                     [--bookmark-interval-ms N] [--objects FILE.json] [--exit-on-stdin-eof] \
                     [--tls-cert-file CERT.pem --tls-private-key-file KEY.pem]"
                );
                return;
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    let read =
        |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| fail(format!("reading {p}: {e}")));
    match (cert, key) {
        (Some(c), Some(k)) => {
            let cert_pem = read(&c);
            opts.tls = Some(ServerTls {
                ca_pem: cert_pem.clone(),
                cert_pem,
                key_pem: read(&k),
            });
        }
        (None, None) => {}
        _ => fail("--tls-cert-file and --tls-private-key-file go together".into()),
    }
    let server = ApiServer::start(opts).unwrap_or_else(|e| fail(format!("listening: {e}")));
    if let Some(path) = objects {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| fail(format!("reading {path}: {e}")));
        let list: Vec<serde_json::Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| fail(format!("{path}: a JSON array of objects: {e}")));
        for o in list {
            server
                .apply(o)
                .unwrap_or_else(|e| fail(format!("{path}: {e}")));
        }
    }
    println!("listening on {}", server.url());
    let _ = std::io::stdout().flush();
    if stdin_eof {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        return;
    }
    // Until SIGTERM or SIGINT, whose default action ends the process.
    loop {
        std::thread::park();
    }
}
