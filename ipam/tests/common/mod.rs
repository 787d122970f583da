//! Helpers shared by the integration tests: a real etcd server on loopback, and a tracing
//! capture to check that warnings name what they skip.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Finds the etcd binary: `$PODNET_ETCD_BIN`, else `etcd` on PATH, else `/usr/bin/etcd`.
pub fn etcd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("PODNET_ETCD_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in path.split(':') {
            let p = PathBuf::from(dir).join("etcd");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("/usr/bin/etcd")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A throwaway etcd server on 127.0.0.1 with a temporary data directory; killed on drop.
pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    peer_url: String,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Extra server flags (TLS), given again on restart.
    extra: Vec<String>,
    /// How the health check connects (`None`: plain, to `endpoint`).
    #[cfg(feature = "etcd")]
    health: Option<podnet_ipam::EtcdConfig>,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        Self::start_with("http", &[], |_| None)
    }

    /// An etcd serving clients over TLS: `server_flags` are etcd's TLS flags
    /// (`--cert-file=...`, `--client-cert-auth`, ...), `health` the client settings the health
    /// check connects with, given the endpoint (`None`: it only waits for the port).
    #[cfg(feature = "etcd")]
    pub fn start_tls(
        server_flags: &[String],
        health: impl Fn(&str) -> Option<podnet_ipam::EtcdConfig>,
    ) -> EtcdServer {
        Self::start_with("https", server_flags, health)
    }

    #[allow(unused_variables)]
    fn start_with(
        scheme: &str,
        extra: &[String],
        #[cfg(feature = "etcd")] health: impl Fn(&str) -> Option<podnet_ipam::EtcdConfig>,
        #[cfg(not(feature = "etcd"))] health: impl Fn(&str) -> Option<()>,
    ) -> EtcdServer {
        let bin = etcd_binary();
        assert!(
            bin.is_file(),
            "etcd not found at {}: install Debian's etcd-server or set PODNET_ETCD_BIN",
            bin.display()
        );
        let mut last_err = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (client, peer) = (free_port(), free_port());
            let endpoint = format!("{scheme}://127.0.0.1:{client}");
            match Self::spawn(
                &bin,
                dir.path(),
                &endpoint,
                &format!("http://127.0.0.1:{peer}"),
                extra,
            ) {
                Ok(child) => {
                    let mut s = EtcdServer {
                        child,
                        #[cfg(feature = "etcd")]
                        health: health(&endpoint),
                        endpoint,
                        peer_url: format!("http://127.0.0.1:{peer}"),
                        bin: bin.clone(),
                        dir,
                        extra: extra.to_vec(),
                    };
                    match s.wait_healthy() {
                        Ok(()) => return s,
                        Err(e) => last_err = e,
                    }
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start etcd: {last_err}");
    }

    fn spawn(
        bin: &Path,
        dir: &Path,
        endpoint: &str,
        peer_url: &str,
        extra: &[String],
    ) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))
            .map_err(|e| e.to_string())?;
        Command::new(bin)
            .arg("--name=podnet-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=podnet-test={peer_url}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                return Err(format!("etcd exited with {status}: {log}"));
            }
            let addr = self.endpoint.split("://").nth(1).unwrap_or(&self.endpoint);
            if std::net::TcpStream::connect(addr).is_ok() {
                #[cfg(feature = "etcd")]
                {
                    use podnet_ipam::Store;
                    if self.health.is_none() && self.endpoint.starts_with("https://") {
                        return Ok(());
                    }
                    let config = self
                        .health
                        .clone()
                        .unwrap_or_else(|| podnet_ipam::EtcdConfig {
                            endpoints: vec![self.endpoint.clone()],
                            ..Default::default()
                        });
                    if let Ok(store) = podnet_ipam::EtcdStore::connect_with(&config) {
                        if store.get("/podnet-health").is_ok() {
                            return Ok(());
                        }
                    }
                }
                #[cfg(not(feature = "etcd"))]
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("etcd did not become healthy within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(
            &self.bin,
            self.dir.path(),
            &self.endpoint,
            &self.peer_url,
            &self.extra,
        )
        .expect("respawn etcd");
        self.wait_healthy().expect("etcd healthy after restart");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Turns on etcd's authentication with the user `root` (password `s3cret`, role root), with
/// etcd's own tool (Debian etcd-client) as an operator would; `tls` are etcdctl's TLS flags.
pub fn enable_auth(endpoint: &str, tls: &[String]) {
    for args in [
        &["user", "add", "root:s3cret"][..],
        &["user", "grant-role", "root", "root"],
        &["auth", "enable"],
    ] {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(tls)
            .args(args)
            .output()
            .expect("etcdctl (Debian etcd-client) runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Collects everything tracing prints while `f` runs (on this thread).
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || out.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text)
}
