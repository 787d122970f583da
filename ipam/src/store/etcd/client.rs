//! A small etcd v3 client over the committed gRPC code in [`pb`](super::pb): one connection,
//! an auth token sent with every call and renewed when etcd says it expired, and the errors
//! as [`EtcdError`]. Only what the store needs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::pb::{AuthenticateRequest, RangeRequest, WatchRequest, WatchResponse};
use super::rpc::Rpc;

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// An endpoint is not a URL the client can use.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is not usable.
        reason: String,
    },
    /// None of the endpoints answered.
    #[error("cannot reach etcd at {endpoints}: {reason}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last connection error.
        reason: String,
    },
    /// A TLS file (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`) cannot be used.
    #[error("etcd TLS {what} {}: {reason}", file.display())]
    TlsFile {
        /// Which file: `CA file`, `certificate file` or `key file`.
        what: &'static str,
        /// The file as given.
        file: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The connection settings do not fit together (a certificate without its key, TLS files
    /// for `http://` endpoints, a password without a user name).
    #[error("etcd settings: {0}")]
    Settings(String),
    /// etcd (or the gRPC layer on the way) answered with an error status.
    #[error("{code}: {message}")]
    Status {
        /// The gRPC status code's name (`Unauthenticated`, `Unavailable`, ...).
        code: String,
        /// etcd's message (`etcdserver: user name is empty`, ...).
        message: String,
    },
}

impl EtcdError {
    fn status(s: &tonic::Status) -> Self {
        EtcdError::Status {
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }
    }
}

impl From<tonic::Status> for EtcdError {
    fn from(s: tonic::Status) -> Self {
        EtcdError::status(&s)
    }
}

/// TLS for the connection to etcd, as flannel's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile`: the CA that signed etcd's certificate (the system's roots when none is
/// given) and a client certificate with its key for etcd's `--client-cert-auth`.
///
/// Used for `https://` endpoints; giving files for an `http://` endpoint is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate(s), PEM (`--etcd-cafile`).
    pub ca_file: Option<PathBuf>,
    /// The client certificate, PEM (`--etcd-certfile`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM (`--etcd-keyfile`).
    pub key_file: Option<PathBuf>,
}

impl EtcdTls {
    /// `true` when no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The tonic TLS configuration: the CA (or the system's roots) and the client identity,
    /// every file read and checked to hold PEM now, so a bad file is named before any
    /// connection is tried.
    fn client_config(&self) -> Result<ClientTlsConfig, EtcdError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_file {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read_pem(
                "CA file",
                ca,
                "CERTIFICATE",
            )?)),
            None => config.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let cert = read_pem("certificate file", cert, "CERTIFICATE")?;
                let key = read_pem("key file", key, "PRIVATE KEY")?;
                config = config.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(EtcdError::Settings(
                    "a client certificate (--etcd-certfile) needs its key (--etcd-keyfile)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Settings(
                    "a client key (--etcd-keyfile) needs its certificate (--etcd-certfile)".into(),
                ));
            }
        }
        Ok(config)
    }
}

/// Reads a PEM file that must hold a block whose label ends with `label` (`CERTIFICATE`,
/// `PRIVATE KEY` for PKCS#8, RSA and EC keys).
fn read_pem(what: &'static str, file: &Path, label: &str) -> Result<Vec<u8>, EtcdError> {
    let err = |reason: String| EtcdError::TlsFile {
        what,
        file: file.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(file).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().any(|l| {
        l.strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if !found {
        return Err(err(format!("no PEM block \"{label}\" in it")));
    }
    Ok(bytes)
}

/// Adds the auth token (if any) to every request as etcd's `token` metadata.
#[derive(Clone, Default)]
pub(super) struct Token(Arc<Mutex<Option<AsciiMetadataValue>>>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = token {
            req.metadata_mut().insert("token", t);
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Token>;

/// A connection to one etcd endpoint, with the credentials to (re)authenticate.
#[derive(Clone)]
pub(super) struct Client {
    channel: Channel,
    token: Token,
    user: Option<(String, String)>,
}

impl Client {
    /// Connects to the first endpoint that answers, then authenticates when `user` is given.
    pub(super) async fn connect(
        endpoints: &[String],
        tls: &EtcdTls,
        user: Option<(String, String)>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Client, EtcdError> {
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        if !https && !tls.is_empty() {
            return Err(EtcdError::Settings(format!(
                "TLS files are given but no endpoint is https:// ({})",
                endpoints.join(",")
            )));
        }
        let tls_config = if https {
            Some(tls.client_config()?)
        } else {
            None
        };
        let mut last = String::from("no endpoint given");
        for e in endpoints {
            let mut endpoint =
                Endpoint::from_shared(e.clone()).map_err(|err| EtcdError::Endpoint {
                    endpoint: e.clone(),
                    reason: err.to_string(),
                })?;
            if let (true, Some(config)) = (e.starts_with("https://"), &tls_config) {
                endpoint =
                    endpoint
                        .tls_config(config.clone())
                        .map_err(|err| EtcdError::Endpoint {
                            endpoint: e.clone(),
                            reason: error_chain(&err),
                        })?;
            }
            let endpoint = endpoint
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                .tcp_nodelay(true);
            match endpoint.connect().await {
                Ok(channel) => {
                    let client = Client {
                        channel,
                        token: Token::default(),
                        user: user.clone(),
                    };
                    if let Err(reason) = client.probe().await {
                        // Under TLS 1.3 a refused client certificate shows on our side only
                        // as a connection closed after the handshake: say what to check.
                        let hint = match (e.starts_with("https://"), tls.cert_file.is_some()) {
                            (false, _) => "",
                            (true, false) => {
                                " (etcd closed the TLS connection: does it require a client \
                                 certificate? give --etcd-certfile and --etcd-keyfile)"
                            }
                            (true, true) => {
                                " (etcd closed the TLS connection: is the client certificate \
                                 signed by a CA in etcd's --trusted-ca-file, and still valid?)"
                            }
                        };
                        last = format!("{e}: {reason}{hint}");
                        continue;
                    }
                    client.authenticate().await?;
                    return Ok(client);
                }
                Err(err) => last = format!("{e}: {}", error_chain(&err)),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: endpoints.join(","),
            reason: last,
        })
    }

    /// One cheap request (a serializable count of one key), so that a connection etcd refuses
    /// after our side of the handshake completed (a client certificate refused under TLS 1.3)
    /// fails the connect, not the first use. An answer from etcd, even an error (no user
    /// given while auth is on), is a working connection.
    async fn probe(&self) -> Result<(), String> {
        let req = RangeRequest {
            key: vec![0],
            count_only: true,
            serializable: true,
            limit: 1,
            ..Default::default()
        };
        match Rpc::new(self.channel.clone()).range(req).await {
            Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
                Err(error_chain(&s))
            }
            _ => Ok(()),
        }
    }

    /// Asks etcd for a token for the configured user (nothing to do without one).
    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((name, password)) = &self.user else {
            return Ok(());
        };
        let resp = Rpc::new(self.channel.clone())
            .authenticate(AuthenticateRequest {
                name: name.clone(),
                password: password.clone(),
            })
            .await?
            .into_inner();
        let value =
            AsciiMetadataValue::try_from(resp.token.as_str()).map_err(|_| EtcdError::Status {
                code: "Internal".into(),
                message: "etcd returned an auth token that is not ASCII".into(),
            })?;
        *self.token.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// A client that sends the current auth token with each call (etcd's KV, Lease and
    /// Watch services all take it).
    pub(super) fn rpc(&self) -> Rpc<Svc> {
        Rpc::new(InterceptedService::new(
            self.channel.clone(),
            self.token.clone(),
        ))
    }

    /// Opens a watch stream: `requests` feeds it (create, cancel), the answer streams back.
    pub(super) async fn watch(
        &self,
        requests: tokio::sync::mpsc::Receiver<WatchRequest>,
    ) -> Result<tonic::Streaming<WatchResponse>, EtcdError> {
        let mut client = self.rpc();
        let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
        Ok(client.watch(stream).await?.into_inner())
    }

    /// Runs `call`; when etcd says the token is no longer valid (simple tokens expire after
    /// five idle minutes, and a restarted etcd forgets them all), authenticates again and
    /// runs it once more.
    pub(super) async fn retry_auth<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match call().await {
            Err(s) if self.user.is_some() && token_expired(&s) => {
                self.authenticate().await?;
                Ok(call().await?)
            }
            other => Ok(other?),
        }
    }
}

/// Whether a status says the token must be renewed (etcd's `ErrInvalidAuthToken`,
/// `ErrAuthOldRevision`).
fn token_expired(s: &tonic::Status) -> bool {
    let m = s.message();
    m.contains("invalid auth token") || m.contains("revision of auth store is old")
}

/// An error and its causes on one line (tonic's transport errors hide the reason in sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // Some errors print their source already; say each cause once.
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_are_recognised_by_etcds_messages() {
        assert!(token_expired(&tonic::Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(token_expired(&tonic::Status::invalid_argument(
            "etcdserver: revision of auth store is old"
        )));
        assert!(!token_expired(&tonic::Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password"
        )));
    }

    #[test]
    fn status_errors_keep_code_and_message() {
        let e = EtcdError::from(tonic::Status::permission_denied(
            "etcdserver: permission denied",
        ));
        assert_eq!(
            e.to_string(),
            "PermissionDenied: etcdserver: permission denied"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_not_panicked_on() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(Client::connect(
                &["not a url".to_string()],
                &EtcdTls::default(),
                None,
                Duration::from_millis(200),
                Duration::from_millis(200),
            ))
            .err()
            .expect("refused");
        assert!(matches!(err, EtcdError::Endpoint { .. }), "{err}");
        // A port nothing listens on: unreachable, named.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = rt
            .block_on(Client::connect(
                std::slice::from_ref(&url),
                &EtcdTls::default(),
                None,
                Duration::from_millis(500),
                Duration::from_millis(500),
            ))
            .err()
            .expect("nothing listens");
        assert!(
            matches!(&err, EtcdError::Unreachable { endpoints, .. } if *endpoints == url),
            "{err}"
        );
    }
}
